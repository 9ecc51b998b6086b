//! Kernels prepared on the host (issue 14), checked with independent tools: the guest kernel in
//! the x86 example's dom0 initramfs (`cpio -i` extracts it) must be LZ4 legacy frames plus a
//! 4-byte size trailer that `lz4 -d` decodes to an ELF that loads exactly as the ELF `xz -d` gets
//! from the source bzImage's payload (found by the boot protocol's setup header: `setup_sects` at
//! 0x1f1, `payload_offset`/`payload_length` at 0x248/0x24c, Documentation/arch/x86/boot.rst):
//! per `readelf -lW`, the same `PT_LOAD`s (addresses, `p_memsz`), each segment's file bytes a
//! prefix of the original's with only zeros cut, and the notes inside the first 1 MiB. That ELF
//! must carry Xen's PVH entry note (`readelf -n`: XEN_ELFNOTE_PHYS32_ENTRY). The trailer must
//! state the ELF's size. Needs domforge-init (`scripts/build-init`).

mod common;
use common::tool as run;
use std::path::Path;

const TEST: &str = "kernel_prep";

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

#[test]
fn the_initramfs_carries_the_bzimages_elf_lz4_compressed() {
    if !test_support::need_tools(
        TEST,
        &[
            ("cpio", "cpio"),
            ("lz4", "lz4"),
            ("xz", "xz-utils"),
            ("readelf", "binutils"),
        ],
    ) {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(TEST);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("root")).expect("mkdir");
    let Some(common::Built { loaded, plan, out }) = common::build(
        TEST,
        "examples/qemu-x86_64.toml",
        &common::quiet(),
        &tmp.join("out"),
    ) else {
        return;
    };

    // The guest kernel as dom0 will find it.
    let cpio = std::fs::read(out.dir.join("modules/dom0-initramfs.cpio")).expect("initramfs");
    let root = tmp.join("root");
    run("cpio", &["-i", "-d", "--quiet"], &root, Some(&cpio));
    let kernel_module = plan
        .modules
        .iter()
        .find(|m| m.kind == firmware_config::plan::ModuleKind::Kernel)
        .expect("a guest kernel");
    let prepared = std::fs::read(root.join("domforge/modules").join(&kernel_module.id))
        .expect("the guest kernel in the initramfs");
    assert_eq!(
        &prepared[..4],
        &0x184c_2102u32.to_le_bytes(),
        "LZ4 legacy magic"
    );
    let (frames, trailer) = prepared.split_at(prepared.len() - 4);
    let framed = tmp.join("kernel.lz4");
    std::fs::write(&framed, frames).expect("write");
    let elf = run(
        "lz4",
        &["-d", "-c", &framed.display().to_string()],
        &tmp,
        None,
    );
    assert_eq!(le32(trailer, 0), elf.len(), "the size trailer");

    // The same ELF, from the source bzImage by the boot protocol and xz.
    let source = loaded.artifacts[&kernel_module.source]
        .as_ref()
        .expect("examined");
    let bz = std::fs::read(&source.path).expect("bzImage");
    assert_eq!(&bz[0x202..0x206], b"HdrS", "a bzImage");
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let (offset, length) = (le32(&bz, 0x248), le32(&bz, 0x24c));
    let payload = &bz[pm_start + offset..pm_start + offset + length];
    assert_eq!(
        &payload[..6],
        b"\xfd7zXZ\0",
        "Debian's kernel is xz-compressed"
    );
    let from_xz = run("xz", &["-d", "-c", "--single-stream"], &tmp, Some(payload));
    let orig_path = tmp.join("vmlinux.orig");
    std::fs::write(&orig_path, &from_xz).expect("write");
    let elf_path = tmp.join("vmlinux");
    std::fs::write(&elf_path, &elf).expect("write");
    let (orig, prep) = (
        program_headers(&orig_path, &tmp),
        program_headers(&elf_path, &tmp),
    );
    let loads = |v: &[Phdr]| {
        v.iter()
            .filter(|p| p.kind == "LOAD")
            .cloned()
            .collect::<Vec<_>>()
    };
    let (orig_loads, prep_loads) = (loads(&orig), loads(&prep));
    assert_eq!(orig_loads.len(), prep_loads.len(), "PT_LOAD count");
    for (o, p) in orig_loads.iter().zip(&prep_loads) {
        assert_eq!(
            (o.vaddr, o.paddr, o.memsz),
            (p.vaddr, p.paddr, p.memsz),
            "{o:?} vs {p:?}"
        );
        assert!(p.filesz <= o.filesz, "{o:?} vs {p:?}");
        let kept = &elf[p.offset..p.offset + p.filesz];
        assert!(
            kept == &from_xz[o.offset..o.offset + p.filesz],
            "segment at {:#x} differs",
            o.paddr
        );
        let cut = &from_xz[o.offset + p.filesz..o.offset + o.filesz];
        assert!(
            cut.iter().all(|&b| b == 0),
            "non-zero bytes cut at {:#x}",
            o.paddr
        );
    }
    let note = prep.iter().find(|p| p.kind == "NOTE").expect("a PT_NOTE");
    assert!(
        note.offset + note.filesz <= 1 << 20,
        "the notes lie in the first block: {note:?}"
    );
    streamed_build_equals_the_original(&prepared, &from_xz);
    let notes = String::from_utf8(run(
        "readelf",
        &["-n", &elf_path.display().to_string()],
        &tmp,
        None,
    ))
    .expect("text");
    // binutils names note type 18 (XEN_ELFNOTE_PHYS32_ENTRY, xen/include/public/elfnote.h).
    assert!(
        notes.contains("Xen") && (notes.contains("PHYS32_ENTRY") || notes.contains("0x00000012")),
        "{notes}"
    );
}

/// One `readelf -lW` program header line.
#[derive(Debug, Clone)]
struct Phdr {
    kind: String,
    offset: usize,
    vaddr: u64,
    paddr: u64,
    filesz: usize,
    memsz: u64,
}

fn program_headers(elf: &Path, dir: &Path) -> Vec<Phdr> {
    let text = String::from_utf8(run(
        "readelf",
        &["-lW", &elf.display().to_string()],
        dir,
        None,
    ))
    .expect("text");
    let hex = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16).expect(w);
    text.lines()
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .filter(|w| w.len() >= 6 && (w[0] == "LOAD" || w[0] == "NOTE") && w[1].starts_with("0x"))
        .map(|w| Phdr {
            kind: w[0].to_string(),
            offset: hex(w[1]) as usize,
            vaddr: hex(w[2]),
            paddr: hex(w[3]),
            filesz: hex(w[4]) as usize,
            memsz: hex(w[5]),
        })
        .collect()
}

/// domforge-init's streamed load of the prepared kernel (LZ4 blocks decoded straight into guest
/// memory, `pvh_boot::build_streamed`) writes the same guest memory as the in-memory load of the
/// bzImage's original ELF (`pvh_boot::build_from_elf`, which the QEMU scenarios have booted).
fn streamed_build_equals_the_original(prepared: &[u8], original_elf: &[u8]) {
    use pvh_boot::memory::VecGuestMemory;
    use pvh_boot::stream::{BlockSource, Lz4Legacy, SliceSource};
    let request = pvh_boot::layout::LayoutRequest {
        memory_bytes: 256 << 20,
        vcpus: 1,
        cmdline: "console=hvc0",
        ramdisk: Some(b"not really a ramdisk"),
    };
    let elf = pvh_boot::kernel::ElfKernel::parse(original_elf).expect("original ELF");
    let (_, layout) = pvh_boot::plan(&elf, &request).expect("plan");
    let mut a = VecGuestMemory::new(&layout.populate);
    let state_a = pvh_boot::build_from_elf(&elf, &request, &mut a).expect("in-memory build");

    let mut first = Lz4Legacy::open(SliceSource(prepared))
        .unwrap()
        .expect("LZ4 legacy");
    let headers = first.next_block().unwrap().expect("a first block").to_vec();
    assert!(headers.len() <= 1 << 20, "blocks of at most 1 MiB");
    let head = pvh_boot::kernel::ElfKernel::parse_prefix(&headers, u64::MAX).expect("headers");
    let mut blocks = Lz4Legacy::open(SliceSource(prepared)).unwrap().unwrap();
    let mut b = VecGuestMemory::new(&layout.populate);
    let state_b =
        pvh_boot::build_streamed(&head, &mut blocks, &request, &mut b).expect("streamed build");
    assert_eq!(state_a.entry, state_b.entry);
    assert_eq!(state_a.start_info_gpa, state_b.start_info_gpa);
    for r in &layout.populate {
        let (start, len) = (r.start * 4096, (r.count * 4096) as usize);
        for off in (0..len).step_by(16 << 20) {
            let n = (len - off).min(16 << 20);
            let gpa = start + off as u64;
            assert!(
                a.read(gpa, n) == b.read(gpa, n),
                "guest memory differs in {gpa:#x}+{n:#x}"
            );
        }
    }
}
