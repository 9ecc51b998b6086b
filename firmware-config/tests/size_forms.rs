//! Every documented spelling of a size parses to the number it names, and no text makes the size
//! parser panic (docs/manifest.md, "Sizes and addresses").

use firmware_config::units::{human_size, parse_size};
use proptest::prelude::*;

proptest! {
    #[test]
    fn documented_spellings_mean_their_value(
        n in 0u64..1_000_000,
        unit in prop::sample::select(vec![("", 1u64), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)]),
        tail in prop::sample::select(vec!["", "B", "iB", "b", "ib"]),
        lower in any::<bool>(),
        space in any::<bool>(),
    ) {
        let (u, mult) = unit;
        // A bare number takes no `iB` ("4096iB" is not a unit), only an optional `B`.
        prop_assume!(!(u.is_empty() && tail.contains('i')));
        let u = if lower { u.to_ascii_lowercase() } else { u.to_string() };
        let text = format!("{n}{}{u}{tail}", if space && !(u.is_empty() && tail.is_empty()) { " " } else { "" });
        prop_assert_eq!(parse_size(&text), Ok(n * mult), "{}", text);
    }

    #[test]
    fn hex_is_bytes(n in any::<u64>()) {
        prop_assert_eq!(parse_size(&format!("{n:#x}")), Ok(n));
    }

    #[test]
    fn any_text_is_judged_without_panic(s in ".{0,24}") {
        let _ = parse_size(&s);
    }

    /// human_size is exact: reading its output back gives the same number of bytes.
    #[test]
    fn human_size_reads_back_exactly(n in any::<u64>()) {
        let shown = human_size(n);
        let (num, unit) = shown.split_once(' ').unwrap();
        let mult: u128 = match unit {
            "TiB" => 1 << 40, "GiB" => 1 << 30, "MiB" => 1 << 20, "KiB" => 1 << 10, "B" => 1,
            other => panic!("unit {other}"),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let scale = 10u128.pow(frac.len() as u32);
        let value = (whole.parse::<u128>().unwrap() * scale + frac.parse::<u128>().unwrap_or(0)) * mult;
        prop_assert_eq!(value % scale, 0, "{}", shown);
        prop_assert_eq!(value / scale, u128::from(n), "{}", shown);
    }
}
