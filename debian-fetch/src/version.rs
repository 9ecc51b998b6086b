//! Debian version ordering, needed to pick the newest of several candidate packages
//! (e.g. kernel ABIs `linux-image-6.1.0-47-…` and `…-50-…`, or a version in both a suite and
//! its `-security` update).
//!
//! Implements the algorithm of Debian Policy §5.6.12 ("Version"): `[epoch:]upstream[-revision]`,
//! compared epoch first (numerically), then upstream and revision with the alternating
//! non-digit / digit comparison where `~` sorts before everything, even the end of the part,
//! and letters sort before non-letters. Tests compare against `dpkg --compare-versions`.

use std::cmp::Ordering;

/// A parsed Debian version. Comparison follows Debian Policy §5.6.12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianVersion {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl DebianVersion {
    /// Parses `[epoch:]upstream[-revision]`. Returns `None` for an empty upstream part or a
    /// non-numeric epoch.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (epoch, rest) = match text.split_once(':') {
            Some((epoch, rest)) => (epoch.parse::<u64>().ok()?, rest),
            None => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return None;
        }
        Some(Self {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// Sort weight of one non-digit character (dpkg `order()`): `~` first, then the end of the
/// string, then letters, then everything else by code point.
fn char_weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares one version part (upstream or revision) the way dpkg's `verrevcmp` does.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        // Non-digit prefix, character by character.
        while a.get(i).is_some_and(|c| !c.is_ascii_digit())
            || b.get(j).is_some_and(|c| !c.is_ascii_digit())
        {
            let wa = char_weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let wb = char_weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            if a.get(i).is_some_and(|c| !c.is_ascii_digit()) {
                i = i.saturating_add(1);
            }
            if b.get(j).is_some_and(|c| !c.is_ascii_digit()) {
                j = j.saturating_add(1);
            }
        }
        // Digit run, compared numerically without overflow: skip leading zeros, then the
        // longer run is larger, else lexicographic.
        fn digits(s: &[u8], mut k: usize) -> (&[u8], usize) {
            while s.get(k) == Some(&b'0') {
                k = k.saturating_add(1);
            }
            let start = k;
            while s.get(k).is_some_and(u8::is_ascii_digit) {
                k = k.saturating_add(1);
            }
            (s.get(start..k).unwrap_or_default(), k)
        }
        let (da, ni) = digits(a, i);
        let (db, nj) = digits(b, j);
        let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if order != Ordering::Equal {
            return order;
        }
        i = ni;
        j = nj;
    }
    Ordering::Equal
}

impl Ord for DebianVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(&self.upstream, &other.upstream))
            .then_with(|| compare_part(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebianVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two version strings; unparsable versions sort before parsable ones.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (DebianVersion::parse(a), DebianVersion::parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs checked against the independent reference `dpkg --compare-versions` when it is
    /// installed (it always is on Debian).
    const PAIRS: &[(&str, &str)] = &[
        ("1.0", "1.0"),
        ("1.0", "1.1"),
        ("1.0~rc1", "1.0"),
        ("1.0~rc1", "1.0~rc1~1"),
        ("1:1.0", "2.0"),
        ("6.1.176-1", "6.1.192-2"),
        ("6.1.99-1", "6.1.176-1"),
        ("1:1.35.0-4+deb12u1+b1", "1:1.35.0-4+deb12u1"),
        ("4.17.5+72-g01140da4e8-1", "4.17.5+8-gabc-1"),
        ("1.0a", "1.0+"),
        ("1.0-1", "1.0"),
        ("1.00", "1.0"),
        ("2.0.a", "2.0.0"),
        ("1.2.3-1~bpo12+1", "1.2.3-1"),
        ("10", "9"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567891",
        ),
    ];

    #[test]
    fn agrees_with_dpkg() {
        let Ok(status) = std::process::Command::new("dpkg").arg("--version").output() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("dpkg is required in CI to cross-check version ordering");
            }
            eprintln!("SKIPPED: dpkg not installed, cannot cross-check version ordering");
            return;
        };
        assert!(status.status.success());
        for (a, b) in PAIRS {
            for (x, y) in [(a, b), (b, a)] {
                let ours = compare_versions(x, y);
                let dpkg_lt = std::process::Command::new("dpkg")
                    .args(["--compare-versions", x, "lt", y])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or_else(|e| panic!("{e}"));
                let dpkg_eq = std::process::Command::new("dpkg")
                    .args(["--compare-versions", x, "eq", y])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or_else(|e| panic!("{e}"));
                let expected = if dpkg_lt {
                    Ordering::Less
                } else if dpkg_eq {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
                assert_eq!(ours, expected, "{x} vs {y}");
            }
        }
    }
}
