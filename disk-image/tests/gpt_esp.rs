//! The GPT image (`PartitionTable::Gpt`) read back by tools that share no code with it:
//! `sgdisk -v` (gdisk: both headers, both CRC32s, the backup's position, the protective MBR),
//! `sfdisk --json` (util-linux: label, GUIDs, type, start), `fsck.fat -n` (dosfstools) on the
//! partition, `mdir`/`mcopy`/`mlabel` (mtools) for the files. `scripts/setup` installs them
//! (`gdisk`, `fdisk`, `dosfstools`, `mtools`); a missing one skips the test, or fails it under
//! `test_support::strict()` (scripts/test-all, CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use disk_image::{
    DiskImageError, ImageOptions, MAX_FILE, PARTITION_START_LBA, PartitionTable, SECTOR, build,
    check,
};

/// The tool's path (they live in /usr/sbin, which a user's PATH may lack), or `None` after
/// `test_support::missing` said why (it panics when strict).
fn tool(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    test_support::missing(
        test,
        &format!("`{name}` is not installed (apt-get install {package})"),
    );
    None
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sgdisk -v`'s stdout and stderr. Its verdict line alone is not enough: with a damaged backup
/// header it regenerates the backup in memory, then says "No problems found." after the warnings.
fn sgdisk_verify(sgdisk: &Path, image: &Path) -> String {
    let out = Command::new(sgdisk).arg("-v").arg(image).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Whether `sgdisk -v` found both headers, both arrays, their CRCs and the protective MBR sound.
fn sgdisk_clean(verify: &str) -> bool {
    verify.contains("No problems found.")
        && [
            "Caution", "Warning", "ERROR", "corrupt", "invalid", "Problem:",
        ]
        .iter()
        .all(|w| !verify.contains(w))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("disk-image-gpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bytes that are not all the same (catches cluster-chain mix-ups).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn gpt(label: &str) -> ImageOptions {
    ImageOptions {
        table: PartitionTable::Gpt,
        label: label.into(),
        ..ImageOptions::default()
    }
}

#[test]
fn gpt_esp_read_back_by_sgdisk_sfdisk_fsck_and_mtools() {
    const T: &str = "gpt_esp_read_back";
    let Some(sgdisk) = tool(T, "sgdisk", "gdisk") else {
        return;
    };
    let Some(sfdisk) = tool(T, "sfdisk", "fdisk") else {
        return;
    };
    let Some(fsck) = tool(T, "fsck.fat", "dosfstools") else {
        return;
    };
    let Some(mdir) = tool(T, "mdir", "mtools") else {
        return;
    };
    let Some(mcopy) = tool(T, "mcopy", "mtools") else {
        return;
    };
    let Some(mlabel) = tool(T, "mlabel", "mtools") else {
        return;
    };

    let efi = pattern(2 << 20, 1);
    let kernel = pattern(3_000_001, 2);
    let files: Vec<(&str, &[u8])> = vec![
        ("EFI/BOOT/BOOTAA64.EFI", &efi),
        ("EFI/BOOT/BOOTAA64.cfg", b"[global]\ndefault=xen\n"),
        ("EFI/BOOT/modules/vmlinuz-6.1.0-arm64", &kernel),
        (
            "EFI/BOOT/modules/a longer name, with spaces (and more).dtb",
            b"fdt",
        ),
        ("host.dtb", &[0xd0, 0x0d, 0xfe, 0xed]),
    ];
    let opts = gpt("ESP");
    let img = build(&files, &opts).unwrap();
    let ids = img.gpt.expect("a GPT image has GUIDs");
    let sizes: Vec<(&str, u64)> = files.iter().map(|(p, b)| (*p, b.len() as u64)).collect();
    assert_eq!(check(&sizes, &opts).unwrap(), img.bytes.len() as u64);
    let dir = temp_dir("readback");
    let path = dir.join("esp.img");
    std::fs::write(&path, &img.bytes).unwrap();
    let total = img.bytes.len() as u64 / SECTOR;

    // sgdisk: both headers and entry arrays, their CRCs, the backup at the end, the protective
    // MBR; it prints "No problems found." only when every check passes.
    let verify = sgdisk_verify(&sgdisk, &path);
    assert!(sgdisk_clean(&verify), "{verify}");
    // sgdisk -i 1: the type by name, the GUID, the name.
    let info = run(Command::new(&sgdisk).args(["-i", "1"]).arg(&path));
    assert!(info.contains("(EFI system partition)"), "{info}");
    assert!(
        info.contains(&format!("Partition unique GUID: {}", ids.partition_guid)),
        "{info}"
    );
    assert!(
        info.contains("Partition name: 'EFI system partition'"),
        "{info}"
    );

    // sfdisk: label gpt, our disk GUID, one ESP at 2048 of the partition's size.
    let json: serde_json::Value =
        serde_json::from_str(&run(Command::new(&sfdisk).arg("--json").arg(&path))).unwrap();
    let t = &json["partitiontable"];
    assert_eq!(t["label"], "gpt", "{json}");
    assert_eq!(t["id"], ids.disk_guid.to_string(), "{json}");
    assert_eq!(t["firstlba"], 34, "{json}");
    assert_eq!(t["lastlba"], total - 34, "{json}");
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{json}");
    let p = &parts[0];
    assert_eq!(p["start"], PARTITION_START_LBA, "{json}");
    assert_eq!(p["size"], img.partition_size / SECTOR, "{json}");
    assert_eq!(p["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "{json}");
    assert_eq!(p["uuid"], ids.partition_guid.to_string(), "{json}");
    assert_eq!(p["name"], "EFI system partition", "{json}");
    assert_ne!(ids.disk_guid, ids.partition_guid);

    // fsck.fat on the partition alone: no errors, no changes (-n), FAT32, hidden sectors 2048.
    let start = (PARTITION_START_LBA * SECTOR) as usize;
    let part = dir.join("part.img");
    std::fs::write(
        &part,
        &img.bytes[start..start + img.partition_size as usize],
    )
    .unwrap();
    let out = run(Command::new(&fsck).args(["-n", "-v"]).arg(&part));
    assert!(out.contains("2 FATs, 32 bit entries"), "{out}");
    assert!(out.contains("2048 hidden sectors"), "{out}");
    for complaint in [
        "Fixing",
        "Deleting",
        "Renamed",
        "Moving",
        "differences",
        "uninitialized",
    ] {
        assert!(!out.contains(complaint), "fsck.fat: {complaint}:\n{out}");
    }

    // mtools at the partition's offset: every directory and file, the label, the bytes.
    let at = format!("{}@@1M", path.display());
    let env = [("MTOOLS_SKIP_CHECK", "1")];
    let listing = run(Command::new(&mdir)
        .envs(env)
        .args(["-/", "-b", "-i", &at, "::"]));
    for entry in ["EFI/", "EFI/BOOT/", "EFI/BOOT/modules/"]
        .iter()
        .copied()
        .chain(files.iter().map(|(n, _)| *n))
    {
        assert!(
            listing.lines().any(|l| l == format!("::/{entry}")),
            "{entry} missing in:\n{listing}"
        );
    }
    assert_eq!(listing.lines().count(), 3 + files.len(), "{listing}");
    let label = run(Command::new(&mlabel)
        .envs(env)
        .args(["-s", "-i", &at, "::"]));
    assert!(label.contains("ESP"), "{label}");
    let copied = dir.join("copied");
    for (name, bytes) in &files {
        let _ = std::fs::remove_file(&copied);
        run(Command::new(&mcopy)
            .envs(env)
            .args(["-n", "-i", &at])
            .arg(format!("::/{name}"))
            .arg(&copied));
        assert_eq!(&std::fs::read(&copied).unwrap(), bytes, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_files_same_bytes_different_files_different_guids() {
    let a = build(
        &[("EFI/BOOT/BOOTX64.EFI", b"MZ1"), ("x", b"1")],
        &gpt("ESP"),
    )
    .unwrap();
    let b = build(
        &[("x", b"1"), ("EFI/BOOT/BOOTX64.EFI", b"MZ1")],
        &gpt("ESP"),
    )
    .unwrap();
    assert_eq!(a.bytes, b.bytes);
    let c = build(
        &[("EFI/BOOT/BOOTX64.EFI", b"MZ2"), ("x", b"1")],
        &gpt("ESP"),
    )
    .unwrap();
    let (ia, ic) = (a.gpt.unwrap(), c.gpt.unwrap());
    assert_ne!(ia.disk_guid, ic.disk_guid);
    assert_ne!(ia.partition_guid, ic.partition_guid);
    assert_ne!(a.volume_id, c.volume_id);
    // The same files as an MBR image: no GUIDs, and the MBR layout (no backup MiB).
    let m = build(
        &[("x", b"1"), ("EFI/BOOT/BOOTX64.EFI", b"MZ1")],
        &ImageOptions::default(),
    )
    .unwrap();
    assert!(m.gpt.is_none());
    assert_eq!(m.bytes.len() + (1 << 20), a.bytes.len());
}

/// Each class of input the FAT file system or the image cannot hold, refused by `check` (paths
/// and sizes only) and by `build` with the same error, for both tables.
#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let long = "n".repeat(256);
    let long_units = "😀".repeat(128); // 256 UTF-16 units in 128 characters
    let bad_names: Vec<(String, &str)> = [
        "a\"b",
        "a*b",
        "a:b",
        "a<b",
        "a>b",
        "a?b",
        "a\\b",
        "a|b",
        "ctl\u{1}",
        "nul\0",
        "del\u{7f}",
    ]
    .iter()
    .map(|n| (format!("EFI/BOOT/{n}"), "cannot hold"))
    .chain([
        (format!("EFI/{long}"), "UTF-16 units"),
        (long_units.clone(), "UTF-16 units"),
        ("EFI//BOOTX64.EFI".to_string(), "empty"),
        ("EFI/./BOOTX64.EFI".to_string(), "empty"),
        ("EFI/../BOOTX64.EFI".to_string(), "empty"),
        ("/EFI/BOOTX64.EFI".to_string(), "relative"),
        ("EFI/".to_string(), "relative"),
        (String::new(), "relative"),
        ("EFI/BOOT./x".to_string(), "dot or a space"),
        ("EFI/BOOTX64.EFI ".to_string(), "dot or a space"),
    ])
    .collect();
    for table in [PartitionTable::Gpt, PartitionTable::Mbr] {
        let opts = ImageOptions {
            table,
            ..ImageOptions::default()
        };
        for (name, says) in &bad_names {
            let e = check(&[(name, 1)], &opts).unwrap_err();
            assert!(
                matches!(e, DiskImageError::BadPath { .. }) && e.to_string().contains(says),
                "{name:?}: {e}"
            );
            let b = build(&[(name, b"1")], &opts).unwrap_err();
            assert_eq!(b.to_string(), e.to_string());
        }
        // Names FAT would take as one: by case, or a file that is also a directory.
        for set in [
            &[("EFI/BOOT/BOOTX64.EFI", 1), ("efi/boot/bootx64.efi", 1)][..],
            &[("EFI/BOOT/A", 1), ("efi/BOOT/B", 1)],
            &[("EFI/BOOT", 1), ("EFI/BOOT/BOOTX64.EFI", 1)],
        ] {
            let e = check(set, &opts).unwrap_err();
            assert!(matches!(e, DiskImageError::BadPath { .. }), "{set:?}: {e}");
        }
        // A volume label FAT cannot store as given (11 bytes of a restricted ASCII set).
        for label in ["TWELVE-CHARS", "two words", "ÉFI", "a.b"] {
            let bad = ImageOptions {
                label: label.into(),
                ..opts.clone()
            };
            let e = build(&[("a", b"1")], &bad).unwrap_err();
            assert!(matches!(e, DiskImageError::BadLabel { .. }), "{label}: {e}");
        }
        // A file of 4 GiB (sizes only: `check` needs no bytes).
        let e = check(&[("big", MAX_FILE + 1)], &opts).unwrap_err();
        assert!(
            matches!(e, DiskImageError::FileTooLarge { size, .. } if size == 4 << 30),
            "{e}"
        );
        check(
            &[("just-fits", MAX_FILE)],
            &ImageOptions {
                max_size: 8 << 30,
                ..opts.clone()
            },
        )
        .unwrap();
        // The image over its limit: the smallest image is 1 MiB + 64 MiB (+ 1 MiB for a GPT).
        let smallest = check(&[("a", 1)], &opts).unwrap();
        let tail = if table == PartitionTable::Gpt {
            1 << 20
        } else {
            0
        };
        assert_eq!(smallest, (65 << 20) + tail);
        let tight = ImageOptions {
            max_size: smallest - 1,
            ..opts.clone()
        };
        let e = build(&[("a", b"1")], &tight).unwrap_err();
        assert!(matches!(e, DiskImageError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
        // The default 2 GiB limit, from sizes alone.
        let e = check(&[("a", 1 << 30), ("b", 1 << 30)], &opts).unwrap_err();
        assert!(matches!(e, DiskImageError::TooLarge { .. }), "{e}");
    }
}

mod random_file_sets {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        // Names FAT holds: letters, digits, a few punctuation marks and non-ASCII, no trailing
        // dot or space.
        "[A-Za-z0-9_é][A-Za-z0-9_ .+é-]{0,20}[A-Za-z0-9_é]"
    }

    fn file_set() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        prop::collection::btree_map(
            (prop::collection::vec(name(), 1..4)).prop_map(|parts| parts.join("/")),
            prop::collection::vec(any::<u8>(), 0..3000),
            1..6,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        // Each case builds three 66 MiB images in memory; a few cases are enough to vary names,
        // depths and sizes.
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

        #[test]
        fn determinism_over_random_file_sets(files in file_set()) {
            let refs: Vec<(&str, &[u8])> =
                files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
            let sizes: Vec<(&str, u64)> = refs.iter().map(|(p, b)| (*p, b.len() as u64)).collect();
            // Random names may collide by case or as file-and-directory: then both refuse alike.
            match check(&sizes, &gpt("ESP")) {
                Err(e) => {
                    let b = build(&refs, &gpt("ESP")).unwrap_err();
                    prop_assert_eq!(b.to_string(), e.to_string());
                }
                Ok(size) => {
                    let a = build(&refs, &gpt("ESP")).unwrap();
                    prop_assert_eq!(a.bytes.len() as u64, size);
                    let mut reversed = refs.clone();
                    reversed.reverse();
                    let b = build(&reversed, &gpt("ESP")).unwrap();
                    prop_assert!(a.bytes == b.bytes, "same files, different bytes");
                    let mut changed = refs.clone();
                    let extra = [0u8; 1];
                    changed[0].1 = if refs[0].1 == extra { b"" } else { &extra };
                    let c = build(&changed, &gpt("ESP")).unwrap();
                    prop_assert_ne!(a.gpt.unwrap().disk_guid, c.gpt.unwrap().disk_guid);
                }
            }
        }
    }
}

/// The control for the test above: `sgdisk -v` (read by [`sgdisk_clean`]) does notice a broken
/// backup header, a broken entry array and a missing protective MBR, so its verdict there means
/// something.
#[test]
fn sgdisk_notices_a_damaged_table() {
    const T: &str = "sgdisk_notices_a_damaged_table";
    let Some(sgdisk) = tool(T, "sgdisk", "gdisk") else {
        return;
    };
    let img = build(&[("EFI/BOOT/BOOTX64.EFI", b"MZ")], &gpt("ESP")).unwrap();
    let n = img.bytes.len();
    let dir = temp_dir("damaged");
    let damage: [(&str, usize); 3] = [
        ("backup header's disk GUID", n - 512 + 56),
        ("primary entry array", 2 * 512 + 40),
        ("protective MBR's 0xEE type", 446 + 4),
    ];
    for (what, at) in damage {
        let mut bytes = img.bytes.clone();
        bytes[at] ^= 0x01;
        let path = dir.join("damaged.img");
        std::fs::write(&path, &bytes).unwrap();
        let text = sgdisk_verify(&sgdisk, &path);
        assert!(!sgdisk_clean(&text), "{what}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
