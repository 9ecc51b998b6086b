//! Sizes and addresses as people write them: `"256M"`, `"1G"`, `"0x40000000"`, `4096`.
//!
//! Units are binary (K = 1024), as in xl.cfg and Linux's `memparse()`. A bare number in a size field
//! is bytes unless the field documents otherwise (xl's `memory` is MiB; ours takes units to avoid that
//! trap, and says so in the error when a bare small number looks like MiB).

use alloc::format;
use alloc::string::String;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const PAGE_SIZE: u64 = 4096;

/// Parses `"512M"`, `"1G"`, `"64K"`, `"1T"`, `"0x1000"`, `"4096"` (bytes). Suffixes may carry `iB`/`B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(String::from("empty size"));
    }
    let (digits, mult) = split_suffix(t)?;
    let value = parse_u64(digits)?;
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("`{t}` does not fit in 64 bits"))
}

fn split_suffix(t: &str) -> Result<(&str, u64), String> {
    if t.starts_with("0x") || t.starts_with("0X") {
        return Ok((t, 1));
    }
    let lower_end = t.trim_end_matches(['B', 'b']);
    let lower_end = lower_end.strip_suffix(['i', 'I']).unwrap_or(lower_end);
    let Some(last) = lower_end.chars().last() else {
        return Err(format!("`{t}` is not a size"));
    };
    let mult = match last.to_ascii_uppercase() {
        'K' => KIB,
        'M' => MIB,
        'G' => GIB,
        'T' => 1024 * GIB,
        c if c.is_ascii_digit() => return Ok((lower_end, 1)),
        _ => {
            return Err(format!(
                "`{t}` has an unknown unit; use K, M, G or T (binary units)"
            ));
        }
    };
    Ok((&lower_end[..lower_end.len() - 1], mult))
}

/// Parses a decimal or `0x` hexadecimal integer; `_` separators are allowed.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let t: String = text.trim().chars().filter(|c| *c != '_').collect();
    let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        t.parse::<u64>()
    };
    parsed.map_err(|_| {
        format!(
            "`{}` is not a number (decimal, or hexadecimal with 0x)",
            text.trim()
        )
    })
}

/// Renders a byte count the way a person reads it: `256 MiB`, `1.5 GiB`, `4 KiB`, `123 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1024 * GIB, "TiB"),
        (GIB, "GiB"),
        (MIB, "MiB"),
        (KIB, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return format!("{} {name}", bytes / unit);
            }
            let tenths = (bytes as u128 * 10 / unit as u128) as u64;
            return format!("{}.{} {name}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes} B")
}

pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 * MIB));
        assert_eq!(parse_size("1G"), Ok(GIB));
        assert_eq!(parse_size("1GiB"), Ok(GIB));
        assert_eq!(parse_size("64k"), Ok(64 * KIB));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("16777216T").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_size(256 * MIB), "256 MiB");
        assert_eq!(human_size(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(human_size(100), "100 B");
    }

    #[test]
    fn alignment() {
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
    }
}
