//! The fixed guest-physical memory map Xen gives every ARM guest that is not direct-mapped.
//!
//! Values from `xen/include/public/arch-arm.h` (unchanged from 4.17 to 4.22 for the ranges used here).
//! This is the **one** guest map of domforge: validation uses it to keep passed-through MMIO, shared
//! memory and guest RAM apart; the plan uses it to lay out guest RAM and to move device mappings that
//! collide with it into a hole; the passthrough fragment generator (`device-tree`'s
//! `passthrough::fragment`) refuses a mapping onto it. So a device placement the plan accepts is one
//! the fragment generator writes (issue 13: i.MX8MQ's peripherals at 0x30000000–0x30c00000 lie in
//! `GUEST_VPCI_MEM`; the plan relocates them instead of the build refusing them).
//!
//! Which ranges count as occupied ([`fixed_regions`]): those Xen fills for every domain domforge
//! builds on 4.17–4.22 — the guest GIC frames, the grant table, the magic pages and the vPL011. The
//! other windows of `arch-arm.h` are **not** occupied for these domains and stay usable by a
//! passed-through device (i.MX8MQ/8MP peripherals sit at 0x30000000–0x30c00000, inside
//! `GUEST_VPCI_MEM`): `GUEST_VPCI_ECAM`/`GUEST_VPCI_MEM`/`GUEST_VPCI_PREFETCH_MEM` are populated only
//! for a domain with vPCI, which needs `HAS_VPCI_GUEST_SUPPORT` (selected by `PCI_PASSTHROUGH` in
//! `xen/arch/arm/Kconfig`, an unsupported option Debian's builds leave off); `GUEST_VIRTIO_MMIO` and
//! `GUEST_ACPI` are filled only by libxl when a guest config asks for virtio-mmio devices or ACPI,
//! and neither Xen's dom0less builder nor domforge-init's guest DT (`device-tree`'s `guest` module)
//! uses them. Their constants are kept here so the guest-DT layout can be checked against one table.

use alloc::vec::Vec;

use crate::board::Region;

/// `GUEST_GICD_BASE` / `GUEST_GICD_SIZE` (GICv2 distributor).
pub const GICV2_DIST: Region = Region::new(0x0300_1000, 0x1000);
/// `GUEST_GICC_BASE` / `GUEST_GICC_SIZE` (GICv2 CPU interface).
pub const GICV2_CPU: Region = Region::new(0x0300_2000, 0x2000);
/// `GUEST_GICV3_GICD_BASE` / `GUEST_GICV3_GICD_SIZE`.
pub const GICV3_DIST: Region = Region::new(0x0300_1000, 0x1_0000);
/// `GUEST_GICV3_GICR0_BASE` / `GUEST_GICV3_GICR0_SIZE` (redistributors of vCPU 0..127).
pub const GICV3_REDIST: Region = Region::new(0x0302_0000, 0x0100_0000);
/// `GUEST_VIRTIO_MMIO_BASE` / `GUEST_VIRTIO_MMIO_SIZE` (virtio-mmio transports, libxl).
pub const VIRTIO_MMIO: Region = Region::new(0x0200_0000, 0x0010_0000);
/// `GUEST_VPCI_ECAM_BASE` / `GUEST_VPCI_ECAM_SIZE`.
pub const VPCI_ECAM: Region = Region::new(0x1000_0000, 0x1000_0000);
/// `GUEST_ACPI_BASE` / `GUEST_ACPI_SIZE`.
pub const ACPI: Region = Region::new(0x2000_0000, 0x0200_0000);
/// `GUEST_VPCI_MEM_ADDR` / `GUEST_VPCI_MEM_SIZE` (vPCI 32-bit MMIO window).
pub const VPCI_MEM: Region = Region::new(0x2300_0000, 0x1000_0000);
/// `GUEST_VPCI_PREFETCH_MEM_ADDR` / `GUEST_VPCI_PREFETCH_MEM_SIZE` (vPCI 64-bit prefetchable window).
pub const VPCI_PREFETCH_MEM: Region = Region::new(0x1_0000_0000, 0x1_0000_0000);
/// `GUEST_PL011_BASE` / `GUEST_PL011_SIZE` (the vpl011 SBSA UART).
pub const VPL011: Region = Region::new(0x2200_0000, 0x1000);
/// `GUEST_GNTTAB_BASE` / `GUEST_GNTTAB_SIZE`.
pub const GNTTAB: Region = Region::new(0x3800_0000, 0x0100_0000);
/// `GUEST_MAGIC_BASE` / `GUEST_MAGIC_SIZE` (console, xenstore, memaccess, vuart pages).
pub const MAGIC: Region = Region::new(0x3900_0000, 0x0100_0000);
/// `GUEST_RAM0_BASE` / `GUEST_RAM0_SIZE`: the first 3 GiB of guest RAM.
pub const RAM0: Region = Region::new(0x4000_0000, 0xC000_0000);
/// `GUEST_RAM1_BASE` / `GUEST_RAM1_SIZE`: the rest, 1016 GiB above 8 GiB.
pub const RAM1: Region = Region::new(0x02_0000_0000, 0xFE_0000_0000);
/// `GUEST_VPL011_SPI`: the INTID of the vpl011 interrupt (SPI 0 in DT numbering).
pub const VPL011_SPI: u32 = 32;
/// `GUEST_PHANDLE_GIC` (`public/device_tree_defs.h`).
pub const PHANDLE_GIC: u32 = 65000;

/// Regions of the guest map that are never free for a passed-through device, shared memory or an
/// iomem grant, with their `arch-arm.h` names, for a guest with this GIC and console (see the module
/// docs for why the vPCI, virtio-mmio and ACPI windows are not among them). Guest RAM is not
/// included: it depends on the domain.
pub fn fixed_regions(gic_v3: bool, vpl011: bool) -> impl Iterator<Item = (&'static str, Region)> {
    let gic: [(&'static str, Region); 2] = if gic_v3 {
        [
            ("GICv3 distributor", GICV3_DIST),
            ("GICv3 redistributors", GICV3_REDIST),
        ]
    } else {
        [
            ("GICv2 distributor", GICV2_DIST),
            ("GICv2 CPU interface", GICV2_CPU),
        ]
    };
    gic.into_iter()
        .chain([("grant table", GNTTAB), ("magic pages", MAGIC)])
        .chain(vpl011.then_some(("vpl011 UART", VPL011)))
}

/// [`fixed_regions`] when the guest GIC version is not known: both GICs' frames are reserved.
pub fn fixed_regions_any_gic(vpl011: bool) -> Vec<(&'static str, Region)> {
    let mut v: Vec<(&'static str, Region)> = fixed_regions(true, vpl011).collect();
    for r in fixed_regions(false, vpl011) {
        if !v.contains(&r) {
            v.push(r);
        }
    }
    v
}

/// Guest RAM banks for `bytes` of memory: RAM0 first, then RAM1 (`xg_dom_arm.c:meminit`, and Xen's
/// `allocate_memory()` for dom0less domains).
pub fn ram_banks(bytes: u64) -> ([Region; 2], usize) {
    let first = bytes.min(RAM0.size);
    let second = bytes - first;
    let banks = [
        Region::new(RAM0.base, first),
        Region::new(RAM1.base, second),
    ];
    (banks, if second > 0 { 2 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_splits_at_three_gib() {
        let (b, n) = ram_banks(256 << 20);
        assert_eq!((n, b[0]), (1, Region::new(0x4000_0000, 256 << 20)));
        let (b, n) = ram_banks(4 << 30);
        assert_eq!(n, 2);
        assert_eq!(b[0].end(), Some(0x1_0000_0000));
        assert_eq!(b[1], Region::new(0x2_0000_0000, 1 << 30));
    }

    #[test]
    fn fixed_regions_are_disjoint_and_page_aligned() {
        for gic_v3 in [false, true] {
            let v: Vec<_> = fixed_regions(gic_v3, true).collect();
            for (i, (a, ra)) in v.iter().enumerate() {
                assert_eq!(ra.base % 0x1000, 0, "{a}");
                assert_eq!(ra.size % 0x1000, 0, "{a}");
                for (b, rb) in &v[i + 1..] {
                    assert!(!ra.overlaps(rb), "{a} overlaps {b}");
                }
            }
        }
    }

    #[test]
    fn fixed_regions_do_not_overlap_ram() {
        for (_, r) in fixed_regions(true, true).chain(fixed_regions(false, true)) {
            assert!(!r.overlaps(&RAM0) && !r.overlaps(&RAM1));
        }
    }
}
