//! The Xen `/chosen` content of a dom0less host device tree.
//!
//! Bindings: Xen `docs/misc/arm/device-tree/booting.txt` ("Multiboot Modules", "Command lines",
//! "Creating Multiple Domains directly from Xen", "Static Allocation"), `cpupools.txt`,
//! `passthrough.txt` (`xen,passthrough` on host nodes).
//!
//! This module has no version policy: it writes exactly what the [`ChosenSpec`] says. Which properties
//! exist for the target Xen (e.g. `xen,enhanced` since 4.17, vCPU `hard-affinity` since 4.21) is the
//! caller's decision. It does enforce what every release requires (booting.txt): `cpus` and `memory`
//! present, `direct-map` only with `xen,static-mem`, static memory summing to `memory`.

use firmware_config::board::Region;

use crate::DtError;
use crate::tree::{DeviceTree, Node, Property, value};

/// The kind of a boot module (booting.txt, "Multiboot Modules": the first `compatible` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    /// A passthrough partial DTB (domUs only).
    DeviceTree,
    /// An XSM policy (dom0 only).
    XsmPolicy,
}

impl ModuleKind {
    pub fn compatible(self) -> &'static str {
        match self {
            Self::Kernel => "multiboot,kernel",
            Self::Ramdisk => "multiboot,ramdisk",
            Self::DeviceTree => "multiboot,device-tree",
            Self::XsmPolicy => "xen,xsm-policy",
        }
    }
}

/// One boot module: where the loader puts it and its exact size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub kind: ModuleKind,
    pub addr: u64,
    pub size: u64,
    /// `bootargs` of a kernel module.
    pub bootargs: Option<String>,
}

/// dom0's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dom0Spec {
    pub kernel: ModuleSpec,
    pub ramdisk: Option<ModuleSpec>,
    pub xsm_policy: Option<ModuleSpec>,
    /// `xen,dom0-bootargs`.
    pub bootargs: Option<String>,
}

/// `xen,enhanced` values (booting.txt; `no-xenstore` since 4.17, `legacy` since 4.21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enhanced {
    Enabled,
    Disabled,
    NoXenstore,
    Legacy,
    Other(String),
}

impl Enhanced {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::NoXenstore => "no-xenstore",
            Self::Legacy => "legacy",
            Self::Other(s) => s,
        }
    }
}

/// A vCPU sub-node (`compatible = "xen,vcpu"`, booting.txt since 4.21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuAffinity {
    pub id: u32,
    /// E.g. `"0-3"` or `"1,4-7"`.
    pub hard_affinity: String,
}

/// A boot-time cpupool (`cpupools.txt`, since 4.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpupoolSpec {
    /// Node name under `/chosen`.
    pub node_name: String,
    /// Host CPU node paths (`/cpus/cpu@1`); phandles are added to them when missing.
    pub cpus: Vec<String>,
    /// `cpupool-sched` (`"null"`, `"credit2"`...).
    pub sched: Option<String>,
}

/// One `compatible = "xen,domain"` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainNodeSpec {
    /// Node name under `/chosen` (e.g. `domU-net`; see [`DomainNodeSpec::default_node_name`]).
    pub node_name: String,
    /// `memory`, KiB, written as a 64-bit value.
    pub memory_kib: u64,
    pub cpus: u32,
    pub vpl011: bool,
    pub enhanced: Option<Enhanced>,
    /// `xen,static-mem` host ranges.
    pub static_mem: Vec<Region>,
    pub direct_map: bool,
    /// `node_name` of a [`CpupoolSpec`] → `domain-cpupool`.
    pub cpupool: Option<String>,
    pub vcpu_affinity: Vec<VcpuAffinity>,
    pub modules: Vec<ModuleSpec>,
    /// Further properties, written verbatim (`nr_spis`, `xen,domain-p2m-mem-mb`, `passthrough`...).
    pub extra: Vec<Property>,
}

impl DomainNodeSpec {
    /// `domU-<name>`: the deterministic node name for a manifest domain.
    pub fn default_node_name(name: &str) -> String {
        format!("domU-{name}")
    }
}

/// Everything written under `/chosen`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChosenSpec {
    /// `xen,xen-bootargs`: the board console plus the manifest's options.
    pub xen_bootargs: String,
    pub dom0: Option<Dom0Spec>,
    pub domains: Vec<DomainNodeSpec>,
    pub cpupools: Vec<CpupoolSpec>,
    /// Host nodes owned by domains: each gets `xen,passthrough`.
    pub passthrough_host_paths: Vec<String>,
}

/// Compatibles of nodes this module owns under `/chosen` (removed before writing, so applying a spec
/// twice gives the same tree). Includes the legacy module names booting.txt still accepts.
const OWNED_COMPATIBLES: &[&str] = &[
    "xen,domain",
    "xen,cpupool",
    "multiboot,module",
    "xen,multiboot-module",
    "xen,linux-zimage",
    "xen,linux-initrd",
    "xen,xsm-policy",
];

fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ',' | '.' | '_' | '+' | '-' | '@'))
        && s.matches('@').count() <= 1
}

fn invalid(msg: String) -> DtError {
    DtError::Invalid(msg)
}

fn module_node(m: &ModuleSpec) -> Result<Node, DtError> {
    if m.size == 0 {
        return Err(invalid(format!(
            "{} module at {:#x} has size 0",
            m.kind.compatible(),
            m.addr
        )));
    }
    if m.addr.checked_add(m.size).is_none() {
        return Err(invalid(format!("module at {:#x} wraps", m.addr)));
    }
    let mut n = Node::new(format!("module@{:x}", m.addr));
    n.set_prop(
        "compatible",
        value::strings(&[m.kind.compatible(), "multiboot,module"]),
    );
    // /chosen and xen,domain nodes get #address-cells = #size-cells = 2 below.
    n.set_prop("reg", [value::u64(m.addr), value::u64(m.size)].concat());
    if let Some(b) = &m.bootargs {
        n.set_prop("bootargs", value::string(b));
    }
    Ok(n)
}

fn push_module(parent: &mut Node, m: &ModuleSpec) -> Result<(), DtError> {
    let n = module_node(m)?;
    if parent.child(&n.name).is_some() {
        return Err(invalid(format!(
            "two modules at {:#x} under /chosen/{}",
            m.addr, parent.name
        )));
    }
    parent.children.push(n);
    Ok(())
}

/// Writes `spec` into the host tree's `/chosen` (replacing earlier Xen content) and marks the
/// passed-through host nodes with `xen,passthrough` (clearing stale marks). On error the tree is left
/// unchanged.
pub fn apply_chosen(tree: &mut DeviceTree, spec: &ChosenSpec) -> Result<(), DtError> {
    let mut work = tree.clone();
    apply_to(&mut work, spec)?;
    *tree = work;
    Ok(())
}

/// Validates the whole spec against the tree, then writes it. Every check happens before the first
/// write (and [`apply_chosen`] works on a copy besides), so a refused spec changes nothing.
fn apply_to(tree: &mut DeviceTree, spec: &ChosenSpec) -> Result<(), DtError> {
    let names = validate_spec(tree, spec)?;
    clear_xen_content(tree, &names)?;
    let phandles = cpupool_phandles(tree, spec)?;
    mark_passthrough(tree, spec)?;
    write_chosen(tree, spec, &phandles)
}

/// Every rule booting.txt states for the spec; returns the node names it will create under `/chosen`.
fn validate_spec(tree: &DeviceTree, spec: &ChosenSpec) -> Result<Vec<String>, DtError> {
    for p in &spec.passthrough_host_paths {
        if tree.node(p).is_none() {
            return Err(DtError::NodeNotFound(p.clone()));
        }
    }
    let mut names = Vec::new();
    for d in &spec.domains {
        if names.contains(&d.node_name) {
            return Err(invalid(format!("two domains named {}", d.node_name)));
        }
        validate_domain(d, spec)?;
        names.push(d.node_name.clone());
    }
    if let Some(d0) = &spec.dom0 {
        if d0.kernel.kind != ModuleKind::Kernel {
            return Err(invalid("dom0 kernel module must be of kind Kernel".into()));
        }
        for m in std::iter::once(&d0.kernel)
            .chain(&d0.ramdisk)
            .chain(&d0.xsm_policy)
        {
            module_node(m)?;
        }
    }
    for c in &spec.cpupools {
        if !valid_node_name(&c.node_name) || names.contains(&c.node_name) {
            return Err(invalid(format!(
                "bad or duplicate cpupool node name {}",
                c.node_name
            )));
        }
        names.push(c.node_name.clone());
        for cpu in &c.cpus {
            if tree.node(cpu).is_none() {
                return Err(DtError::NodeNotFound(cpu.clone()));
            }
        }
    }
    Ok(names)
}

/// One domain node's rules (booting.txt): name, `cpus`, `memory`, direct map with static memory,
/// static memory summing to `memory`, vCPU affinity, cpupool, modules.
fn validate_domain(d: &DomainNodeSpec, spec: &ChosenSpec) -> Result<(), DtError> {
    let name = &d.node_name;
    if !valid_node_name(name) {
        return Err(invalid(format!("`{name}` is not a valid node name")));
    }
    if d.cpus == 0 {
        return Err(invalid(format!("{name}: cpus must be at least 1")));
    }
    if d.memory_kib == 0 {
        return Err(invalid(format!("{name}: memory must not be 0")));
    }
    if d.direct_map && d.static_mem.is_empty() {
        return Err(invalid(format!(
            "{name}: direct-map needs xen,static-mem (Xen panics otherwise, booting.txt)"
        )));
    }
    if !d.static_mem.is_empty() {
        let total = d
            .static_mem
            .iter()
            .try_fold(0u64, |a, r| a.checked_add(r.size))
            .ok_or_else(|| invalid(format!("{name}: static memory overflows")))?;
        if total != d.memory_kib.saturating_mul(1024) {
            return Err(invalid(format!(
                "{name}: xen,static-mem totals {total:#x} bytes but memory is {} KiB (booting.txt: they must match)",
                d.memory_kib
            )));
        }
    }
    if let Some(v) = d.vcpu_affinity.iter().find(|v| v.id >= d.cpus) {
        return Err(invalid(format!(
            "{name}: vcpu {} does not exist (cpus = {})",
            v.id, d.cpus
        )));
    }
    if let Some(p) = &d.cpupool
        && !spec.cpupools.iter().any(|c| &c.node_name == p)
    {
        return Err(invalid(format!("{name}: no cpupool {p}")));
    }
    for m in &d.modules {
        if m.kind == ModuleKind::XsmPolicy {
            return Err(invalid(format!("{name}: an XSM policy is a dom0 module")));
        }
        module_node(m)?;
    }
    Ok(())
}

/// Drops earlier Xen content under `/chosen` (so applying twice gives the same tree, and phandles of
/// replaced cpupools are not counted) and refuses a name clash with a node we do not own.
fn clear_xen_content(tree: &mut DeviceTree, names: &[String]) -> Result<(), DtError> {
    let Some(chosen) = tree.node_mut("/chosen") else {
        return Ok(());
    };
    chosen
        .children
        .retain(|c| !OWNED_COMPATIBLES.iter().any(|x| c.is_compatible(x)));
    chosen.remove_prop("xen,xen-bootargs");
    chosen.remove_prop("xen,dom0-bootargs");
    if let Some(n) = names.iter().find(|n| chosen.child(n).is_some()) {
        return Err(invalid(format!("/chosen already has a node named {n}")));
    }
    Ok(())
}

/// Phandles of the cpupools and of their CPUs (given one where missing).
struct PoolPhandles {
    pools: Vec<u32>,
    cpus: Vec<Vec<u32>>,
}

fn cpupool_phandles(tree: &mut DeviceTree, spec: &ChosenSpec) -> Result<PoolPhandles, DtError> {
    let mut next_phandle = tree.max_phandle().saturating_add(1);
    let mut alloc = || {
        let h = next_phandle;
        next_phandle = next_phandle.saturating_add(1);
        h
    };
    let mut out = PoolPhandles {
        pools: Vec::new(),
        cpus: Vec::new(),
    };
    for c in &spec.cpupools {
        let mut hs = Vec::new();
        for cpu in &c.cpus {
            let node = tree
                .node_mut(cpu)
                .ok_or_else(|| DtError::NodeNotFound(cpu.clone()))?;
            let h = match node.phandle() {
                Some(h) => h,
                None => {
                    let h = alloc();
                    node.set_prop("phandle", value::u32(h));
                    h
                }
            };
            hs.push(h);
        }
        out.cpus.push(hs);
        out.pools.push(alloc());
    }
    Ok(out)
}

/// `xen,passthrough` on exactly the spec's host nodes (stale marks cleared).
fn mark_passthrough(tree: &mut DeviceTree, spec: &ChosenSpec) -> Result<(), DtError> {
    let all: Vec<String> = tree.walk().into_iter().map(|(p, _)| p).collect();
    for p in &all {
        if let Some(n) = tree.node_mut(p) {
            n.remove_prop("xen,passthrough");
        }
    }
    for p in &spec.passthrough_host_paths {
        tree.set_prop(p, "xen,passthrough", value::empty())?;
    }
    Ok(())
}

/// Writes `/chosen`: bootargs, dom0's modules, cpupools, one node per domain.
fn write_chosen(
    tree: &mut DeviceTree,
    spec: &ChosenSpec,
    phandles: &PoolPhandles,
) -> Result<(), DtError> {
    if tree.node("/chosen").is_none() {
        tree.root.add_child(Node::new("chosen"));
    }
    let chosen = tree
        .node_mut("/chosen")
        .ok_or_else(|| DtError::NodeNotFound("/chosen".into()))?;
    chosen.set_prop("#address-cells", value::u32(2));
    chosen.set_prop("#size-cells", value::u32(2));
    chosen.set_prop("xen,xen-bootargs", value::string(&spec.xen_bootargs));
    if let Some(d0) = &spec.dom0 {
        if let Some(b) = &d0.bootargs {
            chosen.set_prop("xen,dom0-bootargs", value::string(b));
        }
        for m in std::iter::once(&d0.kernel)
            .chain(&d0.ramdisk)
            .chain(&d0.xsm_policy)
        {
            push_module(chosen, m)?;
        }
    }
    for (i, c) in spec.cpupools.iter().enumerate() {
        let cpus = phandles.cpus.get(i).cloned().unwrap_or_default();
        chosen
            .children
            .push(cpupool_node(c, &cpus, phandles.pools.get(i).copied()));
    }
    for d in &spec.domains {
        let pool = match &d.cpupool {
            Some(p) => Some(
                spec.cpupools
                    .iter()
                    .position(|c| &c.node_name == p)
                    .and_then(|i| phandles.pools.get(i).copied())
                    .ok_or_else(|| invalid(format!("no cpupool {p}")))?,
            ),
            None => None,
        };
        chosen.children.push(domain_node(d, pool)?);
    }
    Ok(())
}

fn cpupool_node(c: &CpupoolSpec, cpu_phandles: &[u32], phandle: Option<u32>) -> Node {
    let mut n = Node::new(c.node_name.clone());
    n.set_prop("compatible", value::string("xen,cpupool"));
    n.set_prop("cpupool-cpus", value::cells(cpu_phandles));
    if let Some(s) = &c.sched {
        n.set_prop("cpupool-sched", value::string(s));
    }
    if let Some(h) = phandle {
        n.set_prop("phandle", value::u32(h));
    }
    n
}

/// One `xen,domain` node (booting.txt "Creating Multiple Domains directly from Xen").
fn domain_node(d: &DomainNodeSpec, cpupool_phandle: Option<u32>) -> Result<Node, DtError> {
    let mut n = Node::new(d.node_name.clone());
    n.set_prop("compatible", value::string("xen,domain"));
    n.set_prop("#address-cells", value::u32(2));
    n.set_prop("#size-cells", value::u32(2));
    // `memory` is read with dt_property_read_u64: always two cells.
    n.set_prop("memory", value::u64(d.memory_kib));
    n.set_prop("cpus", value::u32(d.cpus));
    if d.vpl011 {
        n.set_prop("vpl011", value::empty());
    }
    if let Some(e) = &d.enhanced {
        n.set_prop("xen,enhanced", value::string(e.as_str()));
    }
    if !d.static_mem.is_empty() {
        // Cells of the parent (/chosen: 2 + 2) — booting.txt "Static Allocation" (4.17+).
        let v: Vec<u8> = d
            .static_mem
            .iter()
            .flat_map(|r| [value::u64(r.base), value::u64(r.size)].concat())
            .collect();
        n.set_prop("xen,static-mem", v);
    }
    if d.direct_map {
        n.set_prop("direct-map", value::empty());
    }
    if let Some(h) = cpupool_phandle {
        n.set_prop("domain-cpupool", value::u32(h));
    }
    for p in &d.extra {
        n.set_prop(&p.name, p.value.clone());
    }
    for v in &d.vcpu_affinity {
        let mut c = Node::new(format!("vcpu{}", v.id));
        c.set_prop("compatible", value::string("xen,vcpu"));
        c.set_prop("id", value::u32(v.id));
        c.set_prop("hard-affinity", value::string(&v.hard_affinity));
        n.children.push(c);
    }
    for m in &d.modules {
        push_module(&mut n, m)?;
    }
    Ok(n)
}
