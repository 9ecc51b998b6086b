//! Kernels prepared on the host (issue 14), checked with independent tools: the guest kernel in
//! the x86 example's dom0 initramfs (`cpio -i` extracts it) must be LZ4 legacy frames plus a
//! 4-byte size trailer that `lz4 -d` decodes to exactly the ELF `xz -d` gets from the source
//! bzImage's payload (found by the boot protocol's setup header: `setup_sects` at 0x1f1,
//! `payload_offset`/`payload_length` at 0x248/0x24c, Documentation/arch/x86/boot.rst), and that
//! ELF must carry Xen's PVH entry note (`readelf -n`: XEN_ELFNOTE_PHYS32_ENTRY). The trailer must
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
    for (tool, package) in [
        ("cpio", "cpio"),
        ("lz4", "lz4"),
        ("xz", "xz-utils"),
        ("readelf", "binutils"),
    ] {
        if !test_support::need_tool(TEST, tool, package) {
            return;
        }
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
    assert!(
        elf == from_xz,
        "lz4 -d of the prepared kernel differs from xz -d of the payload"
    );

    let elf_path = tmp.join("vmlinux");
    std::fs::write(&elf_path, &elf).expect("write");
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
