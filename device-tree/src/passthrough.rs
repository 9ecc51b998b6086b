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
//!   `map_device_irqs_to_domain`, which skips every interrupt whose controller is not the primary
//!   GIC) and assigns it to the domain's IOMMU context; without an `iommus` link the assignment fails
//!   unless `xen,force-assign-without-iommu` is present.
//!
//! Choices made here, and why:
//! - **No `/gic` placeholder node.** Devices carry `interrupt-parent = <65000>` (`GUEST_PHANDLE_GIC`,
//!   `xen/include/public/device_tree_defs.h`), the value Xen uses for the guest GIC when the fragment
//!   has no `/gic`. A `/gic` *without* a phandle makes Xen 4.17–4.19 use phandle 0 (fixed in 4.20 by
//!   commit 081683ea57 "cope with missing /gic phandle"); a `/gic` *with* `phandle = <65000>` makes
//!   4.22+ fail the domain ("Phandle allocation overlaps Xen reserved range": the highest fragment
//!   phandle + 1 must stay below 65000). Omitting the node works on every release.
//! - **Interrupts are re-encoded**, never copied: every interrupt of the device (from `interrupts`
//!   through the `interrupt-parent` chain, or from `interrupts-extended`) is parsed into its GIC form
//!   ([`crate::resolve::GicInterrupt`]: type, number, flags — whatever the host GIC's
//!   `#interrupt-cells`, 3 or 4 as on RK3399's GICv3 with PPI partitions) and written in the 3 cells
//!   of the guest GIC Xen builds. Interrupts sent to a known 1:1 forwarder
//!   ([`crate::resolve::GIC_FORWARDER_COMPATIBLES`], e.g. i.MX8MQ's GPC) are resolved to the GIC; since
//!   Xen does not follow forwarders itself, the fragment lists [`HostFixup`]s that point the host node
//!   straight at the GIC.
//! - **Phandles are re-linked**, never copied: phandles of copied nodes are renumbered from 1 (far
//!   below 65000), and every phandle-valued cell of a copied property (which cells are phandles comes
//!   from [`crate::resolve::dependency_kind`], the bindings' `#*-cells` conventions) is rewritten to
//!   the copy of its target. A target the fragment does not carry makes the property a dependency.
//! - `iommus` is not copied: the guest has no SMMU; Xen programs the host SMMU from `xen,path`.
//! - Dependencies (clocks, resets, power domains, pinctrl, PHYs, regulators, syscon links...): a
//!   provider that is itself passed through is re-linked; a `fixed-clock` provider is copied into
//!   `/passthrough` (a constant rate needs no hardware); anything else is refused with
//!   [`PassthroughError::Dependency`] unless the caller opts in to dropping it
//!   ([`FragmentOptions::drop_dependencies`]).
//! - `dma-ranges` of the buses above a passed DMA master (i.MX8M's `soc@0` limits DMA to
//!   0x40000000–0x100000000) are composed and written on `/passthrough`; two DMA masters whose buses
//!   disagree cannot share a fragment and are refused ([`PassthroughError::DmaRanges`]).
//! - Guest addresses must miss `firmware_config::guest_map::fixed_regions` (the same map validation
//!   and the planner use: what Xen fills in every guest), guest RAM and each other. The plan's
//!   per-range guest addresses ([`PassthroughRequest::guest_pages`]) are written as given.

use std::collections::{BTreeMap, BTreeSet};

use firmware_config::board::Region;
use firmware_config::guest_map;

use crate::guest::layout;
use crate::inventory::{IommuStatus, iommu_status};
use crate::resolve::{DecodedInterrupt, GicKind, Resolver, node_dependency_kind};
use crate::tree::{DeviceTree, Node, Property, bytes_to_cells, value};

/// `GUEST_PHANDLE_GIC` (Xen `xen/include/public/device_tree_defs.h`): the guest GIC's phandle.
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// Page size of `xen,reg` alignment (4 KiB, `PAGE_SIZE` on Arm in Xen).
pub const PAGE_SIZE: u64 = 0x1000;
/// The last SPI INTID a GIC can have below the extended range (`arm,gic.yaml`: SPIs 32–1019).
pub const LAST_SPI: u32 = 1019;

/// One page-aligned host range and the guest address it is mapped at (a `xen,reg` triple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMapping {
    pub host: u64,
    pub guest: u64,
    pub size: u64,
}

/// One device to pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughRequest {
    /// Host DT path, e.g. `/pl031@9010000`.
    pub path: String,
    /// Guest physical address of the device's first page. `None`: the host address (1:1). Ignored
    /// when [`PassthroughRequest::guest_pages`] is given.
    pub guest_base: Option<u64>,
    /// The exact guest address of each page-aligned `reg` range (what a plan decided, range by
    /// range). Empty: derive from `guest_base`.
    pub guest_pages: Vec<PageMapping>,
    /// Write `xen,force-assign-without-iommu` (unsafe for DMA masters, see passthrough.txt).
    pub force_without_iommu: bool,
}

impl PassthroughRequest {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            guest_base: None,
            guest_pages: Vec::new(),
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
    /// The guest GIC: `Some(true)` GICv3, `Some(false)` GICv2, `None` unknown (both reserved).
    pub gic_v3: Option<bool>,
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

/// A change the **host** device tree needs so that Xen routes what the fragment grants: a device whose
/// interrupts go through a 1:1 forwarder (i.MX8MQ's GPC) gets `interrupt-parent` = the GIC and its
/// `interrupts` in the host GIC's encoding (Xen's `map_device_irqs_to_domain` skips interrupts whose
/// controller is not the GIC). `interrupts-extended` is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFixup {
    /// Canonical host path of the device.
    pub path: String,
    /// The forwarder the interrupts went through.
    pub forwarder: String,
    /// The host GIC's phandle.
    pub interrupt_parent: u32,
    /// The interrupts, encoded for the host GIC's `#interrupt-cells`.
    pub interrupts: Vec<u32>,
}

impl HostFixup {
    /// Applies the fix-up to the host tree.
    pub fn apply(&self, host: &mut DeviceTree) -> Result<(), crate::DtError> {
        let node = host
            .node_mut(&self.path)
            .ok_or_else(|| crate::DtError::NodeNotFound(self.path.clone()))?;
        node.remove_prop("interrupts-extended");
        node.set_prop("interrupt-parent", value::u32(self.interrupt_parent));
        node.set_prop("interrupts", value::cells(&self.interrupts));
        Ok(())
    }
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
    /// Changes the host DT needs for Xen to route the granted interrupts ([`HostFixup`]).
    pub host_fixups: Vec<HostFixup>,
    /// The DMA windows of the passed DMA masters, written as `/passthrough`'s `dma-ranges` (empty:
    /// no ancestor bus restricts or translates their DMA).
    pub dma_ranges: Vec<DmaWindow>,
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
        "{path} is not behind an IOMMU Xen can drive ({why}), so Xen refuses to assign it; set force_without_iommu to assign it anyway (unsafe if it masters DMA)"
    )]
    NoIommu { path: String, why: String },
    #[error("{path}: guest address {guest:#x} is not page aligned")]
    Unaligned { path: String, guest: u64 },
    #[error(
        "{path}: guest range {:#x}-{:#x} overlaps {what}",
        range.base,
        range.base.saturating_add(range.size)
    )]
    GuestOverlap {
        path: String,
        range: Region,
        what: String,
    },
    #[error(
        "{path}: child node {child} has its own CPU-addressable MMIO, which a passthrough fragment cannot describe under {path}; pass the devices inside it instead of {path}"
    )]
    NestedMmio { path: String, child: String },
    #[error("fragment node name {0} is used by two passed devices")]
    NameClash(String),
    #[error("fragment needs more than {0} phandles")]
    TooManyPhandles(u32),
    #[error("{path} masters DMA through `dma-ranges` the fragment cannot carry: {reason}")]
    DmaRanges { path: String, reason: String },
}

/// One DMA window of a device: bus addresses `bus..bus+size` reach CPU addresses `cpu..` (the
/// composition of every ancestor's `dma-ranges`, Devicetree Specification v0.4 §2.3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaWindow {
    pub bus: u64,
    pub cpu: u64,
    pub size: u64,
}

/// Properties that must go when `property` is dropped: its `*-names` list, and for the assigned-clock
/// group (`clock/clock-bindings.txt`, "Assigned clock parents and rates") the whole group — Linux's
/// `of_clk_set_defaults` fails the probe when `assigned-clock-parents`/`-rates` index an
/// `assigned-clocks` entry that is not there.
fn companions(property: &str) -> Vec<String> {
    match property {
        "assigned-clocks" | "assigned-clock-parents" => {
            return [
                "assigned-clocks",
                "assigned-clock-parents",
                "assigned-clock-rates",
            ]
            .map(str::to_owned)
            .into_iter()
            .filter(|p| p != property)
            .collect();
        }
        p if p.starts_with("pinctrl-") => return vec!["pinctrl-names".to_owned()],
        _ => {}
    }
    names_companion(property).into_iter().collect()
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

/// Builds the passthrough fragment for `requests` from the host tree.
///
/// Validates every request (path, MMIO, interrupts, IOMMU, dependencies, guest addresses) before it
/// returns anything; on error nothing is produced.
pub fn fragment(
    host: &DeviceTree,
    requests: &[PassthroughRequest],
    opts: &FragmentOptions,
) -> Result<Fragment, PassthroughError> {
    let r = Resolver::new(host);
    let paths = canonical_paths(host, &r, requests)?;
    let mut b = Builder::new(&r, opts, paths.clone())?;
    let mut device_nodes: Vec<Node> = Vec::new();
    let mut guest_ranges: Vec<(String, OwnedRegion)> = Vec::new();

    for (req, path) in requests.iter().zip(&paths) {
        let mmio = device_mmio(&r, req, path)?;
        b.note_shared_pages(path, &mmio.owned);
        let irqs = device_interrupts(&r, opts, path)?;
        check_iommu(&r, req, path)?;
        let copy = b.copy_subtree(path, path)?;
        let node = finish_device_node(copy, req, path, &mmio, &irqs);
        if device_nodes.iter().any(|n| n.name == node.name) {
            return Err(PassthroughError::NameClash(node.name));
        }
        device_nodes.push(node);
        guest_ranges.extend(mmio.owned.iter().map(|o| (path.clone(), *o)));
        b.out.owned_regions.extend(mmio.owned);
        b.out.irqs.extend(irqs.intids);
        b.out.host_fixups.extend(irqs.fixup);
    }
    check_guest_addresses(opts, &guest_ranges)?;
    b.out.dma_ranges = shared_dma_windows(&r, &paths)?;
    Ok(assemble(b.out, b.carried_nodes, device_nodes))
}

/// The `dma-ranges` every passed DMA master sees, which the fragment carries on `/passthrough`
/// (Xen copies that node's properties into the guest, `scan_pfdt_node`). A DMA master whose buses
/// restrict or offset DMA differently from another's cannot share one `/passthrough`: refused.
/// Devices that do not master DMA ([`crate::inventory::dma_master_rule`]) are not concerned.
fn shared_dma_windows(
    r: &Resolver<'_>,
    paths: &[String],
) -> Result<Vec<DmaWindow>, PassthroughError> {
    let mut shared: Option<(String, Vec<DmaWindow>)> = None;
    for path in paths {
        let Some(node) = r.node(path) else { continue };
        if crate::inventory::dma_master_rule(node).is_none() {
            continue;
        }
        let windows = dma_windows(r, path).map_err(|reason| PassthroughError::DmaRanges {
            path: path.clone(),
            reason,
        })?;
        match &shared {
            None => shared = Some((path.clone(), windows)),
            Some((other, w)) if *w != windows => {
                return Err(PassthroughError::DmaRanges {
                    path: path.clone(),
                    reason: format!(
                        "its buses give DMA windows {windows:#x?}, but {other}'s are {w:#x?}; pass them to different domains"
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(shared.map(|(_, w)| w).unwrap_or_default())
}

/// The composition of every ancestor bus's `dma-ranges` for `path` (absent or empty: identity).
/// Empty result: DMA is untranslated and unrestricted.
pub fn dma_windows(r: &Resolver<'_>, path: &str) -> Result<Vec<DmaWindow>, String> {
    let cells = |n: &str, prop: &str, default: u32| {
        r.node(n).and_then(|x| x.prop_u32(prop)).unwrap_or(default)
    };
    let mut windows: Option<Vec<DmaWindow>> = None;
    let mut bus = r.parent(path).unwrap_or("/").to_owned();
    while bus != "/" {
        let up = r.parent(&bus).unwrap_or("/").to_owned();
        let raw = r.node(&bus).and_then(|n| n.prop("dma-ranges"));
        if let Some(raw) = raw.filter(|v| !v.is_empty()) {
            let (cac, pac, csc) = (
                cells(&bus, "#address-cells", 2),
                cells(&up, "#address-cells", 2),
                cells(&bus, "#size-cells", 1),
            );
            if cac > 2 || pac > 2 || csc > 2 {
                return Err(format!(
                    "{bus}: `dma-ranges` with {cac}/{pac}/{csc} cells (PCI-style addresses are not handled)"
                ));
            }
            let entries = parse_dma_ranges(raw, cac, pac, csc)
                .ok_or_else(|| format!("{bus}: `dma-ranges` is malformed"))?;
            windows = Some(match windows {
                None => entries,
                Some(inner) => compose(&inner, &entries)
                    .ok_or_else(|| format!("{bus}: `dma-ranges` does not cover the inner bus's"))?,
            });
        }
        bus = up;
    }
    Ok(windows.unwrap_or_default())
}

fn parse_dma_ranges(raw: &[u8], cac: u32, pac: u32, csc: u32) -> Option<Vec<DmaWindow>> {
    let cells = bytes_to_cells(raw)?;
    let (c, p, s) = (cac as usize, pac as usize, csc as usize);
    if cells.len() % (c + p + s) != 0 {
        return None;
    }
    let join = |v: &[u32]| v.iter().fold(0u64, |a, x| (a << 32) | u64::from(*x));
    Some(
        cells
            .chunks_exact(c + p + s)
            .map(|e| DmaWindow {
                bus: join(&e[..c]),
                cpu: join(&e[c..c + p]),
                size: join(&e[c + p..]),
            })
            .collect(),
    )
}

/// Maps each inner window's parent-side addresses through the outer bus's windows.
fn compose(inner: &[DmaWindow], outer: &[DmaWindow]) -> Option<Vec<DmaWindow>> {
    inner
        .iter()
        .map(|w| {
            let o = outer
                .iter()
                .find(|o| w.cpu >= o.bus && w.cpu - o.bus < o.size)?;
            let off = w.cpu - o.bus;
            Some(DmaWindow {
                bus: w.bus,
                cpu: o.cpu.checked_add(off)?,
                size: w.size.min(o.size - off),
            })
        })
        .collect()
}

/// Canonical paths of the requests: each exists, is not `/`, is enabled and is asked for once.
fn canonical_paths(
    host: &DeviceTree,
    r: &Resolver<'_>,
    requests: &[PassthroughRequest],
) -> Result<Vec<String>, PassthroughError> {
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
    Ok(paths)
}

/// A device's MMIO as the guest sees it.
struct DeviceMmio {
    /// The guest `reg` (2 + 2 cells per entry, `/passthrough`'s cells).
    guest_reg: Vec<u8>,
    /// `xen,reg` triples.
    xen_reg: Vec<u8>,
    /// The page-aligned mappings, one per distinct host page range.
    owned: Vec<OwnedRegion>,
    /// Guest address of the first `reg` entry (the node's unit address), and its host address.
    first: Option<(u64, u64)>,
}

/// The device's `reg` translated through every `ranges`, page aligned, and placed in the guest.
fn device_mmio(
    r: &Resolver<'_>,
    req: &PassthroughRequest,
    path: &str,
) -> Result<DeviceMmio, PassthroughError> {
    let mmio_err = |reason: String| PassthroughError::NoMmio {
        path: path.to_owned(),
        reason,
    };
    let regions = match r.regions(path) {
        Ok(Some(v)) if !v.is_empty() => v,
        Ok(_) => return Err(mmio_err("no `reg`".into())),
        Err(e) => return Err(mmio_err(e.to_string())),
    };
    if let Some(g) = req.guest_base
        && g % PAGE_SIZE != 0
    {
        return Err(PassthroughError::Unaligned {
            path: path.to_owned(),
            guest: g,
        });
    }
    let aligned: Vec<Region> = regions
        .iter()
        .map(|g| page_align(*g).ok_or_else(|| mmio_err(format!("{g:#x?} wraps"))))
        .collect::<Result<_, _>>()?;
    let place = GuestPlacement::new(req, &aligned);

    let mut out = DeviceMmio {
        guest_reg: Vec::new(),
        xen_reg: Vec::new(),
        owned: Vec::new(),
        first: None,
    };
    for (i, (orig, al)) in regions.iter().zip(&aligned).enumerate() {
        let gbase = place.guest_of(i, al).map_err(mmio_err)?;
        let gaddr = gbase
            .checked_add(orig.base - al.base)
            .ok_or_else(|| mmio_err("guest address overflows".into()))?;
        out.first.get_or_insert((gaddr, orig.base));
        out.guest_reg.extend(value::u64(gaddr));
        out.guest_reg.extend(value::u64(orig.size));
        let owned = OwnedRegion {
            host: *al,
            guest_base: gbase,
        };
        // Two `reg` entries in one page placed alike: map the page once. (A plan may place them
        // apart; then each placement is its own mapping of the page.)
        let same_placement = |m: &OwnedRegion| {
            m.host.overlaps(&owned.host)
                && m.guest_base.wrapping_sub(m.host.base)
                    == owned.guest_base.wrapping_sub(owned.host.base)
        };
        if !out.owned.iter().any(same_placement) {
            out.owned.push(owned);
        }
    }
    for m in &out.owned {
        out.xen_reg.extend(value::u64(m.host.base));
        out.xen_reg.extend(value::u64(m.host.size));
        out.xen_reg.extend(value::u64(m.guest_base));
    }
    Ok(out)
}

/// Where a device's page-aligned ranges go in the guest.
enum GuestPlacement<'a> {
    /// Host address = guest address.
    Identity,
    /// The lowest page at `base`, the others at the same offsets from it.
    Base { base: u64, lowest: u64 },
    /// Each range where the caller's plan put it: the i-th `reg` range at the i-th mapping when
    /// there is one per range (the plan's layout), else the mapping that contains it.
    Pages(&'a [PageMapping], usize),
}

impl<'a> GuestPlacement<'a> {
    fn new(req: &'a PassthroughRequest, aligned: &[Region]) -> Self {
        if !req.guest_pages.is_empty() {
            return Self::Pages(&req.guest_pages, aligned.len());
        }
        match req.guest_base {
            None => Self::Identity,
            Some(base) => Self::Base {
                base,
                lowest: aligned.iter().map(|g| g.base).min().unwrap_or(0),
            },
        }
    }

    fn guest_of(&self, index: usize, host: &Region) -> Result<u64, String> {
        match self {
            Self::Pages(pages, ranges) if pages.len() == *ranges => {
                let m = pages[index];
                if m.host != host.base || m.size != host.size {
                    return Err(format!(
                        "the plan maps {:#x}+{:#x} for host range {host:#x?}",
                        m.host, m.size
                    ));
                }
                Ok(m.guest)
            }
            Self::Identity => Ok(host.base),
            Self::Base { base, lowest } => host
                .base
                .checked_sub(*lowest)
                .and_then(|off| base.checked_add(off))
                .ok_or_else(|| "guest address overflows".to_owned()),
            Self::Pages(pages, _) => pages
                .iter()
                .find(|m| {
                    m.host <= host.base
                        && host
                            .end()
                            .is_some_and(|e| e <= m.host.saturating_add(m.size))
                })
                .and_then(|m| m.guest.checked_add(host.base - m.host))
                .ok_or_else(|| format!("no guest address was planned for host range {host:#x?}")),
        }
    }
}

/// A device's interrupts for the guest.
struct DeviceIrqs {
    /// `interrupts` for the guest GIC (3 cells each).
    guest_cells: Vec<u32>,
    intids: Vec<u32>,
    fixup: Option<HostFixup>,
}

/// Every interrupt of `path`, parsed into its GIC form and re-encoded for the guest GIC. Only SPIs that
/// reach the GIC (directly or through a 1:1 forwarder) can be routed.
fn device_interrupts(
    r: &Resolver<'_>,
    opts: &FragmentOptions,
    path: &str,
) -> Result<DeviceIrqs, PassthroughError> {
    let refuse = |detail: String, reason: String| PassthroughError::Interrupt {
        path: path.to_owned(),
        detail,
        reason,
    };
    let decoded = r
        .interrupts(path)
        .map_err(|e| refuse("specifier".into(), e.to_string()))?;
    let mut out = DeviceIrqs {
        guest_cells: Vec::new(),
        intids: Vec::new(),
        fixup: None,
    };
    for d in &decoded {
        let g = guest_interrupt(d, opts).map_err(|(detail, reason)| refuse(detail, reason))?;
        out.guest_cells.extend(g.guest_cells());
        out.intids.push(g.intid());
    }
    if let Some(fwd) = decoded.iter().find_map(|d| d.forwarded_by.clone()) {
        out.fixup = Some(
            forwarder_fixup(r, path, &fwd, &decoded)
                .map_err(|reason| refuse(format!("through {fwd}"), reason))?,
        );
    }
    Ok(out)
}

/// One decoded interrupt as a routable GIC SPI, or `(detail, reason)` why not.
fn guest_interrupt(
    d: &DecodedInterrupt,
    opts: &FragmentOptions,
) -> Result<crate::resolve::GicInterrupt, (String, String)> {
    let Some(g) = d.gic else {
        return Err(match &d.gic_error {
            Some(e) => (format!("{:x?} to {}", d.cells, d.controller), e.clone()),
            None => (
                format!("{:x?}", d.cells),
                format!(
                    "it goes to {}, which is not the GIC nor a known 1:1 forwarder to it; Xen routes only GIC SPIs (pass {} as well only if it is itself a GIC-routed device the guest drives)",
                    d.controller, d.controller
                ),
            ),
        });
    };
    let intid = g.intid();
    match g.kind {
        GicKind::Ppi | GicKind::ExtendedPpi => Err((
            format!("PPI INTID {intid}"),
            "per-CPU interrupts are never routed to guests".into(),
        )),
        GicKind::ExtendedSpi => Err((
            format!("extended SPI INTID {intid}"),
            format!("the guest vGIC emulates SPIs 32-{LAST_SPI} only"),
        )),
        GicKind::Spi if intid > LAST_SPI => Err((
            format!("INTID {intid}"),
            format!("SPIs end at INTID {LAST_SPI} (arm,gic.yaml)"),
        )),
        GicKind::Spi if opts.vpl011 && intid == layout::GUEST_VPL011_SPI => Err((
            format!("INTID {intid}"),
            "the domain's vPL011 uses SPI 32 (GUEST_VPL011_SPI)".into(),
        )),
        GicKind::Spi => Ok(g),
    }
}

/// The host-DT change that makes Xen see the GIC behind `forwarder` for `path`'s interrupts.
fn forwarder_fixup(
    r: &Resolver<'_>,
    path: &str,
    forwarder: &str,
    decoded: &[DecodedInterrupt],
) -> Result<HostFixup, String> {
    let gic = decoded
        .iter()
        .find_map(|d| d.gic_path.clone())
        .ok_or_else(|| "no GIC behind the forwarder".to_owned())?;
    let gic_node = r.node(&gic).ok_or_else(|| format!("{gic} vanished"))?;
    let phandle = gic_node
        .phandle()
        .ok_or_else(|| format!("the GIC {gic} has no phandle to point {path} at"))?;
    let cells = gic_node
        .prop_u32("#interrupt-cells")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(crate::resolve::GUEST_GIC_INTERRUPT_CELLS);
    let mut interrupts = Vec::new();
    for d in decoded {
        let g = d
            .gic
            .ok_or_else(|| format!("{:x?} does not reach the GIC", d.cells))?;
        interrupts.extend(g.encode(cells));
    }
    Ok(HostFixup {
        path: path.to_owned(),
        forwarder: forwarder.to_owned(),
        interrupt_parent: phandle,
        interrupts,
    })
}

/// Xen assigns a device only behind an IOMMU it drives, unless forced.
fn check_iommu(
    r: &Resolver<'_>,
    req: &PassthroughRequest,
    path: &str,
) -> Result<(), PassthroughError> {
    match iommu_status(r, path) {
        IommuStatus::Xen(_) => Ok(()),
        _ if req.force_without_iommu => Ok(()),
        other => Err(PassthroughError::NoIommu {
            path: path.to_owned(),
            why: other.explain(),
        }),
    }
}

/// The device node itself: guest `reg` and unit address, guest-GIC interrupts, Xen properties.
fn finish_device_node(
    mut copy: Node,
    req: &PassthroughRequest,
    path: &str,
    mmio: &DeviceMmio,
    irqs: &DeviceIrqs,
) -> Node {
    if let Some((guest, host)) = mmio.first
        && guest != host
    {
        copy.name = format!("{}@{guest:x}", copy.base_name());
    }
    copy.set_prop("reg", mmio.guest_reg.clone());
    copy.remove_prop("interrupts-extended");
    if irqs.guest_cells.is_empty() {
        copy.remove_prop("interrupts");
        copy.remove_prop("interrupt-parent");
    } else {
        copy.set_prop("interrupts", value::cells(&irqs.guest_cells));
        copy.set_prop("interrupt-parent", value::u32(GUEST_PHANDLE_GIC));
    }
    copy.set_prop("xen,reg", mmio.xen_reg.clone());
    copy.set_prop("xen,path", value::string(path));
    if req.force_without_iommu {
        copy.set_prop("xen,force-assign-without-iommu", value::empty());
    }
    copy
}

/// Guest address conflicts: the fixed guest map, guest RAM, and each other.
fn check_guest_addresses(
    opts: &FragmentOptions,
    guest_ranges: &[(String, OwnedRegion)],
) -> Result<(), PassthroughError> {
    let named =
        |(n, r): (&str, Region)| (format!("the guest {n} (xen/include/public/arch-arm.h)"), r);
    let mut fixed: Vec<(String, Region)> = match opts.gic_v3 {
        Some(v3) => guest_map::fixed_regions(v3, opts.vpl011)
            .map(named)
            .collect(),
        None => guest_map::fixed_regions_any_gic(opts.vpl011)
            .into_iter()
            .map(named)
            .collect(),
    };
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
    Ok(())
}

/// The fragment tree: `/passthrough` (a 2+2-cell `simple-bus` with empty `ranges`) holding the carried
/// providers, then the devices.
fn assemble(mut out: Fragment, carried_nodes: Vec<Node>, device_nodes: Vec<Node>) -> Fragment {
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
    if !out.dma_ranges.is_empty() {
        // /passthrough has 2 + 2 cells and sits at the guest root (2 address cells).
        let v: Vec<u8> = out
            .dma_ranges
            .iter()
            .flat_map(|w| [value::u64(w.bus), value::u64(w.cpu), value::u64(w.size)].concat())
            .collect();
        pt.set_prop("dma-ranges", v);
    }
    pt.children.extend(carried_nodes);
    pt.children.extend(device_nodes);
    let mut tree = DeviceTree::new();
    tree.root.set_prop("#address-cells", value::u32(2));
    tree.root.set_prop("#size-cells", value::u32(2));
    tree.root.children.push(pt);
    out.dtb = tree.to_dtb();
    out.tree = tree;
    out
}

/// Mutable state while building one fragment: the phandle renumbering and the carried providers.
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

/// What becomes of one property of a copied node.
enum Copied {
    Keep(Property),
    /// Removed (a dependency the caller allowed to drop); its companion `*-names` go too.
    Dropped,
    /// Not written (the node's own phandle when nobody needs it, `iommus`...).
    Skip,
}

impl<'r, 'a> Builder<'r, 'a> {
    /// A builder with every phandle inside a passed subtree renumbered first (tree order), so
    /// references between passed devices resolve whatever order they are copied in.
    fn new(
        r: &'r Resolver<'a>,
        opts: &'r FragmentOptions,
        passed: Vec<String>,
    ) -> Result<Self, PassthroughError> {
        let mut b = Self {
            r,
            opts,
            out: Fragment {
                dtb: Vec::new(),
                tree: DeviceTree::new(),
                host_paths: passed.clone(),
                owned_regions: Vec::new(),
                irqs: Vec::new(),
                carried_dependencies: Vec::new(),
                dropped_dependencies: Vec::new(),
                shared_pages: Vec::new(),
                host_fixups: Vec::new(),
                dma_ranges: Vec::new(),
            },
            passed,
            remap: BTreeMap::new(),
            next_phandle: 1,
            carried_nodes: Vec::new(),
        };
        for p in r.paths() {
            if b.in_passed(p)
                && let Some(h) = r.node(p).and_then(Node::phandle)
            {
                b.alloc(h)?;
            }
        }
        Ok(b)
    }

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

    /// Other host devices in the device's pages can be reached by the guest too: reported.
    fn note_shared_pages(&mut self, path: &str, owned: &[OwnedRegion]) {
        for m in owned {
            let others: Vec<String> = self
                .r
                .paths()
                .iter()
                .filter(|p| !self.in_passed(p))
                .filter(|p| {
                    self.r
                        .regions(p)
                        .ok()
                        .flatten()
                        .is_some_and(|rs| rs.iter().any(|x| x.overlaps(&m.host)))
                })
                .cloned()
                .collect();
            if !others.is_empty() {
                self.out.shared_pages.push(SharedPage {
                    device: path.to_owned(),
                    page: m.host,
                    others,
                });
            }
        }
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

    /// Copies the node at `path` (inside the passed device `device`) and its children.
    fn copy_subtree(&mut self, device: &str, path: &str) -> Result<Node, PassthroughError> {
        let node = self
            .r
            .node(path)
            .ok_or_else(|| PassthroughError::NotFound(path.to_owned()))?;
        let mut copy = Node::new(node.name.clone());
        let mut dropped: BTreeSet<String> = BTreeSet::new();
        for prop in &node.properties {
            match self.copy_property(device, path, node, prop)? {
                Copied::Keep(p) => copy.properties.push(p),
                Copied::Skip => {}
                Copied::Dropped => dropped.extend(companions(&prop.name)),
            }
        }
        remove_companions(&mut copy, &dropped);
        if path != device {
            self.child_interrupts(path, node, &mut copy)?;
        }
        for child in &node.children {
            let c = self.copy_subtree(device, &format!("{path}/{}", child.name))?;
            copy.children.push(c);
        }
        Ok(copy)
    }

    fn copy_property(
        &mut self,
        device: &str,
        path: &str,
        node: &Node,
        prop: &Property,
    ) -> Result<Copied, PassthroughError> {
        let name = prop.name.as_str();
        let is_top = path == device;
        match name {
            "phandle" | "linux,phandle" => {
                return Ok(match node.phandle().and_then(|h| self.remap.get(&h)) {
                    Some(h) => Copied::Keep(Property {
                        name: name.to_owned(),
                        value: value::u32(*h),
                    }),
                    None => Copied::Skip,
                });
            }
            // The guest has no SMMU; Xen programs the host one from `xen,path`.
            "iommus" | "iommu-map" | "iommu-map-mask" => return Ok(Copied::Skip),
            // Written by `child_interrupts` once the node's controllers are known.
            "interrupts" | "interrupts-extended" | "interrupt-parent" if !is_top => {
                return Ok(Copied::Skip);
            }
            "reg" if !is_top => {
                if let Ok(Some(_)) = self.r.regions(path) {
                    return Err(PassthroughError::NestedMmio {
                        path: device.to_owned(),
                        child: path.to_owned(),
                    });
                }
            }
            _ => {}
        }
        if node_dependency_kind(node, name).is_none() {
            return Ok(Copied::Keep(prop.clone()));
        }
        self.relink(path, prop)
    }

    /// Interrupts of a node below the `xen,path` node. Xen routes only the `xen,path` node's own
    /// interrupts, so a child keeps its interrupts only when every controller they go to is carried
    /// by the fragment (a passed GPIO block, say): then it gets an explicit `interrupt-parent` (or
    /// `interrupts-extended`) naming the copy. Otherwise the interrupts are a dependency on that
    /// controller, dropped with `drop_dependencies` or refused — the rule validation applies (the
    /// inventory lists a child's interrupt controllers as `interrupts` dependencies).
    fn child_interrupts(
        &mut self,
        path: &str,
        node: &Node,
        copy: &mut Node,
    ) -> Result<(), PassthroughError> {
        let name = if node.has_prop("interrupts-extended") {
            "interrupts-extended"
        } else if node.has_prop("interrupts") {
            "interrupts"
        } else {
            return Ok(());
        };
        let bad = |reason: String| PassthroughError::BadDependency {
            device: path.to_owned(),
            property: name.to_owned(),
            reason,
        };
        let decoded = self.r.interrupts(path).map_err(|e| bad(e.to_string()))?;
        let outside = decoded
            .iter()
            .find(|d| !self.in_passed(&d.controller))
            .map(|d| d.controller.clone());
        if let Some(provider) = outside {
            let action = DependencyAction {
                device: path.to_owned(),
                property: name.to_owned(),
                provider,
            };
            if !self.opts.drop_dependencies {
                return Err(PassthroughError::Dependency {
                    device: action.device,
                    property: action.property,
                    provider: action.provider,
                });
            }
            self.out.dropped_dependencies.push(action);
            copy.remove_prop("interrupt-names");
            return Ok(());
        }
        let relinked = |d: &DecodedInterrupt| {
            d.controller_phandle
                .and_then(|h| self.remap.get(&h).copied())
                .ok_or_else(|| bad(format!("{} has no phandle to re-link", d.controller)))
        };
        if name == "interrupts-extended" {
            let mut cells = Vec::new();
            for d in &decoded {
                cells.push(relinked(d)?);
                cells.extend(&d.cells);
            }
            copy.set_prop(name, value::cells(&cells));
        } else if let Some(d) = decoded.first() {
            let h = relinked(d)?;
            if let Some(p) = node.property("interrupts") {
                copy.properties.push(p.clone());
            }
            copy.set_prop("interrupt-parent", value::u32(h));
        }
        Ok(())
    }

    /// Re-links every phandle cell of a dependency property to the fragment's copy of its target, or
    /// drops/refuses the property when a target is not carried.
    fn relink(&mut self, path: &str, prop: &Property) -> Result<Copied, PassthroughError> {
        let name = prop.name.as_str();
        let refs =
            self.r
                .phandle_refs(path, name)
                .map_err(|reason| PassthroughError::BadDependency {
                    device: path.to_owned(),
                    property: name.to_owned(),
                    reason,
                })?;
        let mut cells = bytes_to_cells(&prop.value).unwrap_or_default();
        let mut missing = None;
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
            match (new, cells.get_mut(rf.cell_index)) {
                (Some(h), Some(c)) => *c = h,
                _ => {
                    missing.get_or_insert(provider);
                    if self.opts.drop_dependencies {
                        continue;
                    }
                    break;
                }
            }
        }
        let Some(provider) = missing else {
            return Ok(Copied::Keep(Property {
                name: name.to_owned(),
                value: value::cells(&cells),
            }));
        };
        if !self.opts.drop_dependencies {
            return Err(PassthroughError::Dependency {
                device: path.to_owned(),
                property: name.to_owned(),
                provider,
            });
        }
        self.out.dropped_dependencies.push(DependencyAction {
            device: path.to_owned(),
            property: name.to_owned(),
            provider,
        });
        Ok(Copied::Dropped)
    }
}

/// Removes the `*-names` of dropped properties; `pinctrl-names` stays while a `pinctrl-N` survives.
fn remove_companions(copy: &mut Node, dropped: &BTreeSet<String>) {
    for n in dropped {
        let other_pinctrl = copy
            .properties
            .iter()
            .any(|p| p.name.starts_with("pinctrl-") && p.name != "pinctrl-names");
        if n == "pinctrl-names" && other_pinctrl {
            continue;
        }
        copy.remove_prop(n);
    }
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
