//! [`FakeXen`]: an in-memory hypervisor for unit tests of builders.
//!
//! It takes the same bytes a real Xen would — the `repr(C)` argument structures in hypercall buffers,
//! guest handles pointing at other buffers — decodes them with the layout of the interface version it
//! is set to speak, and answers as Xen does where that is cheap to model: `EACCES` for another domctl
//! interface version, `ESRCH` for missing domains, `EINVAL` for arguments Xen refuses, partial counts for
//! `XENMEM_populate_physmap`. Each decoded call is recorded as a typed [`Call`]; per-domain state (vCPUs,
//! memory limit, populated frames and their contents, HVM params, memory map, vCPU contexts, …) can be
//! inspected afterwards. [`FakeXen::fail_nth`] makes the n-th call of an operation fail, to test a
//! builder's clean-up paths.
//!
//! It proves call sequences and failure handling; it is never the proof that a guest boots (that is the
//! QEMU tests' job).

use crate::abi::{self, InterfaceVersion, XEN_PAGE_SIZE, XenDomctl, arm, cmd, x86};
use crate::transport::{
    Errno, ForeignMapping, HypercallBuffer, Hypercalls, TransportError, XenArch, check_bounds,
};
use crate::xen::{ArchConfig, Op};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::{Rc, Weak};
use zerocopy::{FromBytes, IntoBytes};

/// One decoded call, as Xen would have understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    XenVersion,
    /// A domctl refused for its interface version (before Xen looks at the command).
    DomctlVersionMismatch {
        cmd: u32,
        sent: u32,
    },
    CreateDomain {
        requested: u16,
        flags: u32,
        max_vcpus: u32,
        max_evtchn_port: u32,
        grant_opts: u32,
        arch: ArchConfig,
    },
    DestroyDomain {
        domid: u16,
    },
    PauseDomain {
        domid: u16,
    },
    UnpauseDomain {
        domid: u16,
    },
    GetDomainInfo {
        domid: u16,
    },
    MaxVcpus {
        domid: u16,
        max: u32,
    },
    SetAddressSize {
        domid: u16,
        size: u32,
    },
    MaxMem {
        domid: u16,
        max_kib: u64,
    },
    SetPagingMempoolSize {
        domid: u16,
        bytes: u64,
    },
    SetVcpuAffinity {
        domid: u16,
        vcpu: u32,
        hard: Option<Vec<u8>>,
        soft: Option<Vec<u8>>,
    },
    GetHvmContext {
        domid: u16,
        size_query: bool,
    },
    SetHvmContext {
        domid: u16,
        len: usize,
    },
    IomemPermission {
        domid: u16,
        first_mfn: u64,
        nr_mfns: u64,
        allow: bool,
    },
    IrqPermission {
        domid: u16,
        pirq: u32,
        allow: bool,
    },
    MemoryMapping {
        domid: u16,
        first_gfn: u64,
        first_mfn: u64,
        nr_mfns: u64,
        add: bool,
    },
    BindPtIrq {
        domid: u16,
        machine_irq: u32,
        irq_type: u32,
        spi: u16,
    },
    AssignDtDevice {
        domid: u16,
        path: String,
    },
    VuartInit {
        domid: u16,
        gfn: u64,
        console_domid: u16,
    },
    SetVcpuContextArm64 {
        domid: u16,
        vcpu: u32,
        pc: u64,
        x0: u64,
    },
    UnknownDomctl {
        cmd: u32,
    },
    PopulatePhysmap {
        domid: u16,
        order: u32,
        pfns: Vec<u64>,
    },
    SetMemoryMap {
        domid: u16,
        entries: Vec<x86::E820Entry>,
    },
    AddToPhysmap {
        domid: u16,
        space: u32,
        idx: u64,
        gpfn: u64,
    },
    RemoveFromPhysmap {
        domid: u16,
        gpfn: u64,
    },
    MaximumGpfn {
        domid: u16,
    },
    SetHvmParam {
        domid: u16,
        index: u32,
        value: u64,
    },
    GetHvmParam {
        domid: u16,
        index: u32,
    },
    EvtchnAllocUnbound {
        dom: u16,
        remote_dom: u16,
    },
    MapForeign {
        domid: u16,
        pfns: Vec<u64>,
    },
    UnknownHypercall {
        op: u64,
        sub: u64,
    },
}

impl Call {
    /// The operation, for failure injection and counting.
    pub fn op(&self) -> Option<Op> {
        Some(match self {
            Call::XenVersion => Op::XenVersion,
            Call::CreateDomain { .. } => Op::CreateDomain,
            Call::DestroyDomain { .. } => Op::DestroyDomain,
            Call::PauseDomain { .. } => Op::PauseDomain,
            Call::UnpauseDomain { .. } => Op::UnpauseDomain,
            Call::GetDomainInfo { .. } => Op::GetDomainInfo,
            Call::MaxVcpus { .. } => Op::MaxVcpus,
            Call::SetAddressSize { .. } => Op::SetAddressSize,
            Call::MaxMem { .. } => Op::MaxMem,
            Call::SetPagingMempoolSize { .. } => Op::SetPagingMempoolSize,
            Call::SetVcpuAffinity { .. } => Op::SetVcpuAffinity,
            Call::GetHvmContext { .. } => Op::GetHvmContext,
            Call::SetHvmContext { .. } => Op::SetHvmContext,
            Call::IomemPermission { .. } => Op::IomemPermission,
            Call::IrqPermission { .. } => Op::IrqPermission,
            Call::MemoryMapping { .. } => Op::MemoryMapping,
            Call::BindPtIrq { .. } => Op::BindPtIrq,
            Call::AssignDtDevice { .. } => Op::AssignDevice,
            Call::VuartInit { .. } => Op::VuartOp,
            Call::SetVcpuContextArm64 { .. } => Op::SetVcpuContext,
            Call::PopulatePhysmap { .. } => Op::PopulatePhysmap,
            Call::SetMemoryMap { .. } => Op::SetMemoryMap,
            Call::AddToPhysmap { .. } => Op::AddToPhysmap,
            Call::RemoveFromPhysmap { .. } => Op::RemoveFromPhysmap,
            Call::MaximumGpfn { .. } => Op::MaximumGpfn,
            Call::SetHvmParam { .. } => Op::HvmSetParam,
            Call::GetHvmParam { .. } => Op::HvmGetParam,
            Call::EvtchnAllocUnbound { .. } => Op::EvtchnAllocUnbound,
            Call::MapForeign { .. } => Op::MapForeign,
            Call::DomctlVersionMismatch { .. }
            | Call::UnknownDomctl { .. }
            | Call::UnknownHypercall { .. } => return None,
        })
    }
}

/// A call and what the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCall {
    pub call: Call,
    pub result: Result<u64, Errno>,
}

/// What createdomain was given (decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    pub flags: u32,
    pub max_vcpus: u32,
    pub max_evtchn_port: u32,
    pub grant_opts: u32,
    pub altp2m_opts: u16,
    pub arch: ArchConfig,
}

/// CPU bitmaps given to `XEN_DOMCTL_setvcpuaffinity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuAffinity {
    pub hard: Option<Vec<u8>>,
    pub soft: Option<Vec<u8>>,
}

/// One domain's state in the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDomain {
    pub domid: u16,
    pub config: DomainConfig,
    /// vCPUs allocated by `XEN_DOMCTL_max_vcpus`.
    pub vcpus: Option<u32>,
    /// ARM execution state from `XEN_DOMCTL_set_address_size` (32 or 64); `None` until set.
    pub address_size: Option<u32>,
    pub max_mem_kib: Option<u64>,
    pub paging_mempool_bytes: Option<u64>,
    /// Populated guest frames and their contents: 4 KiB once written, empty while still all zero (so a
    /// large populate costs no host memory).
    pub pages: BTreeMap<u64, Vec<u8>>,
    pub hvm_params: BTreeMap<u32, u64>,
    pub memory_map: Option<Vec<x86::E820Entry>>,
    /// HVM CPU records loaded by sethvmcontext, by vCPU.
    pub hvm_cpu: BTreeMap<u16, x86::HvmHwCpu>,
    pub hvm_mtrr: BTreeMap<u16, x86::HvmHwMtrr>,
    pub arm_vcpu: BTreeMap<u32, arm::VcpuGuestContext>,
    pub affinity: BTreeMap<u32, VcpuAffinity>,
    /// Paused by the toolstack (domains start paused).
    pub paused: bool,
    pub iomem: Vec<(u64, u64, bool)>,
    pub irqs: BTreeSet<u32>,
    pub mmio: Vec<(u64, u64, u64)>,
    pub spis: BTreeSet<u32>,
    pub dt_devices: Vec<String>,
    /// (ring gfn, backend domain, event channel).
    pub vuart: Option<(u64, u16, u32)>,
    /// Event channel port → remote domain.
    pub evtchns: BTreeMap<u32, u16>,
    pub physmap: Vec<(u32, u64, u64)>,
    /// Xen-owned grant-table frames by index (version-1 entries, 8 bytes each). While a frame is in the
    /// p2m (`add_to_physmap` with `XENMAPSPACE_grant_table`) its contents live in `pages`, and go back
    /// here when `remove_from_physmap` takes it out again.
    pub grant_frames: BTreeMap<u64, Vec<u8>>,
    /// `SHUTDOWN_*` code once the guest has shut down ([`FakeXen::shutdown_domain`]).
    pub shutdown: Option<u32>,
}

impl FakeDomain {
    fn new(domid: u16, config: DomainConfig) -> Self {
        Self {
            domid,
            config,
            vcpus: None,
            address_size: None,
            max_mem_kib: None,
            paging_mempool_bytes: None,
            pages: BTreeMap::new(),
            hvm_params: BTreeMap::new(),
            memory_map: None,
            hvm_cpu: BTreeMap::new(),
            hvm_mtrr: BTreeMap::new(),
            arm_vcpu: BTreeMap::new(),
            affinity: BTreeMap::new(),
            paused: true,
            iomem: Vec::new(),
            irqs: BTreeSet::new(),
            mmio: Vec::new(),
            spis: BTreeSet::new(),
            dt_devices: Vec::new(),
            vuart: None,
            evtchns: BTreeMap::new(),
            physmap: Vec::new(),
            grant_frames: BTreeMap::new(),
            shutdown: None,
        }
    }

    fn is_hvm(&self) -> bool {
        self.config.flags & abi::cdf::HVM != 0
    }

    /// `max_pages` as Xen keeps it: unlimited until `max_mem` is set.
    fn max_pages(&self) -> u64 {
        self.max_mem_kib.map_or(u64::MAX, |k| k / 4)
    }
}

/// Guest frames one fake domain can populate before the fake reports it out of memory (4 GiB).
pub const FAKE_HOST_PAGES: u64 = 1 << 20;

struct Failure {
    op: Op,
    nth: usize,
    errno: Errno,
}

struct State {
    arch: XenArch,
    /// The layout the fake decodes with.
    version: InterfaceVersion,
    /// The `interface_version` it accepts (normally `version.value()`).
    speaks: u32,
    release: (u16, u16),
    domains: BTreeMap<u16, FakeDomain>,
    destroyed: BTreeMap<u16, FakeDomain>,
    calls: Vec<RecordedCall>,
    failures: Vec<Failure>,
    counts: HashMap<Op, usize>,
    buffers: Vec<(u64, Weak<RefCell<Vec<u8>>>)>,
    next_addr: u64,
    rover: u16,
    host_dt_devices: BTreeSet<String>,
    assigned_dt: BTreeMap<String, u16>,
    bound_spis: BTreeMap<u32, u16>,
}

/// The in-memory hypervisor. Cloning shares the same state (handy to keep a handle for inspection while
/// a [`crate::Xen`] owns the transport).
#[derive(Clone)]
pub struct FakeXen {
    state: Rc<RefCell<State>>,
}

/// The Xen release [`FakeXen::new`] reports for each interface version.
fn default_release(v: InterfaceVersion) -> (u16, u16) {
    match v {
        InterfaceVersion::V15 => (4, 17),
        InterfaceVersion::V16 => (4, 18),
        InterfaceVersion::V17 => (4, 19),
        InterfaceVersion::V18 => (4, 22),
    }
}

impl FakeXen {
    /// A fake of `arch` speaking domctl interface `version`, with a running control domain 0.
    pub fn new(arch: XenArch, version: InterfaceVersion) -> Self {
        let dom0_arch = match arch {
            XenArch::X86_64 => ArchConfig::X86(x86::ArchDomainConfig::default()),
            XenArch::Arm64 => ArchConfig::Arm(arm::ArchDomainConfig {
                gic_version: arm::GIC_V3,
                ..Default::default()
            }),
        };
        let dom0_flags = match arch {
            // x86 dom0 here is PV (Debian's default); ARM domains are always HVM + HAP.
            XenArch::X86_64 => 0,
            XenArch::Arm64 => abi::cdf::HVM | abi::cdf::HAP,
        };
        let mut dom0 = FakeDomain::new(
            0,
            DomainConfig {
                flags: dom0_flags,
                max_vcpus: 1,
                max_evtchn_port: 4095,
                grant_opts: 1,
                altp2m_opts: 0,
                arch: dom0_arch,
            },
        );
        dom0.paused = false;
        dom0.vcpus = Some(1);
        let mut domains = BTreeMap::new();
        domains.insert(0, dom0);
        Self {
            state: Rc::new(RefCell::new(State {
                arch,
                version,
                speaks: version.value(),
                release: default_release(version),
                domains,
                destroyed: BTreeMap::new(),
                calls: Vec::new(),
                failures: Vec::new(),
                counts: HashMap::new(),
                buffers: Vec::new(),
                next_addr: 0x7f00_0000_0000,
                rover: 0,
                host_dt_devices: BTreeSet::new(),
                assigned_dt: BTreeMap::new(),
                bound_spis: BTreeMap::new(),
            })),
        }
    }

    /// Makes `XENVER_version` report `release` (e.g. to tell 4.19 from 4.21, which share 0x17).
    pub fn set_release(&self, major: u16, minor: u16) {
        self.state.borrow_mut().release = (major, minor);
    }

    /// Makes the fake accept only domctl interface version `raw` (e.g. 0x19 to play a Xen newer than
    /// this crate), still decoding with its layout version.
    pub fn speak_raw_interface_version(&self, raw: u32) {
        self.state.borrow_mut().speaks = raw;
    }

    /// Declares a host device tree node that can be passed through (`xen,passthrough` in the host DT).
    pub fn add_host_dt_device(&self, path: &str) {
        self.state
            .borrow_mut()
            .host_dt_devices
            .insert(path.to_string());
    }

    /// Makes the `nth` (1-based) call of `op` — counting only calls that pass the interface-version
    /// check — fail with `errno`, without side effects.
    pub fn fail_nth(&self, op: Op, nth: usize, errno: Errno) {
        self.state
            .borrow_mut()
            .failures
            .push(Failure { op, nth, errno });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state.borrow().calls.clone()
    }

    /// The operations called so far, in order (version-mismatched and unknown calls left out).
    pub fn ops(&self) -> Vec<Op> {
        self.state
            .borrow()
            .calls
            .iter()
            .filter_map(|c| c.call.op())
            .collect()
    }

    /// Plays the guest of `domid` shutting itself down with `SHUTDOWN_*` code `reason`
    /// (`SCHEDOP_shutdown`, `xen/include/public/sched.h`): from then on getdomaininfo reports
    /// `XEN_DOMINF_shutdown` with the code in bits 16-23, as `getdomaininfo()` in
    /// `xen/common/domctl.c` does for `d->is_shut_down`. A shut-down domain stays until destroyed.
    /// Returns false if no such live domain exists.
    pub fn shutdown_domain(&self, domid: u16, reason: u32) -> bool {
        match self.state.borrow_mut().domains.get_mut(&domid) {
            Some(d) => {
                d.shutdown = Some(reason & abi::dominf::SHUTDOWN_MASK);
                true
            }
            None => false,
        }
    }

    /// Forgets the recorded calls (state stays).
    pub fn clear_calls(&self) {
        self.state.borrow_mut().calls.clear();
    }

    /// A copy of a live domain's state.
    pub fn domain(&self, domid: u16) -> Option<FakeDomain> {
        self.state.borrow().domains.get(&domid).cloned()
    }

    /// A copy of a destroyed domain's last state.
    pub fn destroyed_domain(&self, domid: u16) -> Option<FakeDomain> {
        self.state.borrow().destroyed.get(&domid).cloned()
    }

    /// Ids of live domains.
    pub fn domain_ids(&self) -> Vec<u16> {
        self.state.borrow().domains.keys().copied().collect()
    }

    /// Reads guest memory of a live domain at a guest-physical address; `None` if any page is missing.
    pub fn read_guest(&self, domid: u16, gpa: u64, len: usize) -> Option<Vec<u8>> {
        let st = self.state.borrow();
        let d = st.domains.get(&domid)?;
        let mut out = Vec::with_capacity(len);
        let mut addr = gpa;
        while out.len() < len {
            let pfn = addr >> abi::XEN_PAGE_SHIFT;
            let off = (addr & (XEN_PAGE_SIZE as u64 - 1)) as usize;
            let take = (XEN_PAGE_SIZE - off).min(len - out.len());
            let page = d.pages.get(&pfn)?;
            if page.is_empty() {
                out.resize(out.len() + take, 0);
            } else {
                out.extend_from_slice(page.get(off..off + take)?);
            }
            addr = addr.checked_add(take as u64)?;
        }
        Some(out)
    }

    /// Number of hypercall buffers still alive (to check nothing leaks).
    pub fn live_buffers(&self) -> usize {
        self.state
            .borrow()
            .buffers
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .count()
    }
}

/// A hypercall buffer of the fake: shared bytes at a synthetic address.
pub struct FakeBuffer {
    addr: u64,
    data: Rc<RefCell<Vec<u8>>>,
}

impl HypercallBuffer for FakeBuffer {
    fn address(&self) -> u64 {
        self.addr
    }
    fn len(&self) -> usize {
        self.data.borrow().len()
    }
    fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let mut d = self.data.borrow_mut();
        let r = check_bounds("hypercall buffer", offset, data.len(), d.len())?;
        d.get_mut(r)
            .ok_or(TransportError::BadHandle(self.addr))?
            .copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let d = self.data.borrow();
        let r = check_bounds("hypercall buffer", offset, out.len(), d.len())?;
        out.copy_from_slice(d.get(r).ok_or(TransportError::BadHandle(self.addr))?);
        Ok(())
    }
}

/// Guest pages of a fake domain, mapped.
pub struct FakeMapping {
    state: Rc<RefCell<State>>,
    domid: u16,
    pfns: Vec<u64>,
}

impl FakeMapping {
    fn with_page<R>(
        &self,
        index: usize,
        offset: usize,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, TransportError> {
        let pfn = *self.pfns.get(index).ok_or(TransportError::OutOfBounds {
            what: "foreign mapping",
            offset: index,
            len: 1,
            size: self.pfns.len(),
        })?;
        let r = check_bounds("mapped page", offset, len, XEN_PAGE_SIZE)?;
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        // A real mapping keeps the page alive after destroydomain; so does the fake.
        let dom = match st.domains.get_mut(&self.domid) {
            Some(d) => d,
            None => st
                .destroyed
                .get_mut(&self.domid)
                .ok_or(TransportError::Xen(Errno::ESRCH))?,
        };
        let page = dom.pages.get_mut(&pfn).ok_or(TransportError::MapFailed {
            domid: self.domid,
            pfn,
            errno: Errno::EINVAL,
        })?;
        if page.is_empty() {
            page.resize(XEN_PAGE_SIZE, 0);
        }
        let bytes = page.get_mut(r).ok_or(TransportError::OutOfBounds {
            what: "mapped page",
            offset,
            len,
            size: XEN_PAGE_SIZE,
        })?;
        Ok(f(bytes))
    }
}

impl ForeignMapping for FakeMapping {
    fn pages(&self) -> usize {
        self.pfns.len()
    }
    fn write_page(
        &mut self,
        index: usize,
        offset: usize,
        data: &[u8],
    ) -> Result<(), TransportError> {
        self.with_page(index, offset, data.len(), |p| p.copy_from_slice(data))
    }
    fn read_page(&self, index: usize, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        self.with_page(index, offset, out.len(), |p| out.copy_from_slice(p))
    }
}

/// An answer: Xen's return value and, for domctls, the envelope to copy back.
type Answer = Result<(u64, Option<XenDomctl>), Errno>;

impl State {
    fn read_handle(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        if addr == 0 {
            return Err(Errno::EFAULT);
        }
        for (base, weak) in &self.buffers {
            let Some(data) = weak.upgrade() else { continue };
            let data = data.borrow();
            let Some(off) = addr.checked_sub(*base) else {
                continue;
            };
            let Ok(off) = usize::try_from(off) else {
                continue;
            };
            if off > data.len() {
                continue;
            }
            let end = off.checked_add(len).ok_or(Errno::EFAULT)?;
            return data.get(off..end).map(<[u8]>::to_vec).ok_or(Errno::EFAULT);
        }
        Err(Errno::EFAULT)
    }

    fn write_handle(&self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
        for (base, weak) in &self.buffers {
            let Some(data) = weak.upgrade() else { continue };
            let mut data = data.borrow_mut();
            let Some(off) = addr
                .checked_sub(*base)
                .and_then(|o| usize::try_from(o).ok())
            else {
                continue;
            };
            if off > data.len() {
                continue;
            }
            let end = off.checked_add(bytes.len()).ok_or(Errno::EFAULT)?;
            data.get_mut(off..end)
                .ok_or(Errno::EFAULT)?
                .copy_from_slice(bytes);
            return Ok(());
        }
        Err(Errno::EFAULT)
    }

    fn read_struct<T: FromBytes>(&self, addr: u64) -> Result<T, Errno> {
        let bytes = self.read_handle(addr, size_of::<T>())?;
        T::read_from_bytes(&bytes).map_err(|_| Errno::EFAULT)
    }

    fn dom(&mut self, domid: u16) -> Result<&mut FakeDomain, Errno> {
        self.domains.get_mut(&domid).ok_or(Errno::ESRCH)
    }

    /// Counts a call of `op` and returns the injected errno if this is the chosen one.
    fn injected(&mut self, op: Op) -> Option<Errno> {
        let n = self.counts.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        self.failures
            .iter()
            .find(|f| f.op == op && f.nth == n)
            .map(|f| f.errno)
    }

    fn record(&mut self, call: Call, result: Result<u64, Errno>) {
        self.calls.push(RecordedCall { call, result });
    }

    // ----------------------------------------------------------------------------------------------
    // domctl
    // ----------------------------------------------------------------------------------------------

    fn domctl(&mut self, addr: u64) -> Result<u64, Errno> {
        let d: XenDomctl = self.read_struct(addr)?;
        if d.interface_version != self.speaks {
            self.record(
                Call::DomctlVersionMismatch {
                    cmd: d.cmd,
                    sent: d.interface_version,
                },
                Err(Errno::EACCES),
            );
            return Err(Errno::EACCES);
        }
        let call = match self.decode_domctl(&d) {
            Ok(c) => c,
            Err(e) => {
                self.record(Call::UnknownDomctl { cmd: d.cmd }, Err(e));
                return Err(e);
            }
        };
        let answer = match call.op().and_then(|op| self.injected(op)) {
            Some(errno) => Err(errno),
            None => self.apply_domctl(&call, &d),
        };
        let result = match answer {
            Ok((ret, back)) => {
                if let Some(back) = back {
                    self.write_handle(addr, back.as_bytes())?;
                }
                Ok(ret)
            }
            Err(e) => Err(e),
        };
        self.record(call, result);
        result
    }

    fn decode_domctl(&self, d: &XenDomctl) -> Result<Call, Errno> {
        let domid = d.domain;
        let p = |_: ()| Errno::EFAULT;
        Ok(match d.cmd {
            cmd::CREATEDOMAIN => {
                let (flags, max_vcpus, max_evtchn_port, grant_opts, arch) =
                    self.decode_create(d).map_err(p)?;
                Call::CreateDomain {
                    requested: domid,
                    flags,
                    max_vcpus,
                    max_evtchn_port,
                    grant_opts,
                    arch,
                }
            }
            cmd::DESTROYDOMAIN => Call::DestroyDomain { domid },
            cmd::PAUSEDOMAIN => Call::PauseDomain { domid },
            cmd::UNPAUSEDOMAIN => Call::UnpauseDomain { domid },
            cmd::GETDOMAININFO => Call::GetDomainInfo { domid },
            cmd::MAX_VCPUS => Call::MaxVcpus {
                domid,
                max: d
                    .payload::<abi::DomctlMaxVcpus>()
                    .map_err(|_| Errno::EFAULT)?
                    .max,
            },
            cmd::SET_ADDRESS_SIZE => Call::SetAddressSize {
                domid,
                size: d
                    .payload::<abi::DomctlAddressSize>()
                    .map_err(|_| Errno::EFAULT)?
                    .size,
            },
            cmd::MAX_MEM => Call::MaxMem {
                domid,
                max_kib: d
                    .payload::<abi::DomctlMaxMem>()
                    .map_err(|_| Errno::EFAULT)?
                    .max_memkb,
            },
            cmd::SET_PAGING_MEMPOOL_SIZE => Call::SetPagingMempoolSize {
                domid,
                bytes: d
                    .payload::<abi::DomctlPagingMempool>()
                    .map_err(|_| Errno::EFAULT)?
                    .size,
            },
            cmd::SETVCPUAFFINITY => {
                let a: abi::DomctlVcpuAffinity = d.payload().map_err(|_| Errno::EFAULT)?;
                let read = |bm: &abi::XenctlBitmap, flag: u32| -> Result<Option<Vec<u8>>, Errno> {
                    if a.flags & flag == 0 {
                        return Ok(None);
                    }
                    let len = usize::try_from(bm.nr_bits.div_ceil(8)).map_err(|_| Errno::EINVAL)?;
                    self.read_handle(bm.bitmap, len).map(Some)
                };
                Call::SetVcpuAffinity {
                    domid,
                    vcpu: a.vcpu,
                    hard: read(&a.cpumap_hard, abi::VCPUAFFINITY_HARD)?,
                    soft: read(&a.cpumap_soft, abi::VCPUAFFINITY_SOFT)?,
                }
            }
            cmd::GETHVMCONTEXT => Call::GetHvmContext {
                domid,
                size_query: d
                    .payload::<abi::DomctlHvmContext>()
                    .map_err(|_| Errno::EFAULT)?
                    .buffer
                    == 0,
            },
            cmd::SETHVMCONTEXT => Call::SetHvmContext {
                domid,
                len: d
                    .payload::<abi::DomctlHvmContext>()
                    .map_err(|_| Errno::EFAULT)?
                    .size as usize,
            },
            cmd::IOMEM_PERMISSION => {
                let a: abi::DomctlIomemPermission = d.payload().map_err(|_| Errno::EFAULT)?;
                Call::IomemPermission {
                    domid,
                    first_mfn: a.first_mfn,
                    nr_mfns: a.nr_mfns,
                    allow: a.allow_access != 0,
                }
            }
            cmd::IRQ_PERMISSION => {
                let a: abi::DomctlIrqPermission = d.payload().map_err(|_| Errno::EFAULT)?;
                Call::IrqPermission {
                    domid,
                    pirq: a.pirq,
                    allow: a.allow_access != 0,
                }
            }
            cmd::MEMORY_MAPPING => {
                let a: abi::DomctlMemoryMapping = d.payload().map_err(|_| Errno::EFAULT)?;
                Call::MemoryMapping {
                    domid,
                    first_gfn: a.first_gfn,
                    first_mfn: a.first_mfn,
                    nr_mfns: a.nr_mfns,
                    add: a.add_mapping == abi::DPCI_ADD_MAPPING,
                }
            }
            cmd::BIND_PT_IRQ => {
                let a: abi::DomctlBindPtIrqSpi = d.payload().map_err(|_| Errno::EFAULT)?;
                Call::BindPtIrq {
                    domid,
                    machine_irq: a.machine_irq,
                    irq_type: a.irq_type,
                    spi: a.spi,
                }
            }
            cmd::ASSIGN_DEVICE => {
                let a: abi::DomctlAssignDeviceDt = d.payload().map_err(|_| Errno::EFAULT)?;
                if a.dev != abi::XEN_DOMCTL_DEV_DT {
                    return Err(Errno::EOPNOTSUPP);
                }
                let raw = self.read_handle(a.path, a.size as usize)?;
                Call::AssignDtDevice {
                    domid,
                    path: String::from_utf8_lossy(&raw).into_owned(),
                }
            }
            cmd::VUART_OP => {
                let a: abi::DomctlVuartOp = d.payload().map_err(|_| Errno::EFAULT)?;
                if a.cmd != abi::VUART_OP_INIT {
                    return Err(Errno::EINVAL);
                }
                Call::VuartInit {
                    domid,
                    gfn: a.gfn,
                    console_domid: a.console_domid,
                }
            }
            cmd::SETVCPUCONTEXT => {
                let a: abi::DomctlVcpuContext = d.payload().map_err(|_| Errno::EFAULT)?;
                if self.arch != XenArch::Arm64 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let c: arm::VcpuGuestContext = self.read_struct(a.ctxt)?;
                Call::SetVcpuContextArm64 {
                    domid,
                    vcpu: a.vcpu,
                    pc: c.user_regs.pc64,
                    x0: c.user_regs.x[0],
                }
            }
            _ => return Err(Errno::ENOSYS),
        })
    }

    /// Decodes createdomain with the layout of this fake's version and arch.
    fn decode_create(&self, d: &XenDomctl) -> Result<(u32, u32, u32, u32, ArchConfig), ()> {
        let v17 = self.version.createdomain_has_altp2m();
        Ok(match (self.arch, v17) {
            (XenArch::X86_64, false) => {
                let c: x86::CreateDomainV15 = d.payload().map_err(drop)?;
                let a = ArchConfig::X86(c.arch);
                (c.flags, c.max_vcpus, c.max_evtchn_port, c.grant_opts, a)
            }
            (XenArch::X86_64, true) => {
                let c: x86::CreateDomainV17 = d.payload().map_err(drop)?;
                let a = ArchConfig::X86(c.arch);
                (c.flags, c.max_vcpus, c.max_evtchn_port, c.grant_opts, a)
            }
            (XenArch::Arm64, false) => {
                let c: arm::CreateDomainV15 = d.payload().map_err(drop)?;
                let a = ArchConfig::Arm(c.arch);
                (c.flags, c.max_vcpus, c.max_evtchn_port, c.grant_opts, a)
            }
            (XenArch::Arm64, true) => {
                let c: arm::CreateDomainV17 = d.payload().map_err(drop)?;
                let a = ArchConfig::Arm(c.arch);
                (c.flags, c.max_vcpus, c.max_evtchn_port, c.grant_opts, a)
            }
        })
    }

    fn apply_domctl(&mut self, call: &Call, d: &XenDomctl) -> Answer {
        match call {
            Call::CreateDomain { .. }
            | Call::DestroyDomain { .. }
            | Call::PauseDomain { .. }
            | Call::UnpauseDomain { .. }
            | Call::GetDomainInfo { .. } => self.apply_lifecycle(call, d),
            Call::IomemPermission { .. }
            | Call::IrqPermission { .. }
            | Call::MemoryMapping { .. }
            | Call::BindPtIrq { .. }
            | Call::AssignDtDevice { .. }
            | Call::VuartInit { .. } => self.apply_passthrough(call, d),
            _ => self.apply_vcpu_memory(call, d),
        }
    }

    /// createdomain, destroydomain, pause/unpause and getdomaininfo.
    fn apply_lifecycle(&mut self, call: &Call, d: &XenDomctl) -> Answer {
        match call {
            Call::CreateDomain {
                requested,
                flags,
                max_vcpus,
                max_evtchn_port,
                grant_opts,
                arch,
            } => {
                let mut arch = *arch;
                self.check_create(*flags, *max_vcpus, *grant_opts, &mut arch)?;
                let altp2m_opts = if self.version.createdomain_has_altp2m() {
                    match self.arch {
                        XenArch::X86_64 => {
                            d.payload::<x86::CreateDomainV17>()
                                .map_err(|_| Errno::EFAULT)?
                                .altp2m_opts
                        }
                        XenArch::Arm64 => {
                            d.payload::<arm::CreateDomainV17>()
                                .map_err(|_| Errno::EFAULT)?
                                .altp2m_opts
                        }
                    }
                } else {
                    0
                };
                let domid = self.alloc_domid(*requested)?;
                let config = DomainConfig {
                    flags: *flags,
                    max_vcpus: *max_vcpus,
                    max_evtchn_port: *max_evtchn_port,
                    grant_opts: *grant_opts,
                    altp2m_opts,
                    arch,
                };
                self.domains.insert(domid, FakeDomain::new(domid, config));
                let mut back = *d;
                back.domain = domid;
                // gic_version is IN/OUT: write back the resolved version.
                if let ArchConfig::Arm(a) = arch {
                    let off = arm::createdomain_arch_offset(self.version)
                        + core::mem::offset_of!(arm::ArchDomainConfig, gic_version);
                    if let Some(b) = back.u.0.get_mut(off) {
                        *b = a.gic_version;
                    }
                }
                Ok((0, Some(back)))
            }
            Call::DestroyDomain { domid } => {
                if *domid == 0 {
                    return Err(Errno::EINVAL); // a domain cannot destroy itself
                }
                let dom = self.domains.remove(domid).ok_or(Errno::ESRCH)?;
                self.assigned_dt.retain(|_, owner| owner != domid);
                self.bound_spis.retain(|_, owner| owner != domid);
                self.destroyed.insert(*domid, dom);
                Ok((0, None))
            }
            Call::PauseDomain { domid } => {
                let dom = self.dom(*domid)?;
                if *domid == 0 {
                    return Err(Errno::EINVAL);
                }
                dom.paused = true;
                Ok((0, None))
            }
            Call::UnpauseDomain { domid } => {
                let dom = self.dom(*domid)?;
                // domain_unpause_by_systemcontroller(): -EINVAL when not paused by the toolstack.
                if !dom.paused {
                    return Err(Errno::EINVAL);
                }
                dom.paused = false;
                Ok((0, None))
            }
            Call::GetDomainInfo { domid } => {
                let found = if self.version.getdomaininfo_is_exact() {
                    self.domains.get(domid)
                } else {
                    // 4.17: "for_each_domain ( d ) if ( d->domain_id >= dom ) break;"
                    self.domains.range(*domid..).next().map(|(_, d)| d)
                };
                let dom = found.ok_or(Errno::ESRCH)?;
                let mut back = *d;
                back.domain = dom.domid;
                back.u = self.domain_info(dom)?;
                Ok((0, Some(back)))
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    /// What a driver domain is given: I/O memory, IRQs, MMIO mappings, SPIs, DT devices, the vUART.
    fn apply_passthrough(&mut self, call: &Call, d: &XenDomctl) -> Answer {
        match call {
            Call::IomemPermission {
                domid,
                first_mfn,
                nr_mfns,
                allow,
            } => {
                let dom = self.dom(*domid)?;
                if *nr_mfns == 0 || first_mfn.checked_add(nr_mfns - 1).is_none() {
                    return Err(Errno::EINVAL);
                }
                dom.iomem.push((*first_mfn, *nr_mfns, *allow));
                Ok((0, None))
            }
            Call::IrqPermission { domid, pirq, allow } => {
                // Xen 4.19+ builds this domctl only with CONFIG_HAS_PIRQ (x86): on ARM it falls
                // through to arch_do_domctl(), which does not know it.
                if self.arch == XenArch::Arm64 && self.version >= InterfaceVersion::V17 {
                    return Err(Errno::ENOSYS);
                }
                let dom = self.dom(*domid)?;
                if *allow {
                    dom.irqs.insert(*pirq);
                } else {
                    dom.irqs.remove(pirq);
                }
                Ok((0, None))
            }
            Call::MemoryMapping {
                domid,
                first_gfn,
                first_mfn,
                nr_mfns,
                add,
            } => {
                let arch = self.arch;
                let dom = self.dom(*domid)?;
                if *nr_mfns == 0
                    || first_gfn.checked_add(nr_mfns - 1).is_none()
                    || first_mfn.checked_add(nr_mfns - 1).is_none()
                {
                    return Err(Errno::EINVAL);
                }
                let n = match arch {
                    XenArch::Arm64 if *nr_mfns > abi::MEMORY_MAPPING_BATCH => {
                        return Err(Errno::E2BIG);
                    }
                    // x86 reports partial progress instead.
                    _ => (*nr_mfns).min(abi::MEMORY_MAPPING_BATCH),
                };
                if *add {
                    dom.mmio.push((*first_gfn, *first_mfn, n));
                } else {
                    dom.mmio.retain(|m| m.0 != *first_gfn);
                }
                Ok((if n < *nr_mfns { n } else { 0 }, None))
            }
            Call::BindPtIrq {
                domid,
                machine_irq,
                irq_type,
                spi,
            } => {
                if self.arch != XenArch::Arm64 {
                    return Err(Errno::EINVAL);
                }
                if *irq_type != abi::PT_IRQ_TYPE_SPI {
                    return Err(Errno::EOPNOTSUPP);
                }
                let spi = u32::from(*spi);
                if spi != *machine_irq || !(32..=1019).contains(&spi) {
                    return Err(Errno::EINVAL);
                }
                if self.bound_spis.contains_key(&spi) {
                    return Err(Errno::EBUSY);
                }
                let dom = self.dom(*domid)?;
                let nr_spis = match dom.config.arch {
                    ArchConfig::Arm(a) => a.nr_spis,
                    ArchConfig::X86(_) => 0,
                };
                if spi >= 32 + nr_spis {
                    return Err(Errno::EINVAL);
                }
                dom.spis.insert(spi);
                self.bound_spis.insert(spi, *domid);
                Ok((0, None))
            }
            Call::AssignDtDevice { domid, path } => {
                if self.arch != XenArch::Arm64 {
                    return Err(Errno::EINVAL);
                }
                let has_iommu = self.dom(*domid)?.config.flags & abi::cdf::IOMMU != 0;
                if !has_iommu {
                    return Err(Errno::EOPNOTSUPP);
                }
                if !self.host_dt_devices.contains(path) {
                    return Err(Errno::EINVAL);
                }
                if self.assigned_dt.contains_key(path) {
                    return Err(Errno::EBUSY);
                }
                self.assigned_dt.insert(path.clone(), *domid);
                self.dom(*domid)?.dt_devices.push(path.clone());
                Ok((0, None))
            }
            Call::VuartInit {
                domid,
                gfn,
                console_domid,
            } => {
                if self.arch != XenArch::Arm64 {
                    return Err(Errno::ENOSYS);
                }
                if !self.domains.contains_key(console_domid) {
                    return Err(Errno::ESRCH);
                }
                let dom = self.dom(*domid)?;
                if dom.vuart.is_some() {
                    return Err(Errno::EEXIST);
                }
                let port = alloc_port(dom, *console_domid)?;
                dom.vuart = Some((*gfn, *console_domid, port));
                let mut back = *d;
                let mut a: abi::DomctlVuartOp = d.payload().map_err(|_| Errno::EFAULT)?;
                a.evtchn = port;
                back.set_payload(&a).map_err(|_| Errno::EFAULT)?;
                Ok((0, Some(back)))
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    /// vCPU and memory settings: max_vcpus, address size, max_mem, paging pool, affinity, HVM and
    /// arm64 vCPU contexts.
    fn apply_vcpu_memory(&mut self, call: &Call, d: &XenDomctl) -> Answer {
        match call {
            Call::MaxVcpus { domid, max } => {
                let dom = self.dom(*domid)?;
                if *max != dom.config.max_vcpus {
                    return Err(Errno::EINVAL);
                }
                dom.vcpus = Some(*max);
                Ok((0, None))
            }
            Call::SetAddressSize { domid, size } => {
                let arch = self.arch;
                let dom = self.dom(*domid)?;
                // x86: HVM domains answer -EOPNOTSUPP (arch_do_domctl); ARM: switch_mode() refuses a
                // domain that already has pages, and only 32/64 are sizes.
                if arch == XenArch::X86_64 && dom.is_hvm() {
                    return Err(Errno::EOPNOTSUPP);
                }
                if *size != 32 && *size != 64 {
                    return Err(Errno::EINVAL);
                }
                if !dom.pages.is_empty() {
                    return Err(Errno::EBUSY);
                }
                dom.address_size = Some(*size);
                Ok((0, None))
            }
            Call::MaxMem { domid, max_kib } => {
                self.dom(*domid)?.max_mem_kib = Some(*max_kib);
                Ok((0, None))
            }
            Call::SetPagingMempoolSize { domid, bytes } => {
                let dom = self.dom(*domid)?;
                if !bytes.is_multiple_of(XEN_PAGE_SIZE as u64) {
                    return Err(Errno::EINVAL);
                }
                dom.paging_mempool_bytes = Some(*bytes);
                Ok((0, None))
            }
            Call::SetVcpuAffinity {
                domid,
                vcpu,
                hard,
                soft,
            } => {
                let dom = self.dom(*domid)?;
                if *vcpu >= dom.vcpus.unwrap_or(0) || (hard.is_none() && soft.is_none()) {
                    return Err(Errno::EINVAL);
                }
                dom.affinity.insert(
                    *vcpu,
                    VcpuAffinity {
                        hard: hard.clone(),
                        soft: soft.clone(),
                    },
                );
                Ok((0, None))
            }
            Call::GetHvmContext { domid, .. } => {
                if self.arch != XenArch::X86_64 {
                    return Err(Errno::ENOSYS);
                }
                let dom = self.domains.get(domid).ok_or(Errno::ESRCH)?;
                if !dom.is_hvm() {
                    return Err(Errno::EINVAL);
                }
                let blob = hvm_context_of(dom).map_err(|_| Errno::EINVAL)?;
                let a: abi::DomctlHvmContext = d.payload().map_err(|_| Errno::EFAULT)?;
                let len = u32::try_from(blob.len()).map_err(|_| Errno::ENOMEM)?;
                if a.buffer != 0 {
                    if (a.size as usize) < blob.len() {
                        return Err(Errno::ENOSPC);
                    }
                    self.write_handle(a.buffer, &blob)?;
                }
                let mut back = *d;
                let answer = abi::DomctlHvmContext { size: len, ..a };
                back.set_payload(&answer).map_err(|_| Errno::EFAULT)?;
                Ok((0, Some(back)))
            }
            Call::SetHvmContext { domid, len } => {
                if self.arch != XenArch::X86_64 {
                    return Err(Errno::ENOSYS);
                }
                let a: abi::DomctlHvmContext = d.payload().map_err(|_| Errno::EFAULT)?;
                let blob = self.read_handle(a.buffer, *len)?;
                let dom = self.dom(*domid)?;
                if !dom.is_hvm() {
                    return Err(Errno::EINVAL);
                }
                load_hvm_context(dom, &blob)?;
                Ok((0, None))
            }
            Call::SetVcpuContextArm64 { domid, vcpu, .. } => {
                let a: abi::DomctlVcpuContext = d.payload().map_err(|_| Errno::EFAULT)?;
                let c: arm::VcpuGuestContext = self.read_struct(a.ctxt)?;
                let dom = self.dom(*domid)?;
                if *vcpu >= dom.vcpus.unwrap_or(0) {
                    return Err(Errno::EINVAL);
                }
                // arch_set_info_guest(): a 64-bit context must be in EL0t, EL1t or EL1h.
                let mode = c.user_regs.cpsr & 0x1f;
                if !matches!(mode, 0x00 | 0x04 | 0x05) {
                    return Err(Errno::EINVAL);
                }
                // ... and a domain switched to AArch32 (set_address_size 32) takes no 64-bit context.
                if dom.address_size == Some(32) {
                    return Err(Errno::EINVAL);
                }
                dom.arm_vcpu.insert(*vcpu, c);
                Ok((0, None))
            }

            _ => Err(Errno::ENOSYS),
        }
    }

    fn check_create(
        &self,
        flags: u32,
        max_vcpus: u32,
        grant_opts: u32,
        arch: &mut ArchConfig,
    ) -> Result<(), Errno> {
        let known = match self.version {
            InterfaceVersion::V15 | InterfaceVersion::V16 => abi::cdf::ALL_4_17,
            _ => abi::cdf::ALL_4_21,
        };
        // HVM_MAX_VCPUS / GUEST_MAX_VCPUS are both 128.
        if flags & !known != 0 || max_vcpus == 0 || max_vcpus > 128 {
            return Err(Errno::EINVAL);
        }
        let grant_version = grant_opts & 0xf;
        match arch {
            ArchConfig::X86(a) => {
                if self.arch != XenArch::X86_64 || a.emulation_flags & !0x7ff != 0 {
                    return Err(Errno::EINVAL);
                }
                if !(1..=2).contains(&grant_version) {
                    return Err(Errno::EINVAL);
                }
            }
            ArchConfig::Arm(a) => {
                // arch_sanitise_domain_config(): ARM guests are always HVM with HAP; grant v1 only.
                if self.arch != XenArch::Arm64
                    || flags & (abi::cdf::HVM | abi::cdf::HAP) != (abi::cdf::HVM | abi::cdf::HAP)
                    || grant_version != 1
                    || a.gic_version > arm::GIC_V3
                    || a.nr_spis > 988
                {
                    return Err(Errno::EINVAL);
                }
                if a.gic_version == arm::GIC_NATIVE {
                    a.gic_version = arm::GIC_V3;
                }
            }
        }
        Ok(())
    }

    fn alloc_domid(&mut self, requested: u16) -> Result<u16, Errno> {
        let auto = match self.version {
            // 4.22 domid_alloc(): DOMID_ANY picks; an ordinary id is exact (0 included); else invalid.
            InterfaceVersion::V18 => {
                if requested == abi::domid::ANY {
                    true
                } else if requested < abi::domid::FIRST_RESERVED {
                    false
                } else {
                    return Err(Errno::EEXIST);
                }
            }
            // Before: "(dom > 0) && (dom < DOMID_FIRST_RESERVED)" is exact, anything else picks.
            _ => requested == 0 || requested >= abi::domid::FIRST_RESERVED,
        };
        if !auto {
            return if self.domains.contains_key(&requested) {
                Err(Errno::EEXIST)
            } else {
                Ok(requested)
            };
        }
        let mut candidate = self.rover;
        for _ in 1..abi::domid::FIRST_RESERVED {
            candidate = if candidate + 1 >= abi::domid::FIRST_RESERVED {
                1
            } else {
                candidate + 1
            };
            if !self.domains.contains_key(&candidate) {
                self.rover = candidate;
                return Ok(candidate);
            }
        }
        Err(Errno::ENOMEM)
    }

    fn domain_info(&self, dom: &FakeDomain) -> Result<abi::DomctlPayload, Errno> {
        let mut flags = 0;
        if dom.is_hvm() {
            flags |= abi::dominf::HVM_GUEST;
        }
        if dom.config.flags & abi::cdf::HAP != 0 {
            flags |= abi::dominf::HAP;
        }
        flags |= if dom.paused {
            abi::dominf::PAUSED
        } else {
            abi::dominf::RUNNING
        };
        if let Some(code) = dom.shutdown {
            flags |= abi::dominf::SHUTDOWN | (code << abi::dominf::SHUTDOWN_SHIFT);
        }
        let vcpus = dom.vcpus.unwrap_or(0);
        let common = abi::GetDomainInfoCommon {
            domain: dom.domid,
            flags,
            tot_pages: dom.pages.len() as u64,
            max_pages: dom.max_mem_kib.map_or(0, |k| k / 4),
            nr_online_vcpus: vcpus,
            max_vcpu_id: vcpus.checked_sub(1).unwrap_or(u32::MAX),
            gpaddr_bits: 48,
            ..Default::default()
        };
        let mut u = abi::DomctlPayload([0; 128]);
        let bytes = match dom.config.arch {
            ArchConfig::X86(a) => x86::GetDomainInfo {
                common,
                arch_config: a,
            }
            .as_bytes()
            .to_vec(),
            // As real Xen: ARM's `arch_get_domain_info()` (`xen/arch/arm/domctl.c`, 4.17-4.22) fills
            // only the HAP flag and `gpaddr_bits`; the GIC version and clock frequency are answered
            // by createdomain's copy-back alone.
            ArchConfig::Arm(_) => arm::GetDomainInfo {
                common,
                arch_config: arm::ArchDomainConfig::default(),
            }
            .as_bytes()
            .to_vec(),
        };
        u.0.get_mut(..bytes.len())
            .ok_or(Errno::EFAULT)?
            .copy_from_slice(&bytes);
        Ok(u)
    }

    // ----------------------------------------------------------------------------------------------
    // memory_op, hvm_op, event_channel_op
    // ----------------------------------------------------------------------------------------------

    fn finish(
        &mut self,
        call: Call,
        apply: impl FnOnce(&mut Self, &Call) -> Result<u64, Errno>,
    ) -> Result<u64, Errno> {
        let result = match call.op().and_then(|op| self.injected(op)) {
            Some(errno) => Err(errno),
            None => apply(self, &call),
        };
        self.record(call, result);
        result
    }

    fn memory_op(&mut self, sub: u64, addr: u64) -> Result<u64, Errno> {
        match sub {
            abi::xenmem::POPULATE_PHYSMAP => {
                let r: abi::MemoryReservation = self.read_struct(addr)?;
                let n = usize::try_from(r.nr_extents).map_err(|_| Errno::EINVAL)?;
                let bytes =
                    self.read_handle(r.extent_start, n.checked_mul(8).ok_or(Errno::EINVAL)?)?;
                let pfns: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect();
                let call = Call::PopulatePhysmap {
                    domid: r.domid,
                    order: r.extent_order,
                    pfns,
                };
                self.finish(call, |st, call| {
                    let Call::PopulatePhysmap { domid, order, pfns } = call else {
                        return Err(Errno::EINVAL);
                    };
                    if *order > 18 {
                        return Err(Errno::EINVAL);
                    }
                    let dom = st.dom(*domid)?;
                    let per = 1u64 << order;
                    let mut done = 0u64;
                    'extents: for base in pfns {
                        // Xen: extent start must be aligned; guest frames above 2^(48-12) do not exist.
                        if base & (per - 1) != 0
                            || base.checked_add(per).is_none_or(|e| e > 1 << 36)
                        {
                            break;
                        }
                        // Without max_mem a domain could take all of the host; the fake's host has
                        // FAKE_HOST_PAGES (4 GiB) per domain and runs out like Xen would.
                        let limit = dom.max_pages().min(FAKE_HOST_PAGES);
                        if dom.pages.len() as u64 + per > limit {
                            break;
                        }
                        // Real Xen would silently replace an existing page (leaking it); a builder doing
                        // that has a bug, so the fake stops here, like a failed extent.
                        for pfn in *base..base + per {
                            if dom.pages.contains_key(&pfn) {
                                break 'extents;
                            }
                        }
                        for pfn in *base..base + per {
                            dom.pages.insert(pfn, Vec::new());
                        }
                        done += 1;
                    }
                    Ok(done)
                })
            }
            abi::xenmem::SET_MEMORY_MAP => {
                let m: abi::ForeignMemoryMap = self.read_struct(addr)?;
                if self.arch != XenArch::X86_64 {
                    self.record(
                        Call::UnknownHypercall {
                            op: abi::hypercall::MEMORY_OP,
                            sub,
                        },
                        Err(Errno::ENOSYS),
                    );
                    return Err(Errno::ENOSYS);
                }
                let n = m.nr_entries as usize;
                let entries = if n > abi::E820MAX {
                    Vec::new()
                } else {
                    let raw = self.read_handle(m.buffer, n * 20)?;
                    raw.chunks_exact(20)
                        .filter_map(|c| x86::E820Entry::read_from_bytes(c).ok())
                        .collect()
                };
                let call = Call::SetMemoryMap {
                    domid: m.domid,
                    entries,
                };
                self.finish(call, move |st, call| {
                    let Call::SetMemoryMap { domid, entries } = call else {
                        return Err(Errno::EINVAL);
                    };
                    if n > abi::E820MAX {
                        return Err(Errno::EINVAL);
                    }
                    st.dom(*domid)?.memory_map = Some(entries.clone());
                    Ok(0)
                })
            }
            abi::xenmem::ADD_TO_PHYSMAP => {
                let a: abi::AddToPhysmap = self.read_struct(addr)?;
                let call = Call::AddToPhysmap {
                    domid: a.domid,
                    space: a.space,
                    idx: a.idx,
                    gpfn: a.gpfn,
                };
                self.finish(call, |st, call| {
                    let Call::AddToPhysmap {
                        domid,
                        space,
                        idx,
                        gpfn,
                    } = call
                    else {
                        return Err(Errno::EINVAL);
                    };
                    if *space > abi::mapspace::DEV_MMIO {
                        return Err(Errno::EINVAL);
                    }
                    let dom = st.dom(*domid)?;
                    dom.physmap.push((*space, *idx, *gpfn));
                    // Xen-owned frames (shared info, grant table) now back this guest frame.
                    let backing = if *space == abi::mapspace::GRANT_TABLE {
                        dom.grant_frames.get(idx).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    dom.pages.insert(*gpfn, backing);
                    Ok(0)
                })
            }
            abi::xenmem::REMOVE_FROM_PHYSMAP => {
                let r: abi::RemoveFromPhysmap = self.read_struct(addr)?;
                let call = Call::RemoveFromPhysmap {
                    domid: r.domid,
                    gpfn: r.gpfn,
                };
                self.finish(call, |st, _| {
                    let dom = st.dom(r.domid)?;
                    let page = dom.pages.remove(&r.gpfn).ok_or(Errno::EINVAL)?;
                    let at = dom.physmap.iter().position(|(_, _, g)| *g == r.gpfn);
                    if let Some((space, idx, _)) = at.map(|i| dom.physmap.remove(i))
                        && space == abi::mapspace::GRANT_TABLE
                    {
                        dom.grant_frames.insert(idx, page);
                    }
                    Ok(0)
                })
            }
            abi::xenmem::MAXIMUM_GPFN => {
                let domid: u16 = self.read_struct(addr)?;
                self.finish(Call::MaximumGpfn { domid }, |st, _| {
                    let dom = st.dom(domid)?;
                    Ok(dom.pages.keys().next_back().copied().unwrap_or(0))
                })
            }
            _ => {
                let call = Call::UnknownHypercall {
                    op: abi::hypercall::MEMORY_OP,
                    sub,
                };
                self.record(call, Err(Errno::ENOSYS));
                Err(Errno::ENOSYS)
            }
        }
    }

    fn hvm_op(&mut self, sub: u64, addr: u64) -> Result<u64, Errno> {
        let p: abi::HvmParam = self.read_struct(addr)?;
        match sub {
            abi::HVMOP_SET_PARAM => self.finish(
                Call::SetHvmParam {
                    domid: p.domid,
                    index: p.index,
                    value: p.value,
                },
                |st, _| {
                    if p.index >= abi::hvm_param::NR_PARAMS {
                        return Err(Errno::EINVAL);
                    }
                    let dom = st.dom(p.domid)?;
                    if !dom.is_hvm() {
                        return Err(Errno::EINVAL);
                    }
                    dom.hvm_params.insert(p.index, p.value);
                    Ok(0)
                },
            ),
            abi::HVMOP_GET_PARAM => self.finish(
                Call::GetHvmParam {
                    domid: p.domid,
                    index: p.index,
                },
                |st, _| {
                    if p.index >= abi::hvm_param::NR_PARAMS {
                        return Err(Errno::EINVAL);
                    }
                    let value = st
                        .dom(p.domid)?
                        .hvm_params
                        .get(&p.index)
                        .copied()
                        .unwrap_or(0);
                    st.write_handle(addr, abi::HvmParam { value, ..p }.as_bytes())?;
                    Ok(0)
                },
            ),
            _ => {
                self.record(
                    Call::UnknownHypercall {
                        op: abi::hypercall::HVM_OP,
                        sub,
                    },
                    Err(Errno::ENOSYS),
                );
                Err(Errno::ENOSYS)
            }
        }
    }

    fn evtchn_op(&mut self, sub: u64, addr: u64) -> Result<u64, Errno> {
        if sub != abi::EVTCHNOP_ALLOC_UNBOUND {
            self.record(
                Call::UnknownHypercall {
                    op: abi::hypercall::EVENT_CHANNEL_OP,
                    sub,
                },
                Err(Errno::ENOSYS),
            );
            return Err(Errno::ENOSYS);
        }
        let a: abi::EvtchnAllocUnbound = self.read_struct(addr)?;
        self.finish(
            Call::EvtchnAllocUnbound {
                dom: a.dom,
                remote_dom: a.remote_dom,
            },
            |st, _| {
                if !st.domains.contains_key(&a.remote_dom) {
                    return Err(Errno::ESRCH);
                }
                let port = alloc_port(st.dom(a.dom)?, a.remote_dom)?;
                st.write_handle(addr, abi::EvtchnAllocUnbound { port, ..a }.as_bytes())?;
                Ok(0)
            },
        )
    }
}

fn alloc_port(dom: &mut FakeDomain, remote: u16) -> Result<u32, Errno> {
    // Port 0 is never handed out (evtchn_init reserves it).
    let port = (1..=dom.config.max_evtchn_port)
        .find(|p| !dom.evtchns.contains_key(p))
        .ok_or(Errno::ENOSPC)?;
    dom.evtchns.insert(port, remote);
    Ok(port)
}

/// The context `XEN_DOMCTL_gethvmcontext` returns: HEADER, CPU and MTRR per vCPU, END.
fn hvm_context_of(dom: &FakeDomain) -> Result<Vec<u8>, x86::HvmContextError> {
    let header = x86::HvmSaveHeader {
        magic: x86::HVM_FILE_MAGIC,
        version: 1,
        changeset: 0,
        cpuid: 0x000a_0f10,
        gtsc_khz: 2_000_000,
    };
    let mut b =
        x86::HvmContextBuilder::new().record(x86::HVM_SAVE_CODE_HEADER, 0, header.as_bytes())?;
    for vcpu in 0..dom.vcpus.unwrap_or(0) {
        let i = u16::try_from(vcpu).map_err(|_| x86::HvmContextError::TooLarge(vcpu as usize))?;
        let cpu = dom
            .hvm_cpu
            .get(&i)
            .copied()
            .unwrap_or_else(<x86::HvmHwCpu as zerocopy::FromZeros>::new_zeroed);
        b = b.record(x86::HVM_SAVE_CODE_CPU, i, cpu.as_bytes())?;
    }
    for vcpu in 0..dom.vcpus.unwrap_or(0) {
        let i = u16::try_from(vcpu).map_err(|_| x86::HvmContextError::TooLarge(vcpu as usize))?;
        let mtrr = dom.hvm_mtrr.get(&i).copied().unwrap_or_else(|| {
            let mut m = <x86::HvmHwMtrr as zerocopy::FromZeros>::new_zeroed();
            m.msr_mtrr_cap = 0x508; // 8 variable ranges, fixed ranges, WC
            m
        });
        b = b.record(x86::HVM_SAVE_CODE_MTRR, i, mtrr.as_bytes())?;
    }
    Ok(b.finish())
}

/// What `XEN_DOMCTL_sethvmcontext` (`hvm_load()`) checks and loads.
fn load_hvm_context(dom: &mut FakeDomain, blob: &[u8]) -> Result<(), Errno> {
    let recs = x86::hvm_records(blob).map_err(|_| Errno::EINVAL)?;
    let Some(first) = recs.first() else {
        return Err(Errno::EINVAL);
    };
    let header = x86::HvmSaveHeader::read_from_bytes(first.data).map_err(|_| Errno::EINVAL)?;
    if first.typecode != x86::HVM_SAVE_CODE_HEADER || header.magic != x86::HVM_FILE_MAGIC {
        return Err(Errno::EINVAL);
    }
    let vcpus = dom.vcpus.unwrap_or(0);
    // Check everything before loading anything.
    let mut cpus = Vec::new();
    let mut mtrrs = Vec::new();
    for r in recs.iter().skip(1) {
        match r.typecode {
            x86::HVM_SAVE_CODE_END => {}
            x86::HVM_SAVE_CODE_CPU | x86::HVM_SAVE_CODE_MTRR if u32::from(r.instance) >= vcpus => {
                return Err(Errno::EINVAL); // "HVM restore: dom%d has no vcpu%u"
            }
            x86::HVM_SAVE_CODE_CPU => cpus.push((
                r.instance,
                x86::HvmHwCpu::read_from_bytes(r.data).map_err(|_| Errno::EINVAL)?,
            )),
            x86::HVM_SAVE_CODE_MTRR => mtrrs.push((
                r.instance,
                x86::HvmHwMtrr::read_from_bytes(r.data).map_err(|_| Errno::EINVAL)?,
            )),
            _ => return Err(Errno::EINVAL), // not modelled by the fake
        }
    }
    dom.hvm_cpu.extend(cpus);
    dom.hvm_mtrr.extend(mtrrs);
    Ok(())
}

impl Hypercalls for FakeXen {
    type Buffer = FakeBuffer;
    type Mapping = FakeMapping;

    fn arch(&self) -> XenArch {
        self.state.borrow().arch
    }

    fn alloc_buffer(&mut self, len: usize) -> Result<FakeBuffer, TransportError> {
        let mut st = self.state.borrow_mut();
        st.buffers.retain(|(_, w)| w.strong_count() > 0);
        let addr = st.next_addr;
        let pages = len.div_ceil(XEN_PAGE_SIZE).max(1) as u64 + 1; // + a guard page
        st.next_addr =
            addr.checked_add(pages * XEN_PAGE_SIZE as u64)
                .ok_or(TransportError::Os {
                    what: "fake hypercall buffer address space".into(),
                    source: Errno::ENOMEM,
                })?;
        let data = Rc::new(RefCell::new(vec![0; len]));
        st.buffers.push((addr, Rc::downgrade(&data)));
        Ok(FakeBuffer { addr, data })
    }

    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> Result<u64, TransportError> {
        let mut st = self.state.borrow_mut();
        let r = match op {
            abi::hypercall::XEN_VERSION if args[0] == abi::XENVER_VERSION => {
                let (maj, min) = st.release;
                let v = (u64::from(maj) << 16) | u64::from(min);
                st.record(Call::XenVersion, Ok(v));
                Ok(v)
            }
            abi::hypercall::DOMCTL => st.domctl(args[0]),
            abi::hypercall::MEMORY_OP => st.memory_op(args[0], args[1]),
            abi::hypercall::HVM_OP => st.hvm_op(args[0], args[1]),
            abi::hypercall::EVENT_CHANNEL_OP => st.evtchn_op(args[0], args[1]),
            _ => {
                st.record(
                    Call::UnknownHypercall { op, sub: args[0] },
                    Err(Errno::ENOSYS),
                );
                Err(Errno::ENOSYS)
            }
        };
        r.map_err(TransportError::Xen)
    }

    fn map_foreign(&mut self, domid: u16, pfns: &[u64]) -> Result<FakeMapping, TransportError> {
        let mut st = self.state.borrow_mut();
        let call = Call::MapForeign {
            domid,
            pfns: pfns.to_vec(),
        };
        let mut missing = None;
        let result = match st.injected(Op::MapForeign) {
            Some(e) => Err(e),
            None => match st.domains.get(&domid) {
                None => Err(Errno::ESRCH),
                Some(d) => {
                    missing = pfns.iter().find(|p| !d.pages.contains_key(p)).copied();
                    if missing.is_some() {
                        Err(Errno::EINVAL)
                    } else {
                        Ok(0)
                    }
                }
            },
        };
        st.record(call, result);
        match (result, missing) {
            (Ok(_), _) => Ok(FakeMapping {
                state: Rc::clone(&self.state),
                domid,
                pfns: pfns.to_vec(),
            }),
            (Err(errno), Some(pfn)) => Err(TransportError::MapFailed { domid, pfn, errno }),
            (Err(errno), None) => Err(TransportError::Xen(errno)),
        }
    }
}
