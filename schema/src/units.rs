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

/// Parses a size or address as docs/manifest.md lists the forms, and nothing else:
///
/// - a decimal number of bytes, `_` separators allowed: `"4096"`, `"1_048_576"`, optionally with
///   the unit `B` (`"4096B"`);
/// - a decimal number with a binary unit `K`, `M`, `G` or `T`, in either case, optionally followed
///   by `iB` or `B` (which mean the same: `"256M"`, `"256MiB"`, `"256MB"`, `"256m"`), and
///   optionally one space between number and unit (`"512 MB"`);
/// - a hexadecimal number of bytes with `0x` and no unit: `"0x40000000"`.
///
/// Anything else is refused with a message that says how to write it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(String::from("empty size"));
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if let Some(i) = hex.find(|c: char| !(c.is_ascii_hexdigit() || c == '_')) {
            let (digits, tail) = hex.split_at(i);
            if !digits.is_empty() && unit_of(tail.trim_start()).is_some() {
                return Err(format!(
                    "`{t}`: a hexadecimal number carries no unit; write bytes in hex (\"0x{digits}\" is {} bytes) or a decimal number with a unit",
                    parse_u64(&format!("0x{digits}")).unwrap_or(0)
                ));
            }
        }
        return parse_u64(t);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (digits, tail) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{t}` is not a size; write e.g. \"256M\" or \"0x1000\""
        ));
    }
    // One space between number and unit, as people write "512 MB".
    let unit_text = tail.strip_prefix(' ').unwrap_or(tail);
    let Some(mult) = unit_of(unit_text) else {
        if let Some(frac) = unit_text.strip_prefix('.') {
            return Err(fraction_hint(t, digits, frac));
        }
        return Err(format!(
            "`{t}` has an unknown unit `{unit_text}`; use K, M, G or T (binary units: M = MB = MiB = 2^20 bytes)"
        ));
    };
    let value = parse_u64(digits)?;
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("`{t}` does not fit in 64 bits"))
}

/// The multiplier of a unit as written after the number: none or `B` for bytes, `K`/`M`/`G`/`T`
/// (either case) alone or followed by `B` or `iB`.
fn unit_of(unit: &str) -> Option<u64> {
    if unit.is_empty() || unit.eq_ignore_ascii_case("b") {
        return Some(1);
    }
    let mut chars = unit.chars();
    let mult = match chars.next()?.to_ascii_uppercase() {
        'K' => KIB,
        'M' => MIB,
        'G' => GIB,
        'T' => 1024 * GIB,
        _ => return None,
    };
    let rest = chars.as_str();
    (rest.is_empty() || rest.eq_ignore_ascii_case("b") || rest.eq_ignore_ascii_case("ib"))
        .then_some(mult)
}

/// "1.5G" is refused; say what it is in the next smaller unit when that is exact.
fn fraction_hint(t: &str, whole: &str, rest: &str) -> String {
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (frac, unit) = rest.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let smaller = match unit_of(unit) {
        // The next smaller unit is always 1024 times smaller.
        Some(m) if m == 1024 * GIB => Some((GIB, "G")),
        Some(m) if m == GIB => Some((MIB, "M")),
        Some(m) if m == MIB => Some((KIB, "K")),
        _ => None,
    };
    let exact = smaller.and_then(|(_, name)| {
        let whole: u64 = whole.replace('_', "").parse().ok()?;
        let scale = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let frac: u64 = frac.parse().ok()?;
        let n = (whole.checked_mul(scale)?.checked_add(frac)?).checked_mul(1024)?;
        n.is_multiple_of(scale)
            .then(|| format!("{}{name}", n / scale))
    });
    match exact {
        Some(e) => format!("`{t}`: fractions are not accepted; write \"{e}\""),
        None => {
            format!("`{t}`: fractions are not accepted; write a whole number of a smaller unit")
        }
    }
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

/// Renders a byte count the way a person reads it, and always exactly: in the largest unit that
/// holds it as a whole number or with at most two decimals (`256 MiB`, `1.5 GiB`, `1.75 GiB`),
/// else in the next smaller unit that does (`2097148 KiB`, never a rounded `2.0 GiB`), else bytes.
/// So two different sizes never print alike, and one size always prints one way.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1024 * GIB, "TiB"),
        (GIB, "GiB"),
        (MIB, "MiB"),
        (KIB, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes < unit {
            continue;
        }
        if bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
        let hundredths = u128::from(bytes) * 100;
        let unit = u128::from(unit);
        if hundredths % unit == 0 {
            let h = hundredths / unit;
            let (whole, frac) = (h / 100, h % 100);
            return if frac % 10 == 0 {
                format!("{whole}.{} {name}", frac / 10)
            } else {
                format!("{whole}.{frac:02} {name}")
            };
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

    /// Every form docs/manifest.md lists ("Sizes and addresses") parses to the value it states,
    /// and the forms it says are refused are refused, with the way to write them.
    #[test]
    fn exactly_the_documented_forms() {
        for (text, value) in [
            ("256M", 256 * MIB),
            ("256MiB", 256 * MIB),
            ("256MB", 256 * MIB),
            ("256m", 256 * MIB),
            ("256mb", 256 * MIB),
            ("512 MB", 512 * MIB),
            ("512 M", 512 * MIB),
            ("64K", 64 * KIB),
            ("1G", GIB),
            ("1T", 1024 * GIB),
            ("0x40000000", 0x4000_0000),
            ("4096", 4096),
            ("4096B", 4096),
            ("1_048_576", 1 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(value), "{text}");
        }
        for (text, why) in [
            (
                "1.5G",
                "`1.5G`: fractions are not accepted; write \"1536M\"",
            ),
            ("0.5M", "`0.5M`: fractions are not accepted; write \"512K\""),
            (
                "512  MB",
                "`512  MB` has an unknown unit ` MB`; use K, M, G or T (binary units: M = MB = MiB = 2^20 bytes)",
            ),
            (
                "512MBB",
                "`512MBB` has an unknown unit `MBB`; use K, M, G or T (binary units: M = MB = MiB = 2^20 bytes)",
            ),
            (
                "512iB",
                "`512iB` has an unknown unit `iB`; use K, M, G or T (binary units: M = MB = MiB = 2^20 bytes)",
            ),
            (
                "12Q",
                "`12Q` has an unknown unit `Q`; use K, M, G or T (binary units: M = MB = MiB = 2^20 bytes)",
            ),
            (
                "0x10M",
                "`0x10M`: a hexadecimal number carries no unit; write bytes in hex (\"0x10\" is 16 bytes) or a decimal number with a unit",
            ),
            ("M", "`M` is not a size; write e.g. \"256M\" or \"0x1000\""),
        ] {
            assert_eq!(parse_size(text), Err(why.into()), "{text}");
        }
    }

    /// The table in docs/manifest.md lists nothing that is refused.
    #[test]
    fn every_size_form_in_the_docs_parses() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manifest.md"))
                .unwrap();
        let start = doc.find("| written | means |").expect("the size table");
        let table: std::vec::Vec<&str> = doc[start..]
            .lines()
            .map(str::trim_start)
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert!(table.len() >= 4, "{table:?}");
        let mut seen = 0;
        for row in table {
            let written = row.split('|').nth(1).unwrap();
            for quoted in written.split('`').skip(1).step_by(2) {
                let form = quoted.trim_matches('"');
                assert!(
                    parse_size(form).is_ok(),
                    "docs list `{quoted}`, which is refused: {:?}",
                    parse_size(form)
                );
                seen += 1;
            }
        }
        assert!(seen >= 12, "{seen}");
    }

    #[test]
    fn human() {
        assert_eq!(human_size(256 * MIB), "256 MiB");
        assert_eq!(human_size(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(human_size(100), "100 B");
        // Exact always: 1792 MiB is 1.75 GiB (not 1.7 or 1.8), and a size just over 2 GiB does
        // not print as "2.0 GiB" next to a "2 GiB".
        assert_eq!(human_size(1792 * MIB), "1.75 GiB");
        assert_eq!(human_size(2 * GIB + 4 * KIB), "2097156 KiB");
        assert_eq!(human_size(2 * GIB - 4 * KIB), "2097148 KiB");
        assert_eq!(human_size(GIB + 1), "1073741825 B");
        assert_eq!(human_size(1536 * KIB), "1.5 MiB");
    }

    #[test]
    fn alignment() {
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
    }
}
