//! The image read back by tools that share no code with it: `sfdisk --dump` (util-linux) for the
//! partition table, `fsck.fat -n` (dosfstools) for the file system, `mdir`/`mcopy` (mtools) for the
//! files. `scripts/setup` installs them (`fdisk`, `dosfstools`, `mtools`); a missing tool skips the
//! test with that hint, or fails it when strict (`test_support::strict()`).

use std::path::{Path, PathBuf};
use std::process::Command;

use disk_image::{ImageOptions, PARTITION_START_LBA, SECTOR, build};

/// The tool's path (they live in /usr/sbin, which a user's PATH may lack), or `None` after
/// `test_support::missing` said why (it panics under `test_support::strict()`: scripts/test-all, CI).
fn find(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists());
    if found.is_none() {
        test_support::missing(
            "partition_table_file_system_and_files_read_back",
            &format!(
                "`{name}` is needed to read the image back (scripts/setup installs fdisk, \
                 dosfstools, mtools)"
            ),
        );
    }
    found
}

/// The path of a tool [`find`] has already found.
fn tool(name: &str) -> PathBuf {
    find(name).expect("checked at the test's start")
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

fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("disk-image-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("disk.img");
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A file with bytes that are not all the same (catches cluster-chain mix-ups).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[test]
fn partition_table_file_system_and_files_read_back() {
    for t in ["sfdisk", "fsck.fat", "mdir", "mcopy", "mlabel"] {
        if find(t).is_none() {
            return;
        }
    }
    // Each cluster size the partition can get below 4 KiB: a 64 MiB partition has 512-byte
    // clusters, one of ~85 MiB 1 KiB, one of ~155 MiB 2 KiB (fsck.fat says which it read).
    for (kernel_len, cluster) in [(5 << 20, 512), (80 << 20, 1024), (150 << 20, 2048)] {
        read_back(kernel_len, cluster);
    }
}

fn read_back(kernel_len: usize, cluster: u64) {
    let xen = pattern(983_048, 1);
    let kernel = pattern(kernel_len, 2);
    let files: Vec<(&str, &[u8])> = vec![
        ("boot.scr", b"script"),
        ("host.dtb", &[0xd0, 0x0d, 0xfe, 0xed]),
        ("modules/xen", &xen),
        ("modules/kernel-0.gz", &kernel),
        ("passthrough-rtc-driver.dtb", b"fragment"),
    ];
    let img = build(&files, &ImageOptions::default()).unwrap();
    let path = write_temp("readback", &img.bytes);

    // sfdisk: one active FAT32-LBA partition at 2048 to the end of the disk.
    let dump = run(Command::new(tool("sfdisk")).arg("--dump").arg(&path));
    assert!(dump.contains("label: dos"), "{dump}");
    assert!(
        dump.contains(&format!("label-id: {:#010x}", img.disk_signature)),
        "{dump}"
    );
    let sectors = img.partition_size / SECTOR;
    let line = dump
        .lines()
        .find(|l| l.contains(" : start="))
        .unwrap_or_else(|| panic!("no partition in:\n{dump}"));
    let fields: String = line.split(':').nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        fields,
        format!("start={PARTITION_START_LBA},size={sectors},type=c,bootable"),
        "{dump}"
    );
    assert_eq!(
        (PARTITION_START_LBA + sectors) * SECTOR,
        img.bytes.len() as u64
    );

    // fsck.fat on the partition alone: no errors, no changes (-n), FAT32.
    let part = write_temp(
        "part",
        &img.bytes[(PARTITION_START_LBA * SECTOR) as usize..],
    );
    let fsck = run(Command::new(tool("fsck.fat")).args(["-n", "-v"]).arg(&part));
    assert!(fsck.contains("2 FATs, 32 bit entries"), "{fsck}");
    assert!(fsck.contains("2048 hidden sectors"), "{fsck}");
    assert!(
        fsck.contains(&format!("{cluster} bytes per cluster")),
        "{fsck}"
    );
    for complaint in [
        "Fixing",
        "Deleting",
        "Renamed",
        "Moving",
        "differences",
        "uninitialized",
        // "Free cluster summary wrong", "Auto-correcting" (FSInfo's free count; fat::place_files
        // moves it on for the clusters it gives the files).
        "wrong",
        "orrect",
    ] {
        assert!(!fsck.contains(complaint), "fsck.fat: {complaint}:\n{fsck}");
    }

    // mtools reads the partition at its offset: names (long ones too), sizes, bytes.
    let at = format!("{}@@1M", path.display());
    let env = [("MTOOLS_SKIP_CHECK", "1")];
    let listing = run(Command::new(tool("mdir"))
        .envs(env)
        .args(["-/", "-b", "-i", &at, "::"]));
    for (name, _) in &files {
        assert!(
            listing.lines().any(|l| l == format!("::/{name}")),
            "{name} missing in:\n{listing}"
        );
    }
    let label = run(Command::new(tool("mlabel"))
        .envs(env)
        .args(["-s", "-i", &at, "::"]));
    assert!(label.contains("DOMFORGE"), "{label}");
    let out = path.with_file_name("copied");
    for (name, bytes) in &files {
        let _ = std::fs::remove_file(&out);
        run(Command::new(tool("mcopy"))
            .envs(env)
            .args(["-n", "-i", &at])
            .arg(format!("::/{name}"))
            .arg(&out));
        assert_eq!(&std::fs::read(&out).unwrap(), bytes, "{name}");
    }
    // Every timestamp is the fixed one.
    let long = run(Command::new(tool("mdir"))
        .envs(env)
        .args(["-i", &at, "::/modules"]));
    assert!(
        long.contains("1980-01-01") || long.contains("01-01-1980"),
        "{long}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let _ = std::fs::remove_dir_all(part.parent().unwrap());
}
