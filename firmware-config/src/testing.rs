//! Hand-made inputs for tests of [`check`](crate::validate::check) and
//! [`plan`](crate::plan::plan) on the `qemu-virt-arm64` board: a GICv3 inventory, a device behind
//! the IOMMU, and artifact facts that stand in for files the tests never read. Shared by the
//! crate's unit tests and `tests/`; not part of the toolstack (nothing outside tests calls it).

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::artifacts::{ArtifactFacts, ArtifactTable, ImageFormat};
use crate::board::{
    Board, CpuNode, DeviceInterrupt, DeviceNode, HardwareInventory, InterruptController,
    InterruptControllerKind, Region, builtin_board,
};
use crate::diag::Diagnostics;
use crate::manifest::Manifest;
use crate::validate::{CheckInput, check};

/// Two CPUs, 2 GiB at 1 GiB and a GICv3 at `intc` (the shape of QEMU's `virt` with
/// `gic-version=3`), plus `devices`.
pub fn gic_v3_inventory(intc: &str, devices: Vec<DeviceNode>) -> HardwareInventory {
    HardwareInventory {
        cpus: (0..2)
            .map(|i| CpuNode {
                path: alloc::format!("/cpus/cpu@{i}"),
                hw_id: i,
                phandle: None,
            })
            .collect(),
        memory: vec![Region::new(0x4000_0000, 0x8000_0000)],
        interrupt_controller: Some(InterruptController {
            path: intc.to_string(),
            kind: InterruptControllerKind::GicV3,
            compatible: vec!["arm,gic-v3".into()],
            regions: Vec::new(),
        }),
        devices,
        ..HardwareInventory::default()
    }
}

/// An enabled `test,dev` device with one 4 KiB page at `base`, behind the IOMMU.
pub fn device(path: &str, base: u64, interrupts: Vec<DeviceInterrupt>) -> DeviceNode {
    DeviceNode {
        path: path.into(),
        compatible: vec!["test,dev".into()],
        enabled: true,
        regions: vec![Region::new(base, 0x1000)],
        interrupts,
        behind_iommu: true,
        dma_capable: false,
        dependencies: Vec::new(),
        phandle: None,
        nested_mmio: Vec::new(),
    }
}

/// Every name in `names` as an arm64 `Image` of `size` bytes (the rules look at format and size
/// only; path and hash are never read by `check`).
pub fn arm64_artifacts(names: &[&str], size: u64) -> ArtifactTable {
    names
        .iter()
        .map(|s| {
            let facts = ArtifactFacts {
                size,
                format: ImageFormat::Arm64Image,
                path: s.to_string(),
                sha256: String::new(),
                identity: None,
            };
            (s.to_string(), Ok(facts))
        })
        .collect()
}

/// The built-in `qemu-virt-arm64` board.
pub fn virt_arm64() -> Board {
    Board::parse(builtin_board("qemu-virt-arm64").expect("built-in board")).expect("board parses")
}

/// `check` of manifest `text` on `qemu-virt-arm64` with `inventory` and `artifacts`.
pub fn check_on_virt(
    text: &str,
    inventory: &HardwareInventory,
    artifacts: &ArtifactTable,
) -> Diagnostics {
    let manifest = Manifest::parse(text).expect("manifest parses");
    let board = virt_arm64();
    check(CheckInput {
        manifest: &manifest,
        board: &board,
        inventory,
        artifacts,
    })
}
