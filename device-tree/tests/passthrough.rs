//! Passthrough fragments for QEMU virt, Raspberry Pi 4 and ZCU102 devices.
//!
//! Every fragment is read back with libfdt's `fdtget` (independent parser) and checked against the
//! rules of Xen `docs/misc/arm/passthrough.txt` ("Dom0-less Device Passthrough": `xen,reg =
//! <phys size guest>` in the partial DTB's cells, page aligned; `xen,path`; interrupts on the guest GIC
//! 65000 = `GUEST_PHANDLE_GIC`, `public/device_tree_defs.h`) and against the host values read by hand
//! from `dtc -I dtb -O dts` (quoted in comments). The fragment must also decompile with `dtc`.

mod support;

use device_tree::DeviceTree;
use device_tree::passthrough::{FragmentOptions, PassthroughError, PassthroughRequest, fragment};
use firmware_config::board::Region;

fn req(path: &str, force: bool) -> PassthroughRequest {
    PassthroughRequest {
        force_without_iommu: force,
        ..PassthroughRequest::new(path)
    }
}

fn drop_deps() -> FragmentOptions {
    FragmentOptions {
        drop_dependencies: true,
        ..Default::default()
    }
}

/// Checks the common shape: root and /passthrough cells, simple-bus, ranges, no /gic.
fn check_shape(dtb: &[u8], name: &str) {
    support::dtc_decompile(dtb, &format!("{name}.dtb"));
    assert_eq!(
        support::fdtget(dtb, "/", "#address-cells", "x").as_deref(),
        Some("2")
    );
    assert_eq!(
        support::fdtget(dtb, "/", "#size-cells", "x").as_deref(),
        Some("2")
    );
    assert_eq!(
        support::fdtget(dtb, "/passthrough", "compatible", "s").as_deref(),
        Some("simple-bus")
    );
    assert_eq!(
        support::fdtget(dtb, "/passthrough", "ranges", "x").as_deref(),
        Some("")
    );
    assert_eq!(
        support::fdtget(dtb, "/passthrough", "#address-cells", "x").as_deref(),
        Some("2")
    );
    assert_eq!(
        support::fdtget(dtb, "/passthrough", "#size-cells", "x").as_deref(),
        Some("2")
    );
    assert_eq!(
        support::fdt_subnodes(dtb, "/"),
        vec!["passthrough".to_owned()]
    );
}

fn get(dtb: &[u8], node: &str, prop: &str) -> String {
    support::fdtget(dtb, node, prop, "x").unwrap_or_else(|| panic!("{node} has no {prop}"))
}

#[test]
fn qemu_virtio_mmio_matches_the_fragment_that_booted() {
    // qemu-recipes.md: the fragment that booted for /virtio_mmio@a003e00 had reg, interrupt-parent =
    // <0xfde8>, interrupts (SPI 47), xen,reg = <0 0x0a003000 0 0x1000 0 0x0a003000>, xen,path and
    // xen,force-assign-without-iommu.
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    let f = fragment(
        &host,
        &[req("/virtio_mmio@a003e00", true)],
        &FragmentOptions::default(),
    )
    .expect("fragment");
    check_shape(&f.dtb, "virtio");
    let n = "/passthrough/virtio_mmio@a003e00";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 a003000 0 1000 0 a003000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 a003e00 0 200");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 2f 1");
    assert_eq!(get(&f.dtb, n, "interrupt-parent"), "fde8");
    assert_eq!(
        support::fdtget(&f.dtb, n, "xen,path", "s").as_deref(),
        Some("/virtio_mmio@a003e00")
    );
    assert_eq!(
        support::fdtget(&f.dtb, n, "xen,force-assign-without-iommu", "x").as_deref(),
        Some("")
    );
    assert_eq!(
        support::fdtget(&f.dtb, n, "compatible", "s").as_deref(),
        Some("virtio,mmio")
    );
    assert_eq!(
        support::fdtget(&f.dtb, n, "dma-coherent", "x").as_deref(),
        Some("")
    );
    assert_eq!(f.irqs, vec![79]);
    // The 4 KiB page also holds seven other virtio-mmio transports: reported.
    let shared = f.shared_pages.first().expect("shared page reported");
    assert_eq!(shared.page, Region::new(0xa00_3000, 0x1000));
    assert_eq!(shared.others.len(), 7, "{:?}", shared.others);
}

#[test]
fn qemu_pl031_carries_the_fixed_clock() {
    let Some(blob) = support::qemu_virt_dtb(2) else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    // Not behind an IOMMU: refused without the opt-in.
    assert!(matches!(
        fragment(
            &host,
            &[req("/pl031@9010000", false)],
            &FragmentOptions::default()
        ),
        Err(PassthroughError::NoIommu { .. })
    ));
    let f = fragment(
        &host,
        &[req("/pl031@9010000", true)],
        &FragmentOptions::default(),
    )
    .expect("fragment");
    check_shape(&f.dtb, "pl031");
    let n = "/passthrough/pl031@9010000";
    // pl031@9010000 { interrupts = <0x00 0x02 0x04>; reg = <0x00 0x9010000 0x00 0x1000>; clocks = <0x8000>; }
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 9010000 0 1000 0 9010000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 9010000 0 1000");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 2 4");
    assert_eq!(
        support::fdtget(&f.dtb, n, "compatible", "s").as_deref(),
        Some("arm,pl031 arm,primecell")
    );
    assert_eq!(
        support::fdtget(&f.dtb, n, "clock-names", "s").as_deref(),
        Some("apb_pclk")
    );
    // apb-pclk { phandle = <0x8000>; clock-frequency = <0x16e3600>; #clock-cells = <0x00>; compatible = "fixed-clock"; }
    // copied with a new phandle < 65000 and the device's clocks re-pointed at it.
    let clk = "/passthrough/apb-pclk";
    assert_eq!(
        support::fdtget(&f.dtb, clk, "compatible", "s").as_deref(),
        Some("fixed-clock")
    );
    assert_eq!(get(&f.dtb, clk, "clock-frequency"), "16e3600");
    let ph = u32::from_str_radix(&get(&f.dtb, clk, "phandle"), 16).expect("hex");
    assert!(ph > 0 && ph < 65000);
    assert_eq!(get(&f.dtb, n, "clocks"), format!("{ph:x}"));
    assert_eq!(f.carried_dependencies.len(), 1);
    assert_eq!(f.irqs, vec![34]);
    assert!(f.shared_pages.is_empty());
}

#[test]
fn qemu_pl061_and_pl031_together_at_a_guest_hole() {
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    let mut a = req("/pl061@9030000", true);
    a.guest_base = Some(0x0900_0000);
    let b = req("/pl031@9010000", true);
    let opts = FragmentOptions {
        guest_ram: vec![Region::new(0x4000_0000, 0x1000_0000)],
        vpl011: true,
        ..Default::default()
    };
    let f = fragment(&host, &[a, b], &opts).expect("fragment");
    check_shape(&f.dtb, "pl061+pl031");
    // Renamed to its guest address; xen,reg maps host 0x9030000 to guest 0x9000000.
    let n = "/passthrough/pl061@9000000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 9030000 0 1000 0 9000000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 9000000 0 1000");
    // pl061@9030000 { interrupts = <0x00 0x07 0x04>; gpio-controller; #gpio-cells = <0x02>; phandle = <0x8005>; }
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 7 4");
    assert_eq!(get(&f.dtb, n, "#gpio-cells"), "2");
    let ph = u32::from_str_radix(&get(&f.dtb, n, "phandle"), 16).expect("hex");
    assert!(ph < 65000);
    // One fixed clock shared by both devices, carried once.
    let clocks_a = get(&f.dtb, n, "clocks");
    let clocks_b = get(&f.dtb, "/passthrough/pl031@9010000", "clocks");
    assert_eq!(clocks_a, clocks_b);
    assert_eq!(
        support::fdt_subnodes(&f.dtb, "/passthrough"),
        vec!["apb-pclk", "pl061@9000000", "pl031@9010000"]
    );
    assert_eq!(f.irqs, vec![34, 39]);
    // A guest hole that collides with the GIC is refused.
    let mut bad = req("/pl061@9030000", true);
    bad.guest_base = Some(0x0300_1000); // GUEST_GICD_BASE
    assert!(matches!(
        fragment(&host, &[bad], &opts),
        Err(PassthroughError::GuestOverlap { .. })
    ));
    let mut unaligned = req("/pl061@9030000", true);
    unaligned.guest_base = Some(0x0900_0800);
    assert!(matches!(
        fragment(&host, &[unaligned], &opts),
        Err(PassthroughError::Unaligned { .. })
    ));
}

#[test]
fn qemu_refusals() {
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    let none = FragmentOptions::default();
    assert_eq!(
        fragment(&host, &[req("/nope", true)], &none),
        Err(PassthroughError::NotFound("/nope".into()))
    );
    // The GIC's own PPI (intc interrupts = <0x01 0x09 0x04>) cannot be routed.
    assert!(matches!(
        fragment(&host, &[req("/intc@8000000", true)], &none),
        Err(PassthroughError::Interrupt { .. }) | Err(PassthroughError::NestedMmio { .. })
    ));
    // The UART sits at 0x9000000, which is free in the guest map, but with vpl011 SPI 32 is not in use
    // by it (pl011 is SPI 1 = INTID 33); passing it works with force.
    assert!(fragment(&host, &[req("/pl011@9000000", true)], &none).is_ok());
    // A device whose MMIO lands on guest RAM is refused.
    let ram = FragmentOptions {
        guest_ram: vec![Region::new(0x900_0000, 0x100_0000)],
        ..Default::default()
    };
    assert!(matches!(
        fragment(&host, &[req("/pl031@9010000", true)], &ram),
        Err(PassthroughError::GuestOverlap { .. })
    ));
    assert!(matches!(
        fragment(
            &host,
            &[req("/pl031@9010000", true), req("/pl031", true)],
            &none
        ),
        Err(PassthroughError::Duplicate { .. })
    ));
}

#[test]
fn rpi4_rng_genet_emmc2() {
    let Some(blob) = support::rpi4() else { return };
    let host = DeviceTree::from_dtb(&blob).expect("parse");

    // rng@7e104000 { reg = <0x7e104000 0x28>; }  soc ranges 0x7e000000 -> 0xfe000000.
    let f = fragment(
        &host,
        &[req("/soc/rng@7e104000", true)],
        &FragmentOptions::default(),
    )
    .expect("rng");
    check_shape(&f.dtb, "rpi4-rng");
    let n = "/passthrough/rng@7e104000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 fe104000 0 1000 0 fe104000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 fe104000 0 28");
    assert!(support::fdtget(&f.dtb, n, "interrupts", "x").is_none());
    assert!(f.irqs.is_empty());

    // scb ranges = <0x00 0x7c000000 0x00 0xfc000000 0x3800000 ...>;
    // ethernet@7d580000 { reg = <0x00 0x7d580000 0x10000>; interrupts = <0x00 0x9d 0x04 0x00 0x9e 0x04>;
    //   phy-handle = <0x29>; mdio@e14 { ethernet-phy@1 { phandle = <0x29>; } } }
    let f = fragment(
        &host,
        &[req("/scb/ethernet@7d580000", true)],
        &FragmentOptions::default(),
    )
    .expect("genet");
    check_shape(&f.dtb, "rpi4-genet");
    let n = "/passthrough/ethernet@7d580000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 fd580000 0 10000 0 fd580000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 fd580000 0 10000");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 9d 4 0 9e 4");
    assert_eq!(f.irqs, vec![189, 190]);
    // The PHY phandle is renumbered and still points at the copied child.
    let phy = get(&f.dtb, &format!("{n}/mdio@e14/ethernet-phy@1"), "phandle");
    assert_eq!(get(&f.dtb, n, "phy-handle"), phy);
    assert_eq!(get(&f.dtb, &format!("{n}/mdio@e14"), "reg"), "e14 8");

    // emmc2bus { ranges = <0x00 0x7e000000 0x00 0xfe000000 0x1800000>; }
    // mmc@7e340000 { reg = <0x00 0x7e340000 0x100>; interrupts = <0x00 0x7e 0x04>; clocks = <0x07 0x33>;
    //   vqmmc-supply = <0x20>; vmmc-supply = <0x21>; }
    let e = fragment(
        &host,
        &[req("/emmc2bus/mmc@7e340000", true)],
        &FragmentOptions::default(),
    );
    match e {
        Err(PassthroughError::Dependency {
            device,
            property,
            provider,
        }) => {
            assert_eq!(device, "/emmc2bus/mmc@7e340000");
            assert_eq!(property, "clocks");
            assert_eq!(provider, "/soc/cprman@7e101000");
        }
        other => panic!("expected a dependency error, got {other:?}"),
    }
    let f = fragment(&host, &[req("/emmc2bus/mmc@7e340000", true)], &drop_deps()).expect("emmc2");
    check_shape(&f.dtb, "rpi4-emmc2");
    let n = "/passthrough/mmc@7e340000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 fe340000 0 1000 0 fe340000");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 7e 4");
    let props = support::fdt_props(&f.dtb, n);
    for gone in ["clocks", "vqmmc-supply", "vmmc-supply"] {
        assert!(
            !props.contains(&gone.to_owned()),
            "{gone} should be dropped: {props:?}"
        );
    }
    assert!(props.contains(&"broken-cd".to_owned()));
    let dropped: Vec<&str> = f
        .dropped_dependencies
        .iter()
        .map(|d| d.property.as_str())
        .collect();
    assert_eq!(dropped, vec!["clocks", "vqmmc-supply", "vmmc-supply"]);
}

#[test]
fn rpi4_uart_dependencies_and_shared_page() {
    let Some(blob) = support::rpi4() else { return };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    // serial@7e201000 { reg = <0x7e201000 0x200>; interrupts = <0x00 0x79 0x04>; clocks = <0x07 ...>;
    //   pinctrl-names = "default"; pinctrl-0 = <0x08 0x09>; bluetooth { shutdown-gpios = <0x0a 0x00 0x00>; } }
    let f = fragment(&host, &[req("/soc/serial@7e201000", true)], &drop_deps()).expect("uart");
    check_shape(&f.dtb, "rpi4-uart");
    let n = "/passthrough/serial@7e201000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 fe201000 0 1000 0 fe201000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 fe201000 0 200");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 79 4");
    let props = support::fdt_props(&f.dtb, n);
    for gone in ["clocks", "clock-names", "pinctrl-0", "pinctrl-names"] {
        assert!(!props.contains(&gone.to_owned()), "{gone}: {props:?}");
    }
    assert!(props.contains(&"arm,primecell-periphid".to_owned()));
    assert!(
        !support::fdt_props(&f.dtb, &format!("{n}/bluetooth"))
            .contains(&"shutdown-gpios".to_owned())
    );
    // serial@7e201400..7e201a00 share the page 0xfe201000.
    let shared = &f.shared_pages[0];
    assert_eq!(shared.page, Region::new(0xfe20_1000, 0x1000));
    assert!(shared.others.contains(&"/soc/serial@7e201400".to_owned()));
}

#[test]
fn zcu102_rtc_gem_dma() {
    let Some(blob) = support::zcu102() else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");

    // rtc@ffa60000 { reg = <0x00 0xffa60000 0x00 0x100>; interrupts = <0x00 0x1a 0x04 0x00 0x1b 0x04>;
    //   interrupt-names = "alarm\0sec"; calibration = <0x7fff>; }
    let f = fragment(
        &host,
        &[req("/axi/rtc@ffa60000", true)],
        &FragmentOptions::default(),
    )
    .expect("rtc");
    check_shape(&f.dtb, "zcu-rtc");
    let n = "/passthrough/rtc@ffa60000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 ffa60000 0 1000 0 ffa60000");
    assert_eq!(get(&f.dtb, n, "reg"), "0 ffa60000 0 100");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 1a 4 0 1b 4");
    assert_eq!(get(&f.dtb, n, "interrupt-parent"), "fde8");
    assert_eq!(get(&f.dtb, n, "calibration"), "7fff");
    assert_eq!(f.irqs, vec![58, 59]);

    // ethernet@ff0e0000: its SMMU (iommu@fd800000) is disabled in this tree, so without force it is
    // refused; with force, its firmware-provided clocks/resets/power domain are refused by name.
    assert!(matches!(
        fragment(&host, &[req("/axi/ethernet@ff0e0000", false)], &drop_deps()),
        Err(PassthroughError::NoIommu { .. })
    ));
    match fragment(
        &host,
        &[req("/axi/ethernet@ff0e0000", true)],
        &FragmentOptions::default(),
    ) {
        Err(PassthroughError::Dependency {
            device,
            property,
            provider,
        }) => {
            assert_eq!(device, "/axi/ethernet@ff0e0000");
            assert_eq!(property, "power-domains");
            assert_eq!(provider, "/firmware/zynqmp-firmware");
        }
        other => panic!("expected a dependency error, got {other:?}"),
    }
    let f = fragment(&host, &[req("/axi/ethernet@ff0e0000", true)], &drop_deps()).expect("gem");
    check_shape(&f.dtb, "zcu-gem");
    let n = "/passthrough/ethernet@ff0e0000";
    // Compare with the hand-written fragment in passthrough.txt ("Example", ZynqMP GEM):
    // xen,reg = <0x0 0xff0e0000 0x1000 0x0 0xff0e0000>; interrupts = <0 63 0x4 0 63 0x4>.
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 ff0e0000 0 1000 0 ff0e0000");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 3f 4 0 3f 4");
    assert_eq!(
        support::fdtget(&f.dtb, n, "phy-mode", "s").as_deref(),
        Some("rgmii-id")
    );
    let props = support::fdt_props(&f.dtb, n);
    for gone in [
        "iommus",
        "power-domains",
        "resets",
        "reset-names",
        "clocks",
        "clock-names",
        "pinctrl-0",
        "pinctrl-names",
    ] {
        assert!(!props.contains(&gone.to_owned()), "{gone}: {props:?}");
    }
    let phy = get(&f.dtb, &format!("{n}/ethernet-phy@c"), "phandle");
    assert_eq!(get(&f.dtb, n, "phy-handle"), phy);
    assert_eq!(f.irqs, vec![95]);

    // dma-controller@fd500000 { reg = <0x00 0xfd500000 0x00 0x1000>; interrupts = <0x00 0x7c 0x04>;
    //   #dma-cells = <0x01>; xlnx,bus-width = <0x80>; }
    let f = fragment(
        &host,
        &[req("/axi/dma-controller@fd500000", true)],
        &drop_deps(),
    )
    .expect("gdma");
    check_shape(&f.dtb, "zcu-gdma");
    let n = "/passthrough/dma-controller@fd500000";
    assert_eq!(get(&f.dtb, n, "xen,reg"), "0 fd500000 0 1000 0 fd500000");
    assert_eq!(get(&f.dtb, n, "interrupts"), "0 7c 4");
    assert_eq!(get(&f.dtb, n, "xlnx,bus-width"), "80");
    assert_eq!(f.irqs, vec![156]);
}
