//! Hand-made boards and artifact facts shared by the fuzz targets (`fuzz_targets/*.rs`) and the
//! property tests (`tests/plan_properties.rs`, which includes this file with `#[path]`).
//!
//! The inventories are typed by hand from QEMU's own device tree for
//! `-machine virt,gic-version=3 -smp 2 -m 2G` (`dumpdtb` output read with `dtc -I dtb -O dts`), so
//! validation and planning see realistic addresses without a DTB or the `device-tree` crate:
//!
//! | node | `reg` | `interrupts` (DT cells) | INTID (SPI + 32) |
//! |---|---|---|---|
//! | `/memory@40000000` | `0x40000000 + 0x80000000` | | |
//! | `/intc@8000000` (GICv3) | `0x8000000 + 0x10000`, `0x80a0000 + 0xf60000` | | |
//! | `/pl011@9000000` | `0x9000000 + 0x1000` | `<0 1 4>` | 33 |
//! | `/pl031@9010000` | `0x9010000 + 0x1000` | `<0 2 4>` | 34 |
//! | `/pl061@9030000` | `0x9030000 + 0x1000` | `<0 7 4>` | 39 |
//! | `/virtio_mmio@a000000 + n*0x200` | `0x200` each | `<0 16+n 1>` | 48 + n |
//!
//! QEMU's platform devices sit behind no IOMMU. The second inventory adds what QEMU virt lacks but
//! real boards have: an SMMUv3 with a device behind it, a device that depends on another device's
//! registers (a clock controller), a `no-map` reserved region inside RAM, a disabled device, and
//! devices wired to a PPI or to a secondary interrupt controller.
//!
//! Interrupt numbers in [`DeviceInterrupt::Spi`] are INTIDs, as the inventory documents.
#![allow(dead_code)]

use firmware_config::artifacts::{ArtifactFacts, ArtifactTable, ImageFormat};
use firmware_config::board::{
    Arch, Board, CpuNode, DeviceDependency, DeviceInterrupt, DeviceNode, HardwareInventory,
    InterruptController, InterruptControllerKind, Region, ReservedRegion, builtin_board,
};
use firmware_config::manifest::Manifest;

/// QEMU virt RAM with `-m 2G`: `/memory@40000000`.
pub const VIRT_RAM: Region = Region::new(0x4000_0000, 0x8000_0000);
/// OP-TEE-style carve-out of the IOMMU inventory (inside RAM, `no-map`).
pub const RESERVED: Region = Region::new(0x7e00_0000, 0x0200_0000);
/// The page `/virtio_mmio@a000000` .. `@a000e00` share (slots are 0x200 apart).
pub const VIRTIO_BASE: u64 = 0x0a00_0000;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

fn device(path: &str, compatible: &[&str], base: u64, size: u64, intid: u32) -> DeviceNode {
    DeviceNode {
        path: path.to_string(),
        compatible: strings(compatible),
        enabled: true,
        regions: vec![Region::new(base, size)],
        interrupts: vec![DeviceInterrupt::Spi(intid)],
        behind_iommu: false,
        dma_capable: false,
        dependencies: Vec::new(),
        phandle: None,
        nested_mmio: Vec::new(),
    }
}

/// A primecell's `clocks = <&apb-pclk>`: the provider is a fixed clock without `reg`, so it is not a
/// device the guest needs: the fragment carries it (`copyable`).
fn apb_pclk() -> Vec<DeviceDependency> {
    vec![DeviceDependency {
        property: "clocks".to_string(),
        provider: "/apb-pclk".to_string(),
        copyable: true,
    }]
}

fn virtio(slot: u64) -> DeviceNode {
    let base = VIRTIO_BASE + slot * 0x200;
    let mut d = device(
        &format!("/virtio_mmio@{base:x}"),
        &["virtio,mmio"],
        base,
        0x200,
        48 + slot as u32,
    );
    d.dma_capable = true;
    d
}

/// Device paths of [`qemu_virt_inventory`] that a guest may own, no two sharing a page, and none
/// of them Xen's console UART.
pub const PASSABLE_DEVICES: &[&str] = &[
    "/pl031@9010000",
    "/pl061@9030000",
    "/virtio_mmio@a000000",
    "/virtio_mmio@a001000",
    "/virtio_mmio@a002000",
    "/virtio_mmio@a003e00",
];

/// QEMU virt, GICv3, 2 CPUs, 2 GiB, as its DTB describes it.
pub fn qemu_virt_inventory() -> HardwareInventory {
    let mut devices = vec![
        device(
            "/pl011@9000000",
            &["arm,pl011", "arm,primecell"],
            0x0900_0000,
            0x1000,
            33,
        ),
        device(
            "/pl031@9010000",
            &["arm,pl031", "arm,primecell"],
            0x0901_0000,
            0x1000,
            34,
        ),
        device(
            "/pl061@9030000",
            &["arm,pl061", "arm,primecell"],
            0x0903_0000,
            0x1000,
            39,
        ),
    ];
    for d in &mut devices {
        d.dependencies = apb_pclk();
    }
    // Slots 0, 1 and 7 share the page at 0xa000000; 8 and 16 start pages of their own; 31 is last.
    devices.extend([0, 1, 7, 8, 16, 31].map(virtio));
    HardwareInventory {
        model: "linux,dummy-virt".to_string(),
        compatible: strings(&["linux,dummy-virt"]),
        cpus: (0..2)
            .map(|i| CpuNode {
                path: format!("/cpus/cpu@{i}"),
                hw_id: i,
                phandle: None,
            })
            .collect(),
        memory: vec![VIRT_RAM],
        reserved: Vec::new(),
        interrupt_controller: Some(InterruptController {
            path: "/intc@8000000".to_string(),
            kind: InterruptControllerKind::GicV3,
            compatible: strings(&["arm,gic-v3"]),
            regions: vec![
                Region::new(0x0800_0000, 0x1_0000),
                Region::new(0x080a_0000, 0x00f6_0000),
            ],
        }),
        devices,
        stdout_path: Some("/pl011@9000000".to_string()),
        iommus: Vec::new(),
    }
}

/// QEMU virt plus an SMMUv3, a DMA master behind it that needs a clock controller, a reserved
/// region, a disabled device, and devices whose interrupts Xen cannot route.
pub fn iommu_inventory() -> HardwareInventory {
    let mut inv = qemu_virt_inventory();
    inv.model = "domforge,virt-with-smmu".to_string();
    inv.iommus.push("/smmuv3@9050000".to_string());
    inv.reserved.push(ReservedRegion {
        name: "optee@7e000000".to_string(),
        region: RESERVED,
        no_map: true,
    });
    let smmu = device(
        "/smmuv3@9050000",
        &["arm,smmu-v3"],
        0x0905_0000,
        0x2_0000,
        106,
    );
    let clocks = device(
        "/clock-controller@9070000",
        &["vendor,clk"],
        0x0907_0000,
        0x1000,
        110,
    );
    let mut eth = device("/ethernet@9080000", &["cdns,gem"], 0x0908_0000, 0x2000, 111);
    eth.behind_iommu = true;
    eth.dma_capable = true;
    eth.dependencies.push(DeviceDependency {
        property: "clocks".to_string(),
        provider: "/clock-controller@9070000".to_string(),
        copyable: false,
    });
    let mut disabled = device("/spi@90a0000", &["arm,pl022"], 0x090a_0000, 0x1000, 112);
    disabled.enabled = false;
    disabled.behind_iommu = true;
    let mut timer = device("/timer@90b0000", &["vendor,timer"], 0x090b_0000, 0x1000, 0);
    timer.interrupts = vec![DeviceInterrupt::Ppi(27)];
    let mut button = device("/keys@90c0000", &["gpio-keys"], 0x090c_0000, 0x100, 0);
    button.interrupts = vec![DeviceInterrupt::Nested(0x8005)];
    // A device whose registers straddle two pages and a guest-map hole collision (0x3000000 is the
    // guest GIC distributor): planning must relocate it for non-direct-mapped guests.
    let mut low = device("/sram@3000800", &["mmio-sram"], 0x0300_0800, 0x1000, 113);
    low.behind_iommu = true;
    inv.devices
        .extend([smmu, clocks, eth, disabled, timer, button, low]);
    inv
}

/// The built-in `qemu-virt-arm64` board file.
pub fn qemu_virt_board() -> Board {
    let text = builtin_board("qemu-virt-arm64").expect("qemu-virt-arm64 is a built-in board");
    Board::parse(text).expect("built-in boards parse (firmware-config's own unit test)")
}

/// The built-in `qemu-x86_64` board file with its `[hardware]` inventory.
pub fn qemu_x86_board() -> (Board, HardwareInventory) {
    let text = builtin_board("qemu-x86_64").expect("qemu-x86_64 is a built-in board");
    let board = Board::parse(text).expect("built-in boards parse");
    let inv = board
        .resolve_inventory(None)
        .expect("an x86 board describes its hardware");
    (board, inv)
}

/// What a source is used as, which decides the facts an honest examiner would report for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Kernel,
    Ramdisk,
    Hypervisor,
}

/// Every source the manifest names, with its use, in manifest order.
pub fn sources(m: &Manifest) -> Vec<(String, Use)> {
    let mut out = Vec::new();
    // Validation examines the hypervisor too: the manifest's, or Debian's package by default.
    let hypervisor = m
        .system
        .hypervisor
        .as_ref()
        .map_or_else(|| "debian:xen".to_string(), |h| h.value.clone());
    out.push((hypervisor, Use::Hypervisor));
    if let Some(d0) = &m.dom0 {
        out.push((d0.kernel.value.clone(), Use::Kernel));
        if let Some(r) = &d0.ramdisk {
            out.push((r.value.clone(), Use::Ramdisk));
        }
    }
    for d in &m.domains {
        out.push((d.kernel.value.clone(), Use::Kernel));
        if let Some(r) = &d.ramdisk {
            out.push((r.value.clone(), Use::Ramdisk));
        }
    }
    out
}

/// FNV-1a, so sizes are a pure function of the source text.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Facts for one source. Marker words in the source text select unusual answers so a fuzzer (whose
/// dictionary carries them) reaches every validation path: `missing` (never examined), `broken`
/// (unreadable), `elf`/`nopvh`/`bz` (x86 kernels), `gz` (gzip'd Image), `dtb`, `huge` (3 GiB),
/// `empty` (0 bytes). Otherwise kernels are arm64 Images on arm64 boards and PVH ELFs on x86, and
/// ramdisks are initramfs images, sized 64 KiB to ~40 MiB from a hash of the text.
pub fn facts(source: &str, used_as: Use, arch: Arch) -> Option<Result<ArtifactFacts, String>> {
    if source.contains("missing") {
        return None;
    }
    if source.contains("broken") {
        return Some(Err("No such file or directory (os error 2)".to_string()));
    }
    let format = if source.contains("nopvh") {
        ImageFormat::Elf {
            machine: "x86_64".to_string(),
            pvh_entry: None,
        }
    } else if source.contains("elf") {
        ImageFormat::Elf {
            machine: "x86_64".to_string(),
            pvh_entry: Some(0x0100_0000),
        }
    } else if source.contains("bz") {
        ImageFormat::BzImage {
            pvh_entry: Some(0x0100_0000),
        }
    } else if source.contains("gz") {
        ImageFormat::Arm64ImageGzip
    } else if source.contains("dtb") {
        ImageFormat::DeviceTree
    } else {
        match (used_as, arch) {
            (Use::Hypervisor, _) => ImageFormat::Xen,
            (Use::Ramdisk, _) => ImageFormat::Initramfs,
            (Use::Kernel, Arch::Arm64) => ImageFormat::Arm64Image,
            (Use::Kernel, Arch::X86_64) => ImageFormat::Elf {
                machine: "x86_64".to_string(),
                pvh_entry: Some(0x0100_0000),
            },
        }
    };
    let size = if source.contains("huge") {
        3 << 30
    } else if source.contains("empty") {
        0
    } else {
        64 * 1024 + fnv(source) % (40 << 20)
    };
    Some(Ok(ArtifactFacts {
        size,
        format,
        path: format!("/cache/{:016x}", fnv(source)),
        sha256: format!("{:064x}", fnv(source)),
        identity: None,
    }))
}

/// The artifact table the CLI would build for this manifest on a board of `arch`: one entry per
/// distinct source, decided by its first use.
pub fn artifacts_for(m: &Manifest, arch: Arch) -> ArtifactTable {
    let mut table = ArtifactTable::new();
    for (source, used_as) in sources(m) {
        if table.contains_key(&source) {
            continue;
        }
        if let Some(f) = facts(&source, used_as, arch) {
            table.insert(source, f);
        }
    }
    table
}
