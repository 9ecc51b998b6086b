//! Cross-checks the newc writer against GNU cpio, an independent implementation: the
//! archive must list and extract with the same names, types, modes, device numbers, link
//! targets and contents.

use std::path::Path;
use std::process::Command;

use initramfs::cpio::Initramfs;

fn have_cpio() -> bool {
    match Command::new("cpio").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("GNU cpio is required in CI (apt-get install cpio)");
            }
            eprintln!("SKIPPED: GNU cpio not installed (apt-get install cpio)");
            false
        }
    }
}

fn sample() -> Initramfs {
    let mut initramfs = Initramfs::new();
    initramfs
        .add_file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
        .unwrap();
    initramfs.add_file("etc/empty", 0o600, Vec::new()).unwrap();
    // Sizes 1..=7 exercise every padding remainder.
    for n in 1..=7u8 {
        initramfs
            .add_file(&format!("pad/f{n}"), 0o644, vec![b'a' + n; usize::from(n)])
            .unwrap();
    }
    // A name length that makes header+name a multiple of 4 exactly (110 + 2 = 112).
    initramfs.add_file("x", 0o644, b"abcd".to_vec()).unwrap();
    let big: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
    initramfs.add_file("usr/lib/big.bin", 0o644, big).unwrap();
    initramfs.add_symlink("bin/sh", "busybox").unwrap();
    initramfs.add_directory("tmp", 0o1777).unwrap();
    initramfs.add_char_device("dev/null", 0o666, 1, 3).unwrap();
    initramfs
}

#[test]
fn gnu_cpio_lists_what_we_wrote() {
    if !have_cpio() {
        return;
    }
    let archive = sample().to_cpio().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.cpio");
    std::fs::write(&path, &archive).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("LC_ALL=C cpio -itv --quiet < {}", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cpio -t failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    // The member name is the field after the date (mtime 0 is listed as "Jan  1  1970");
    // device entries have "major, minor" in place of the size, so count from the date.
    let name_of = |line: &str| -> Option<String> {
        let (_, rest) = line.split_once(" 1970 ")?;
        Some(rest.split(" -> ").next()?.to_owned())
    };
    let find = |name: &str| {
        listing
            .lines()
            .find(|l| name_of(l).as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from listing:\n{listing}"))
            .to_owned()
    };
    assert!(
        find("dev/console").starts_with("crw-------"),
        "{}",
        find("dev/console")
    );
    assert!(
        find("dev/console").contains(" 5,"),
        "{}",
        find("dev/console")
    );
    assert!(find("dev/null").starts_with("crw-rw-rw-"));
    assert!(find("tmp").starts_with("drwxrwxrwt"));
    assert!(find("init").starts_with("-rwxr-xr-x"));
    assert!(find("bin/sh").starts_with("lrwxrwxrwx"));
    assert!(find("bin/sh").ends_with("bin/sh -> busybox"));
    assert!(find("usr/lib/big.bin").contains(" 200003 "));
    // Parents precede children, as the kernel needs.
    let names: Vec<String> = listing.lines().filter_map(name_of).collect();
    assert_eq!(
        names.len(),
        listing.lines().count(),
        "every line has an mtime of 0"
    );
    for (i, name) in names.iter().enumerate() {
        if let Some((parent, _)) = name.rsplit_once('/') {
            let parent_index = names.iter().position(|n| n == parent).unwrap();
            assert!(parent_index < i, "{parent} after {name}");
        }
    }
}

fn compare_tree(initramfs: &Initramfs, root: &Path, files: &[&str]) {
    for name in files {
        let on_disk = std::fs::read(root.join(name)).unwrap();
        match initramfs.get(name) {
            Some(initramfs::cpio::EntryKind::File(data)) => assert_eq!(&on_disk, data, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn gnu_cpio_extracts_identical_contents() {
    if !have_cpio() {
        return;
    }
    let initramfs = sample();
    let archive = initramfs.to_cpio().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut child = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(&out_dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    assert!(child.wait().unwrap().success());
    let names = [
        "init",
        "etc/empty",
        "x",
        "usr/lib/big.bin",
        "pad/f1",
        "pad/f2",
        "pad/f3",
        "pad/f4",
        "pad/f5",
        "pad/f6",
        "pad/f7",
    ];
    compare_tree(&initramfs, &out_dir, &names);
    assert_eq!(
        std::fs::read_link(out_dir.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("init"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn gzip_output_decompresses_to_the_plain_archive() {
    // `gzip -dc` (not flate2) is the independent decoder here.
    let initramfs = sample();
    let plain = initramfs.to_cpio().unwrap();
    let gz = initramfs.to_cpio_gz().unwrap();
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&gz).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, plain);
}
