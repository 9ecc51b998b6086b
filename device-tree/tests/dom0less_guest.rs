//! `/chosen` for dom0less and the libxl-style guest DT, read back with libfdt's `fdtget`.
//!
//! References: Xen `docs/misc/arm/device-tree/booting.txt` (4.17: `memory` is a 64-bit KiB value,
//! `cpus`, `vpl011`, module nodes `compatible = "multiboot,kernel", "multiboot,module"` with `reg` in the
//! parent's cells), `cpupools.txt`; `tools/libs/light/libxl_arm.c` (4.17) `libxl__prepare_dtb` and
//! `xen/include/public/arch-arm.h` for the guest layout (values quoted next to each assertion).

mod support;

use device_tree::DeviceTree;
use device_tree::dom0less::{
    ChosenSpec, CpupoolSpec, Dom0Spec, DomainNodeSpec, Enhanced, ModuleKind, VcpuAffinity,
    apply_chosen,
};
use device_tree::guest::{GicVersion, GuestDtSpec, guest_dt};
use device_tree::passthrough::{FragmentOptions, PassthroughRequest, fragment};
use firmware_config::board::Region;

use support::module;

fn domain(name: &str) -> DomainNodeSpec {
    DomainNodeSpec {
        cpus: 2,
        modules: vec![
            module(
                ModuleKind::Kernel,
                0x4a00_0000,
                0x00ff_ffff,
                Some("console=ttyAMA0"),
            ),
            module(ModuleKind::Ramdisk, 0x4b00_0000, 0x0012_3457, None),
        ],
        ..support::domain(name)
    }
}

#[test]
fn chosen_on_qemu_virt() {
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let mut t = DeviceTree::from_dtb(&blob).expect("parse");
    let mut a = domain("net");
    a.enhanced = Some(Enhanced::NoXenstore);
    a.cpupool = Some("pool1".into());
    a.vcpu_affinity = vec![VcpuAffinity {
        id: 1,
        hard_affinity: "1".into(),
    }];
    a.modules
        .push(module(ModuleKind::DeviceTree, 0x4c00_0000, 0x2a5, None));
    let mut b = domain("static");
    b.memory_kib = 0x40000; // 256 MiB
    b.static_mem = vec![Region::new(0x6000_0000, 0x1000_0000)];
    b.direct_map = true;
    let spec = ChosenSpec {
        xen_bootargs: "console=dtuart dtuart=/pl011@9000000 bootscrub=0".into(),
        dom0: Some(Dom0Spec {
            kernel: module(ModuleKind::Kernel, 0x4700_0000, 0x1234, None),
            ramdisk: Some(module(ModuleKind::Ramdisk, 0x4800_0000, 0x5678, None)),
            xsm_policy: None,
            bootargs: Some("console=hvc0".into()),
        }),
        domains: vec![a, b],
        cpupools: vec![CpupoolSpec {
            node_name: "pool1".into(),
            cpus: vec!["/cpus/cpu@1".into()],
            sched: Some("null".into()),
        }],
        passthrough_host_paths: vec!["/pl031@9010000".into()],
    };
    apply_chosen(&mut t, &spec).expect("apply");
    // Applying twice gives the same tree (old Xen content is replaced).
    let once = t.clone();
    apply_chosen(&mut t, &spec).expect("apply again");
    assert_eq!(t, once);

    let dtb = t.to_dtb();
    support::dtc_decompile(&dtb, "chosen.dtb");
    let g = |n: &str, p: &str, ty: &str| support::fdtget(&dtb, n, p, ty);
    assert_eq!(g("/chosen", "#address-cells", "x").as_deref(), Some("2"));
    assert_eq!(g("/chosen", "#size-cells", "x").as_deref(), Some("2"));
    assert_eq!(
        g("/chosen", "xen,xen-bootargs", "s").as_deref(),
        Some("console=dtuart dtuart=/pl011@9000000 bootscrub=0")
    );
    assert_eq!(
        g("/chosen", "xen,dom0-bootargs", "s").as_deref(),
        Some("console=hvc0")
    );
    // QEMU's own /chosen content survives.
    assert_eq!(
        g("/chosen", "stdout-path", "s").as_deref(),
        Some("/pl011@9000000")
    );
    assert_eq!(
        g("/chosen/module@47000000", "compatible", "s").as_deref(),
        Some("multiboot,kernel multiboot,module")
    );
    assert_eq!(
        g("/chosen/module@47000000", "reg", "x").as_deref(),
        Some("0 47000000 0 1234")
    );
    assert_eq!(
        g("/chosen/module@48000000", "compatible", "s").as_deref(),
        Some("multiboot,ramdisk multiboot,module")
    );

    let d = "/chosen/domU-net";
    assert_eq!(g(d, "compatible", "s").as_deref(), Some("xen,domain"));
    // memory = <0 131072> (KiB, 64-bit) as in booting.txt's example.
    assert_eq!(g(d, "memory", "x").as_deref(), Some("0 20000"));
    assert_eq!(g(d, "cpus", "x").as_deref(), Some("2"));
    assert_eq!(g(d, "vpl011", "x").as_deref(), Some(""));
    assert_eq!(g(d, "xen,enhanced", "s").as_deref(), Some("no-xenstore"));
    assert_eq!(g(d, "#address-cells", "x").as_deref(), Some("2"));
    assert_eq!(g(d, "#size-cells", "x").as_deref(), Some("2"));
    assert_eq!(
        g(&format!("{d}/module@4a000000"), "reg", "x").as_deref(),
        Some("0 4a000000 0 ffffff")
    );
    assert_eq!(
        g(&format!("{d}/module@4a000000"), "bootargs", "s").as_deref(),
        Some("console=ttyAMA0")
    );
    assert_eq!(
        g(&format!("{d}/module@4b000000"), "reg", "x").as_deref(),
        Some("0 4b000000 0 123457")
    );
    assert_eq!(
        g(&format!("{d}/module@4c000000"), "compatible", "s").as_deref(),
        Some("multiboot,device-tree multiboot,module")
    );
    assert_eq!(
        g(&format!("{d}/vcpu1"), "compatible", "s").as_deref(),
        Some("xen,vcpu")
    );
    assert_eq!(
        g(&format!("{d}/vcpu1"), "hard-affinity", "s").as_deref(),
        Some("1")
    );
    // domain-cpupool -> the cpupool node's phandle; cpupool-cpus -> cpu@1's phandle (0x8001 in QEMU's tree).
    let pool_ph = g("/chosen/pool1", "phandle", "x").expect("pool phandle");
    assert_eq!(g(d, "domain-cpupool", "x"), Some(pool_ph));
    assert_eq!(
        g("/chosen/pool1", "compatible", "s").as_deref(),
        Some("xen,cpupool")
    );
    assert_eq!(
        g("/chosen/pool1", "cpupool-cpus", "x"),
        g("/cpus/cpu@1", "phandle", "x")
    );
    assert_eq!(
        g("/chosen/pool1", "cpupool-sched", "s").as_deref(),
        Some("null")
    );

    let s = "/chosen/domU-static";
    assert_eq!(
        g(s, "xen,static-mem", "x").as_deref(),
        Some("0 60000000 0 10000000")
    );
    assert_eq!(g(s, "direct-map", "x").as_deref(), Some(""));
    assert_eq!(g(s, "memory", "x").as_deref(), Some("0 40000"));

    assert_eq!(
        g("/pl031@9010000", "xen,passthrough", "x").as_deref(),
        Some("")
    );
    assert!(g("/pl061@9030000", "xen,passthrough", "x").is_none());
}

#[test]
fn chosen_refusals() {
    let mut t = DeviceTree::new();
    let mut d = domain("x");
    d.direct_map = true;
    let spec = ChosenSpec {
        domains: vec![d],
        ..Default::default()
    };
    assert!(
        apply_chosen(&mut t, &spec).is_err(),
        "direct-map without static-mem"
    );
    let mut d = domain("x");
    d.static_mem = vec![Region::new(0x6000_0000, 0x1000)];
    let spec = ChosenSpec {
        domains: vec![d],
        ..Default::default()
    };
    assert!(
        apply_chosen(&mut t, &spec).is_err(),
        "static-mem total != memory"
    );
    let mut d = domain("x");
    d.modules[0].size = 0;
    let spec = ChosenSpec {
        domains: vec![d],
        ..Default::default()
    };
    assert!(apply_chosen(&mut t, &spec).is_err(), "zero-sized module");
    let spec = ChosenSpec {
        passthrough_host_paths: vec!["/nope".into()],
        ..Default::default()
    };
    assert!(apply_chosen(&mut t, &spec).is_err());
    // Nothing was written by the refused specs.
    assert_eq!(t, DeviceTree::new());
}

#[test]
fn guest_dt_follows_libxl() {
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    let mut r = PassthroughRequest::new("/pl031@9010000");
    r.force_without_iommu = true;
    let frag = fragment(&host, &[r], &FragmentOptions::default()).expect("fragment");
    for gic in [GicVersion::V2, GicVersion::V3] {
        let spec = GuestDtSpec {
            xen_version: (4, 17),
            vcpus: 18,
            memory_bytes: 512 << 20,
            gic,
            vpl011: true,
            cmdline: Some("console=ttyAMA0".into()),
            initrd: Some(Region::new(0x4800_0000, 0x20_0000)),
            rng_seed: Some(vec![7; 16]),
            timer_frequency: None,
            gpaddr_bits: 40,
            passthrough: Some(frag.dtb.clone()),
        };
        let dtb = guest_dt(&spec).expect("guest dt");
        support::dtc_decompile(&dtb, "guest.dtb");
        let g = |n: &str, p: &str, ty: &str| support::fdtget(&dtb, n, p, ty);
        // make_root_properties
        assert_eq!(g("/", "model", "s").as_deref(), Some("XENVM-4.17"));
        assert_eq!(
            g("/", "compatible", "s").as_deref(),
            Some("xen,xenvm-4.17 xen,xenvm")
        );
        assert_eq!(g("/", "interrupt-parent", "x").as_deref(), Some("fde8"));
        // make_chosen_node
        assert_eq!(
            g("/chosen", "bootargs", "s").as_deref(),
            Some("console=ttyAMA0")
        );
        assert_eq!(
            g("/chosen", "linux,initrd-start", "x").as_deref(),
            Some("0 48000000")
        );
        assert_eq!(
            g("/chosen", "linux,initrd-end", "x").as_deref(),
            Some("0 48200000")
        );
        // make_cpus_node: libxl__compute_mpdir(17) = (17 & 0xf) | ((17 >> 4) & 0xff) << 8 = 0x101
        assert_eq!(g("/cpus/cpu@101", "reg", "x").as_deref(), Some("101"));
        assert_eq!(
            g("/cpus/cpu@f", "enable-method", "s").as_deref(),
            Some("psci")
        );
        assert_eq!(
            g("/cpus/cpu@0", "compatible", "s").as_deref(),
            Some("arm,armv8")
        );
        // make_psci_node
        assert_eq!(g("/psci", "method", "s").as_deref(), Some("hvc"));
        assert_eq!(g("/psci", "cpu_on", "x").as_deref(), Some("2"));
        // memory@40000000 = GUEST_RAM0_BASE with the domain's 512 MiB; no RAM1 bank.
        assert_eq!(
            g("/memory@40000000", "reg", "x").as_deref(),
            Some("0 40000000 0 20000000")
        );
        assert!(g("/memory@200000000", "reg", "x").is_none());
        // GIC at GUEST_GICD_BASE 0x03001000.
        let gicn = "/interrupt-controller@3001000";
        assert_eq!(g(gicn, "phandle", "x").as_deref(), Some("fde8"));
        match gic {
            // GICD 0x03001000/0x1000, GICC 0x03002000/0x2000
            GicVersion::V2 => assert_eq!(
                g(gicn, "reg", "x").as_deref(),
                Some("0 3001000 0 1000 0 3002000 0 2000")
            ),
            // GICV3_GICD 0x03001000/0x10000, GICR0 0x03020000/0x1000000
            GicVersion::V3 => assert_eq!(
                g(gicn, "reg", "x").as_deref(),
                Some("0 3001000 0 10000 0 3020000 0 1000000")
            ),
        }
        // make_timer_node: PPIs 29, 30, 27 -> <1 13 0xf08> <1 14 0xf08> <1 11 0xf08>
        assert_eq!(
            g("/timer", "interrupts", "x").as_deref(),
            Some("1 d f08 1 e f08 1 b f08")
        );
        // make_hypervisor_node: gnttab 0x38000000/16 MiB, then extended regions: RAM0 above 512 MiB
        // (0x60000000..0xffffffff) and RAM1 up to 2^40 (0x200000000..0xffffffffff).
        assert_eq!(
            g("/hypervisor", "compatible", "s").as_deref(),
            Some("xen,xen-4.17 xen,xen")
        );
        assert_eq!(
            g("/hypervisor", "reg", "x").as_deref(),
            Some("0 38000000 0 1000000 0 60000000 0 a0000000 2 0 fe 0")
        );
        assert_eq!(
            g("/hypervisor", "interrupts", "x").as_deref(),
            Some("1 f f08")
        );
        // make_vpl011_uart_node: 0x22000000/0x1000, SPI 32 -> <0 0 0xf04>
        assert_eq!(
            g("/sbsa-pl011", "reg", "x").as_deref(),
            Some("0 22000000 0 1000")
        );
        assert_eq!(
            g("/sbsa-pl011", "interrupts", "x").as_deref(),
            Some("0 0 f04")
        );
        // copy_partial_fdt, with xen,* stripped.
        let n = "/passthrough/pl031@9010000";
        assert_eq!(g(n, "interrupts", "x").as_deref(), Some("0 2 4"));
        assert!(g(n, "xen,reg", "x").is_none());
        assert!(g(n, "xen,path", "s").is_none());
        // Node order of libxl__prepare_dtb.
        assert_eq!(
            support::fdt_subnodes(&dtb, "/"),
            vec![
                "chosen",
                "cpus",
                "psci",
                "memory@40000000",
                "interrupt-controller@3001000",
                "timer",
                "hypervisor",
                "sbsa-pl011",
                "passthrough"
            ]
        );
    }
}

#[test]
fn guest_dt_refusals() {
    let base = GuestDtSpec {
        xen_version: (4, 17),
        vcpus: 1,
        memory_bytes: 64 << 20,
        gic: GicVersion::V3,
        vpl011: false,
        cmdline: None,
        initrd: None,
        rng_seed: None,
        timer_frequency: None,
        gpaddr_bits: 40,
        passthrough: None,
    };
    assert!(guest_dt(&base).is_ok());
    assert!(
        guest_dt(&GuestDtSpec {
            vcpus: 0,
            ..base.clone()
        })
        .is_err()
    );
    assert!(
        guest_dt(&GuestDtSpec {
            vcpus: 129,
            ..base.clone()
        })
        .is_err()
    );
    assert!(
        guest_dt(&GuestDtSpec {
            memory_bytes: 0,
            ..base.clone()
        })
        .is_err()
    );
    assert!(
        guest_dt(&GuestDtSpec {
            initrd: Some(Region::new(0x1000, 0x1000)),
            ..base.clone()
        })
        .is_err()
    );
    assert!(
        guest_dt(&GuestDtSpec {
            passthrough: Some(vec![1, 2, 3]),
            ..base.clone()
        })
        .is_err()
    );
    // 4 GiB spills into GUEST_RAM1 after 3 GiB in RAM0.
    let dtb = guest_dt(&GuestDtSpec {
        memory_bytes: 4 << 30,
        ..base
    })
    .expect("4G");
    assert_eq!(
        support::fdtget(&dtb, "/memory@40000000", "reg", "x").as_deref(),
        Some("0 40000000 0 c0000000")
    );
    assert_eq!(
        support::fdtget(&dtb, "/memory@200000000", "reg", "x").as_deref(),
        Some("2 0 0 40000000")
    );
}
