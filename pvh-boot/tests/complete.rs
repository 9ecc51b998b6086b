//! Files cut short are refused against the sizes their own headers promise. Every whole file is
//! made by the format's own tool (dtc, GNU cpio, gzip/xz/lz4/bzip2, U-Boot's mkimage) or is a
//! real release (Debian's Xen arm64 image, when cached); the truncated copy is the first bytes of
//! that file, as an interrupted download leaves it.

mod common;

use std::path::Path;
use std::process::Command;

use pvh_boot::identify::{check_complete, identify};

fn cut(bytes: &[u8], n: usize) -> &[u8] {
    &bytes[..n.min(bytes.len())]
}

fn reason(bytes: &[u8]) -> String {
    match check_complete(bytes) {
        Ok(()) => panic!("a truncated file passed"),
        Err(e) => e.to_string(),
    }
}

fn tools(list: &[(&str, &str)]) -> bool {
    common::require_tools(list)
}

fn dtb(dir: &Path) -> Vec<u8> {
    let dts = dir.join("t.dts");
    std::fs::write(
        &dts,
        "/dts-v1/;\n/ { model = \"t\"; #address-cells = <2>; #size-cells = <2>;\n\
         memory@40000000 { device_type = \"memory\"; reg = <0 0x40000000 0 0x8000000>; }; };\n",
    )
    .unwrap();
    common::run(
        Command::new("dtc")
            .args(["-I", "dts", "-O", "dtb", "-p", "256"])
            .arg(&dts),
    )
}

#[test]
fn a_device_tree_blob_must_hold_its_totalsize() {
    if !tools(&[("dtc", "device-tree-compiler")]) {
        return;
    }
    let dir = common::temp_dir("complete-dtb");
    let whole = dtb(&dir);
    assert_eq!(check_complete(&whole), Ok(()));
    assert_eq!(identify(&whole), Some("a device tree blob (DTB)"));
    // totalsize as dtc wrote it (header word 1, big-endian), independent of our parser.
    let total = u32::from_be_bytes(whole[4..8].try_into().unwrap());
    assert_eq!(total as usize, whole.len());
    assert_eq!(
        reason(cut(&whole, 100)),
        format!(
            "a device tree blob cut short or damaged: its header says totalsize {total} bytes, the file has 100"
        )
    );
    assert_eq!(
        reason(cut(&whole, 20)),
        "a device tree blob cut short or damaged: the 40-byte header is cut at 20 bytes"
    );
}

fn cpio_newc(dir: &Path) -> Vec<u8> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("init"), vec![b'x'; 3000]).unwrap();
    std::fs::write(root.join("bin/tool"), vec![b'y'; 5000]).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd root && printf 'init\\nbin\\nbin/tool\\n' | cpio -o -H newc --quiet")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn a_cpio_archive_must_hold_every_entry_and_its_trailer() {
    if !tools(&[("cpio", "cpio")]) {
        return;
    }
    let dir = common::temp_dir("complete-cpio");
    let whole = cpio_newc(&dir);
    assert_eq!(check_complete(&whole), Ok(()));
    assert_eq!(identify(&whole), Some("a cpio archive (an initramfs)"));
    // The first entry's header (110 bytes) and name `init\0` (padded to 116) then 3000 bytes.
    assert_eq!(
        reason(cut(&whole, 1000)),
        "a cpio archive cut short or damaged: entry `init` at byte 0 needs 3000 bytes of data up to byte 3116, the file has 1000"
    );
    // Cut right after the last file's data: the TRAILER!!! entry is missing.
    let trailer = whole.windows(10).position(|w| w == b"TRAILER!!!").unwrap() - 110;
    assert_eq!(
        reason(cut(&whole, trailer)),
        format!(
            "a cpio archive cut short or damaged: it ends at byte {trailer} without the `TRAILER!!!` entry that closes an archive"
        )
    );
}

#[test]
fn compressed_ramdisks_must_decode_to_their_end() {
    if !tools(&[
        ("cpio", "cpio"),
        ("gzip", "gzip"),
        ("xz", "xz-utils"),
        ("bzip2", "bzip2"),
        ("lz4", "lz4"),
        ("zstd", "zstd"),
    ]) {
        return;
    }
    let dir = common::temp_dir("complete-compressed");
    let raw = cpio_newc(&dir);
    let input = dir.join("initrd.cpio");
    std::fs::write(&input, &raw).unwrap();
    for (tool, args, name) in [
        ("gzip", &["-9", "-n", "-c"][..], "gzip"),
        ("xz", &["--check=crc32", "-c"][..], "xz"),
        ("bzip2", &["-c"][..], "bzip2"),
        ("lz4", &["-l", "-c"][..], "lz4"),
        ("zstd", &["-q", "-c"][..], "zstd"),
    ] {
        let whole = common::run(Command::new(tool).args(args).arg(&input));
        assert_eq!(check_complete(&whole), Ok(()), "{tool}");
        let half = cut(&whole, whole.len() / 2);
        let r = reason(half);
        let article = if name == "xz" || name == "lz4" {
            "an"
        } else {
            "a"
        };
        assert!(
            r.starts_with(&format!(
                "{article} {name} file cut short or damaged: the {name} stream does not decode to its end"
            )),
            "{tool}: {r}"
        );
    }
    // A whole gzip stream whose cpio inside is cut: the archive is reported.
    let inner_cut = dir.join("cut.cpio");
    std::fs::write(&inner_cut, cut(&raw, 1000)).unwrap();
    let gz = common::run(Command::new("gzip").args(["-n", "-c"]).arg(&inner_cut));
    assert_eq!(
        reason(&gz),
        "a gzip file cut short or damaged: the cpio archive inside: entry `init` at byte 0 needs 3000 bytes of data up to byte 3116, the file has 1000"
    );
}

#[test]
fn a_uimage_must_hold_ih_size_bytes() {
    if !tools(&[("mkimage", "u-boot-tools")]) {
        return;
    }
    let dir = common::temp_dir("complete-uimage");
    let data = dir.join("payload");
    std::fs::write(&data, vec![0x5a; 10000]).unwrap();
    let img = dir.join("uImage");
    common::run(
        Command::new("mkimage")
            .args(["-A", "arm64", "-O", "linux", "-T", "kernel", "-C", "none"])
            .args(["-a", "0x80000", "-e", "0x80000", "-n", "t", "-d"])
            .arg(&data)
            .arg(&img),
    );
    let whole = std::fs::read(&img).unwrap();
    assert_eq!(check_complete(&whole), Ok(()));
    assert_eq!(identify(&whole), Some("a U-Boot legacy image (uImage)"));
    assert_eq!(
        reason(cut(&whole, 4096)),
        "a U-Boot uImage cut short or damaged: its header says 64 + 10000 (ih_size) = 10064 bytes, the file has 4096"
    );
}

/// An arm64 Image with an EFI stub, laid out by hand from booting.rst and the PE/COFF
/// specification as Linux's `arch/arm64/kernel/efi-header.S` does: PE header at 0x40, two
/// sections whose raw data ends at the end of the file.
fn pe_image(file_len: usize, image_size: u64) -> Vec<u8> {
    let mut b = vec![0u8; file_len];
    b[0..2].copy_from_slice(b"MZ");
    b[8..16].copy_from_slice(&0u64.to_le_bytes()); // text_offset
    b[16..24].copy_from_slice(&image_size.to_le_bytes());
    b[24..32].copy_from_slice(&0xau64.to_le_bytes());
    b[56..60].copy_from_slice(b"ARMd");
    b[60..64].copy_from_slice(&0x40u32.to_le_bytes());
    let pe = 0x40;
    b[pe..pe + 4].copy_from_slice(b"PE\0\0");
    b[pe + 4..pe + 6].copy_from_slice(&0xaa64u16.to_le_bytes()); // IMAGE_FILE_MACHINE_ARM64
    b[pe + 6..pe + 8].copy_from_slice(&2u16.to_le_bytes()); // NumberOfSections
    b[pe + 20..pe + 22].copy_from_slice(&160u16.to_le_bytes()); // SizeOfOptionalHeader
    let table = pe + 24 + 160;
    let text_at = 0x1000u32;
    let data_at = (file_len as u32) / 2;
    for (i, (name, at, size)) in [
        (b".text\0\0\0", text_at, data_at - text_at),
        (b".data\0\0\0", data_at, file_len as u32 - data_at),
    ]
    .into_iter()
    .enumerate()
    {
        let s = table + i * 40;
        b[s..s + 8].copy_from_slice(name);
        b[s + 16..s + 20].copy_from_slice(&size.to_le_bytes());
        b[s + 20..s + 24].copy_from_slice(&at.to_le_bytes());
    }
    b
}

#[test]
fn an_arm64_image_must_hold_what_its_pe_header_places() {
    let whole = pe_image(0x20000, 0x30000);
    assert_eq!(check_complete(&whole), Ok(()));
    assert_eq!(
        reason(cut(&whole, 4096)),
        "an arm64 Image cut short or damaged: its PE header places section `.text` up to byte 65536, the file has 4096"
    );
    assert_eq!(
        reason(cut(&whole, 0x18000)),
        "an arm64 Image cut short or damaged: its PE header places section `.data` up to byte 131072, the file has 98304"
    );
    // A file longer than image_size (text + data + BSS) is not the image its header describes.
    assert_eq!(
        reason(&pe_image(0x20000, 0x10000)),
        "an arm64 Image cut short or damaged: the file has 131072 bytes, more than the 65536 (image_size) its header says the image occupies"
    );
}

/// Real release files from domforge's download cache (Debian's Xen and Linux for arm64 and amd64,
/// the probe initramfs built from Debian's busybox), when a build has fetched them: each whole file
/// passes, and its first 4 KiB (or half, for a compressed one) are refused with the format's own
/// promise.
#[test]
fn real_release_files_pass_whole_and_fail_cut() {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap()
        .join("domforge");
    let mut found = Vec::new();
    for arch in ["arm64", "amd64"] {
        let Ok(dirs) = std::fs::read_dir(cache.join("packages").join(arch)) else {
            continue;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path().join("root/boot")) else {
                continue;
            };
            for f in files.flatten() {
                let n = f.file_name().to_string_lossy().to_string();
                if n.starts_with("vmlinuz-") || (n.starts_with("xen-") && !n.contains('.')) {
                    found.push(f.path());
                }
            }
        }
    }
    if let Ok(probes) = std::fs::read_dir(cache.join("probe")) {
        found.extend(probes.flatten().map(|e| e.path()));
    }
    if found.is_empty() {
        eprintln!(
            "SKIPPED: no Debian kernel, Xen or probe image cached (run `cargo test --test build_arm`)"
        );
        return;
    }
    for path in found {
        let whole = std::fs::read(&path).unwrap();
        assert_eq!(check_complete(&whole), Ok(()), "{}", path.display());
        let compressed = whole.starts_with(&[0x1f, 0x8b]);
        let n = if compressed { whole.len() / 2 } else { 4096 };
        let r = reason(cut(&whole, n));
        let want = match identify(&whole) {
            Some("an arm64 Image (a Linux or Xen kernel)") => {
                "an arm64 Image cut short or damaged: its PE header places section `"
            }
            Some("an x86 bzImage (a Linux kernel)") => {
                "an x86 bzImage cut short or damaged: its bzImage payload needs "
            }
            Some("gzip-compressed data") => {
                "a gzip file cut short or damaged: the gzip stream does not decode to its end"
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        };
        assert!(r.starts_with(want), "{}: {r}", path.display());
    }
}

#[test]
fn identify_names_what_a_file_looks_like() {
    assert_eq!(
        identify(b"\x7fELF\x02\x01\x01"),
        Some("an ELF file (a kernel or a program)")
    );
    assert_eq!(identify(&[0x1f, 0x8b, 8, 0]), Some("gzip-compressed data"));
    assert_eq!(identify(b"[system]\nname = \"x\"\n"), None);
    let mut bz = vec![0u8; 0x300];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    assert_eq!(identify(&bz), Some("an x86 bzImage (a Linux kernel)"));
}

/// Every prefix, and every single-byte change of the headers, of files made by the real tools is
/// judged without a panic; each whole file passes and no proper prefix of a DTB, uImage or cpio
/// archive does.
#[test]
fn every_prefix_and_header_flip_is_judged_without_panic() {
    if !tools(&[
        ("dtc", "device-tree-compiler"),
        ("cpio", "cpio"),
        ("gzip", "gzip"),
    ]) {
        return;
    }
    let dir = common::temp_dir("complete-prefixes");
    let cpio = cpio_newc(&dir);
    let input = dir.join("i.cpio");
    std::fs::write(&input, &cpio).unwrap();
    let gz = common::run(Command::new("gzip").args(["-n", "-c"]).arg(&input));
    let files = [
        ("dtb", dtb(&dir)),
        ("cpio", cpio),
        ("gzip", gz),
        ("pe", pe_image(0x4000, 0x8000)),
    ];
    for (name, whole) in &files {
        assert_eq!(check_complete(whole), Ok(()), "{name}");
        // (Below 8 bytes not even the magic number is there to recognise.)
        for n in 8..whole.len() {
            let r = check_complete(&whole[..n]);
            // A cpio archive may end in zero padding after its trailer.
            if *name == "dtb" || (*name == "cpio" && whole[n..].iter().any(|&b| b != 0)) {
                assert!(r.is_err(), "{name}: a {n}-byte prefix passed");
            }
        }
        for i in 0..whole.len().min(512) {
            for bit in [0x01u8, 0x80] {
                let mut m = whole.clone();
                m[i] ^= bit;
                let _ = check_complete(&m);
                let _ = identify(&m);
            }
        }
    }
}
