//! The x86 PVH domain builder: one guest from a kernel, a ramdisk and a command line, through domctls.
//!
//! The sequence is libxl's for `type = "pvh"` without a device model, reduced to what a direct kernel
//! boot needs (`tools/libs/light/libxl_create.c`, `libxl_dom.c`, `libxl_x86.c`,
//! `tools/libs/guest/xg_dom_x86.c`, and the smallest in-tree builder `tools/helpers/init-xenstore-domain.c`):
//!
//! | step ([`BuildStep`]) | hypercall | why |
//! |---|---|---|
//! | `CreateDomain` | `XEN_DOMCTL_createdomain` | HVM container + HAP, only the LAPIC emulated (`XEN_X86_EMU_LAPIC`, libxl's PVH `emulation_flags`) |
//! | `MaxVcpus` | `XEN_DOMCTL_max_vcpus` | allocates the vCPUs (must equal createdomain's `max_vcpus`) |
//! | `MaxMem` | `XEN_DOMCTL_max_mem` | limit = populated pages + `LIBXL_MAXMEM_CONSTANT` (1 MiB of slack, `libxl_internal.h`) |
//! | `PagingPool` | `XEN_DOMCTL_set_paging_mempool_size` | the HAP pool for the guest's nested page tables (x86 since 4.17) |
//! | `Populate` | `XENMEM_populate_physmap` | RAM, ACPI pages and the 8 special pages; 2 MiB extents where aligned |
//! | `MemoryMap` | `XENMEM_set_memory_map` | the e820 the guest reads with `XENMEM_memory_map` (also in `start_info.memmap`) |
//! | `LoadImage` | `IOCTL_PRIVCMD_MMAPBATCH_V2` + writes | kernel segments, ramdisk, command line, `hvm_start_info`, memory map table, ACPI tables (`pvh_boot::build_from_elf`) |
//! | `ConsoleEvtchn` | `EVTCHNOP_alloc_unbound` | the console's event channel, `remote_dom` = the console backend (dom0) |
//! | `StoreEvtchn` | `EVTCHNOP_alloc_unbound` | only with [`PvhDomainConfig::xenstore`] |
//! | `HvmParams` | `HVMOP_set_param` | `CONSOLE_PFN`/`CONSOLE_EVTCHN` (+ `STORE_*`), and the paging/monitor/sharing ring pfns as `alloc_magic_pages_hvm()` sets them |
//! | `SeedGrants` | `XENMEM_add_to_physmap` + map + `XENMEM_remove_from_physmap` | only with xenstore: grant refs 0/1 for the console and store rings (`xc_dom_gnttab_hvm_seed`, see [`super::grants`]) |
//! | `GetHvmContext` | `XEN_DOMCTL_gethvmcontext` | Xen's HEADER record (CPUID/TSC data Xen checks on load) and MTRR capabilities |
//! | `SetMtrr` | `XEN_DOMCTL_sethvmcontext` per vCPU | MTRR default type WB + enabled: without a device model nobody else sets it (`vcpu_hvm()`) |
//! | `SetBootCpu` | `XEN_DOMCTL_sethvmcontext` | BSP: flat 32-bit protected mode, `cr0 = PE|ET`, `rip` = PVH entry, `rbx` = `hvm_start_info` (`docs/misc/pvh.pandoc`) |
//! | `Unpause` | `XEN_DOMCTL_unpausedomain` | runs it |
//!
//! Any failure after `CreateDomain` destroys the half-built domain (`XEN_DOMCTL_destroydomain`) before the
//! error is returned; the [`BuildError`] names the domain, the step and the cause, and says whether the
//! clean-up worked.
//!
//! ## No xenstore by default
//! domforge-init runs no xenstored. A Linux guest that finds `HVM_PARAM_STORE_PFN` set waits for a
//! xenstore daemon when it probes xenbus (`drivers/xen/xenbus/xenbus_probe.c`), which never answers here;
//! with the parameter left at 0 it logs that xenstore is not initialised and boots on (same file:
//! "Uninitialized hvm_params are zero … If zero, it means that Xenstore hasn't been properly initialized").
//! So the store page and channel are only set when [`PvhDomainConfig::xenstore`] asks for them.
//!
//! ## ACPI
//! `pvh_boot` always writes ACPI tables (RSDP/XSDT/FADT/MADT/DSDT, one LAPIC per vCPU); Linux needs the
//! MADT to bring up secondary vCPUs and does without with one.

use crate::abi::{hvm_param, x86};
use crate::builder::memory::WindowedGuestMemory;
use crate::transport::Hypercalls;
use crate::xen::{CreateDomain, DomId, Xen};
use core::fmt;
use pvh_boot::BootState;
use pvh_boot::kernel::{ElfKernel, ImageError};
use pvh_boot::layout::{LayoutRequest, PvhLayout};
use pvh_boot::memory::PAGE_SIZE;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::kernel_file::{self, OpenError};
pub use super::{
    BootDetails, BuildError, BuildFailure, BuildStep, BuiltDomain, Cleanup, ConsoleKind, GuestKind,
    MAXMEM_SLACK_KIB, RingChannel, split_extents,
};
use super::{Failed, at, failed_early, finish_or_destroy};

/// `X86_CR0_PE` (bit 0) and `X86_CR0_ET` (bit 4), `xen/arch/x86/include/asm/x86-defns.h`: the PVH entry
/// state is 32-bit protected mode, paging off (`docs/misc/pvh.pandoc`; `vcpu_hvm()` sets exactly these).
pub const PVH_CR0: u64 = (1 << 0) | (1 << 4);
/// `X86_DR6_DEFAULT` 0xffff0ff0 and `X86_DR7_DEFAULT` 0x400 (`asm/debugreg.h`), as `vcpu_hvm()` sets.
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
pub const DR7_DEFAULT: u64 = 0x0000_0400;
/// Segment attributes of the flat PVH boot segments (`vcpu_hvm()`): code 32-bit, present, DPL0,
/// execute/read, accessed, 4 KiB granular (0xc9b); data the same with read/write (0xc93); a busy 32-bit
/// TSS (0x8b) of limit 0x67.
pub const CS_ARBYTES: u32 = 0xc9b;
pub const DS_ARBYTES: u32 = 0xc93;
pub const TR_ARBYTES: u32 = 0x8b;
pub const TR_LIMIT: u32 = 0x67;
/// `MTRR_TYPE_WRBACK` 6 | `MTRR_DEF_TYPE_ENABLE` (1 << 11): `IA32_MTRR_DEF_TYPE` with MTRRs on and
/// write-back default (`vcpu_hvm()`: "Enable MTRR, set default type to WB").
pub const MTRR_DEF_TYPE_WB_ENABLED: u64 = 6 | (1 << 11);

/// A PVH kernel, checked once, reusable for many builds (restarts, several guests from one image).
///
/// Two forms. **Streamed** ([`PvhKernel::open`]): an LZ4 legacy file whose first block holds the ELF
/// headers and notes (what domforge prepares on the host, `bundle/src/kernel_prep.rs`) is decoded a
/// block at a time straight into guest memory at every build, so only the headers are kept and
/// at most one decoded block is held (`pvh_boot::stream`). **In memory** ([`PvhKernel::from_image`]):
/// any other kernel (a bzImage, an ELF, another codec) is decompressed once and kept, as decompressing
/// Debian's xz bzImage is the slowest part of a build under emulation.
pub struct PvhKernel {
    image: PvhImage,
    entry: u32,
}

enum PvhImage {
    Elf(Vec<u8>),
    Streamed {
        path: std::path::PathBuf,
        /// The first decoded bytes, up to the end of the program headers and notes.
        headers: Vec<u8>,
    },
}

/// Decoded bytes are bounded by nothing but the segments themselves when streaming.
const STREAMED_LEN: u64 = u64::MAX;

impl PvhKernel {
    /// Accepts an ELF `vmlinux`, a bzImage (payload extracted and decompressed) or a compressed ELF;
    /// refuses a kernel without `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub fn from_image(image: &[u8]) -> Result<Self, ImageError> {
        let elf = pvh_boot::kernel::pvh_elf_bytes(image)?.into_owned();
        let entry = ElfKernel::parse(&elf)?.pvh_entry_checked()?;
        Ok(Self {
            image: PvhImage::Elf(elf),
            entry,
        })
    }

    /// The kernel at `path`, streamed if it can be (see the type's docs), else read and
    /// decompressed once ([`Self::from_image`]).
    pub fn open(path: &std::path::Path) -> Result<Self, OpenError> {
        let streamed = kernel_file::with_first_block(path, |first| Self::streamed(path, first))?;
        if let Some(k) = streamed.transpose()?.flatten() {
            return Ok(k);
        }
        let bytes = std::fs::read(path).map_err(OpenError::Read)?;
        Ok(Self::from_image(&bytes)?)
    }

    /// The streamed kernel whose file decodes first to `first`; `None` if its headers are not
    /// there (it is then loaded in memory).
    fn streamed(path: &std::path::Path, first: &[u8]) -> Result<Option<Self>, ImageError> {
        let Ok(elf) = ElfKernel::parse_prefix(first, STREAMED_LEN) else {
            return Ok(None);
        };
        let entry = elf.pvh_entry_checked()?;
        // Keep what the headers need: domforge's layout has the program headers and notes in the
        // first few KiB; anything else keeps the whole first block.
        let notes_end = elf
            .note_segments
            .iter()
            .map(|n| n.offset.saturating_add(n.filesz))
            .max()
            .unwrap_or(0);
        let want = usize::try_from(notes_end.max(16 << 10)).unwrap_or(usize::MAX);
        let short = &first[..want.min(first.len())];
        let headers = match ElfKernel::parse_prefix(short, STREAMED_LEN) {
            Ok(_) => short.to_vec(),
            Err(_) => first.to_vec(),
        };
        Ok(Some(Self {
            image: PvhImage::Streamed {
                path: path.to_path_buf(),
                headers,
            },
            entry,
        }))
    }

    /// The PVH 32-bit entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// Decoded bytes held in memory: the whole ELF, or a streamed kernel's headers.
    pub fn held_bytes(&self) -> usize {
        match &self.image {
            PvhImage::Elf(e) => e.len(),
            PvhImage::Streamed { headers, .. } => headers.len(),
        }
    }

    /// Whether builds stream the kernel from its file.
    pub fn is_streamed(&self) -> bool {
        matches!(self.image, PvhImage::Streamed { .. })
    }

    fn parsed(&self) -> Result<ElfKernel<'_>, ImageError> {
        match &self.image {
            PvhImage::Elf(e) => ElfKernel::parse(e),
            PvhImage::Streamed { headers, .. } => ElfKernel::parse_prefix(headers, STREAMED_LEN),
        }
    }

    /// Writes the guest's memory (pvh-boot's build) from this kernel.
    fn load<W: pvh_boot::memory::GuestMemoryWriter<Error = super::GuestWriteError>>(
        &self,
        elf: &ElfKernel<'_>,
        request: &LayoutRequest<'_>,
        mem: &mut W,
    ) -> Result<BootState, super::BuildFailure> {
        match &self.image {
            PvhImage::Elf(_) => Ok(pvh_boot::build_from_elf(elf, request, mem)?),
            PvhImage::Streamed { path, .. } => {
                let mut blocks = kernel_file::blocks(path)?;
                Ok(pvh_boot::build_streamed(elf, &mut *blocks, request, mem)?)
            }
        }
    }
}

impl fmt::Debug for PvhKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PvhKernel")
            .field("held_bytes", &self.held_bytes())
            .field("streamed", &self.is_streamed())
            .field("entry", &format_args!("{:#x}", self.entry))
            .finish()
    }
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct PvhDomainConfig<'a> {
    /// For messages (and the console prefix of whoever relays it).
    pub name: &'a str,
    pub vcpus: u32,
    /// Guest RAM in bytes, a whole number of pages (ACPI and special pages come on top).
    pub memory_bytes: u64,
    pub cmdline: &'a str,
    /// Initial ramdisk (module 0 of `hvm_start_info`).
    pub ramdisk: Option<&'a [u8]>,
    /// The domain that serves the console (and xenstore): the control domain, normally 0.
    pub backend: DomId,
    /// HAP paging pool; `None` → libxl's `libxl_get_required_shadow_memory()`:
    /// 4 KiB × (256 per vCPU + 2 per MiB of guest memory).
    pub paging_pool_bytes: Option<u64>,
    /// Give the guest a xenstore page and event channel (see the module docs: off unless a xenstore
    /// daemon will serve it).
    pub xenstore: bool,
    /// `xen_domain_handle_t` (a UUID).
    pub handle: [u8; 16],
}

impl<'a> PvhDomainConfig<'a> {
    /// A guest served by dom0, no xenstore, default paging pool, zero handle.
    pub fn new(name: &'a str, vcpus: u32, memory_bytes: u64, cmdline: &'a str) -> Self {
        Self {
            name,
            vcpus,
            memory_bytes,
            cmdline,
            ramdisk: None,
            backend: DomId::DOM0,
            paging_pool_bytes: None,
            xenstore: false,
            handle: [0; 16],
        }
    }

    /// libxl's default pool size for this guest, in bytes.
    pub fn default_paging_pool_bytes(&self) -> u64 {
        firmware_config::pools::libxl_paging_pool(self.vcpus, self.memory_bytes)
    }
}

/// Builds PVH guests over a [`Xen`] handle.
pub struct PvhBuilder<'x, H: Hypercalls> {
    xen: &'x mut Xen<H>,
}

impl<'x, H: Hypercalls> PvhBuilder<'x, H> {
    pub fn new(xen: &'x mut Xen<H>) -> Self {
        Self { xen }
    }

    /// Builds the guest and unpauses it. On failure the half-built domain is destroyed.
    pub fn build(
        &mut self,
        kernel: &PvhKernel,
        cfg: &PvhDomainConfig<'_>,
    ) -> Result<BuiltDomain, BuildError> {
        self.build_inner(kernel, cfg, true)
    }

    /// Builds the guest and leaves it paused (for a caller that starts several guests together, or
    /// binds the console first). On failure the half-built domain is destroyed.
    pub fn build_paused(
        &mut self,
        kernel: &PvhKernel,
        cfg: &PvhDomainConfig<'_>,
    ) -> Result<BuiltDomain, BuildError> {
        self.build_inner(kernel, cfg, false)
    }

    fn build_inner(
        &mut self,
        kernel: &PvhKernel,
        cfg: &PvhDomainConfig<'_>,
        start: bool,
    ) -> Result<BuiltDomain, BuildError> {
        let early = |f: Failed| failed_early(GuestKind::Pvh, cfg.name, f);
        let elf = kernel.parsed().map_err(|e| early(at(BuildStep::Plan)(e)))?;
        let request = LayoutRequest {
            memory_bytes: cfg.memory_bytes,
            vcpus: cfg.vcpus,
            cmdline: cfg.cmdline,
            ramdisk: cfg.ramdisk,
        };
        let (_, layout) =
            pvh_boot::plan(&elf, &request).map_err(|e| early(at(BuildStep::Plan)(e)))?;

        let create = CreateDomain {
            handle: cfg.handle,
            ..CreateDomain::pvh(cfg.vcpus)
        };
        let domid = self
            .xen
            .create_domain(&create)
            .map_err(|e| early(at(BuildStep::CreateDomain)(e)))?;

        let result = self.construct(kernel, &elf, &layout, &request, cfg, domid, start);
        finish_or_destroy(self.xen, GuestKind::Pvh, cfg.name, domid, result)
    }

    #[allow(clippy::too_many_arguments)]
    fn construct(
        &mut self,
        kernel: &PvhKernel,
        elf: &ElfKernel<'_>,
        layout: &PvhLayout,
        request: &LayoutRequest<'_>,
        cfg: &PvhDomainConfig<'_>,
        domid: DomId,
        start: bool,
    ) -> Result<BuiltDomain, Failed> {
        use BuildStep as S;
        let xen = &mut *self.xen;
        let populate = layout.populate.as_slice();
        xen.max_vcpus(domid, cfg.vcpus).map_err(at(S::MaxVcpus))?;

        let populated_pages: u64 = populate.iter().map(|r| r.count).sum();
        let max_mem_kib = populated_pages
            .checked_mul(PAGE_SIZE / 1024)
            .and_then(|k| k.checked_add(MAXMEM_SLACK_KIB))
            .ok_or_else(|| Failed {
                step: S::MaxMem,
                source: Box::new(BuildFailure::Config("guest memory size overflows".into())),
            })?;
        xen.set_max_mem(domid, max_mem_kib).map_err(at(S::MaxMem))?;

        let pool = cfg
            .paging_pool_bytes
            .unwrap_or_else(|| cfg.default_paging_pool_bytes());
        // Xen wants whole pages.
        let pool = pool.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
        xen.set_paging_mempool_size(domid, pool)
            .map_err(at(S::PagingPool))?;

        super::populate(xen, domid, populate).map_err(at(S::Populate))?;

        // The e820 comes from the same plan the loader follows (and writes into start_info.memmap).
        let memory_map: Vec<x86::E820Entry> = layout
            .memmap
            .iter()
            .map(|e| x86::E820Entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind.raw(),
            })
            .collect();
        xen.set_memory_map(domid, &memory_map)
            .map_err(at(S::MemoryMap))?;

        let mut mem = WindowedGuestMemory::new(xen, domid, populate);
        let boot: BootState = kernel
            .load(elf, request, &mut mem)
            .map_err(at(S::LoadImage))?;
        let mappings = mem.mappings_made();
        drop(mem);

        let console_port = xen
            .evtchn_alloc_unbound(domid, cfg.backend)
            .map_err(at(S::ConsoleEvtchn))?;
        let xenstore = if cfg.xenstore {
            let port = xen
                .evtchn_alloc_unbound(domid, cfg.backend)
                .map_err(at(S::StoreEvtchn))?;
            Some(RingChannel {
                pfn: boot.special_pages.xenstore_pfn,
                port,
            })
        } else {
            None
        };
        let console = RingChannel {
            pfn: boot.special_pages.console_pfn,
            port: console_port,
        };

        let sp = &boot.special_pages;
        let first = sp.first_pfn;
        // Indices of SPECIALPAGE_PAGING 0, _ACCESS 1, _SHARING 2 (xg_dom_x86.c); pvh_boot zeroed them.
        let mut params = vec![
            (hvm_param::PAGING_RING_PFN, first),
            (hvm_param::MONITOR_RING_PFN, first + 1),
            (hvm_param::SHARING_RING_PFN, first + 2),
            (hvm_param::CONSOLE_PFN, console.pfn),
            (hvm_param::CONSOLE_EVTCHN, u64::from(console.port)),
        ];
        if let Some(store) = xenstore {
            params.push((hvm_param::STORE_PFN, store.pfn));
            params.push((hvm_param::STORE_EVTCHN, u64::from(store.port)));
        }
        for (index, value) in params {
            xen.set_hvm_param(domid, index, value)
                .map_err(at(S::HvmParams))?;
        }
        if let Some(store) = xenstore {
            let rings = super::grants::SeedRings {
                backend: cfg.backend.get(),
                console_pfn: console.pfn,
                xenstore_pfn: store.pfn,
            };
            super::grants::seed(xen, domid, rings).map_err(at(S::SeedGrants))?;
        }

        let full = xen.get_hvm_context(domid).map_err(at(S::GetHvmContext))?;
        let records = x86::hvm_records(&full).map_err(at(S::GetHvmContext))?;
        let header = records
            .iter()
            .find(|r| r.typecode == x86::HVM_SAVE_CODE_HEADER)
            .ok_or(x86::HvmContextError::MissingRecord("HEADER"))
            .map_err(at(S::GetHvmContext))?
            .data
            .to_vec();
        let mtrr_of = |vcpu: u16| -> Result<x86::HvmHwMtrr, Failed> {
            let rec = records
                .iter()
                .find(|r| r.typecode == x86::HVM_SAVE_CODE_MTRR && r.instance == vcpu)
                .or_else(|| {
                    records
                        .iter()
                        .find(|r| r.typecode == x86::HVM_SAVE_CODE_MTRR)
                })
                .ok_or(x86::HvmContextError::MissingRecord("MTRR"))
                .map_err(at(S::GetHvmContext))?;
            x86::HvmHwMtrr::read_from_bytes(rec.data)
                .map_err(|_| x86::HvmContextError::BadLength {
                    what: "MTRR",
                    actual: rec.data.len(),
                    expected: size_of::<x86::HvmHwMtrr>(),
                })
                .map_err(at(S::GetHvmContext))
        };

        for vcpu in 0..cfg.vcpus {
            let instance = u16::try_from(vcpu).map_err(|_| Failed {
                step: S::SetMtrr,
                source: Box::new(BuildFailure::Config(format!(
                    "vCPU {vcpu} does not fit a save record"
                ))),
            })?;
            let mut mtrr = mtrr_of(instance)?;
            mtrr.msr_mtrr_def_type = MTRR_DEF_TYPE_WB_ENABLED;
            let blob = x86::HvmContextBuilder::new()
                .record(x86::HVM_SAVE_CODE_HEADER, 0, &header)
                .and_then(|b| b.record(x86::HVM_SAVE_CODE_MTRR, instance, mtrr.as_bytes()))
                .map_err(at(S::SetMtrr))?
                .finish();
            xen.set_hvm_context(domid, &blob).map_err(at(S::SetMtrr))?;
        }

        let cpu = boot_cpu(boot.entry, boot.start_info_gpa);
        let blob = x86::HvmContextBuilder::new()
            .record(x86::HVM_SAVE_CODE_HEADER, 0, &header)
            .and_then(|b| b.record(x86::HVM_SAVE_CODE_CPU, 0, cpu.as_bytes()))
            .map_err(at(S::SetBootCpu))?
            .finish();
        xen.set_hvm_context(domid, &blob)
            .map_err(at(S::SetBootCpu))?;

        if start {
            xen.unpause(domid).map_err(at(S::Unpause))?;
        }
        Ok(BuiltDomain {
            kind: GuestKind::Pvh,
            name: cfg.name.to_string(),
            domid,
            vcpus: cfg.vcpus,
            console,
            console_kind: ConsoleKind::Pv,
            xenstore,
            populated_pages,
            max_mem_kib,
            paging_pool_bytes: pool,
            mappings,
            boot: BootDetails::Pvh {
                entry: boot.entry,
                start_info_gpa: boot.start_info_gpa,
                memory_map,
            },
        })
    }
}

/// The boot vCPU's `hvm_hw_cpu` record, as `vcpu_hvm()` (`xg_dom_x86.c`) fills it: everything zero but
/// flat segments, `cr0 = PE|ET`, the debug register defaults, `rip` = PVH entry and `rbx` =
/// `hvm_start_info` (`docs/misc/pvh.pandoc`: "ebx: contains the physical memory address where the loader
/// has placed the boot start info structure").
pub fn boot_cpu(entry: u32, start_info_gpa: u64) -> x86::HvmHwCpu {
    let mut cpu = x86::HvmHwCpu::new_zeroed();
    cpu.rip = u64::from(entry);
    cpu.rbx = start_info_gpa;
    cpu.cr0 = PVH_CR0;
    cpu.dr6 = DR6_DEFAULT;
    cpu.dr7 = DR7_DEFAULT;
    cpu.cs_limit = u32::MAX;
    cpu.ds_limit = u32::MAX;
    cpu.es_limit = u32::MAX;
    cpu.ss_limit = u32::MAX;
    cpu.tr_limit = TR_LIMIT;
    cpu.cs_arbytes = CS_ARBYTES;
    cpu.ds_arbytes = DS_ARBYTES;
    cpu.es_arbytes = DS_ARBYTES;
    cpu.ss_arbytes = DS_ARBYTES;
    cpu.tr_arbytes = TR_ARBYTES;
    cpu
}

/// The PVH domain configuration for a boot-blob domain (memory in KiB, paging pool in KiB, 0 = default).
pub fn config_from_boot<'a>(
    d: &'a firmware_config::blob::BootDomain,
    ramdisk: Option<&'a [u8]>,
    backend: DomId,
) -> PvhDomainConfig<'a> {
    PvhDomainConfig {
        name: d.name.as_str(),
        vcpus: d.vcpus,
        memory_bytes: d.memory_kib.saturating_mul(1024),
        cmdline: d.cmdline.as_str(),
        ramdisk,
        backend,
        paging_pool_bytes: (d.p2m_pool_kib != 0).then(|| d.p2m_pool_kib.saturating_mul(1024)),
        xenstore: false,
        handle: [0; 16],
    }
}
