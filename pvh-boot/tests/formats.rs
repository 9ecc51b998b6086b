//! Kernel formats built by independent tools: tiny kernels assembled and linked by binutils
//! (`as`, `ld`), compressed by the upstream CLIs exactly as Linux's build does (size trailer
//! included), wrapped in a bzImage setup header laid out per `Documentation/arch/x86/boot.rst`.
//! readelf is the reference for notes and segments; the original ELF bytes are the reference
//! for every decompressor.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use pvh_boot::inspect::{ImageFormat, inspect_kernel};
use pvh_boot::kernel::{Arch, Compression, ElfKernel, ImageError, KernelImage, pvh_elf_bytes};

/// A tiny kernel with the Xen notes Linux emits (GUEST_OS, PHYS32_ENTRY) and optionally
/// PHYS32_RELOC, a BSS, and text at 16 MiB.
fn assemble(dir: &Path, name: &str, bits: u32, pvh_note: bool, reloc_note: bool) -> PathBuf {
    let word = if bits == 64 { ".quad" } else { ".long" };
    let mut src = String::from(
        ".macro XENNOTE type, desc:vararg\n\
         .pushsection .note.Xen, \"a\", @note\n\
         .balign 4\n\
         .long 4f - 3f\n.long 6f - 5f\n.long \\type\n\
         3: .asciz \"Xen\"\n4: .balign 4\n5: \\desc\n6: .balign 4\n\
         .popsection\n.endm\n",
    );
    src.push_str("XENNOTE 6, .asciz \"linux\"\n");
    if pvh_note {
        src.push_str(&format!("XENNOTE 18, {word} pvh_start\n"));
    }
    if reloc_note {
        src.push_str("XENNOTE 19, .long 0x200000, 0x1000000, 0x3fffffff\n");
    }
    src.push_str(
        ".text\n.globl _start\n_start: hlt\n.balign 16\npvh_start: cli\nhlt\n.fill 5000, 1, 0x90\n",
    );
    src.push_str(".data\n.long 0xdeadbeef\n.fill 3000, 1, 0x5a\n.bss\n.skip 20000\n");
    let s = dir.join(format!("{name}.S"));
    let o = dir.join(format!("{name}.o"));
    let elf = dir.join(format!("{name}.elf"));
    std::fs::write(&s, src).unwrap();
    let (as_flag, ld_emul) = if bits == 64 {
        ("--64", "elf_x86_64")
    } else {
        ("--32", "elf_i386")
    };
    common::run(Command::new("as").arg(as_flag).arg("-o").arg(&o).arg(&s));
    common::run(
        Command::new("ld")
            .args(["-m", ld_emul, "-Ttext=0x1000000", "-o"])
            .arg(&elf)
            .arg(&o),
    );
    elf
}

fn tools() -> bool {
    common::require_tools(&[
        ("as", "binutils"),
        ("ld", "binutils"),
        ("readelf", "binutils"),
    ])
}

/// Compress like `scripts/Makefile.lib` does and append the 4-byte size (`size_append`)
/// for every format except gzip, whose ISIZE trailer already holds it.
fn linux_compress(elf: &[u8], c: Compression, dir: &Path) -> Vec<u8> {
    let input = dir.join("vmlinux.bin");
    std::fs::write(&input, elf).unwrap();
    let (tool, args): (&str, &[&str]) = match c {
        Compression::Gzip => ("gzip", &["-n", "-9", "-c"]),
        Compression::Bzip2 => ("bzip2", &["-9", "-c"]),
        Compression::Lzma => ("lzma", &["-9", "-c"]),
        // scripts/xz_wrap.sh for x86.
        Compression::Xz => (
            "xz",
            &["--check=crc32", "--x86", "--lzma2=dict=32MiB", "-c"],
        ),
        Compression::Lz4 => ("lz4", &["-l", "-9", "-c"]),
        Compression::Zstd => ("zstd", &["-22", "--ultra", "-c"]),
        Compression::Lzo => ("lzop", &["-9", "-c"]),
    };
    let mut out = common::run(Command::new(tool).args(args).arg(&input));
    if c != Compression::Gzip {
        out.extend_from_slice(&(elf.len() as u32).to_le_bytes());
    }
    out
}

/// A bzImage with one setup sector past the boot sector and the given payload
/// (offsets: `Documentation/arch/x86/boot.rst`, "The Real-Mode Kernel Header").
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let setup_sects = 1u8;
    let setup_len = (usize::from(setup_sects) + 1) * 512;
    let payload_offset = 0x40usize; // relative to the protected-mode code
    let mut img = vec![0u8; setup_len + payload_offset];
    img[0x1f1] = setup_sects;
    img[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x20e..0x210].copy_from_slice(&(0x300u16 - 0x200).to_le_bytes()); // kernel_version
    img[0x300..0x300 + 12].copy_from_slice(b"6.1.0-test\0\0");
    img[0x234] = 1;
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    img[0x248..0x24c].copy_from_slice(&(payload_offset as u32).to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    img.extend_from_slice(payload);
    img
}

#[test]
fn elf64_and_elf32_notes_and_segments_match_readelf() {
    if !tools() {
        return;
    }
    let dir = common::temp_dir("elf");
    for (bits, reloc) in [(64, true), (32, false)] {
        let path = assemble(&dir, &format!("k{bits}"), bits, true, reloc);
        let bytes = std::fs::read(&path).unwrap();
        let elf = ElfKernel::parse(&bytes).unwrap();
        assert_eq!(elf.arch, if bits == 64 { Arch::X86_64 } else { Arch::X86 });
        assert_eq!(elf.pvh_entry(), common::readelf_pvh_entry(&path));
        assert!(elf.pvh_entry().is_some());
        common::assert_notes_match_readelf(&elf.xen_notes, &path);
        let (entry, loads) = common::readelf_loads(&path);
        assert_eq!(elf.entry, entry);
        let ours: Vec<[u64; 5]> = elf
            .segments
            .iter()
            .map(|s| [s.offset, s.vaddr, s.paddr, s.filesz, s.memsz])
            .collect();
        assert_eq!(ours, loads);
        if reloc {
            let r = elf.phys32_reloc().expect("PHYS32_RELOC");
            assert_eq!((r.align, r.min, r.max), (0x200000, 0x1000000, 0x3fffffff));
        }
        let report = inspect_kernel(&bytes).unwrap();
        assert_eq!(
            report.format,
            if bits == 64 {
                ImageFormat::Elf64
            } else {
                ImageFormat::Elf32
            }
        );
        assert_eq!(report.pvh_entry, elf.pvh_entry());
        assert!(report.to_string().contains("PHYS32_ENTRY"));
    }
}

#[test]
fn every_linux_compression_round_trips_through_a_bzimage() {
    if !tools() {
        return;
    }
    let dir = common::temp_dir("compress");
    let elf_path = assemble(&dir, "k", 64, true, false);
    let elf = std::fs::read(&elf_path).unwrap();
    let expected_entry = common::readelf_pvh_entry(&elf_path);
    let formats = [
        (Compression::Gzip, "gzip", "gzip"),
        (Compression::Bzip2, "bzip2", "bzip2"),
        (Compression::Lzma, "lzma", "xz-utils"),
        (Compression::Xz, "xz", "xz-utils"),
        (Compression::Lz4, "lz4", "lz4"),
        (Compression::Zstd, "zstd", "zstd"),
    ];
    for (c, tool, pkg) in formats {
        if !common::require_tools(&[(tool, pkg)]) {
            continue;
        }
        let payload = linux_compress(&elf, c, &dir);
        let img = bzimage(&payload);
        let KernelImage::BzImage(bz) = KernelImage::parse(&img).unwrap() else {
            panic!("not a bzImage")
        };
        assert_eq!(bz.compression, Some(c));
        assert_eq!(bz.kernel_version.as_deref(), Some("6.1.0-test"));
        if !pvh_boot::decompress::has_decoder(c) {
            assert!(matches!(
                bz.vmlinux(),
                Err(ImageError::UnsupportedCompression { .. })
            ));
            continue;
        }
        let out = bz.vmlinux().unwrap_or_else(|e| panic!("{c}: {e}"));
        assert!(
            *out == *elf,
            "{c}: decompressed bytes differ from the original ELF"
        );
        let report = inspect_kernel(&img).unwrap();
        assert_eq!(
            (report.format, report.compression, report.pvh_entry),
            (ImageFormat::BzImage, Some(c), expected_entry)
        );
        assert_eq!(pvh_elf_bytes(&img).unwrap().as_ref(), &elf[..]);

        // Whole-file compressed ELF (vmlinux.gz and friends) is recognised too.
        let report = inspect_kernel(&payload).unwrap();
        assert_eq!(
            (report.format, report.compression),
            (ImageFormat::Elf64, Some(c))
        );

        // A corrupted stream is rejected with a reason, never a panic.
        let mut bad = payload.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 16] {
            *b ^= 0xa5;
        }
        let err = KernelImage::parse(&bzimage(&bad)).and_then(|k| match k {
            KernelImage::BzImage(bz) => bz.vmlinux().map(|_| ()),
            _ => Ok(()),
        });
        match err {
            Err(
                ImageError::Decompress { .. }
                | ImageError::SizeMismatch { .. }
                | ImageError::BadPayload { .. },
            ) => {}
            // Some formats (lz4, bzip2 without a checked block) may decode garbage of the
            // right size; the ELF check below must then catch it or the bytes differ.
            Ok(()) => {}
            other => panic!("{c}: unexpected result for corrupt data: {other:?}"),
        }
    }
}

#[test]
fn malformed_images_are_rejected_with_the_reason() {
    if !tools() {
        return;
    }
    let dir = common::temp_dir("malformed");
    let with_note = std::fs::read(assemble(&dir, "ok", 64, true, false)).unwrap();
    let without_note = std::fs::read(assemble(&dir, "nonote", 64, false, false)).unwrap();

    // Truncated headers.
    assert!(matches!(
        KernelImage::parse(&with_note[..40]),
        Err(ImageError::Elf(_))
    ));
    assert!(matches!(
        KernelImage::parse(&[0u8; 10]),
        Err(ImageError::Truncated { .. })
    ));
    let img = bzimage(&with_note);
    assert!(matches!(
        KernelImage::parse(&img[..0x250]),
        Err(ImageError::Truncated { .. })
    ));
    assert!(matches!(
        KernelImage::parse(&img[..img.len() - 1]),
        Err(ImageError::Truncated {
            what: "bzImage payload",
            ..
        })
    ));

    // An ELF without the PVH note.
    let elf = ElfKernel::parse(&without_note).unwrap();
    assert_eq!(elf.pvh_entry_checked(), Err(ImageError::MissingPvhNote));
    let req = pvh_boot::layout::LayoutRequest {
        memory_bytes: 64 << 20,
        vcpus: 1,
        cmdline: "",
        ramdisk: None,
    };
    let mut mem = pvh_boot::memory::VecGuestMemory::new(&[]);
    let err = pvh_boot::build(&without_note, &req, &mut mem).unwrap_err();
    assert!(
        err.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"),
        "{err}"
    );

    // The wrong architecture: the same ELF relabelled EM_AARCH64 (e_machine at offset 18).
    let mut arm = with_note.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    let elf = ElfKernel::parse(&arm).unwrap();
    assert!(matches!(
        elf.pvh_entry_checked(),
        Err(ImageError::WrongArchitecture {
            found: Arch::Aarch64,
            ..
        })
    ));

    // An unknown compression.
    let mut junk = vec![0x42u8, 0x00, 0x13, 0x37];
    junk.extend_from_slice(&[0u8; 64]);
    assert!(matches!(
        KernelImage::parse(&bzimage(&junk)),
        Err(ImageError::UnknownCompression {
            magic: [0x42, 0x00, 0x13, 0x37]
        })
    ));
    // LZO is recognised and refused with an explanation.
    let mut lzo = vec![0x89, b'L', b'Z', b'O', 0, 0x0d, 0x0a, 0x1a, 0x0a];
    lzo.extend_from_slice(&[0u8; 64]);
    let lzo_img = bzimage(&lzo);
    let KernelImage::BzImage(bz) = KernelImage::parse(&lzo_img).unwrap() else {
        panic!()
    };
    assert!(matches!(
        bz.vmlinux(),
        Err(ImageError::UnsupportedCompression {
            compression: Compression::Lzo,
            ..
        })
    ));

    // Not a kernel at all.
    assert_eq!(
        KernelImage::parse(&[0x11u8; 4096]).unwrap_err(),
        ImageError::UnknownFormat
    );

    // A payload that decompresses to something other than an ELF.
    if common::have_tool("gzip") {
        let not_elf = linux_compress(&[0x55u8; 5000], Compression::Gzip, &dir);
        let not_elf_img = bzimage(&not_elf);
        let KernelImage::BzImage(bz) = KernelImage::parse(&not_elf_img).unwrap() else {
            panic!()
        };
        assert!(matches!(bz.vmlinux(), Err(ImageError::BadPayload { .. })));
    }
}

/// arm64 `Image` header per `Documentation/arch/arm64/booting.rst`, plain and gzip'd.
#[test]
fn arm64_image_header_plain_and_gzip() {
    let mut img = vec![0u8; 128 * 1024];
    img[8..16].copy_from_slice(&0x80000u64.to_le_bytes()); // text_offset
    img[16..24].copy_from_slice(&0x1a0000u64.to_le_bytes()); // image_size
    img[24..32].copy_from_slice(&0b1010u64.to_le_bytes()); // LE, 4K pages, anywhere
    img[56..60].copy_from_slice(b"ARMd");
    let KernelImage::Arm64(h) = KernelImage::parse(&img).unwrap() else {
        panic!("not an arm64 Image")
    };
    assert_eq!(
        (
            h.text_offset,
            h.image_size,
            h.big_endian(),
            h.page_size(),
            h.place_anywhere()
        ),
        (0x80000, 0x1a0000, false, Some(4096), true)
    );
    let report = inspect_kernel(&img).unwrap();
    assert_eq!(
        (report.format, report.arch, report.entry, report.compression),
        (ImageFormat::Arm64Image, Arch::Aarch64, 0x80000, None)
    );
    assert!(matches!(
        pvh_elf_bytes(&img),
        Err(ImageError::WrongArchitecture {
            found: Arch::Aarch64,
            ..
        })
    ));

    if common::require_tools(&[("gzip", "gzip")]) {
        let dir = common::temp_dir("arm64");
        let gz = linux_compress(&img, Compression::Gzip, &dir);
        let report = inspect_kernel(&gz).unwrap();
        assert_eq!(
            (report.format, report.compression, report.entry),
            (ImageFormat::Arm64Image, Some(Compression::Gzip), 0x80000)
        );
    }
    assert!(matches!(
        KernelImage::parse(&img[..60]),
        Err(ImageError::Truncated { .. }) | Err(ImageError::UnknownFormat)
    ));
}

#[cfg(feature = "serde")]
#[test]
fn inspect_json_has_the_documented_fields() {
    if !tools() {
        return;
    }
    let dir = common::temp_dir("json");
    let bytes = std::fs::read(assemble(&dir, "k", 64, true, true)).unwrap();
    let report = inspect_kernel(&bytes).unwrap();
    let v: serde_json::Value = serde_json::to_value(&report).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "arch",
            "compression",
            "entry",
            "pvh_entry",
            "segments",
            "format",
            "xen_notes"
        ]
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(v["format"], "elf64");
    assert_eq!(v["arch"], "x86_64");
    assert_eq!(v["pvh_entry"], report.pvh_entry.unwrap());
    let reloc = report.xen_notes.iter().find(|n| n.kind == 19).unwrap();
    assert!(matches!(
        reloc.value,
        pvh_boot::kernel::XenNoteValue::Phys32Reloc(_)
    ));
}
