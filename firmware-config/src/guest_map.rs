//! The fixed guest-physical memory map Xen gives every ARM guest that is not direct-mapped.
//!
//! Values from `xen/include/public/arch-arm.h` (unchanged from 4.17 to 4.22 for the ranges used here).
//! Validation uses them to keep passed-through MMIO, shared memory and guest RAM apart; the plan uses
//! them to lay out guest RAM and to find holes for device mappings.

use crate::board::Region;

/// `GUEST_GICD_BASE` / `GUEST_GICD_SIZE` (GICv2 distributor).
pub const GICV2_DIST: Region = Region::new(0x0300_1000, 0x1000);
/// `GUEST_GICC_BASE` / `GUEST_GICC_SIZE` (GICv2 CPU interface).
pub const GICV2_CPU: Region = Region::new(0x0300_2000, 0x2000);
/// `GUEST_GICV3_GICD_BASE` / `GUEST_GICV3_GICD_SIZE`.
pub const GICV3_DIST: Region = Region::new(0x0300_1000, 0x1_0000);
/// `GUEST_GICV3_GICR0_BASE` / `GUEST_GICV3_GICR0_SIZE` (redistributors of vCPU 0..127).
pub const GICV3_REDIST: Region = Region::new(0x0302_0000, 0x0100_0000);
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

/// Regions of the guest map that Xen always occupies for a guest with this GIC and console.
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
    fn fixed_regions_do_not_overlap_ram() {
        for (_, r) in fixed_regions(true, true).chain(fixed_regions(false, true)) {
            assert!(!r.overlaps(&RAM0) && !r.overlaps(&RAM1));
        }
    }
}
