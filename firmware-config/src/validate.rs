//! Whole-system validation: can this manifest work on this board with this Xen?
//!
//! Every rule has its own error code (documented in `docs/manifest.md`) and points at the manifest text
//! that breaks it. All rules run; the caller gets every problem at once. Nothing here panics on any
//! input: arithmetic is checked and lookups are fallible.

use crate::artifacts::{ArtifactTable, ImageFormat};
use crate::board::{
    Arch, Board, DeviceInterrupt, HardwareInventory, InterruptControllerKind, Region,
};
use crate::diag::{Diagnostic, Diagnostics};
use crate::guest_map;
use crate::manifest::*;
use crate::units::{MIB, PAGE_SIZE, human_size};
use crate::xen::{XenFeature, XenVersion};
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

mod domain_rules;
mod passthrough_rules;
mod pv_devices;
mod xen_support;

pub use pv_devices::{Backend, DOM0_NAMES, backend_of, domu_serves_domu, mac_of, needs_xenstore};

/// Everything validation looks at. The caller gathers it; validation only reads.
#[derive(Clone, Copy)]
pub struct CheckInput<'a> {
    pub manifest: &'a Manifest,
    pub board: &'a Board,
    pub inventory: &'a HardwareInventory,
    pub artifacts: &'a ArtifactTable,
}

/// Hypervisor build options a manifest may declare with `xen_features` (Kconfig options that
/// Debian's build lacks).
pub const XEN_BUILD_FEATURES: &[&str] = &["static-memory", "boot-cpupools"];

/// Default dom0 memory when `[dom0] memory` is not given.
pub const DEFAULT_DOM0_MEMORY: u64 = 512 * MIB;

pub use crate::pools::default_p2m_pool;
use crate::pools::libxl_paging_pool as default_paging_pool_x86;

/// The paging/P2M pool a domain gets by default, per architecture.
pub fn default_pool(kind: DomainKind, vcpus: u32, memory: u64) -> u64 {
    match kind {
        DomainKind::Arm64 => default_p2m_pool(vcpus, memory),
        DomainKind::Pvh => default_paging_pool_x86(vcpus, memory),
    }
}

/// Whether the system has a dom0, from `[system] dom0` and the `[dom0]` table.
pub fn has_dom0(m: &Manifest) -> bool {
    m.system.dom0.as_ref().map_or(m.dom0.is_some(), |d| d.value)
}

/// Effective console of a domain: explicit, else vpl011 for arm64 guests and hvc for PVH guests.
pub fn console_of(d: &Domain) -> Console {
    match (&d.console, d.kind.value) {
        (Some(c), _) => c.value,
        (None, DomainKind::Arm64) => Console::Vpl011,
        (None, DomainKind::Pvh) => Console::Hvc,
    }
}

/// Effective `xen,enhanced`: explicit, else enabled when a dom0 can serve xenstore (ImageBuilder's
/// default), else disabled (Xen panics when xenstore is requested without a xenstore domain).
pub fn enhanced_of(m: &Manifest, d: &Domain) -> Enhanced {
    match &d.enhanced {
        Some(e) => e.value,
        None if has_dom0(m) || m.domains.iter().any(|o| o.has_role(Role::Xenstore)) => {
            Enhanced::Enabled
        }
        None => Enhanced::Disabled,
    }
}

/// Runs every rule. Errors and warnings come back together.
pub fn check(input: CheckInput<'_>) -> Diagnostics {
    let mut v = Validator {
        input,
        d: Diagnostics::default(),
    };
    v.system();
    v.names();
    v.domains();
    v.roles();
    v.cpupools();
    v.dependencies();
    v.ownership();
    v.shared_memory();
    v.memory_fits();
    v.console_driver();
    v.static_memory_build();
    v.passthrough_rules();
    v.pv_devices();
    v.d
}

struct Validator<'a> {
    input: CheckInput<'a>,
    d: Diagnostics,
}

impl<'a> Validator<'a> {
    fn m(&self) -> &'a Manifest {
        self.input.manifest
    }
    fn xen(&self) -> XenVersion {
        self.input.manifest.system.xen.value
    }
    fn cpus(&self) -> u32 {
        u32::try_from(self.input.inventory.cpus.len()).unwrap_or(u32::MAX)
    }
    fn gic_v3(&self) -> bool {
        matches!(
            self.input
                .inventory
                .interrupt_controller
                .as_ref()
                .map(|c| c.kind),
            Some(InterruptControllerKind::GicV3)
        )
    }

    fn need(&mut self, feature: XenFeature, span: &Span, what: &str) {
        let target = self.xen();
        if !feature.available_in(target) {
            self.d.push(
                Diagnostic::error(
                    "E0218",
                    format!(
                        "{what} needs Xen {} or later; this system targets Xen {target}",
                        feature.since()
                    ),
                )
                .at(
                    span.clone(),
                    format!(
                        "emitted as `{}`, first in Xen {}",
                        feature.binding(),
                        feature.since()
                    ),
                )
                .help(format!(
                    "set `xen = \"{}\"` in [system], or remove this",
                    feature.since()
                )),
            );
        }
    }

    fn system(&mut self) {
        let m = self.m();
        let xen = &m.system.xen;
        if !xen.value.is_supported() {
            self.d.push(
                Diagnostic::error("E0202", format!("Xen {} is not supported", xen.value)).at(
                    xen.span.clone(),
                    format!(
                        "domforge speaks Xen {} to {}",
                        XenVersion::OLDEST,
                        XenVersion::NEWEST
                    ),
                ),
            );
        }
        for f in &m.system.xen_features {
            if !XEN_BUILD_FEATURES.contains(&f.value.as_str()) {
                self.d.push(
                    Diagnostic::error(
                        "E0244",
                        format!("unknown hypervisor build feature `{}`", f.value),
                    )
                    .at(
                        f.span.clone(),
                        format!("known: {}", XEN_BUILD_FEATURES.join(", ")),
                    )
                    .suggest(
                        &f.value,
                        XEN_BUILD_FEATURES.iter().copied(),
                        None,
                    ),
                );
            }
        }
        match (&m.system.dom0, &m.dom0) {
            (Some(flag), None) if flag.value => self.d.push(
                Diagnostic::error("E0227", "`dom0 = true` but there is no [dom0] table")
                    .at(flag.span.clone(), "dom0 enabled here")
                    .help("add a [dom0] table with at least `kernel`"),
            ),
            (Some(flag), Some(t)) if !flag.value => self.d.push(
                Diagnostic::error("E0227", "`dom0 = false` but a [dom0] table is present")
                    .at(flag.span.clone(), "dom0 disabled here")
                    .also(t.span.clone(), "dom0 described here"),
            ),
            _ => {}
        }
        let dom0 = has_dom0(m);
        if self.input.board.arch == Arch::X86_64 && !dom0 {
            self.d.push(
                Diagnostic::error(
                    "E0237",
                    "an x86 system needs a dom0: it runs domforge-init, which builds the guests",
                )
                .at(m.system.board.span.clone(), "this board is x86_64")
                .note("upstream Xen has no dom0less on x86 (Hyperlaunch is not merged as of 4.22)")
                .help("add `dom0 = true` and a [dom0] table"),
            );
        }
        let xen_source = match &m.system.hypervisor {
            Some(h) => h.clone(),
            None => At::new(String::from("debian:xen"), m.system.xen.span.clone()),
        };
        // An unsupported release is reported once (E0202); its package would not exist either.
        if m.system.xen.value.is_supported() {
            self.artifact(
                &xen_source,
                &[Accept::Hypervisor(self.input.board.arch)],
                "hypervisor",
            );
        }
        if let Some(d0) = &m.dom0 {
            if let Some(v) = &d0.vcpus
                && (v.value == 0 || v.value > self.cpus())
            {
                self.d.push(
                    Diagnostic::error(
                        "E0206",
                        format!(
                            "dom0 asks for {} vCPUs; the board has {} CPUs",
                            v.value,
                            self.cpus()
                        ),
                    )
                    .at(v.span.clone(), "here"),
                );
            }
            self.artifact(
                &d0.kernel,
                &[Accept::Kernel(self.input.board.arch)],
                "dom0 kernel",
            );
            if let Some(r) = &d0.ramdisk {
                self.artifact(r, &[Accept::Ramdisk], "dom0 ramdisk");
            }
        }
    }

    fn names(&mut self) {
        let mut seen: BTreeMap<&str, &Span> = BTreeMap::new();
        for d in &self.m().domains {
            if d.name.value == "dom0" || d.name.value == "xen" {
                self.d.push(
                    Diagnostic::error("E0205", format!("`{}` is a reserved name", d.name.value))
                        .at(
                            d.name.span.clone(),
                            "reserved for the hypervisor and its first domain",
                        ),
                );
            }
            if let Some(first) = seen.insert(&d.name.value, &d.name.span) {
                self.d.push(
                    Diagnostic::error("E0205", format!("two domains are named `{}`", d.name.value))
                        .at(d.name.span.clone(), "second use")
                        .also(first.clone(), "first use"),
                );
            }
        }
    }

    /// A file the bundle ships as it is (a disk image): it must exist and be whole.
    fn artifact_any(&mut self, source: &At<String>, what: &str) {
        self.artifact(source, &[Accept::DiskImage], what);
    }

    fn artifact(
        &mut self,
        source: &At<String>,
        accept: &[Accept],
        what: &str,
    ) -> Option<ImageFormat> {
        match self.input.artifacts.get(&source.value) {
            None => {
                self.d.push(
                    Diagnostic::error(
                        "E0216",
                        format!("{what} `{}` was not examined", source.value),
                    )
                    .at(source.span.clone(), "no facts about this file"),
                );
                None
            }
            Some(Err(why)) => {
                self.d.push(
                    Diagnostic::error("E0216", format!("{what} `{}` cannot be used: {why}", source.value))
                        .at(source.span.clone(), "this file")
                        .help("paths are relative to the manifest's directory; the other sources are `debian:kernel`, `debian:xen`, `builtin:probe` and `builtin:xen-static-memory` (docs/manifest.md, \"Artifact sources\")"),
                );
                None
            }
            Some(Ok(f)) => {
                if let ImageFormat::Damaged {
                    what: format,
                    reason,
                } = &f.format
                {
                    self.d.push(
                        Diagnostic::error(
                            "E0251",
                            format!("{what} `{}` is {format} cut short or damaged", source.value),
                        )
                        .at(source.span.clone(), reason.clone())
                        .note(format!("{} has {} bytes", f.path, f.size))
                        .help("the file is not the whole image (an interrupted download or copy?): fetch, build or copy it again"),
                    );
                    return None;
                }
                if !accept.iter().any(|a| a.accepts(&f.format)) {
                    let expected: Vec<&str> = accept.iter().map(Accept::describe).collect();
                    let mut d = Diagnostic::error(
                        "E0217",
                        format!(
                            "{what} `{}` is {}, not {}",
                            source.value,
                            describe_format(&f.format),
                            expected.join(" or ")
                        ),
                    )
                    .at(source.span.clone(), "wrong kind of file");
                    if let ImageFormat::Elf {
                        pvh_entry: None, ..
                    }
                    | ImageFormat::BzImage { pvh_entry: None } = f.format
                    {
                        d = d.help("the kernel has no XEN_ELFNOTE_PHYS32_ENTRY note: build it with CONFIG_PVH=y");
                    }
                    if let ImageFormat::Unknown(what) = &f.format {
                        if what.contains(".deb package") {
                            d = d.help("give the file inside the package (`dpkg-deb -x PKG.deb DIR`, then DIR/boot/...), or `debian:kernel` / `debian:xen`, which domforge unpacks itself");
                        } else if what.contains("uImage") {
                            d = d.help("give the image inside the U-Boot wrapper (`dumpimage -T kernel -p 0 -o Image uImage`, or the `Image` the build made before `mkimage`)");
                        }
                    }
                    self.d.push(d);
                }
                Some(f.format.clone())
            }
        }
    }

    fn roles(&mut self) {
        let m = self.m();
        let dom0 = has_dom0(m);
        for role in [Role::Hardware, Role::Xenstore, Role::Control] {
            let holders: Vec<&Domain> = m.domains.iter().filter(|d| d.has_role(role)).collect();
            for d in &holders {
                let span = d
                    .roles
                    .iter()
                    .find(|r| r.value == role)
                    .map_or(d.name.span.clone(), |r| r.span.clone());
                if d.kind.value == DomainKind::Pvh || d.builder() == Builder::Init {
                    self.d.push(
                        Diagnostic::error(
                            "E0215",
                            format!(
                                "domain `{}` cannot be the {} domain",
                                d.name.value,
                                role_name(role)
                            ),
                        )
                        .at(span, "only dom0 or a dom0less domain can hold this role")
                        .help("on x86, dom0 is the hardware, control and xenstore domain"),
                    );
                    continue;
                }
                self.need(
                    XenFeature::Capabilities,
                    &span,
                    &format!("a {} domain other than dom0", role_name(role)),
                );
                if dom0 && role != Role::Control {
                    self.d.push(
                        Diagnostic::error("E0236", format!("dom0 is already the {} domain", role_name(role)))
                            .at(span, format!("`{}` cannot take it too", d.name.value))
                            .help("remove the role, or remove dom0 and let this domain take its place (Xen 4.21+)"),
                    );
                }
            }
            if role != Role::Control && holders.len() > 1 {
                let mut diag = Diagnostic::error(
                    "E0215",
                    format!(
                        "{} domains claim the {} role; Xen allows one",
                        holders.len(),
                        role_name(role)
                    ),
                );
                for (i, d) in holders.iter().enumerate() {
                    let span = d
                        .roles
                        .iter()
                        .find(|r| r.value == role)
                        .map_or(d.name.span.clone(), |r| r.span.clone());
                    diag = if i == 0 {
                        diag.at(span, "first here")
                    } else {
                        diag.also(span, "again here")
                    };
                }
                self.d.push(diag);
            }
        }
    }

    fn cpupools(&mut self) {
        let m = self.m();
        let cpus = self.cpus();
        let mut names: BTreeMap<&str, &Cpupool> = BTreeMap::new();
        let mut cpu_owner: BTreeMap<u32, &str> = BTreeMap::new();
        if let Some(first) = m.cpupools.first()
            && !m
                .system
                .xen_features
                .iter()
                .any(|f| f.value == "boot-cpupools")
        {
            self.d.push(
                    Diagnostic::error("E0249", "boot-time cpupools need a Xen built with CONFIG_BOOT_TIME_CPUPOOLS")
                        .at(first.name.span.clone(), "Debian's Xen 4.17 and 4.20 are built without it")
                        .help("build Xen with CONFIG_BOOT_TIME_CPUPOOLS=y, point `hypervisor` at it and add `xen_features = [\"boot-cpupools\"]` to [system]"),
                );
        }
        for p in &m.cpupools {
            self.need(XenFeature::Cpupools, &p.name.span, "boot-time cpupools");
            if names.insert(&p.name.value, p).is_some() {
                self.d.push(
                    Diagnostic::error(
                        "E0225",
                        format!("two cpupools are named `{}`", p.name.value),
                    )
                    .at(p.name.span.clone(), "second use"),
                );
            }
            if p.cpus.value.is_empty() {
                self.d.push(
                    Diagnostic::error("E0225", "a cpupool needs at least one CPU")
                        .at(p.cpus.span.clone(), "empty"),
                );
            }
            for c in &p.cpus.value {
                if c.value >= cpus {
                    self.d.push(
                        Diagnostic::error(
                            "E0225",
                            format!("CPU {} does not exist; the board has {cpus} CPUs", c.value),
                        )
                        .at(c.span.clone(), "missing CPU"),
                    );
                } else if c.value == 0 {
                    self.d.push(
                        Diagnostic::error("E0225", "CPU 0 cannot leave Pool-0")
                            .at(c.span.clone(), "the boot CPU")
                            .note("the boot CPU's pool becomes Pool-0 (docs/misc/arm/device-tree/cpupools.txt)"),
                    );
                } else if let Some(other) = cpu_owner.insert(c.value, &p.name.value) {
                    self.d.push(
                        Diagnostic::error(
                            "E0225",
                            format!(
                                "CPU {} is in cpupools `{other}` and `{}`",
                                c.value, p.name.value
                            ),
                        )
                        .at(c.span.clone(), "a CPU belongs to one pool"),
                    );
                }
            }
        }
        for d in &m.domains {
            let Some(pool) = &d.cpupool else { continue };
            match names.get(pool.value.as_str()) {
                None => {
                    self.d.push(
                        Diagnostic::error("E0225", format!("no cpupool is named `{}`", pool.value))
                            .at(pool.span.clone(), "unknown pool")
                            .suggest(
                                &pool.value,
                                names.keys().copied(),
                                Some("declare it with a [[cpupool]] table"),
                            ),
                    );
                }
                Some(p) => {
                    let pool_cpus: BTreeSet<u32> = p.cpus.value.iter().map(|c| c.value).collect();
                    for a in &d.vcpu_affinity {
                        if let Some(c) = a.value.0.iter().find(|c| !pool_cpus.contains(c)) {
                            self.d.push(
                                Diagnostic::error(
                                    "E0226",
                                    format!("CPU {c} is not in cpupool `{}`", p.name.value),
                                )
                                .at(a.span.clone(), "pinned outside the domain's pool"),
                            );
                        }
                    }
                }
            }
        }
    }

    fn dependencies(&mut self) {
        let m = self.m();
        let names: Vec<&str> = m.domains.iter().map(|d| d.name.value.as_str()).collect();
        for d in &m.domains {
            for dep in &d.depends_on {
                if dep.value == d.name.value {
                    self.d.push(
                        Diagnostic::error("E0224", "a domain cannot depend on itself")
                            .at(dep.span.clone(), "here"),
                    );
                } else if !names.contains(&dep.value.as_str()) {
                    self.d.push(
                        Diagnostic::error("E0224", format!("no domain is named `{}`", dep.value))
                            .at(dep.span.clone(), "unknown domain")
                            .suggest(&dep.value, names.iter().copied(), None),
                    );
                }
            }
        }
        if let Err(cycle) = boot_order(m) {
            // Each edge of the cycle is one `depends_on` entry: show them all, and propose the
            // one written last (the newest, most likely the mistake) for removal.
            let edges: Vec<(&str, &str, Span, &str)> = cycle
                .windows(2)
                .filter_map(|w| {
                    let (_, (span, how)) =
                        boot_edges(m.domain(&w[0])?).find(|(to, _)| *to == w[1])?;
                    Some((w[0].as_str(), w[1].as_str(), span.clone(), how))
                })
                .collect();
            let via_devices = edges.iter().any(|e| e.3 != "depends on");
            let last = edges
                .iter()
                .enumerate()
                .max_by_key(|(_, e)| e.2.start)
                .map_or(0, |(i, _)| i);
            let what = if via_devices {
                "boot dependencies (`depends_on` and PV backends) form"
            } else {
                "`depends_on` forms"
            };
            let mut diag =
                Diagnostic::error("E0224", format!("{what} a cycle: {}", cycle.join(" -> ")));
            if let Some((from, to, span, how)) = edges.get(last) {
                let help = if *how == "depends on" {
                    format!(
                        "remove one edge of the cycle, e.g. `\"{to}\"` from the `depends_on` of `{from}`"
                    )
                } else {
                    format!(
                        "break one edge of the cycle, e.g. serve `{from}`'s device from another domain than `{to}` (or from dom0: leave `backend=` out)"
                    )
                };
                diag = diag
                    .at(span.clone(), format!("`{from}` {how} `{to}`"))
                    .help(help);
                if via_devices {
                    diag = diag.note("a frontend boots after the domains serving its devices");
                }
            }
            for (i, (from, to, span, how)) in edges.iter().enumerate() {
                if i != last {
                    diag = diag.also(span.clone(), format!("`{from}` {how} `{to}`"));
                }
            }
            self.d.push(diag);
        }
    }

    /// Devices, MMIO ranges and interrupts: each belongs to at most one domain.
    fn ownership(&mut self) {
        let m = self.m();
        let inv = self.input.inventory;
        let xen_uart = self
            .input
            .board
            .console_uart
            .clone()
            .or_else(|| inv.stdout_path.clone());
        let mut device_owner: BTreeMap<&str, (&str, Span)> = BTreeMap::new();
        let mut irq_owner: BTreeMap<u32, (&str, Span)> = BTreeMap::new();
        // (range, owner, what, span)
        let mut host_ranges: Vec<(Region, &str, String, Span)> = Vec::new();
        for d in &m.domains {
            for g in &d.iomem {
                host_ranges.push((
                    g.value.host_region(),
                    &d.name.value,
                    "iomem grant".into(),
                    g.span.clone(),
                ));
            }
            if d.kind.value != DomainKind::Arm64 {
                continue;
            }
            let vpl011 = console_of(d) == Console::Vpl011;
            let mut claim_irq = |v: &mut Self, irq: u32, span: &Span, via: &str| {
                if let Some((other, first)) = irq_owner.get(&irq) {
                    if *other != d.name.value {
                        v.d.push(
                            Diagnostic::error("E0211", format!("interrupt {irq} is given to `{other}` and `{}`", d.name.value))
                                .at(span.clone(), format!("claimed again {via}"))
                                .also(first.clone(), "first claimed here")
                                .note("ARM passthrough interrupts are 1:1 (virtual = physical); one owner each"),
                        );
                    }
                } else {
                    irq_owner.insert(irq, (&d.name.value, span.clone()));
                }
                if vpl011 && irq == guest_map::VPL011_SPI && !d.direct_map() {
                    v.d.push(
                        Diagnostic::error("E0212", format!("interrupt 32 of `{}` collides with its vpl011 UART", d.name.value))
                            .at(span.clone(), "the vpl011 uses SPI 32 (GUEST_VPL011_SPI)")
                            .help("use `console = \"hvc\"` or `\"none\"` for this domain, or pass another device"),
                    );
                }
            };
            for irq in &d.irqs {
                // Raw grants on a dom0less domain are refused on their own (E0247).
                if d.builder() != Builder::Xen {
                    claim_irq(self, irq.value, &irq.span, "in `irqs`");
                }
            }
            for r in &d.static_memory {
                host_ranges.push((
                    r.value,
                    &d.name.value,
                    "static memory".into(),
                    r.span.clone(),
                ));
            }
            for p in &d.passthrough {
                // Nodes Xen keeps (the interrupt controller and what hangs below it, an IOMMU) and
                // CPUs are in the tree but not among the passable devices: name them for what they
                // are instead of claiming the path does not exist.
                if let Some(what) = xen_own_node(inv, &p.value) {
                    self.d.push(
                        Diagnostic::error("E0232", format!("`{}` belongs to Xen", p.value))
                            .at(p.span.clone(), what)
                            .help("pass another device; Xen needs this one itself"),
                    );
                    continue;
                }
                let Some(dev) = inv.device(&p.value) else {
                    self.d.push(
                        Diagnostic::error(
                            "E0209",
                            format!("the board has no device at `{}`", p.value),
                        )
                        .at(p.span.clone(), "not in the board's device tree")
                        .suggest(
                            &p.value,
                            inv.devices.iter().map(|d| d.path.as_str()),
                            Some("list the board's devices with `domforge inspect --board BOARD`"),
                        ),
                    );
                    continue;
                };
                if let Some((other, first)) = device_owner.get(dev.path.as_str()) {
                    self.d.push(
                        Diagnostic::error(
                            "E0210",
                            format!(
                                "device `{}` is given to `{other}` and `{}`",
                                dev.path, d.name.value
                            ),
                        )
                        .at(p.span.clone(), "claimed again here")
                        .also(first.clone(), "first claimed here"),
                    );
                    continue;
                }
                device_owner.insert(&dev.path, (&d.name.value, p.span.clone()));
                let is_xen_uart = xen_uart.as_deref() == Some(dev.path.as_str());
                let is_core = inv
                    .interrupt_controller
                    .as_ref()
                    .is_some_and(|c| c.path == dev.path)
                    || inv.iommus.contains(&dev.path);
                if is_xen_uart || is_core {
                    self.d.push(
                        Diagnostic::error("E0232", format!("`{}` belongs to Xen", dev.path))
                            .at(
                                p.span.clone(),
                                if is_xen_uart {
                                    "Xen's own console UART"
                                } else {
                                    "an interrupt controller or IOMMU Xen drives"
                                },
                            )
                            .help("pass another device; Xen needs this one itself"),
                    );
                    continue;
                }
                if !dev.enabled {
                    self.d.push(
                        Diagnostic::error("E0239", format!("`{}` is disabled (`status`) in the board's device tree", dev.path))
                            .at(p.span.clone(), "a disabled device cannot be passed through")
                            .note("the board's firmware did not set it up, and a guest would see it disabled too")
                            .help("enable it in the board's device tree (or a board file with its own DTB), or pass another device"),
                    );
                    continue;
                }
                if !dev.behind_iommu {
                    if d.force_without_iommu() && dev.dma_capable && !d.direct_map() {
                        let span = d
                            .force_without_iommu
                            .as_ref()
                            .map_or(p.span.clone(), |f| f.span.clone());
                        self.d.push(
                            Diagnostic::error("E0248", format!("`{}` masters DMA, has no IOMMU, and `{}` is not direct-mapped", dev.path, d.name.value))
                                .at(span, "its DMA would use guest-physical addresses as host addresses")
                                .note("without an IOMMU a device's DMA uses host addresses; it works only when guest RAM equals host RAM (direct map)")
                                .help("give this domain `static_memory` and `direct_map = true` (needs a Xen with CONFIG_STATIC_MEMORY), or pass a device that does no DMA"),
                        );
                    } else if d.force_without_iommu() {
                        let span = d
                            .force_without_iommu
                            .as_ref()
                            .map_or(p.span.clone(), |f| f.span.clone());
                        self.d.push(
                            Diagnostic::warning("W0201", format!("`{}` has no IOMMU: any DMA it does is not confined to its guest", dev.path))
                                .at(span, "forced without an IOMMU")
                                .note(if dev.dma_capable { "this device can master DMA: only a trusted, direct-mapped guest should own it" } else { "the device tree shows no DMA capability" }),
                        );
                    } else {
                        self.d.push(
                            Diagnostic::error("E0213", format!("`{}` has no IOMMU in front of it", dev.path))
                                .at(p.span.clone(), "passthrough without an IOMMU")
                                .note("without an IOMMU a device's DMA is not confined to its guest")
                                .help("if you trust the guest, set `force_without_iommu = true` on this domain (emits xen,force-assign-without-iommu)"),
                        );
                    }
                }
                // Xen maps whole pages (`xen,reg` must be page aligned), so two devices that share a
                // page (virtio-mmio slots are 0x200 apart) cannot go to different domains.
                for r in &dev.regions {
                    let base = r.base & !(PAGE_SIZE - 1);
                    let end = crate::units::align_up(r.base.saturating_add(r.size), PAGE_SIZE)
                        .unwrap_or(u64::MAX);
                    host_ranges.push((
                        Region::new(base, end - base),
                        &d.name.value,
                        format!("MMIO of {}", dev.path),
                        p.span.clone(),
                    ));
                }
                let mut nested_reported: BTreeSet<u32> = BTreeSet::new();
                for irq in &dev.interrupts {
                    match irq {
                        DeviceInterrupt::Spi(n) => {
                            claim_irq(self, *n, &p.span, &format!("through `{}`", dev.path))
                        }
                        DeviceInterrupt::Ppi(n) => self.d.push(
                            Diagnostic::error(
                                "E0241",
                                format!("`{}` uses private interrupt {n}", dev.path),
                            )
                            .at(
                                p.span.clone(),
                                "per-CPU interrupts cannot be passed through",
                            ),
                        ),
                        // Once per controller, named by path (issue 13: "phandle 1", repeated per
                        // interrupt, told nobody anything). Known 1:1 forwarders to the GIC (i.MX GPC)
                        // are resolved by the inventory and never get here.
                        DeviceInterrupt::Nested(ph) if nested_reported.insert(*ph) => {
                            let controller = inv
                                .devices
                                .iter()
                                .find(|c| c.phandle == Some(*ph))
                                .map_or_else(
                                    || format!("the controller with phandle {ph:#x}"),
                                    |c| format!("`{}`", c.path),
                                );
                            self.d.push(
                                Diagnostic::error("E0243", format!("`{}` raises interrupts through {controller}, not the GIC", dev.path))
                                    .at(p.span.clone(), "Xen routes only GIC SPIs to guests")
                                    .note("Xen routes a passed device's interrupts only when their controller is the GIC (map_device_irqs_to_domain); passing the controller does not change that")
                                    .help("choose a device wired to the GIC, or one whose controller forwards 1:1 to it"),
                            );
                        }
                        DeviceInterrupt::Nested(_) => {}
                    }
                }
                let drop = d.drop_device_dependencies.as_ref().is_some_and(|x| x.value);
                for dep in &dev.dependencies {
                    // The same rule the fragment builder applies (device-tree/src/passthrough.rs): a
                    // dependency is met when the provider is passed to this domain too (or lives inside
                    // a passed node), or the fragment can carry it (a fixed clock). The IOMMU link is
                    // not a dependency: Xen programs the host SMMU from `xen,path`.
                    if matches!(
                        dep.property.as_str(),
                        "iommus" | "iommu-map" | "iommu-map-mask"
                    ) || dep.copyable
                    {
                        continue;
                    }
                    let inside = |outer: &str| {
                        dep.provider == outer || dep.provider.starts_with(&format!("{outer}/"))
                    };
                    let owned_too = d.passthrough.iter().any(|q| inside(&q.value));
                    if !owned_too && !drop {
                        // Suggest passing the provider only when `passthrough` would accept it: an
                        // enabled device of the inventory (not a pinctrl state, a regulator or a
                        // firmware node, which have no MMIO of their own and would be E0209).
                        let passable = inv.device(&dep.provider).is_some_and(|pd| pd.enabled);
                        let help = if passable {
                            format!(
                                "pass `{}` to this domain too, or set `drop_device_dependencies = true` if firmware already set it up",
                                dep.provider
                            )
                        } else {
                            format!(
                                "`{}` is not a device a domain can own (no MMIO of its own, or disabled); set `drop_device_dependencies = true` if firmware already set it up",
                                dep.provider
                            )
                        };
                        self.d.push(
                            Diagnostic::error(
                                "E0240",
                                format!(
                                    "`{}` needs `{}` ({})",
                                    dev.path, dep.provider, dep.property
                                ),
                            )
                            .at(
                                p.span.clone(),
                                "the guest would get the device without what it depends on",
                            )
                            .help(help),
                        );
                    }
                }
            }
        }
        for sh in &m.shared_memory {
            if let Some(h) = &sh.host_address {
                let owner = sh
                    .owner
                    .as_ref()
                    .map_or("shared memory", |o| o.value.as_str());
                host_ranges.push((
                    Region::new(h.value, sh.size.value),
                    owner,
                    format!("shared memory `{}`", sh.id.value),
                    h.span.clone(),
                ));
            }
        }
        for (i, a) in host_ranges.iter().enumerate() {
            for b in &host_ranges[i + 1..] {
                let same_device = a.2 == b.2 && a.1 == b.1;
                if a.0.overlaps(&b.0)
                    && !same_device
                    && (a.1 != b.1 || a.2.starts_with("static") || b.2.starts_with("static"))
                {
                    self.d.push(
                        Diagnostic::error(
                            "E0208",
                            format!("{} of `{}` overlaps {} of `{}`", a.2, a.1, b.2, b.1),
                        )
                        .at(b.3.clone(), fmt_region(&b.0))
                        .also(a.3.clone(), fmt_region(&a.0)),
                    );
                }
            }
        }
    }

    fn shared_memory(&mut self) {
        let m = self.m();
        let mut ids = BTreeSet::new();
        for sh in &m.shared_memory {
            self.need(
                XenFeature::SharedMemory,
                &sh.id.span,
                "static shared memory",
            );
            if sh.host_address.is_none() {
                self.need(
                    XenFeature::SharedMemoryNoHost,
                    &sh.id.span,
                    "shared memory without `host_address`",
                );
            }
            if !ids.insert(&sh.id.value) {
                self.d.push(
                    Diagnostic::error(
                        "E0233",
                        format!("two shared-memory regions use id `{}`", sh.id.value),
                    )
                    .at(sh.id.span.clone(), "second use"),
                );
            }
            if sh.size.value == 0
                || sh.size.value % PAGE_SIZE != 0
                || sh.guest_address.value % PAGE_SIZE != 0
            {
                self.d.push(
                    Diagnostic::error(
                        "E0233",
                        "shared memory must be a non-empty, page-aligned range",
                    )
                    .at(sh.size.span.clone(), "here"),
                );
            }
            if let Some(h) = &sh.host_address {
                let r = Region::new(h.value, sh.size.value);
                if !self.input.inventory.memory.iter().any(|b| b.contains(&r)) {
                    self.d.push(
                        Diagnostic::error(
                            "E0207",
                            format!("shared memory {} is not inside RAM", fmt_region(&r)),
                        )
                        .at(h.span.clone(), "outside RAM"),
                    );
                }
            }
            let guest = Region::new(sh.guest_address.value, sh.size.value);
            let members = sh.owner.iter().chain(sh.borrowers.value.iter());
            for who in members {
                let Some(d) = m.domain(&who.value) else {
                    self.d.push(
                        Diagnostic::error("E0233", format!("no domain is named `{}`", who.value))
                            .at(who.span.clone(), "unknown domain")
                            .suggest(
                                &who.value,
                                m.domains.iter().map(|d| d.name.value.as_str()),
                                None,
                            ),
                    );
                    continue;
                };
                if d.kind.value != DomainKind::Arm64 || d.builder() != Builder::Xen {
                    self.d.push(
                        Diagnostic::error(
                            "E0242",
                            "static shared memory is a dom0less (ARM) feature",
                        )
                        .at(who.span.clone(), "not a dom0less domain"),
                    );
                    continue;
                }
                let (banks, n) = guest_map::ram_banks(d.memory.value);
                let clash =
                    guest_map::fixed_regions(self.gic_v3(), console_of(d) == Console::Vpl011)
                        .chain(banks[..n].iter().map(|b| ("guest RAM", *b)))
                        .find(|(_, r)| r.overlaps(&guest));
                if let Some((what, r)) = clash {
                    self.d.push(
                        Diagnostic::error(
                            "E0221",
                            format!(
                                "shared memory `{}` lands on the guest {what} of `{}` at {}",
                                sh.id.value,
                                d.name.value,
                                fmt_region(&r)
                            ),
                        )
                        .at(sh.guest_address.span.clone(), "guest address collides"),
                    );
                }
            }
        }
    }

    fn memory_fits(&mut self) {
        let m = self.m();
        let b = crate::budget::memory_budget(self.input);
        let (needed, usable) = (b.needed(), b.usable());
        if needed > usable {
            let biggest = m.domains.iter().max_by_key(|d| d.memory.value);
            let mut diag = Diagnostic::error(
                "E0203",
                format!(
                    "the system needs {} but board `{}` has {} of usable RAM",
                    human_size(needed),
                    self.input.board.name,
                    human_size(usable)
                ),
            );
            if let Some(b) = biggest {
                diag = diag.at(
                    b.memory.span.clone(),
                    format!(
                        "the largest domain, `{}`, asks for {}",
                        b.name.value,
                        human_size(b.memory.value)
                    ),
                );
            }
            diag = diag
                .note(format!(
                    "Xen {} + dom0 {} + domains {} + static memory {} + P2M pools {} + shared memory {}",
                    human_size(b.xen),
                    human_size(b.dom0),
                    human_size(b.domains),
                    human_size(b.static_memory),
                    human_size(b.p2m_pools),
                    human_size(b.shared_memory)
                ))
                .note(format!("RAM {} minus reserved {}", human_size(b.ram), human_size(b.reserved)))
                .help(format!("free {} by shrinking domains", human_size(needed - usable)));
            self.d.push(diag);
        }
    }
}

/// What a domain waits for at boot: its `depends_on` entries and the backends of its PV devices
/// (a frontend boots after the domains serving it), each with the span that makes the edge and
/// what it is.
fn boot_edges(d: &Domain) -> impl Iterator<Item = (&str, (&Span, &'static str))> {
    let deps = d
        .depends_on
        .iter()
        .map(|x| (x.value.as_str(), (&x.span, "depends on")));
    let disks = d.disks.iter().filter_map(|x| x.backend.as_ref());
    let vifs = d.vifs.iter().filter_map(|x| x.backend.as_ref());
    let backends = disks
        .chain(vifs)
        .map(|b| (b.value.as_str(), (&b.span, "is served by")));
    deps.chain(backends)
}

/// A boot order that honours `depends_on` and PV backends: dependencies first; ties broken by `boot_order`, then by
/// manifest order. `Err` holds a cycle.
pub fn boot_order(m: &Manifest) -> Result<Vec<usize>, Vec<String>> {
    let n = m.domains.len();
    let index: BTreeMap<&str, usize> = m
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.value.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = m
        .domains
        .iter()
        .map(|d| {
            boot_edges(d)
                .filter_map(|(x, _)| index.get(x).copied())
                .filter(|j| m.domains[*j].name.value != d.name.value)
                .collect()
        })
        .collect();
    let key = |i: usize| {
        (
            m.domains[i]
                .boot_order
                .as_ref()
                .map_or(u32::MAX, |b| b.value),
            i,
        )
    };
    let mut done = std::vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n)
            .filter(|&i| !done[i] && deps[i].iter().all(|&j| done[j]))
            .min_by_key(|&i| key(i));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                // Walk from any remaining node along unfinished dependencies until a node repeats.
                let start = (0..n).find(|&i| !done[i]).unwrap_or(0);
                let mut path = Vec::new();
                let mut cur = start;
                while !path.contains(&cur) {
                    path.push(cur);
                    match deps[cur].iter().find(|&&j| !done[j]) {
                        Some(&j) => cur = j,
                        None => break,
                    }
                }
                let from = path.iter().position(|&x| x == cur).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..]
                    .iter()
                    .map(|&i| m.domains[i].name.value.clone())
                    .collect();
                if let Some(first) = cycle.first().cloned() {
                    cycle.push(first);
                }
                return Err(cycle);
            }
        }
    }
    Ok(order)
}

#[derive(Clone, Copy)]
enum Accept {
    Hypervisor(Arch),
    Arm64Image,
    PvhKernel,
    Kernel(Arch),
    Ramdisk,
    /// A disk image: any bytes a guest may read as a disk (a file system, a partition table, a
    /// raw marker file).
    DiskImage,
}

impl Accept {
    fn accepts(&self, f: &ImageFormat) -> bool {
        match self {
            // Xen on arm64 carries the Linux Image header; on x86 it is a multiboot ELF.
            Accept::Hypervisor(Arch::Arm64) => {
                matches!(f, ImageFormat::Arm64Image | ImageFormat::Xen)
            }
            Accept::Hypervisor(Arch::X86_64) => {
                matches!(f, ImageFormat::Elf { .. } | ImageFormat::Xen)
            }
            Accept::Arm64Image | Accept::Kernel(Arch::Arm64) => {
                matches!(f, ImageFormat::Arm64Image | ImageFormat::Arm64ImageGzip)
            }
            Accept::PvhKernel => matches!(
                f,
                ImageFormat::Elf {
                    pvh_entry: Some(_),
                    ..
                } | ImageFormat::BzImage { pvh_entry: Some(_) }
            ),
            Accept::Kernel(Arch::X86_64) => {
                matches!(f, ImageFormat::Elf { .. } | ImageFormat::BzImage { .. })
            }
            Accept::DiskImage => true,
            Accept::Ramdisk => !matches!(
                f,
                ImageFormat::Xen
                    | ImageFormat::DeviceTree
                    | ImageFormat::Arm64Image
                    | ImageFormat::Elf { .. }
                    | ImageFormat::BzImage { .. }
            ),
        }
    }
    fn describe(&self) -> &'static str {
        match self {
            Accept::Hypervisor(Arch::Arm64) => "a Xen arm64 image",
            Accept::Hypervisor(Arch::X86_64) => "a Xen x86 ELF (gunzipped xen.gz)",
            Accept::Arm64Image | Accept::Kernel(Arch::Arm64) => {
                "an arm64 Image (optionally gzip'd)"
            }
            Accept::PvhKernel => {
                "an x86 kernel with a PVH entry (ELF or bzImage with XEN_ELFNOTE_PHYS32_ENTRY)"
            }
            Accept::Kernel(Arch::X86_64) => "an x86 kernel (ELF or bzImage)",
            Accept::Ramdisk => "an initramfs",
            Accept::DiskImage => "a disk image",
        }
    }
}

/// What a passthrough path names when it is a node Xen keeps for itself rather than a device:
/// the interrupt controller (or a node below it, such as a GICv3 ITS), an IOMMU, or a CPU.
fn xen_own_node(inv: &crate::board::HardwareInventory, path: &str) -> Option<&'static str> {
    let below =
        |node: &str| path == node || path.strip_prefix(node).is_some_and(|r| r.starts_with('/'));
    if inv
        .interrupt_controller
        .as_ref()
        .is_some_and(|c| below(&c.path))
    {
        return Some("the interrupt controller: Xen drives it and gives each guest a virtual one");
    }
    if inv.iommus.iter().any(|i| i == path) {
        return Some("an IOMMU: Xen programs it to confine the devices behind it");
    }
    if inv.cpus.iter().any(|c| c.path == path) {
        return Some("a physical CPU: guests get vCPUs (`vcpus`), and Xen schedules them");
    }
    None
}

fn describe_format(f: &ImageFormat) -> String {
    match f {
        ImageFormat::Arm64Image => "an arm64 Image".into(),
        ImageFormat::Arm64ImageGzip => "a gzip'd arm64 Image".into(),
        ImageFormat::Elf { machine, pvh_entry } => format!(
            "an ELF for {machine}{}",
            if pvh_entry.is_some() {
                " with a PVH entry"
            } else {
                " without a PVH entry"
            }
        ),
        ImageFormat::BzImage { pvh_entry } => format!(
            "an x86 bzImage{}",
            if pvh_entry.is_some() {
                " with a PVH entry"
            } else {
                " without a PVH entry"
            }
        ),
        ImageFormat::Initramfs => "an initramfs".into(),
        ImageFormat::DeviceTree => "a device tree blob".into(),
        ImageFormat::Xen => "a Xen hypervisor image".into(),
        ImageFormat::Damaged { what, .. } => format!("{what} cut short or damaged"),
        ImageFormat::Unknown(what) => what.clone(),
    }
}

pub fn fmt_region(r: &Region) -> String {
    format!("[{:#x}, {:#x})", r.base, r.base.saturating_add(r.size))
}

fn kind_name(k: DomainKind) -> &'static str {
    match k {
        DomainKind::Arm64 => "arm64",
        DomainKind::Pvh => "pvh (x86_64)",
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::App => "app",
        Role::Driver => "driver",
        Role::Control => "control",
        Role::Hardware => "hardware",
        Role::Xenstore => "xenstore",
    }
}

fn on_crash_name(o: OnCrash) -> &'static str {
    match o {
        OnCrash::Destroy => "destroy",
        OnCrash::Restart => "restart",
        OnCrash::RebootPlatform => "reboot-platform",
    }
}

/// E0250: a setting only Xen's dom0less builder implements, on a domain domforge-init builds.
/// Static memory (`xen,static-mem`, and with it `direct-map`) is allocated by Xen from ranges it
/// reserved at boot (`xen/arch/arm/dom0less-build.c`); no domctl gives a toolstack those frames,
/// and `xen,enhanced` only says which PV interfaces Xen sets up for a domain it builds itself.
fn dom0less_only(domain: &str, what: &str, span: crate::manifest::Span) -> Diagnostic {
    Diagnostic::error(
        "E0250",
        format!("{what} is a dom0less setting, but `{domain}` is built by domforge-init"),
    )
    .at(span, "only Xen's boot-time builder implements this")
    .note("domforge-init builds the domain through domctls, which cannot allocate Xen's reserved static memory and always set up the PV interfaces")
    .help("use `builder = \"xen\"` for this domain, or drop the setting")
}

#[cfg(test)]
mod diagnostics_tests;

#[cfg(test)]
mod tests {
    //! Rules that need hardware the QEMU boards lack (shared interrupts, SPI 32, disabled devices,
    //! clock controllers), checked against small hand-made inventories.
    use super::*;
    use crate::board::{DeviceDependency, DeviceNode};
    use crate::testing;

    fn device(path: &str, base: u64, spi: u32) -> DeviceNode {
        testing::device(path, base, std::vec![DeviceInterrupt::Spi(spi)])
    }

    fn inventory(devices: Vec<DeviceNode>) -> HardwareInventory {
        testing::gic_v3_inventory("/intc", devices)
    }

    fn codes(manifest: &str, inv: &HardwareInventory) -> Vec<&'static str> {
        let artifacts = testing::arm64_artifacts(&["Image", "debian:xen"], 4096);
        let diags = testing::check_on_virt(manifest, inv, &artifacts);
        diags.errors().map(|d| d.code).collect()
    }

    const HEAD: &str = "[system]\nname = \"t\"\nboard = \"qemu-virt-arm64\"\n";

    fn domain(name: &str, extra: &str) -> String {
        format!(
            "\n[[domain]]\nname = \"{name}\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\nconsole = \"none\"\n{extra}\n"
        )
    }

    #[test]
    fn a_shared_interrupt_cannot_go_to_two_domains() {
        let inv = inventory(std::vec![
            device("/a@1000000", 0x100_0000, 40),
            device("/b@2000000", 0x200_0000, 40)
        ]);
        let m = format!(
            "{HEAD}{}{}",
            domain("one", "passthrough = [\"/a@1000000\"]"),
            domain("two", "passthrough = [\"/b@2000000\"]")
        );
        assert_eq!(codes(&m, &inv), ["E0211"]);
    }

    #[test]
    fn spi_32_collides_with_the_vpl011() {
        let inv = inventory(std::vec![device("/a@1000000", 0x100_0000, 32)]);
        let m = format!(
            "{HEAD}{}",
            domain("one", "passthrough = [\"/a@1000000\"]").replace("\"none\"", "\"vpl011\"")
        );
        assert_eq!(codes(&m, &inv), ["E0212"]);
        let m = format!("{HEAD}{}", domain("one", "passthrough = [\"/a@1000000\"]"));
        assert!(
            codes(&m, &inv).is_empty(),
            "without a vpl011 SPI 32 is free"
        );
    }

    #[test]
    fn disabled_devices_and_unmet_dependencies_are_refused() {
        let mut a = device("/a@1000000", 0x100_0000, 40);
        a.enabled = false;
        let inv = inventory(std::vec![a]);
        let m = format!("{HEAD}{}", domain("one", "passthrough = [\"/a@1000000\"]"));
        assert_eq!(codes(&m, &inv), ["E0239"]);

        let mut a = device("/a@1000000", 0x100_0000, 40);
        let dep = |property: &str, provider: &str, copyable| DeviceDependency {
            property: property.into(),
            provider: provider.into(),
            copyable,
        };
        a.dependencies = std::vec![
            dep("clocks", "/clk@3000000", false),
            dep("clocks", "/osc", true),
            dep("iommus", "/smmu", false),
            dep("phy-handle", "/a@1000000/phy", false)
        ];
        let inv = inventory(std::vec![a, device("/clk@3000000", 0x300_0000, 41)]);
        let m = format!("{HEAD}{}", domain("one", "passthrough = [\"/a@1000000\"]"));
        assert_eq!(
            codes(&m, &inv),
            ["E0240"],
            "only the clock controller is unmet"
        );
        let m = format!(
            "{HEAD}{}",
            domain("one", "passthrough = [\"/a@1000000\", \"/clk@3000000\"]")
        );
        assert!(
            codes(&m, &inv).is_empty(),
            "passing the provider too meets it"
        );
        let m = format!(
            "{HEAD}{}",
            domain(
                "one",
                "passthrough = [\"/a@1000000\"]\ndrop_device_dependencies = true"
            )
        );
        assert!(codes(&m, &inv).is_empty(), "dropping is an explicit opt-in");
    }
}
