//! A board DTB read into `firmware_config::board::HardwareInventory`.
//!
//! Rules, with their sources:
//! - CPUs: children of `/cpus` with `device_type = "cpu"`; `reg` in `/cpus`' `#address-cells`
//!   (Devicetree Specification v0.4 §3.7, `arm/cpus.yaml`: the MPIDR affinity bits).
//! - RAM: every node with `device_type = "memory"` (§3.4), translated, sorted, zero sizes dropped.
//! - Reservations: children of `/reserved-memory` with a `reg` (`reserved-memory.yaml`; dynamic ones
//!   with only `size` have no fixed address and are skipped) and the header's `/memreserve/` entries.
//! - Devices: every other node whose `reg` translates to the CPU address space ([`crate::resolve`]);
//!   nodes under a bus without `ranges` (I2C, SPI, MDIO children) are not CPU-addressable and skipped.
//! - `stdout-path` (`chosen.yaml`): options after `:` dropped, an alias resolved through `/aliases`.

use firmware_config::board::{
    CpuNode, DeviceDependency, DeviceNode, HardwareInventory, InterruptController,
    InterruptControllerKind, Region, ReservedRegion,
};

use firmware_config::xen_drivers;

use crate::DtError;
use crate::resolve::{GICV2_COMPATIBLES, GICV3_COMPATIBLES, Resolver, node_dependency_kind};
use crate::tree::DeviceTree;

/// `compatible` strings of IOMMUs Xen drives on ARM in **every** supported release
/// (`firmware_config::xen_drivers::IOMMU_DRIVERS`, read from `xen/drivers/passthrough/arm/smmu.c`,
/// `smmu-v3.c` and `ipmmu-vmsa.c` of 4.17 … 4.22). The inventory does not know the target release,
/// so an IOMMU matched only by later releases (R-Car V4H's `renesas,ipmmu-r8a779g0`, 4.20+) does not
/// count here: the device then needs `force_without_iommu`, never the reverse.
pub fn xen_iommu(compatibles: &[&str]) -> Option<&'static str> {
    compatibles.iter().find_map(|c| {
        xen_drivers::IOMMU_DRIVERS
            .iter()
            .find(|d| {
                d.compatible == *c && xen_drivers::in_every_release(xen_drivers::IOMMU_DRIVERS, c)
            })
            .map(|d| d.compatible)
    })
}

/// The IOMMU compatibles [`xen_iommu`] accepts, for messages.
pub fn xen_iommu_compatibles() -> Vec<&'static str> {
    xen_drivers::IOMMU_DRIVERS
        .iter()
        .map(|d| d.compatible)
        .filter(|c| xen_drivers::in_every_release(xen_drivers::IOMMU_DRIVERS, c))
        .collect()
}

/// Generic node names of DMA masters (Devicetree Specification v0.4 §2.2.2, "Generic Names
/// Recommendation"; the bindings' `$nodename` patterns, e.g. `net/ethernet-controller.yaml`
/// `^ethernet(@.*)?$`, `mmc/mmc-controller.yaml` `^mmc(@.*)?$`, `usb/usb.yaml` `^usb(@.*)?$`,
/// `dma/dma-controller.yaml` `^dma-controller(@.*)?$`): devices that move data to and from memory
/// themselves.
const DMA_MASTER_NODE_NAMES: &[&str] = &[
    "ethernet",
    "mmc",
    "usb",
    "dma-controller",
    "sata",
    "pcie",
    "gpu",
    "video-codec",
    "display-controller",
    "crypto",
    "nvme",
    "npu",
];

/// `compatible` fragments of DMA masters whose node names do not say so (older trees): Ethernet
/// MACs (Synopsys `dwmac`/`gmac`, Cadence `gem`/`macb`, NXP `fec`, Broadcom `genet`, Renesas
/// `ravb`, TI `cpsw`), SD/MMC hosts (`sdhci`, `usdhc`, `dw-mshc`, Renesas `sdhi`), USB hosts
/// (`dwc3`, `dwc2`, `xhci`, `ehci`, `ohci`), DMA engines (`pl330`, `-dma`, `dmac`), SATA `ahci`,
/// `virtio,mmio`, `nvme`. Fragments that also name PHYs (`pcie`, `emmc`: `rockchip,rk3399-pcie-phy`,
/// `-emmc-phy`) are left to the node-name rule.
const DMA_MASTER_COMPATIBLES: &[&str] = &[
    "dwmac",
    "gmac",
    "cdns,gem",
    "macb",
    "-fec",
    "genet",
    "ravb",
    "cpsw",
    "sdhci",
    "usdhc",
    "dw-mshc",
    "sdhi",
    "dwc3",
    "dwc2",
    "xhci",
    "ehci",
    "ohci",
    "pl330",
    "-dma",
    "dmac",
    "ahci",
    "virtio,mmio",
    "nvme",
];

/// Why the node at `path` is a DMA master, if the tree says so: the rule that matched, in words.
pub fn dma_master_rule(node: &crate::Node) -> Option<String> {
    if node.has_prop("iommus") {
        return Some("it has an `iommus` link (only DMA masters sit behind an IOMMU)".into());
    }
    if node.has_prop("#dma-cells") {
        return Some("it is a DMA engine (`#dma-cells`, dma/dma-controller.yaml)".into());
    }
    if node.has_prop("dma-coherent") {
        return Some("it is `dma-coherent`".into());
    }
    let base = node.base_name();
    if DMA_MASTER_NODE_NAMES.contains(&base) {
        return Some(format!(
            "its node name `{base}` is the generic name of a DMA master (Devicetree Specification \
             §2.2.2)"
        ));
    }
    let compatibles = node.prop_strings("compatible").unwrap_or_default();
    compatibles.iter().find_map(|c| {
        DMA_MASTER_COMPATIBLES
            .iter()
            .find(|h| c.contains(*h))
            .map(|h| format!("its compatible `{c}` names a DMA-mastering family (`{h}`)"))
    })
}

/// Reads the hardware inventory of a board device tree.
pub fn read_inventory(tree: &DeviceTree) -> Result<HardwareInventory, DtError> {
    let r = Resolver::new(tree);
    let root = &tree.root;
    let mut inv = HardwareInventory {
        model: root.prop_str("model").unwrap_or_default().to_owned(),
        compatible: strings(root.prop_strings("compatible")),
        ..HardwareInventory::default()
    };
    let addr_err = |e: crate::resolve::AddressError| DtError::BadProperty {
        path: String::new(),
        property: "reg".into(),
        reason: e.to_string(),
    };

    // CPUs.
    if let Some(cpus) = tree.node("/cpus") {
        let ac = cpus.prop_u32("#address-cells").unwrap_or(1);
        for c in &cpus.children {
            if c.prop_str("device_type") != Some("cpu") {
                continue;
            }
            let path = format!("/cpus/{}", c.name);
            let reg = c.prop("reg").unwrap_or_default();
            let hw_id = match (ac, reg.len()) {
                (1, 4) | (2, 8) => crate::resolve::be_uint(reg) as u64,
                _ => {
                    return Err(DtError::BadProperty {
                        path,
                        property: "reg".into(),
                        reason: format!("{} bytes with /cpus #address-cells = {ac}", reg.len()),
                    });
                }
            };
            inv.cpus.push(CpuNode {
                path,
                hw_id,
                phandle: c.phandle(),
            });
        }
    }

    // Interrupt controller: the first GIC in tree order.
    let mut gic_path = None;
    for p in r.paths() {
        if r.is_gic(p) {
            let n = r.node(p).unwrap_or(&tree.root);
            let kind = if GICV3_COMPATIBLES.iter().any(|c| n.is_compatible(c)) {
                InterruptControllerKind::GicV3
            } else if GICV2_COMPATIBLES.iter().any(|c| n.is_compatible(c)) {
                InterruptControllerKind::GicV2
            } else {
                InterruptControllerKind::Other
            };
            let regions = r.regions(p).map_err(addr_err)?.unwrap_or_default();
            inv.interrupt_controller = Some(InterruptController {
                path: p.clone(),
                kind,
                compatible: strings(n.prop_strings("compatible")),
                regions,
            });
            gic_path = Some(p.clone());
            break;
        }
    }

    // Memory, reserved memory, IOMMUs and devices in one walk.
    let mut memory = Vec::new();
    for p in r.paths() {
        let Some(n) = r.node(p) else { continue };
        if n.prop_str("device_type") == Some("memory") {
            if let Ok(Some(regs)) = r.regions(p) {
                memory.extend(regs.into_iter().filter(|g| g.size > 0));
            }
            continue;
        }
        let parent = r.parent(p).unwrap_or("/");
        if parent == "/reserved-memory" {
            if let Ok(Some(regs)) = r.regions(p) {
                for region in regs.into_iter().filter(|g| g.size > 0) {
                    inv.reserved.push(ReservedRegion {
                        name: n.name.clone(),
                        region,
                        no_map: n.has_prop("no-map"),
                    });
                }
            }
            continue;
        }
        if xen_iommu(&n.prop_strings("compatible").unwrap_or_default()).is_some() {
            inv.iommus.push(p.clone());
        }
        if p == "/"
            || parent == "/cpus"
            || p.starts_with("/cpus/")
            || gic_path
                .as_ref()
                .is_some_and(|g| p == g || p.starts_with(&format!("{g}/")))
        {
            continue;
        }
        // Not CPU-addressable (or malformed): not a device we can hand to a domain.
        let Ok(Some(regions)) = r.regions(p) else {
            continue;
        };
        let interrupts = match r.interrupts(p) {
            Ok(list) => list.into_iter().map(|d| d.interrupt).collect(),
            Err(_) => Vec::new(),
        };
        let dependencies = subtree_dependencies(&r, p);
        let compatible = strings(n.prop_strings("compatible"));
        let behind_iommu = behind_enabled_iommu(&r, p);
        let dma_capable = dma_master_rule(n).is_some();
        inv.devices.push(DeviceNode {
            path: p.clone(),
            compatible,
            enabled: n.is_enabled(),
            regions,
            interrupts,
            behind_iommu,
            dma_capable,
            dependencies,
            phandle: n.phandle(),
            nested_mmio: nested_mmio(&r, p),
        });
    }
    memory.sort();
    inv.memory = memory;
    for m in &tree.reservations {
        inv.reserved.push(ReservedRegion {
            name: "/memreserve/".into(),
            region: Region::new(m.address, m.size),
            no_map: false,
        });
    }

    inv.stdout_path = stdout_path(tree);
    Ok(inv)
}

/// Nodes below `path` whose `reg` reaches the CPU address space (the fragment generator's
/// [`crate::passthrough::PassthroughError::NestedMmio`] rule).
pub fn nested_mmio(r: &Resolver<'_>, path: &str) -> Vec<String> {
    let prefix = format!("{path}/");
    r.paths()
        .iter()
        .filter(|q| q.starts_with(&prefix))
        .filter(|q| r.node(q).is_some_and(|n| n.has_prop("reg")))
        .filter(|q| matches!(r.regions(q), Ok(Some(_))))
        .cloned()
        .collect()
}

/// The phandle dependencies of the device at `path` **and of every node below it** (a passthrough
/// fragment copies the whole subtree), with providers inside the subtree left out. A child node's
/// interrupts count as a dependency on their controller (`property = "interrupts"`): Xen routes
/// only the `xen,path` node's own interrupts, so the fragment keeps a child's interrupts only when
/// their controller is passed too (then the child is re-linked to it), and drops or refuses them
/// otherwise — the rule `passthrough::fragment` applies.
pub fn subtree_dependencies(r: &Resolver<'_>, path: &str) -> Vec<DeviceDependency> {
    let inside = |q: &str| q == path || q.starts_with(&format!("{path}/"));
    let mut out: Vec<DeviceDependency> = Vec::new();
    let mut push = |property: &str, provider: String, copyable: bool| {
        let dep = DeviceDependency {
            property: property.to_owned(),
            provider,
            copyable,
        };
        if !out.contains(&dep) {
            out.push(dep);
        }
    };
    for q in r.paths().iter().filter(|q| inside(q)) {
        let Some(n) = r.node(q) else { continue };
        for prop in &n.properties {
            if node_dependency_kind(n, &prop.name).is_none() {
                continue;
            }
            // Best effort: a malformed list still names the providers it could parse.
            let Ok(refs) = r.phandle_refs(q, &prop.name) else {
                continue;
            };
            for provider in refs.into_iter().filter_map(|rf| rf.provider) {
                if inside(&provider) {
                    continue;
                }
                let copyable = r
                    .node(&provider)
                    .is_some_and(|pn| crate::passthrough::carryable_provider(pn, &prop.name));
                push(&prop.name, provider, copyable);
            }
        }
        if q != path && (n.has_prop("interrupts") || n.has_prop("interrupts-extended")) {
            for d in r.interrupts(q).unwrap_or_default() {
                if !inside(&d.controller) {
                    push("interrupts", d.controller, false);
                }
            }
        }
    }
    out
}

/// What protects a device's DMA, as Xen sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IommuStatus {
    /// Every `iommus` entry names an enabled IOMMU Xen drives ([`xen_iommu`]).
    Xen(Vec<String>),
    /// No `iommus` property.
    None,
    /// An `iommus` entry names a disabled IOMMU (Xen's drivers skip disabled nodes).
    Disabled(String),
    /// An `iommus` entry names an IOMMU Xen has no driver for (e.g. `rockchip,iommu`).
    NoXenDriver { path: String, compatible: String },
    /// `iommus` cannot be parsed or names no node.
    Broken(String),
}

impl IommuStatus {
    /// Why the status does not count as protection, in words (empty for [`IommuStatus::Xen`]).
    pub fn explain(&self) -> String {
        match self {
            Self::Xen(_) => String::new(),
            Self::None => "it has no `iommus` link".into(),
            Self::Disabled(p) => format!("its IOMMU {p} is disabled in the device tree"),
            Self::NoXenDriver { path, compatible } => format!(
                "its IOMMU {path} is a `{compatible}`, which Xen has no driver for (Xen drives {})",
                xen_iommu_compatibles().join(", ")
            ),
            Self::Broken(why) => format!("its `iommus` is unusable: {why}"),
        }
    }
}

/// Whether and how `path` is protected by an IOMMU **Xen can drive**. Only IOMMUs with a driver in
/// `xen/drivers/passthrough/arm/` count ([`xen_iommu`]: `smmu.c`: SMMUv1/v2 and MMU-400/401/500;
/// `smmu-v3.c`; `ipmmu-vmsa.c`: R-Car H3/M3-W/M3-N/S4 — not RZ/G2's `renesas,ipmmu-r8a774a1`): Xen refuses
/// `iommu_assign_dt_device` for any other, so a link to, say, a `rockchip,iommu` protects nothing
/// and the device needs `force_without_iommu` like one without `iommus`. A link to a disabled IOMMU
/// protects nothing either (ZCU102's Linux 6.1 tree ships `iommu@fd800000` disabled).
pub fn iommu_status(r: &Resolver<'_>, path: &str) -> IommuStatus {
    let refs = match r.phandle_refs(path, "iommus") {
        Ok(v) => v,
        Err(e) => return IommuStatus::Broken(e),
    };
    if refs.is_empty() {
        return IommuStatus::None;
    }
    let mut providers = Vec::new();
    for rf in refs {
        let Some(p) = rf.provider else {
            return IommuStatus::Broken(format!("phandle {:#x} names no node", rf.phandle));
        };
        let Some(n) = r.node(&p) else {
            return IommuStatus::Broken(format!("{p} vanished"));
        };
        if xen_iommu(&n.prop_strings("compatible").unwrap_or_default()).is_none() {
            let compatible = n
                .prop_strings("compatible")
                .and_then(|v| v.first().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(no compatible)".into());
            return IommuStatus::NoXenDriver {
                path: p,
                compatible,
            };
        }
        if !n.is_enabled() {
            return IommuStatus::Disabled(p);
        }
        if !providers.contains(&p) {
            providers.push(p);
        }
    }
    IommuStatus::Xen(providers)
}

/// Whether `path` is behind an enabled IOMMU that Xen drives ([`iommu_status`]).
pub fn behind_enabled_iommu(r: &Resolver<'_>, path: &str) -> bool {
    matches!(iommu_status(r, path), IommuStatus::Xen(_))
}

/// `/chosen/stdout-path` (or the legacy `linux,stdout-path`) resolved to a node path.
pub fn stdout_path(tree: &DeviceTree) -> Option<String> {
    let chosen = tree.node("/chosen")?;
    let raw = chosen
        .prop_str("stdout-path")
        .or_else(|| chosen.prop_str("linux,stdout-path"))?;
    let target = raw.split(':').next().unwrap_or(raw);
    let path = if target.starts_with('/') {
        target.to_owned()
    } else {
        tree.node("/aliases")?.prop_str(target)?.to_owned()
    };
    tree.canonical_path(&path)
}

fn strings(v: Option<Vec<&str>>) -> Vec<String> {
    v.unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect()
}
