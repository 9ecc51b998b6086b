//! Passthrough partial device trees for dom0less driver domains, generated from host DT paths.
//!
//! What Xen reads (Xen `docs/misc/arm/passthrough.txt`, "Dom0-less Device Passthrough";
//! `xen/common/device-tree/dom0less-build.c` `domain_handle_dtb_boot_module`, `scan_pfdt_node`,
//! `handle_prop_pfdt`, `handle_passthrough_prop`; 4.17: `xen/arch/arm/domain_build.c`):
//! - only the top-level nodes `/gic`, `/aliases` and `/passthrough` of the fragment;
//! - under `/passthrough`, every node's properties are copied into the guest DT except `xen,reg`,
//!   `xen,path` and `xen,force-assign-without-iommu`;
//! - `xen,reg = <host-addr size guest-addr>...`, cells from the enclosing node's `#address-cells` /
//!   `#size-cells` (must be 1 or 2), every value page aligned, mapped Device-nGnRE;
//! - `xen,path` names the host node: Xen routes its interrupts 1:1 (vIRQ = pIRQ,
//!   `map_device_irqs_to_domain`) and assigns it to the domain's IOMMU context; without an `iommus`
//!   link the assignment fails unless `xen,force-assign-without-iommu` is present.
//!
//! Choices made here, and why:
//! - **No `/gic` placeholder node.** Devices carry `interrupt-parent = <65000>` (`GUEST_PHANDLE_GIC`,
//!   `xen/include/public/device_tree_defs.h`), the value Xen uses for the guest GIC when the fragment
//!   has no `/gic`. A `/gic` *without* a phandle makes Xen 4.17–4.19 use phandle 0 (fixed in 4.20 by
//!   commit 081683ea57 "cope with missing /gic phandle"); a `/gic` *with* `phandle = <65000>` makes
//!   4.22+ fail the domain ("Phandle allocation overlaps Xen reserved range": the highest fragment
//!   phandle + 1 must stay below 65000). Omitting the node works on every release.
//! - Phandles of copied nodes are renumbered from 1 so they stay far below 65000.
//! - `iommus` is not copied: the guest has no SMMU; Xen programs the host SMMU from `xen,path`.
//! - Dependencies (clocks, resets, power domains, pinctrl, PHYs, regulators...): a provider that is
//!   itself passed through is re-linked; a `fixed-clock` provider is copied into `/passthrough` (a
//!   constant rate needs no hardware); anything else is refused with [`PassthroughError::Dependency`]
//!   unless the caller opts in to dropping it ([`FragmentOptions::drop_dependencies`]).

use std::collections::{BTreeMap, BTreeSet};

use firmware_config::board::{DeviceInterrupt, Region};

use crate::guest::layout;
use crate::resolve::{Resolver, dependency_kind};
use crate::tree::{DeviceTree, Node, bytes_to_cells, value};

/// `GUEST_PHANDLE_GIC` (Xen `xen/include/public/device_tree_defs.h`): the guest GIC's phandle.
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// Page size of `xen,reg` alignment (4 KiB, `PAGE_SIZE` on Arm in Xen).
pub const PAGE_SIZE: u64 = 0x1000;

/// One device to pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughRequest {
    /// Host DT path, e.g. `/pl031@9010000`.
    pub path: String,
    /// Guest physical address of the device's first page. `None`: the host address (1:1).
    pub guest_base: Option<u64>,
    /// Write `xen,force-assign-without-iommu` (unsafe for DMA masters, see passthrough.txt).
    pub force_without_iommu: bool,
}

impl PassthroughRequest {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            guest_base: None,
            force_without_iommu: false,
        }
    }
}

/// Options for [`fragment`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FragmentOptions {
    /// Drop dependency properties whose provider cannot be carried (with their `*-names`), instead of
    /// failing. The manifest must opt in explicitly: the guest driver may not work without them.
    pub drop_dependencies: bool,
    /// Guest RAM banks of the domain; guest MMIO addresses must not overlap them.
    pub guest_ram: Vec<Region>,
    /// Whether the domain has a vPL011 (then `GUEST_PL011_BASE` page and SPI 32 are taken).
    pub vpl011: bool,
}

/// A dependency handled while building the fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyAction {
    /// Fragment-relative host path of the node holding the property.
    pub device: String,
    pub property: String,
    pub provider: String,
}

/// An MMIO range given to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedRegion {
    /// Page-aligned host range.
    pub host: Region,
    pub guest_base: u64,
}

/// Sub-page sharing: the device's page also holds other host devices, which the guest can reach too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPage {
    pub device: String,
    pub page: Region,
    pub others: Vec<String>,
}

/// The generated fragment and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The partial DTB to load as the domain's `multiboot,device-tree` module.
    pub dtb: Vec<u8>,
    /// The same tree, for printing or further checks.
    pub tree: DeviceTree,
    /// Canonical host paths of the passed devices (set `xen,passthrough` on them in the host DT).
    pub host_paths: Vec<String>,
    pub owned_regions: Vec<OwnedRegion>,
    /// SPI INTIDs routed 1:1 to the guest, sorted.
    pub irqs: Vec<u32>,
    /// Providers copied into the fragment (fixed clocks).
    pub carried_dependencies: Vec<DependencyAction>,
    /// Properties dropped because [`FragmentOptions::drop_dependencies`] allowed it.
    pub dropped_dependencies: Vec<DependencyAction>,
    pub shared_pages: Vec<SharedPage>,
}

/// Why a fragment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassthroughError {
    #[error("no node {0} in the host device tree")]
    NotFound(String),
    #[error(
        "{0} is disabled in the host device tree (status is not \"okay\"); enable it in the board DT first"
    )]
    Disabled(String),
    #[error("{path} has no MMIO the CPU can address: {reason}")]
    NoMmio { path: String, reason: String },
    #[error("{path} was requested twice")]
    Duplicate { path: String },
    #[error("{path}: interrupt {detail} cannot be routed to a guest: {reason}")]
    Interrupt {
        path: String,
        detail: String,
        reason: String,
    },
    #[error(
        "{device} needs `{property}` from {provider}, which the guest will not have; pass {provider} through too, or drop the dependency with an explicit opt-in (drop_dependencies)"
    )]
    Dependency {
        device: String,
        property: String,
        provider: String,
    },
    #[error("{device}: `{property}` cannot be parsed: {reason}")]
    BadDependency {
        device: String,
        property: String,
        reason: String,
    },
    #[error(
        "{path} is not behind an enabled IOMMU (no `iommus`, or its SMMU is disabled), so Xen refuses to assign it; set force_without_iommu to assign it anyway (unsafe if it masters DMA)"
    )]
    NoIommu { path: String },
    #[error("{path}: guest address {guest:#x} is not page aligned")]
    Unaligned { path: String, guest: u64 },
    #[error("{path}: guest range {range:#x?} overlaps {what}")]
    GuestOverlap {
        path: String,
        range: Region,
        what: String,
    },
    #[error("{path}: child node {child} has its own CPU-addressable MMIO; pass {child} separately")]
    NestedMmio { path: String, child: String },
    #[error("fragment node name {0} is used by two passed devices")]
    NameClash(String),
    #[error("fragment needs more than {0} phandles")]
    TooManyPhandles(u32),
}

/// Dependency properties' companion name lists, dropped with them.
fn names_companion(property: &str) -> Option<String> {
    let base = match property {
        "clocks" => "clock",
        "resets" => "reset",
        "power-domains" => "power-domain",
        "phys" => "phy",
        "dmas" => "dma",
        "mboxes" => "mbox",
        "interconnects" => "interconnect",
        "pwms" => "pwm",
        "io-channels" => "io-channel",
        "nvmem-cells" => "nvmem-cell",
        "memory-region" => "memory-region",
        _ => return None,
    };
    Some(format!("{base}-names"))
}

fn page_align(r: Region) -> Option<Region> {
    let base = r.base & !(PAGE_SIZE - 1);
    let end = r.base.checked_add(r.size.max(1))?;
    let end = end.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    Some(Region::new(base, end - base))
}

/// Mutable state while building one fragment.
struct Builder<'r, 'a> {
    r: &'r Resolver<'a>,
    opts: &'r FragmentOptions,
    passed: Vec<String>,
    /// Host phandle → fragment phandle.
    remap: BTreeMap<u32, u32>,
    next_phandle: u32,
    carried_nodes: Vec<Node>,
    out: Fragment,
}

impl Builder<'_, '_> {
    fn in_passed(&self, p: &str) -> bool {
        self.passed
            .iter()
            .any(|d| p == d || p.starts_with(&format!("{d}/")))
    }

    fn alloc(&mut self, old: u32) -> Result<u32, PassthroughError> {
        if let Some(n) = self.remap.get(&old) {
            return Ok(*n);
        }
        if self.next_phandle >= GUEST_PHANDLE_GIC {
            return Err(PassthroughError::TooManyPhandles(GUEST_PHANDLE_GIC - 1));
        }
        let n = self.next_phandle;
        self.next_phandle += 1;
        self.remap.insert(old, n);
        Ok(n)
    }

    /// Copies a fixed-clock provider into `/passthrough` once; returns its fragment phandle.
    fn carry_fixed_clock(&mut self, provider: &str, old: u32) -> Result<u32, PassthroughError> {
        if let Some(h) = self.remap.get(&old) {
            return Ok(*h);
        }
        let h = self.alloc(old)?;
        let src = self
            .r
            .node(provider)
            .ok_or_else(|| PassthroughError::NotFound(provider.to_owned()))?;
        let mut clk = Node::new(src.name.clone());
        for p in &src.properties {
            match p.name.as_str() {
                "phandle" | "linux,phandle" => clk.set_prop(&p.name, value::u32(h)),
                _ => clk.properties.push(p.clone()),
            }
        }
        if self.carried_nodes.iter().any(|n| n.name == clk.name) {
            return Err(PassthroughError::NameClash(clk.name));
        }
        self.carried_nodes.push(clk);
        Ok(h)
    }

    fn is_carryable(&self, provider: &str, property: &str) -> bool {
        self.r
            .node(provider)
            .is_some_and(|n| carryable_provider(n, property))
    }

    fn copy_subtree(&mut self, device: &str, path: &str) -> Result<Node, PassthroughError> {
        let r = self.r;
        let node = r
            .node(path)
            .ok_or_else(|| PassthroughError::NotFound(path.to_owned()))?;
        let is_top = path == device;
        let mut copy = Node::new(node.name.clone());
        let mut dropped_names: BTreeSet<String> = BTreeSet::new();

        for prop in &node.properties {
            let name = prop.name.as_str();
            match name {
                "phandle" | "linux,phandle" => {
                    if let Some(h) = node.phandle().and_then(|h| self.remap.get(&h)) {
                        copy.set_prop(name, value::u32(*h));
                    }
                    continue;
                }
                // The guest has no SMMU; Xen programs the host one from `xen,path`.
                "iommus" | "iommu-map" | "iommu-map-mask" => continue,
                "interrupts" | "interrupts-extended" | "interrupt-parent" if !is_top => {
                    if self.opts.drop_dependencies {
                        if name != "interrupt-parent" {
                            let provider = r.interrupt_parent(path).ok().flatten();
                            self.out.dropped_dependencies.push(DependencyAction {
                                device: path.to_owned(),
                                property: name.to_owned(),
                                provider: provider.unwrap_or_default(),
                            });
                        }
                        continue;
                    }
                    return Err(PassthroughError::Interrupt {
                        path: path.to_owned(),
                        detail: format!("`{name}` of a child node"),
                        reason: format!(
                            "Xen routes only the interrupts of the xen,path node {device}"
                        ),
                    });
                }
                "reg" if !is_top => {
                    if let Ok(Some(_)) = r.regions(path) {
                        return Err(PassthroughError::NestedMmio {
                            path: device.to_owned(),
                            child: path.to_owned(),
                        });
                    }
                }
                _ => {}
            }
            if dependency_kind(name).is_none() {
                copy.properties.push(prop.clone());
                continue;
            }
            let refs =
                r.phandle_refs(path, name)
                    .map_err(|reason| PassthroughError::BadDependency {
                        device: path.to_owned(),
                        property: name.to_owned(),
                        reason,
                    })?;
            let mut cells = bytes_to_cells(&prop.value).unwrap_or_default();
            let mut drop_prop = false;
            for rf in &refs {
                let provider = rf
                    .provider
                    .clone()
                    .unwrap_or_else(|| format!("<phandle {:#x}>", rf.phandle));
                let new = if self.in_passed(&provider) {
                    self.remap.get(&rf.phandle).copied()
                } else if self.is_carryable(&provider, name) {
                    let h = self.carry_fixed_clock(&provider, rf.phandle)?;
                    self.out.carried_dependencies.push(DependencyAction {
                        device: path.to_owned(),
                        property: name.to_owned(),
                        provider: provider.clone(),
                    });
                    Some(h)
                } else {
                    None
                };
                match new {
                    Some(h) => {
                        if let Some(c) = cells.get_mut(rf.cell_index) {
                            *c = h;
                        }
                    }
                    None if self.opts.drop_dependencies => {
                        self.out.dropped_dependencies.push(DependencyAction {
                            device: path.to_owned(),
                            property: name.to_owned(),
                            provider,
                        });
                        drop_prop = true;
                    }
                    None => {
                        return Err(PassthroughError::Dependency {
                            device: path.to_owned(),
                            property: name.to_owned(),
                            provider,
                        });
                    }
                }
            }
            if drop_prop {
                if let Some(n) = names_companion(name) {
                    dropped_names.insert(n);
                }
                if name.starts_with("pinctrl-") {
                    dropped_names.insert("pinctrl-names".to_owned());
                }
                continue;
            }
            copy.set_prop(name, value::cells(&cells));
        }
        for n in &dropped_names {
            // `pinctrl-names` stays while another `pinctrl-N` survives.
            let other_pinctrl = copy
                .properties
                .iter()
                .any(|p| p.name.starts_with("pinctrl-") && p.name != "pinctrl-names");
            if n == "pinctrl-names" && other_pinctrl {
                continue;
            }
            copy.remove_prop(n);
        }

        for child in &node.children {
            let cp = format!("{path}/{}", child.name);
            let c = self.copy_subtree(device, &cp)?;
            copy.children.push(c);
        }
        Ok(copy)
    }
}

/// Builds the passthrough fragment for `requests` from the host tree.
pub fn fragment(
    host: &DeviceTree,
    requests: &[PassthroughRequest],
    opts: &FragmentOptions,
) -> Result<Fragment, PassthroughError> {
    let r = Resolver::new(host);

    // Canonical paths and basic checks.
    let mut paths: Vec<String> = Vec::new();
    for req in requests {
        let path = host
            .canonical_path(&req.path)
            .filter(|p| p != "/")
            .ok_or_else(|| PassthroughError::NotFound(req.path.clone()))?;
        if paths.contains(&path) {
            return Err(PassthroughError::Duplicate { path });
        }
        let node = r
            .node(&path)
            .ok_or_else(|| PassthroughError::NotFound(req.path.clone()))?;
        if !node.is_enabled() {
            return Err(PassthroughError::Disabled(path));
        }
        paths.push(path);
    }

    let mut b = Builder {
        r: &r,
        opts,
        passed: paths.clone(),
        remap: BTreeMap::new(),
        next_phandle: 1,
        carried_nodes: Vec::new(),
        out: Fragment {
            dtb: Vec::new(),
            tree: DeviceTree::new(),
            host_paths: paths.clone(),
            owned_regions: Vec::new(),
            irqs: Vec::new(),
            carried_dependencies: Vec::new(),
            dropped_dependencies: Vec::new(),
            shared_pages: Vec::new(),
        },
    };
    // Renumber every phandle inside a passed subtree first (tree order), so references between passed
    // devices resolve whatever order they are copied in.
    for p in r.paths() {
        if b.in_passed(p)
            && let Some(h) = r.node(p).and_then(Node::phandle)
        {
            b.alloc(h)?;
        }
    }

    let mut device_nodes: Vec<Node> = Vec::new();
    let mut guest_ranges: Vec<(String, OwnedRegion)> = Vec::new();

    for (req, path) in requests.iter().zip(&paths) {
        let _node = r
            .node(path)
            .ok_or_else(|| PassthroughError::NotFound(path.clone()))?;

        // MMIO, translated through every `ranges`.
        let regions = match r.regions(path) {
            Ok(Some(v)) if !v.is_empty() => v,
            Ok(_) => {
                return Err(PassthroughError::NoMmio {
                    path: path.clone(),
                    reason: "no `reg`".into(),
                });
            }
            Err(e) => {
                return Err(PassthroughError::NoMmio {
                    path: path.clone(),
                    reason: e.to_string(),
                });
            }
        };
        if let Some(g) = req.guest_base
            && g % PAGE_SIZE != 0
        {
            return Err(PassthroughError::Unaligned {
                path: path.clone(),
                guest: g,
            });
        }
        let mmio_err = |reason: String| PassthroughError::NoMmio {
            path: path.clone(),
            reason,
        };
        let aligned: Vec<Region> = regions
            .iter()
            .map(|g| page_align(*g).ok_or_else(|| mmio_err(format!("{g:#x?} wraps"))))
            .collect::<Result<_, _>>()?;
        // Guest placement keeps the regions' layout relative to the lowest page.
        let lowest = aligned.iter().map(|g| g.base).min().unwrap_or(0);
        let guest_of = |host_addr: u64| -> Result<u64, PassthroughError> {
            match req.guest_base {
                None => Ok(host_addr),
                Some(g) => host_addr
                    .checked_sub(lowest)
                    .and_then(|off| g.checked_add(off))
                    .ok_or_else(|| mmio_err("guest address overflows".into())),
            }
        };

        let mut guest_reg = Vec::new();
        let mut merged: Vec<OwnedRegion> = Vec::new();
        for (orig, al) in regions.iter().zip(&aligned) {
            let gbase = guest_of(al.base)?;
            let gaddr = gbase
                .checked_add(orig.base - al.base)
                .ok_or_else(|| mmio_err("guest address overflows".into()))?;
            guest_reg.extend(value::u64(gaddr));
            guest_reg.extend(value::u64(orig.size));
            let owned = OwnedRegion {
                host: *al,
                guest_base: gbase,
            };
            // Two `reg` entries in one page: map the page once.
            if !merged.iter().any(|m| m.host.overlaps(&owned.host)) {
                merged.push(owned);
            }
        }
        let mut xen_reg = Vec::new();
        for m in &merged {
            xen_reg.extend(value::u64(m.host.base));
            xen_reg.extend(value::u64(m.host.size));
            xen_reg.extend(value::u64(m.guest_base));
            guest_ranges.push((path.clone(), *m));
            // Other host devices in the same pages can be reached by the guest too.
            let others: Vec<String> = r
                .paths()
                .iter()
                .filter(|p| !b.in_passed(p))
                .filter(|p| {
                    r.regions(p)
                        .ok()
                        .flatten()
                        .is_some_and(|rs| rs.iter().any(|x| x.overlaps(&m.host)))
                })
                .cloned()
                .collect();
            if !others.is_empty() {
                b.out.shared_pages.push(SharedPage {
                    device: path.clone(),
                    page: m.host,
                    others,
                });
            }
        }

        // Interrupts: GIC SPIs only, routed 1:1.
        let irqs = r
            .interrupts(path)
            .map_err(|e| PassthroughError::Interrupt {
                path: path.clone(),
                detail: String::from("specifier"),
                reason: e.to_string(),
            })?;
        let mut irq_cells = Vec::new();
        for d in &irqs {
            match d.interrupt {
                DeviceInterrupt::Spi(intid) => {
                    if opts.vpl011 && intid == layout::GUEST_VPL011_SPI {
                        return Err(PassthroughError::Interrupt {
                            path: path.clone(),
                            detail: format!("INTID {intid}"),
                            reason: "the domain's vPL011 uses SPI 32 (GUEST_VPL011_SPI)".into(),
                        });
                    }
                    b.out.irqs.push(intid);
                    irq_cells.extend(d.cells.iter().copied());
                }
                DeviceInterrupt::Ppi(intid) => {
                    return Err(PassthroughError::Interrupt {
                        path: path.clone(),
                        detail: format!("PPI INTID {intid}"),
                        reason: "per-CPU interrupts are never routed to guests".into(),
                    });
                }
                DeviceInterrupt::Nested(_) => {
                    return Err(PassthroughError::Interrupt {
                        path: path.clone(),
                        detail: format!("{:x?}", d.cells),
                        reason: format!(
                            "it goes to {}, not the GIC; Xen routes only GIC SPIs",
                            d.controller
                        ),
                    });
                }
            }
        }

        if !crate::inventory::behind_enabled_iommu(&r, path) && !req.force_without_iommu {
            return Err(PassthroughError::NoIommu { path: path.clone() });
        }

        let mut copy = b.copy_subtree(path, path)?;

        // The device node itself: guest `reg`, GIC interrupts, Xen properties.
        if req.guest_base.is_some()
            && let Some(first) = regions.first()
        {
            let unit = guest_of(first.base & !(PAGE_SIZE - 1))? + (first.base & (PAGE_SIZE - 1));
            copy.name = format!("{}@{unit:x}", copy.base_name());
        }
        copy.set_prop("reg", guest_reg);
        copy.remove_prop("interrupts-extended");
        if irq_cells.is_empty() {
            copy.remove_prop("interrupts");
            copy.remove_prop("interrupt-parent");
        } else {
            copy.set_prop("interrupts", value::cells(&irq_cells));
            copy.set_prop("interrupt-parent", value::u32(GUEST_PHANDLE_GIC));
        }
        copy.set_prop("xen,reg", xen_reg);
        copy.set_prop("xen,path", value::string(path));
        if req.force_without_iommu {
            copy.set_prop("xen,force-assign-without-iommu", value::empty());
        }
        if device_nodes.iter().any(|n| n.name == copy.name) {
            return Err(PassthroughError::NameClash(copy.name));
        }
        device_nodes.push(copy);
        b.out.owned_regions.extend(merged);
    }

    // Guest address conflicts: the fixed guest map, guest RAM, and each other.
    let mut fixed = layout::reserved_regions();
    if opts.vpl011 {
        fixed.push((
            "the vPL011 (GUEST_PL011_BASE)".to_owned(),
            Region::new(layout::GUEST_PL011_BASE, layout::GUEST_PL011_SIZE),
        ));
    }
    for (i, g) in opts.guest_ram.iter().enumerate() {
        fixed.push((format!("guest RAM bank {i}"), *g));
    }
    for (i, (path, o)) in guest_ranges.iter().enumerate() {
        let g = Region::new(o.guest_base, o.host.size);
        if let Some((what, _)) = fixed.iter().find(|(_, f)| f.overlaps(&g)) {
            return Err(PassthroughError::GuestOverlap {
                path: path.clone(),
                range: g,
                what: what.clone(),
            });
        }
        // The same host page at the same guest address (sub-page devices) is one mapping.
        if let Some((other, _)) = guest_ranges
            .iter()
            .skip(i + 1)
            .find(|(_, x)| x != o && Region::new(x.guest_base, x.host.size).overlaps(&g))
        {
            return Err(PassthroughError::GuestOverlap {
                path: path.clone(),
                range: g,
                what: format!("the guest range of {other}"),
            });
        }
    }
    let mut out = b.out;
    let carried_nodes = b.carried_nodes;
    let mut unique = Vec::new();
    for o in out.owned_regions.drain(..) {
        if !unique.contains(&o) {
            unique.push(o);
        }
    }
    out.owned_regions = unique;
    out.irqs.sort_unstable();
    out.irqs.dedup();

    let mut pt = Node::new("passthrough");
    pt.set_prop("compatible", value::string("simple-bus"));
    pt.set_prop("ranges", value::empty());
    pt.set_prop("#address-cells", value::u32(2));
    pt.set_prop("#size-cells", value::u32(2));
    pt.children.extend(carried_nodes);
    pt.children.extend(device_nodes);
    let mut tree = DeviceTree::new();
    tree.root.set_prop("#address-cells", value::u32(2));
    tree.root.set_prop("#size-cells", value::u32(2));
    tree.root.children.push(pt);
    out.dtb = tree.to_dtb();
    out.tree = tree;
    Ok(out)
}

/// Whether a fragment can carry `provider` itself when a passed-through device references it through
/// `property`: only a self-contained, enabled `fixed-clock` (it has no registers and no parent
/// clock, so a copy in `/passthrough` is all a guest driver needs). The inventory uses the same rule,
/// so validation and fragment generation agree on which dependencies are satisfiable.
pub fn carryable_provider(provider: &crate::Node, property: &str) -> bool {
    matches!(
        property,
        "clocks" | "assigned-clocks" | "assigned-clock-parents"
    ) && provider.is_compatible("fixed-clock")
        && !provider.has_prop("clocks")
        && provider.is_enabled()
}
