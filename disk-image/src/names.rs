//! Which paths a FAT file system can hold under the name asked for, checked before any byte is
//! written. The rules are those of Microsoft's FAT specification ("Long File Name
//! Implementation"): a long name is at most 255 UTF-16 code units; it cannot hold the characters
//! 0x00-0x1F or any of `" * / : < > ? \ |`; trailing dots and spaces are dropped by every FAT
//! implementation (so the file would not be found under the name given); names compare
//! case-insensitively.

use std::collections::BTreeMap;

use crate::DiskImageError;

/// The longest FAT long name, in UTF-16 code units.
pub const MAX_NAME_UNITS: usize = 255;

fn bad(path: &str, reason: String) -> DiskImageError {
    DiskImageError::BadPath {
        path: path.to_string(),
        reason,
    }
}

/// Checks one path (relative, components separated by `/`).
pub fn check_path(path: &str) -> Result<(), DiskImageError> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return Err(bad(
            path,
            "it must be a relative path to a file, like `EFI/BOOT/BOOTAA64.EFI`".into(),
        ));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad(
                path,
                "empty, `.` and `..` components are not allowed; write the path without them"
                    .into(),
            ));
        }
        let units = part.encode_utf16().count();
        if units > MAX_NAME_UNITS {
            return Err(bad(
                path,
                format!(
                    "the name `{}…` is {units} UTF-16 units long, FAT holds at most \
                     {MAX_NAME_UNITS}; shorten it",
                    part.chars().take(16).collect::<String>()
                ),
            ));
        }
        if let Some(c) = part
            .chars()
            .find(|&c| c.is_control() || "\\:*?\"<>|".contains(c))
        {
            return Err(bad(
                path,
                format!(
                    "FAT names cannot hold {c:?}: no control characters and none of \\ : * ? \" < > |; \
                     rename the file"
                ),
            ));
        }
        if part.ends_with('.') || part.ends_with(' ') {
            return Err(bad(
                path,
                format!(
                    "the name `{part}` ends with a dot or a space, which FAT drops, so the file \
                     would not be found under this name; remove it"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that no two paths name the same FAT entry (names compare case-insensitively) and that
/// no file is also used as a directory. `paths` are each valid by [`check_path`].
pub fn check_collisions<'a>(
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), DiskImageError> {
    // Every entry by its case-folded path: the spelling first seen and whether it is a directory.
    let mut seen: BTreeMap<String, (&'a str, String, bool)> = BTreeMap::new();
    for path in paths {
        let mut end = 0;
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            end += part.len() + usize::from(i > 0);
            let prefix = &path[..end];
            let is_dir = i + 1 < parts.len();
            let key = prefix.to_lowercase();
            match seen.get(&key) {
                None => {
                    seen.insert(key, (path, prefix.to_string(), is_dir));
                }
                Some((other, spelled, was_dir)) => {
                    let reason = if !is_dir && !was_dir {
                        format!(
                            "`{other}` names the same file (FAT names ignore case); \
                             keep only one of them"
                        )
                    } else if is_dir != *was_dir {
                        format!(
                            "`{spelled}` would be both a file and a directory (with `{other}`); \
                             rename one of them"
                        )
                    } else if spelled != prefix {
                        format!(
                            "its directory `{prefix}` is spelled `{spelled}` in `{other}` (FAT \
                             names ignore case); spell it one way"
                        )
                    } else {
                        continue;
                    };
                    return Err(bad(path, reason));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_names() {
        for ok in [
            "EFI/BOOT/BOOTAA64.EFI",
            "a b/c.d",
            "ünïcødé",
            &"x".repeat(255),
        ] {
            check_path(ok).unwrap();
        }
        for no in [
            "",
            "/abs",
            "dir/",
            "a//b",
            "a/./b",
            "a/../b",
            "a:b",
            "a*",
            "q?",
            "x\"y",
            "<",
            ">",
            "p|q",
            "back\\slash",
            "tab\there",
            "nul\0",
            "dot.",
            "space ",
            "dir./f",
            &"x".repeat(256),
            // 128 characters outside the BMP are 256 UTF-16 units (but 512 UTF-8 bytes).
            &"😀".repeat(128),
        ] {
            assert!(check_path(no).is_err(), "{no:?}");
        }
        // 255 BMP characters of 2 UTF-8 bytes each: 510 bytes, 255 units, fine.
        check_path(&"é".repeat(255)).unwrap();
    }

    #[test]
    fn collisions() {
        check_collisions(["EFI/BOOT/A", "EFI/BOOT/B", "EFI/xen.cfg"]).unwrap();
        for set in [
            &["a", "A"][..],
            &["a", "a"],
            &["a", "a/b"],
            &["a/b", "a"],
            &["EFI/BOOT/A", "efi/boot/B"],
        ] {
            assert!(check_collisions(set.iter().copied()).is_err(), "{set:?}");
        }
    }
}
