//! What a board's device tree says about its hardware, in plain data.
//!
//! The `device-tree` crate reads a board DTB (QEMU `dumpdtb` output or a vendor DTB) and fills a
//! [`HardwareInventory`]; validation and planning then consume it without knowing anything about FDT.
//! This keeps the dependency arrow one way (`firmware-config` ← `device-tree`) and lets unit and property
//! tests build inventories by hand.
//!
//! All addresses are **host physical addresses** as seen by the CPU: `reg` values have already been
//! translated through every parent's `ranges` (Devicetree Specification v0.4, §2.3.8).

use alloc::string::String;
use alloc::vec::Vec;

/// A contiguous physical address range `[base, base + size)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte, or `None` when the range wraps the 64-bit address space.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether the two ranges share at least one byte. Empty ranges overlap nothing.
    pub fn overlaps(&self, other: &Region) -> bool {
        if self.size == 0 || other.size == 0 {
            return false;
        }
        let a_end = self.end().unwrap_or(u64::MAX);
        let b_end = other.end().unwrap_or(u64::MAX);
        self.base < b_end && other.base < a_end
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Region) -> bool {
        match (self.end(), other.end()) {
            (Some(a_end), Some(b_end)) => other.base >= self.base && b_end <= a_end,
            _ => false,
        }
    }
}

/// The interrupt controller family, which decides the guest GIC Xen emulates and the SPI numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterruptControllerKind {
    /// ARM GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`, ...).
    GicV2,
    /// ARM GICv3 (`arm,gic-v3`).
    GicV3,
    /// x86 local APIC + IO-APIC (no device tree; described by the board file).
    Apic,
    /// Anything else: the tool cannot plan interrupts for it.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterruptController {
    /// Device-tree path of the controller node (e.g. `/intc@8000000`).
    pub path: String,
    pub kind: InterruptControllerKind,
    pub compatible: Vec<String>,
    /// MMIO frames (distributor, CPU interface / redistributors, ...), host physical.
    pub regions: Vec<Region>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuNode {
    /// Device-tree path, e.g. `/cpus/cpu@0`.
    pub path: String,
    /// The `reg` value (MPIDR affinity bits on ARM).
    pub hw_id: u64,
    pub phandle: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReservedRegion {
    /// Node name under `/reserved-memory`, or `/memreserve/` for header reservations.
    pub name: String,
    pub region: Region,
    /// `no-map` present: the OS must not map it at all.
    pub no_map: bool,
}

/// One interrupt a device raises, decoded against its interrupt parent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DeviceInterrupt {
    /// A GIC shared peripheral interrupt, as its **INTID** (SPI number + 32), which is what Xen's
    /// `irqs` grants and `XEN_DOMCTL_bind_pt_irq` use.
    Spi(u32),
    /// A GIC private peripheral interrupt, INTID (PPI number + 16). Never passable to a guest.
    Ppi(u32),
    /// An interrupt wired to a secondary controller (GPIO, pinctrl, a mailbox...) that Xen cannot route
    /// to a guest. Holds that controller's phandle.
    Nested(u32),
}

/// A device node that can be owned by a domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceNode {
    /// Full device-tree path, e.g. `/pl031@9010000` or `/axi/ethernet@ff0e0000`.
    pub path: String,
    pub compatible: Vec<String>,
    /// `status` is absent, `"okay"` or `"ok"`.
    pub enabled: bool,
    /// MMIO ranges after translation through every parent's `ranges`.
    pub regions: Vec<Region>,
    pub interrupts: Vec<DeviceInterrupt>,
    /// An `iommus` property points at an IOMMU (SMMU) that is **enabled** in the tree, so Xen can
    /// program it for this device. A disabled SMMU (as in Debian's ZCU102 DTB) protects nothing and
    /// leaves this false.
    pub behind_iommu: bool,
    /// The device can master DMA as far as the tree tells (heuristic: `dma-coherent`, `iommus`,
    /// known DMA-capable compatibles such as virtio-mmio); used to word warnings.
    pub dma_capable: bool,
    /// Paths of the nodes this device references by phandle (clocks, resets, power-domains,
    /// pinctrl-N, phys, ...), each with the property that references it.
    pub dependencies: Vec<DeviceDependency>,
    pub phandle: Option<u32>,
    /// Nodes below this one with CPU-addressable MMIO of their own (a syscon's PHY or clock
    /// sub-blocks, a bus's devices). A passthrough fragment cannot describe them under this node, so
    /// the node itself cannot be passed (E0261); its children can.
    #[serde(default)]
    pub nested_mmio: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceDependency {
    /// The referencing property, e.g. `clocks`.
    pub property: String,
    /// Path of the referenced provider node, e.g. `/apb-pclk`.
    pub provider: String,
    /// The passthrough fragment can carry this provider itself (a `fixed-clock` referenced through a
    /// clock property), so the guest gets it without owning it.
    pub copyable: bool,
}

/// Everything validation and planning need to know about a board's hardware.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HardwareInventory {
    /// Root `model` property.
    pub model: String,
    /// Root `compatible` list.
    pub compatible: Vec<String>,
    pub cpus: Vec<CpuNode>,
    /// RAM banks from every `device_type = "memory"` node, sorted by base, zero-sized banks dropped.
    pub memory: Vec<Region>,
    /// `/reserved-memory` children and `/memreserve/` entries.
    pub reserved: Vec<ReservedRegion>,
    pub interrupt_controller: Option<InterruptController>,
    /// Every node with a `reg` in the CPU address space (excluding cpus, memory and the interrupt
    /// controller), in tree order.
    pub devices: Vec<DeviceNode>,
    /// `/chosen/stdout-path` resolved through `/aliases` to a node path (options after `:` dropped).
    pub stdout_path: Option<String>,
    /// Nodes whose `compatible` names an IOMMU (`arm,smmu-v3`, `arm,mmu-500`, `arm,smmu-v2`...).
    pub iommus: Vec<String>,
}

impl HardwareInventory {
    pub fn device(&self, path: &str) -> Option<&DeviceNode> {
        self.devices.iter().find(|d| d.path == path)
    }
}
