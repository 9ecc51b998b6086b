//! The typed API: [`Xen`] over any [`Hypercalls`] transport, with errors that name the operation and say
//! what Xen's errno means for it.

use crate::abi::{
    self, AddToPhysmap, DomctlAddressSize, DomctlAssignDeviceDt, DomctlBindPtIrqSpi,
    DomctlHvmContext, DomctlIomemPermission, DomctlIrqPermission, DomctlMaxMem, DomctlMaxVcpus,
    DomctlMemoryMapping, DomctlPagingMempool, DomctlVcpuAffinity, DomctlVcpuContext, DomctlVuartOp,
    EvtchnAllocUnbound, ForeignMemoryMap, GetDomainInfoCommon, HvmParam, InterfaceVersion,
    MemoryReservation, XenDomctl, XenctlBitmap, arm, cmd, x86,
};
use crate::guest_memory::GuestMapping;
use crate::transport::{Errno, HypercallBuffer, Hypercalls, TransportError, XenArch};
use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An ordinary domain id (below `DOMID_FIRST_RESERVED`, 0x7FF0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(u16);

impl DomId {
    /// Domain 0, the usual control domain.
    pub const DOM0: DomId = DomId(0);

    /// `Some` if `id` names an ordinary domain (`< DOMID_FIRST_RESERVED`).
    pub const fn new(id: u16) -> Option<Self> {
        if id < abi::domid::FIRST_RESERVED {
            Some(Self(id))
        } else {
            None
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The hypercall operations this crate issues; their `Display` is Xen's own name, so an error message can
/// be looked up in the Xen headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    CreateDomain,
    DestroyDomain,
    PauseDomain,
    UnpauseDomain,
    GetDomainInfo,
    SetVcpuAffinity,
    MaxMem,
    SetVcpuContext,
    MaxVcpus,
    SetAddressSize,
    IrqPermission,
    IomemPermission,
    GetHvmContext,
    SetHvmContext,
    AssignDevice,
    BindPtIrq,
    MemoryMapping,
    VuartOp,
    SetPagingMempoolSize,
    PopulatePhysmap,
    AddToPhysmap,
    RemoveFromPhysmap,
    MaximumGpfn,
    SetMemoryMap,
    HvmSetParam,
    HvmGetParam,
    EvtchnAllocUnbound,
    XenVersion,
    MapForeign,
}

impl Op {
    /// Whether this is a domctl (and so subject to the interface version check).
    pub const fn is_domctl(self) -> bool {
        !matches!(
            self,
            Self::PopulatePhysmap
                | Self::AddToPhysmap
                | Self::RemoveFromPhysmap
                | Self::MaximumGpfn
                | Self::SetMemoryMap
                | Self::HvmSetParam
                | Self::HvmGetParam
                | Self::EvtchnAllocUnbound
                | Self::XenVersion
                | Self::MapForeign
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::CreateDomain => "XEN_DOMCTL_createdomain",
            Self::DestroyDomain => "XEN_DOMCTL_destroydomain",
            Self::PauseDomain => "XEN_DOMCTL_pausedomain",
            Self::UnpauseDomain => "XEN_DOMCTL_unpausedomain",
            Self::GetDomainInfo => "XEN_DOMCTL_getdomaininfo",
            Self::SetVcpuAffinity => "XEN_DOMCTL_setvcpuaffinity",
            Self::MaxMem => "XEN_DOMCTL_max_mem",
            Self::SetVcpuContext => "XEN_DOMCTL_setvcpucontext",
            Self::MaxVcpus => "XEN_DOMCTL_max_vcpus",
            Self::SetAddressSize => "XEN_DOMCTL_set_address_size",
            Self::IrqPermission => "XEN_DOMCTL_irq_permission",
            Self::IomemPermission => "XEN_DOMCTL_iomem_permission",
            Self::GetHvmContext => "XEN_DOMCTL_gethvmcontext",
            Self::SetHvmContext => "XEN_DOMCTL_sethvmcontext",
            Self::AssignDevice => "XEN_DOMCTL_assign_device",
            Self::BindPtIrq => "XEN_DOMCTL_bind_pt_irq",
            Self::MemoryMapping => "XEN_DOMCTL_memory_mapping",
            Self::VuartOp => "XEN_DOMCTL_vuart_op",
            Self::SetPagingMempoolSize => "XEN_DOMCTL_set_paging_mempool_size",
            Self::PopulatePhysmap => "XENMEM_populate_physmap",
            Self::AddToPhysmap => "XENMEM_add_to_physmap",
            Self::RemoveFromPhysmap => "XENMEM_remove_from_physmap",
            Self::MaximumGpfn => "XENMEM_maximum_gpfn",
            Self::SetMemoryMap => "XENMEM_set_memory_map",
            Self::HvmSetParam => "HVMOP_set_param",
            Self::HvmGetParam => "HVMOP_get_param",
            Self::EvtchnAllocUnbound => "EVTCHNOP_alloc_unbound",
            Self::XenVersion => "XENVER_version",
            Self::MapForeign => "IOCTL_PRIVCMD_MMAPBATCH_V2",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// " on domain N" or "".
fn on(domid: &Option<u16>) -> String {
    match domid {
        Some(d) => format!(" on domain {d}"),
        None => String::new(),
    }
}

/// What an errno from Xen means for `op` — the text a person needs instead of strerror's.
pub fn errno_meaning(op: Op, errno: Errno) -> &'static str {
    match (op, errno) {
        (_, Errno::EPERM) => {
            "not permitted: this domain is not privileged for it (run from the control domain)"
        }
        (o, Errno::EACCES) if o.is_domctl() => {
            "refused by the XSM/FLASK policy (the interface version was accepted)"
        }
        (_, Errno::EACCES) => "refused by the XSM/FLASK policy",
        (_, Errno::ESRCH) => "no such domain",
        (Op::CreateDomain, Errno::EEXIST) => "that domain id is already in use",
        (Op::CreateDomain, Errno::EINVAL) => {
            "Xen rejected the domain configuration (flags, vCPU count, grant/event-channel limits or \
             arch config not supported by this Xen or hardware)"
        }
        (Op::MaxVcpus, Errno::EINVAL) => "the vCPU count must equal createdomain's max_vcpus",
        (Op::SetAddressSize, Errno::EBUSY) => {
            "the execution state can only change before the domain has any memory"
        }
        (Op::SetAddressSize, Errno::EINVAL) => {
            "this size is not supported (AArch32 guests need AArch32-capable CPUs)"
        }
        (Op::SetPagingMempoolSize, Errno::EINVAL) => {
            "the paging pool size must be a whole number of pages"
        }
        (Op::MemoryMapping, Errno::E2BIG) => "too many frames in one call",
        (Op::BindPtIrq, Errno::EINVAL) => {
            "the SPI is out of range or already routed (Xen routes SPIs 1:1: guest SPI = host SPI)"
        }
        (Op::BindPtIrq, Errno::EOPNOTSUPP) => "only SPIs can be routed to ARM guests",
        (Op::AssignDevice, Errno::EINVAL) => {
            "the device tree path names no node Xen knows, or the node is not marked for passthrough \
             (xen,passthrough) or has no IOMMU"
        }
        (Op::AssignDevice, Errno::EBUSY) => "the device is already assigned to another domain",
        (Op::AssignDevice, Errno::ENODEV) => "Xen has no IOMMU for this device",
        (Op::AssignDevice, Errno::EOPNOTSUPP) => {
            "the domain was created without XEN_DOMCTL_CDF_iommu (or Xen runs without an IOMMU)"
        }
        (Op::GetHvmContext | Op::SetHvmContext, Errno::ENOSYS) => {
            "HVM context is x86-only (not on this hypervisor)"
        }
        (Op::SetMemoryMap, Errno::ENOSYS) => "XENMEM_set_memory_map is x86-only",
        (Op::MapForeign, Errno::ENOENT) => "the frame is paged out or not populated",
        (_, Errno::EINVAL) => "Xen rejected the arguments as invalid",
        (_, Errno::ENOMEM) => "Xen is out of memory",
        (_, Errno::ENOSPC) => "the buffer is too small for Xen's answer",
        (_, Errno::EEXIST) => "already exists",
        (_, Errno::EBUSY) => "busy",
        (_, Errno::EFAULT) => {
            "Xen could not access an argument buffer (not in hypercall-safe memory, or too short)"
        }
        (_, Errno::ENOSYS) => "this Xen does not implement the operation (not built in)",
        (_, Errno::EOPNOTSUPP) => "not supported by this Xen or hardware",
        (_, Errno::E2BIG) => "request too large",
        (_, Errno::ENOENT) => "not found",
        (_, Errno::ENODEV) => "no such device",
        (_, Errno::ENXIO) => "no such device or address",
        (_, Errno::ERANGE) => "value out of range",
        _ => "unexpected error",
    }
}

/// How the domctl interface version probe went for one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeAttempt {
    pub version: InterfaceVersion,
    /// `Ok(())` if getdomaininfo succeeded, else Xen's errno.
    pub answer: Result<(), Errno>,
}

/// The outcome of [`Xen::probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The interface version Xen accepted.
    pub version: InterfaceVersion,
    /// What `XENVER_version` said, if it answered: (major, minor).
    pub release: Option<(u16, u16)>,
    /// Every attempt in order.
    pub attempts: Vec<ProbeAttempt>,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "domctl interface version 0x{:02x}: {}",
            self.version.value(),
            self.version.release_family()
        )?;
        if let Some((maj, min)) = self.release {
            write!(f, " (XENVER_version says Xen {maj}.{min})")?;
        }
        Ok(())
    }
}

fn describe_attempts(attempts: &[ProbeAttempt]) -> String {
    attempts
        .iter()
        .map(|a| match a.answer {
            Ok(()) => format!("0x{:02x}: ok", a.version.value()),
            Err(e) => format!("0x{:02x}: {e}", a.version.value()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_release(release: &Option<(u16, u16)>) -> String {
    match release {
        Some((maj, min)) => format!("Xen {maj}.{min}"),
        None => "a Xen that did not answer XENVER_version".to_string(),
    }
}

/// Errors of the typed API. Each names the operation (Xen's name for it) and, where there is one, the
/// domain.
#[derive(Debug, thiserror::Error)]
pub enum XenError {
    /// Xen answered `EACCES` because `xen_domctl.interface_version` is not its own.
    #[error(
        "{op}{}: domctl interface version mismatch: this Xen speaks {speaks}, we sent 0x{sent:02x}",
        on(domid)
    )]
    VersionMismatch {
        op: Op,
        domid: Option<u16>,
        sent: u32,
        /// e.g. "0x15 (Xen 4.17)", or what is known when no known version matched.
        speaks: String,
    },
    /// Xen refused the operation.
    #[error("{op}{}: {meaning} ({errno})", on(domid))]
    Hypervisor {
        op: Op,
        domid: Option<u16>,
        errno: Errno,
        meaning: &'static str,
    },
    /// The request was refused before reaching Xen, because Xen would refuse or misread it.
    #[error("{op}{}: {reason}", on(domid))]
    Invalid {
        op: Op,
        domid: Option<u16>,
        reason: String,
    },
    /// `XENMEM_populate_physmap` stopped early.
    #[error(
        "{op} on domain {domid}: only {done} of {requested} extents were populated; Xen stopped at frame \
         {stopped_at:#x} (already populated, above the domain's memory limit, or out of memory)"
    )]
    PartialPopulate {
        op: Op,
        domid: u16,
        done: usize,
        requested: usize,
        stopped_at: u64,
    },
    /// Xen's answer could not be interpreted.
    #[error("{op}{}: unexpected answer from Xen: {detail}", on(domid))]
    BadAnswer {
        op: Op,
        domid: Option<u16>,
        detail: String,
    },
    /// The transport failed (device missing, mmap failed, …).
    #[error("{op}{}: {source}", on(domid))]
    Transport {
        op: Op,
        domid: Option<u16>,
        #[source]
        source: TransportError,
    },
    /// No known interface version was accepted.
    #[error(
        "domctl interface version probe: {} accepted none of 0x15-0x18 ({}). This toolstack supports \
         Xen 4.17 to 4.22; an XSM/FLASK policy denying getdomaininfo also looks like this",
        describe_release(release),
        describe_attempts(attempts)
    )]
    NoKnownVersion {
        attempts: Vec<ProbeAttempt>,
        release: Option<(u16, u16)>,
    },
    /// The probe's domctl was refused for a reason other than the version.
    #[error(
        "domctl interface version probe: XEN_DOMCTL_getdomaininfo with 0x{:02x} answered {errno}: {}",
        version.value(), errno_meaning(Op::GetDomainInfo, *errno)
    )]
    ProbeRefused {
        version: InterfaceVersion,
        errno: Errno,
    },
}

/// The arch-specific part of a domain's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchConfig {
    X86(x86::ArchDomainConfig),
    Arm(arm::ArchDomainConfig),
}

impl ArchConfig {
    pub const fn arch(&self) -> XenArch {
        match self {
            Self::X86(_) => XenArch::X86_64,
            Self::Arm(_) => XenArch::Arm64,
        }
    }
}

/// What `XEN_DOMCTL_createdomain` should build (`struct xen_domctl_createdomain`, arch-neutral).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateDomain {
    /// `None`: let Xen pick (0 before 4.22, `DOMID_ANY` from 4.22 — chosen per interface version).
    pub domid: Option<DomId>,
    pub ssidref: u32,
    /// `xen_domain_handle_t`: a UUID for the domain.
    pub handle: [u8; 16],
    /// `XEN_DOMCTL_CDF_*` ([`abi::cdf`]).
    pub flags: u32,
    pub iommu_opts: u32,
    pub max_vcpus: u32,
    pub max_evtchn_port: u32,
    /// `< 0` means Xen's default.
    pub max_grant_frames: i32,
    /// `< 0` means Xen's default.
    pub max_maptrack_frames: i32,
    /// Highest grant table version the guest may use (low 4 bits of `grant_opts`).
    pub max_grant_version: u8,
    /// `altp2m.opts` (4.19+; must be 0 before).
    pub altp2m_opts: u16,
    /// `altp2m.nr` (4.21+; must be 0 before).
    pub altp2m_nr: u16,
    pub vmtrace_size: u32,
    pub cpupool_id: u32,
    pub arch: ArchConfig,
}

impl CreateDomain {
    /// An x86 PVH guest as libxl's `type = "pvh"` makes it: HVM container with HAP, only the local APIC
    /// emulated, Xen's default grant and maptrack limits, 1023 event channels, grant table v1.
    pub fn pvh(max_vcpus: u32) -> Self {
        Self {
            domid: None,
            ssidref: 0,
            handle: [0; 16],
            flags: abi::cdf::HVM | abi::cdf::HAP,
            iommu_opts: 0,
            max_vcpus,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            max_grant_version: 1,
            altp2m_opts: 0,
            altp2m_nr: 0,
            vmtrace_size: 0,
            cpupool_id: 0,
            arch: ArchConfig::X86(x86::ArchDomainConfig {
                emulation_flags: x86::emu::PVH,
                misc_flags: 0,
            }),
        }
    }

    /// An ARM guest: HVM + HAP (the only kind ARM has), the given GIC version and number of SPIs
    /// (`nr_spis`: SPIs beyond the 32 private interrupts), no TEE.
    pub fn arm(max_vcpus: u32, gic_version: u8, nr_spis: u32) -> Self {
        Self {
            arch: ArchConfig::Arm(arm::ArchDomainConfig {
                gic_version,
                nr_spis,
                ..Default::default()
            }),
            ..Self::pvh(max_vcpus)
        }
    }
}

/// What `XEN_DOMCTL_getdomaininfo` says about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub domid: DomId,
    /// `XEN_DOMINF_*` ([`abi::dominf`]).
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shared_info_frame: u64,
    pub cpu_time_ns: u64,
    pub nr_online_vcpus: u32,
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    pub handle: [u8; 16],
    pub cpupool: u32,
    pub gpaddr_bits: u8,
    pub arch: ArchConfig,
}

impl DomainInfo {
    pub fn is_dying(&self) -> bool {
        self.flags & abi::dominf::DYING != 0
    }
    pub fn is_paused(&self) -> bool {
        self.flags & abi::dominf::PAUSED != 0
    }
    pub fn is_hvm(&self) -> bool {
        self.flags & abi::dominf::HVM_GUEST != 0
    }
    pub fn is_shutdown(&self) -> bool {
        self.flags & abi::dominf::SHUTDOWN != 0
    }
    /// The guest's `SHUTDOWN_*` reason code, when it has shut down.
    pub fn shutdown_reason(&self) -> Option<u32> {
        self.is_shutdown()
            .then_some((self.flags >> abi::dominf::SHUTDOWN_SHIFT) & abi::dominf::SHUTDOWN_MASK)
    }

    fn from_common(c: &GetDomainInfoCommon, arch: ArchConfig) -> Option<Self> {
        Some(Self {
            domid: DomId::new(c.domain)?,
            flags: c.flags,
            tot_pages: c.tot_pages,
            max_pages: c.max_pages,
            outstanding_pages: c.outstanding_pages,
            shared_info_frame: c.shared_info_frame,
            cpu_time_ns: c.cpu_time,
            nr_online_vcpus: c.nr_online_vcpus,
            max_vcpu_id: c.max_vcpu_id,
            ssidref: c.ssidref,
            handle: c.handle,
            cpupool: c.cpupool,
            gpaddr_bits: c.gpaddr_bits,
            arch,
        })
    }
}

/// `struct xen_domctl_createdomain` for interface `v` and `cfg`'s architecture, as bytes: the 0x15/0x16
/// layout without `altp2m`, or the 0x17+ one with it (`xen/include/public/domctl.h` at RELEASE-4.17.0
/// and RELEASE-4.19.0; see [`x86::CreateDomainV15`], [`x86::CreateDomainV17`] and their ARM
/// counterparts, whose field offsets are asserted against the header).
fn createdomain_payload(cfg: &CreateDomain, v: InterfaceVersion) -> Vec<u8> {
    // The fields common to every layout, named once; each arm only places them.
    macro_rules! layout {
        ($m:ident::$t:ident, $arch:expr $(, $field:ident: $value:expr)*) => {
            IntoBytes::as_bytes(&$m::$t {
                ssidref: cfg.ssidref,
                handle: cfg.handle,
                flags: cfg.flags,
                iommu_opts: cfg.iommu_opts,
                max_vcpus: cfg.max_vcpus,
                max_evtchn_port: cfg.max_evtchn_port,
                max_grant_frames: cfg.max_grant_frames,
                max_maptrack_frames: cfg.max_maptrack_frames,
                grant_opts: u32::from(cfg.max_grant_version),
                vmtrace_size: cfg.vmtrace_size,
                cpupool_id: cfg.cpupool_id,
                arch: $arch,
                $($field: $value,)*
            })
            .to_vec()
        };
    }
    match (cfg.arch, v.createdomain_has_altp2m()) {
        (ArchConfig::X86(a), false) => layout!(x86::CreateDomainV15, a),
        (ArchConfig::X86(a), true) => layout!(x86::CreateDomainV17, a,
            altp2m_opts: cfg.altp2m_opts, altp2m_nr: cfg.altp2m_nr),
        (ArchConfig::Arm(a), false) => layout!(arm::CreateDomainV15, a),
        (ArchConfig::Arm(a), true) => layout!(arm::CreateDomainV17, a,
            altp2m_opts: cfg.altp2m_opts, altp2m_nr: cfg.altp2m_nr),
    }
}

/// Extents per `XENMEM_populate_physmap` call: bounds the hypercall buffer (64 KiB) and makes a partial
/// failure point at the exact frame.
const POPULATE_BATCH: usize = 8192;

/// The typed Xen API over a transport.
pub struct Xen<H: Hypercalls> {
    hc: H,
    version: InterfaceVersion,
    /// Whether `version` came from [`Xen::probe`] (then an `EACCES` is not a version mismatch).
    probed: bool,
    release: Option<(u16, u16)>,
}

impl<H: Hypercalls> Xen<H> {
    /// Probes the running Xen's domctl interface version, then wraps the transport.
    pub fn open(hc: H) -> Result<(Self, ProbeReport), XenError> {
        let mut hc = hc;
        let report = Self::probe(&mut hc)?;
        let xen = Self {
            hc,
            version: report.version,
            probed: true,
            release: report.release,
        };
        Ok((xen, report))
    }

    /// Wraps the transport with a known interface version (no probe). An `EACCES` from a domctl then
    /// triggers a probe to say which version the Xen actually speaks.
    pub fn with_version(hc: H, version: InterfaceVersion) -> Self {
        Self {
            hc,
            version,
            probed: false,
            release: None,
        }
    }

    /// The interface version in use.
    pub fn version(&self) -> InterfaceVersion {
        self.version
    }

    /// The transport (e.g. to inspect a `fake::FakeXen` after a test).
    pub fn transport(&self) -> &H {
        &self.hc
    }

    pub fn transport_mut(&mut self) -> &mut H {
        &mut self.hc
    }

    pub fn into_transport(self) -> H {
        self.hc
    }

    /// Finds the domctl interface version the running Xen speaks: tries `XEN_DOMCTL_getdomaininfo` on
    /// domain 0 with 0x15, 0x16, 0x17, 0x18 in turn. Xen checks the version first and answers `EACCES`
    /// to a wrong one; any other answer means the version was accepted (`ESRCH` too: from 0x16 a
    /// missing domain 0, e.g. under dom0less, answers `ESRCH`). `EPERM` means we are not privileged.
    pub fn probe(hc: &mut H) -> Result<ProbeReport, XenError> {
        let release = xen_version(hc).ok();
        let mut attempts = Vec::new();
        for version in InterfaceVersion::ALL {
            let answer = probe_one(hc, version);
            attempts.push(ProbeAttempt { version, answer });
            match answer {
                Err(Errno::EACCES) => continue,
                Ok(()) | Err(Errno::ESRCH) => {
                    return Ok(ProbeReport {
                        version,
                        release,
                        attempts,
                    });
                }
                Err(errno) => return Err(XenError::ProbeRefused { version, errno }),
            }
        }
        Err(XenError::NoKnownVersion { attempts, release })
    }

    // -----------------------------------------------------------------------------------------------
    // plumbing
    // -----------------------------------------------------------------------------------------------

    fn transport_err(op: Op, domid: Option<u16>, source: TransportError) -> XenError {
        XenError::Transport { op, domid, source }
    }

    fn invalid(op: Op, domid: Option<u16>, reason: impl Into<String>) -> XenError {
        XenError::Invalid {
            op,
            domid,
            reason: reason.into(),
        }
    }

    /// Turns a transport error into the typed error, explaining a domctl `EACCES`.
    fn hypercall_err(&mut self, op: Op, domid: Option<u16>, e: TransportError) -> XenError {
        match e {
            TransportError::Xen(Errno::EACCES) if op.is_domctl() => {
                if self.probed {
                    XenError::Hypervisor {
                        op,
                        domid,
                        errno: Errno::EACCES,
                        meaning: errno_meaning(op, Errno::EACCES),
                    }
                } else {
                    let speaks = match Self::probe(&mut self.hc) {
                        Ok(r) if r.version == self.version => {
                            return XenError::Hypervisor {
                                op,
                                domid,
                                errno: Errno::EACCES,
                                meaning: errno_meaning(op, Errno::EACCES),
                            };
                        }
                        Ok(r) => r.version.to_string(),
                        Err(XenError::NoKnownVersion { release, .. }) => {
                            format!("none of 0x15-0x18 (it is {})", describe_release(&release))
                        }
                        Err(other) => format!("an unknown version (probe failed: {other})"),
                    };
                    XenError::VersionMismatch {
                        op,
                        domid,
                        sent: self.version.value(),
                        speaks,
                    }
                }
            }
            TransportError::Xen(errno) => XenError::Hypervisor {
                op,
                domid,
                errno,
                meaning: errno_meaning(op, errno),
            },
            other => Self::transport_err(op, domid, other),
        }
    }

    fn buffer_with(
        &mut self,
        op: Op,
        domid: Option<u16>,
        bytes: &[u8],
    ) -> Result<H::Buffer, XenError> {
        let mut buf = self
            .hc
            .alloc_buffer(bytes.len())
            .map_err(|e| Self::transport_err(op, domid, e))?;
        buf.write_at(0, bytes)
            .map_err(|e| Self::transport_err(op, domid, e))?;
        Ok(buf)
    }

    fn read_back<T: FromBytes + IntoBytes>(
        op: Op,
        domid: Option<u16>,
        buf: &H::Buffer,
    ) -> Result<T, XenError> {
        let mut v = T::new_zeroed();
        buf.read_at(0, v.as_mut_bytes())
            .map_err(|e| Self::transport_err(op, domid, e))?;
        Ok(v)
    }

    /// Issues one domctl and returns the envelope Xen copied back.
    fn domctl<T: IntoBytes + Immutable + ?Sized>(
        &mut self,
        op: Op,
        command: u32,
        domain: u16,
        payload: &T,
    ) -> Result<XenDomctl, XenError> {
        // createdomain's auto-allocation value (0 before 4.22) names no domain.
        let auto =
            command == cmd::CREATEDOMAIN && domain == 0 && !self.version.can_request_domid_zero();
        let domid = Some(domain).filter(|d| *d < abi::domid::FIRST_RESERVED && !auto);
        let d = XenDomctl::new(command, self.version.value(), domain, payload).map_err(|e| {
            XenError::BadAnswer {
                op,
                domid,
                detail: e.to_string(),
            }
        })?;
        let buf = self.buffer_with(op, domid, d.as_bytes())?;
        let r = self
            .hc
            .hypercall(abi::hypercall::DOMCTL, [buf.address(), 0, 0, 0, 0]);
        if let Err(e) = r {
            return Err(self.hypercall_err(op, domid, e));
        }
        Self::read_back(op, domid, &buf)
    }

    /// Issues a hypercall `(op_nr, sub, &arg)` with `arg` in a hypercall buffer; returns Xen's result and
    /// the argument as copied back.
    fn call_with_arg<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        op: Op,
        domid: Option<u16>,
        hypercall: u64,
        sub: u64,
        arg: &T,
    ) -> Result<(u64, T), XenError> {
        let buf = self.buffer_with(op, domid, arg.as_bytes())?;
        let r = self.hc.hypercall(hypercall, [sub, buf.address(), 0, 0, 0]);
        match r {
            Ok(v) => Ok((v, Self::read_back(op, domid, &buf)?)),
            Err(e) => Err(self.hypercall_err(op, domid, e)),
        }
    }

    fn check_arch(&self, op: Op, domid: Option<u16>, want: XenArch) -> Result<(), XenError> {
        let have = self.hc.arch();
        if have == want {
            Ok(())
        } else {
            Err(Self::invalid(
                op,
                domid,
                format!("{op} is {want}-only; this hypervisor is {have}"),
            ))
        }
    }

    // -----------------------------------------------------------------------------------------------
    // domain lifecycle
    // -----------------------------------------------------------------------------------------------

    /// `XEN_DOMCTL_createdomain`. The new domain is paused until [`unpause`](Self::unpause).
    pub fn create_domain(&mut self, cfg: &CreateDomain) -> Result<DomId, XenError> {
        self.create_domain_resolved(cfg).map(|(domid, _)| domid)
    }

    /// [`create_domain`](Self::create_domain), also returning the arch configuration as Xen
    /// resolved it. `xen_domctl_createdomain.arch` is IN/OUT and copied back (`copyback` in
    /// `do_domctl()`): on ARM `arch_sanitise_domain_config()` turns `GIC_NATIVE` into the host's
    /// version and fills `clock_frequency` — values `XEN_DOMCTL_getdomaininfo` does not report
    /// (ARM's `arch_get_domain_info()` in `xen/arch/arm/domctl.c` sets only the HAP flag and
    /// `gpaddr_bits`), so this answer is the only place to learn them.
    pub fn create_domain_resolved(
        &mut self,
        cfg: &CreateDomain,
    ) -> Result<(DomId, ArchConfig), XenError> {
        let op = Op::CreateDomain;
        let v = self.version;
        let requested = cfg.domid.map(DomId::get);
        let domain = self.check_create_domain(cfg)?;
        let payload = createdomain_payload(cfg, v);
        let d = self.domctl(op, cmd::CREATEDOMAIN, domain, payload.as_slice())?;
        let domid = DomId::new(d.domain).ok_or_else(|| XenError::BadAnswer {
            op,
            domid: requested,
            detail: format!("Xen returned reserved domain id {:#x}", d.domain),
        })?;
        // `arch` is IN/OUT: read it back from where this version's layout put it.
        let resolved = match cfg.arch {
            ArchConfig::Arm(sent) => {
                let off = arm::createdomain_arch_offset(v);
                let back =
                    d.u.0
                        .get(off..off + size_of::<arm::ArchDomainConfig>())
                        .and_then(|b| arm::ArchDomainConfig::read_from_bytes(b).ok())
                        .unwrap_or(sent);
                ArchConfig::Arm(back)
            }
            x86 => x86,
        };
        Ok((domid, resolved))
    }

    /// Refuses a createdomain request this Xen would refuse or misread; returns the
    /// `xen_domctl.domain` value to send.
    fn check_create_domain(&self, cfg: &CreateDomain) -> Result<u16, XenError> {
        let op = Op::CreateDomain;
        let v = self.version;
        let requested = cfg.domid.map(DomId::get);
        if cfg.arch.arch() != self.hc.arch() {
            return Err(Self::invalid(
                op,
                requested,
                format!(
                    "an {} domain configuration cannot be created on an {} hypervisor",
                    cfg.arch.arch(),
                    self.hc.arch()
                ),
            ));
        }
        if cfg.max_vcpus == 0 {
            return Err(Self::invalid(op, requested, "max_vcpus must be at least 1"));
        }
        let known_flags = match v {
            InterfaceVersion::V15 | InterfaceVersion::V16 => abi::cdf::ALL_4_17,
            _ => abi::cdf::ALL_4_21,
        };
        if cfg.flags & !known_flags != 0 {
            return Err(Self::invalid(
                op,
                requested,
                format!(
                    "flags {:#x} include bits {} does not know",
                    cfg.flags,
                    v.release_family()
                ),
            ));
        }
        if cfg.max_grant_version > 0xf {
            return Err(Self::invalid(
                op,
                requested,
                "max_grant_version must fit in 4 bits (XEN_DOMCTL_GRANT_version_mask)",
            ));
        }
        if !v.createdomain_has_altp2m() && (cfg.altp2m_opts != 0 || cfg.altp2m_nr != 0) {
            return Err(Self::invalid(
                op,
                requested,
                "altp2m in createdomain needs Xen 4.19+ (interface 0x17); older Xen sets it with \
                 HVM_PARAM_ALTP2M",
            ));
        }
        if cfg.altp2m_nr != 0 && self.release.is_some_and(|r| r < (4, 21)) {
            return Err(Self::invalid(op, requested, "altp2m.nr needs Xen 4.21+"));
        }
        let domain = match cfg.domid {
            None => v.createdomain_auto_domid(),
            Some(d) if d.get() == 0 && !v.can_request_domid_zero() => {
                return Err(Self::invalid(
                    op,
                    requested,
                    format!(
                        "domain id 0 cannot be requested from {}: 0 means \"pick one\" before Xen 4.22",
                        v.release_family()
                    ),
                ));
            }
            Some(d) => d.get(),
        };
        if let ArchConfig::Arm(a) = &cfg.arch {
            self.check_arm_arch_config(a, requested)?;
        }
        Ok(domain)
    }

    /// Fields of the ARM arch config that older Xen would silently ignore (they lie past its struct end,
    /// or in its padding) are refused instead.
    fn check_arm_arch_config(
        &self,
        a: &arm::ArchDomainConfig,
        domid: Option<u16>,
    ) -> Result<(), XenError> {
        let op = Op::CreateDomain;
        let v = self.version;
        if a.sve_vl != 0 && v < InterfaceVersion::V16 {
            return Err(Self::invalid(
                op,
                domid,
                "sve_vl needs Xen 4.18+ (interface 0x16)",
            ));
        }
        let sci_known = match v {
            InterfaceVersion::V18 => true,
            InterfaceVersion::V17 => self.release.is_some_and(|r| r >= (4, 21)),
            _ => false,
        };
        if a.arm_sci_type != 0 && !sci_known {
            return Err(Self::invalid(
                op,
                domid,
                "arm_sci_type needs Xen 4.21+; 4.19/4.20 share interface 0x17 but would ignore it \
                 (probe with Xen::open so XENVER_version can tell them apart)",
            ));
        }
        if a.v8r_el1_msa != 0 && v < InterfaceVersion::V18 {
            return Err(Self::invalid(
                op,
                domid,
                "v8r_el1_msa needs Xen 4.22+ (interface 0x18)",
            ));
        }
        if a.pad != 0 {
            return Err(Self::invalid(
                op,
                domid,
                "the arch config pad field must be zero",
            ));
        }
        if a.gic_version > arm::GIC_V3 {
            return Err(Self::invalid(
                op,
                domid,
                format!(
                    "unknown GIC version {} (0 native, 1 v2, 2 v3)",
                    a.gic_version
                ),
            ));
        }
        Ok(())
    }

    /// `XEN_DOMCTL_getdomaininfo` for exactly `domid` (on 0x15, where Xen answers for the next domain at
    /// or above `domid`, another domain's answer is turned into `ESRCH`).
    pub fn getdomaininfo(&mut self, domid: DomId) -> Result<DomainInfo, XenError> {
        let op = Op::GetDomainInfo;
        let d = self.domctl(op, cmd::GETDOMAININFO, domid.get(), &[0u8; 0])?;
        let (common, arch) = match self.hc.arch() {
            XenArch::X86_64 => {
                let i: x86::GetDomainInfo = d.payload().map_err(|e| XenError::BadAnswer {
                    op,
                    domid: Some(domid.get()),
                    detail: e.to_string(),
                })?;
                (i.common, ArchConfig::X86(i.arch_config))
            }
            XenArch::Arm64 => {
                let mut i: arm::GetDomainInfo = d.payload().map_err(|e| XenError::BadAnswer {
                    op,
                    domid: Some(domid.get()),
                    detail: e.to_string(),
                })?;
                // Bytes past the 12-byte 4.17–4.20 arch config are not Xen's to fill there.
                if self.version < InterfaceVersion::V18 && self.release.is_none_or(|r| r < (4, 21))
                {
                    i.arch_config.arm_sci_type = 0;
                }
                if self.version < InterfaceVersion::V18 {
                    i.arch_config.v8r_el1_msa = 0;
                    i.arch_config.pad = 0;
                }
                (i.common, ArchConfig::Arm(i.arch_config))
            }
        };
        if common.domain != domid.get() {
            return Err(XenError::Hypervisor {
                op,
                domid: Some(domid.get()),
                errno: Errno::ESRCH,
                meaning: errno_meaning(op, Errno::ESRCH),
            });
        }
        DomainInfo::from_common(&common, arch).ok_or_else(|| XenError::BadAnswer {
            op,
            domid: Some(domid.get()),
            detail: format!("reserved domain id {:#x}", common.domain),
        })
    }

    /// `XEN_DOMCTL_pausedomain`.
    pub fn pause(&mut self, domid: DomId) -> Result<(), XenError> {
        self.domctl(Op::PauseDomain, cmd::PAUSEDOMAIN, domid.get(), &[0u8; 0])
            .map(drop)
    }

    /// `XEN_DOMCTL_unpausedomain`: lets a built domain run.
    pub fn unpause(&mut self, domid: DomId) -> Result<(), XenError> {
        self.domctl(
            Op::UnpauseDomain,
            cmd::UNPAUSEDOMAIN,
            domid.get(),
            &[0u8; 0],
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_destroydomain`. Xen may answer `-ERESTART` internally while it tears the domain down;
    /// privcmd and Xen's continuation handle that, so one call suffices here.
    pub fn destroy(&mut self, domid: DomId) -> Result<(), XenError> {
        self.domctl(
            Op::DestroyDomain,
            cmd::DESTROYDOMAIN,
            domid.get(),
            &[0u8; 0],
        )
        .map(drop)
    }

    // -----------------------------------------------------------------------------------------------
    // limits
    // -----------------------------------------------------------------------------------------------

    /// `XEN_DOMCTL_max_vcpus`: allocates the vCPUs; `max` must equal createdomain's `max_vcpus`.
    pub fn max_vcpus(&mut self, domid: DomId, max: u32) -> Result<(), XenError> {
        self.domctl(
            Op::MaxVcpus,
            cmd::MAX_VCPUS,
            domid.get(),
            &DomctlMaxVcpus { max },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_set_address_size` (ARM): the guest's execution state, 64 (AArch64) or 32 (AArch32).
    /// libxenguest issues it for every ARM guest before populating memory (`set_mode()` in
    /// `tools/libs/guest/xg_dom_arm.c`): Xen 4.17 does not default a toolstack-built domain to AArch64,
    /// and refuses a 64-bit vCPU context for a 32-bit domain (`arch_set_info_guest()`).
    pub fn set_address_size(&mut self, domid: DomId, bits: u32) -> Result<(), XenError> {
        let op = Op::SetAddressSize;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::Arm64)?;
        if bits != 32 && bits != 64 {
            return Err(Self::invalid(
                op,
                dom,
                format!("address size {bits} is neither 32 nor 64"),
            ));
        }
        self.domctl(
            op,
            cmd::SET_ADDRESS_SIZE,
            domid.get(),
            &DomctlAddressSize { size: bits },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_max_mem`: the domain's memory limit, in KiB.
    pub fn set_max_mem(&mut self, domid: DomId, max_kib: u64) -> Result<(), XenError> {
        self.domctl(
            Op::MaxMem,
            cmd::MAX_MEM,
            domid.get(),
            &DomctlMaxMem { max_memkb: max_kib },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_set_paging_mempool_size`: the pool Xen uses for this domain's page tables (HAP/p2m),
    /// in bytes, a whole number of pages.
    pub fn set_paging_mempool_size(&mut self, domid: DomId, bytes: u64) -> Result<(), XenError> {
        let op = Op::SetPagingMempoolSize;
        if !bytes.is_multiple_of(abi::XEN_PAGE_SIZE as u64) {
            return Err(Self::invalid(
                op,
                Some(domid.get()),
                format!("{bytes} bytes is not a whole number of 4 KiB pages"),
            ));
        }
        self.domctl(
            op,
            cmd::SET_PAGING_MEMPOOL_SIZE,
            domid.get(),
            &DomctlPagingMempool { size: bytes },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_setvcpuaffinity`: hard and/or soft affinity of `vcpu`, as CPU bitmaps (bit n of byte
    /// n/8 = physical CPU n). At least one must be given.
    pub fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu: u32,
        hard: Option<&[u8]>,
        soft: Option<&[u8]>,
    ) -> Result<(), XenError> {
        let op = Op::SetVcpuAffinity;
        let dom = Some(domid.get());
        let mut flags = 0;
        let mut bitmap = |mask: Option<&[u8]>,
                          flag: u32,
                          this: &mut Self|
         -> Result<(Option<H::Buffer>, XenctlBitmap), XenError> {
            let Some(mask) = mask else {
                return Ok((None, XenctlBitmap::default()));
            };
            let nr_bits = mask
                .len()
                .checked_mul(8)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Self::invalid(op, dom, "CPU bitmap too large"))?;
            flags |= flag;
            let buf = this.buffer_with(op, dom, mask)?;
            let bm = XenctlBitmap {
                bitmap: buf.address(),
                nr_bits,
                _pad: 0,
            };
            Ok((Some(buf), bm))
        };
        let (_hard_buf, cpumap_hard) = bitmap(hard, abi::VCPUAFFINITY_HARD, self)?;
        let (_soft_buf, cpumap_soft) = bitmap(soft, abi::VCPUAFFINITY_SOFT, self)?;
        if flags == 0 {
            return Err(Self::invalid(
                op,
                dom,
                "give a hard or a soft affinity (or both)",
            ));
        }
        self.domctl(
            op,
            cmd::SETVCPUAFFINITY,
            domid.get(),
            &DomctlVcpuAffinity {
                vcpu,
                flags,
                cpumap_hard,
                cpumap_soft,
            },
        )
        .map(drop)
    }

    // -----------------------------------------------------------------------------------------------
    // memory
    // -----------------------------------------------------------------------------------------------

    /// `XENMEM_populate_physmap` with 4 KiB extents: gives the domain RAM at each guest frame in `pfns`.
    pub fn populate_physmap(&mut self, domid: DomId, pfns: &[u64]) -> Result<(), XenError> {
        self.populate_physmap_order(domid, 0, pfns)
    }

    /// `XENMEM_populate_physmap` with `2^order`-page extents starting at each of `base_pfns` (each must be
    /// aligned to the extent size; order 9 = 2 MiB superpages).
    pub fn populate_physmap_order(
        &mut self,
        domid: DomId,
        order: u32,
        base_pfns: &[u64],
    ) -> Result<(), XenError> {
        let op = Op::PopulatePhysmap;
        let dom = Some(domid.get());
        if order > 18 {
            return Err(Self::invalid(
                op,
                dom,
                format!("extent order {order} is larger than 1 GiB"),
            ));
        }
        let align_mask = (1u64 << order) - 1;
        if let Some(bad) = base_pfns.iter().find(|p| *p & align_mask != 0) {
            return Err(Self::invalid(
                op,
                dom,
                format!("frame {bad:#x} is not aligned to a 2^{order}-page extent"),
            ));
        }
        for (chunk_no, chunk) in base_pfns.chunks(POPULATE_BATCH).enumerate() {
            let bytes = chunk.as_bytes();
            let list = self.buffer_with(op, dom, bytes)?;
            let res = MemoryReservation {
                extent_start: list.address(),
                nr_extents: chunk.len() as u64,
                extent_order: order,
                mem_flags: 0,
                domid: domid.get(),
                _pad: [0; 3],
            };
            let (done, _) = self.call_with_arg(
                op,
                dom,
                abi::hypercall::MEMORY_OP,
                abi::xenmem::POPULATE_PHYSMAP,
                &res,
            )?;
            let done = usize::try_from(done).unwrap_or(usize::MAX);
            if done < chunk.len() {
                let before = chunk_no * POPULATE_BATCH;
                return Err(XenError::PartialPopulate {
                    op,
                    domid: domid.get(),
                    done: before + done,
                    requested: base_pfns.len(),
                    stopped_at: chunk.get(done).copied().unwrap_or_default(),
                });
            }
            if done > chunk.len() {
                return Err(XenError::BadAnswer {
                    op,
                    domid: dom,
                    detail: format!("{done} extents done of {} asked", chunk.len()),
                });
            }
        }
        Ok(())
    }

    /// `XENMEM_set_memory_map` (x86): the e820 map the guest sees through `XENMEM_memory_map`.
    pub fn set_memory_map(&mut self, domid: DomId, map: &[x86::E820Entry]) -> Result<(), XenError> {
        let op = Op::SetMemoryMap;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::X86_64)?;
        if map.len() > abi::E820MAX {
            return Err(Self::invalid(
                op,
                dom,
                format!(
                    "{} entries; Xen accepts at most E820MAX = {}",
                    map.len(),
                    abi::E820MAX
                ),
            ));
        }
        let entries = self.buffer_with(op, dom, map.as_bytes())?;
        let fmap = ForeignMemoryMap {
            domid: domid.get(),
            nr_entries: map.len() as u32,
            buffer: entries.address(),
            ..Default::default()
        };
        self.call_with_arg(
            op,
            dom,
            abi::hypercall::MEMORY_OP,
            abi::xenmem::SET_MEMORY_MAP,
            &fmap,
        )
        .map(drop)
    }

    /// `XENMEM_add_to_physmap`: makes frame `idx` of `space` ([`abi::mapspace`]) appear at guest frame
    /// `gpfn` (e.g. the shared-info page or grant-table frames).
    pub fn add_to_physmap(
        &mut self,
        domid: DomId,
        space: u32,
        idx: u64,
        gpfn: u64,
    ) -> Result<(), XenError> {
        let arg = AddToPhysmap {
            domid: domid.get(),
            size: 0,
            space,
            idx,
            gpfn,
        };
        self.call_with_arg(
            Op::AddToPhysmap,
            Some(domid.get()),
            abi::hypercall::MEMORY_OP,
            abi::xenmem::ADD_TO_PHYSMAP,
            &arg,
        )
        .map(drop)
    }

    /// `XENMEM_remove_from_physmap`: takes whatever backs guest frame `gpfn` out of the guest's p2m.
    pub fn remove_from_physmap(&mut self, domid: DomId, gpfn: u64) -> Result<(), XenError> {
        let arg = abi::RemoveFromPhysmap {
            domid: domid.get(),
            gpfn,
            ..Default::default()
        };
        self.call_with_arg(
            Op::RemoveFromPhysmap,
            Some(domid.get()),
            abi::hypercall::MEMORY_OP,
            abi::xenmem::REMOVE_FROM_PHYSMAP,
            &arg,
        )
        .map(drop)
    }

    /// `XENMEM_maximum_gpfn`: the highest guest frame the domain's p2m holds.
    pub fn maximum_gpfn(&mut self, domid: DomId) -> Result<u64, XenError> {
        self.call_with_arg(
            Op::MaximumGpfn,
            Some(domid.get()),
            abi::hypercall::MEMORY_OP,
            abi::xenmem::MAXIMUM_GPFN,
            &domid.get(),
        )
        .map(|(v, _)| v)
    }

    /// Maps guest frames `pfns` of `domid` for writing at guest-physical addresses.
    pub fn map_foreign(
        &mut self,
        domid: DomId,
        pfns: &[u64],
    ) -> Result<GuestMapping<H::Mapping>, XenError> {
        let op = Op::MapForeign;
        if pfns.is_empty() {
            return Err(Self::invalid(op, Some(domid.get()), "no frames to map"));
        }
        let m = self
            .hc
            .map_foreign(domid.get(), pfns)
            .map_err(|e| self.hypercall_err(op, Some(domid.get()), e))?;
        Ok(GuestMapping::new(domid.get(), pfns, m))
    }

    // -----------------------------------------------------------------------------------------------
    // HVM params, event channels, version
    // -----------------------------------------------------------------------------------------------

    /// `HVMOP_set_param`.
    pub fn set_hvm_param(&mut self, domid: DomId, index: u32, value: u64) -> Result<(), XenError> {
        let op = Op::HvmSetParam;
        if index >= abi::hvm_param::NR_PARAMS {
            return Err(Self::invalid(
                op,
                Some(domid.get()),
                format!(
                    "HVM param {index} >= HVM_NR_PARAMS ({})",
                    abi::hvm_param::NR_PARAMS
                ),
            ));
        }
        let arg = HvmParam {
            domid: domid.get(),
            pad: 0,
            index,
            value,
        };
        self.call_with_arg(
            op,
            Some(domid.get()),
            abi::hypercall::HVM_OP,
            abi::HVMOP_SET_PARAM,
            &arg,
        )
        .map(drop)
    }

    /// `HVMOP_get_param`.
    pub fn get_hvm_param(&mut self, domid: DomId, index: u32) -> Result<u64, XenError> {
        let arg = HvmParam {
            domid: domid.get(),
            pad: 0,
            index,
            value: 0,
        };
        self.call_with_arg(
            Op::HvmGetParam,
            Some(domid.get()),
            abi::hypercall::HVM_OP,
            abi::HVMOP_GET_PARAM,
            &arg,
        )
        .map(|(_, a)| a.value)
    }

    /// `EVTCHNOP_alloc_unbound`: a port in `dom` that `remote` may bind to; returns the port.
    pub fn evtchn_alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<u32, XenError> {
        let arg = EvtchnAllocUnbound {
            dom: dom.get(),
            remote_dom: remote.get(),
            port: 0,
        };
        self.call_with_arg(
            Op::EvtchnAllocUnbound,
            Some(dom.get()),
            abi::hypercall::EVENT_CHANNEL_OP,
            abi::EVTCHNOP_ALLOC_UNBOUND,
            &arg,
        )
        .map(|(_, a)| a.port)
    }

    /// `XENVER_version`: (major, minor) of the running Xen.
    pub fn xen_version(&mut self) -> Result<(u16, u16), XenError> {
        xen_version(&mut self.hc).map_err(|e| self.hypercall_err(Op::XenVersion, None, e))
    }

    // -----------------------------------------------------------------------------------------------
    // x86 HVM context
    // -----------------------------------------------------------------------------------------------

    /// `XEN_DOMCTL_gethvmcontext` (x86): the domain's whole HVM save context (records, see
    /// [`x86::hvm_records`]). Asks for the size first (NULL buffer), as libxc does.
    pub fn get_hvm_context(&mut self, domid: DomId) -> Result<Vec<u8>, XenError> {
        let op = Op::GetHvmContext;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::X86_64)?;
        let d = self.domctl(
            op,
            cmd::GETHVMCONTEXT,
            domid.get(),
            &DomctlHvmContext::default(),
        )?;
        let size = Self::payload::<DomctlHvmContext>(op, dom, &d)?.size;
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let buf = self
            .hc
            .alloc_buffer(len)
            .map_err(|e| Self::transport_err(op, dom, e))?;
        let d = self.domctl(
            op,
            cmd::GETHVMCONTEXT,
            domid.get(),
            &DomctlHvmContext {
                size,
                _pad: 0,
                buffer: buf.address(),
            },
        )?;
        let filled = Self::payload::<DomctlHvmContext>(op, dom, &d)?.size;
        let filled = usize::try_from(filled).unwrap_or(usize::MAX);
        if filled > len {
            return Err(XenError::BadAnswer {
                op,
                domid: dom,
                detail: format!("filled {filled} bytes of a {len}-byte buffer"),
            });
        }
        let mut out = vec![0; filled];
        buf.read_at(0, &mut out)
            .map_err(|e| Self::transport_err(op, dom, e))?;
        Ok(out)
    }

    /// `XEN_DOMCTL_sethvmcontext` (x86): loads records (e.g. HEADER + CPU + END to set the boot vCPU).
    pub fn set_hvm_context(&mut self, domid: DomId, blob: &[u8]) -> Result<(), XenError> {
        let op = Op::SetHvmContext;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::X86_64)?;
        let size = u32::try_from(blob.len())
            .map_err(|_| Self::invalid(op, dom, "HVM context larger than 4 GiB"))?;
        let buf = self.buffer_with(op, dom, blob)?;
        self.domctl(
            op,
            cmd::SETHVMCONTEXT,
            domid.get(),
            &DomctlHvmContext {
                size,
                _pad: 0,
                buffer: buf.address(),
            },
        )
        .map(drop)
    }

    fn payload<T: FromBytes>(op: Op, domid: Option<u16>, d: &XenDomctl) -> Result<T, XenError> {
        d.payload().map_err(|e| XenError::BadAnswer {
            op,
            domid,
            detail: e.to_string(),
        })
    }

    // -----------------------------------------------------------------------------------------------
    // passthrough
    // -----------------------------------------------------------------------------------------------

    /// `XEN_DOMCTL_iomem_permission`: allow (or revoke) the domain's access to machine frames
    /// `[first_mfn, first_mfn + nr_mfns)`.
    pub fn iomem_permission(
        &mut self,
        domid: DomId,
        first_mfn: u64,
        nr_mfns: u64,
        allow: bool,
    ) -> Result<(), XenError> {
        let op = Op::IomemPermission;
        if nr_mfns == 0 || first_mfn.checked_add(nr_mfns - 1).is_none() {
            return Err(Self::invalid(
                op,
                Some(domid.get()),
                format!("bad frame range {first_mfn:#x} + {nr_mfns}"),
            ));
        }
        self.domctl(
            op,
            cmd::IOMEM_PERMISSION,
            domid.get(),
            &DomctlIomemPermission {
                first_mfn,
                nr_mfns,
                allow_access: u8::from(allow),
                _pad: [0; 7],
            },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_irq_permission`: allow (or revoke) the domain's use of `pirq` (on ARM: the IRQ number).
    pub fn irq_permission(&mut self, domid: DomId, pirq: u32, allow: bool) -> Result<(), XenError> {
        self.domctl(
            Op::IrqPermission,
            cmd::IRQ_PERMISSION,
            domid.get(),
            &DomctlIrqPermission {
                pirq,
                allow_access: u8::from(allow),
                pad: [0; 3],
            },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_memory_mapping`: map (or unmap) machine frames into the guest physical space, in
    /// batches of 64 frames (ARM refuses more with `E2BIG`; x86 may report partial progress, which is
    /// followed up).
    pub fn memory_mapping(
        &mut self,
        domid: DomId,
        first_gfn: u64,
        first_mfn: u64,
        nr_mfns: u64,
        add: bool,
    ) -> Result<(), XenError> {
        let op = Op::MemoryMapping;
        let dom = Some(domid.get());
        if nr_mfns == 0
            || first_gfn.checked_add(nr_mfns - 1).is_none()
            || first_mfn.checked_add(nr_mfns - 1).is_none()
        {
            return Err(Self::invalid(op, dom, "empty or wrapping frame range"));
        }
        let mut done = 0u64;
        while done < nr_mfns {
            let n = (nr_mfns - done).min(abi::MEMORY_MAPPING_BATCH);
            let arg = DomctlMemoryMapping {
                first_gfn: first_gfn + done,
                first_mfn: first_mfn + done,
                nr_mfns: n,
                add_mapping: if add {
                    abi::DPCI_ADD_MAPPING
                } else {
                    abi::DPCI_REMOVE_MAPPING
                },
                padding: 0,
            };
            let d = XenDomctl::new(cmd::MEMORY_MAPPING, self.version.value(), domid.get(), &arg)
                .map_err(|e| XenError::BadAnswer {
                    op,
                    domid: dom,
                    detail: e.to_string(),
                })?;
            let buf = self.buffer_with(op, dom, d.as_bytes())?;
            let r = self
                .hc
                .hypercall(abi::hypercall::DOMCTL, [buf.address(), 0, 0, 0, 0]);
            match r {
                // "positive partial success for the first <result> page frames" (domctl.h)
                Ok(partial) if partial > 0 && partial < n => done += partial,
                Ok(0) => done += n,
                Ok(other) => {
                    return Err(XenError::BadAnswer {
                        op,
                        domid: dom,
                        detail: format!("{other} frames reported done of {n}"),
                    });
                }
                Err(e) => return Err(self.hypercall_err(op, dom, e)),
            }
        }
        Ok(())
    }

    /// `XEN_DOMCTL_bind_pt_irq` with `PT_IRQ_TYPE_SPI` (ARM): route host SPI `spi` to the guest. Xen
    /// only supports the identity mapping (`if ( irq != virq ) return -EINVAL;`,
    /// `xen/arch/arm/domctl.c`), so the guest sees the same SPI number. Grant `irq_permission` first.
    pub fn bind_pt_spi(&mut self, domid: DomId, spi: u32) -> Result<(), XenError> {
        let op = Op::BindPtIrq;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::Arm64)?;
        if !(32..=1019).contains(&spi) {
            return Err(Self::invalid(
                op,
                dom,
                format!("SPI {spi} is outside 32..=1019 (PT_IRQ_TYPE_SPI, domctl.h)"),
            ));
        }
        self.domctl(
            op,
            cmd::BIND_PT_IRQ,
            domid.get(),
            &DomctlBindPtIrqSpi {
                machine_irq: spi,
                irq_type: abi::PT_IRQ_TYPE_SPI,
                spi: spi as u16,
                _pad: [0; 14],
            },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_assign_device` with `XEN_DOMCTL_DEV_DT`: give the domain the device at host DT
    /// `path` (its IOMMU context). The path is sent without a NUL; Xen copies `size` bytes and
    /// terminates it.
    pub fn assign_dt_device(&mut self, domid: DomId, path: &str) -> Result<(), XenError> {
        let op = Op::AssignDevice;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::Arm64)?;
        if !path.starts_with('/') || path.contains('\0') {
            return Err(Self::invalid(
                op,
                dom,
                format!("{path:?} is not an absolute device tree path"),
            ));
        }
        let size =
            u32::try_from(path.len()).map_err(|_| Self::invalid(op, dom, "path too long"))?;
        let buf = self.buffer_with(op, dom, path.as_bytes())?;
        self.domctl(
            op,
            cmd::ASSIGN_DEVICE,
            domid.get(),
            &DomctlAssignDeviceDt {
                dev: abi::XEN_DOMCTL_DEV_DT,
                flags: 0,
                size,
                _pad: 0,
                path: buf.address(),
            },
        )
        .map(drop)
    }

    /// `XEN_DOMCTL_vuart_op` `INIT` (ARM): a vpl011 UART whose ring is guest frame `gfn`, served by
    /// `console_domid`; returns the event channel port in the backend's view.
    pub fn vuart_init(
        &mut self,
        domid: DomId,
        gfn: u64,
        console_domid: DomId,
    ) -> Result<u32, XenError> {
        let op = Op::VuartOp;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::Arm64)?;
        let d = self.domctl(
            op,
            cmd::VUART_OP,
            domid.get(),
            &DomctlVuartOp {
                cmd: abi::VUART_OP_INIT,
                type_: abi::VUART_TYPE_VPL011,
                gfn,
                console_domid: console_domid.get(),
                pad: [0; 2],
                evtchn: 0,
            },
        )?;
        Ok(Self::payload::<DomctlVuartOp>(op, dom, &d)?.evtchn)
    }

    /// `XEN_DOMCTL_setvcpucontext` with an arm64 `vcpu_guest_context`.
    pub fn set_vcpu_context_arm64(
        &mut self,
        domid: DomId,
        vcpu: u32,
        ctx: &arm::VcpuGuestContext,
    ) -> Result<(), XenError> {
        let op = Op::SetVcpuContext;
        let dom = Some(domid.get());
        self.check_arch(op, dom, XenArch::Arm64)?;
        let buf = self.buffer_with(op, dom, ctx.as_bytes())?;
        self.domctl(
            op,
            cmd::SETVCPUCONTEXT,
            domid.get(),
            &DomctlVcpuContext {
                vcpu,
                _pad: 0,
                ctxt: buf.address(),
            },
        )
        .map(drop)
    }
}

/// One probe attempt: getdomaininfo on domain 0 with `version`.
fn probe_one<H: Hypercalls>(hc: &mut H, version: InterfaceVersion) -> Result<(), Errno> {
    let d = XenDomctl::new(cmd::GETDOMAININFO, version.value(), 0, &[0u8; 0])
        .map_err(|_| Errno::EINVAL)?;
    let mut buf = hc.alloc_buffer(size_of::<XenDomctl>()).map_err(os_errno)?;
    buf.write_at(0, d.as_bytes()).map_err(os_errno)?;
    hc.hypercall(abi::hypercall::DOMCTL, [buf.address(), 0, 0, 0, 0])
        .map(drop)
        .map_err(os_errno)
}

fn os_errno(e: TransportError) -> Errno {
    match e {
        TransportError::Xen(e) | TransportError::Os { source: e, .. } => e,
        TransportError::MapFailed { errno, .. } => errno,
        TransportError::OutOfBounds { .. } | TransportError::BadHandle(_) => Errno::EFAULT,
    }
}

fn xen_version<H: Hypercalls>(hc: &mut H) -> Result<(u16, u16), TransportError> {
    let v = hc.hypercall(
        abi::hypercall::XEN_VERSION,
        [abi::XENVER_VERSION, 0, 0, 0, 0],
    )?;
    Ok(((v >> 16) as u16, v as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// The createdomain bytes for every (arch, version), checked at offsets counted by hand from
    /// `struct xen_domctl_createdomain` (`xen/include/public/domctl.h`, RELEASE-4.17.0: `vmtrace_size`
    /// @48, `cpupool_id` @52, `arch` @56; RELEASE-4.19.0 inserts `altp2m` @48 and moves them by 4) and
    /// `struct xen_arch_domainconfig` (`arch-x86/xen.h`, `arch-arm.h`) — the literal offsets this
    /// encoder used before it was derived from the `repr(C)` layouts.
    #[test]
    fn createdomain_bytes_sit_at_the_header_offsets_for_every_version() {
        let mut cfg = CreateDomain::pvh(3);
        cfg.ssidref = 0x1111_1111;
        cfg.handle = [0xab; 16];
        cfg.iommu_opts = 0x2222_2222;
        cfg.max_evtchn_port = 0x3333_3333;
        cfg.max_grant_frames = 0x4444_4444;
        cfg.max_maptrack_frames = 0x5555_5555;
        cfg.max_grant_version = 2;
        cfg.vmtrace_size = 0x6666_6666;
        cfg.cpupool_id = 0x7777_7777;
        let arm = CreateDomain {
            arch: ArchConfig::Arm(arm::ArchDomainConfig {
                gic_version: 2,
                nr_spis: 0x99,
                clock_frequency: 0x8888_8888,
                ..Default::default()
            }),
            ..cfg
        };
        for v in InterfaceVersion::ALL {
            let altp2m = v >= InterfaceVersion::V17;
            let shift = if altp2m { 4 } else { 0 };
            let mut c = cfg;
            let mut a = arm;
            if altp2m {
                (c.altp2m_opts, c.altp2m_nr) = (0x0102, 0x0304);
                (a.altp2m_opts, a.altp2m_nr) = (0x0102, 0x0304);
            }
            for (cfg, len) in [(c, 64 + shift), (a, 72 + shift)] {
                let b = createdomain_payload(&cfg, v);
                assert_eq!(b.len(), len, "{v} {:?}", cfg.arch.arch());
                assert_eq!(le32(&b, 0), 0x1111_1111);
                assert_eq!(&b[4..20], &[0xab; 16]);
                assert_eq!(le32(&b, 20), abi::cdf::HVM | abi::cdf::HAP);
                assert_eq!(le32(&b, 24), 0x2222_2222);
                assert_eq!(le32(&b, 28), 3);
                assert_eq!(le32(&b, 32), 0x3333_3333);
                assert_eq!(le32(&b, 36), 0x4444_4444);
                assert_eq!(le32(&b, 40), 0x5555_5555);
                assert_eq!(le32(&b, 44), 2);
                if altp2m {
                    assert_eq!(le32(&b, 48), 0x0304_0102, "opts @48, nr @50");
                }
                assert_eq!(le32(&b, 48 + shift), 0x6666_6666);
                assert_eq!(le32(&b, 52 + shift), 0x7777_7777);
                let arch = 56 + shift;
                match cfg.arch {
                    ArchConfig::X86(_) => assert_eq!(le32(&b, arch), x86::emu::PVH),
                    ArchConfig::Arm(_) => {
                        assert_eq!(b[arch], 2, "gic_version");
                        assert_eq!(le32(&b, arch + 4), 0x99, "nr_spis");
                        assert_eq!(le32(&b, arch + 8), 0x8888_8888, "clock_frequency");
                    }
                }
            }
        }
    }
}
