//! Guest layouts for 1 GiB, 4 GiB and 6 GiB guests with a ramdisk, checked by decoding the
//! written guest memory back (start_info, modlist, memmap, cmdline) and comparing it with
//! the inputs and with the Xen/libxl layout facts, typed here from their sources:
//! - `start_info.h`: magic 0x336ec578, version 1, 56/32/24-byte structs;
//! - libxl PVH: MMIO hole from 0xFC000000, RAM beyond it continues at 4 GiB;
//! - `xg_dom_x86.c`: special pages at pfn 0xFEFF8..=0xFEFFF, xenstore index 4, console 7.

mod common;

use pvh_boot::kernel::LoadSegment;
use pvh_boot::layout::{LayoutError, LayoutRequest, PvhLayout};
use pvh_boot::memory::{PfnRange, VecGuestMemory};
use pvh_boot::start_info::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo};
use zerocopy::FromBytes;

const GIB: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// A minimal x86-64 ELF with one PT_LOAD at 16 MiB (text + BSS) and a PT_NOTE holding
/// `XEN_ELFNOTE_PHYS32_ENTRY`, laid out per the System V gABI (offsets typed from it).
fn tiny_pvh_elf() -> (Vec<u8>, u64) {
    let load_off = 0x1000u64;
    let text: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
    let paddr = 0x100_0000u64;
    let entry = paddr + 0x40;
    let note_off = 0x200u64;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&8u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&entry.to_le_bytes());

    let mut f = vec![0u8; load_off as usize];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let mut ph = |i: usize,
                  p_type: u32,
                  flags: u32,
                  off: u64,
                  addr: u64,
                  filesz: u64,
                  memsz: u64,
                  align: u64| {
        let b = 64 + i * 56;
        f[b..b + 4].copy_from_slice(&p_type.to_le_bytes());
        f[b + 4..b + 8].copy_from_slice(&flags.to_le_bytes());
        f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
        f[b + 16..b + 24].copy_from_slice(&(addr | 0xffff_ffff_8000_0000).to_le_bytes());
        f[b + 24..b + 32].copy_from_slice(&addr.to_le_bytes());
        f[b + 32..b + 40].copy_from_slice(&filesz.to_le_bytes());
        f[b + 40..b + 48].copy_from_slice(&memsz.to_le_bytes());
        f[b + 48..b + 56].copy_from_slice(&align.to_le_bytes());
    };
    ph(
        0,
        1,
        7,
        load_off,
        paddr,
        text.len() as u64,
        text.len() as u64 + 0x5000,
        0x1000,
    ); // PT_LOAD with BSS
    ph(
        1,
        4,
        4,
        note_off,
        0,
        note.len() as u64,
        note.len() as u64,
        4,
    ); // PT_NOTE
    f[note_off as usize..note_off as usize + note.len()].copy_from_slice(&note);
    f.extend_from_slice(&text);
    (f, entry)
}

fn ramdisk(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

fn check(memory_bytes: u64, vcpus: u32) {
    let (kernel, entry) = tiny_pvh_elf();
    if common::have_tool("readelf") {
        let dir = common::temp_dir("tiny");
        let p = dir.join("tiny.elf");
        std::fs::write(&p, &kernel).unwrap();
        assert_eq!(
            common::readelf_pvh_entry(&p),
            Some(entry),
            "the hand-made ELF must be what readelf sees"
        );
    }
    let rd = ramdisk(5 * 1024 * 1024 + 17);
    let cmdline = "console=hvc0 root=/dev/ram0 rdinit=/init quiet";
    let req = LayoutRequest {
        memory_bytes,
        vcpus,
        cmdline,
        ramdisk: Some(&rd),
    };
    let elf = pvh_boot::kernel::ElfKernel::parse(&kernel).unwrap();
    let (_, planned) = pvh_boot::plan(&elf, &req).unwrap();
    let mut mem = VecGuestMemory::new(&planned.populate);
    let state = pvh_boot::build(&kernel, &req, &mut mem).unwrap();

    // Registers.
    assert_eq!(u64::from(state.entry), entry);
    assert_eq!(state.start_info_gpa % PAGE, 0);

    // start_info.
    let si = HvmStartInfo::read_from_bytes(&mem.read(state.start_info_gpa, 56)).unwrap();
    assert_eq!(si.magic.get(), 0x336e_c578);
    assert_eq!(si.version.get(), 1);
    assert_eq!(si.flags.get(), 0);
    assert_eq!(si.reserved.get(), 0);

    // cmdline.
    assert_eq!(
        mem.read_cstr(si.cmdline_paddr.get(), 4096),
        cmdline.as_bytes()
    );

    // modlist -> ramdisk.
    assert_eq!(si.nr_modules.get(), 1);
    let m = HvmModlistEntry::read_from_bytes(&mem.read(si.modlist_paddr.get(), 32)).unwrap();
    assert_eq!(m.size.get(), rd.len() as u64);
    assert_eq!(m.cmdline_paddr.get(), 0);
    assert!(mem.read(m.paddr.get(), rd.len()) == rd, "ramdisk bytes");

    // memmap, decoded from guest memory.
    let n = si.memmap_entries.get() as usize;
    let raw = mem.read(si.memmap_paddr.get(), n * 24);
    let entries: Vec<(u64, u64, u32)> = raw
        .chunks_exact(24)
        .map(|c| {
            let e = HvmMemmapTableEntry::read_from_bytes(c).unwrap();
            assert_eq!(e.reserved.get(), 0);
            (e.addr.get(), e.size.get(), e.type_.get())
        })
        .collect();
    // Expected from first principles: low RAM up to the hole at 0xFC000000, the rest at 4 GiB.
    let hole = 0xFC00_0000u64;
    let low = memory_bytes.min(hole);
    let mut expected = vec![
        (0, low, 1),
        (0xFC00_0000, 16 * PAGE, 4),
        (0xFEFF_8000, 8 * PAGE, 2),
    ];
    if memory_bytes > hole {
        expected.push((4 * GIB, memory_bytes - hole, 1));
    }
    assert_eq!(entries, expected);
    let ram: u64 = entries.iter().filter(|e| e.2 == 1).map(|e| e.1).sum();
    assert_eq!(ram, memory_bytes, "RAM in the map equals the request");
    assert_eq!(
        state
            .memory_map
            .iter()
            .map(|e| e.to_e820_bytes())
            .collect::<Vec<_>>(),
        entries
            .iter()
            .map(|&(a, s, t)| {
                let mut b = [0u8; 20];
                b[..8].copy_from_slice(&a.to_le_bytes());
                b[8..16].copy_from_slice(&s.to_le_bytes());
                b[16..].copy_from_slice(&t.to_le_bytes());
                b
            })
            .collect::<Vec<_>>(),
        "XENMEM_set_memory_map entries equal start_info.memmap"
    );

    // Everything placed is page aligned, inside RAM, below 4 GiB and disjoint.
    let l = &state.layout;
    let mut placed = vec![
        (l.kernel.gpa, l.kernel.end()),
        (l.start_info.gpa, l.start_info.end()),
        (l.cmdline.gpa, l.cmdline.end()),
        (l.memmap_table.gpa, l.memmap_table.end()),
    ];
    placed.push((l.ramdisk.unwrap().gpa, l.ramdisk.unwrap().end()));
    placed.push((l.modlist.unwrap().gpa, l.modlist.unwrap().end()));
    for &(s, e) in &placed {
        assert_eq!(s % PAGE, 0);
        assert!(e <= low, "[{s:#x}, {e:#x}) inside low RAM");
    }
    placed.sort();
    for w in placed.windows(2) {
        assert!(w[0].1 <= w[1].0, "{:x?} overlaps {:x?}", w[0], w[1]);
    }

    // Kernel bytes and zeroed BSS.
    let seg = &elf.segments[0];
    assert!(mem.read(seg.paddr, seg.filesz as usize) == elf.segment_data(seg).unwrap());
    assert!(
        mem.read(seg.paddr + seg.filesz, (seg.memsz - seg.filesz) as usize)
            .iter()
            .all(|&b| b == 0)
    );

    // ACPI RSDP where start_info says, and the MADT has one LAPIC per vCPU.
    assert_eq!(mem.read(si.rsdp_paddr.get(), 8), b"RSD PTR ");
    let tables = pvh_boot::acpi::build_tables(vcpus, 0xFC00_0000).unwrap();
    assert!(mem.read(tables.base, tables.bytes.len()) == tables.bytes);

    // Special pages: xenstore is index 4, console index 7; all populated.
    assert_eq!(state.special_pages.xenstore_pfn, 0xFEFF8 + 4);
    assert_eq!(state.special_pages.console_pfn, 0xFEFF8 + 7);
    assert!(mem.is_populated(0xFEFFF) && mem.is_populated(0xFEFF8) && !mem.is_populated(0xFF000));

    // Populate list: RAM pages + 16 ACPI + 8 special.
    let total: u64 = state.populate.iter().map(|r| r.count).sum();
    assert_eq!(total, memory_bytes / PAGE + 16 + 8);
    assert_eq!(l.total_pages(), total);
}

#[test]
fn one_gib_guest() {
    check(GIB, 1);
}

#[test]
fn four_gib_guest_moves_64_mib_above_4_gib() {
    check(4 * GIB, 2);
}

#[test]
fn six_gib_guest() {
    check(6 * GIB, 8);
}

#[test]
fn layout_is_deterministic() {
    let (kernel, _) = tiny_pvh_elf();
    let rd = ramdisk(4096 * 3);
    let req = LayoutRequest {
        memory_bytes: 512 << 20,
        vcpus: 4,
        cmdline: "x",
        ramdisk: Some(&rd),
    };
    let elf = pvh_boot::kernel::ElfKernel::parse(&kernel).unwrap();
    let (_, l) = pvh_boot::plan(&elf, &req).unwrap();
    let mut a = VecGuestMemory::new(&l.populate);
    let mut b = VecGuestMemory::new(&l.populate);
    let sa = pvh_boot::build(&kernel, &req, &mut a).unwrap();
    let sb = pvh_boot::build(&kernel, &req, &mut b).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(a.resident_pages(), b.resident_pages());
    assert!(a.read(0, 64 << 20) == b.read(0, 64 << 20));
}

fn seg(paddr: u64, memsz: u64) -> LoadSegment {
    LoadSegment {
        offset: 0,
        vaddr: paddr,
        paddr,
        filesz: 0,
        memsz,
        flags: 7,
        align: 4096,
    }
}

#[test]
fn placement_errors_are_typed() {
    let req = |mem: u64, rd: Option<&'static [u8]>| LayoutRequest {
        memory_bytes: mem,
        vcpus: 1,
        cmdline: "",
        ramdisk: rd,
    };
    // Overlapping kernel segments.
    let err = PvhLayout::plan(
        &[seg(0x100_0000, 0x2000), seg(0x100_1000, 0x1000)],
        &req(GIB, None),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            LayoutError::Overlap {
                first: "kernel segment",
                second: "kernel segment",
                ..
            }
        ),
        "{err}"
    );
    // A segment in the ACPI region (outside RAM).
    let err = PvhLayout::plan(&[seg(0xFC00_0000, 0x1000)], &req(6 * GIB, None)).unwrap_err();
    assert!(
        matches!(err, LayoutError::SegmentOutsideRam { .. }),
        "{err}"
    );
    // Too little memory for the ramdisk.
    static BIG: [u8; 1 << 20] = [1; 1 << 20];
    let err =
        PvhLayout::plan(&[seg(0x100_0000, 0x1000)], &req(0x110_0000, Some(&BIG))).unwrap_err();
    assert!(
        matches!(
            err,
            LayoutError::DoesNotFit {
                what: "ramdisk",
                ..
            }
        ),
        "{err}"
    );
    // Bad requests.
    assert!(matches!(
        PvhLayout::plan(&[seg(0x100_0000, 0x1000)], &req(GIB + 1, None)),
        Err(LayoutError::MemoryNotPageAligned { .. })
    ));
    assert!(matches!(
        PvhLayout::plan(&[], &req(GIB, None)),
        Err(LayoutError::NoLoadSegments)
    ));
    let r = LayoutRequest {
        memory_bytes: GIB,
        vcpus: 129,
        cmdline: "",
        ramdisk: None,
    };
    assert!(matches!(
        PvhLayout::plan(&[seg(0x100_0000, 0x1000)], &r),
        Err(LayoutError::BadVcpuCount { .. })
    ));
    let r = LayoutRequest {
        memory_bytes: GIB,
        vcpus: 1,
        cmdline: "a\0b",
        ramdisk: None,
    };
    assert!(matches!(
        PvhLayout::plan(&[seg(0x100_0000, 0x1000)], &r),
        Err(LayoutError::CmdlineHasNul { offset: 1 })
    ));
}

#[test]
fn writes_outside_populated_memory_fail() {
    use pvh_boot::memory::GuestMemoryWriter;
    let mut mem = VecGuestMemory::new(&[PfnRange { start: 0, count: 2 }]);
    assert!(mem.write(0x1ff0, &[1; 16]).is_ok());
    assert!(mem.write(0x1ff0, &[1; 17]).is_err());
    assert!(mem.write(u64::MAX, &[1; 2]).is_err());
}
