//! Domain builders: turn a boot-blob domain into a running guest through the typed [`crate::Xen`] API.
//!
//! * [`pvh`] — x86 PVH guests (direct kernel boot, no device model), as domforge-init builds them at
//!   boot because upstream Xen has no dom0less on x86.
//! * [`arm`] — arm64 guests as libxl builds them (`libxl_arm.c`, `xg_dom_arm.c`): an `Image` kernel, a
//!   generated guest device tree, vPL011 or PV console, passthrough of MMIO, SPIs and IOMMU-protected
//!   devices.
//! * [`memory`] — the seam to `pvh_boot`'s loader: its `GuestMemoryWriter` over foreign mappings.
//!
//! Both builders return the same [`BuiltDomain`] and fail with the same [`BuildError`] (the step that
//! failed, the cause, and what became of the half-built domain), so a supervisor treats them alike:
//! bind [`BuiltDomain::console`], relay it, restart on crash. Arch-specific results live in
//! [`BuiltDomain::boot`].

pub mod arm;
pub mod grants;
pub mod kernel_file;
pub mod late_store;
pub mod memory;
pub mod pvh;

pub use arm::{ArmBoot, ArmBuilder, ArmConsole, ArmDomainConfig, ArmIomem, ArmKernel, ArmLayout};
pub use kernel_file::OpenError;
pub use memory::{GuestWriteError, WINDOW_PAGES, WindowedGuestMemory};
pub use pvh::{PvhBuilder, PvhDomainConfig, PvhKernel};

use crate::abi::x86;
use crate::transport::Hypercalls;
use crate::xen::{DomId, Xen, XenError};
use core::fmt;
use pvh_boot::kernel::ImageError;
use pvh_boot::memory::PfnRange;

/// `LIBXL_MAXMEM_CONSTANT` (KiB, `tools/libs/light/libxl_internal.h`): slack above the guest's pages
/// that libxl adds to `max_mem` (ballooning drivers, grant/shared-info frames mapped later; on ARM it
/// also covers the 4 magic pages, `libxl__arch_extra_memory()` in `libxl_arm.c`).
pub const MAXMEM_SLACK_KIB: u64 = 1024;

/// Extent order of a 2 MiB superpage (2^9 4 KiB pages).
pub(crate) const SUPERPAGE_ORDER: u32 = 9;
const SUPERPAGE_PAGES: u64 = 1 << SUPERPAGE_ORDER;

/// The steps of a build, in order; a [`BuildError`] names the one that failed. [`BuildStep::PVH`] and
/// [`BuildStep::ARM64`] list the steps each builder takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuildStep {
    /// Check the request and plan the guest layout (nothing created yet).
    Plan,
    CreateDomain,
    MaxVcpus,
    /// ARM: `XEN_DOMCTL_getdomaininfo` for what Xen chose (GIC version, physical address bits, timer
    /// frequency), which the guest device tree must describe.
    DomainInfo,
    MaxMem,
    PagingPool,
    /// ARM: `XEN_DOMCTL_set_address_size` 64 (AArch64 execution state).
    AddressSize,
    Populate,
    MemoryMap,
    /// ARM: generating the final guest device tree and module placement.
    DeviceTree,
    LoadImage,
    /// ARM: copying the kernel `Image`.
    LoadKernel,
    /// ARM: copying the initial ramdisk.
    LoadRamdisk,
    /// ARM: copying the device tree blob.
    LoadDeviceTree,
    /// ARM: zeroing the console, xenstore, memaccess and vuart pages.
    ClearMagicPages,
    /// ARM: `XEN_DOMCTL_vuart_op` (vPL011).
    Vuart,
    ConsoleEvtchn,
    StoreEvtchn,
    HvmParams,
    /// With xenstore: writing the reserved console and xenstore grant entries ([`grants`]).
    SeedGrants,
    /// ARM passthrough: `XEN_DOMCTL_bind_pt_irq`.
    BindIrq,
    /// ARM passthrough: `XEN_DOMCTL_iomem_permission`.
    IomemPermission,
    /// ARM passthrough: `XEN_DOMCTL_memory_mapping`.
    MemoryMapping,
    /// ARM passthrough: `XEN_DOMCTL_assign_device`.
    AssignDevice,
    GetHvmContext,
    SetMtrr,
    SetBootCpu,
    /// ARM: `XEN_DOMCTL_setvcpucontext` for vCPU 0.
    SetVcpuContext,
    Unpause,
}

impl BuildStep {
    /// The PVH builder's steps, in build order.
    pub const PVH: [BuildStep; 16] = [
        Self::Plan,
        Self::CreateDomain,
        Self::MaxVcpus,
        Self::MaxMem,
        Self::PagingPool,
        Self::Populate,
        Self::MemoryMap,
        Self::LoadImage,
        Self::ConsoleEvtchn,
        Self::StoreEvtchn,
        Self::HvmParams,
        Self::SeedGrants,
        Self::GetHvmContext,
        Self::SetMtrr,
        Self::SetBootCpu,
        Self::Unpause,
    ];

    /// The ARM builder's steps, in build order.
    pub const ARM64: [BuildStep; 24] = [
        Self::Plan,
        Self::CreateDomain,
        Self::MaxVcpus,
        Self::DomainInfo,
        Self::MaxMem,
        Self::PagingPool,
        Self::AddressSize,
        Self::Populate,
        Self::DeviceTree,
        Self::LoadKernel,
        Self::LoadRamdisk,
        Self::LoadDeviceTree,
        Self::ClearMagicPages,
        Self::Vuart,
        Self::ConsoleEvtchn,
        Self::StoreEvtchn,
        Self::HvmParams,
        Self::SeedGrants,
        Self::BindIrq,
        Self::IomemPermission,
        Self::MemoryMapping,
        Self::AssignDevice,
        Self::SetVcpuContext,
        Self::Unpause,
    ];

    pub const fn describe(self) -> &'static str {
        match self {
            Self::Plan => "planning the guest layout",
            Self::CreateDomain => "creating the domain",
            Self::MaxVcpus => "allocating vCPUs",
            Self::DomainInfo => "reading the domain's configuration back",
            Self::MaxMem => "setting the memory limit",
            Self::PagingPool => "sizing the paging pool",
            Self::AddressSize => "setting the AArch64 execution state",
            Self::Populate => "populating guest memory",
            Self::MemoryMap => "setting the memory map",
            Self::DeviceTree => "generating the guest device tree",
            Self::LoadImage => "loading kernel, ramdisk, command line, start_info and ACPI tables",
            Self::LoadKernel => "loading the kernel",
            Self::LoadRamdisk => "loading the ramdisk",
            Self::LoadDeviceTree => "loading the device tree",
            Self::ClearMagicPages => "clearing the console and xenstore pages",
            Self::Vuart => "setting up the vPL011 UART",
            Self::ConsoleEvtchn => "allocating the console event channel",
            Self::StoreEvtchn => "allocating the xenstore event channel",
            Self::HvmParams => "setting HVM params",
            Self::SeedGrants => "seeding the console and xenstore grant entries",
            Self::BindIrq => "routing an interrupt",
            Self::IomemPermission => "granting device memory",
            Self::MemoryMapping => "mapping device memory",
            Self::AssignDevice => "assigning a device",
            Self::GetHvmContext => "reading the HVM context",
            Self::SetMtrr => "setting the vCPUs' MTRRs",
            Self::SetBootCpu => "setting the boot vCPU's registers",
            Self::SetVcpuContext => "setting the boot vCPU's registers",
            Self::Unpause => "unpausing the domain",
        }
    }
}

impl fmt::Display for BuildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The cause inside a [`BuildError`].
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    #[error(transparent)]
    Xen(#[from] XenError),
    #[error("kernel image: {0}")]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layout(#[from] pvh_boot::LayoutOrImageError),
    /// pvh-boot's write errors keep the cause as their `source` only; the chain is spelled out here so a
    /// one-line report still says why the write failed.
    #[error("{}", with_causes(.0))]
    Load(#[from] pvh_boot::BuildError<GuestWriteError>),
    /// A write into guest memory (ARM loads its parts itself).
    #[error("{}", with_causes(.0))]
    GuestWrite(#[from] GuestWriteError),
    /// The ARM guest does not fit its memory, or asks for what Xen cannot give.
    #[error(transparent)]
    ArmLayout(#[from] arm::ArmLayoutError),
    /// The guest device tree could not be generated.
    #[error("guest device tree: {0}")]
    DeviceTree(#[from] device_tree::guest::GuestDtError),
    #[error("HVM context from Xen: {0}")]
    HvmContext(#[from] x86::HvmContextError),
    #[error("{0}")]
    Config(String),
    /// The kernel file of a streamed kernel ([`kernel_file`]) could not be read again.
    #[error("reading {path}: {source}")]
    KernelFile {
        path: String,
        source: std::io::Error,
    },
}

/// `error: cause: cause …`, skipping causes whose text the previous message already contains.
fn with_causes(e: &dyn core::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = c.source();
    }
    text
}

/// What happened to the half-built domain after a failure.
#[derive(Debug)]
pub enum Cleanup {
    /// The failure came before a domain existed.
    NoDomain,
    /// The domain was destroyed.
    Destroyed,
    /// Destroying it failed too; the domain is left behind (paused).
    DestroyFailed(Box<XenError>),
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDomain => Ok(()),
            Self::Destroyed => f.write_str("; the half-built domain was destroyed"),
            Self::DestroyFailed(e) => write!(
                f,
                "; destroying the half-built domain failed too ({e}), it is left paused"
            ),
        }
    }
}

/// Which builder a [`BuildError`] or [`BuiltDomain`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestKind {
    Pvh,
    Arm64,
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pvh => "PVH",
            Self::Arm64 => "ARM64",
        })
    }
}

fn domid_text(d: &Option<DomId>) -> String {
    d.map(|d| format!(" (domain {d})")).unwrap_or_default()
}

/// A failed build: which domain, which step, why, and what became of the half-built domain.
#[derive(Debug, thiserror::Error)]
#[error(
    "building {kind} domain '{domain}'{}: {step} failed: {source}{cleanup}",
    domid_text(domid)
)]
pub struct BuildError {
    pub kind: GuestKind,
    pub domain: String,
    pub domid: Option<DomId>,
    pub step: BuildStep,
    #[source]
    pub source: Box<BuildFailure>,
    pub cleanup: Cleanup,
}

/// A console ring of a built guest (`struct xencons_interface`, `xen/include/public/io/console.h`):
/// the PV console page, or the vPL011's page, which Xen's vpl011 emulation fills with the same
/// structure (`xen/arch/arm/vpl011.c`: guest output goes to `out`, backend input is read from `in`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingChannel {
    /// Guest frame of the ring page.
    pub pfn: u64,
    /// The unbound port in the guest (`remote_dom` = the backend) that the backend binds interdomain.
    pub port: u32,
}

/// What the guest sees as its console; the backend serves both the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsoleKind {
    /// The Xen PV console (`hvc0`): `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN`.
    Pv,
    /// The emulated SBSA UART (`ttyAMA0`), ring set up by `XEN_DOMCTL_vuart_op`.
    Vpl011,
}

/// Arch-specific results of a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootDetails {
    Pvh {
        /// BSP `rip` (the PVH entry).
        entry: u32,
        /// BSP `rbx`.
        start_info_gpa: u64,
        /// The e820 given to `XENMEM_set_memory_map`.
        memory_map: Vec<x86::E820Entry>,
    },
    Arm64(ArmBoot),
}

/// A built (and, unless built paused, running) guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltDomain {
    pub kind: GuestKind,
    pub name: String,
    pub domid: DomId,
    pub vcpus: u32,
    /// The ring the console backend binds and relays.
    pub console: RingChannel,
    pub console_kind: ConsoleKind,
    pub xenstore: Option<RingChannel>,
    /// Pages populated (RAM + ACPI/special/magic pages).
    pub populated_pages: u64,
    /// `max_mem` given, KiB.
    pub max_mem_kib: u64,
    pub paging_pool_bytes: u64,
    /// Foreign mappings made while loading.
    pub mappings: usize,
    pub boot: BootDetails,
}

/// Splits populate ranges into 2 MiB-aligned superpage bases and the 4 KiB frames around them.
pub fn split_extents(ranges: &[PfnRange]) -> (Vec<u64>, Vec<u64>) {
    let mut supers = Vec::new();
    let mut singles = Vec::new();
    for r in ranges {
        let end = r.end();
        let mut pfn = r.start;
        while pfn < end {
            if pfn.is_multiple_of(SUPERPAGE_PAGES) && end - pfn >= SUPERPAGE_PAGES {
                supers.push(pfn);
                pfn += SUPERPAGE_PAGES;
            } else {
                singles.push(pfn);
                pfn += 1;
            }
        }
    }
    (supers, singles)
}

/// Populates `ranges`: 2 MiB extents where aligned, 4 KiB frames around them.
pub(crate) fn populate<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    ranges: &[PfnRange],
) -> Result<(), XenError> {
    let (supers, singles) = split_extents(ranges);
    if !supers.is_empty() {
        xen.populate_physmap_order(domid, SUPERPAGE_ORDER, &supers)?;
    }
    if !singles.is_empty() {
        xen.populate_physmap(domid, &singles)?;
    }
    Ok(())
}

/// A failure inside a build, before it becomes a [`BuildError`].
pub(crate) struct Failed {
    pub(crate) step: BuildStep,
    pub(crate) source: Box<BuildFailure>,
}

/// `map_err` adapter: "this error happened at `step`".
pub(crate) fn at<E: Into<BuildFailure>>(step: BuildStep) -> impl FnOnce(E) -> Failed {
    move |e| Failed {
        step,
        source: Box::new(e.into()),
    }
}

/// Runs `construct` on a freshly created domain; on failure destroys it and reports the step.
pub(crate) fn finish_or_destroy<H: Hypercalls>(
    xen: &mut Xen<H>,
    kind: GuestKind,
    name: &str,
    domid: DomId,
    result: Result<BuiltDomain, Failed>,
) -> Result<BuiltDomain, BuildError> {
    match result {
        Ok(built) => Ok(built),
        Err(f) => {
            let cleanup = match xen.destroy(domid) {
                Ok(()) => Cleanup::Destroyed,
                Err(e) => Cleanup::DestroyFailed(Box::new(e)),
            };
            Err(BuildError {
                kind,
                domain: name.to_string(),
                domid: Some(domid),
                step: f.step,
                source: f.source,
                cleanup,
            })
        }
    }
}

/// A failure before any domain exists.
pub(crate) fn failed_early(kind: GuestKind, name: &str, f: Failed) -> BuildError {
    BuildError {
        kind,
        domain: name.to_string(),
        domid: None,
        step: f.step,
        source: f.source,
        cleanup: Cleanup::NoDomain,
    }
}
