//! Debian's real amd64 kernels, fetched with `apt-get download` into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/debian/`, checked against binutils and the
//! upstream decompressors as independent references.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use pvh_boot::kernel::{BzImage, Compression, ElfKernel, KernelImage};
use pvh_boot::layout::LayoutRequest;
use pvh_boot::memory::VecGuestMemory;
use pvh_boot::start_info::{HvmModlistEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};
use zerocopy::FromBytes;

fn kernel(flavour: &'static str) -> Option<&'static (PathBuf, Vec<u8>)> {
    static AMD64: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    static CLOUD: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    let cell = if flavour == "amd64" { &AMD64 } else { &CLOUD };
    cell.get_or_init(|| {
        let path = common::debian_vmlinuz(flavour)?;
        let bytes = std::fs::read(&path).expect("read vmlinuz");
        Some((path, bytes))
    })
    .as_ref()
}

/// Decompress the payload with the upstream command-line tool, as Linux's
/// `scripts/extract-vmlinux` would.
fn reference_vmlinux(bz: &BzImage<'_>, dir: &std::path::Path) -> Vec<u8> {
    let payload = dir.join("payload");
    let (tool, args): (&str, &[&str]) = match bz.compression {
        Some(Compression::Xz) => ("xz", &["-dc", "--single-stream"]),
        Some(Compression::Lz4) => ("lz4", &["-dc"]),
        other => panic!("no reference decompressor wired for {other:?}"),
    };
    // The 4-byte size trailer Linux appends is not part of the stream.
    std::fs::write(&payload, &bz.payload[..bz.payload.len() - 4]).unwrap();
    common::run(Command::new(tool).args(args).arg(&payload))
}

fn check_flavour(flavour: &'static str, expected: Compression, tool: (&str, &str)) {
    let Some((path, bytes)) = kernel(flavour) else {
        return;
    };
    if !common::require_tools(&[("readelf", "binutils"), tool]) {
        return;
    }
    let KernelImage::BzImage(bz) = KernelImage::parse(bytes).expect("parse vmlinuz") else {
        panic!("{} is not recognised as a bzImage", path.display());
    };
    assert_eq!(bz.compression, Some(expected));
    assert!(bz.is_64bit());

    let started = std::time::Instant::now();
    let vmlinux = bz.vmlinux().expect("decompress payload");
    eprintln!(
        "{flavour}: {expected} payload of {} bytes -> {} bytes in {:.2?} (unoptimised test build)",
        bz.payload.len(),
        vmlinux.len(),
        started.elapsed()
    );

    let dir = common::temp_dir(&format!("debian-{flavour}"));
    let reference = reference_vmlinux(&bz, &dir);
    assert!(
        reference == *vmlinux,
        "our decompressed vmlinux differs from {}'s",
        tool.0
    );

    let file = dir.join("vmlinux");
    std::fs::write(&file, &*vmlinux).unwrap();
    let elf = ElfKernel::parse(&vmlinux).expect("vmlinux is a valid ELF");
    assert_eq!(
        elf.pvh_entry(),
        common::readelf_pvh_entry(&file),
        "PVH entry differs from readelf -n"
    );
    assert!(elf.pvh_entry().is_some(), "Debian's kernel has CONFIG_PVH");
    assert_eq!(
        u64::from(elf.pvh_entry_checked().unwrap()),
        elf.pvh_entry().unwrap()
    );
    common::assert_notes_match_readelf(&elf.xen_notes, &file);

    let (entry, loads) = common::readelf_loads(&file);
    assert_eq!(elf.entry, entry);
    let ours: Vec<[u64; 5]> = elf
        .segments
        .iter()
        .map(|s| [s.offset, s.vaddr, s.paddr, s.filesz, s.memsz])
        .collect();
    assert_eq!(ours, loads, "PT_LOAD segments differ from readelf -l");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debian_amd64_kernel_is_xz_and_matches_readelf() {
    check_flavour("amd64", Compression::Xz, ("xz", "xz-utils"));
}

#[test]
fn debian_cloud_kernel_is_lz4_and_matches_readelf() {
    check_flavour("cloud-amd64", Compression::Lz4, ("lz4", "lz4"));
}

#[test]
fn debian_amd64_kernel_builds_a_1gib_guest() {
    let Some((_, bytes)) = kernel("amd64") else {
        return;
    };
    let ramdisk: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cmdline = "console=hvc0 earlyprintk=xen root=/dev/ram0";
    let request = LayoutRequest {
        memory_bytes: 1 << 30,
        vcpus: 2,
        cmdline,
        ramdisk: Some(&ramdisk),
    };
    let vmlinux = pvh_boot::kernel::pvh_elf_bytes(bytes).unwrap();
    let elf = ElfKernel::parse(&vmlinux).unwrap();
    let (_, layout) = pvh_boot::plan(&elf, &request).unwrap();
    let mut mem = VecGuestMemory::new(&layout.populate);
    let state = pvh_boot::build_from_elf(&elf, &request, &mut mem).expect("build");

    assert_eq!(u64::from(state.entry), elf.pvh_entry().unwrap());
    let si = HvmStartInfo::read_from_bytes(&mem.read(state.start_info_gpa, 56)).unwrap();
    assert_eq!(si.magic.get(), XEN_HVM_START_MAGIC_VALUE);
    assert_eq!(si.nr_modules.get(), 1);
    let m = HvmModlistEntry::read_from_bytes(&mem.read(si.modlist_paddr.get(), 32)).unwrap();
    assert_eq!(mem.read(m.paddr.get(), m.size.get() as usize), ramdisk);
    assert_eq!(
        mem.read_cstr(si.cmdline_paddr.get(), 4096),
        cmdline.as_bytes()
    );
    // Every kernel segment is in guest memory byte for byte.
    for seg in &elf.segments {
        let data = elf.segment_data(seg).unwrap();
        assert!(
            mem.read(seg.paddr, data.len()) == data,
            "segment at {:#x}",
            seg.paddr
        );
    }
    // The ramdisk starts after the kernel's last byte.
    let kernel_end = elf
        .segments
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap();
    assert!(m.paddr.get() >= kernel_end);
}
