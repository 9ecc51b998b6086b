//! ARM (arm64) layouts: the ARM `struct xen_arch_domainconfig`, createdomain/getdomaininfo with it, and
//! the arm64 `struct vcpu_guest_context` used by `XEN_DOMCTL_setvcpucontext`.
//! Source: `xen/include/public/arch-arm.h` at RELEASE-4.17.0 … RELEASE-4.22.0.

use super::GetDomainInfoCommon;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_DOMCTL_CONFIG_GIC_NATIVE 0`, `_V2 1`, `_V3 2` (arch-arm.h).
pub const GIC_NATIVE: u8 = 0;
pub const GIC_V2: u8 = 1;
pub const GIC_V3: u8 = 2;
/// `XEN_DOMCTL_CONFIG_TEE_NONE 0`, `_OPTEE 1`, `_FFA 2` (FFA from 4.18).
pub const TEE_NONE: u16 = 0;
pub const TEE_OPTEE: u16 = 1;
pub const TEE_FFA: u16 = 2;
/// `XEN_DOMCTL_CONFIG_ARM_SCI_NONE 0`, `_SCMI_SMC 1` (4.21+).
pub const SCI_NONE: u8 = 0;
pub const SCI_SCMI_SMC: u8 = 1;
/// `XEN_DOMCTL_CONFIG_ARM_V8R_EL1_MSA_NONE 0`, `_PMSA 1`, `_VMSA 2` (4.22+).
pub const V8R_EL1_MSA_NONE: u8 = 0;
pub const V8R_EL1_MSA_PMSA: u8 = 1;
pub const V8R_EL1_MSA_VMSA: u8 = 2;

/// ARM `struct xen_arch_domainconfig`, in its 4.22 form:
/// ```text
/// uint8_t gic_version @0 (IN/OUT); uint8_t sve_vl @1 (4.18+; padding in 4.17); uint16_t tee_type @2;
/// uint32_t nr_spis @4; uint32_t clock_frequency @8; uint8_t arm_sci_type @12 (4.21+);
/// uint8_t v8r_el1_msa @13 (4.22+); uint16_t pad @14 (4.22+);
/// ```
/// = 16 bytes. In 4.17–4.20 the structure ends at 12 bytes; the fields after it then fall into the
/// rest of the 128-byte domctl union, which those releases ignore — so they must be zero there, which
/// [`crate::Xen`] enforces.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchDomainConfig {
    pub gic_version: u8,
    pub sve_vl: u8,
    pub tee_type: u16,
    pub nr_spis: u32,
    pub clock_frequency: u32,
    pub arm_sci_type: u8,
    pub v8r_el1_msa: u8,
    pub pad: u16,
}
const _: () = assert!(size_of::<ArchDomainConfig>() == 16);

super::createdomain_layouts! {
    /// `struct xen_domctl_createdomain` for 0x15/0x16, ARM: the common fields as in
    /// [`super::x86::CreateDomainV15`] (through `cpupool_id @52`), then `arch @56` (16) = 72 bytes.
    V15;
    /// `struct xen_domctl_createdomain` for 0x17/0x18, ARM: as [`super::x86::CreateDomainV17`] through
    /// `cpupool_id @56`, then `arch @60` (16) = 76 bytes.
    V17;
}
const _: () = assert!(size_of::<CreateDomainV15>() == 72);
const _: () = assert!(size_of::<CreateDomainV17>() == 76);
const _: () = assert!(core::mem::offset_of!(CreateDomainV15, arch) == 56);
const _: () = assert!(core::mem::offset_of!(CreateDomainV17, arch) == 60);

/// Where `arch` (the IN/OUT `struct xen_arch_domainconfig`) starts inside createdomain's payload for
/// interface `version`: after `cpupool_id`, which 0x17 moved by 4 bytes when it inserted `altp2m`
/// (`struct xen_domctl_createdomain`, `xen/include/public/domctl.h` at RELEASE-4.17.0 and
/// RELEASE-4.19.0). Taken from the `repr(C)` layouts, so it cannot drift from what is sent.
pub const fn createdomain_arch_offset(version: super::InterfaceVersion) -> usize {
    if version.createdomain_has_altp2m() {
        core::mem::offset_of!(CreateDomainV17, arch)
    } else {
        core::mem::offset_of!(CreateDomainV15, arch)
    }
}

/// ARM `struct xen_domctl_getdomaininfo`: [`GetDomainInfoCommon`] (104) + arch config @104 (16) = 120
/// (in 4.17–4.20 the arch config is 12 bytes and the struct 116, padded to 120 by its 8-alignment).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetDomainInfo {
    pub common: GetDomainInfoCommon,
    pub arch_config: ArchDomainConfig,
}
const _: () = assert!(size_of::<GetDomainInfo>() == 120);

/// `VGCF_online (1<<0)` (arch-arm.h `struct vcpu_guest_context`).
pub const VGCF_ONLINE: u32 = 1 << 0;
/// `PSR_GUEST64_INIT (PSR_ABT_MASK|PSR_FIQ_MASK|PSR_IRQ_MASK|PSR_MODE_EL1h)`
/// = (1<<8)|(1<<6)|(1<<7)|0x05 = 0x1c5: EL1h with asynchronous aborts, FIQ and IRQ masked.
pub const PSR_GUEST64_INIT: u64 = 0x1c5;
/// `SCTLR_GUEST_INIT xen_mk_ullong(0x00c50078)` (arch-arm.h).
pub const SCTLR_GUEST_INIT: u64 = 0x00c5_0078;

/// `struct vcpu_guest_core_regs` (arch-arm.h) on arm64. Each `__DECL_REG(n64, n32)` is
/// `union { uint64_t n64; uint32_t n32; }` (8 bytes):
/// ```text
/// x0..x30 @0..248 (31 x 8); pc64 @248; uint64_t cpsr @256; union { uint64_t spsr_el1; … } @264;
/// uint32_t spsr_fiq, spsr_irq, spsr_und, spsr_abt @272..288; uint64_t sp_el0 @288;
/// uint64_t sp_el1 @296, elr_el1 @304;
/// ```
/// = 312 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuGuestCoreRegs {
    pub x: [u64; 31],
    pub pc64: u64,
    pub cpsr: u64,
    pub spsr_el1: u64,
    pub spsr_fiq: u32,
    pub spsr_irq: u32,
    pub spsr_und: u32,
    pub spsr_abt: u32,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
}
const _: () = assert!(size_of::<VcpuGuestCoreRegs>() == 312);

/// arm64 `struct vcpu_guest_context { uint32_t flags @0; struct vcpu_guest_core_regs user_regs @8;
/// uint64_t sctlr @320; uint64_t ttbcr @328, ttbr0 @336, ttbr1 @344; }` = 352 bytes
/// (4 bytes of padding after `flags`, as `user_regs` is 8-aligned). Unchanged 4.17–4.22.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuGuestContext {
    pub flags: u32,
    pub _pad: u32,
    pub user_regs: VcpuGuestCoreRegs,
    pub sctlr: u64,
    pub ttbcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
}
const _: () = assert!(size_of::<VcpuGuestContext>() == 352);

impl VcpuGuestContext {
    /// The boot context of an arm64 Linux kernel (`Documentation/arch/arm64/booting.rst`: x0 = physical
    /// address of the DTB, x1–x3 = 0, MMU off, entered at EL1 with interrupts masked), as libxl sets it:
    /// `VGCF_online`, `PSR_GUEST64_INIT`, `SCTLR_GUEST_INIT`.
    pub fn arm64_linux_boot(entry: u64, dtb_addr: u64) -> Self {
        let mut regs = VcpuGuestCoreRegs {
            pc64: entry,
            cpsr: PSR_GUEST64_INIT,
            ..Default::default()
        };
        regs.x[0] = dtb_addr;
        Self {
            flags: VGCF_ONLINE,
            user_regs: regs,
            sctlr: SCTLR_GUEST_INIT,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn arm_layouts_match_arch_arm_h() {
        assert_eq!(offset_of!(ArchDomainConfig, sve_vl), 1);
        assert_eq!(offset_of!(ArchDomainConfig, tee_type), 2);
        assert_eq!(offset_of!(ArchDomainConfig, nr_spis), 4);
        assert_eq!(offset_of!(ArchDomainConfig, clock_frequency), 8);
        assert_eq!(offset_of!(ArchDomainConfig, arm_sci_type), 12);
        assert_eq!(offset_of!(ArchDomainConfig, v8r_el1_msa), 13);
        assert_eq!(offset_of!(CreateDomainV15, arch), 56);
        assert_eq!(offset_of!(CreateDomainV17, arch), 60);
        assert_eq!(offset_of!(GetDomainInfo, arch_config), 104);
        assert_eq!(offset_of!(VcpuGuestCoreRegs, pc64), 248);
        assert_eq!(offset_of!(VcpuGuestCoreRegs, cpsr), 256);
        assert_eq!(offset_of!(VcpuGuestCoreRegs, spsr_el1), 264);
        assert_eq!(offset_of!(VcpuGuestCoreRegs, sp_el0), 288);
        assert_eq!(offset_of!(VcpuGuestCoreRegs, elr_el1), 304);
        assert_eq!(offset_of!(VcpuGuestContext, user_regs), 8);
        assert_eq!(offset_of!(VcpuGuestContext, sctlr), 320);
        assert_eq!(offset_of!(VcpuGuestContext, ttbr1), 344);
    }

    /// The copy-back offsets `Xen::create_domain_resolved` and the fake used as literals before they
    /// came from the layouts: 56 (0x15/0x16) and 60 (0x17/0x18), counted from domctl.h.
    #[test]
    fn createdomain_arch_offset_is_the_counted_one_for_every_version() {
        use crate::abi::InterfaceVersion as V;
        for (v, counted) in [(V::V15, 56), (V::V16, 56), (V::V17, 60), (V::V18, 60)] {
            assert_eq!(createdomain_arch_offset(v), counted, "{v}");
        }
        assert_eq!(offset_of!(ArchDomainConfig, gic_version), 0);
    }

    #[test]
    fn psr_guest64_init_is_el1h_with_daif_but_debug_masked() {
        // PSR bits from arch-arm.h: ABT (1U<<8), FIQ (1U<<6), IRQ (1U<<7), EL1h 0x05.
        assert_eq!(PSR_GUEST64_INIT, (1 << 8) | (1 << 6) | (1 << 7) | 0x05);
        let c = VcpuGuestContext::arm64_linux_boot(0x4008_0000, 0x4400_0000);
        assert_eq!(c.user_regs.x[0], 0x4400_0000);
        assert_eq!(c.user_regs.pc64, 0x4008_0000);
        assert_eq!(c.flags, VGCF_ONLINE);
    }
}
