//! The plan: the resolved system, with every address decided.
//!
//! Planning is pure and deterministic: the same manifest, board, inventory and artifact facts give a
//! byte-identical plan (ordered collections only, no hashing, no clocks). Emitters (`device-tree` for
//! ARM dom0less, the dom0 initramfs for x86) and the QEMU runner read only the plan.

use crate::artifacts::{ArtifactTable, ImageFormat};
use crate::board::{Arch, BootMethod, Region};
use crate::diag::{Diagnostic, Diagnostics};
use crate::guest_map;
use crate::manifest::*;
use crate::units::{GIB, MIB, PAGE_SIZE, align_up, human_size};
use crate::validate::{self, CheckInput, DEFAULT_DOM0_MEMORY, console_of, enhanced_of, has_dom0};
use crate::xen::XenVersion;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// Boot modules are 2 MiB aligned, as ImageBuilder does, so Xen can map them with block mappings.
pub const MODULE_ALIGN: u64 = 2 * MIB;
/// Slot kept for a generated device tree (host DTB or passthrough fragment) whose size is known only
/// when it is written; Xen's own limit for a guest DTB is 2 MiB.
pub const DTB_SLOT: u64 = 2 * MIB;
/// Where device mappings go when the host address collides with the guest map: the hole between the
/// GICv3 redistributors (end 0x04020000) and GUEST_VPCI_ECAM_BASE (0x10000000) in arch-arm.h.
pub const GUEST_DEVICE_HOLE: Region = Region::new(0x0500_0000, 0x0B00_0000);
/// Start of the x86 PVH MMIO hole (ACPI_INFO_PHYSICAL_ADDRESS 0xFC000000; libxl_dom.c).
pub const PVH_MMIO_HOLE: u64 = 0xFC00_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleKind {
    Xen,
    HostDtb,
    Dom0Kernel,
    Dom0Ramdisk,
    Kernel,
    Ramdisk,
    PassthroughDtb,
}

/// One file the boot loader places in memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModulePlan {
    /// Stable identifier, e.g. `kernel-0` (modules with the same source are shared by domains).
    pub id: String,
    pub kind: ModuleKind,
    /// The source as written in the manifest (or `generated`).
    pub source: String,
    /// Exact size in bytes; `None` for files generated at build time (they get a slot).
    pub size: Option<u64>,
    /// Physical load range; `None` when the loader chooses (QEMU `-kernel`, multiboot modules).
    pub load: Option<Region>,
    /// Domains that use it.
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mapping {
    pub host: u64,
    pub guest: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DevicePlan {
    pub path: String,
    pub compatible: Vec<String>,
    /// Page-aligned MMIO mappings (`xen,reg`).
    pub mappings: Vec<Mapping>,
    /// GIC INTIDs, routed 1:1.
    pub irqs: Vec<u32>,
    pub behind_iommu: bool,
    /// `xen,force-assign-without-iommu`.
    pub forced: bool,
    /// Guest address differs from host address because the host address collides with the guest map.
    pub relocated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DomainPlan {
    pub name: String,
    pub kind: DomainKind,
    pub builder: Builder,
    pub roles: Vec<Role>,
    pub vcpus: u32,
    pub memory: u64,
    /// Position in boot order (0 first).
    pub boot_index: usize,
    /// Guest-physical RAM banks.
    pub guest_ram: Vec<Region>,
    pub static_memory: Vec<Region>,
    pub direct_map: bool,
    pub devices: Vec<DevicePlan>,
    pub iomem: Vec<Mapping>,
    /// Every interrupt the domain owns (devices and `irqs`), sorted.
    pub irqs: Vec<u32>,
    pub console: Console,
    /// `xen,enhanced` for dom0less domains.
    pub enhanced: Option<Enhanced>,
    pub cpupool: Option<String>,
    pub vcpu_affinity: Vec<Vec<u32>>,
    pub on_crash: OnCrash,
    pub depends_on: Vec<String>,
    pub kernel: String,
    pub ramdisk: Option<String>,
    pub passthrough_dtb: Option<String>,
    pub cmdline: String,
    pub p2m_pool: u64,
    pub sve: Option<u32>,
    pub max_grant_frames: Option<u32>,
    pub max_maptrack_frames: Option<u32>,
    pub llc_colors: Option<String>,
    pub drop_device_dependencies: bool,
    /// PV disks this domain sees, each with its backend (issue 19).
    pub pv_disks: Vec<PvDiskPlan>,
    /// PV network interfaces this domain sees.
    pub pv_nics: Vec<PvNicPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dom0Plan {
    pub memory: u64,
    pub vcpus: u32,
    pub kernel: String,
    pub ramdisk: Option<String>,
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpupoolPlan {
    pub name: String,
    pub cpus: Vec<u32>,
    /// Device-tree paths of the CPUs (for `cpupool-cpus` phandles).
    pub cpu_paths: Vec<String>,
    pub scheduler: String,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedMemoryPlan {
    pub id: String,
    pub size: u64,
    pub host: Option<u64>,
    pub guest: u64,
    pub owner: Option<String>,
    pub borrowers: Vec<String>,
}

pub use crate::budget::MemoryBudget;

/// Appended to the command line of an init-built ARM domain with `on_crash = "restart"` (see
/// `build_plan`): reset one second after a panic, so the crash reaches domforge-init.
pub const ARM_PANIC_RESET: &str = "panic=1";

/// An ARM board's interrupt controller generation, as guests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gic {
    V2,
    V3,
}

/// The resolved system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemPlan {
    pub name: String,
    pub board: String,
    pub arch: Arch,
    pub boot: BootMethod,
    pub xen: XenVersion,
    /// `XEN_DOMCTL_INTERFACE_VERSION` domforge-init will speak.
    pub domctl_interface: u32,
    /// ARM: the board's GIC, which every guest gets a virtual one of. `None` on x86.
    pub gic: Option<Gic>,
    pub xen_cmdline: String,
    pub ram: Vec<Region>,
    pub reserved: Vec<Region>,
    pub memory: MemoryBudget,
    pub modules: Vec<ModulePlan>,
    pub dom0: Option<Dom0Plan>,
    /// In boot order.
    pub domains: Vec<DomainPlan>,
    pub cpupools: Vec<CpupoolPlan>,
    pub shared_memory: Vec<SharedMemoryPlan>,
    /// dom0 runs xenstored and domforge-init introduces every domain to it (a PV device exists).
    pub xenstore: bool,
}

pub use crate::pv_plan::{PvDiskPlan, PvNicPlan};

impl SystemPlan {
    pub fn module(&self, id: &str) -> Option<&ModulePlan> {
        self.modules.iter().find(|m| m.id == id)
    }
    pub fn domain(&self, name: &str) -> Option<&DomainPlan> {
        self.domains.iter().find(|d| d.name == name)
    }
}

/// Validates, then plans. Warnings come back with the plan; any error stops before planning.
pub fn plan(input: CheckInput<'_>) -> Result<(SystemPlan, Diagnostics), Diagnostics> {
    let diags = validate::check(input);
    if diags.has_errors() {
        return Err(diags);
    }
    match build_plan(input) {
        Ok(p) => Ok((p, diags)),
        Err(e) => {
            let mut all = diags;
            all.push(e);
            Err(all)
        }
    }
}

/// The `source` of a module domforge generates (host DTB, passthrough fragments, dom0's initramfs)
/// rather than reads from a file the manifest names.
pub const GENERATED: &str = "generated";

/// The `source` prefix of a driver domain's generated initramfs (issue 19): `/init` is
/// domforge-init serving the domain's PV backends, with their kernel modules and the disk images
/// it serves (`bundle::driver`).
pub const DRIVER_RAMDISK: &str = "generated:driver-domain";

/// The source of driver domain `domain`'s generated initramfs.
pub fn driver_ramdisk_source(domain: &str) -> String {
    format!("{DRIVER_RAMDISK}:{domain}")
}

/// The driver domain whose generated initramfs `source` is.
pub fn driver_ramdisk_domain(source: &str) -> Option<&str> {
    source.strip_prefix(DRIVER_RAMDISK)?.strip_prefix(':')
}

/// Whether some other domain's PV disk or vif names `d` as its backend.
pub fn serves_pv_devices(m: &Manifest, d: &crate::manifest::Domain) -> bool {
    use crate::validate::{Backend, backend_of};
    let serves = |b: Option<&crate::manifest::At<String>>| matches!(backend_of(m, b), Backend::Domain(be) if core::ptr::eq(be, d));
    m.domains.iter().any(|f| {
        f.disks.iter().any(|x| serves(x.backend.as_ref()))
            || f.vifs.iter().any(|x| serves(x.backend.as_ref()))
    })
}

impl ModulePlan {
    /// Whether domforge generates this module's bytes (see [`GENERATED`]).
    pub fn is_generated(&self) -> bool {
        self.source == GENERATED
    }
}

/// The boot modules of a plan under construction: one per distinct (kind, source), except that
/// every passthrough fragment is its own; ids are stable (`kernel-0`, `passthrough-<domain>`).
struct ModuleTable<'a> {
    input: CheckInput<'a>,
    modules: Vec<ModulePlan>,
}

impl<'a> ModuleTable<'a> {
    fn new(input: CheckInput<'a>) -> Self {
        Self {
            input,
            modules: Vec::new(),
        }
    }

    /// The id of the module of `kind` made from `source`, used by `user`; added when new.
    fn intern(&mut self, kind: ModuleKind, source: &str, user: &str) -> String {
        if let Some(existing) = self
            .modules
            .iter_mut()
            .find(|x| x.kind == kind && x.source == source && kind != ModuleKind::PassthroughDtb)
        {
            if !existing.users.iter().any(|u| u == user) {
                existing.users.push(user.to_string());
            }
            return existing.id.clone();
        }
        let n = self.modules.iter().filter(|x| x.kind == kind).count();
        let id = match kind {
            ModuleKind::Xen => "xen".to_string(),
            ModuleKind::HostDtb => "host-dtb".to_string(),
            ModuleKind::Dom0Kernel => "dom0-kernel".to_string(),
            ModuleKind::Dom0Ramdisk => "dom0-ramdisk".to_string(),
            ModuleKind::Kernel => format!("kernel-{n}"),
            ModuleKind::Ramdisk => format!("ramdisk-{n}"),
            ModuleKind::PassthroughDtb => format!("passthrough-{user}"),
        };
        // Generated modules get a slot at finalize; files are as big as examining them found.
        let size = match kind {
            ModuleKind::HostDtb | ModuleKind::PassthroughDtb => None,
            _ => self
                .input
                .artifacts
                .get(source)
                .and_then(|r| r.as_ref().ok())
                .map(|f| f.size),
        };
        self.modules.push(ModulePlan {
            id: id.clone(),
            kind,
            source: source.to_string(),
            size,
            load: None,
            users: std::vec![user.to_string()],
        });
        id
    }
}

fn build_plan(input: CheckInput<'_>) -> Result<SystemPlan, Diagnostic> {
    let m = input.manifest;
    let board = input.board;
    let inv = input.inventory;
    let xen = m.system.xen.value;
    let order = validate::boot_order(m)
        .map_err(|c| Diagnostic::error("E0224", format!("dependency cycle {}", c.join(" -> "))))?;
    let gic_v3 = matches!(
        inv.interrupt_controller.as_ref().map(|c| c.kind),
        Some(crate::board::InterruptControllerKind::GicV3)
    );

    // Modules: one per distinct source, in a fixed order (Xen, dom0, then domains in boot order).
    let mut table = ModuleTable::new(input);
    let xen_source = m
        .system
        .hypervisor
        .as_ref()
        .map_or_else(|| "debian:xen".to_string(), |h| h.value.clone());
    table.intern(ModuleKind::Xen, &xen_source, "xen");
    if board.arch == Arch::Arm64 && board.boot != BootMethod::QemuDirect {
        table.intern(ModuleKind::HostDtb, GENERATED, "xen");
    }
    let dom0_plan = if has_dom0(m) {
        m.dom0.as_ref().map(|d0| {
            let kernel = table.intern(ModuleKind::Dom0Kernel, &d0.kernel.value, "dom0");
            let ramdisk = d0
                .ramdisk
                .as_ref()
                .map(|r| table.intern(ModuleKind::Dom0Ramdisk, &r.value, "dom0"));
            let console = if board.arch == Arch::Arm64 {
                "hvc0"
            } else {
                "hvc0 earlyprintk=xen"
            };
            Dom0Plan {
                memory: d0.memory.as_ref().map_or(DEFAULT_DOM0_MEMORY, |x| x.value),
                vcpus: d0.vcpus.as_ref().map_or(1, |v| v.value),
                kernel,
                ramdisk,
                cmdline: {
                    let mut c = d0
                        .cmdline
                        .as_ref()
                        .map_or_else(|| format!("console={console}"), |c| c.value.clone());
                    name_the_probe(
                        &mut c,
                        d0.ramdisk.as_ref().map(|r| r.value.as_str()),
                        "dom0",
                    );
                    c
                },
            }
        })
    } else {
        None
    };

    let mut domains = Vec::new();
    for (boot_index, &i) in order.iter().enumerate() {
        let d = &m.domains[i];
        let name = d.name.value.clone();
        let builder = d.builder();
        // Domains built by domforge-init are files inside the dom0 initramfs, not boot modules, on x86.
        let kernel = table.intern(ModuleKind::Kernel, &d.kernel.value, &name);
        // The initramfs of a driver domain domforge-init builds is domforge's (domforge-init
        // serving its backends).
        let ramdisk = match &d.ramdisk {
            Some(r) => Some(table.intern(ModuleKind::Ramdisk, &r.value, &name)),
            None if builder == Builder::Init && serves_pv_devices(m, d) => {
                Some(table.intern(ModuleKind::Ramdisk, &driver_ramdisk_source(&name), &name))
            }
            None => None,
        };
        let console = console_of(d);
        let guest_ram: Vec<Region> = match d.kind.value {
            DomainKind::Arm64 if d.direct_map() => {
                d.static_memory.iter().map(|r| r.value).collect()
            }
            DomainKind::Arm64 => {
                let (banks, n) = guest_map::ram_banks(d.memory.value);
                banks[..n].to_vec()
            }
            DomainKind::Pvh => {
                let low = d.memory.value.min(PVH_MMIO_HOLE);
                let mut v = std::vec![Region::new(0, low)];
                if d.memory.value > low {
                    v.push(Region::new(4 * GIB, d.memory.value - low));
                }
                v
            }
        };
        // Everything already in this guest's address map: RAM, Xen's fixed regions, shared memory the
        // domain maps and raw iomem grants. Relocated devices must miss all of it.
        let mut occupied: Vec<Region> = guest_ram.clone();
        if d.kind.value == DomainKind::Arm64 {
            occupied.extend(
                guest_map::fixed_regions(gic_v3, console == Console::Vpl011).map(|(_, r)| r),
            );
        }
        occupied.extend(
            m.shared_memory
                .iter()
                .filter(|s| {
                    s.owner
                        .iter()
                        .chain(s.borrowers.value.iter())
                        .any(|w| w.value == name)
                })
                .map(|s| Region::new(s.guest_address.value, s.size.value)),
        );
        occupied.extend(d.iomem.iter().map(|g| g.value.guest_region()));
        let mut devices = Vec::new();
        let mut irqs: Vec<u32> = d.irqs.iter().map(|i| i.value).collect();
        for p in &d.passthrough {
            let Some(dev) = inv.device(&p.value) else {
                continue;
            };
            let mut mappings = Vec::new();
            let mut relocated = false;
            for r in &dev.regions {
                let host = r.base & !(PAGE_SIZE - 1);
                let end = align_up(r.base.saturating_add(r.size), PAGE_SIZE).unwrap_or(u64::MAX);
                let size = end - host;
                let wanted = Region::new(host, size);
                let guest = if d.direct_map() || !occupied.iter().any(|o| o.overlaps(&wanted)) {
                    host
                } else {
                    relocated = true;
                    match first_fit(&GUEST_DEVICE_HOLE, size, &occupied) {
                        Some(g) => g,
                        None => {
                            return Err(Diagnostic::error(
                                "E0301",
                                format!(
                                    "no room in the guest address map of `{name}` for {}",
                                    dev.path
                                ),
                            )
                            .at(p.span.clone(), "too many relocated devices")
                            .note(format!(
                                "relocated devices go into {}",
                                validate::fmt_region(&GUEST_DEVICE_HOLE)
                            )));
                        }
                    }
                };
                occupied.push(Region::new(guest, size));
                mappings.push(Mapping { host, guest, size });
            }
            let dev_irqs: Vec<u32> = dev
                .interrupts
                .iter()
                .filter_map(|i| match i {
                    crate::board::DeviceInterrupt::Spi(n) => Some(*n),
                    _ => None,
                })
                .collect();
            irqs.extend(dev_irqs.iter().copied());
            devices.push(DevicePlan {
                path: dev.path.clone(),
                compatible: dev.compatible.clone(),
                mappings,
                irqs: dev_irqs,
                behind_iommu: dev.behind_iommu,
                forced: !dev.behind_iommu && d.force_without_iommu(),
                relocated,
            });
        }
        irqs.sort_unstable();
        irqs.dedup();
        // Xen reads a dom0less domain's fragment as a boot module; domforge-init reads an init-built
        // domain's from its initramfs (`BootDomain::passthrough_dtb`) and merges it into the guest DT.
        let passthrough_dtb = (!devices.is_empty())
            .then(|| table.intern(ModuleKind::PassthroughDtb, GENERATED, &name));
        let mut cmdline = match &d.cmdline {
            Some(c) => c.value.clone(),
            None => match console {
                Console::Vpl011 => "console=ttyAMA0".to_string(),
                Console::Hvc => "console=hvc0".to_string(),
                Console::None => String::new(),
            },
        };
        // ARM Linux tells Xen nothing when it panics: the SHUTDOWN_crash panic notifier exists on
        // x86 only (`xen_panic_handler_init()`, arch/x86/xen), so a panicked ARM guest spins and no
        // toolstack can see it. With `panic=N` it resets N seconds later (PSCI SYSTEM_RESET, which
        // Xen turns into SHUTDOWN_reboot), which domforge-init sees and answers by rebuilding it —
        // what `on_crash = "restart"` asks for. A `panic=` of the manifest's own is kept.
        if d.kind.value == DomainKind::Arm64
            && builder == Builder::Init
            && d.on_crash() == OnCrash::Restart
            && !cmdline.split_whitespace().any(|w| w.starts_with("panic="))
        {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(ARM_PANIC_RESET);
        }
        name_the_probe(
            &mut cmdline,
            d.ramdisk.as_ref().map(|r| r.value.as_str()),
            &name,
        );
        domains.push(DomainPlan {
            name: name.clone(),
            kind: d.kind.value,
            builder,
            roles: d.roles.iter().map(|r| r.value).collect(),
            vcpus: d.vcpus.value,
            memory: d.memory.value,
            boot_index,
            guest_ram,
            static_memory: d.static_memory.iter().map(|r| r.value).collect(),
            direct_map: d.direct_map(),
            devices,
            iomem: d
                .iomem
                .iter()
                .map(|g| Mapping {
                    host: g.value.first_mfn * PAGE_SIZE,
                    guest: g.value.guest_frame * PAGE_SIZE,
                    size: g.value.nr_pages * PAGE_SIZE,
                })
                .collect(),
            irqs,
            console,
            enhanced: (d.kind.value == DomainKind::Arm64 && builder == Builder::Xen)
                .then(|| enhanced_of(m, d)),
            cpupool: d.cpupool.as_ref().map(|c| c.value.clone()),
            vcpu_affinity: d.vcpu_affinity.iter().map(|a| a.value.0.clone()).collect(),
            on_crash: d.on_crash(),
            depends_on: d.depends_on.iter().map(|x| x.value.clone()).collect(),
            kernel,
            ramdisk,
            passthrough_dtb,
            cmdline,
            p2m_pool: d.p2m_pool.as_ref().map_or_else(
                || validate::default_pool(d.kind.value, d.vcpus.value, d.memory.value),
                |p| p.value,
            ),
            sve: d.sve.as_ref().map(|x| x.value),
            max_grant_frames: d.max_grant_frames.as_ref().map(|x| x.value),
            max_maptrack_frames: d.max_maptrack_frames.as_ref().map(|x| x.value),
            llc_colors: d.llc_colors.as_ref().map(|x| x.value.clone()),
            drop_device_dependencies: d.drop_device_dependencies.as_ref().is_some_and(|x| x.value),
            pv_disks: crate::pv_plan::disks(m, d),
            pv_nics: crate::pv_plan::nics(m, d),
        });
    }

    // Place the modules the boot loader loads at addresses we choose (ARM; x86 multiboot decides).
    let mut modules = table.modules;
    if board.arch == Arch::Arm64 {
        place_modules(&mut modules, input, &domains)?;
    }

    let cpupools = m
        .cpupools
        .iter()
        .map(|p| CpupoolPlan {
            name: p.name.value.clone(),
            cpus: p.cpus.value.iter().map(|c| c.value).collect(),
            cpu_paths: p
                .cpus
                .value
                .iter()
                .filter_map(|c| inv.cpus.get(c.value as usize).map(|n| n.path.clone()))
                .collect(),
            scheduler: p
                .scheduler
                .as_ref()
                .map_or_else(|| "credit2".to_string(), |s| s.value.clone()),
            domains: m
                .domains
                .iter()
                .filter(|d| d.cpupool.as_ref().is_some_and(|c| c.value == p.name.value))
                .map(|d| d.name.value.clone())
                .collect(),
        })
        .collect();
    let shared_memory = m
        .shared_memory
        .iter()
        .map(|s| SharedMemoryPlan {
            id: s.id.value.clone(),
            size: s.size.value,
            host: s.host_address.as_ref().map(|h| h.value),
            guest: s.guest_address.value,
            owner: s.owner.as_ref().map(|o| o.value.clone()),
            borrowers: s.borrowers.value.iter().map(|b| b.value.clone()).collect(),
        })
        .collect();

    let xen_cmdline = xen_cmdline(input, dom0_plan.as_ref());
    let memory = budget(input, &modules);
    let mut reserved: Vec<Region> = inv.reserved.iter().map(|r| r.region).collect();
    reserved.sort();
    Ok(SystemPlan {
        name: m.system.name.value.clone(),
        board: board.name.clone(),
        arch: board.arch,
        boot: board.boot,
        xen,
        domctl_interface: xen.domctl_interface_version().unwrap_or(0),
        gic: match inv.interrupt_controller.as_ref().map(|c| c.kind) {
            Some(crate::board::InterruptControllerKind::GicV3) => Some(Gic::V3),
            Some(crate::board::InterruptControllerKind::GicV2) => Some(Gic::V2),
            _ => None,
        },
        xen_cmdline,
        ram: inv.memory.clone(),
        reserved,
        memory,
        modules,
        dom0: dom0_plan,
        domains,
        cpupools,
        shared_memory,
        xenstore: validate::needs_xenstore(m),
    })
}

/// Xen's command line: the board's console first, then the board's own options, dom0 sizing, and last
/// the manifest's options (so a person can override anything).
fn xen_cmdline(input: CheckInput<'_>, dom0: Option<&Dom0Plan>) -> String {
    let board = input.board;
    let mut parts: Vec<String> = Vec::new();
    parts.push(format!("console={}", board.xen_console));
    if board.xen_console == "dtuart" {
        let uart = board
            .console_uart
            .clone()
            .or_else(|| input.inventory.stdout_path.clone());
        if let Some(u) = uart {
            parts.push(format!("dtuart={u}"));
        }
    }
    if !board.xen_cmdline.is_empty() {
        parts.push(board.xen_cmdline.clone());
    }
    if let Some(d0) = dom0 {
        parts.push(format!(
            "dom0_mem={}M dom0_max_vcpus={}",
            d0.memory / MIB,
            d0.vcpus
        ));
    }
    if let Some(extra) = &input.manifest.system.xen_cmdline
        && !extra.value.trim().is_empty()
    {
        parts.push(extra.value.trim().to_string());
    }
    let conswitch_set = parts
        .iter()
        .flat_map(|p| p.split_whitespace())
        .any(|w| w.starts_with("conswitch="));
    if dom0.is_none() && board.arch == Arch::Arm64 && !conswitch_set {
        parts.push(SERIAL_INPUT_STAYS_WITH_XEN.to_string());
    }
    let xsm_set = parts
        .iter()
        .flat_map(|p| p.split_whitespace())
        .any(|w| w.starts_with("xsm="));
    if board.arch == Arch::Arm64 && crate::validate::domu_serves_domu(input.manifest) && !xsm_set {
        parts.push(XSM_FOR_DRIVER_DOMAINS.to_string());
    }
    parts.join(" ")
}

/// The XSM module a driver domain serving other domUs needs on ARM: Debian's arm64 Xen is built
/// with `CONFIG_XSM_SILO_DEFAULT=y` (`/boot/xen-4.17-arm64.config` of xen-hypervisor-4.17-arm64,
/// the same in 4.20), and SILO refuses event channels and grant mappings between two domUs
/// (`silo_mode_dom_check()` in `xen/xsm/silo.c`: allowed only with the control domain or oneself), so a
/// frontend's `EVTCHNOP_alloc_unbound` towards a driver domain fails with EPERM (seen here as
/// `vbd vbd-51712: 1 allocating event channel`). `xsm=dummy` (`docs/misc/xen-command-line.pandoc`)
/// selects the default policy, dom0 plus IS_PRIV checks, as Debian's amd64 Xen (built without XSM)
/// has. Added unless the board or manifest sets `xsm=` itself (`xsm=silo` is E0271).
pub const XSM_FOR_DRIVER_DOMAINS: &str = "xsm=dummy";

/// The source string of domforge's probe guest initramfs.
pub const PROBE_SOURCE: &str = "builtin:probe";

/// A domain booting the probe guest (`ramdisk = "builtin:probe"`) is told its name
/// (`domforge.name=<name>`, `probe/src/lib.rs`): consoles of several domains interleave, so the
/// probe prefixes every report line with it, and whoever watches the console (`domforge run`, a
/// person) can tell the domains apart. A `domforge.name=` the manifest sets itself is kept.
fn name_the_probe(cmdline: &mut String, ramdisk: Option<&str>, name: &str) {
    if ramdisk == Some(PROBE_SOURCE)
        && !cmdline
            .split_whitespace()
            .any(|w| w.starts_with("domforge.name="))
    {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(&format!("domforge.name={name}"));
    }
}

/// The Xen option that keeps serial input with Xen after boot (`conswitch=<char>x`,
/// `docs/misc/xen-command-line.pandoc`; `a` is the default switch character, Ctrl-A), added to a
/// dom0-less ARM system's command line unless the board or manifest sets `conswitch` itself.
///
/// Without a dom0, Xen 4.20 hands serial input to the first domU at the end of boot
/// (`console_endboot()` → `switch_serial_input()` in `xen/drivers/char/console.c`; the console
/// says "*** Serial input to DOM1", where 4.17 says "DOM0" even without a dom0, so no domU has
/// it there). `vpl011_write_data_xen()` (`xen/arch/arm/vpl011.c`) prints the input domain's
/// output one character per `printk("%c")`, without the `DOM<n>:` prefix, while the other
/// domains' lines are buffered and printed whole; with two physical CPUs the characters
/// interleave with those lines and with `(XEN) ` prefixes mid-line (seen on Debian's 4.20.4:
/// `(XEN) DO(XEN) MFORGE-PROBE app-1 …`), so a serial console shows garbled lines. Keeping the
/// input with Xen (the trailing `x`) keeps every domain's output in whole `(XEN) DOM<n>: …`
/// lines; Ctrl-A still switches by hand. With a dom0 (which takes the input and whose `hvc0` is
/// printed as written) nothing is added.
pub const SERIAL_INPUT_STAYS_WITH_XEN: &str = "conswitch=ax";

fn budget(input: CheckInput<'_>, modules: &[ModulePlan]) -> MemoryBudget {
    let mut b = crate::budget::memory_budget(input);
    b.modules = modules
        .iter()
        .filter_map(|m| m.load.map(|l| l.size))
        .fold(0u64, |a, s| a.saturating_add(s));
    b
}

/// First-fit placement, 2 MiB aligned, inside the board's module window and RAM, clear of reserved
/// memory, static memory, shared memory, Xen's own load region and each other.
/// Host memory no boot module may use: reserved memory, static and shared memory, Xen's own region.
fn fixed_obstacles(input: CheckInput<'_>, domains: &[DomainPlan]) -> Vec<Region> {
    let mut obstacles: Vec<Region> = input.inventory.reserved.iter().map(|r| r.region).collect();
    obstacles.extend(domains.iter().flat_map(|d| d.static_memory.iter().copied()));
    obstacles.extend(input.manifest.shared_memory.iter().filter_map(|s| {
        s.host_address
            .as_ref()
            .map(|h| Region::new(h.value, s.size.value))
    }));
    if let Some(x) = input.board.xen_load {
        obstacles.push(x);
    }
    obstacles
}

/// The RAM the boot loader may put modules in: every bank, cut to the board's module window.
fn module_windows(input: CheckInput<'_>) -> Vec<Region> {
    input
        .inventory
        .memory
        .iter()
        .filter_map(|bank| match input.board.module_window {
            Some(w) => intersect(bank, &w),
            None => Some(*bank),
        })
        .collect()
}

/// The lowest 2 MiB-aligned slot of `size` bytes in `windows` clear of every obstacle.
fn find_slot(windows: &[Region], obstacles: &[Region], size: u64) -> Option<Region> {
    let slot_size = align_up(size.max(1), MODULE_ALIGN)?;
    for w in windows {
        let Some(mut at) = align_up(w.base, MODULE_ALIGN) else {
            continue;
        };
        while let Some(end) = at.checked_add(slot_size) {
            if end > w.end().unwrap_or(u64::MAX) {
                break;
            }
            let candidate = Region::new(at, slot_size);
            match obstacles
                .iter()
                .filter(|o| o.overlaps(&candidate))
                .filter_map(|o| o.end())
                .max()
            {
                Some(block_end) => match align_up(block_end, MODULE_ALIGN) {
                    Some(next) => at = next,
                    None => break,
                },
                None => return Some(candidate),
            }
        }
    }
    None
}

/// Places a module generated at build time (an ARM dom0's initramfs carrying domforge-init and the
/// images of the domains it builds), whose size the plan could not know: the same rules as every
/// planned module, clear of the modules already placed. The module is added to `plan` as dom0's
/// ramdisk with id `dom0-ramdisk`.
pub fn place_generated_dom0_ramdisk(
    plan: &mut SystemPlan,
    input: CheckInput<'_>,
    size: u64,
) -> Result<Region, Diagnostic> {
    let mut obstacles = fixed_obstacles(input, &plan.domains);
    obstacles.extend(plan.modules.iter().filter_map(|m| {
        m.load.map(|l| {
            let room = match m.kind {
                ModuleKind::HostDtb | ModuleKind::PassthroughDtb => DTB_SLOT,
                _ => l.size,
            };
            Region::new(l.base, align_up(room.max(1), MODULE_ALIGN).unwrap_or(room))
        })
    }));
    let windows = module_windows(input);
    let slot = find_slot(&windows, &obstacles, size).ok_or_else(|| {
        Diagnostic::error(
            "E0303",
            format!(
                "no room to load dom0's generated initramfs ({})",
                human_size(size)
            ),
        )
        .help("make the kernels or ramdisks domforge-init builds from smaller")
    })?;
    let load = Region::new(slot.base, size);
    plan.modules.push(ModulePlan {
        id: "dom0-ramdisk".into(),
        kind: ModuleKind::Dom0Ramdisk,
        source: GENERATED.into(),
        size: Some(size),
        load: Some(load),
        users: std::vec!["dom0".into()],
    });
    if let Some(d0) = plan.dom0.as_mut() {
        d0.ramdisk = Some("dom0-ramdisk".into());
    }
    Ok(load)
}

fn place_modules(
    modules: &mut [ModulePlan],
    input: CheckInput<'_>,
    domains: &[DomainPlan],
) -> Result<(), Diagnostic> {
    let board = input.board;
    let mut obstacles = fixed_obstacles(input, domains);
    let windows = module_windows(input);
    for module in modules.iter_mut() {
        // Files only domforge-init reads travel in dom0's initramfs, not as boot modules.
        let init_only = matches!(
            module.kind,
            ModuleKind::Kernel | ModuleKind::Ramdisk | ModuleKind::PassthroughDtb
        ) && module.users.iter().all(|u| {
            domains
                .iter()
                .any(|d| &d.name == u && d.builder == Builder::Init)
        });
        if init_only {
            continue;
        }
        let size = match (module.kind, module.size) {
            (ModuleKind::Xen, _) => {
                // The boot loader puts Xen in the board's Xen region (QEMU -kernel, or U-Boot's script).
                module.load = board
                    .xen_load
                    .map(|x| Region::new(x.base, module.size.unwrap_or(x.size).min(x.size)));
                continue;
            }
            (ModuleKind::HostDtb | ModuleKind::PassthroughDtb, _) => DTB_SLOT,
            (_, Some(s)) => s,
            (_, None) => {
                let mut d = Diagnostic::error(
                    "E0302",
                    format!("the size of `{}` is unknown", module.source),
                );
                if let Some(span) = module_span(input.manifest, module) {
                    d = d.at(span, "this file was not examined");
                }
                return Err(d);
            }
        };
        let placed = find_slot(&windows, &obstacles, size);
        let Some(slot) = placed else {
            let mut d = Diagnostic::error(
                "E0303",
                format!("no room to load `{}` ({})", module.source, human_size(size)),
            );
            if let Some(span) = module_span(input.manifest, module) {
                d = d.at(
                    span,
                    format!("this {} does not fit", module_noun(module.kind)),
                );
            }
            return Err(d
            .note(format!(
                "modules go into {} in 2 MiB steps, clear of reserved, static and shared memory",
                board
                    .module_window
                    .as_ref()
                    .map_or("RAM".to_string(), validate::fmt_region)
            ))
            .help("make the kernels or ramdisks smaller, or share one kernel between domains"));
        };
        obstacles.push(slot);
        module.load = Some(Region::new(slot.base, module.size.unwrap_or(DTB_SLOT)));
    }
    Ok(())
}

/// The manifest text a module comes from, so placement errors point at a line: the first kernel or
/// ramdisk entry naming its source, the hypervisor entry, or the owning domain's passthrough list.
fn module_span(m: &Manifest, module: &ModulePlan) -> Option<Span> {
    let by_source = |v: &At<String>| (v.value == module.source).then(|| v.span.clone());
    match module.kind {
        ModuleKind::Xen => m
            .system
            .hypervisor
            .as_ref()
            .map_or_else(|| Some(m.system.xen.span.clone()), by_source),
        ModuleKind::Dom0Kernel => m.dom0.as_ref().and_then(|d| by_source(&d.kernel)),
        ModuleKind::Dom0Ramdisk => m
            .dom0
            .as_ref()
            .and_then(|d| d.ramdisk.as_ref().and_then(by_source)),
        ModuleKind::Kernel => m.domains.iter().find_map(|d| by_source(&d.kernel)),
        ModuleKind::Ramdisk => m
            .domains
            .iter()
            .find_map(|d| d.ramdisk.as_ref().and_then(by_source)),
        ModuleKind::PassthroughDtb => {
            let owner = module.users.first()?;
            m.domain(owner)
                .and_then(|d| d.passthrough.first().map(|p| p.span.clone()))
        }
        ModuleKind::HostDtb => Some(m.system.board.span.clone()),
    }
}

fn module_noun(kind: ModuleKind) -> &'static str {
    match kind {
        ModuleKind::Xen => "hypervisor",
        ModuleKind::HostDtb => "host device tree",
        ModuleKind::Dom0Kernel | ModuleKind::Kernel => "kernel",
        ModuleKind::Dom0Ramdisk | ModuleKind::Ramdisk => "ramdisk",
        ModuleKind::PassthroughDtb => "passthrough device tree",
    }
}

/// The lowest page-aligned address in `window` where `size` bytes miss every `taken` range.
fn first_fit(window: &Region, size: u64, taken: &[Region]) -> Option<u64> {
    let mut at = align_up(window.base, PAGE_SIZE)?;
    loop {
        let candidate = Region::new(at, size);
        if !window.contains(&candidate) {
            return None;
        }
        match taken
            .iter()
            .filter(|t| t.overlaps(&candidate))
            .filter_map(|t| t.end())
            .max()
        {
            Some(end) => at = align_up(end, PAGE_SIZE)?,
            None => return Some(at),
        }
    }
}

fn intersect(a: &Region, b: &Region) -> Option<Region> {
    let start = a.base.max(b.base);
    let end = a.end()?.min(b.end()?);
    (end > start).then(|| Region::new(start, end - start))
}

/// The facts a kernel's format implies for PVH: its entry point (when known).
pub fn pvh_entry(artifacts: &ArtifactTable, source: &str) -> Option<u64> {
    match artifacts.get(source)?.as_ref().ok()?.format {
        ImageFormat::Elf { pvh_entry, .. } | ImageFormat::BzImage { pvh_entry } => pvh_entry,
        _ => None,
    }
}

/// Where domforge-init finds a module inside the control domain's initramfs.
pub fn initramfs_module_path(module_id: &str) -> String {
    schema::layout::module_path(module_id)
}

/// The boot-blob view of a domain's PV devices: backends as indices into the plan's domains
/// (`None` for dom0).
fn boot_pv_devices(
    plan: &SystemPlan,
    d: &DomainPlan,
) -> Result<
    (
        heapless::Vec<crate::blob::BootDisk, { crate::blob::MAX_PV_DISKS }>,
        heapless::Vec<crate::blob::BootNic, { crate::blob::MAX_PV_NICS }>,
    ),
    Diagnostic,
> {
    use crate::blob::{BootDisk, BootNic};
    let too_many = |what: &str, n: usize| {
        Diagnostic::error(
            "E0304",
            format!(
                "domain `{}` has more than {n} {what}, the boot blob's bound",
                d.name
            ),
        )
    };
    let too_long = |what: &str| {
        Diagnostic::error(
            "E0304",
            format!(
                "{what} of domain `{}` is longer than the boot blob allows",
                d.name
            ),
        )
    };
    let backend = |name: &str| -> Option<u8> {
        plan.domains
            .iter()
            .position(|o| o.name == name)
            .and_then(|i| u8::try_from(i).ok())
    };
    let mut disks = heapless::Vec::new();
    for x in &d.pv_disks {
        let disk = BootDisk {
            vdev: heapless::String::try_from(x.vdev.as_str()).map_err(|_| too_long("a vdev"))?,
            devid: x.devid,
            backend: backend(&x.backend),
            target: heapless::String::try_from(x.target.as_str())
                .map_err(|_| too_long("a disk target"))?,
            read_only: x.access == crate::manifest::DiskAccess::Ro,
            cdrom: x.devtype == crate::manifest::DiskDevtype::Cdrom,
        };
        disks
            .push(disk)
            .map_err(|_| too_many("PV disks", crate::blob::MAX_PV_DISKS))?;
    }
    let mut nics = heapless::Vec::new();
    for v in &d.pv_nics {
        let mac = xenstore_layout::parse_mac(&v.mac).map_err(|_| too_long("a MAC"))?;
        let nic = BootNic {
            handle: v.handle,
            mac,
            backend: backend(&v.backend),
            bridge: heapless::String::try_from(v.bridge.as_str())
                .map_err(|_| too_long("a bridge name"))?,
            vifname: v
                .vifname
                .as_deref()
                .map(heapless::String::try_from)
                .transpose()
                .map_err(|_| too_long("a vifname"))?,
            mtu: v.mtu,
        };
        nics.push(nic)
            .map_err(|_| too_many("vifs", crate::blob::MAX_PV_NICS))?;
    }
    Ok((disks, nics))
}

/// Turns the plan into the bounded boot-time view domforge-init decodes. Every bound is checked here,
/// so a system that does not fit is refused at compile time with the reason, never truncated.
pub fn boot_config(plan: &SystemPlan) -> Result<crate::blob::BootConfig, Diagnostic> {
    use crate::blob::*;
    fn text<const N: usize>(s: &str, what: &str) -> Result<heapless::String<N>, Diagnostic> {
        heapless::String::try_from(s).map_err(|_| {
            Diagnostic::error(
                "E0304",
                format!("{what} is longer than the boot blob's {N}-byte limit"),
            )
        })
    }
    fn push<T, const N: usize>(
        v: &mut heapless::Vec<T, N>,
        x: T,
        what: &str,
    ) -> Result<(), Diagnostic> {
        v.push(x).map_err(|_| {
            Diagnostic::error("E0304", format!("more than {N} {what} in one boot blob"))
        })
    }
    if plan.domains.len() > MAX_DOMAINS {
        return Err(Diagnostic::error(
            "E0304",
            format!(
                "{} domains, more than the boot blob's {MAX_DOMAINS} (its dependency indices are one byte)",
                plan.domains.len()
            ),
        )
        .help("a control domain's domforge-init builds and supervises at most 256 domains: split the system"));
    }
    let mut domains = Vec::with_capacity(plan.domains.len());
    for d in &plan.domains {
        let mut depends_on = heapless::Vec::new();
        for dep in &d.depends_on {
            let idx = plan
                .domains
                .iter()
                .position(|o| &o.name == dep)
                .unwrap_or(0);
            push(
                &mut depends_on,
                u8::try_from(idx).unwrap_or(u8::MAX),
                "dependencies of a domain",
            )?;
        }
        let mut iomem = heapless::Vec::new();
        // The domain's own iomem, then its passthrough devices' mappings: all one grant list.
        let mappings = d
            .iomem
            .iter()
            .chain(d.devices.iter().flat_map(|dev| &dev.mappings));
        for m in mappings {
            push(
                &mut iomem,
                BootIomem {
                    first_mfn: m.host / PAGE_SIZE,
                    nr_pages: m.size / PAGE_SIZE,
                    gfn: m.guest / PAGE_SIZE,
                },
                "iomem grants",
            )?;
        }
        let mut irqs = heapless::Vec::new();
        for &i in &d.irqs {
            push(&mut irqs, i, "interrupts")?;
        }
        // `XEN_DOMCTL_assign_device` needs an IOMMU in front of the device; one passed without
        // (`force_without_iommu`, no DMA) is given by its MMIO and SPIs alone, as Xen's dom0less
        // builder does for `xen,force-assign-without-iommu`.
        let mut dt_devices = heapless::Vec::new();
        for dev in d.devices.iter().filter(|dev| dev.behind_iommu) {
            push(
                &mut dt_devices,
                text(&dev.path, "a device path")?,
                "devices",
            )?;
        }
        let (pv_disks, pv_nics) = boot_pv_devices(plan, d)?;
        domains.push(BootDomain {
            name: text(&d.name, "a domain name")?,
            kind: match d.kind {
                DomainKind::Arm64 => BootKind::Arm64,
                DomainKind::Pvh => BootKind::Pvh,
            },
            builder: match d.builder {
                Builder::Xen => BootBuilder::Xen,
                Builder::Init => BootBuilder::Init,
            },
            vcpus: d.vcpus,
            memory_kib: d.memory / 1024,
            kernel: text(&initramfs_module_path(&d.kernel), "a kernel path")?,
            ramdisk: d
                .ramdisk
                .as_deref()
                .map(|r| text(&initramfs_module_path(r), "a ramdisk path"))
                .transpose()?,
            cmdline: text(&d.cmdline, "a kernel command line")?,
            console: match d.console {
                Console::Vpl011 => BootConsole::Vpl011,
                Console::Hvc => BootConsole::Hvc,
                Console::None => BootConsole::None,
            },
            on_crash: match d.on_crash {
                OnCrash::Destroy => BootOnCrash::Destroy,
                OnCrash::Restart => BootOnCrash::Restart,
                OnCrash::RebootPlatform => BootOnCrash::RebootPlatform,
            },
            depends_on,
            iomem,
            irqs,
            dt_devices,
            p2m_pool_kib: d.p2m_pool.div_ceil(1024),
            passthrough_dtb: match (&d.passthrough_dtb, d.builder) {
                (Some(id), Builder::Init) => {
                    Some(text(&initramfs_module_path(id), "a passthrough DTB path")?)
                }
                _ => None,
            },
            pv_disks,
            pv_nics,
        });
    }
    let config = BootConfig {
        system: text(&plan.name, "the system name")?,
        xen_major: plan.xen.major,
        xen_minor: plan.xen.minor,
        domctl_interface: plan.domctl_interface,
        arm_gic: plan.gic.map(|g| match g {
            Gic::V2 => BootGic::V2,
            Gic::V3 => BootGic::V3,
        }),
        domains,
        xenstore: plan.xenstore,
    };
    config
        .check()
        .map_err(|e| Diagnostic::error("E0304", format!("the boot blob would be invalid: {e}")))?;
    Ok(config)
}
