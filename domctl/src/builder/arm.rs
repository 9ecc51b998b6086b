//! The arm64 domain builder: one guest from an `Image` kernel, a ramdisk, a command line and a generated
//! device tree, through domctls — what `xl create` does for an ARM guest, without a device model (and
//! with a xenstore ring only when one serves it).
//!
//! The sequence is libxl's (`tools/libs/light/libxl_create.c`, `libxl_dom.c`, `libxl_arm.c`) and
//! libxenguest's (`tools/libs/guest/xg_dom_arm.c`, `xg_dom_armzimageloader.c`):
//!
//! | step ([`BuildStep`]) | hypercall | why |
//! |---|---|---|
//! | `Plan` | — | check the request; place kernel, ramdisk and DTB; generate a trial DT (nothing created yet) |
//! | `CreateDomain` | `XEN_DOMCTL_createdomain` | `CDF_hvm \| CDF_hap` (`arch_sanitise_domain_config()` requires both on ARM), `CDF_iommu` only with `dt_devices`; `arch.gic_version`, `arch.nr_spis` ([`ArmDomainConfig::nr_spis`]) |
//! | `MaxVcpus` | `XEN_DOMCTL_max_vcpus` | allocates the vCPUs |
//! | `DomainInfo` | `XEN_DOMCTL_getdomaininfo` | the GIC Xen chose (`NATIVE` resolves to V2/V3), `gpaddr_bits` and the timer frequency, which the DT describes (`libxl__arch_domain_save_config()`, `finalize_hypervisor_node()`) |
//! | `MaxMem` | `XEN_DOMCTL_max_mem` | RAM + `LIBXL_MAXMEM_CONSTANT` (`libxl__arch_extra_memory()`; no ACPI) |
//! | `PagingPool` | `XEN_DOMCTL_set_paging_mempool_size` | the P2M pool; libxl's `shadow_memkb` default (`libxl_get_required_shadow_memory()`) |
//! | `AddressSize` | `XEN_DOMCTL_set_address_size` 64 | AArch64 execution state, before any page (`set_mode()` in `meminit()`) |
//! | `Populate` | `XENMEM_populate_physmap` | RAM in `GUEST_RAM0`, then `GUEST_RAM1` (2 MiB extents where aligned), and the 4 magic pages at `GUEST_MAGIC_BASE` (`alloc_magic_pages()`) |
//! | `DeviceTree` | — | the final guest DT with what Xen reported ([`device_tree::guest::guest_dt`]) |
//! | `LoadKernel`, `LoadRamdisk`, `LoadDeviceTree` | `IOCTL_PRIVCMD_MMAPBATCH_V2` + writes | the `Image` at RAM0 + `text_offset`; ramdisk, then DTB at RAM0 + 128 MiB, or as high as fits in bank 0, or below the kernel (`meminit()`) |
//! | `ClearMagicPages` | writes | console, xenstore, memaccess and vuart pages zeroed (`alloc_magic_pages()`) |
//! | `Vuart` | `XEN_DOMCTL_vuart_op` | with [`ArmConsole::Vpl011`]: the vPL011 ring on magic page 3, its event channel (`libxl__arch_build_dom_finish()`) |
//! | `ConsoleEvtchn` | `EVTCHNOP_alloc_unbound` | with [`ArmConsole::Pv`]: the PV console's channel, `remote_dom` = backend |
//! | `StoreEvtchn` | `EVTCHNOP_alloc_unbound` | only with [`ArmDomainConfig::xenstore`] |
//! | `SeedGrants` | `XENMEM_add_to_physmap` + map + `XENMEM_remove_from_physmap` | only with xenstore: grant refs 0/1 for the console and store pages (`xc_dom_gnttab_hvm_seed`, see [`super::grants`]) |
//! | `HvmParams` | `HVMOP_set_param` | `CALLBACK_IRQ` = PPI 31 ([`CALLBACK_IRQ_PPI_31`]), `MONITOR_RING_PFN`, and `CONSOLE_*` / `STORE_*` as chosen |
//! | `BindIrq` | `XEN_DOMCTL_bind_pt_irq` | per SPI, routed 1:1 (libxl's `irqs[]` loop in `domcreate_launch_dm()`; no `irq_permission` on ARM, see the code) |
//! | `IomemPermission`, `MemoryMapping` | `XEN_DOMCTL_iomem_permission`, `XEN_DOMCTL_memory_mapping` | per MMIO range (libxl's `iomem[]` loop) |
//! | `AssignDevice` | `XEN_DOMCTL_assign_device` (`XEN_DOMCTL_DEV_DT`) | per host DT path (libxl's `dtdev[]`) |
//! | `SetVcpuContext` | `XEN_DOMCTL_setvcpucontext` | vCPU 0: `pc` = Image load address, `x0` = DTB, `PSR_GUEST64_INIT`, `SCTLR_GUEST_INIT`, `VGCF_online` (`vcpu_arm64()`); the others start through PSCI `CPU_ON` |
//! | `Unpause` | `XEN_DOMCTL_unpausedomain` | runs it (not with [`ArmBuilder::build_paused`]) |
//!
//! Any failure after `CreateDomain` destroys the half-built domain before the error is returned; the
//! [`BuildError`] names the domain, the step and the cause, and says whether the clean-up worked.
//!
//! ## Consoles
//! With [`ArmConsole::Vpl011`] the guest's console is the emulated SBSA UART (`ttyAMA0`) and the PV
//! console parameters stay 0, so Linux's `hvc_xen` finds no console (`xen_hvm_console_init()` gives up
//! on a zero `HVM_PARAM_CONSOLE_EVTCHN`) and there is one console, not two half-served ones. With
//! [`ArmConsole::Pv`] it is `hvc0`. Either way [`BuiltDomain::console`] is a `xencons_interface` ring
//! plus an unbound event channel whose remote end is the backend, so the backend serves both alike.
//!
//! ## xenstore only when served
//! As for PVH (see [`super::pvh`]), `HVM_PARAM_STORE_PFN` stays 0 and the grant table unseeded unless
//! a xenstore will serve the guest ([`ArmDomainConfig::xenstore`]).
//!
//! ## Passthrough without an IOMMU
//! `XEN_DOMCTL_CDF_iommu` is only requested when [`ArmDomainConfig::dt_devices`] is non-empty: Xen
//! refuses createdomain with it on a host without an IOMMU (`sanitise_domain_config()`: "IOMMU requested
//! but not available", `-EINVAL`). A device that does no DMA (a GPIO or RTC block) is passed by its MMIO
//! ranges and SPIs alone, which needs no IOMMU.

use super::kernel_file::{self, OpenError};
use super::{
    BootDetails, BuildError, BuildStep, BuiltDomain, ConsoleKind, Failed, GuestKind,
    MAXMEM_SLACK_KIB, RingChannel, at, failed_early, finish_or_destroy,
};
use crate::abi::{arm as arm_abi, cdf, hvm_param};
use crate::builder::memory::WindowedGuestMemory;
use crate::transport::Hypercalls;
use crate::xen::{ArchConfig, CreateDomain, DomId, Xen};
use core::fmt;
use device_tree::guest::{GicVersion, GuestDtSpec, guest_dt, layout};
use firmware_config::blob::{BootBuilder, BootConfig, BootConsole, BootDomain, BootGic, BootKind};
use firmware_config::board::Region;
use pvh_boot::decompress;
use pvh_boot::kernel::{Arch, Arm64Image, Compression, ImageError, KernelImage};
use pvh_boot::memory::{GuestMemoryWriter, PAGE_SIZE, PfnRange};

const MIB: u64 = 1 << 20;

/// Boot modules go 128 MiB into bank 0 when they fit and the kernel ends below (`meminit()` in
/// `xg_dom_arm.c`: `ram128mb = bankbase[0] + (128<<20)`), leaving the kernel room to relocate itself
/// and stay clear of the initrd.
pub const MODULES_OFFSET: u64 = 128 * MIB;
/// The `Image` goes `text_offset` bytes above a 2 MiB-aligned base (`Documentation/arch/arm64/booting.rst`,
/// "Call the kernel image"); the kernel's end is rounded up to this for placing modules
/// (`kernend = ROUNDUP(dom->kernel_seg.vend, MB(2))`).
pub const KERNEL_ALIGN: u64 = 2 * MIB;
/// booting.rst: "The device tree blob (dtb) must be placed on an 8-byte boundary and must not exceed
/// 2 megabytes in size." Modules are page-aligned, which is 8-byte aligned.
pub const MAX_DTB_SIZE: u64 = 2 * MIB;

/// `NR_MAGIC_PAGES` and the page offsets inside `GUEST_MAGIC_BASE` (`xg_dom_arm.c`).
pub const NR_MAGIC_PAGES: u64 = 4;
pub const CONSOLE_PFN_OFFSET: u64 = 0;
pub const XENSTORE_PFN_OFFSET: u64 = 1;
pub const MEMACCESS_PFN_OFFSET: u64 = 2;
pub const VUART_PFN_OFFSET: u64 = 3;

/// `HVM_PARAM_CALLBACK_TYPE_PPI 2` in `val[63:56]` (`HVM_PARAM_CALLBACK_IRQ_TYPE_MASK`), `xen/include/
/// public/hvm/params.h`.
pub const CALLBACK_TYPE_PPI: u64 = 2;
/// `HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL 2` in `val[15:8]` (`..._FLAG_MASK 0xFF00`): bit 9, active
/// low; bit 8 clear, level triggered.
pub const CALLBACK_PPI_FLAG_LOW_LEVEL: u64 = 2;
/// `HVM_PARAM_CALLBACK_IRQ` as `libxl__arch_domain_init_hw_description()` sets it: type PPI, active-low
/// level, `GUEST_EVTCHN_PPI` 31 in `val[7:0]` — the event-channel upcall the DT's `/hypervisor`
/// `interrupts` names.
pub const CALLBACK_IRQ_PPI_31: u64 = (CALLBACK_TYPE_PPI << 56)
    | (CALLBACK_PPI_FLAG_LOW_LEVEL << 8)
    | layout::GUEST_EVTCHN_PPI as u64;

/// Highest SPI a GIC has (INTIDs 1020–1023 are special), as the typed API's `bind_pt_spi` checks.
const MAX_SPI: u32 = 1019;

// ------------------------------------------------------------------------------------------------
// the kernel
// ------------------------------------------------------------------------------------------------

/// An arm64 `Image`, decompressed and checked once, reusable for many builds (restarts).
///
/// Accepts a raw `Image` or a whole-file compressed one (Debian's arm64 `vmlinuz` is a gzip of the
/// `Image`); refuses anything else with the reason: an ELF `vmlinux` or x86 kernel, a payload that is not
/// an `Image`, a big-endian kernel.
///
/// [`ArmKernel::open`] streams instead when it can: an LZ4 legacy file of an `Image` that states
/// its `image_size` (what domforge prepares on the host) is decoded block by block into guest
/// memory at every build, and only its header is kept.
pub struct ArmKernel {
    image: ArmImage,
    header: Arm64Image,
}

enum ArmImage {
    Bytes(Vec<u8>),
    Streamed(std::path::PathBuf),
}

impl ArmKernel {
    /// See the type docs; decompressed images are limited to [`decompress::DEFAULT_LIMIT`].
    pub fn from_image(data: &[u8]) -> Result<Self, ImageError> {
        Self::from_image_with_limit(data, decompress::DEFAULT_LIMIT)
    }

    /// [`ArmKernel::from_image`] with an explicit ceiling on the decompressed size.
    pub fn from_image_with_limit(data: &[u8], limit: usize) -> Result<Self, ImageError> {
        let (image, compression): (Vec<u8>, Option<Compression>) = match KernelImage::parse(data)? {
            KernelImage::Arm64(_) => (data.to_vec(), None),
            KernelImage::Compressed { compression, data } => {
                let inner = decompress::decompress(data, compression, limit)?;
                if inner.get(56..60) != Some(b"ARMd".as_slice()) {
                    return Err(not_an_image(&inner, Some(compression)));
                }
                (inner, Some(compression))
            }
            KernelImage::Elf(_) | KernelImage::BzImage(_) => return Err(not_an_image(data, None)),
        };
        let header = Arm64Image::parse(&image, compression)?;
        check_endianness(&header)?;
        Ok(Self {
            image: ArmImage::Bytes(image),
            header,
        })
    }

    /// The kernel at `path`, streamed if it can be (see the type's docs), else read and
    /// decompressed once ([`Self::from_image`]).
    pub fn open(path: &std::path::Path) -> Result<Self, OpenError> {
        let streamed = kernel_file::with_first_block(path, |first| {
            Arm64Image::parse(first, Some(Compression::Lz4)).ok()
        })?;
        // Without `image_size` (kernels before 3.17) the footprint is the file's length, known
        // only after decoding all of it: such a kernel is loaded in memory.
        if let Some(header) = streamed.flatten().filter(|h| h.image_size != 0) {
            check_endianness(&header)?;
            return Ok(Self {
                image: ArmImage::Streamed(path.to_path_buf()),
                header,
            });
        }
        let bytes = std::fs::read(path).map_err(OpenError::Read)?;
        Ok(Self::from_image(&bytes)?)
    }

    /// Whether builds stream the kernel from its file.
    pub fn is_streamed(&self) -> bool {
        matches!(self.image, ArmImage::Streamed(_))
    }

    /// Decoded bytes held in memory (none for a streamed kernel but its header).
    pub fn held_bytes(&self) -> usize {
        match &self.image {
            ArmImage::Bytes(b) => b.len(),
            ArmImage::Streamed(_) => 64,
        }
    }

    /// Writes the `Image` at `base`.
    fn load<W: GuestMemoryWriter<Error = super::GuestWriteError>>(
        &self,
        base: u64,
        mem: &mut W,
    ) -> Result<(), super::BuildFailure> {
        match &self.image {
            ArmImage::Bytes(b) => Ok(mem.write(base, b)?),
            ArmImage::Streamed(path) => {
                let mut blocks = kernel_file::blocks(path)?;
                let mut at = 0u64;
                while let Some(block) = blocks.next_block()? {
                    let end = at + block.len() as u64;
                    // The layout reserved `image_size` from `base`; a longer file is not this Image.
                    if end > self.footprint() {
                        return Err(ImageError::BadArm64Image(
                            "the decoded Image is longer than its header's image_size",
                        )
                        .into());
                    }
                    mem.write(base + at, block)?;
                    at = end;
                }
                Ok(())
            }
        }
    }

    /// The parsed `Image` header.
    pub fn header(&self) -> &Arm64Image {
        &self.header
    }

    /// The (decompressed) `Image` bytes; empty for a streamed kernel.
    pub fn image_bytes(&self) -> &[u8] {
        match &self.image {
            ArmImage::Bytes(b) => b,
            ArmImage::Streamed(_) => &[],
        }
    }

    /// Bytes the kernel occupies from its load address: `image_size` (which includes BSS) or, for
    /// kernels older than 3.17 that leave it 0, the file (booting.rst).
    pub fn footprint(&self) -> u64 {
        self.header
            .effective_size()
            .max(self.image_bytes().len() as u64)
    }
}

/// Refuses a big-endian kernel.
fn check_endianness(header: &Arm64Image) -> Result<(), ImageError> {
    if header.big_endian() {
        return Err(ImageError::BadArm64Image(
            "big-endian kernel (flags bit 0 set): Xen starts arm64 guests little-endian \
             (SCTLR_GUEST_INIT leaves SCTLR_EL1.EE clear); build it with CONFIG_CPU_LITTLE_ENDIAN",
        ));
    }
    Ok(())
}

/// Why bytes that decoded as some kernel are not an arm64 `Image`.
fn not_an_image(bytes: &[u8], container: Option<Compression>) -> ImageError {
    if bytes.starts_with(b"\x7fELF") {
        let machine = bytes
            .get(18..20)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        return match Arch::from_e_machine(machine) {
            Arch::Aarch64 => ImageError::BadArm64Image(
                "this is an ELF vmlinux; boot the arm64 Image (arch/arm64/boot/Image) instead",
            ),
            found => ImageError::WrongArchitecture {
                found,
                expected: "arm64 Image",
            },
        };
    }
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return ImageError::WrongArchitecture {
            found: Arch::X86_64,
            expected: "arm64 Image",
        };
    }
    match container {
        Some(c) => ImageError::BadPayload {
            container: c.name(),
            expected: "an arm64 Image",
        },
        None => ImageError::UnknownFormat,
    }
}

impl fmt::Debug for ArmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmKernel")
            .field("held_bytes", &self.held_bytes())
            .field(
                "text_offset",
                &format_args!("{:#x}", self.header.text_offset),
            )
            .field("image_size", &format_args!("{:#x}", self.header.image_size))
            .field("compression", &self.header.compression)
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// configuration
// ------------------------------------------------------------------------------------------------

/// The guest's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArmConsole {
    /// Xen's emulated SBSA UART at `GUEST_PL011_BASE`, SPI 32 (`ttyAMA0`).
    Vpl011,
    /// The Xen PV console (`hvc0`).
    Pv,
}

/// An MMIO grant: `nr_pages` host frames from `first_mfn`, mapped at guest frame `gfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArmIomem {
    pub first_mfn: u64,
    pub nr_pages: u64,
    pub gfn: u64,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct ArmDomainConfig<'a> {
    /// For messages (and the console prefix of whoever relays it).
    pub name: &'a str,
    pub vcpus: u32,
    /// Guest RAM in bytes, a whole number of pages: RAM0 first, then RAM1.
    pub memory_bytes: u64,
    /// `/chosen/bootargs`.
    pub cmdline: &'a str,
    pub ramdisk: Option<&'a [u8]>,
    /// Xen release for the DT's `model`, `compatible` and `/hypervisor` (`xen,xen-<maj>.<min>`).
    pub xen_version: (u32, u32),
    /// `None`: `XEN_DOMCTL_CONFIG_GIC_NATIVE`, the host's (read back after createdomain).
    pub gic: Option<GicVersion>,
    pub console: ArmConsole,
    /// The domain that serves the console (and xenstore): the control domain, normally 0.
    pub backend: DomId,
    /// Host SPIs (INTIDs 32..=1019) routed 1:1.
    pub irqs: Vec<u32>,
    pub iomem: Vec<ArmIomem>,
    /// Host DT paths assigned through the IOMMU (`XEN_DOMCTL_assign_device`).
    pub dt_devices: Vec<&'a str>,
    /// The passthrough partial DTB (`/passthrough`, `/aliases`) merged into the guest DT.
    pub passthrough_dtb: Option<&'a [u8]>,
    /// P2M pool; `None` → libxl's default, see [`ArmDomainConfig::default_paging_pool_bytes`].
    pub paging_pool_bytes: Option<u64>,
    /// Give the guest a xenstore page and event channel (off unless a xenstore daemon serves it).
    pub xenstore: bool,
    /// `/chosen/rng-seed` (libxl writes 128 random bytes); `None` leaves it out.
    pub rng_seed: Option<&'a [u8]>,
    /// `xen_domain_handle_t` (a UUID).
    pub handle: [u8; 16],
}

impl<'a> ArmDomainConfig<'a> {
    /// A guest served by dom0 on a vPL011, the host's GIC, Xen 4.17 in the DT, no passthrough, no
    /// xenstore, default paging pool, zero handle.
    pub fn new(name: &'a str, vcpus: u32, memory_bytes: u64, cmdline: &'a str) -> Self {
        Self {
            name,
            vcpus,
            memory_bytes,
            cmdline,
            ramdisk: None,
            xen_version: (4, 17),
            gic: None,
            console: ArmConsole::Vpl011,
            backend: DomId::DOM0,
            irqs: Vec::new(),
            iomem: Vec::new(),
            dt_devices: Vec::new(),
            passthrough_dtb: None,
            paging_pool_bytes: None,
            xenstore: false,
            rng_seed: None,
            handle: [0; 16],
        }
    }

    /// libxl's default P2M pool (`shadow_memkb` = `libxl_get_required_shadow_memory(max_memkb, vcpus)`,
    /// `tools/libs/light/libxl_utils.c`): 4 KiB × (256 per vCPU + 2 per MiB of RAM), i.e. 1 MiB per vCPU
    /// plus 8 KiB per MiB — always whole pages.
    pub fn default_paging_pool_bytes(&self) -> u64 {
        firmware_config::pools::libxl_paging_pool(self.vcpus, self.memory_bytes)
    }

    /// `arch.nr_spis` as `libxl__arch_domain_prepare_config()` computes it: enough SPIs for the highest
    /// routed one (`spi = irq - 32; nr_spis = spi + 1`) and, with a vPL011, for `GUEST_VPL011_SPI`
    /// (`(GUEST_VPL011_SPI - 32) + 1`). Refuses what libxl refuses (an IRQ equal to the vPL011's SPI)
    /// and what Xen would (anything that is not an SPI, duplicates).
    pub fn nr_spis(&self) -> Result<u32, ArmLayoutError> {
        let vpl011 = self.console == ArmConsole::Vpl011;
        let mut nr = if vpl011 {
            layout::GUEST_VPL011_SPI - 32 + 1
        } else {
            0
        };
        let mut seen = std::collections::BTreeSet::new();
        for &irq in &self.irqs {
            if !(32..=MAX_SPI).contains(&irq) {
                return Err(ArmLayoutError::Irq {
                    irq,
                    reason: "only SPIs (32..=1019) can be routed to an ARM guest",
                });
            }
            if vpl011 && irq == layout::GUEST_VPL011_SPI {
                return Err(ArmLayoutError::Irq {
                    irq,
                    reason: "the vPL011 console uses SPI 32 (GUEST_VPL011_SPI); use the PV console \
                             or leave this interrupt to another domain",
                });
            }
            if !seen.insert(irq) {
                return Err(ArmLayoutError::Irq {
                    irq,
                    reason: "listed twice",
                });
            }
            nr = nr.max(irq - 32 + 1);
        }
        Ok(nr)
    }

    /// `XEN_DOMCTL_CDF_*` for createdomain: HVM + HAP always, IOMMU only when devices are assigned.
    pub fn create_flags(&self) -> u32 {
        let mut flags = cdf::HVM | cdf::HAP;
        if !self.dt_devices.is_empty() {
            flags |= cdf::IOMMU;
        }
        flags
    }

    fn checked(&self) -> Result<(), ArmLayoutError> {
        if self.vcpus == 0 || self.vcpus > layout::GUEST_MAX_VCPUS {
            return Err(ArmLayoutError::Vcpus(self.vcpus));
        }
        if self.memory_bytes == 0
            || !self.memory_bytes.is_multiple_of(PAGE_SIZE)
            || layout::ram_banks(self.memory_bytes).is_none()
        {
            return Err(ArmLayoutError::Memory(self.memory_bytes));
        }
        self.nr_spis()?;
        if let Some(p) = self.dt_devices.iter().find(|p| !p.starts_with('/')) {
            return Err(ArmLayoutError::DtPath((*p).to_string()));
        }
        self.check_iomem()
    }

    /// Each MMIO range must be non-empty and land in the guest's free address space: not on RAM, the
    /// magic, grant-table, GIC or other fixed regions of `arch-arm.h`, the vPL011, or another range.
    fn check_iomem(&self) -> Result<(), ArmLayoutError> {
        let mut taken = layout::reserved_regions();
        for bank in layout::ram_banks(self.memory_bytes).unwrap_or_default() {
            taken.push(("guest RAM".to_string(), bank));
        }
        if self.console == ArmConsole::Vpl011 {
            taken.push((
                "the vPL011 (GUEST_PL011_BASE)".to_string(),
                Region::new(layout::GUEST_PL011_BASE, layout::GUEST_PL011_SIZE),
            ));
        }
        for (index, m) in self.iomem.iter().enumerate() {
            let bad = |reason: String| ArmLayoutError::Iomem { index, reason };
            if m.nr_pages == 0 {
                return Err(bad("no pages".into()));
            }
            let size = m.nr_pages.checked_mul(PAGE_SIZE);
            let base = m.gfn.checked_mul(PAGE_SIZE);
            let (Some(size), Some(base)) = (size, base) else {
                return Err(bad("the range overflows the address space".into()));
            };
            let region = Region::new(base, size);
            if region.end().is_none() || m.first_mfn.checked_add(m.nr_pages).is_none() {
                return Err(bad("the range overflows the address space".into()));
            }
            if let Some((what, _)) = taken.iter().find(|(_, r)| r.overlaps(&region)) {
                return Err(bad(format!(
                    "guest range {base:#x}+{size:#x} overlaps {what}"
                )));
            }
            taken.push((format!("iomem[{index}]"), region));
        }
        Ok(())
    }
}

/// Why an ARM guest cannot be laid out or configured as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArmLayoutError {
    #[error("vCPU count {0} outside 1..={max} (GUEST_MAX_VCPUS)", max = layout::GUEST_MAX_VCPUS)]
    Vcpus(u32),
    #[error(
        "guest memory of {0:#x} bytes: must be a non-zero whole number of 4 KiB pages that fits \
         GUEST_RAM0 + GUEST_RAM1 (1019 GiB)"
    )]
    Memory(u64),
    #[error(
        "the kernel needs {needed:#x} bytes from {load:#x} (text_offset + image_size) but guest RAM \
         bank 0 ends at {bank0_end:#x}: give the guest more memory"
    )]
    KernelTooBig {
        load: u64,
        needed: u64,
        bank0_end: u64,
    },
    #[error(
        "no room for the boot modules (ramdisk + device tree, {modules:#x} bytes) in guest RAM bank 0 \
         (ends at {bank0_end:#x}) beside the kernel ({kernel_start:#x}..{kernel_end:#x}): give the \
         guest more memory or use a smaller ramdisk"
    )]
    NoRoomForModules {
        modules: u64,
        kernel_start: u64,
        kernel_end: u64,
        bank0_end: u64,
    },
    #[error("the device tree is {0} bytes; Linux accepts at most 2 MiB (booting.rst)")]
    DtbTooBig(u64),
    #[error("interrupt {irq}: {reason}")]
    Irq { irq: u32, reason: &'static str },
    #[error("iomem[{index}]: {reason}")]
    Iomem { index: usize, reason: String },
    #[error("{0:?} is not an absolute host device tree path")]
    DtPath(String),
    #[error("Xen reports GIC version {0} for the domain; only GICv2 (1) and GICv3 (2) are known")]
    Gic(u8),
    #[error("Xen reports {0} guest physical address bits; expected 32..=64")]
    AddressBits(u8),
    #[error(
        "the device tree grew from {planned} to {actual} bytes after placing the modules (a bug)"
    )]
    DtbGrew { planned: u64, actual: u64 },
}

// ------------------------------------------------------------------------------------------------
// layout
// ------------------------------------------------------------------------------------------------

/// Where everything goes in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmLayout {
    /// Populated RAM banks (`GUEST_RAM0`, then `GUEST_RAM1`).
    pub ram: Vec<Region>,
    /// The kernel: load address (RAM0 + `text_offset`) and footprint.
    pub kernel: Region,
    /// `pc` of vCPU 0: the `Image`'s first instruction is at its load address (booting.rst).
    pub entry: u64,
    /// The ramdisk, exact length (`linux,initrd-end` is exclusive).
    pub initrd: Option<Region>,
    /// The DTB, exact length; its address goes in `x0`.
    pub dtb: Region,
    /// First frame of the 4 magic pages (`GUEST_MAGIC_BASE >> 12`).
    pub magic_base_pfn: u64,
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

impl ArmLayout {
    /// Places the kernel and modules as `xg_dom_arm.c` `meminit()` does (see the module docs).
    pub fn plan(
        kernel: &ArmKernel,
        memory_bytes: u64,
        ramdisk_len: Option<u64>,
        dtb_len: u64,
    ) -> Result<Self, ArmLayoutError> {
        let too_big = ArmLayoutError::Memory(memory_bytes);
        if memory_bytes == 0 || !memory_bytes.is_multiple_of(PAGE_SIZE) {
            return Err(too_big);
        }
        let ram = layout::ram_banks(memory_bytes).ok_or(too_big.clone())?;
        let bank0 = *ram.first().ok_or(too_big.clone())?;
        let bank0_end = bank0.end().ok_or(too_big)?;
        if dtb_len > MAX_DTB_SIZE {
            return Err(ArmLayoutError::DtbTooBig(dtb_len));
        }

        // "The Image must be placed text_offset bytes from a 2MB aligned base address anywhere in
        // usable system memory" — the base is RAM0's (2 MiB aligned); xg_dom_armzimageloader.c uses
        // rambase + text_offset.
        let load = bank0.base.checked_add(kernel.header().text_offset);
        let needed = kernel.footprint();
        let kernel_end = load.and_then(|l| l.checked_add(needed));
        let (Some(load), Some(kernel_end)) = (load, kernel_end) else {
            return Err(ArmLayoutError::KernelTooBig {
                load: bank0.base,
                needed,
                bank0_end,
            });
        };
        if kernel_end > bank0_end {
            return Err(ArmLayoutError::KernelTooBig {
                load,
                needed,
                bank0_end,
            });
        }
        let kernend = round_up(kernel_end, KERNEL_ALIGN).unwrap_or(u64::MAX);

        let no_room = ArmLayoutError::NoRoomForModules {
            modules: dtb_len.saturating_add(ramdisk_len.unwrap_or(0)),
            kernel_start: load,
            kernel_end,
            bank0_end,
        };
        let dtb_slot = round_up(dtb_len, PAGE_SIZE).ok_or(no_room.clone())?;
        let ramdisk_slot = match ramdisk_len {
            Some(n) => round_up(n, PAGE_SIZE).ok_or(no_room.clone())?,
            None => 0,
        };
        let modsize = dtb_slot.checked_add(ramdisk_slot).ok_or(no_room.clone())?;
        let ram128mb = bank0.base + MODULES_OFFSET;
        let modbase = if ram128mb
            .checked_add(modsize)
            .is_some_and(|e| bank0_end >= e)
            && kernend < ram128mb
        {
            ram128mb
        } else if bank0_end.checked_sub(modsize).is_some_and(|b| b > kernend) {
            bank0_end - modsize
        } else if (load - bank0.base) > modsize {
            load - modsize
        } else {
            return Err(no_room);
        };
        // "Must map DTB *after* initrd" (meminit()).
        let initrd = ramdisk_len.map(|n| Region::new(modbase, n));
        let dtb = Region::new(modbase + ramdisk_slot, dtb_len);
        Ok(Self {
            ram,
            kernel: Region::new(load, needed),
            entry: load,
            initrd,
            dtb,
            magic_base_pfn: layout::GUEST_MAGIC_BASE / PAGE_SIZE,
        })
    }

    /// The frames to populate: every RAM bank and the magic pages.
    pub fn populate_ranges(&self) -> Vec<PfnRange> {
        let mut v: Vec<PfnRange> = self
            .ram
            .iter()
            .map(|r| PfnRange {
                start: r.base / PAGE_SIZE,
                count: r.size / PAGE_SIZE,
            })
            .collect();
        v.push(PfnRange {
            start: self.magic_base_pfn,
            count: NR_MAGIC_PAGES,
        });
        v
    }
}

/// The ARM-specific results of a build ([`BootDetails::Arm64`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmBoot {
    pub layout: ArmLayout,
    /// The GIC Xen gave the guest.
    pub gic: GicVersion,
    /// `arch.nr_spis` given to createdomain.
    pub nr_spis: u32,
    /// `XEN_DOMCTL_CDF_*` given to createdomain.
    pub create_flags: u32,
    /// Guest physical address bits Xen reported (bounds the DT's extended regions).
    pub gpaddr_bits: u8,
}

// ------------------------------------------------------------------------------------------------
// the builder
// ------------------------------------------------------------------------------------------------

/// Builds arm64 guests over a [`Xen`] handle.
pub struct ArmBuilder<'x, H: Hypercalls> {
    xen: &'x mut Xen<H>,
}

/// What the DT depends on that only Xen knows after createdomain.
#[derive(Clone, Copy)]
struct XenChoices {
    gic: GicVersion,
    gpaddr_bits: u8,
    timer_frequency: Option<u32>,
}

/// Lays out the guest and generates its DT: the modules' size depends on the DT, the DT's `/chosen`
/// on where the initrd went (but not its size: the initrd properties are fixed-width u64s).
fn layout_and_dt(
    kernel: &ArmKernel,
    cfg: &ArmDomainConfig<'_>,
    xen: XenChoices,
) -> Result<(ArmLayout, Vec<u8>), super::BuildFailure> {
    let ramdisk_len = cfg.ramdisk.map(|r| r.len() as u64);
    let spec = |initrd: Option<Region>| GuestDtSpec {
        xen_version: cfg.xen_version,
        vcpus: cfg.vcpus,
        memory_bytes: cfg.memory_bytes,
        gic: xen.gic,
        vpl011: cfg.console == ArmConsole::Vpl011,
        cmdline: (!cfg.cmdline.is_empty()).then(|| cfg.cmdline.to_string()),
        initrd,
        rng_seed: cfg.rng_seed.map(<[u8]>::to_vec),
        timer_frequency: xen.timer_frequency,
        gpaddr_bits: u32::from(xen.gpaddr_bits),
        passthrough: cfg.passthrough_dtb.map(<[u8]>::to_vec),
    };
    // Where the ramdisk goes with an empty DT decides whether it fits at all …
    let first = ArmLayout::plan(kernel, cfg.memory_bytes, ramdisk_len, 0)?;
    let trial = guest_dt(&spec(first.initrd))?;
    let planned = trial.len() as u64;
    // … then the real placement with the DT's size, and the DT that says so.
    let lay = ArmLayout::plan(kernel, cfg.memory_bytes, ramdisk_len, planned)?;
    let dtb = guest_dt(&spec(lay.initrd))?;
    let actual = dtb.len() as u64;
    if actual != planned {
        return Err(ArmLayoutError::DtbGrew { planned, actual }.into());
    }
    Ok((lay, dtb))
}

fn gic_from_xen(v: u8) -> Result<GicVersion, ArmLayoutError> {
    match v {
        arm_abi::GIC_V2 => Ok(GicVersion::V2),
        arm_abi::GIC_V3 => Ok(GicVersion::V3),
        other => Err(ArmLayoutError::Gic(other)),
    }
}

fn gic_to_xen(g: Option<GicVersion>) -> u8 {
    match g {
        None => arm_abi::GIC_NATIVE,
        Some(GicVersion::V2) => arm_abi::GIC_V2,
        Some(GicVersion::V3) => arm_abi::GIC_V3,
    }
}

impl<'x, H: Hypercalls> ArmBuilder<'x, H> {
    pub fn new(xen: &'x mut Xen<H>) -> Self {
        Self { xen }
    }

    /// Checks the request and lays the guest out without touching Xen (the trial DT assumes the GIC
    /// asked for, or GICv3 for "native", and 40 address bits).
    pub fn plan(kernel: &ArmKernel, cfg: &ArmDomainConfig<'_>) -> Result<ArmLayout, BuildError> {
        let early = |f: Failed| failed_early(GuestKind::Arm64, cfg.name, f);
        cfg.checked().map_err(|e| early(at(BuildStep::Plan)(e)))?;
        let trial = XenChoices {
            gic: cfg.gic.unwrap_or(GicVersion::V3),
            gpaddr_bits: 40,
            timer_frequency: None,
        };
        layout_and_dt(kernel, cfg, trial)
            .map(|(l, _)| l)
            .map_err(|e| {
                early(Failed {
                    step: BuildStep::Plan,
                    source: Box::new(e),
                })
            })
    }

    /// Builds the guest and unpauses it. On failure the half-built domain is destroyed.
    pub fn build(
        &mut self,
        kernel: &ArmKernel,
        cfg: &ArmDomainConfig<'_>,
    ) -> Result<BuiltDomain, BuildError> {
        self.build_inner(kernel, cfg, true)
    }

    /// Builds the guest and leaves it paused (for a caller that binds the console first, or starts
    /// several guests together). On failure the half-built domain is destroyed.
    pub fn build_paused(
        &mut self,
        kernel: &ArmKernel,
        cfg: &ArmDomainConfig<'_>,
    ) -> Result<BuiltDomain, BuildError> {
        self.build_inner(kernel, cfg, false)
    }

    fn build_inner(
        &mut self,
        kernel: &ArmKernel,
        cfg: &ArmDomainConfig<'_>,
        start: bool,
    ) -> Result<BuiltDomain, BuildError> {
        let early = |f: Failed| failed_early(GuestKind::Arm64, cfg.name, f);
        Self::plan(kernel, cfg)?;
        let nr_spis = cfg.nr_spis().map_err(|e| early(at(BuildStep::Plan)(e)))?;
        let create = CreateDomain {
            handle: cfg.handle,
            flags: cfg.create_flags(),
            ..CreateDomain::arm(cfg.vcpus, gic_to_xen(cfg.gic), nr_spis)
        };
        let (domid, resolved) = self
            .xen
            .create_domain_resolved(&create)
            .map_err(|e| early(at(BuildStep::CreateDomain)(e)))?;
        let result = self.construct(kernel, cfg, (&create, &resolved), nr_spis, domid, start);
        finish_or_destroy(self.xen, GuestKind::Arm64, cfg.name, domid, result)
    }

    fn construct(
        &mut self,
        kernel: &ArmKernel,
        cfg: &ArmDomainConfig<'_>,
        // What was asked of createdomain, and its arch config as Xen answered it.
        (create, resolved): (&CreateDomain, &ArchConfig),
        nr_spis: u32,
        domid: DomId,
        start: bool,
    ) -> Result<BuiltDomain, Failed> {
        use BuildStep as S;
        let xen = &mut *self.xen;
        xen.max_vcpus(domid, cfg.vcpus).map_err(at(S::MaxVcpus))?;

        // What Xen chose: the GIC (NATIVE resolved) and CNTFRQ if the platform's is unreliable come
        // back from createdomain (its arch config is IN/OUT); the IPA size from getdomaininfo, which
        // on ARM reports nothing else (`arch_get_domain_info()`, `xen/arch/arm/domctl.c`).
        let info = xen.getdomaininfo(domid).map_err(at(S::DomainInfo))?;
        let ArchConfig::Arm(arch) = *resolved else {
            return Err(Failed {
                step: S::DomainInfo,
                source: Box::new(super::BuildFailure::Config(
                    "Xen answered with an x86 domain configuration".into(),
                )),
            });
        };
        let gic = gic_from_xen(arch.gic_version).map_err(at(S::DomainInfo))?;
        if !(32..=64).contains(&info.gpaddr_bits) {
            return Err(at(S::DomainInfo)(ArmLayoutError::AddressBits(
                info.gpaddr_bits,
            )));
        }
        let choices = XenChoices {
            gic,
            gpaddr_bits: info.gpaddr_bits,
            timer_frequency: (arch.clock_frequency != 0).then_some(arch.clock_frequency),
        };

        let max_mem_kib = (cfg.memory_bytes / 1024)
            .checked_add(MAXMEM_SLACK_KIB)
            .ok_or_else(|| at(S::MaxMem)(ArmLayoutError::Memory(cfg.memory_bytes)))?;
        xen.set_max_mem(domid, max_mem_kib).map_err(at(S::MaxMem))?;

        let pool = cfg
            .paging_pool_bytes
            .unwrap_or_else(|| cfg.default_paging_pool_bytes());
        let pool = pool.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
        xen.set_paging_mempool_size(domid, pool)
            .map_err(at(S::PagingPool))?;

        // Before any page: switch_mode() answers -EBUSY once tot_pages != 0.
        xen.set_address_size(domid, 64)
            .map_err(at(S::AddressSize))?;

        let (lay, dtb) = layout_and_dt(kernel, cfg, choices).map_err(|e| Failed {
            step: S::DeviceTree,
            source: Box::new(e),
        })?;
        let ranges = lay.populate_ranges();
        super::populate(xen, domid, &ranges).map_err(at(S::Populate))?;
        let populated_pages: u64 = ranges.iter().map(|r| r.count).sum();

        let magic = lay.magic_base_pfn;
        let mut mem = WindowedGuestMemory::new(xen, domid, &ranges);
        kernel
            .load(lay.kernel.base, &mut mem)
            .map_err(at(S::LoadKernel))?;
        if let (Some(rd), Some(at_)) = (cfg.ramdisk, lay.initrd) {
            mem.write(at_.base, rd).map_err(at(S::LoadRamdisk))?;
        }
        mem.write(lay.dtb.base, &dtb)
            .map_err(at(S::LoadDeviceTree))?;
        let zeros = vec![0u8; (NR_MAGIC_PAGES * PAGE_SIZE) as usize];
        mem.write(magic * PAGE_SIZE, &zeros)
            .map_err(at(S::ClearMagicPages))?;
        let mappings = mem.mappings_made();
        drop(mem);

        let (console, console_kind) = match cfg.console {
            ArmConsole::Vpl011 => {
                let pfn = magic + VUART_PFN_OFFSET;
                let port = xen
                    .vuart_init(domid, pfn, cfg.backend)
                    .map_err(at(S::Vuart))?;
                (RingChannel { pfn, port }, ConsoleKind::Vpl011)
            }
            ArmConsole::Pv => {
                let port = xen
                    .evtchn_alloc_unbound(domid, cfg.backend)
                    .map_err(at(S::ConsoleEvtchn))?;
                (
                    RingChannel {
                        pfn: magic + CONSOLE_PFN_OFFSET,
                        port,
                    },
                    ConsoleKind::Pv,
                )
            }
        };
        let xenstore = if cfg.xenstore {
            let port = xen
                .evtchn_alloc_unbound(domid, cfg.backend)
                .map_err(at(S::StoreEvtchn))?;
            Some(RingChannel {
                pfn: magic + XENSTORE_PFN_OFFSET,
                port,
            })
        } else {
            None
        };

        let mut params = vec![
            (hvm_param::CALLBACK_IRQ, CALLBACK_IRQ_PPI_31),
            (hvm_param::MONITOR_RING_PFN, magic + MEMACCESS_PFN_OFFSET),
        ];
        if console_kind == ConsoleKind::Pv {
            params.push((hvm_param::CONSOLE_PFN, console.pfn));
            params.push((hvm_param::CONSOLE_EVTCHN, u64::from(console.port)));
        }
        if let Some(store) = xenstore {
            params.push((hvm_param::STORE_PFN, store.pfn));
            params.push((hvm_param::STORE_EVTCHN, u64::from(store.port)));
        }
        for (index, value) in params {
            xen.set_hvm_param(domid, index, value)
                .map_err(at(S::HvmParams))?;
        }
        // As for PVH: xenstored maps the store ring only by grant (`super::grants`). libxl seeds
        // every translated guest's entries the same way (`xc_dom_gnttab_init()` →
        // `xc_dom_gnttab_hvm_seed()`), with the PV console page as entry 0 even when the guest's
        // console is the vPL011 (`console_pfn` is the magic page either way, xg_dom_arm.c).
        if let Some(store) = xenstore {
            let rings = super::grants::SeedRings {
                backend: cfg.backend.get(),
                console_pfn: magic + CONSOLE_PFN_OFFSET,
                xenstore_pfn: store.pfn,
            };
            super::grants::seed(xen, domid, rings).map_err(at(S::SeedGrants))?;
        }

        // Passthrough in libxl's order: IRQs, MMIO, then IOMMU-protected devices. An SPI takes
        // one call on ARM: `XEN_DOMCTL_bind_pt_irq` itself checks that the caller may use the IRQ
        // (`irq_access_permitted(current->domain, irq)`, xen/arch/arm/domctl.c), as libxl relies on
        // (`libxl__arch_domain_map_irq()` is `xc_domain_bind_pt_spi_irq()` alone). A separate
        // `XEN_DOMCTL_irq_permission` would even fail from Xen 4.19 on: it exists only with
        // `CONFIG_HAS_PIRQ`, which is x86-only since commit 13a7b0f9f7 ("restrict concept of pIRQ
        // to x86"); seen on Debian's 4.20 as an error from that domctl.
        for &spi in &cfg.irqs {
            xen.bind_pt_spi(domid, spi).map_err(at(S::BindIrq))?;
        }
        for m in &cfg.iomem {
            xen.iomem_permission(domid, m.first_mfn, m.nr_pages, true)
                .map_err(at(S::IomemPermission))?;
            xen.memory_mapping(domid, m.gfn, m.first_mfn, m.nr_pages, true)
                .map_err(at(S::MemoryMapping))?;
        }
        for path in &cfg.dt_devices {
            xen.assign_dt_device(domid, path)
                .map_err(at(S::AssignDevice))?;
        }

        let ctx = arm_abi::VcpuGuestContext::arm64_linux_boot(lay.entry, lay.dtb.base);
        xen.set_vcpu_context_arm64(domid, 0, &ctx)
            .map_err(at(S::SetVcpuContext))?;

        if start {
            xen.unpause(domid).map_err(at(S::Unpause))?;
        }
        Ok(BuiltDomain {
            kind: GuestKind::Arm64,
            name: cfg.name.to_string(),
            domid,
            vcpus: cfg.vcpus,
            console,
            console_kind,
            xenstore,
            populated_pages,
            max_mem_kib,
            paging_pool_bytes: pool,
            mappings,
            boot: BootDetails::Arm64(ArmBoot {
                layout: lay,
                gic,
                nr_spis,
                create_flags: create.flags,
                gpaddr_bits: info.gpaddr_bits,
            }),
        })
    }
}

// ------------------------------------------------------------------------------------------------
// from the boot blob
// ------------------------------------------------------------------------------------------------

/// Why a boot-blob domain cannot become an [`ArmDomainConfig`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArmConfigError {
    #[error("domain '{0}' is not an ARM64 guest")]
    NotArm(String),
    #[error(
        "domain '{0}' is built by Xen at boot (dom0less), not by the control domain's toolstack"
    )]
    BuiltByXen(String),
    #[error("domain '{domain}' has a ramdisk ({path}) but none was passed to the builder")]
    RamdiskMissing { domain: String, path: String },
    #[error(
        "domain '{domain}' has a passthrough device tree ({path}) but none was passed to the builder"
    )]
    PassthroughDtbMissing { domain: String, path: String },
    #[error("domain '{domain}': memory of {kib} KiB overflows")]
    Memory { domain: String, kib: u64 },
}

/// The ARM domain configuration for a boot-blob domain; the caller reads the ramdisk and the
/// passthrough DTB (paths in `d`) and passes their bytes.
///
/// `console = "none"` still gets the PV console, as every libxl guest does (console 0 is always the PV
/// console): the guest writes to it only if its command line asks, and nothing is lost by having it.
pub fn config_from_boot<'a>(
    config: &BootConfig,
    d: &'a BootDomain,
    ramdisk: Option<&'a [u8]>,
    passthrough_dtb: Option<&'a [u8]>,
    console_backend: DomId,
) -> Result<ArmDomainConfig<'a>, ArmConfigError> {
    let name = d.name.as_str();
    if d.kind != BootKind::Arm64 {
        return Err(ArmConfigError::NotArm(name.to_string()));
    }
    if d.builder == BootBuilder::Xen {
        return Err(ArmConfigError::BuiltByXen(name.to_string()));
    }
    if let (Some(path), None) = (&d.ramdisk, ramdisk) {
        return Err(ArmConfigError::RamdiskMissing {
            domain: name.to_string(),
            path: path.to_string(),
        });
    }
    if let (Some(path), None) = (&d.passthrough_dtb, passthrough_dtb) {
        return Err(ArmConfigError::PassthroughDtbMissing {
            domain: name.to_string(),
            path: path.to_string(),
        });
    }
    let memory_bytes = d
        .memory_kib
        .checked_mul(1024)
        .ok_or_else(|| ArmConfigError::Memory {
            domain: name.to_string(),
            kib: d.memory_kib,
        })?;
    Ok(ArmDomainConfig {
        name,
        vcpus: d.vcpus,
        memory_bytes,
        cmdline: d.cmdline.as_str(),
        ramdisk,
        xen_version: (u32::from(config.xen_major), u32::from(config.xen_minor)),
        gic: config.arm_gic.map(|g| match g {
            BootGic::V2 => GicVersion::V2,
            BootGic::V3 => GicVersion::V3,
        }),
        console: match d.console {
            BootConsole::Vpl011 => ArmConsole::Vpl011,
            BootConsole::Hvc | BootConsole::None => ArmConsole::Pv,
        },
        backend: console_backend,
        irqs: d.irqs.iter().copied().collect(),
        iomem: d
            .iomem
            .iter()
            .map(|m| ArmIomem {
                first_mfn: m.first_mfn,
                nr_pages: m.nr_pages,
                gfn: m.gfn,
            })
            .collect(),
        dt_devices: d.dt_devices.iter().map(|p| p.as_str()).collect(),
        passthrough_dtb,
        paging_pool_bytes: (d.p2m_pool_kib != 0).then(|| d.p2m_pool_kib.saturating_mul(1024)),
        xenstore: false,
        rng_seed: None,
        handle: [0; 16],
    })
}
