//! The device tree of a toolstack-built ARM guest, laid out like libxl's.
//!
//! Node order and values follow `tools/libs/light/libxl_arm.c` (`libxl__prepare_dtb`, Xen 4.17):
//! root properties, `/chosen`, `/cpus`, `/psci`, `memory@...` per populated bank, the GIC, `/timer`,
//! `/hypervisor`, the vPL011, then the partial device tree's `/passthrough` and `/aliases`
//! (`copy_partial_fdt`). Where libxl writes placeholders and patches them after memory is allocated
//! (`libxl__arch_domain_finalise_hw_description`), we take the final values as input, so the blob is
//! complete in one pass.
//!
//! Differences from libxl, on purpose: the `rng-seed` bytes come from the caller (keeps this function
//! deterministic and testable; libxl draws 128 random bytes), and the fragment's `xen,*` properties are
//! stripped as Xen's dom0less builder does (`handle_prop_pfdt`), because our builder maps MMIO and IRQs
//! itself instead of leaving them in the guest's tree.

use firmware_config::board::Region;

use crate::passthrough::GUEST_PHANDLE_GIC;
use crate::tree::{DeviceTree, Node, value};

/// The guest physical memory map, from Xen `xen/include/public/arch-arm.h` (4.17; unchanged through
/// 4.22 for these values). The header warns the layout is not a stable ABI: these are what the
/// supported Xen releases use.
pub mod layout {
    use firmware_config::board::Region;

    /// `GUEST_VIRTIO_MMIO_BASE` / `_SIZE`.
    pub const GUEST_VIRTIO_MMIO_BASE: u64 = 0x0200_0000;
    pub const GUEST_VIRTIO_MMIO_SIZE: u64 = 0x0010_0000;
    /// `GUEST_GICD_BASE` / `_SIZE` (GICv2 distributor).
    pub const GUEST_GICD_BASE: u64 = 0x0300_1000;
    pub const GUEST_GICD_SIZE: u64 = 0x0000_1000;
    /// `GUEST_GICC_BASE` / `_SIZE` (GICv2 CPU interface).
    pub const GUEST_GICC_BASE: u64 = 0x0300_2000;
    pub const GUEST_GICC_SIZE: u64 = 0x0000_2000;
    /// `GUEST_GICV3_GICD_BASE` / `_SIZE`.
    pub const GUEST_GICV3_GICD_BASE: u64 = 0x0300_1000;
    pub const GUEST_GICV3_GICD_SIZE: u64 = 0x0001_0000;
    /// `GUEST_GICV3_GICR0_BASE` / `_SIZE` (redistributors of vCPU0..127).
    pub const GUEST_GICV3_GICR0_BASE: u64 = 0x0302_0000;
    pub const GUEST_GICV3_GICR0_SIZE: u64 = 0x0100_0000;
    /// `GUEST_VPCI_ECAM_BASE` / `_SIZE`.
    pub const GUEST_VPCI_ECAM_BASE: u64 = 0x1000_0000;
    pub const GUEST_VPCI_ECAM_SIZE: u64 = 0x1000_0000;
    /// `GUEST_ACPI_BASE` / `_SIZE`.
    pub const GUEST_ACPI_BASE: u64 = 0x2000_0000;
    pub const GUEST_ACPI_SIZE: u64 = 0x0200_0000;
    /// `GUEST_PL011_BASE` / `_SIZE` (vPL011).
    pub const GUEST_PL011_BASE: u64 = 0x2200_0000;
    pub const GUEST_PL011_SIZE: u64 = 0x0000_1000;
    /// `GUEST_VPCI_MEM_ADDR` / `_SIZE`.
    pub const GUEST_VPCI_MEM_ADDR: u64 = 0x2300_0000;
    pub const GUEST_VPCI_MEM_SIZE: u64 = 0x1000_0000;
    /// `GUEST_GNTTAB_BASE` / `_SIZE`.
    pub const GUEST_GNTTAB_BASE: u64 = 0x3800_0000;
    pub const GUEST_GNTTAB_SIZE: u64 = 0x0100_0000;
    /// `GUEST_MAGIC_BASE` / `_SIZE`.
    pub const GUEST_MAGIC_BASE: u64 = 0x3900_0000;
    pub const GUEST_MAGIC_SIZE: u64 = 0x0100_0000;
    /// `GUEST_RAM0_BASE` / `_SIZE`: 3 GiB of low RAM at 1 GiB.
    pub const GUEST_RAM0_BASE: u64 = 0x4000_0000;
    pub const GUEST_RAM0_SIZE: u64 = 0xc000_0000;
    /// `GUEST_RAM1_BASE` / `_SIZE`: 1016 GiB at 8 GiB.
    pub const GUEST_RAM1_BASE: u64 = 0x02_0000_0000;
    pub const GUEST_RAM1_SIZE: u64 = 0xfe_0000_0000;
    /// `GUEST_VPCI_PREFETCH_MEM_ADDR` / `_SIZE`.
    pub const GUEST_VPCI_PREFETCH_MEM_ADDR: u64 = 0x1_0000_0000;
    pub const GUEST_VPCI_PREFETCH_MEM_SIZE: u64 = 0x1_0000_0000;
    /// `GUEST_MAX_VCPUS`.
    pub const GUEST_MAX_VCPUS: u32 = 128;
    /// `GUEST_TIMER_VIRT_PPI`, `GUEST_TIMER_PHYS_S_PPI`, `GUEST_TIMER_PHYS_NS_PPI` (INTIDs).
    pub const GUEST_TIMER_VIRT_PPI: u32 = 27;
    pub const GUEST_TIMER_PHYS_S_PPI: u32 = 29;
    pub const GUEST_TIMER_PHYS_NS_PPI: u32 = 30;
    /// `GUEST_EVTCHN_PPI` (INTID).
    pub const GUEST_EVTCHN_PPI: u32 = 31;
    /// `GUEST_VPL011_SPI` (INTID).
    pub const GUEST_VPL011_SPI: u32 = 32;
    /// `GUEST_VIRTIO_MMIO_SPI_FIRST` / `_LAST`.
    pub const GUEST_VIRTIO_MMIO_SPI_FIRST: u32 = 33;
    pub const GUEST_VIRTIO_MMIO_SPI_LAST: u32 = 43;

    /// Guest-physical ranges that are never free for passthrough MMIO, for a guest of either GIC
    /// version: `firmware_config::guest_map::fixed_regions`, the one map validation, the planner and
    /// the fragment generator share. (RAM depends on the domain and the vPL011 on its config; callers add
    /// those.)
    pub fn reserved_regions() -> Vec<(String, Region)> {
        firmware_config::guest_map::fixed_regions_any_gic(false)
            .into_iter()
            .map(|(n, r)| (n.to_owned(), r))
            .collect()
    }

    /// Guest RAM banks for `bytes` of memory: bank 0 is filled first, then bank 1
    /// (`tools/libs/guest/xg_dom_arm.c` `meminit`). `None` if it does not fit both banks.
    pub fn ram_banks(bytes: u64) -> Option<Vec<Region>> {
        if bytes > GUEST_RAM0_SIZE + GUEST_RAM1_SIZE {
            return None;
        }
        let b0 = bytes.min(GUEST_RAM0_SIZE);
        let b1 = bytes - b0;
        let mut v = Vec::new();
        if b0 > 0 {
            v.push(Region::new(GUEST_RAM0_BASE, b0));
        }
        if b1 > 0 {
            v.push(Region::new(GUEST_RAM1_BASE, b1));
        }
        Some(v)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use firmware_config::guest_map as map;

        /// The guest-DT layout and the planner's map are two readings of one header; they must agree.
        #[test]
        fn layout_matches_the_planner_map() {
            let pairs = [
                (
                    map::VIRTIO_MMIO,
                    GUEST_VIRTIO_MMIO_BASE,
                    GUEST_VIRTIO_MMIO_SIZE,
                ),
                (map::GICV2_DIST, GUEST_GICD_BASE, GUEST_GICD_SIZE),
                (map::GICV2_CPU, GUEST_GICC_BASE, GUEST_GICC_SIZE),
                (
                    map::GICV3_DIST,
                    GUEST_GICV3_GICD_BASE,
                    GUEST_GICV3_GICD_SIZE,
                ),
                (
                    map::GICV3_REDIST,
                    GUEST_GICV3_GICR0_BASE,
                    GUEST_GICV3_GICR0_SIZE,
                ),
                (map::VPCI_ECAM, GUEST_VPCI_ECAM_BASE, GUEST_VPCI_ECAM_SIZE),
                (map::ACPI, GUEST_ACPI_BASE, GUEST_ACPI_SIZE),
                (map::VPL011, GUEST_PL011_BASE, GUEST_PL011_SIZE),
                (map::VPCI_MEM, GUEST_VPCI_MEM_ADDR, GUEST_VPCI_MEM_SIZE),
                (map::GNTTAB, GUEST_GNTTAB_BASE, GUEST_GNTTAB_SIZE),
                (map::MAGIC, GUEST_MAGIC_BASE, GUEST_MAGIC_SIZE),
                (map::RAM0, GUEST_RAM0_BASE, GUEST_RAM0_SIZE),
                (map::RAM1, GUEST_RAM1_BASE, GUEST_RAM1_SIZE),
                (
                    map::VPCI_PREFETCH_MEM,
                    GUEST_VPCI_PREFETCH_MEM_ADDR,
                    GUEST_VPCI_PREFETCH_MEM_SIZE,
                ),
            ];
            for (r, base, size) in pairs {
                assert_eq!(r, Region::new(base, size));
            }
            assert_eq!(map::VPL011_SPI, GUEST_VPL011_SPI);
        }
    }
}

/// `DT_IRQ_TYPE_LEVEL_HIGH` / `_LEVEL_LOW` (Xen `public/device_tree_defs.h`).
pub const DT_IRQ_TYPE_LEVEL_HIGH: u32 = 0x4;
pub const DT_IRQ_TYPE_LEVEL_LOW: u32 = 0x8;
/// `PSCI_cpu_off` / `PSCI_cpu_on` function ids (`arch-arm.h`), written by `make_psci_node`.
pub const PSCI_CPU_OFF: u32 = 1;
pub const PSCI_CPU_ON: u32 = 2;
/// Extended regions must be at least 64 MiB (`EXT_REGION_MIN_SIZE` in `libxl_arm.c`) and 2 MiB aligned.
pub const EXT_REGION_MIN_SIZE: u64 = 0x0400_0000;
const MB2: u64 = 0x20_0000;

/// Which virtual GIC the guest has (`xen_arch_domainconfig.gic_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// Inputs of [`guest_dt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDtSpec {
    /// Xen major.minor, for `model`, the root `compatible` and the hypervisor node.
    pub xen_version: (u32, u32),
    pub vcpus: u32,
    /// Guest RAM in bytes, laid out by [`layout::ram_banks`].
    pub memory_bytes: u64,
    pub gic: GicVersion,
    pub vpl011: bool,
    pub cmdline: Option<String>,
    /// Where the initrd was loaded (guest physical); `linux,initrd-end` is exclusive.
    pub initrd: Option<Region>,
    /// `rng-seed` bytes (libxl uses 128 random bytes). `None`: no property.
    pub rng_seed: Option<Vec<u8>>,
    /// Timer `clock-frequency` when the platform's CNTFRQ is unreliable.
    pub timer_frequency: Option<u32>,
    /// Guest physical address bits (`XEN_DOMCTL_getdomaininfo` `gpaddr_bits`), bounding the extended
    /// regions advertised in `/hypervisor`.
    pub gpaddr_bits: u32,
    /// The passthrough partial DTB (from [`crate::passthrough::fragment`]).
    pub passthrough: Option<Vec<u8>>,
}

/// Why a guest DT could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestDtError {
    #[error("vCPU count {0} outside 1..={max}", max = layout::GUEST_MAX_VCPUS)]
    Vcpus(u32),
    #[error("guest memory of {0:#x} bytes does not fit the guest RAM banks (or is zero)")]
    Memory(u64),
    #[error("initrd {0:#x?} is not inside guest RAM")]
    Initrd(Region),
    #[error("passthrough fragment unusable: {0}")]
    Fragment(String),
    #[error("gpaddr_bits {0} outside 32..=64")]
    AddressBits(u32),
}

fn reg(entries: &[(u64, u64)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(a, s)| a.to_be_bytes().into_iter().chain(s.to_be_bytes()))
        .collect()
}

/// A GIC interrupt specifier as libxl's `set_interrupt` writes it: `<is_ppi number (cpumask << 8 | level)>`.
fn gic_irq(intid: u32, cpumask: u32, level: u32) -> [u32; 3] {
    let is_ppi = intid < 32;
    let n = if is_ppi { intid - 16 } else { intid - 32 };
    [u32::from(is_ppi), n, (cpumask << 8) | level]
}

/// libxl's `libxl__compute_mpdir` (`libxl_arm.h`): AFF0 = cpuid bits 0-3, AFF1 = bits 4-11.
pub fn vcpu_mpidr(cpuid: u32) -> u32 {
    (cpuid & 0x0f) | (((cpuid >> 4) & 0xff) << 8)
}

/// Builds the guest device tree blob.
pub fn guest_dt(spec: &GuestDtSpec) -> Result<Vec<u8>, GuestDtError> {
    Ok(guest_tree(spec)?.to_dtb())
}

/// Builds the guest device tree (for printing or further edits).
pub fn guest_tree(spec: &GuestDtSpec) -> Result<DeviceTree, GuestDtError> {
    if spec.vcpus == 0 || spec.vcpus > layout::GUEST_MAX_VCPUS {
        return Err(GuestDtError::Vcpus(spec.vcpus));
    }
    if !(32..=64).contains(&spec.gpaddr_bits) {
        return Err(GuestDtError::AddressBits(spec.gpaddr_bits));
    }
    let banks = layout::ram_banks(spec.memory_bytes)
        .filter(|b| !b.is_empty())
        .ok_or(GuestDtError::Memory(spec.memory_bytes))?;
    if let Some(i) = spec.initrd
        && !banks.iter().any(|b| b.contains(&i))
    {
        return Err(GuestDtError::Initrd(i));
    }
    let fragment = match &spec.passthrough {
        Some(bytes) => {
            Some(DeviceTree::from_dtb(bytes).map_err(|e| GuestDtError::Fragment(e.to_string()))?)
        }
        None => None,
    };
    let (maj, min) = spec.xen_version;
    let mut t = DeviceTree::new();
    let root = &mut t.root;

    // make_root_properties
    root.set_prop("model", value::string(&format!("XENVM-{maj}.{min}")));
    root.set_prop(
        "compatible",
        value::strings(&[&format!("xen,xenvm-{maj}.{min}"), "xen,xenvm"]),
    );
    root.set_prop("interrupt-parent", value::u32(GUEST_PHANDLE_GIC));
    // GUEST_ROOT_ADDRESS_CELLS / GUEST_ROOT_SIZE_CELLS (device_tree_defs.h).
    root.set_prop("#address-cells", value::u32(2));
    root.set_prop("#size-cells", value::u32(2));

    // make_chosen_node
    let mut chosen = Node::new("chosen");
    if let Some(c) = &spec.cmdline {
        chosen.set_prop("bootargs", value::string(c));
    }
    if let Some(i) = spec.initrd {
        chosen.set_prop("linux,initrd-start", value::u64(i.base));
        chosen.set_prop(
            "linux,initrd-end",
            value::u64(i.base.saturating_add(i.size)),
        );
    }
    if let Some(seed) = &spec.rng_seed {
        chosen.set_prop("rng-seed", seed.clone());
    }
    root.children.push(chosen);

    // make_cpus_node
    let mut cpus = Node::new("cpus");
    cpus.set_prop("#address-cells", value::u32(1));
    cpus.set_prop("#size-cells", value::u32(0));
    for i in 0..spec.vcpus {
        let mpidr = vcpu_mpidr(i);
        let mut cpu = Node::new(format!("cpu@{mpidr:x}"));
        cpu.set_prop("device_type", value::string("cpu"));
        // arch_info for aarch64: cpu_compat "arm,armv8", timer_compat "arm,armv8-timer".
        cpu.set_prop("compatible", value::string("arm,armv8"));
        cpu.set_prop("enable-method", value::string("psci"));
        cpu.set_prop("reg", value::u32(mpidr));
        cpus.children.push(cpu);
    }
    root.children.push(cpus);

    // make_psci_node
    let mut psci = Node::new("psci");
    psci.set_prop(
        "compatible",
        value::strings(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]),
    );
    psci.set_prop("method", value::string("hvc"));
    psci.set_prop("cpu_off", value::u32(PSCI_CPU_OFF));
    psci.set_prop("cpu_on", value::u32(PSCI_CPU_ON));
    root.children.push(psci);

    // make_memory_nodes + finalise_one_node (empty banks are NOPed by libxl: omitted here).
    for b in &banks {
        let mut m = Node::new(format!("memory@{:x}", b.base));
        m.set_prop("device_type", value::string("memory"));
        m.set_prop("reg", reg(&[(b.base, b.size)]));
        root.children.push(m);
    }

    // make_gicv2_node / make_gicv3_node
    let (gic_name, gic_compat, gic_reg): (String, Vec<u8>, Vec<u8>) = match spec.gic {
        GicVersion::V2 => (
            format!("interrupt-controller@{:x}", layout::GUEST_GICD_BASE),
            value::strings(&["arm,cortex-a15-gic", "arm,cortex-a9-gic"]),
            reg(&[
                (layout::GUEST_GICD_BASE, layout::GUEST_GICD_SIZE),
                (layout::GUEST_GICC_BASE, layout::GUEST_GICC_SIZE),
            ]),
        ),
        GicVersion::V3 => (
            format!("interrupt-controller@{:x}", layout::GUEST_GICV3_GICD_BASE),
            value::string("arm,gic-v3"),
            reg(&[
                (layout::GUEST_GICV3_GICD_BASE, layout::GUEST_GICV3_GICD_SIZE),
                (
                    layout::GUEST_GICV3_GICR0_BASE,
                    layout::GUEST_GICV3_GICR0_SIZE,
                ),
            ]),
        ),
    };
    let mut gic = Node::new(gic_name);
    gic.set_prop("compatible", gic_compat);
    gic.set_prop("#interrupt-cells", value::u32(3));
    gic.set_prop("#address-cells", value::u32(0));
    gic.set_prop("interrupt-controller", value::empty());
    gic.set_prop("reg", gic_reg);
    gic.set_prop("linux,phandle", value::u32(GUEST_PHANDLE_GIC));
    gic.set_prop("phandle", value::u32(GUEST_PHANDLE_GIC));
    root.children.push(gic);

    // make_timer_node: secure phys, non-secure phys, virt; CPU mask 0xf, level-low.
    let mut timer = Node::new("timer");
    timer.set_prop("compatible", value::string("arm,armv8-timer"));
    let ints: Vec<u32> = [
        layout::GUEST_TIMER_PHYS_S_PPI,
        layout::GUEST_TIMER_PHYS_NS_PPI,
        layout::GUEST_TIMER_VIRT_PPI,
    ]
    .into_iter()
    .flat_map(|p| gic_irq(p, 0xf, DT_IRQ_TYPE_LEVEL_LOW))
    .collect();
    timer.set_prop("interrupts", value::cells(&ints));
    if let Some(f) = spec.timer_frequency {
        timer.set_prop("clock-frequency", value::u32(f));
    }
    root.children.push(timer);

    // make_hypervisor_node + finalize_hypervisor_node: grant table region, then 2 MiB-aligned
    // extended regions >= 64 MiB above the RAM used in each bank, below 2^gpaddr_bits.
    let mut hyp = Node::new("hypervisor");
    hyp.set_prop(
        "compatible",
        value::strings(&[&format!("xen,xen-{maj}.{min}"), "xen,xen"]),
    );
    let mut regions = vec![(layout::GUEST_GNTTAB_BASE, layout::GUEST_GNTTAB_SIZE)];
    let limit = if spec.gpaddr_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << spec.gpaddr_bits) - 1
    };
    for (bank_base, bank_size) in [
        (layout::GUEST_RAM0_BASE, layout::GUEST_RAM0_SIZE),
        (layout::GUEST_RAM1_BASE, layout::GUEST_RAM1_SIZE),
    ] {
        let used = banks
            .iter()
            .find(|b| b.base == bank_base)
            .map_or(0, |b| b.size);
        let base = bank_base + used.div_ceil(MB2) * MB2;
        let end = limit.min(bank_base + bank_size - 1);
        if end > base && end - base + 1 >= EXT_REGION_MIN_SIZE {
            regions.push((base, end - base + 1));
        }
    }
    hyp.set_prop("reg", reg(&regions));
    hyp.set_prop(
        "interrupts",
        value::cells(&gic_irq(
            layout::GUEST_EVTCHN_PPI,
            0xf,
            DT_IRQ_TYPE_LEVEL_LOW,
        )),
    );
    root.children.push(hyp);

    // make_vpl011_uart_node
    if spec.vpl011 {
        let mut uart = Node::new("sbsa-pl011");
        uart.set_prop("compatible", value::string("arm,sbsa-uart"));
        uart.set_prop(
            "reg",
            reg(&[(layout::GUEST_PL011_BASE, layout::GUEST_PL011_SIZE)]),
        );
        uart.set_prop(
            "interrupts",
            value::cells(&gic_irq(
                layout::GUEST_VPL011_SPI,
                0xf,
                DT_IRQ_TYPE_LEVEL_HIGH,
            )),
        );
        uart.set_prop("current-speed", value::u32(115_200));
        root.children.push(uart);
    }

    // copy_partial_fdt: /passthrough (required) and /aliases (optional).
    if let Some(f) = fragment {
        let pt = f
            .root
            .child("passthrough")
            .ok_or_else(|| GuestDtError::Fragment("no /passthrough node".into()))?;
        root.children.push(strip_xen_props(pt));
        if let Some(a) = f.root.child("aliases") {
            root.children.push(a.clone());
        }
    }
    Ok(t)
}

fn strip_xen_props(n: &Node) -> Node {
    let mut out = Node::new(n.name.clone());
    out.properties = n
        .properties
        .iter()
        .filter(|p| {
            !matches!(
                p.name.as_str(),
                "xen,reg" | "xen,path" | "xen,force-assign-without-iommu"
            )
        })
        .cloned()
        .collect();
    out.children = n.children.iter().map(strip_xen_props).collect();
    out
}
