//! The Xen hypercall ABI a domain builder needs, as `repr(C)` types.
//!
//! Every type here mirrors a structure of Xen's public headers (`xen/include/public/…` in the Xen tree) as
//! the *toolstack* sees it (`__XEN_TOOLS__` defined) on a 64-bit host (x86_64 or aarch64, both LP64, same
//! natural alignment). Each type carries a size assert whose number was counted by hand from the header,
//! field by field; the comment next to it shows the count. Where padding exists in C it is an explicit
//! `_pad` field here, so that [`zerocopy::IntoBytes`] can turn the structure into bytes without `unsafe`
//! and so that padding is always sent as zero (Xen checks several `pad` fields for zero).
//!
//! Layouts that differ by architecture live in [`x86`] and [`arm`]; both modules compile on every host
//! so both are size-checked by this crate's tests on the x86_64 build machine.
//!
//! Layouts were read from the tags `RELEASE-4.17.0` … `RELEASE-4.22.0` of xen.git. The structures used
//! here are identical in all of them except where a type says otherwise (createdomain grew `altp2m` in
//! 4.19; the ARM arch config grew `sve_vl`, `arm_sci_type` and `v8r_el1_msa`).

pub mod arm;
pub mod version;
pub mod x86;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use version::InterfaceVersion;

/// Defines `CreateDomainV15` and `CreateDomainV17` (`struct xen_domctl_createdomain`,
/// `xen/include/public/domctl.h` at RELEASE-4.17.0 and RELEASE-4.19.0) in an architecture module
/// around its own `ArchDomainConfig`. The header declares one structure for every architecture:
/// only its last field, `struct xen_arch_domainconfig arch`, differs, so the common fields are
/// written here once. Each architecture module keeps its own size asserts and field-offset docs.
macro_rules! createdomain_layouts {
    // One version's layout: the common head, the fields `$($mid)*` that version inserts after
    // `grant_opts`, the common tail.
    (@layout $(#[$meta:meta])* $name:ident { $($mid:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
        )]
        #[repr(C)]
        pub struct $name {
            pub ssidref: u32,
            pub handle: [u8; 16],
            pub flags: u32,
            pub iommu_opts: u32,
            pub max_vcpus: u32,
            pub max_evtchn_port: u32,
            pub max_grant_frames: i32,
            pub max_maptrack_frames: i32,
            pub grant_opts: u32,
            $($mid)*
            pub vmtrace_size: u32,
            pub cpupool_id: u32,
            pub arch: ArchDomainConfig,
        }
    };
    ($(#[$v15:meta])* V15; $(#[$v17:meta])* V17;) => {
        $crate::abi::createdomain_layouts!(@layout $(#[$v15])* CreateDomainV15 {});
        // 0x17 inserts `struct { uint16_t opts; uint16_t nr; } altp2m` after `grant_opts`.
        $crate::abi::createdomain_layouts!(@layout $(#[$v17])* CreateDomainV17 {
            pub altp2m_opts: u16,
            pub altp2m_nr: u16,
        });
    };
}
pub(crate) use createdomain_layouts;

/// Size of a Xen page on both x86 and ARM guests built by this toolstack (4 KiB granule).
/// `xen/include/public/arch-arm.h`: "XEN_PAGE_SIZE 4096"; x86 `PAGE_SHIFT` 12.
pub const XEN_PAGE_SIZE: usize = 4096;
/// log2 of [`XEN_PAGE_SIZE`].
pub const XEN_PAGE_SHIFT: u32 = 12;

/// Hypercall numbers, `xen/include/public/xen.h` (`__HYPERVISOR_*`).
pub mod hypercall {
    /// `__HYPERVISOR_memory_op 12`
    pub const MEMORY_OP: u64 = 12;
    /// `__HYPERVISOR_xen_version 17`
    pub const XEN_VERSION: u64 = 17;
    /// `__HYPERVISOR_event_channel_op 32`
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `__HYPERVISOR_hvm_op 34`
    pub const HVM_OP: u64 = 34;
    /// `__HYPERVISOR_domctl 36`
    pub const DOMCTL: u64 = 36;
}

/// `xen/include/public/version.h`: `XENVER_version 0` — "arg == NULL; returns major:minor (16:16)".
pub const XENVER_VERSION: u64 = 0;

/// Domain id constants, `xen/include/public/xen.h`.
pub mod domid {
    /// `DOMID_FIRST_RESERVED 0x7FF0`: ids at or above this are not ordinary domains.
    pub const FIRST_RESERVED: u16 = 0x7FF0;
    /// `DOMID_SELF 0x7FF0`.
    pub const SELF: u16 = 0x7FF0;
    /// `DOMID_IO 0x7FF1`.
    pub const IO: u16 = 0x7FF1;
    /// `DOMID_INVALID 0x7FF4`.
    pub const INVALID: u16 = 0x7FF4;
    /// `DOMID_ANY 0x7FF5` — added in Xen 4.22 (domctl interface 0x18): "no specific domain ID requested".
    /// From 4.22 `domid_alloc()` treats 0 as an exact request for id 0, so auto-allocation needs this.
    pub const ANY: u16 = 0x7FF5;
}

/// Domctl command numbers, `xen/include/public/domctl.h` (`XEN_DOMCTL_*`). Identical in 4.17–4.22.
pub mod cmd {
    pub const CREATEDOMAIN: u32 = 1;
    pub const DESTROYDOMAIN: u32 = 2;
    pub const PAUSEDOMAIN: u32 = 3;
    pub const UNPAUSEDOMAIN: u32 = 4;
    pub const GETDOMAININFO: u32 = 5;
    pub const SETVCPUAFFINITY: u32 = 9;
    pub const MAX_MEM: u32 = 11;
    pub const SETVCPUCONTEXT: u32 = 12;
    pub const MAX_VCPUS: u32 = 15;
    pub const IRQ_PERMISSION: u32 = 19;
    pub const IOMEM_PERMISSION: u32 = 20;
    pub const GETHVMCONTEXT: u32 = 33;
    pub const SETHVMCONTEXT: u32 = 34;
    pub const SET_ADDRESS_SIZE: u32 = 35;
    pub const ASSIGN_DEVICE: u32 = 37;
    pub const BIND_PT_IRQ: u32 = 38;
    pub const MEMORY_MAPPING: u32 = 39;
    pub const VUART_OP: u32 = 81;
    pub const SET_PAGING_MEMPOOL_SIZE: u32 = 86;
}

/// `XEN_DOMCTL_CDF_*` createdomain flags, `xen/include/public/domctl.h`.
pub mod cdf {
    /// `XEN_DOMCTL_CDF_hvm (1U<<0)`: an HVM (or PVH) guest rather than PV.
    pub const HVM: u32 = 1 << 0;
    /// `XEN_DOMCTL_CDF_hap (1U<<1)`: hardware-assisted paging.
    pub const HAP: u32 = 1 << 1;
    /// `XEN_DOMCTL_CDF_s3_integrity (1U<<2)`.
    pub const S3_INTEGRITY: u32 = 1 << 2;
    /// `XEN_DOMCTL_CDF_oos_off (1U<<3)`.
    pub const OOS_OFF: u32 = 1 << 3;
    /// `XEN_DOMCTL_CDF_xs_domain (1U<<4)`.
    pub const XS_DOMAIN: u32 = 1 << 4;
    /// `XEN_DOMCTL_CDF_iommu (1U<<5)`: the domain may use the IOMMU (needed for passthrough).
    pub const IOMMU: u32 = 1 << 5;
    /// `XEN_DOMCTL_CDF_nested_virt (1U<<6)`.
    pub const NESTED_VIRT: u32 = 1 << 6;
    /// `XEN_DOMCTL_CDF_vpmu (1U<<7)`.
    pub const VPMU: u32 = 1 << 7;
    /// `XEN_DOMCTL_CDF_trap_unmapped_accesses (1U<<8)` — new in Xen 4.21 (interface still 0x17).
    pub const TRAP_UNMAPPED_ACCESSES: u32 = 1 << 8;
    /// Every flag 4.17–4.20 knows (`XEN_DOMCTL_CDF_MAX` is `vpmu` there).
    pub const ALL_4_17: u32 = (VPMU << 1) - 1;
    /// Every flag 4.21–4.22 knows.
    pub const ALL_4_21: u32 = (TRAP_UNMAPPED_ACCESSES << 1) - 1;
}

/// `XEN_DOMINF_*` getdomaininfo flags, `xen/include/public/domctl.h`.
pub mod dominf {
    pub const DYING: u32 = 1 << 0;
    pub const HVM_GUEST: u32 = 1 << 1;
    pub const SHUTDOWN: u32 = 1 << 2;
    pub const PAUSED: u32 = 1 << 3;
    pub const BLOCKED: u32 = 1 << 4;
    pub const RUNNING: u32 = 1 << 5;
    pub const DEBUGGED: u32 = 1 << 6;
    pub const XS_DOMAIN: u32 = 1 << 7;
    pub const HAP: u32 = 1 << 8;
    /// `XEN_DOMINF_shutdownshift 16`, `XEN_DOMINF_shutdownmask 255`.
    pub const SHUTDOWN_SHIFT: u32 = 16;
    pub const SHUTDOWN_MASK: u32 = 255;
}

/// `struct xen_domctl` (`xen/include/public/domctl.h`): the envelope of every domctl.
///
/// ```text
/// uint32_t cmd;                 @0
/// uint32_t interface_version;   @4
/// domid_t  domain;              @8
/// uint16_t _pad[3];             @10
/// union { …; uint8_t pad[128]; } u;   @16  (8-aligned: members hold uint64_aligned_t)
/// ```
/// = 16 + 128 = 144 bytes. No member of the union is larger than 128 bytes for the commands used here
/// (largest: getdomaininfo with the ARM 4.21+ arch config, 120 bytes), so `u` is exactly `pad[128]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenDomctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub domain: u16,
    pub _pad: [u16; 3],
    pub u: DomctlPayload,
}
const _: () = assert!(size_of::<XenDomctl>() == 144);
const _: () = assert!(core::mem::offset_of!(XenDomctl, u) == 16);

/// The 128-byte, 8-aligned union `xen_domctl.u`, kept as bytes; the per-command structure is written
/// into its start and read back from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct DomctlPayload(pub [u8; 128]);
const _: () = assert!(size_of::<DomctlPayload>() == 128);

/// Error for a payload that does not fit `xen_domctl.u` (a programming error in this crate, reported
/// instead of panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("domctl payload of {0} bytes does not fit the 128-byte xen_domctl union")]
pub struct PayloadTooLarge(pub usize);

impl XenDomctl {
    /// A domctl envelope for `cmd` on `domain`, with `payload` written at the start of the union.
    pub fn new<T: IntoBytes + Immutable + ?Sized>(
        cmd: u32,
        interface_version: u32,
        domain: u16,
        payload: &T,
    ) -> Result<Self, PayloadTooLarge> {
        let mut u = DomctlPayload([0; 128]);
        let bytes = payload.as_bytes();
        u.0.get_mut(..bytes.len())
            .ok_or(PayloadTooLarge(bytes.len()))?
            .copy_from_slice(bytes);
        Ok(Self {
            cmd,
            interface_version,
            domain,
            _pad: [0; 3],
            u,
        })
    }

    /// Overwrites the start of the union with `payload` (what Xen does when it copies an IN/OUT
    /// structure back, `copyback` in `do_domctl()`, `xen/common/domctl.c`); the rest is kept.
    pub fn set_payload<T: IntoBytes + Immutable>(
        &mut self,
        payload: &T,
    ) -> Result<(), PayloadTooLarge> {
        let bytes = payload.as_bytes();
        self.u
            .0
            .get_mut(..bytes.len())
            .ok_or(PayloadTooLarge(bytes.len()))?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// Reads a `T` from the start of the union (what Xen copied back).
    pub fn payload<T: FromBytes>(&self) -> Result<T, PayloadTooLarge> {
        T::read_from_prefix(&self.u.0)
            .map(|(v, _)| v)
            .map_err(|_| PayloadTooLarge(size_of::<T>()))
    }
}

/// `struct xen_domctl_max_vcpus { uint32_t max; }` = 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlMaxVcpus {
    pub max: u32,
}
const _: () = assert!(size_of::<DomctlMaxVcpus>() == 4);

/// `struct xen_domctl_address_size { uint32_t size; }` = 4 bytes (`XEN_DOMCTL_set_address_size`, 35).
/// On arm64 `size` picks the guest's execution state: 64 = AArch64, 32 = AArch32
/// (`xen/arch/arm/arm64/domctl.c`, `switch_mode()`), refused with `-EBUSY` once the domain has pages.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlAddressSize {
    pub size: u32,
}
const _: () = assert!(size_of::<DomctlAddressSize>() == 4);

/// `struct xen_domctl_max_mem { uint64_aligned_t max_memkb; }` = 8 bytes. The limit is in KiB.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlMaxMem {
    pub max_memkb: u64,
}
const _: () = assert!(size_of::<DomctlMaxMem>() == 8);

/// `struct xen_domctl_paging_mempool { uint64_aligned_t size; }` = 8 bytes ("Size in bytes").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlPagingMempool {
    pub size: u64,
}
const _: () = assert!(size_of::<DomctlPagingMempool>() == 8);

/// `struct xenctl_bitmap` (`xen/include/public/xen.h`):
/// `XEN_GUEST_HANDLE_64(uint8) bitmap @0; uint32_t nr_bits @8;` + 4 tail padding = 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenctlBitmap {
    pub bitmap: u64,
    pub nr_bits: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<XenctlBitmap>() == 16);

/// `XEN_VCPUAFFINITY_HARD (1U<<0)`, `domctl.h`.
pub const VCPUAFFINITY_HARD: u32 = 1 << 0;
/// `XEN_VCPUAFFINITY_SOFT (1U<<1)`, `domctl.h`.
pub const VCPUAFFINITY_SOFT: u32 = 1 << 1;

/// `struct xen_domctl_vcpuaffinity`:
/// `uint32_t vcpu @0; uint32_t flags @4; struct xenctl_bitmap cpumap_hard @8; cpumap_soft @24;` = 40.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlVcpuAffinity {
    pub vcpu: u32,
    pub flags: u32,
    pub cpumap_hard: XenctlBitmap,
    pub cpumap_soft: XenctlBitmap,
}
const _: () = assert!(size_of::<DomctlVcpuAffinity>() == 40);

/// `struct xen_domctl_hvmcontext { uint32_t size @0; XEN_GUEST_HANDLE_64(uint8) buffer @8; }` = 16.
/// "IN/OUT: size of buffer / bytes filled"; a NULL buffer on gethvmcontext asks for the size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlHvmContext {
    pub size: u32,
    pub _pad: u32,
    pub buffer: u64,
}
const _: () = assert!(size_of::<DomctlHvmContext>() == 16);

/// `struct xen_domctl_vcpucontext { uint32_t vcpu @0; XEN_GUEST_HANDLE_64(vcpu_guest_context_t) ctxt @8; }`
/// = 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlVcpuContext {
    pub vcpu: u32,
    pub _pad: u32,
    pub ctxt: u64,
}
const _: () = assert!(size_of::<DomctlVcpuContext>() == 16);

/// `struct xen_domctl_irq_permission { uint32_t pirq @0; uint8_t allow_access @4; uint8_t pad[3]; }` = 8.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlIrqPermission {
    pub pirq: u32,
    pub allow_access: u8,
    pub pad: [u8; 3],
}
const _: () = assert!(size_of::<DomctlIrqPermission>() == 8);

/// `struct xen_domctl_iomem_permission`:
/// `uint64_aligned_t first_mfn @0; uint64_aligned_t nr_mfns @8; uint8_t allow_access @16;` + 7 tail = 24.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlIomemPermission {
    pub first_mfn: u64,
    pub nr_mfns: u64,
    pub allow_access: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<DomctlIomemPermission>() == 24);

/// `DPCI_ADD_MAPPING 1` / `DPCI_REMOVE_MAPPING 0`, `domctl.h`.
pub const DPCI_ADD_MAPPING: u32 = 1;
pub const DPCI_REMOVE_MAPPING: u32 = 0;
/// ARM (every non-x86 build) refuses more than 64 frames per `XEN_DOMCTL_memory_mapping` with `-E2BIG`
/// ("Must break hypercall up as this could take a while", `xen/common/domctl.c`); x86 instead returns a
/// positive partial count. Batches of this size work on both.
pub const MEMORY_MAPPING_BATCH: u64 = 64;

/// `struct xen_domctl_memory_mapping`:
/// `first_gfn @0; first_mfn @8; nr_mfns @16` (all `uint64_aligned_t`), `uint32_t add_mapping @24;
/// uint32_t padding @28;` = 32 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlMemoryMapping {
    pub first_gfn: u64,
    pub first_mfn: u64,
    pub nr_mfns: u64,
    pub add_mapping: u32,
    pub padding: u32,
}
const _: () = assert!(size_of::<DomctlMemoryMapping>() == 32);

/// `enum pt_irq_type` (`domctl.h`): PCI 0, ISA 1, MSI 2, MSI_TRANSLATE 3, **SPI 4** ("ARM: valid range
/// 32-1019").
pub const PT_IRQ_TYPE_SPI: u32 = 4;

/// `struct xen_domctl_bind_pt_irq`:
/// `uint32_t machine_irq @0; uint32_t irq_type @4; union u @8` where the largest member is
/// `msi { uint8_t gvec @0; uint32_t gflags @4; uint64_aligned_t gtable @8; }` (16 bytes, 8-aligned).
/// Total 8 + 16 = 24. Only the `spi { uint16_t spi; }` member (at `u` offset 0) is used here.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlBindPtIrqSpi {
    pub machine_irq: u32,
    pub irq_type: u32,
    pub spi: u16,
    pub _pad: [u8; 14],
}
const _: () = assert!(size_of::<DomctlBindPtIrqSpi>() == 24);

/// `XEN_DOMCTL_DEV_DT 1` (`XEN_DOMCTL_DEV_PCI 0`), `domctl.h`.
pub const XEN_DOMCTL_DEV_DT: u32 = 1;

/// `struct xen_domctl_assign_device` with the `dt` union member:
/// `uint32_t dev @0; uint32_t flags @4; union u @8 { pci { uint32_t machine_sbdf; }
/// dt { uint32_t size @0; XEN_GUEST_HANDLE_64(char) path @8; } }` = 8 + 16 = 24 bytes.
/// (4.22 adds a `struct dt_device_node *dev` under `#ifdef __XEN__` only: not part of the tools ABI.)
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlAssignDeviceDt {
    pub dev: u32,
    pub flags: u32,
    pub size: u32,
    pub _pad: u32,
    pub path: u64,
}
const _: () = assert!(size_of::<DomctlAssignDeviceDt>() == 24);

/// `XEN_DOMCTL_VUART_OP_INIT 0`, `XEN_DOMCTL_VUART_TYPE_VPL011 0`, `domctl.h`.
pub const VUART_OP_INIT: u32 = 0;
pub const VUART_TYPE_VPL011: u32 = 0;

/// `struct xen_domctl_vuart_op`:
/// `uint32_t cmd @0; uint32_t type @4; uint64_aligned_t gfn @8; domid_t console_domid @16;
/// uint8_t pad[2] @18; evtchn_port_t evtchn @20 (OUT);` = 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlVuartOp {
    pub cmd: u32,
    pub type_: u32,
    pub gfn: u64,
    pub console_domid: u16,
    pub pad: [u8; 2],
    pub evtchn: u32,
}
const _: () = assert!(size_of::<DomctlVuartOp>() == 24);

/// The arch-independent prefix of `struct xen_domctl_getdomaininfo` (everything before
/// `struct xen_arch_domainconfig arch_config`):
/// ```text
/// domid_t domain @0; uint16_t pad1 @2; uint32_t flags @4;
/// uint64_aligned_t tot_pages @8, max_pages @16, outstanding_pages @24, shr_pages @32,
///                  paged_pages @40, shared_info_frame @48, cpu_time @56;
/// uint32_t nr_online_vcpus @64; uint32_t max_vcpu_id @68; uint32_t ssidref @72;
/// xen_domain_handle_t handle @76 (uint8_t[16]); uint32_t cpupool @92;
/// uint8_t gpaddr_bits @96; uint8_t pad2[7] @97;
/// ```
/// = 104 bytes; `arch_config` follows at 104 (see [`x86::GetDomainInfo`], [`arm::GetDomainInfo`]).
/// Unchanged 4.17–4.22 (only the *semantics* changed in 0x16, see [`InterfaceVersion`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetDomainInfoCommon {
    pub domain: u16,
    pub pad1: u16,
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shr_pages: u64,
    pub paged_pages: u64,
    pub shared_info_frame: u64,
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    pub handle: [u8; 16],
    pub cpupool: u32,
    pub gpaddr_bits: u8,
    pub pad2: [u8; 7],
}
const _: () = assert!(size_of::<GetDomainInfoCommon>() == 104);

// ---------------------------------------------------------------------------------------------------
// memory_op (xen/include/public/memory.h). `xen_pfn_t` and `xen_ulong_t` are 64-bit on both x86_64
// (`unsigned long`) and ARM (`uint64_t`, arch-arm.h); `XEN_GUEST_HANDLE(x)` is 8 bytes, 8-aligned on both.
// ---------------------------------------------------------------------------------------------------

/// `XENMEM_*` sub-ops, `memory.h`.
pub mod xenmem {
    /// `XENMEM_populate_physmap 6`
    pub const POPULATE_PHYSMAP: u64 = 6;
    /// `XENMEM_add_to_physmap 7`
    pub const ADD_TO_PHYSMAP: u64 = 7;
    /// `XENMEM_set_memory_map 13` (x86 only: `xen/arch/x86/mm.c` `arch_memory_op`)
    pub const SET_MEMORY_MAP: u64 = 13;
    /// `XENMEM_maximum_gpfn 14`: the argument is a bare `domid_t`, the highest guest frame in use is
    /// the return value (`xen/common/memory.c`).
    pub const MAXIMUM_GPFN: u64 = 14;
    /// `XENMEM_remove_from_physmap 15` ([`super::RemoveFromPhysmap`]).
    pub const REMOVE_FROM_PHYSMAP: u64 = 15;
}

/// `XENMAPSPACE_*`, `memory.h` `enum phys_map_space` (values fixed by the header).
pub mod mapspace {
    pub const SHARED_INFO: u32 = 0;
    pub const GRANT_TABLE: u32 = 1;
    pub const GMFN: u32 = 2;
    pub const GMFN_RANGE: u32 = 3;
    pub const GMFN_FOREIGN: u32 = 4;
    pub const DEV_MMIO: u32 = 5;
}

/// `struct xen_memory_reservation`:
/// ```text
/// XEN_GUEST_HANDLE(xen_pfn_t) extent_start @0; xen_ulong_t nr_extents @8;
/// unsigned int extent_order @16; unsigned int mem_flags @20; domid_t domid @24;   + 6 tail
/// ```
/// = 32 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemoryReservation {
    pub extent_start: u64,
    pub nr_extents: u64,
    pub extent_order: u32,
    pub mem_flags: u32,
    pub domid: u16,
    pub _pad: [u16; 3],
}
const _: () = assert!(size_of::<MemoryReservation>() == 32);

/// `struct xen_add_to_physmap`:
/// `domid_t domid @0; uint16_t size @2; unsigned int space @4; xen_ulong_t idx @8; xen_pfn_t gpfn @16;`
/// = 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AddToPhysmap {
    pub domid: u16,
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}
const _: () = assert!(size_of::<AddToPhysmap>() == 24);

/// `struct xen_remove_from_physmap { domid_t domid @0; xen_pfn_t gpfn @8; }` = 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RemoveFromPhysmap {
    pub domid: u16,
    pub _pad: [u16; 3],
    pub gpfn: u64,
}
const _: () = assert!(size_of::<RemoveFromPhysmap>() == 16);
const _: () = assert!(core::mem::offset_of!(RemoveFromPhysmap, gpfn) == 8);

/// Version-1 grant entries (`xen/include/public/grant_table.h`).
pub mod grant {
    /// `GNTTAB_RESERVED_CONSOLE 0`: the entry through which the console backend maps the ring.
    pub const RESERVED_CONSOLE: usize = 0;
    /// `GNTTAB_RESERVED_XENSTORE 1`: the entry through which xenstored maps the store ring.
    pub const RESERVED_XENSTORE: usize = 1;
    /// `GTF_permit_access 1`: `domid` may map `frame`.
    pub const GTF_PERMIT_ACCESS: u16 = 1;
}

/// `struct grant_entry_v1 { uint16_t flags @0; domid_t domid @2; uint32_t frame @4; }` = 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: u16,
    pub frame: u32,
}
const _: () = assert!(size_of::<GrantEntryV1>() == 8);
const _: () = assert!(core::mem::offset_of!(GrantEntryV1, frame) == 4);

/// `struct xen_foreign_memory_map { domid_t domid @0; struct xen_memory_map map @8; }` where
/// `struct xen_memory_map { unsigned int nr_entries @0; XEN_GUEST_HANDLE(void) buffer @8; }` (16 bytes,
/// 8-aligned). Total 24 bytes. The buffer holds packed `e820entry`s ([`x86::E820Entry`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ForeignMemoryMap {
    pub domid: u16,
    pub _pad0: [u16; 3],
    pub nr_entries: u32,
    pub _pad1: u32,
    pub buffer: u64,
}
const _: () = assert!(size_of::<ForeignMemoryMap>() == 24);
/// Xen refuses more entries: `if ( fmap.map.nr_entries > E820MAX ) return -EINVAL;` with
/// `E820MAX 1024` (`xen/arch/x86/include/asm/e820.h`).
pub const E820MAX: usize = 1024;

// ---------------------------------------------------------------------------------------------------
// hvm_op (xen/include/public/hvm/hvm_op.h, hvm/params.h)
// ---------------------------------------------------------------------------------------------------

/// `HVMOP_set_param 0`, `HVMOP_get_param 1`, `hvm_op.h`.
pub const HVMOP_SET_PARAM: u64 = 0;
pub const HVMOP_GET_PARAM: u64 = 1;

/// `struct xen_hvm_param { domid_t domid @0; uint16_t pad @2; uint32_t index @4; uint64_t value @8; }` = 16.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmParam {
    pub domid: u16,
    pub pad: u16,
    pub index: u32,
    pub value: u64,
}
const _: () = assert!(size_of::<HvmParam>() == 16);

/// `HVM_PARAM_*` indices used by a PV-console/xenstore-capable builder, `hvm/params.h`.
pub mod hvm_param {
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const PAE_ENABLED: u32 = 4;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
    pub const PAGING_RING_PFN: u32 = 27;
    pub const MONITOR_RING_PFN: u32 = 28;
    pub const SHARING_RING_PFN: u32 = 29;
    pub const IOREQ_SERVER_PFN: u32 = 32;
    pub const NR_IOREQ_SERVER_PAGES: u32 = 33;
    /// `HVM_NR_PARAMS 39`: indices at or above are rejected with `-EINVAL`.
    pub const NR_PARAMS: u32 = 39;
}

// ---------------------------------------------------------------------------------------------------
// event_channel_op (xen/include/public/event_channel.h)
// ---------------------------------------------------------------------------------------------------

/// `EVTCHNOP_alloc_unbound 6`, `event_channel.h`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;

/// `struct evtchn_alloc_unbound { domid_t dom @0, remote_dom @2; evtchn_port_t port @4 (OUT); }` = 8
/// (`typedef uint32_t evtchn_port_t`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// Offsets counted from `xen/include/public/domctl.h` (see each type's doc comment).
    #[test]
    fn domctl_member_offsets_match_the_header() {
        assert_eq!(offset_of!(XenDomctl, interface_version), 4);
        assert_eq!(offset_of!(XenDomctl, domain), 8);
        assert_eq!(offset_of!(GetDomainInfoCommon, tot_pages), 8);
        assert_eq!(offset_of!(GetDomainInfoCommon, cpu_time), 56);
        assert_eq!(offset_of!(GetDomainInfoCommon, nr_online_vcpus), 64);
        assert_eq!(offset_of!(GetDomainInfoCommon, handle), 76);
        assert_eq!(offset_of!(GetDomainInfoCommon, cpupool), 92);
        assert_eq!(offset_of!(GetDomainInfoCommon, gpaddr_bits), 96);
        assert_eq!(offset_of!(DomctlVcpuAffinity, cpumap_hard), 8);
        assert_eq!(offset_of!(DomctlVcpuAffinity, cpumap_soft), 24);
        assert_eq!(offset_of!(DomctlHvmContext, buffer), 8);
        assert_eq!(offset_of!(DomctlVcpuContext, ctxt), 8);
        assert_eq!(offset_of!(DomctlIomemPermission, allow_access), 16);
        assert_eq!(offset_of!(DomctlMemoryMapping, add_mapping), 24);
        assert_eq!(offset_of!(DomctlBindPtIrqSpi, spi), 8);
        assert_eq!(offset_of!(DomctlAssignDeviceDt, size), 8);
        assert_eq!(offset_of!(DomctlAssignDeviceDt, path), 16);
        assert_eq!(offset_of!(DomctlVuartOp, gfn), 8);
        assert_eq!(offset_of!(DomctlVuartOp, console_domid), 16);
        assert_eq!(offset_of!(DomctlVuartOp, evtchn), 20);
    }

    /// Offsets counted from `memory.h`, `hvm_op.h`, `event_channel.h`.
    #[test]
    fn memory_hvm_evtchn_offsets_match_the_headers() {
        assert_eq!(offset_of!(MemoryReservation, nr_extents), 8);
        assert_eq!(offset_of!(MemoryReservation, extent_order), 16);
        assert_eq!(offset_of!(MemoryReservation, mem_flags), 20);
        assert_eq!(offset_of!(MemoryReservation, domid), 24);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(offset_of!(ForeignMemoryMap, nr_entries), 8);
        assert_eq!(offset_of!(ForeignMemoryMap, buffer), 16);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);
    }

    #[test]
    fn set_payload_overwrites_only_the_structure() {
        let mut d = XenDomctl::new(cmd::MAX_MEM, 0x15, 7, &[0xaau8; 128]).unwrap();
        d.set_payload(&DomctlMaxMem { max_memkb: 5 }).unwrap();
        assert_eq!(&d.u.0[..8], &5u64.to_le_bytes());
        assert!(d.u.0[8..].iter().all(|b| *b == 0xaa));
        assert_eq!(d.set_payload(&[0u8; 129]), Err(PayloadTooLarge(129)));
    }

    #[test]
    fn payload_round_trips_through_the_union_and_oversize_is_an_error() {
        let mm = DomctlMaxMem {
            max_memkb: 0x1234_5678,
        };
        let d = XenDomctl::new(cmd::MAX_MEM, 0x15, 7, &mm).unwrap();
        assert_eq!(&d.as_bytes()[16..24], &0x1234_5678u64.to_le_bytes());
        assert_eq!(d.payload::<DomctlMaxMem>().unwrap(), mm);
        let big = [0u8; 129];
        assert_eq!(
            XenDomctl::new(cmd::MAX_MEM, 0x15, 7, &big),
            Err(PayloadTooLarge(129))
        );
    }
}
