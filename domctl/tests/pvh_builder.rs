//! The PVH builder against the fake hypervisor: the call sequence of a good build, the state it leaves
//! (checked against values typed from the Xen headers and libxenguest, not from the builder), and every
//! step failing in turn, each of which must destroy the half-built domain and name the step.

use domctl::abi::{self, hvm_param, x86};
use domctl::builder::{BuildFailure, BuildStep, Cleanup, PvhBuilder, PvhDomainConfig, PvhKernel};
use domctl::fake::{Call, FakeXen};
use domctl::{DomId, Errno, InterfaceVersion, Op, Xen, XenArch};

const MIB: u64 = 1 << 20;
/// Where the test kernel's PT_LOAD goes (Linux's LOAD_PHYSICAL_ADDR, 16 MiB).
const KERNEL_PADDR: u64 = 0x100_0000;
const KERNEL_ENTRY: u64 = KERNEL_PADDR + 0x40;
const TEXT_LEN: usize = 0x3000;
const BSS_LEN: u64 = 0x5000;

/// A minimal x86-64 ELF: one PT_LOAD at 16 MiB (text + BSS) and a PT_NOTE with
/// `XEN_ELFNOTE_PHYS32_ENTRY` (type 18, `xen/include/public/elfnote.h`), laid out per the System V gABI
/// (ELF header 64 bytes, program headers 56 bytes each).
fn pvh_elf(with_note: bool) -> Vec<u8> {
    let load_off = 0x1000usize;
    let note_off = 0x200usize;
    let mut f = vec![0u8; load_off];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&KERNEL_PADDR.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let mut ph =
        |i: usize, p_type: u32, off: u64, addr: u64, filesz: u64, memsz: u64, align: u64| {
            let b = 64 + i * 56;
            f[b..b + 4].copy_from_slice(&p_type.to_le_bytes());
            f[b + 4..b + 8].copy_from_slice(&5u32.to_le_bytes());
            f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
            f[b + 16..b + 24].copy_from_slice(&addr.to_le_bytes());
            f[b + 24..b + 32].copy_from_slice(&addr.to_le_bytes());
            f[b + 32..b + 40].copy_from_slice(&filesz.to_le_bytes());
            f[b + 40..b + 48].copy_from_slice(&memsz.to_le_bytes());
            f[b + 48..b + 56].copy_from_slice(&align.to_le_bytes());
        };
    let text_len = TEXT_LEN as u64;
    ph(
        0,
        1,
        load_off as u64,
        KERNEL_PADDR,
        text_len,
        text_len + BSS_LEN,
        0x1000,
    ); // PT_LOAD
    ph(1, 4, note_off as u64, 0, 24, 24, 4); // PT_NOTE
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&8u32.to_le_bytes()); // descsz
    note.extend_from_slice(&(if with_note { 18u32 } else { 17 }).to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&KERNEL_ENTRY.to_le_bytes());
    f[note_off..note_off + note.len()].copy_from_slice(&note);
    f.extend((0..TEXT_LEN).map(|i| (i % 251) as u8));
    f
}

fn kernel() -> PvhKernel {
    PvhKernel::from_image(&pvh_elf(true)).unwrap()
}

fn xen() -> (Xen<FakeXen>, FakeXen) {
    let fake = FakeXen::new(XenArch::X86_64, InterfaceVersion::V15);
    (Xen::with_version(fake.clone(), InterfaceVersion::V15), fake)
}

const RAMDISK: &[u8] = b"070701 a pretend initramfs";

fn config(vcpus: u32) -> PvhDomainConfig<'static> {
    let mut c = PvhDomainConfig::new(
        "probe-a",
        vcpus,
        64 * MIB,
        "console=hvc0 domforge.name=probe-a",
    );
    c.ramdisk = Some(RAMDISK);
    c
}

/// Operations in the order a build issues them (each may repeat).
const SEQUENCE: [Op; 15] = [
    Op::CreateDomain,
    Op::MaxVcpus,
    Op::MaxMem,
    Op::SetPagingMempoolSize,
    Op::PopulatePhysmap,
    Op::SetMemoryMap,
    Op::MapForeign,
    Op::EvtchnAllocUnbound,
    Op::HvmSetParam,
    Op::MaximumGpfn,
    Op::AddToPhysmap,
    Op::RemoveFromPhysmap,
    Op::GetHvmContext,
    Op::SetHvmContext,
    Op::UnpauseDomain,
];

/// Calls only a guest with xenstore makes (the grant seeding).
const SEED_OPS: [Op; 3] = [Op::MaximumGpfn, Op::AddToPhysmap, Op::RemoveFromPhysmap];

fn dedup(ops: &[Op]) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    for op in ops {
        if out.last() != Some(op) {
            out.push(*op);
        }
    }
    out
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn good_build_issues_the_libxl_sequence_and_leaves_a_bootable_guest() {
    for vcpus in [1u32, 2] {
        let (mut xen, fake) = xen();
        let built = PvhBuilder::new(&mut xen)
            .build(&kernel(), &config(vcpus))
            .unwrap();
        let ops = fake.ops();
        let without_store: Vec<Op> = SEQUENCE
            .into_iter()
            .filter(|op| !SEED_OPS.contains(op))
            .collect();
        assert_eq!(dedup(&ops), without_store, "vcpus={vcpus}");
        // MTRR for each vCPU, then the BSP.
        let sets = ops.iter().filter(|o| **o == Op::SetHvmContext).count();
        assert_eq!(sets, vcpus as usize + 1);

        let id = built.domid.get();
        let d = fake.domain(id).unwrap();
        assert!(!d.paused);
        assert_eq!(d.vcpus, Some(vcpus));
        // createdomain: HVM | HAP (domctl.h XEN_DOMCTL_CDF_hvm 1<<0, _hap 1<<1), EMU_LAPIC only
        // (arch-x86/xen.h XEN_X86_EMU_LAPIC 1<<0).
        assert_eq!(d.config.flags, 0b11);
        assert_eq!(
            d.config.arch,
            domctl::ArchConfig::X86(x86::ArchDomainConfig {
                emulation_flags: 1,
                misc_flags: 0
            })
        );
        // 64 MiB RAM + 16 ACPI pages + 8 special pages, and libxl's 1 MiB slack on top.
        let pages = 64 * 256 + 16 + 8;
        assert_eq!(d.pages.len() as u64, pages);
        assert_eq!(d.max_mem_kib, Some(pages * 4 + 1024));
        // libxl_get_required_shadow_memory: 4 KiB * (256 * vcpus + 2 * MiB).
        assert_eq!(
            d.paging_mempool_bytes,
            Some(4096 * (256 * u64::from(vcpus) + 2 * 64))
        );
        // Special pages at 0xFEFF8..=0xFEFFF (X86_HVM_END_SPECIAL_REGION 0xFF000 - 8), console index 7.
        for pfn in 0xFEFF8..0xFF000u64 {
            assert!(d.pages.contains_key(&pfn), "special pfn {pfn:#x}");
        }
        assert_eq!(d.hvm_params.get(&hvm_param::CONSOLE_PFN), Some(&0xFEFFF));
        let port = d.hvm_params[&hvm_param::CONSOLE_EVTCHN];
        assert_eq!(d.evtchns.get(&(port as u32)), Some(&0)); // remote = dom0
        assert_eq!(built.console.port as u64, port);
        assert!(!d.hvm_params.contains_key(&hvm_param::STORE_PFN));

        // e820: RAM from 0, the special pages reserved (e820 type 2).
        let map = d.memory_map.clone().unwrap();
        let ram: u64 = map
            .iter()
            .filter(|e| e.type_ == x86::e820::RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, 64 * MIB);
        assert!(map.iter().any(|e| {
            let (a, s, t) = (e.addr, e.size, e.type_);
            t == x86::e820::RESERVED && a <= 0xFEFF8000 && a + s >= 0xFF000000
        }));

        // BSP: PVH entry state per docs/misc/pvh.pandoc and vcpu_hvm().
        let cpu = d.hvm_cpu[&0];
        assert_eq!(cpu.rip, KERNEL_ENTRY);
        assert_eq!(cpu.cr0, 0x11); // X86_CR0_PE | X86_CR0_ET
        assert_eq!(
            (cpu.cs_arbytes, cpu.ds_arbytes, cpu.tr_arbytes),
            (0xc9b, 0xc93, 0x8b)
        );
        assert_eq!((cpu.cs_limit, cpu.cs_base), (u32::MAX, 0));
        for v in 0..vcpus as u16 {
            // MTRR_TYPE_WRBACK 6 | MTRR_DEF_TYPE_ENABLE (1 << 11), asm/mtrr.h; the capability
            // register stays Xen's.
            assert_eq!(d.hvm_mtrr[&v].msr_mtrr_def_type, 0x806);
            assert_eq!(d.hvm_mtrr[&v].msr_mtrr_cap, 0x508);
        }

        // rbx points at hvm_start_info: magic 0x336ec578, version 1 (start_info.h), and its fields
        // lead to the command line and the ramdisk.
        let si = fake.read_guest(id, cpu.rbx, 56).unwrap();
        assert_eq!(le32(&si, 0), 0x336e_c578);
        assert_eq!(le32(&si, 4), 1);
        assert_eq!(le32(&si, 12), 1); // nr_modules
        let cmd_at = le64(&si, 24);
        let cmd = fake
            .read_guest(id, cmd_at, config(1).cmdline.len() + 1)
            .unwrap();
        assert_eq!(&cmd[..cmd.len() - 1], config(1).cmdline.as_bytes());
        assert_eq!(cmd[cmd.len() - 1], 0);
        let modlist = fake.read_guest(id, le64(&si, 16), 32).unwrap();
        let rd = fake
            .read_guest(id, le64(&modlist, 0), le64(&modlist, 8) as usize)
            .unwrap();
        assert_eq!(rd, RAMDISK);

        // The kernel's bytes at its p_paddr, BSS zero.
        let text = fake.read_guest(id, KERNEL_PADDR, TEXT_LEN).unwrap();
        assert!(text.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        let bss = fake
            .read_guest(id, KERNEL_PADDR + TEXT_LEN as u64, BSS_LEN as usize)
            .unwrap();
        assert!(bss.iter().all(|b| *b == 0));
        assert_eq!(fake.live_buffers(), 0);
    }
}

#[test]
fn ram_is_populated_with_superpages_where_aligned() {
    let (mut xen, fake) = xen();
    PvhBuilder::new(&mut xen)
        .build(&kernel(), &config(1))
        .unwrap();
    let mut orders = Vec::new();
    for c in fake.calls() {
        if let Call::PopulatePhysmap { order, pfns, .. } = c.call {
            orders.push((order, pfns.len()));
        }
    }
    // 64 MiB = 32 superpages of 2^9 pages; ACPI (16) and special pages (8) as 4 KiB frames.
    assert_eq!(orders, vec![(9, 32), (0, 24)]);
}

#[test]
fn xenstore_is_opt_in() {
    let (mut xen, fake) = xen();
    let mut cfg = config(1);
    cfg.xenstore = true;
    let built = PvhBuilder::new(&mut xen).build(&kernel(), &cfg).unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    // SPECIALPAGE_XENSTORE is index 4: 0xFEFF8 + 4.
    assert_eq!(d.hvm_params.get(&hvm_param::STORE_PFN), Some(&0xFEFFC));
    let port = d.hvm_params[&hvm_param::STORE_EVTCHN] as u32;
    assert_ne!(port, built.console.port);
    assert_eq!(d.evtchns.get(&port), Some(&0));

    // Grant refs 0 and 1 (GNTTAB_RESERVED_CONSOLE/_XENSTORE) permit dom0 to map the two rings, in the
    // version-1 layout of grant_table.h: flags u16 @0, domid u16 @2, frame u32 @4.
    let frame = &d.grant_frames[&0];
    assert_eq!(frame.len(), 4096);
    let entry = |r: usize| {
        let e = &frame[r * 8..r * 8 + 8];
        (
            u16::from_le_bytes([e[0], e[1]]),
            u16::from_le_bytes([e[2], e[3]]),
            le32(e, 4),
        )
    };
    assert_eq!(
        entry(0),
        (1, 0, d.hvm_params[&hvm_param::CONSOLE_PFN] as u32)
    );
    assert_eq!(entry(1), (1, 0, 0xFEFFC));
    assert!(frame[16..].iter().all(|b| *b == 0));
    // The scratch frame went back out of the p2m: the guest sees nothing new.
    assert!(d.physmap.is_empty(), "{:?}", d.physmap);
    let calls = dedup(&fake.ops());
    let seed = calls.iter().position(|o| *o == Op::AddToPhysmap).unwrap();
    assert_eq!(
        &calls[seed - 1..seed + 3],
        &[
            Op::MaximumGpfn,
            Op::AddToPhysmap,
            Op::MapForeign,
            Op::RemoveFromPhysmap
        ]
    );
}

/// Which step an injected failure of the nth call of `op` must be reported as.
fn expected_step(op: Op, nth: usize, of: usize, vcpus: u32, xenstore: bool) -> BuildStep {
    match op {
        // The seeding maps the scratch grant frame after everything the loader mapped.
        Op::MapForeign if xenstore && nth == of => BuildStep::SeedGrants,
        Op::MaximumGpfn | Op::AddToPhysmap | Op::RemoveFromPhysmap => BuildStep::SeedGrants,
        Op::CreateDomain => BuildStep::CreateDomain,
        Op::MaxVcpus => BuildStep::MaxVcpus,
        Op::MaxMem => BuildStep::MaxMem,
        Op::SetPagingMempoolSize => BuildStep::PagingPool,
        Op::PopulatePhysmap => BuildStep::Populate,
        Op::SetMemoryMap => BuildStep::MemoryMap,
        Op::MapForeign => BuildStep::LoadImage,
        Op::EvtchnAllocUnbound if nth == 1 => BuildStep::ConsoleEvtchn,
        Op::EvtchnAllocUnbound => BuildStep::StoreEvtchn,
        Op::HvmSetParam => BuildStep::HvmParams,
        Op::GetHvmContext => BuildStep::GetHvmContext,
        Op::SetHvmContext if nth <= vcpus as usize => BuildStep::SetMtrr,
        Op::SetHvmContext => BuildStep::SetBootCpu,
        Op::UnpauseDomain => BuildStep::Unpause,
        other => panic!("unexpected op {other:?}"),
    }
}

#[test]
fn every_call_failing_destroys_the_domain_and_names_the_step() {
    for (vcpus, xenstore) in [(1u32, false), (2, true)] {
        let mut cfg = config(vcpus);
        cfg.xenstore = xenstore;
        // Count the calls of a good build.
        let (mut xen, fake) = xen();
        PvhBuilder::new(&mut xen).build(&kernel(), &cfg).unwrap();
        let ops = fake.ops();
        let mut cases = Vec::new();
        for op in SEQUENCE {
            let n = ops.iter().filter(|o| **o == op).count();
            if !xenstore && SEED_OPS.contains(&op) {
                assert_eq!(n, 0, "{op:?} without xenstore");
                continue;
            }
            assert!(n > 0, "{op:?} never called");
            for nth in 1..=n {
                cases.push((op, nth, n));
            }
        }
        let mut steps_seen = std::collections::BTreeSet::new();
        for (op, nth, of) in cases {
            let (mut xen, fake) = self::xen();
            fake.fail_nth(op, nth, Errno::ENOMEM);
            let err = PvhBuilder::new(&mut xen)
                .build(&kernel(), &cfg)
                .expect_err("injected failure must fail the build");
            let want = expected_step(op, nth, of, vcpus, xenstore);
            assert_eq!(err.step, want, "{op:?} #{nth}");
            steps_seen.insert(format!("{want:?}"));
            let text = err.to_string();
            assert!(text.contains("'probe-a'"), "{text}");
            assert!(text.contains(want.describe()), "{text}");
            match op {
                Op::CreateDomain => {
                    assert!(err.domid.is_none());
                    assert!(matches!(err.cleanup, Cleanup::NoDomain));
                    assert_eq!(fake.domain_ids(), vec![0]);
                }
                _ => {
                    let id = err.domid.expect("domain id in the error").get();
                    assert!(matches!(err.cleanup, Cleanup::Destroyed), "{op:?}: {text}");
                    assert!(text.contains("destroyed"), "{text}");
                    assert!(
                        fake.domain(id).is_none(),
                        "{op:?} #{nth}: domain left behind"
                    );
                    assert!(fake.destroyed_domain(id).is_some());
                    assert_eq!(fake.ops().last(), Some(&Op::DestroyDomain));
                    // Nothing after the failed call but the clean-up.
                    let calls = fake.ops();
                    let failed_at = calls
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| **o == op)
                        .nth(nth - 1)
                        .unwrap()
                        .0;
                    assert_eq!(
                        &calls[failed_at + 1..],
                        &[Op::DestroyDomain],
                        "{op:?} #{nth}"
                    );
                }
            }
            // The errno reached the message (ENOMEM: "Xen is out of memory").
            assert!(
                text.contains("ENOMEM") || text.contains("out of memory"),
                "{op:?}: {text}"
            );
            assert_eq!(fake.live_buffers(), 0);
        }
        let mut want_steps: Vec<BuildStep> = BuildStep::PVH
            .into_iter()
            .filter(|s| *s != BuildStep::Plan)
            .collect();
        if !xenstore {
            want_steps.retain(|s| *s != BuildStep::StoreEvtchn && *s != BuildStep::SeedGrants);
        }
        for s in want_steps {
            assert!(
                steps_seen.contains(&format!("{s:?}")),
                "step {s:?} never failed"
            );
        }
    }
}

#[test]
fn a_failing_destroy_is_reported_not_hidden() {
    let (mut xen, fake) = xen();
    fake.fail_nth(Op::UnpauseDomain, 1, Errno::EINVAL);
    fake.fail_nth(Op::DestroyDomain, 1, Errno::EBUSY);
    let err = PvhBuilder::new(&mut xen)
        .build(&kernel(), &config(1))
        .unwrap_err();
    assert_eq!(err.step, BuildStep::Unpause);
    assert!(matches!(err.cleanup, Cleanup::DestroyFailed(_)));
    let id = err.domid.unwrap().get();
    assert!(fake.domain(id).is_some());
    assert!(err.to_string().contains("left paused"), "{err}");
}

#[test]
fn impossible_layouts_fail_before_any_domain_exists() {
    let (mut xen, fake) = xen();
    let mut cfg = config(1);
    cfg.memory_bytes = 64 * MIB + 5; // not a whole number of pages
    let err = PvhBuilder::new(&mut xen)
        .build(&kernel(), &cfg)
        .unwrap_err();
    assert_eq!(err.step, BuildStep::Plan);
    assert!(matches!(*err.source, BuildFailure::Layout(_)));
    assert!(matches!(err.cleanup, Cleanup::NoDomain));
    assert!(fake.ops().is_empty());

    let mut cfg = config(1);
    cfg.memory_bytes = 8 * MIB; // the kernel sits at 16 MiB
    let err = PvhBuilder::new(&mut xen)
        .build(&kernel(), &cfg)
        .unwrap_err();
    assert_eq!(err.step, BuildStep::Plan);
    assert!(fake.ops().is_empty());
}

#[test]
fn kernels_without_the_pvh_note_are_refused() {
    let err = PvhKernel::from_image(&pvh_elf(false)).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("phys32"), "{err}");
    assert!(PvhKernel::from_image(b"not a kernel").is_err());
}

#[test]
fn builds_after_a_failure_reuse_nothing_stale() {
    // A failed build followed by a good one: the second gets a fresh domain and the first's is gone.
    let (mut xen, fake) = xen();
    fake.fail_nth(Op::MapForeign, 1, Errno::EFAULT);
    let err = PvhBuilder::new(&mut xen)
        .build(&kernel(), &config(1))
        .unwrap_err();
    let built = PvhBuilder::new(&mut xen)
        .build(&kernel(), &config(1))
        .unwrap();
    assert!(fake.domain(err.domid.unwrap().get()).is_none());
    assert!(fake.domain(built.domid.get()).is_some());
    assert!(matches!(
        fake.calls().first().map(|c| &c.call),
        Some(Call::CreateDomain { .. })
    ));
    let _ = DomId::DOM0;
    let _ = abi::XEN_PAGE_SIZE;
}

#[test]
fn windowed_writes_cross_windows_and_refuse_unpopulated_frames() {
    use domctl::builder::{GuestWriteError, WINDOW_PAGES, WindowedGuestMemory};
    use pvh_boot::memory::{GuestMemoryWriter, PfnRange};
    let (mut xen, fake) = xen();
    let id = xen.create_domain(&domctl::CreateDomain::pvh(1)).unwrap();
    // Two populated ranges with a hole between them.
    let first: Vec<u64> = (0..WINDOW_PAGES + 8).collect();
    let second: Vec<u64> = (0x10_0000..0x10_0004).collect();
    xen.populate_physmap(id, &first).unwrap();
    xen.populate_physmap(id, &second).unwrap();
    let ranges = [
        PfnRange {
            start: 0,
            count: WINDOW_PAGES + 8,
        },
        PfnRange {
            start: 0x10_0000,
            count: 4,
        },
    ];
    let mut mem = WindowedGuestMemory::new(&mut xen, id, &ranges);
    mem.write(0, b"start").unwrap();
    // 3 pages straddling the end of the first window (frames 0..WINDOW_PAGES).
    let at = (WINDOW_PAGES - 1) * 4096 + 100;
    let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 253) as u8).collect();
    mem.write(at, &data).unwrap();
    mem.write(0x10_0000 * 4096 + 8, b"second range").unwrap();
    assert_eq!(mem.mappings_made(), 3);
    assert_eq!(fake.read_guest(id.get(), 0, 5).unwrap(), b"start");
    // Past the end of the first range: nothing written, the address named.
    let err = mem.write((WINDOW_PAGES + 8) * 4096, b"x").unwrap_err();
    assert!(
        matches!(err, GuestWriteError::NotPopulated { gpa, .. } if gpa == (WINDOW_PAGES + 8) * 4096)
    );
    assert!(matches!(
        mem.write(u64::MAX - 2, b"wrap"),
        Err(GuestWriteError::Overflow { .. })
    ));
    drop(mem);
    assert_eq!(fake.read_guest(id.get(), at, data.len()).unwrap(), data);
    assert_eq!(
        fake.read_guest(id.get(), 0x10_0000 * 4096 + 8, 12).unwrap(),
        b"second range"
    );
}
