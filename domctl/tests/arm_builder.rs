//! The ARM64 builder against the fake hypervisor: the call sequence of good builds (1 and 2 vCPUs, vPL011
//! and PV console, passthrough), the memory image they leave (kernel at its text_offset, the DTB at x0 read
//! back with `dtc`, the initrd where the DTB's /chosen says), and every call failing in turn, each of
//! which must destroy the half-built domain and name the step. Expected values are typed from the Xen
//! headers, libxl/libxenguest and Linux's booting.rst, not from the builder.

use domctl::abi::{self, hvm_param};
use domctl::builder::arm::{ArmConfigError, config_from_boot};
use domctl::builder::{
    ArmBuilder, ArmConsole, ArmDomainConfig, ArmIomem, ArmKernel, BootDetails, BuildFailure,
    BuildStep, Cleanup, ConsoleKind, GuestKind, RingChannel,
};
use domctl::fake::{Call, FakeXen};
use domctl::{ArchConfig, DomId, Errno, InterfaceVersion, Op, Xen, XenArch};
use std::collections::BTreeSet;
use std::process::Command;

const MIB: u64 = 1 << 20;
/// GUEST_RAM0_BASE, GUEST_MAGIC_BASE (xen/include/public/arch-arm.h).
const RAM0: u64 = 0x4000_0000;
const MAGIC_PFN: u64 = 0x3900_0000 >> 12;
const TEXT_LEN: usize = 0x5000;
const BSS: u64 = 0x3000;

/// A minimal arm64 Image (booting.rst header: code0 @0, text_offset @8, image_size @16, flags @24,
/// magic "ARM\x64" @56) followed by a pattern.
fn image(text_offset: u64, flags: u64) -> Vec<u8> {
    let mut f = vec![0u8; TEXT_LEN];
    f[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
    f[8..16].copy_from_slice(&text_offset.to_le_bytes());
    f[16..24].copy_from_slice(&(TEXT_LEN as u64 + BSS).to_le_bytes());
    f[24..32].copy_from_slice(&flags.to_le_bytes());
    f[56..60].copy_from_slice(b"ARMd");
    for (i, b) in f.iter_mut().enumerate().skip(64) {
        *b = (i % 251) as u8;
    }
    f
}

/// Little-endian, 4 KiB pages, placeable anywhere (flags bits 0, 1-2 = 1, 3).
const FLAGS_LE_4K_ANY: u64 = 0b1010;

fn kernel(text_offset: u64) -> ArmKernel {
    ArmKernel::from_image(&image(text_offset, FLAGS_LE_4K_ANY)).unwrap()
}

fn xen() -> (Xen<FakeXen>, FakeXen) {
    let fake = FakeXen::new(XenArch::Arm64, InterfaceVersion::V15);
    (Xen::with_version(fake.clone(), InterfaceVersion::V15), fake)
}

const RAMDISK: &[u8] = b"070701 a pretend initramfs, not page sized";

fn config(vcpus: u32, memory: u64) -> ArmDomainConfig<'static> {
    let mut c = ArmDomainConfig::new(
        "probe-arm",
        vcpus,
        memory,
        "console=ttyAMA0 domforge.name=probe-arm",
    );
    c.ramdisk = Some(RAMDISK);
    c.gic = Some(device_tree::guest::GicVersion::V3);
    c
}

fn dedup(ops: &[Op]) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    for op in ops {
        if out.last() != Some(op) {
            out.push(*op);
        }
    }
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("domctl-arm-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `dtc -I dtb -O dts`: dtc's own reading of the blob (device-tree-compiler is installed by
/// scripts/setup).
fn dtc_decompile(dtb: &[u8], name: &str) -> String {
    let f = scratch(name);
    std::fs::write(&f, dtb).unwrap();
    let o = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&f)
        .output()
        .expect("dtc is required (apt-get install device-tree-compiler)");
    assert!(
        o.status.success(),
        "dtc rejected the guest DTB: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `dtc -I dts -O dtb` of `source`.
fn dtc_compile(source: &str, name: &str) -> Vec<u8> {
    let f = scratch(name);
    std::fs::write(&f, source).unwrap();
    let o = Command::new("dtc")
        .args(["-I", "dts", "-O", "dtb"])
        .arg(&f)
        .output()
        .expect("dtc is required (apt-get install device-tree-compiler)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// The cells of `prop = <...>;` in dtc's output, at the first line that starts with `prop =` (after
/// `node {` if given).
fn cells(dts: &str, node: Option<&str>, prop: &str) -> Option<Vec<u64>> {
    let mut lines = dts.lines().map(str::trim);
    if let Some(n) = node {
        lines.find(|l| l.starts_with(n) && l.ends_with('{'))?;
    }
    let line = lines.find(|l| l.starts_with(&format!("{prop} =")))?;
    let inner = line.split('<').nth(1)?.split('>').next()?;
    inner
        .split_whitespace()
        .map(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).ok())
        .collect()
}

fn u64_of(c: &[u64]) -> u64 {
    (c[0] << 32) | c[1]
}

/// Reads the DTB at `addr` from guest memory: header magic 0xd00dfeed and `totalsize` (@4) from the
/// Devicetree Specification's `fdt_header`.
fn dtb_at(fake: &FakeXen, domid: u16, addr: u64) -> Vec<u8> {
    let head = fake.read_guest(domid, addr, 8).unwrap();
    assert_eq!(be32(&head, 0), 0xd00d_feed, "no FDT magic at x0");
    fake.read_guest(domid, addr, be32(&head, 4) as usize)
        .unwrap()
}

/// `HVM_PARAM_CALLBACK_IRQ` for the event-channel PPI, typed from `hvm/params.h`:
/// `HVM_PARAM_CALLBACK_TYPE_PPI` (2) in val[63:56], `..._PPI_FLAG_LOW_LEVEL` (2) in val[15:8],
/// `GUEST_EVTCHN_PPI` (31, arch-arm.h) in val[7:0].
const CALLBACK_IRQ: u64 = 0x0200_0000_0000_021f;

#[test]
fn good_builds_issue_the_libxl_sequence_and_leave_a_bootable_image() {
    // 256 MiB: modules at RAM0 + 128 MiB; 64 MiB: as high as fits in bank 0 (xg_dom_arm.c meminit()).
    for (vcpus, memory, text_offset) in [(1u32, 256 * MIB, 0x8_0000u64), (2, 64 * MIB, 0)] {
        let (mut xen, fake) = xen();
        let built = ArmBuilder::new(&mut xen)
            .build(&kernel(text_offset), &config(vcpus, memory))
            .unwrap();
        let ops = fake.ops();
        assert_eq!(
            dedup(&ops),
            [
                Op::CreateDomain,
                Op::MaxVcpus,
                Op::GetDomainInfo,
                Op::MaxMem,
                Op::SetPagingMempoolSize,
                Op::SetAddressSize,
                Op::PopulatePhysmap,
                Op::MapForeign,
                Op::VuartOp,
                Op::HvmSetParam,
                Op::SetVcpuContext,
                Op::UnpauseDomain,
            ],
            "vcpus={vcpus}"
        );
        // One context: vCPU 0; the others come up by PSCI CPU_ON.
        assert_eq!(ops.iter().filter(|o| **o == Op::SetVcpuContext).count(), 1);
        assert_eq!(built.kind, GuestKind::Arm64);
        let id = built.domid.get();
        let d = fake.domain(id).unwrap();
        assert!(!d.paused);
        assert_eq!(d.vcpus, Some(vcpus));
        // XEN_DOMCTL_CDF_hvm (1<<0) | XEN_DOMCTL_CDF_hap (1<<1), no CDF_iommu (1<<5) without devices.
        assert_eq!(d.config.flags, 0b11);
        let ArchConfig::Arm(a) = d.config.arch else {
            panic!("not an ARM config")
        };
        // XEN_DOMCTL_CONFIG_GIC_V3 = 2; nr_spis = (GUEST_VPL011_SPI 32 - 32) + 1 for the vPL011.
        assert_eq!((a.gic_version, a.nr_spis), (2, 1));
        assert_eq!(d.address_size, Some(64));
        // Populate came after the address size (switch_mode() refuses once pages exist).
        let pos = |op| ops.iter().position(|o| *o == op).unwrap();
        assert!(pos(Op::SetAddressSize) < pos(Op::PopulatePhysmap));
        // RAM + 4 magic pages; max_mem = RAM + LIBXL_MAXMEM_CONSTANT (1024 KiB).
        assert_eq!(d.pages.len() as u64, memory / 4096 + 4);
        for pfn in MAGIC_PFN..MAGIC_PFN + 4 {
            assert!(d.pages.contains_key(&pfn), "magic pfn {pfn:#x}");
        }
        assert_eq!(d.max_mem_kib, Some(memory / 1024 + 1024));
        // libxl_get_required_shadow_memory: 4 KiB * (256 * vcpus + 2 * MiB).
        assert_eq!(
            d.paging_mempool_bytes,
            Some(4096 * (256 * u64::from(vcpus) + 2 * (memory / MIB)))
        );
        assert_eq!(
            d.hvm_params.get(&hvm_param::CALLBACK_IRQ),
            Some(&CALLBACK_IRQ)
        );
        // MEMACCESS_PFN_OFFSET 2 (xg_dom_arm.c alloc_magic_pages()).
        assert_eq!(
            d.hvm_params.get(&hvm_param::MONITOR_RING_PFN),
            Some(&(MAGIC_PFN + 2))
        );
        // vPL011: its ring on VUART_PFN_OFFSET 3, served by dom0; the PV console params stay 0.
        let (gfn, backend, port) = d.vuart.unwrap();
        assert_eq!((gfn, backend), (MAGIC_PFN + 3, 0));
        assert_eq!(d.evtchns.get(&port), Some(&0));
        assert_eq!(built.console, RingChannel { pfn: gfn, port });
        assert_eq!(built.console_kind, ConsoleKind::Vpl011);
        assert!(!d.hvm_params.contains_key(&hvm_param::CONSOLE_PFN));
        assert!(!d.hvm_params.contains_key(&hvm_param::STORE_PFN));

        // vCPU 0 per vcpu_arm64(): pc = RAM0 + text_offset (the Image's first instruction), x0 = DTB,
        // PSR_GUEST64_INIT 0x1c5, SCTLR_GUEST_INIT 0x00c50078, VGCF_online.
        let ctx = d.arm_vcpu[&0];
        assert_eq!(ctx.user_regs.pc64, RAM0 + text_offset);
        assert_eq!(ctx.user_regs.cpsr, 0x1c5);
        assert_eq!(ctx.sctlr, 0x00c5_0078);
        assert_eq!(ctx.flags, 1);
        assert_eq!(&ctx.user_regs.x[1..4], &[0, 0, 0]);
        assert_eq!(d.arm_vcpu.len(), 1);

        // The kernel's bytes at its load address.
        let text = fake.read_guest(id, ctx.user_regs.pc64, TEXT_LEN).unwrap();
        assert_eq!(text, image(text_offset, FLAGS_LE_4K_ANY));

        // x0: a DTB, 8-byte aligned and at most 2 MiB (booting.rst), that dtc reads.
        let x0 = ctx.user_regs.x[0];
        assert_eq!(x0 % 8, 0);
        let dtb = dtb_at(&fake, id, x0);
        assert!(dtb.len() as u64 <= 2 * MIB);
        let dts = dtc_decompile(&dtb, &format!("good-{vcpus}.dtb"));
        assert!(dts.contains("bootargs = \"console=ttyAMA0 domforge.name=probe-arm\";"));
        assert!(dts.contains("compatible = \"arm,sbsa-uart\";"), "{dts}");
        assert!(dts.contains("compatible = \"arm,gic-v3\";"), "{dts}");
        assert_eq!(
            dts.matches("device_type = \"cpu\";").count(),
            vcpus as usize
        );
        assert_eq!(
            cells(&dts, Some("memory@40000000"), "reg"),
            Some(vec![0, RAM0, 0, memory])
        );
        // The initrd is where /chosen says, byte for byte; initrd-end is exclusive.
        let start = u64_of(&cells(&dts, Some("chosen"), "linux,initrd-start").unwrap());
        let end = u64_of(&cells(&dts, Some("chosen"), "linux,initrd-end").unwrap());
        assert_eq!(end - start, RAMDISK.len() as u64);
        assert_eq!(fake.read_guest(id, start, RAMDISK.len()).unwrap(), RAMDISK);
        // Placement (meminit()): initrd, then the DTB on the next page; both at RAM0 + 128 MiB when
        // that fits, else ending at the top of bank 0.
        let page = |n: u64| n.div_ceil(4096) * 4096;
        assert_eq!(x0, start + page(RAMDISK.len() as u64));
        let modbase = if memory >= 128 * MIB + page(RAMDISK.len() as u64) + page(dtb.len() as u64) {
            RAM0 + 128 * MIB
        } else {
            RAM0 + memory - page(RAMDISK.len() as u64) - page(dtb.len() as u64)
        };
        assert_eq!(start, modbase, "vcpus={vcpus}");
        match &built.boot {
            BootDetails::Arm64(b) => {
                assert_eq!(b.layout.dtb.base, x0);
                assert_eq!(b.nr_spis, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.live_buffers(), 0);
    }
}

#[test]
fn pv_console_sets_the_console_params_and_no_vuart() {
    let (mut xen, fake) = xen();
    let mut cfg = config(1, 64 * MIB);
    cfg.console = ArmConsole::Pv;
    cfg.cmdline = "console=hvc0";
    let built = ArmBuilder::new(&mut xen).build(&kernel(0), &cfg).unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    assert!(d.vuart.is_none());
    assert!(!fake.ops().contains(&Op::VuartOp));
    // CONSOLE_PFN_OFFSET 0: the first magic page.
    assert_eq!(d.hvm_params.get(&hvm_param::CONSOLE_PFN), Some(&MAGIC_PFN));
    let port = d.hvm_params[&hvm_param::CONSOLE_EVTCHN] as u32;
    assert_eq!(d.evtchns.get(&port), Some(&0));
    assert_eq!(
        built.console,
        RingChannel {
            pfn: MAGIC_PFN,
            port
        }
    );
    assert_eq!(built.console_kind, ConsoleKind::Pv);
    // No vPL011: no SPI reserved, no UART node.
    let ArchConfig::Arm(a) = d.config.arch else {
        panic!()
    };
    assert_eq!(a.nr_spis, 0);
    let dtb = dtb_at(&fake, built.domid.get(), d.arm_vcpu[&0].user_regs.x[0]);
    let dts = dtc_decompile(&dtb, "pv.dtb");
    assert!(!dts.contains("sbsa"), "{dts}");
    // The /hypervisor node's event-channel interrupt is PPI 31 - 16 = 15, level-low (8), CPU mask 0xf.
    assert_eq!(
        cells(&dts, Some("hypervisor"), "interrupts"),
        Some(vec![1, 15, 0xf08])
    );
}

#[test]
fn xenstore_is_opt_in() {
    let (mut xen, fake) = xen();
    let mut cfg = config(1, 64 * MIB);
    cfg.xenstore = true;
    let built = ArmBuilder::new(&mut xen).build(&kernel(0), &cfg).unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    // XENSTORE_PFN_OFFSET 1.
    assert_eq!(
        d.hvm_params.get(&hvm_param::STORE_PFN),
        Some(&(MAGIC_PFN + 1))
    );
    let port = d.hvm_params[&hvm_param::STORE_EVTCHN] as u32;
    assert_ne!(port, built.console.port);
    assert_eq!(d.evtchns.get(&port), Some(&0));
    assert_eq!(built.xenstore.unwrap().pfn, MAGIC_PFN + 1);
    // Grant refs 0 and 1 (GNTTAB_RESERVED_CONSOLE/_XENSTORE, grant_table.h) permit dom0 the PV console
    // page (CONSOLE_PFN_OFFSET 0, even with the vPL011 as console, as libxl seeds it) and the store
    // page, version-1 layout: flags u16 @0, domid u16 @2, frame u32 @4.
    let frame = &d.grant_frames[&0];
    let entry = |r: usize| {
        let e = &frame[r * 8..r * 8 + 8];
        (
            u16::from_le_bytes([e[0], e[1]]),
            u16::from_le_bytes([e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        )
    };
    assert_eq!(entry(0), (1, 0, MAGIC_PFN as u32));
    assert_eq!(entry(1), (1, 0, (MAGIC_PFN + 1) as u32));
    assert!(frame[16..].iter().all(|b| *b == 0));
    assert!(
        d.physmap.is_empty(),
        "the scratch frame left the p2m: {:?}",
        d.physmap
    );
}

#[test]
fn no_xenstore_no_seeded_grants() {
    let (mut xen, fake) = xen();
    let built = ArmBuilder::new(&mut xen)
        .build(&kernel(0), &config(1, 64 * MIB))
        .unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    assert!(!d.hvm_params.contains_key(&hvm_param::STORE_PFN));
    assert!(d.grant_frames.is_empty());
}

/// QEMU virt's PL061 GPIO (0x9030000, SPI 7 = INTID 39) and a second device with a 100-page window,
/// as a no-DMA passthrough needs them; plus an IOMMU-protected device by DT path.
const FRAGMENT: &str = r#"/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    passthrough {
        compatible = "simple-bus";
        ranges;
        #address-cells = <2>;
        #size-cells = <2>;
        gpio@9030000 {
            compatible = "arm,pl061", "arm,primecell";
            reg = <0x0 0x9030000 0x0 0x1000>;
            interrupts = <0 7 4>;
        };
    };
};
"#;

#[test]
fn passthrough_follows_libxl_order_with_the_right_arguments() {
    for with_iommu_device in [false, true] {
        let (mut xen, fake) = xen();
        fake.add_host_dt_device("/soc/ethernet@ff0e0000");
        let fragment = dtc_compile(FRAGMENT, "fragment.dts");
        let mut cfg = config(2, 64 * MIB);
        cfg.irqs = vec![39, 45];
        cfg.iomem = vec![
            ArmIomem {
                first_mfn: 0x9030,
                nr_pages: 1,
                gfn: 0x9030,
            },
            ArmIomem {
                first_mfn: 0x1_0000,
                nr_pages: 100,
                gfn: 0x9100,
            },
        ];
        if with_iommu_device {
            cfg.dt_devices = vec!["/soc/ethernet@ff0e0000"];
        }
        cfg.passthrough_dtb = Some(&fragment);
        let built = ArmBuilder::new(&mut xen).build(&kernel(0), &cfg).unwrap();
        let id = built.domid.get();
        let pt: Vec<Call> = fake
            .calls()
            .into_iter()
            .map(|c| c.call)
            .filter(|c| {
                matches!(
                    c,
                    Call::IrqPermission { .. }
                        | Call::BindPtIrq { .. }
                        | Call::IomemPermission { .. }
                        | Call::MemoryMapping { .. }
                        | Call::AssignDtDevice { .. }
                )
            })
            .collect();
        let mut want = vec![
            // PT_IRQ_TYPE_SPI 4 (domctl.h), machine_irq == spi (1:1).
            Call::BindPtIrq {
                domid: id,
                machine_irq: 39,
                irq_type: 4,
                spi: 39,
            },
            Call::BindPtIrq {
                domid: id,
                machine_irq: 45,
                irq_type: 4,
                spi: 45,
            },
            Call::IomemPermission {
                domid: id,
                first_mfn: 0x9030,
                nr_mfns: 1,
                allow: true,
            },
            Call::MemoryMapping {
                domid: id,
                first_gfn: 0x9030,
                first_mfn: 0x9030,
                nr_mfns: 1,
                add: true,
            },
            Call::IomemPermission {
                domid: id,
                first_mfn: 0x1_0000,
                nr_mfns: 100,
                allow: true,
            },
            // ARM refuses more than 64 frames per call (E2BIG): 64 + 36.
            Call::MemoryMapping {
                domid: id,
                first_gfn: 0x9100,
                first_mfn: 0x1_0000,
                nr_mfns: 64,
                add: true,
            },
            Call::MemoryMapping {
                domid: id,
                first_gfn: 0x9140,
                first_mfn: 0x1_0040,
                nr_mfns: 36,
                add: true,
            },
        ];
        if with_iommu_device {
            want.push(Call::AssignDtDevice {
                domid: id,
                path: "/soc/ethernet@ff0e0000".into(),
            });
        }
        assert_eq!(pt, want);
        let d = fake.domain(id).unwrap();
        let ArchConfig::Arm(a) = d.config.arch else {
            panic!()
        };
        // nr_spis = highest SPI 45 - 32 + 1 (libxl__arch_domain_prepare_config()).
        assert_eq!(a.nr_spis, 14);
        // CDF_iommu (1 << 5) only when a device is assigned through the IOMMU.
        assert_eq!(d.config.flags & abi::cdf::IOMMU != 0, with_iommu_device);
        assert_eq!(d.spis, BTreeSet::from([39, 45]));
        // Passthrough happens before the vCPU starts.
        let ops = fake.ops();
        let last_pt = ops
            .iter()
            .rposition(|o| matches!(o, Op::MemoryMapping | Op::AssignDevice))
            .unwrap();
        assert!(last_pt < ops.iter().position(|o| *o == Op::SetVcpuContext).unwrap());
        // The fragment's device is in the guest's /passthrough.
        let dtb = dtb_at(&fake, id, d.arm_vcpu[&0].user_regs.x[0]);
        let dts = dtc_decompile(&dtb, "passthrough.dtb");
        assert!(dts.contains("passthrough {"), "{dts}");
        assert_eq!(
            cells(&dts, Some("gpio@9030000"), "reg"),
            Some(vec![0, 0x903_0000, 0, 0x1000])
        );
    }
}

#[test]
fn requests_xen_or_linux_would_refuse_fail_before_any_domain_exists() {
    type Edit = Box<dyn Fn(&mut ArmDomainConfig<'static>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "SPI 32 with a vPL011",
            Box::new(|c| c.irqs = vec![32]),
            "vPL011",
        ),
        ("an SGI/PPI", Box::new(|c| c.irqs = vec![27]), "only SPIs"),
        ("a duplicate", Box::new(|c| c.irqs = vec![40, 40]), "twice"),
        (
            "memory not in pages",
            Box::new(|c| c.memory_bytes = 64 * MIB + 5),
            "whole number",
        ),
        ("no vCPU", Box::new(|c| c.vcpus = 0), "vCPU count"),
        (
            "MMIO on guest RAM",
            Box::new(|c| {
                c.iomem = vec![ArmIomem {
                    first_mfn: 0x9030,
                    nr_pages: 1,
                    gfn: RAM0 >> 12,
                }]
            }),
            "guest RAM",
        ),
        (
            "MMIO on the magic pages",
            Box::new(|c| {
                c.iomem = vec![ArmIomem {
                    first_mfn: 0x9030,
                    nr_pages: 1,
                    gfn: MAGIC_PFN,
                }]
            }),
            "overlaps magic pages",
        ),
        (
            "a relative DT path",
            Box::new(|c| c.dt_devices = vec!["soc/uart"]),
            "absolute",
        ),
        (
            "a ramdisk larger than RAM",
            Box::new(|c| c.ramdisk = Some(&[0u8; 3 << 20])),
            "no room for the boot modules",
        ),
        (
            "a fragment without /passthrough",
            Box::new(|c| c.passthrough_dtb = Some(b"not a dtb")),
            "passthrough fragment",
        ),
    ];
    for (what, edit, text) in cases {
        let (mut xen, fake) = xen();
        let mut cfg = config(1, 4 * MIB);
        edit(&mut cfg);
        let err = ArmBuilder::new(&mut xen)
            .build(&kernel(0), &cfg)
            .expect_err(what);
        assert_eq!(err.step, BuildStep::Plan, "{what}");
        assert!(matches!(err.cleanup, Cleanup::NoDomain));
        assert!(err.to_string().contains(text), "{what}: {err}");
        assert!(fake.ops().is_empty(), "{what}: Xen was called");
    }

    // A kernel whose image_size does not fit the guest.
    let (mut xen, _) = xen();
    let mut big = image(0, FLAGS_LE_4K_ANY);
    big[16..24].copy_from_slice(&(8 * MIB).to_le_bytes());
    let err = ArmBuilder::new(&mut xen)
        .build(&ArmKernel::from_image(&big).unwrap(), &config(1, 4 * MIB))
        .unwrap_err();
    assert_eq!(err.step, BuildStep::Plan);
    assert!(matches!(*err.source, BuildFailure::ArmLayout(_)), "{err}");
    assert!(err.to_string().contains("more memory"), "{err}");
}

/// Which step a failure of the `nth` call of `op` must be reported as, given the good build's calls.
fn expected_step(
    op: Op,
    nth: usize,
    good: &[Call],
    cfg: &ArmDomainConfig<'_>,
    layout: &domctl::builder::ArmLayout,
) -> BuildStep {
    match op {
        Op::MaximumGpfn | Op::AddToPhysmap | Op::RemoveFromPhysmap => BuildStep::SeedGrants,
        Op::CreateDomain => BuildStep::CreateDomain,
        Op::MaxVcpus => BuildStep::MaxVcpus,
        Op::GetDomainInfo => BuildStep::DomainInfo,
        Op::MaxMem => BuildStep::MaxMem,
        Op::SetPagingMempoolSize => BuildStep::PagingPool,
        Op::SetAddressSize => BuildStep::AddressSize,
        Op::PopulatePhysmap => BuildStep::Populate,
        Op::MapForeign => {
            // Which part the nth window was mapped for, by its first frame.
            let first = good
                .iter()
                .filter_map(|c| match c {
                    Call::MapForeign { pfns, .. } => pfns.first().copied(),
                    _ => None,
                })
                .nth(nth - 1)
                .unwrap()
                * 4096;
            let inside =
                |r: firmware_config::board::Region| first >= r.base && first < r.base + r.size;
            // The seeding maps the scratch grant frame just past the highest one in use.
            let scratch = good.iter().find_map(|c| match c {
                Call::AddToPhysmap { gpfn, .. } => Some(*gpfn),
                _ => None,
            });
            if scratch == Some(first >> 12) {
                BuildStep::SeedGrants
            } else if inside(layout.kernel) {
                BuildStep::LoadKernel
            } else if layout.initrd.is_some_and(inside) {
                BuildStep::LoadRamdisk
            } else if inside(layout.dtb) {
                BuildStep::LoadDeviceTree
            } else {
                assert_eq!(first >> 12, MAGIC_PFN);
                BuildStep::ClearMagicPages
            }
        }
        Op::VuartOp => BuildStep::Vuart,
        Op::EvtchnAllocUnbound if nth == 1 && cfg.console == ArmConsole::Pv => {
            BuildStep::ConsoleEvtchn
        }
        Op::EvtchnAllocUnbound => BuildStep::StoreEvtchn,
        Op::HvmSetParam => BuildStep::HvmParams,
        Op::BindPtIrq => BuildStep::BindIrq,
        Op::IomemPermission => BuildStep::IomemPermission,
        Op::MemoryMapping => BuildStep::MemoryMapping,
        Op::AssignDevice => BuildStep::AssignDevice,
        Op::SetVcpuContext => BuildStep::SetVcpuContext,
        Op::UnpauseDomain => BuildStep::Unpause,
        other => panic!("unexpected op {other:?}"),
    }
}

#[test]
fn every_call_failing_destroys_the_domain_and_names_the_step() {
    let fragment = dtc_compile(FRAGMENT, "fragment-fail.dts");
    let mut steps_seen = BTreeSet::new();
    // A vPL011 guest with MMIO and SPIs; a PV-console guest with xenstore and an IOMMU device.
    let mut a = config(1, 256 * MIB);
    a.irqs = vec![39];
    a.iomem = vec![ArmIomem {
        first_mfn: 0x9030,
        nr_pages: 1,
        gfn: 0x9030,
    }];
    a.passthrough_dtb = Some(&fragment);
    // A 16 MiB ramdisk fills one mapping window exactly (WINDOW_PAGES), so the DTB after it needs a
    // mapping of its own and its failure is reachable.
    let big_ramdisk = vec![0x5au8; 16 << 20];
    let mut b = config(2, 64 * MIB);
    b.ramdisk = Some(&big_ramdisk);
    b.console = ArmConsole::Pv;
    b.xenstore = true;
    b.dt_devices = vec!["/soc/ethernet@ff0e0000"];
    for cfg in [a, b] {
        let (mut xen, fake) = xen();
        fake.add_host_dt_device("/soc/ethernet@ff0e0000");
        let built = ArmBuilder::new(&mut xen)
            .build(&kernel(0x8_0000), &cfg)
            .unwrap();
        let BootDetails::Arm64(boot) = built.boot else {
            panic!()
        };
        let good: Vec<Call> = fake.calls().into_iter().map(|c| c.call).collect();
        let ops = fake.ops();
        let mut cases = Vec::new();
        let mut distinct: Vec<Op> = Vec::new();
        for op in &ops {
            if !distinct.contains(op) {
                distinct.push(*op);
            }
        }
        for op in distinct {
            for nth in 1..=ops.iter().filter(|o| **o == op).count() {
                cases.push((op, nth));
            }
        }
        for (op, nth) in cases {
            let (mut xen, fake) = self::xen();
            fake.add_host_dt_device("/soc/ethernet@ff0e0000");
            fake.fail_nth(op, nth, Errno::ENOMEM);
            let err = ArmBuilder::new(&mut xen)
                .build(&kernel(0x8_0000), &cfg)
                .expect_err("injected failure must fail the build");
            let want = expected_step(op, nth, &good, &cfg, &boot.layout);
            assert_eq!(err.step, want, "{op:?} #{nth}");
            steps_seen.insert(format!("{want:?}"));
            let text = err.to_string();
            assert!(text.contains("ARM64 domain 'probe-arm'"), "{text}");
            assert!(text.contains(want.describe()), "{text}");
            assert!(
                text.contains("ENOMEM") || text.contains("out of memory"),
                "{op:?}: {text}"
            );
            if op == Op::CreateDomain {
                assert!(err.domid.is_none());
                assert!(matches!(err.cleanup, Cleanup::NoDomain));
                assert_eq!(fake.domain_ids(), vec![0]);
            } else {
                let id = err.domid.expect("domain id in the error").get();
                assert!(matches!(err.cleanup, Cleanup::Destroyed), "{op:?}: {text}");
                assert!(text.contains("destroyed"), "{text}");
                assert!(
                    fake.domain(id).is_none(),
                    "{op:?} #{nth}: domain left behind"
                );
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
            assert_eq!(fake.live_buffers(), 0);
        }
    }
    // Every step that issues a call failed at least once (Plan and DeviceTree call nothing).
    for s in BuildStep::ARM64 {
        if matches!(s, BuildStep::Plan | BuildStep::DeviceTree) {
            continue;
        }
        assert!(
            steps_seen.contains(&format!("{s:?}")),
            "step {s:?} never failed"
        );
    }
}

#[test]
fn a_failing_destroy_is_reported_not_hidden() {
    let (mut xen, fake) = xen();
    fake.fail_nth(Op::SetVcpuContext, 1, Errno::EINVAL);
    fake.fail_nth(Op::DestroyDomain, 1, Errno::EBUSY);
    let err = ArmBuilder::new(&mut xen)
        .build(&kernel(0), &config(1, 64 * MIB))
        .unwrap_err();
    assert_eq!(err.step, BuildStep::SetVcpuContext);
    assert!(matches!(err.cleanup, Cleanup::DestroyFailed(_)));
    assert!(fake.domain(err.domid.unwrap().get()).is_some());
    assert!(err.to_string().contains("left paused"), "{err}");
}

#[test]
fn build_paused_leaves_the_domain_paused() {
    let (mut xen, fake) = xen();
    let built = ArmBuilder::new(&mut xen)
        .build_paused(&kernel(0), &config(1, 64 * MIB))
        .unwrap();
    assert!(fake.domain(built.domid.get()).unwrap().paused);
    assert!(!fake.ops().contains(&Op::UnpauseDomain));
}

#[test]
fn native_gic_is_read_back_from_xen() {
    let (mut xen, fake) = xen();
    let mut cfg = config(1, 64 * MIB);
    cfg.gic = None;
    let built = ArmBuilder::new(&mut xen).build(&kernel(0), &cfg).unwrap();
    // The fake answers NATIVE with GICv3 as a GICv3 host would (gic_version is IN/OUT).
    let create = fake
        .calls()
        .into_iter()
        .find_map(|c| match c.call {
            Call::CreateDomain { arch, .. } => Some(arch),
            _ => None,
        })
        .unwrap();
    let ArchConfig::Arm(a) = create else { panic!() };
    assert_eq!(a.gic_version, 0); // XEN_DOMCTL_CONFIG_GIC_NATIVE
    let BootDetails::Arm64(b) = built.boot else {
        panic!()
    };
    assert_eq!(b.gic, device_tree::guest::GicVersion::V3);
}

// ------------------------------------------------------------------------------------------------
// kernels
// ------------------------------------------------------------------------------------------------

fn gzip(data: &[u8]) -> Vec<u8> {
    // One file per call: tests run in parallel threads of one process, and two of them gzip
    // different images (a shared name let one test compress the other's bytes).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = scratch(&format!("image-{n}.bin"));
    std::fs::write(&f, data).unwrap();
    let o = Command::new("gzip")
        .args(["-c", "-n"])
        .arg(&f)
        .output()
        .expect("gzip is required");
    assert!(o.status.success());
    o.stdout
}

#[test]
fn kernels_gzip_or_raw_are_accepted_and_others_refused_with_the_reason() {
    let raw = image(0x8_0000, FLAGS_LE_4K_ANY);
    let k = ArmKernel::from_image(&gzip(&raw)).unwrap();
    assert_eq!(k.image_bytes(), raw);
    assert_eq!(k.header().text_offset, 0x8_0000);
    assert_eq!(k.footprint(), TEXT_LEN as u64 + BSS);

    let be = ArmKernel::from_image(&image(0, FLAGS_LE_4K_ANY | 1)).unwrap_err();
    assert!(be.to_string().contains("big-endian"), "{be}");
    let mut bad = raw.clone();
    bad[56..60].copy_from_slice(b"ARMx");
    assert!(ArmKernel::from_image(&bad).is_err());
    let err = ArmKernel::from_image(&gzip(
        b"just some text, gzipped, no kernel at all...........................",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("not an arm64 Image"), "{err}");
    // An aarch64 ELF vmlinux: e_machine EM_AARCH64 183 @18.
    let mut elf = vec![0u8; 128];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[6] = 1;
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let err = ArmKernel::from_image(&elf).unwrap_err();
    assert!(err.to_string().contains("Image"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// the boot blob
// ------------------------------------------------------------------------------------------------

fn boot_domain() -> firmware_config::blob::BootDomain {
    use firmware_config::blob::*;
    let mut d = BootDomain {
        name: "gpio-owner".try_into().unwrap(),
        kind: BootKind::Arm64,
        builder: BootBuilder::Init,
        vcpus: 2,
        memory_kib: 128 * 1024,
        kernel: "/boot/Image".try_into().unwrap(),
        ramdisk: Some("/boot/initrd".try_into().unwrap()),
        cmdline: "console=ttyAMA0".try_into().unwrap(),
        console: BootConsole::Vpl011,
        on_crash: BootOnCrash::Restart,
        depends_on: Default::default(),
        iomem: Default::default(),
        irqs: Default::default(),
        dt_devices: Default::default(),
        p2m_pool_kib: 0,
        passthrough_dtb: Some("/boot/gpio.dtb".try_into().unwrap()),
        pv_disks: Default::default(),
        pv_nics: Default::default(),
    };
    d.iomem
        .push(BootIomem {
            first_mfn: 0x9030,
            nr_pages: 1,
            gfn: 0x9030,
        })
        .unwrap();
    d.irqs.push(39).unwrap();
    d
}

#[test]
fn config_from_boot_maps_the_blob_and_builds() {
    use firmware_config::blob::*;
    let d = boot_domain();
    let system = BootConfig {
        system: "t".try_into().unwrap(),
        xen_major: 4,
        xen_minor: 17,
        domctl_interface: 0x15,
        arm_gic: Some(BootGic::V2),
        domains: Default::default(),
        xenstore: false,
    };
    let fragment = dtc_compile(FRAGMENT, "fragment-blob.dts");
    let err = config_from_boot(&system, &d, None, Some(&fragment), DomId::DOM0).unwrap_err();
    assert!(matches!(err, ArmConfigError::RamdiskMissing { .. }));
    let err = config_from_boot(&system, &d, Some(RAMDISK), None, DomId::DOM0).unwrap_err();
    assert!(err.to_string().contains("/boot/gpio.dtb"), "{err}");
    let cfg = config_from_boot(&system, &d, Some(RAMDISK), Some(&fragment), DomId::DOM0).unwrap();
    assert_eq!(cfg.memory_bytes, 128 * MIB);
    assert_eq!(cfg.irqs, [39]);
    assert_eq!(cfg.console, ArmConsole::Vpl011);
    assert_eq!(cfg.paging_pool_bytes, None);

    let (mut xen, fake) = xen();
    let built = ArmBuilder::new(&mut xen).build(&kernel(0), &cfg).unwrap();
    let d_state = fake.domain(built.domid.get()).unwrap();
    let ArchConfig::Arm(a) = d_state.config.arch else {
        panic!()
    };
    assert_eq!(a.gic_version, 1); // XEN_DOMCTL_CONFIG_GIC_V2
    let dtb = dtb_at(
        &fake,
        built.domid.get(),
        d_state.arm_vcpu[&0].user_regs.x[0],
    );
    let dts = dtc_decompile(&dtb, "blob.dtb");
    assert!(
        dts.contains("compatible = \"arm,cortex-a15-gic\\0arm,cortex-a9-gic\";"),
        "{dts}"
    );
    assert!(dts.contains("model = \"XENVM-4.17\";"), "{dts}");

    let mut pvh = boot_domain();
    pvh.kind = BootKind::Pvh;
    assert!(matches!(
        config_from_boot(&system, &pvh, Some(RAMDISK), Some(&fragment), DomId::DOM0),
        Err(ArmConfigError::NotArm(_))
    ));
    let mut xen_built = boot_domain();
    xen_built.builder = BootBuilder::Xen;
    assert!(matches!(
        config_from_boot(
            &system,
            &xen_built,
            Some(RAMDISK),
            Some(&fragment),
            DomId::DOM0
        ),
        Err(ArmConfigError::BuiltByXen(_))
    ));
}

// ------------------------------------------------------------------------------------------------
// Debian's arm64 kernel
// ------------------------------------------------------------------------------------------------

/// Debian's arm64 kernel, fetched and verified by `debian_fetch::Fetcher` into
/// `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/` (never committed). Missing: skipped with the reason,
/// except in CI (`CI=true`), where it fails.
fn debian_arm64_image() -> Option<Vec<u8>> {
    let fetched =
        debian_fetch::Fetcher::from_env().and_then(|f| f.linux_kernel(debian_fetch::Arch::Arm64));
    match fetched.map(|k| std::fs::read(&k.image).map_err(|e| (k.image, e))) {
        Ok(Ok(bytes)) => Some(bytes),
        Ok(Err((path, e))) => skip_or_fail(&format!("reading {}: {e}", path.display())),
        Err(e) => skip_or_fail(&format!("Debian arm64 kernel package: {e}")),
    }
}

fn skip_or_fail<T>(what: &str) -> Option<T> {
    if test_support::strict() {
        panic!("CI=true and a test prerequisite is missing: {what}");
    }
    eprintln!("SKIPPED: {what}");
    None
}

#[test]
fn debian_arm64_kernel_raw_and_gzipped_builds_with_the_image_at_its_text_offset() {
    let Some(file) = debian_arm64_image() else {
        return;
    };
    // The Image itself, or the gzip Debian ships as vmlinuz: either way one raw Image and one gzip.
    let raw = if file.starts_with(&[0x1f, 0x8b]) {
        let k = ArmKernel::from_image(&file).unwrap();
        k.image_bytes().to_vec()
    } else {
        file
    };
    let gz = gzip(&raw);
    // Header fields read by hand from booting.rst's layout, not by the parser under test.
    assert_eq!(&raw[56..60], b"ARMd");
    let text_offset = u64::from_le_bytes(raw[8..16].try_into().unwrap());
    let image_size = u64::from_le_bytes(raw[16..24].try_into().unwrap());
    let flags = u64::from_le_bytes(raw[24..32].try_into().unwrap());
    assert_eq!(flags & 1, 0, "Debian's arm64 kernel is little-endian");
    assert!(image_size >= raw.len() as u64, "image_size covers the file");

    let k = ArmKernel::from_image(&raw).unwrap();
    let kz = ArmKernel::from_image(&gz).unwrap();
    assert_eq!(k.image_bytes(), kz.image_bytes());
    assert_eq!(k.header().text_offset, text_offset);
    assert_eq!(k.footprint(), image_size);

    let (mut xen, fake) = xen();
    let cfg = config(2, 256 * MIB);
    let built = ArmBuilder::new(&mut xen).build(&kz, &cfg).unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    let ctx = d.arm_vcpu[&0];
    assert_eq!(ctx.user_regs.pc64, RAM0 + text_offset);
    let loaded = fake
        .read_guest(built.domid.get(), ctx.user_regs.pc64, raw.len())
        .unwrap();
    assert!(
        loaded == raw,
        "the Image in guest memory differs from the file"
    );
    // A ~40 MiB kernel ends below RAM0 + 128 MiB, so the modules go there (meminit()).
    let dts = dtc_decompile(
        &dtb_at(&fake, built.domid.get(), ctx.user_regs.x[0]),
        "debian.dtb",
    );
    let start = u64_of(&cells(&dts, Some("chosen"), "linux,initrd-start").unwrap());
    assert_eq!(start, RAM0 + 128 * MIB);
}

/// A kernel stored as LZ4 legacy frames (written by the `lz4` tool, `-l`: the framing Linux's
/// `unlz4` reads) is streamed into guest memory and lands byte for byte where the in-memory
/// kernel does.
#[test]
fn an_lz4_legacy_image_is_streamed_to_the_same_place() {
    if !test_support::need_tool("arm_builder", "lz4", "lz4") {
        return;
    }
    let dir = scratch("lz4-streamed");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = image(0x8_0000, FLAGS_LE_4K_ANY);
    let plain = dir.join("Image");
    std::fs::write(&plain, &raw).unwrap();
    let packed = dir.join("Image.lz4");
    let ok = std::process::Command::new("lz4")
        .args(["-l", "-q", "-f"])
        .arg(&plain)
        .arg(&packed)
        .status()
        .unwrap()
        .success();
    assert!(ok, "lz4 -l");
    let streamed = ArmKernel::open(&packed).unwrap();
    assert!(streamed.is_streamed());
    assert!(streamed.held_bytes() <= 64);
    assert_eq!(streamed.footprint(), kernel(0x8_0000).footprint());
    let (mut xen, fake) = xen();
    let built = ArmBuilder::new(&mut xen)
        .build(&streamed, &config(1, 256 * MIB))
        .unwrap();
    let d = fake.domain(built.domid.get()).unwrap();
    let pc = d.arm_vcpu[&0].user_regs.pc64;
    assert_eq!(pc, RAM0 + 0x8_0000);
    assert_eq!(
        fake.read_guest(built.domid.get(), pc, TEXT_LEN).unwrap(),
        raw
    );
    // A file that is not LZ4 is read in memory, as before.
    assert!(!ArmKernel::open(&plain).unwrap().is_streamed());
}

/// A dom0less `enhanced` domain as Xen leaves it (store channel allocated, `HVM_PARAM_STORE_PFN`
/// ~0) gets its store page the way init-dom0less gives it (`late_store`): one more page of maximum,
/// the page populated at GUEST_MAGIC_BASE + 1 page with `connection = XENSTORE_RECONNECT` at offset
/// 2068 of `xenstore_domain_interface` (xs_wire.h), grant entry 1 for dom0 in frame 0 where the guest
/// maps it (GUEST_GNTTAB_BASE, left mapped), then the parameter.
#[test]
fn a_running_enhanced_domain_gets_its_store_page_late() {
    use domctl::builder::late_store::{self, LateStore};
    let (mut xen, fake) = xen();
    // As Xen's dom0less builder leaves it: RAM, but no magic pages (init-dom0less populates the
    // store page itself).
    let id = xen
        .create_domain(&domctl::CreateDomain::arm(1, 2, 0))
        .unwrap();
    xen.set_max_mem(id, 64 * 1024).unwrap();
    // Xen's dom0less builder for `xen,enhanced` (alloc_xenstore_evtchn): a channel, no page yet.
    xen.set_hvm_param(id, hvm_param::STORE_EVTCHN, 5).unwrap();
    xen.set_hvm_param(id, hvm_param::STORE_PFN, u64::MAX)
        .unwrap();
    let before = fake.domain(id.get()).unwrap().max_mem_kib.unwrap();
    let got = late_store::give_store_page(&mut xen, id, DomId::DOM0).unwrap();
    assert_eq!(
        got,
        LateStore::Ready {
            pfn: MAGIC_PFN + 1,
            port: 5,
            allocated: true
        }
    );
    let d = fake.domain(id.get()).unwrap();
    assert_eq!(d.max_mem_kib, Some(before + 4));
    assert_eq!(d.hvm_params[&hvm_param::STORE_PFN], MAGIC_PFN + 1);
    let page = &d.pages[&(MAGIC_PFN + 1)];
    assert_eq!(u32::from_le_bytes(page[2068..2072].try_into().unwrap()), 1);
    let gnttab = 0x3800_0000u64 >> 12;
    assert!(
        d.physmap
            .iter()
            .any(|&(_, idx, gfn)| idx == 0 && gfn == gnttab),
        "{:?}",
        d.physmap
    );
    let frame = &d.pages[&gnttab];
    // Entry 1: flags GTF_permit_access, domid 0, frame = the store page; entry 0 untouched.
    assert_eq!(&frame[8..10], &1u16.to_le_bytes());
    assert_eq!(&frame[10..12], &0u16.to_le_bytes());
    assert_eq!(
        u32::from_le_bytes(frame[12..16].try_into().unwrap()) as u64,
        MAGIC_PFN + 1
    );
    assert!(frame[..8].iter().all(|b| *b == 0));
}

#[test]
fn a_domain_without_enhanced_xenstore_is_left_alone() {
    use domctl::builder::late_store::{self, LateStore};
    let (mut xen, fake) = xen();
    let built = ArmBuilder::new(&mut xen)
        .build(&kernel(0), &config(1, 64 * MIB))
        .unwrap();
    fake.clear_calls();
    let got = late_store::give_store_page(&mut xen, built.domid, DomId::DOM0).unwrap();
    assert_eq!(got, LateStore::NotEnhanced);
    assert_eq!(fake.ops(), vec![Op::HvmGetParam]);
}
