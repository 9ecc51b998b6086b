//! From a `firmware_config::plan::SystemPlan` to the device trees Xen boots with (ARM64 dom0less).
//!
//! The plan has already decided everything: which properties the target Xen understands (validation
//! refuses features the target lacks), guest RAM, device mappings and module load addresses. This
//! module only translates it into the bindings of Xen `docs/misc/arm/device-tree/booting.txt`:
//! - [`passthrough_fragments`]: one partial DTB per driver domain (`docs/misc/arm/passthrough.txt`),
//!   built by [`crate::passthrough::fragment`] from the plan's
//!   [`firmware_config::plan::DevicePlan`]s and then checked against the plan (the MMIO mappings
//!   and interrupts the fragment grants must be exactly the ones the plan validated — a
//!   disagreement is a bug, reported instead of booted);
//! - [`chosen_spec`]: the `/chosen` content (`xen,xen-bootargs`, dom0 modules, one `xen,domain` node
//!   per Xen-built domain, cpupools) for modules placed at known addresses with exact sizes;
//! - [`host_dtb`]: the board DTB with that `/chosen` written in and every passed-through host node
//!   marked `xen,passthrough`.
//!
//! Naming: each domain's node under `/chosen` is the domain's own name, because Xen prints the node
//! name in its boot log (`dom0less-build.c`/4.17 `domain_build.c` `create_domUs`: "Loading d1 kernel",
//! and the node name in error messages), so the log talks in the manifest's words.

use std::collections::BTreeSet;

use firmware_config::board::Region;
use firmware_config::manifest::{Builder, Console, DomainKind, Enhanced as PlanEnhanced};
use firmware_config::plan::{DomainPlan, Gic, SystemPlan};
use firmware_config::validate::default_p2m_pool;

use crate::DtError;
use crate::dom0less::{
    ChosenSpec, CpupoolSpec, Dom0Spec, DomainNodeSpec, Enhanced, ModuleKind, ModuleSpec,
    VcpuAffinity, apply_chosen,
};
use crate::passthrough::{
    Fragment, FragmentOptions, PageMapping, PassthroughError, PassthroughRequest, fragment,
};
use crate::tree::{DeviceTree, Property, value};

const MIB: u64 = 1024 * 1024;

/// A boot module as it will really be loaded: the plan's module id, the load address and the exact
/// size in bytes of the file the boot loader puts there (booting.txt, "Multiboot Modules": `reg` is
/// the module's address and size; Xen reads exactly `size` bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedModule {
    pub id: String,
    pub addr: u64,
    pub size: u64,
}

/// A driver domain's generated partial device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFragment {
    pub domain: String,
    /// The plan's module id of the fragment (`passthrough-<domain>`).
    pub module_id: String,
    pub fragment: Fragment,
}

/// Why the plan could not be turned into device trees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromPlanError {
    #[error("the plan names module `{0}`, but no built module has that id")]
    MissingModule(String),
    #[error("domain `{domain}`: {source}")]
    Passthrough {
        domain: String,
        #[source]
        source: PassthroughError,
    },
    #[error(
        "domain `{domain}`: the generated passthrough fragment disagrees with the plan: {detail}"
    )]
    PlanMismatch { domain: String, detail: String },
    #[error("domain `{domain}`: {what}")]
    Unsupported { domain: String, what: String },
    #[error("the board device tree cannot be used: {0}")]
    BoardDtb(#[source] DtError),
    #[error("writing /chosen: {0}")]
    Chosen(#[source] DtError),
}

/// Whether Xen builds `d` from `/chosen` (every other domain is built later by domforge-init).
pub fn is_dom0less(d: &DomainPlan) -> bool {
    d.kind == DomainKind::Arm64 && d.builder == Builder::Xen
}

/// `"0-3,5"`: the list syntax of booting.txt's vCPU `hard-affinity` (and of Xen's cpupool/cpu lists).
pub fn cpu_list(cpus: &[u32]) -> String {
    let set: BTreeSet<u32> = cpus.iter().copied().collect();
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while let Some(&n) = iter.peek() {
            if end.checked_add(1) == Some(n) {
                end = n;
                iter.next();
            } else {
                break;
            }
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// The node name a cpupool gets under `/chosen` (`cpupools.txt` leaves it free; the prefix keeps it
/// apart from domain node names).
pub fn cpupool_node_name(pool: &str) -> String {
    format!("cpupool-{pool}")
}

fn placed<'a>(modules: &'a [PlacedModule], id: &str) -> Result<&'a PlacedModule, FromPlanError> {
    modules
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| FromPlanError::MissingModule(id.to_string()))
}

fn module_spec(
    modules: &[PlacedModule],
    id: &str,
    kind: ModuleKind,
    bootargs: Option<String>,
) -> Result<ModuleSpec, FromPlanError> {
    let m = placed(modules, id)?;
    Ok(ModuleSpec {
        kind,
        addr: m.addr,
        size: m.size,
        bootargs,
    })
}

fn domain_node(d: &DomainPlan, modules: &[PlacedModule]) -> Result<DomainNodeSpec, FromPlanError> {
    let unsupported = |what: &str| FromPlanError::Unsupported {
        domain: d.name.clone(),
        what: what.to_string(),
    };
    if !d.memory.is_multiple_of(1024) {
        // booting.txt: `memory` is in KiB; a byte count that is not whole KiB cannot be expressed.
        return Err(unsupported("memory is not a whole number of KiB"));
    }
    if !d.iomem.is_empty() {
        return Err(unsupported(
            "raw iomem grants are not emitted for dom0less domains; describe the device by its DT path in `passthrough` instead",
        ));
    }
    let mut extra = Vec::new();
    // `xen,domain-p2m-mem-mb` (booting.txt, 4.17): only when the plan differs from the size Xen
    // computes itself (`domain_p2m_pages()`), which is what `default_p2m_pool` mirrors.
    if d.p2m_pool != default_p2m_pool(d.vcpus, d.memory) {
        let mb = u32::try_from(d.p2m_pool.div_ceil(MIB))
            .map_err(|_| unsupported("the P2M pool does not fit in 32 bits of MiB"))?;
        extra.push(Property {
            name: "xen,domain-p2m-mem-mb".into(),
            value: value::u32(mb),
        });
    }
    // `sve` (booting.txt, 4.18): vector length in bits; an empty property means the platform maximum.
    if let Some(sve) = d.sve {
        extra.push(Property {
            name: "sve".into(),
            value: if sve == 0 {
                value::empty()
            } else {
                value::u32(sve)
            },
        });
    }
    // Grant-table limits (booting.txt, 4.18): u32 each.
    if let Some(n) = d.max_grant_frames {
        extra.push(Property {
            name: "max_grant_frames".into(),
            value: value::u32(n),
        });
    }
    if let Some(n) = d.max_maptrack_frames {
        extra.push(Property {
            name: "max_maptrack_frames".into(),
            value: value::u32(n),
        });
    }
    // `llc-colors` (booting.txt, 4.20): a string list such as "0-3,7".
    if let Some(c) = &d.llc_colors {
        extra.push(Property {
            name: "llc-colors".into(),
            value: value::string(c),
        });
    }

    let mut mods = vec![module_spec(
        modules,
        &d.kernel,
        ModuleKind::Kernel,
        (!d.cmdline.is_empty()).then(|| d.cmdline.clone()),
    )?];
    if let Some(r) = &d.ramdisk {
        mods.push(module_spec(modules, r, ModuleKind::Ramdisk, None)?);
    }
    if let Some(p) = &d.passthrough_dtb {
        mods.push(module_spec(modules, p, ModuleKind::DeviceTree, None)?);
    }

    Ok(DomainNodeSpec {
        node_name: d.name.clone(),
        memory_kib: d.memory / 1024,
        cpus: d.vcpus,
        vpl011: d.console == Console::Vpl011,
        // booting.txt: an absent `xen,enhanced` means no PV interfaces, which is what "disabled" asks.
        enhanced: match d.enhanced {
            None | Some(PlanEnhanced::Disabled) => None,
            Some(PlanEnhanced::Enabled) => Some(Enhanced::Enabled),
            Some(PlanEnhanced::NoXenstore) => Some(Enhanced::NoXenstore),
            Some(PlanEnhanced::Legacy) => Some(Enhanced::Legacy),
        },
        static_mem: d.static_memory.clone(),
        direct_map: d.direct_map,
        cpupool: d.cpupool.as_deref().map(cpupool_node_name),
        vcpu_affinity: d
            .vcpu_affinity
            .iter()
            .enumerate()
            .filter(|(_, cpus)| !cpus.is_empty())
            .map(|(i, cpus)| {
                Ok(VcpuAffinity {
                    id: u32::try_from(i).map_err(|_| unsupported("too many vCPUs"))?,
                    hard_affinity: cpu_list(cpus),
                })
            })
            .collect::<Result<_, FromPlanError>>()?,
        modules: mods,
        extra,
    })
}

/// The `/chosen` content for `plan` with its modules at `modules` (addresses and exact sizes).
///
/// Domains Xen does not build (PVH, or ARM domains left to domforge-init) are not described under
/// `/chosen`. Host paths to mark `xen,passthrough` are the plan's device paths; [`host_dtb`] replaces
/// them with the canonical paths the fragments name.
pub fn chosen_spec(
    plan: &SystemPlan,
    modules: &[PlacedModule],
) -> Result<ChosenSpec, FromPlanError> {
    let dom0 = plan
        .dom0
        .as_ref()
        .map(|d0| -> Result<Dom0Spec, FromPlanError> {
            Ok(Dom0Spec {
                kernel: module_spec(modules, &d0.kernel, ModuleKind::Kernel, None)?,
                ramdisk: d0
                    .ramdisk
                    .as_deref()
                    .map(|r| module_spec(modules, r, ModuleKind::Ramdisk, None))
                    .transpose()?,
                xsm_policy: None,
                // booting.txt "Command lines": `xen,dom0-bootargs` wins over the module's bootargs.
                bootargs: Some(d0.cmdline.clone()),
            })
        })
        .transpose()?;
    let domains = plan
        .domains
        .iter()
        .filter(|d| is_dom0less(d))
        .map(|d| domain_node(d, modules))
        .collect::<Result<Vec<_>, _>>()?;
    let cpupools = plan
        .cpupools
        .iter()
        .map(|p| CpupoolSpec {
            node_name: cpupool_node_name(&p.name),
            cpus: p.cpu_paths.clone(),
            sched: Some(p.scheduler.clone()),
        })
        .collect();
    // Every ARM guest's devices, whoever builds it: the mark keeps dom0 from probing a device an
    // init-built domain will own (`xen,passthrough`, booting.txt), and Xen from giving it to dom0.
    let passthrough_host_paths = plan
        .domains
        .iter()
        .filter(|d| d.kind == DomainKind::Arm64)
        .flat_map(|d| d.devices.iter().map(|dev| dev.path.clone()))
        .collect();
    Ok(ChosenSpec {
        xen_bootargs: plan.xen_cmdline.clone(),
        dom0,
        domains,
        cpupools,
        passthrough_host_paths,
    })
}

/// One partial DTB per ARM domain that owns devices, in plan order, each checked against the
/// plan: the fragment must map exactly the plan's `(host, guest, size)` ranges and route exactly the
/// plan's SPIs. Xen reads a dom0less domain's as a boot module; domforge-init merges an init-built
/// domain's into the guest DT it generates.
pub fn passthrough_fragments(
    host: &DeviceTree,
    plan: &SystemPlan,
) -> Result<Vec<DomainFragment>, FromPlanError> {
    let mut out = Vec::new();
    for d in plan.domains.iter().filter(|d| d.kind == DomainKind::Arm64) {
        let Some(module_id) = &d.passthrough_dtb else {
            continue;
        };
        let requests: Vec<PassthroughRequest> = d
            .devices
            .iter()
            .map(|dev| PassthroughRequest {
                path: dev.path.clone(),
                guest_base: None,
                // Every range exactly where the plan put it (the plan relocates ranges one by one
                // around `guest_map`); the check below proves the fragment grants just these.
                guest_pages: dev
                    .mappings
                    .iter()
                    .map(|m| PageMapping {
                        host: m.host,
                        guest: m.guest,
                        size: m.size,
                    })
                    .collect(),
                force_without_iommu: dev.forced,
            })
            .collect();
        let opts = FragmentOptions {
            drop_dependencies: d.drop_device_dependencies,
            guest_ram: d.guest_ram.clone(),
            vpl011: d.console == Console::Vpl011,
            gic_v3: plan.gic.map(|g| g == Gic::V3),
        };
        let frag =
            fragment(host, &requests, &opts).map_err(|source| FromPlanError::Passthrough {
                domain: d.name.clone(),
                source,
            })?;
        let mismatch = |detail: String| FromPlanError::PlanMismatch {
            domain: d.name.clone(),
            detail,
        };
        let planned: BTreeSet<(u64, u64, u64)> = d
            .devices
            .iter()
            .flat_map(|dev| dev.mappings.iter().map(|m| (m.host, m.size, m.guest)))
            .collect();
        let granted: BTreeSet<(u64, u64, u64)> = frag
            .owned_regions
            .iter()
            .map(|o| (o.host.base, o.host.size, o.guest_base))
            .collect();
        if planned != granted {
            return Err(mismatch(format!(
                "MMIO (host, size, guest) planned {planned:#x?}, fragment grants {granted:#x?}"
            )));
        }
        let planned_irqs: BTreeSet<u32> = d
            .devices
            .iter()
            .flat_map(|dev| dev.irqs.iter().copied())
            .collect();
        let routed: BTreeSet<u32> = frag.irqs.iter().copied().collect();
        if planned_irqs != routed {
            return Err(mismatch(format!(
                "interrupts planned {planned_irqs:?}, fragment routes {routed:?}"
            )));
        }
        out.push(DomainFragment {
            domain: d.name.clone(),
            module_id: module_id.clone(),
            fragment: frag,
        });
    }
    Ok(out)
}

/// The host device tree Xen boots with: `board_dtb` plus the `/chosen` of [`chosen_spec`], with the
/// fragments' canonical host paths marked `xen,passthrough` (passthrough.txt: so that no other domain,
/// dom0 included, is given the device).
pub fn host_dtb(
    board_dtb: &[u8],
    plan: &SystemPlan,
    modules: &[PlacedModule],
    fragments: &[DomainFragment],
) -> Result<DeviceTree, FromPlanError> {
    let mut tree = DeviceTree::from_dtb(board_dtb).map_err(FromPlanError::BoardDtb)?;
    let mut spec = chosen_spec(plan, modules)?;
    let mut marked: BTreeSet<String> = BTreeSet::new();
    for f in fragments {
        marked.extend(f.fragment.host_paths.iter().cloned());
    }
    // Every planned device must be covered by a fragment; otherwise dom0 would be handed a device the
    // plan gave to a domU.
    for p in &spec.passthrough_host_paths {
        let canonical = tree.canonical_path(p).unwrap_or_else(|| p.clone());
        if !marked.contains(&canonical) {
            return Err(FromPlanError::PlanMismatch {
                domain: plan
                    .domains
                    .iter()
                    .find(|d| d.devices.iter().any(|dev| &dev.path == p))
                    .map_or_else(String::new, |d| d.name.clone()),
                detail: format!("no passthrough fragment covers {p}"),
            });
        }
    }
    spec.passthrough_host_paths = marked.into_iter().collect();
    // Devices whose interrupts go through a 1:1 forwarder (i.MX8MQ's GPC) are pointed straight at the
    // GIC, so Xen's own interrupt walk routes what the fragment grants.
    for f in fragments {
        for fix in &f.fragment.host_fixups {
            fix.apply(&mut tree).map_err(FromPlanError::BoardDtb)?;
        }
    }
    apply_chosen(&mut tree, &spec).map_err(FromPlanError::Chosen)?;
    Ok(tree)
}

/// The module placement the plan implies for a module whose file is `size` bytes: the plan's address.
/// `None` when the plan does not place the module (x86 multiboot, QEMU `-kernel` on some boards).
pub fn plan_address(plan: &SystemPlan, id: &str) -> Option<u64> {
    plan.module(id).and_then(|m| m.load).map(|r: Region| r.base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_collapse_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(cpu_list(&[1, 4, 5, 6, 7]), "1,4-7");
        assert_eq!(cpu_list(&[7, 1, 1]), "1,7");
        assert_eq!(cpu_list(&[]), "");
        assert_eq!(cpu_list(&[u32::MAX - 1, u32::MAX]), "4294967294-4294967295");
    }
}
