//! `read_inventory` on real boards. Expected values were read by hand from `dtc -I dtb -O dts` of the
//! same blobs (QEMU 7.2 virt; Debian linux-image 6.1 arm64 `bcm2711-rpi-4-b.dtb`,
//! `zynqmp-zcu102-rev1.0.dtb`); the DTS lines are quoted next to each assertion, and translated
//! addresses are computed in the comments from the quoted `ranges`.

mod support;

use device_tree::DeviceTree;
use device_tree::inventory::read_inventory;
use firmware_config::board::{DeviceInterrupt, InterruptControllerKind, Region};

#[test]
fn qemu_virt_gicv3() {
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let inv = read_inventory(&DeviceTree::from_dtb(&blob).expect("parse")).expect("inventory");
    assert_eq!(inv.compatible, vec!["linux,dummy-virt"]);
    // cpu@0 { reg = <0x00>; }  cpu@1 { reg = <0x01>; }  (-smp 2)
    assert_eq!(
        inv.cpus.iter().map(|c| c.hw_id).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(inv.cpus[0].path, "/cpus/cpu@0");
    // memory@40000000 { reg = <0x00 0x40000000 0x00 0x80000000>; }  (-m 2G)
    assert_eq!(inv.memory, vec![Region::new(0x4000_0000, 0x8000_0000)]);
    // intc@8000000 { compatible = "arm,gic-v3"; reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0xf60000>; }
    let gic = inv.interrupt_controller.as_ref().expect("gic");
    assert_eq!(gic.kind, InterruptControllerKind::GicV3);
    assert_eq!(gic.path, "/intc@8000000");
    assert_eq!(
        gic.regions,
        vec![
            Region::new(0x800_0000, 0x1_0000),
            Region::new(0x80a_0000, 0xf6_0000)
        ]
    );
    // The ITS (its@8080000) belongs to the GIC, not to the device list.
    assert!(
        inv.devices
            .iter()
            .all(|d| !d.path.starts_with("/intc@8000000"))
    );
    // pl031@9010000 { interrupts = <0x00 0x02 0x04>; reg = <0x00 0x9010000 0x00 0x1000>; clocks = <0x8000>; }
    // apb-pclk { phandle = <0x8000>; }  SPI 2 -> INTID 34.
    let rtc = inv.device("/pl031@9010000").expect("pl031");
    assert_eq!(rtc.regions, vec![Region::new(0x901_0000, 0x1000)]);
    assert_eq!(rtc.interrupts, vec![DeviceInterrupt::Spi(34)]);
    assert_eq!(rtc.dependencies.len(), 1);
    assert_eq!(rtc.dependencies[0].property, "clocks");
    assert_eq!(rtc.dependencies[0].provider, "/apb-pclk");
    assert!(!rtc.behind_iommu);
    // virtio_mmio@a003e00 { dma-coherent; interrupts = <0x00 0x2f 0x01>; reg = <0x00 0xa003e00 0x00 0x200>; }
    let v = inv.device("/virtio_mmio@a003e00").expect("virtio");
    assert_eq!(v.regions, vec![Region::new(0xa00_3e00, 0x200)]);
    assert_eq!(v.interrupts, vec![DeviceInterrupt::Spi(47 + 32)]);
    assert!(v.dma_capable);
    // chosen { stdout-path = "/pl011@9000000"; }
    assert_eq!(inv.stdout_path.as_deref(), Some("/pl011@9000000"));
    // Nodes without reg in CPU space are absent (e.g. /cpus, /timer, /apb-pclk, /gpio-keys).
    assert!(inv.device("/apb-pclk").is_none());
    assert!(inv.device("/timer").is_none());
}

#[test]
fn qemu_virt_gicv2() {
    let Some(blob) = support::qemu_virt_dtb(2) else {
        return;
    };
    let inv = read_inventory(&DeviceTree::from_dtb(&blob).expect("parse")).expect("inventory");
    // intc@8000000 { compatible = "arm,cortex-a15-gic";
    //   reg = <0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x10000 0x00 0x8030000 0x00 0x10000 0x00 0x8040000 0x00 0x10000>; }
    let gic = inv.interrupt_controller.as_ref().expect("gic");
    assert_eq!(gic.kind, InterruptControllerKind::GicV2);
    assert_eq!(
        gic.regions,
        [0x800_0000u64, 0x801_0000, 0x803_0000, 0x804_0000]
            .map(|b| Region::new(b, 0x1_0000))
            .to_vec()
    );
    // pl061@9030000 { interrupts = <0x00 0x07 0x04>; } -> INTID 39
    let gpio = inv.device("/pl061@9030000").expect("pl061");
    assert_eq!(gpio.interrupts, vec![DeviceInterrupt::Spi(39)]);
}

#[test]
fn raspberry_pi_4() {
    let Some(blob) = support::rpi4() else { return };
    let inv = read_inventory(&DeviceTree::from_dtb(&blob).expect("parse")).expect("inventory");
    assert_eq!(inv.model, "Raspberry Pi 4 Model B");
    // cpus { #address-cells = <0x01>; cpu@0 .. cpu@3 }
    assert_eq!(
        inv.cpus.iter().map(|c| c.hw_id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // memory@0 { reg = <0x00 0x00 0x00>; } is filled in by the firmware: zero-sized, dropped.
    assert!(inv.memory.is_empty());
    // /memreserve/ 0x0000000000000000 0x0000000000001000;
    assert!(
        inv.reserved
            .iter()
            .any(|r| r.name == "/memreserve/" && r.region == Region::new(0, 0x1000))
    );
    // soc/interrupt-controller@40041000 { compatible = "arm,gic-400";
    //   reg = <0x40041000 0x1000 0x40042000 0x2000 0x40044000 0x2000 0x40046000 0x2000>; }
    // soc ranges = <... 0x40000000 0x00 0xff800000 0x800000> -> 0x40041000 maps to 0xff841000.
    let gic = inv.interrupt_controller.as_ref().expect("gic");
    assert_eq!(gic.kind, InterruptControllerKind::GicV2);
    assert_eq!(gic.path, "/soc/interrupt-controller@40041000");
    assert_eq!(
        gic.regions,
        vec![
            Region::new(0xff84_1000, 0x1000),
            Region::new(0xff84_2000, 0x2000),
            Region::new(0xff84_4000, 0x2000),
            Region::new(0xff84_6000, 0x2000),
        ]
    );
    // soc { ranges = <0x7e000000 0x00 0xfe000000 0x1800000 ...>; }
    // serial@7e201000 { reg = <0x7e201000 0x200>; interrupts = <0x00 0x79 0x04>; clocks = <0x07 0x13 0x07 0x14>;
    //   pinctrl-0 = <0x08 0x09>; }  -> 0xfe201000, SPI 121 -> INTID 153; cprman@7e101000 has phandle 0x07.
    let uart = inv.device("/soc/serial@7e201000").expect("uart0");
    assert_eq!(uart.regions, vec![Region::new(0xfe20_1000, 0x200)]);
    assert_eq!(uart.interrupts, vec![DeviceInterrupt::Spi(153)]);
    assert!(
        uart.dependencies
            .iter()
            .any(|d| d.property == "clocks" && d.provider == "/soc/cprman@7e101000")
    );
    assert!(uart.dependencies.iter().any(|d| d.property == "pinctrl-0"));
    // watchdog@7e100000 { reg = <0x7e100000 0x114 0x7e00a000 0x24 0x7ec11000 0x20>; } : three regions.
    let wdt = inv.device("/soc/watchdog@7e100000").expect("pm");
    assert_eq!(
        wdt.regions,
        vec![
            Region::new(0xfe10_0000, 0x114),
            Region::new(0xfe00_a000, 0x24),
            Region::new(0xfec1_1000, 0x20)
        ]
    );
    // emmc2bus { #address-cells = <0x02>; ranges = <0x00 0x7e000000 0x00 0xfe000000 0x1800000>; }
    //   mmc@7e340000 { reg = <0x00 0x7e340000 0x100>; interrupts = <0x00 0x7e 0x04>; }
    let emmc = inv.device("/emmc2bus/mmc@7e340000").expect("emmc2");
    assert_eq!(emmc.regions, vec![Region::new(0xfe34_0000, 0x100)]);
    assert_eq!(emmc.interrupts, vec![DeviceInterrupt::Spi(0x7e + 32)]);
    // scb { ranges = <0x00 0x7c000000 0x00 0xfc000000 0x3800000 ...>; }
    //   ethernet@7d580000 { reg = <0x00 0x7d580000 0x10000>; interrupts = <0x00 0x9d 0x04 0x00 0x9e 0x04>; }
    let genet = inv.device("/scb/ethernet@7d580000").expect("genet");
    assert_eq!(genet.regions, vec![Region::new(0xfd58_0000, 0x1_0000)]);
    assert_eq!(
        genet.interrupts,
        vec![DeviceInterrupt::Spi(189), DeviceInterrupt::Spi(190)]
    );
    // Its mdio@e14 child sits on a bus without `ranges`: not CPU-addressable.
    assert!(inv.device("/scb/ethernet@7d580000/mdio@e14").is_none());
    // PCI config-space children (space code 0) are not in the CPU map.
    assert!(inv.device("/scb/pcie@7d500000/pci@0,0").is_none());
    // local_intc@40000000 { compatible = "brcm,bcm2836-l1-intc"; reg = <0x40000000 0x100>; } -> 0xff800000
    assert_eq!(
        inv.device("/soc/local_intc@40000000").expect("l1").regions,
        vec![Region::new(0xff80_0000, 0x100)]
    );
    // chosen { stdout-path = "serial1:115200n8"; }  aliases { serial1 = "/soc/serial@7e215040"; }
    assert_eq!(inv.stdout_path.as_deref(), Some("/soc/serial@7e215040"));
    // No IOMMU on the Pi 4.
    assert!(inv.iommus.is_empty());
}

#[test]
fn zcu102() {
    let Some(blob) = support::zcu102() else {
        return;
    };
    let inv = read_inventory(&DeviceTree::from_dtb(&blob).expect("parse")).expect("inventory");
    assert_eq!(inv.model, "ZynqMP ZCU102 Rev1.0");
    assert_eq!(inv.cpus.len(), 4);
    // memory@0 { reg = <0x00 0x00 0x00 0x80000000 0x08 0x00 0x00 0x80000000>; }
    assert_eq!(
        inv.memory,
        vec![
            Region::new(0, 0x8000_0000),
            Region::new(0x8_0000_0000, 0x8000_0000)
        ]
    );
    // axi/interrupt-controller@f9010000 { compatible = "arm,gic-400"; reg = <0x00 0xf9010000 0x00 0x10000 ...>; }
    let gic = inv.interrupt_controller.as_ref().expect("gic");
    assert_eq!(gic.path, "/axi/interrupt-controller@f9010000");
    assert_eq!(gic.regions[0], Region::new(0xf901_0000, 0x1_0000));
    // axi/iommu@fd800000 { compatible = "arm,mmu-500"; status = "disabled"; }
    assert_eq!(inv.iommus, vec!["/axi/iommu@fd800000".to_owned()]);
    // ethernet@ff0e0000 { interrupts = <0x00 0x3f 0x04 0x00 0x3f 0x04>; reg = <0x00 0xff0e0000 0x00 0x1000>;
    //   iommus = <0x0e 0x877>; power-domains = <0x0c 0x20>; resets = <0x0f 0x20>; clocks = <0x03 0x1f ...>; }
    let gem = inv.device("/axi/ethernet@ff0e0000").expect("gem3");
    assert_eq!(gem.regions, vec![Region::new(0xff0e_0000, 0x1000)]);
    assert_eq!(
        gem.interrupts,
        vec![DeviceInterrupt::Spi(95), DeviceInterrupt::Spi(95)]
    );
    // The SMMU it points at is disabled in this tree: Xen cannot protect it.
    assert!(!gem.behind_iommu);
    assert!(gem.dma_capable);
    let deps: Vec<(&str, &str)> = gem
        .dependencies
        .iter()
        .map(|d| (d.property.as_str(), d.provider.as_str()))
        .collect();
    assert!(deps.contains(&("power-domains", "/firmware/zynqmp-firmware")));
    assert!(deps.contains(&("resets", "/firmware/zynqmp-firmware/reset-controller")));
    assert!(deps.contains(&("clocks", "/firmware/zynqmp-firmware/clock-controller")));
    // phy-handle names the PHY child, which the fragment copies with the device: not a dependency.
    assert!(
        !deps.iter().any(|(p, _)| *p == "phy-handle"),
        "providers inside the device are not dependencies: {deps:?}"
    );
    // rtc@ffa60000 { reg = <0x00 0xffa60000 0x00 0x100>; interrupts = <0x00 0x1a 0x04 0x00 0x1b 0x04>; }
    let rtc = inv.device("/axi/rtc@ffa60000").expect("rtc");
    assert_eq!(
        rtc.interrupts,
        vec![DeviceInterrupt::Spi(58), DeviceInterrupt::Spi(59)]
    );
    // chosen { stdout-path = "serial0:115200n8"; }  aliases { serial0 = "/axi/serial@ff000000"; }
    assert_eq!(inv.stdout_path.as_deref(), Some("/axi/serial@ff000000"));
    // gpio@ff0a0000 is an interrupt controller with #interrupt-cells = 2; children of GPIO-interrupt
    // devices would decode as Nested. Check one device wired to it, if any, decodes that way.
    for d in &inv.devices {
        for i in &d.interrupts {
            if let DeviceInterrupt::Nested(h) = i {
                assert_ne!(*h, 0x04, "{}: GIC interrupts must not be Nested", d.path);
            }
        }
    }
}
