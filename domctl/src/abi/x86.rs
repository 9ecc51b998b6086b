//! x86_64 layouts: the x86 `struct xen_arch_domainconfig`, createdomain/getdomaininfo with it, the
//! packed e820 entry of `XENMEM_set_memory_map`, and the HVM save records a PVH builder sets.

use super::GetDomainInfoCommon;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_X86_EMU_*` emulation flags, `xen/include/public/arch-x86/xen.h`.
pub mod emu {
    pub const LAPIC: u32 = 1 << 0;
    pub const HPET: u32 = 1 << 1;
    pub const PM: u32 = 1 << 2;
    pub const RTC: u32 = 1 << 3;
    pub const IOAPIC: u32 = 1 << 4;
    pub const PIC: u32 = 1 << 5;
    pub const VGA: u32 = 1 << 6;
    pub const IOMMU: u32 = 1 << 7;
    pub const PIT: u32 = 1 << 8;
    pub const USE_PIRQ: u32 = 1 << 9;
    pub const VPCI: u32 = 1 << 10;
    /// A PVH guest emulates only the local APIC (what libxl's PVH type asks for).
    pub const PVH: u32 = LAPIC;
}

/// `XEN_X86_MSR_RELAXED (1u << 0)`, the only `misc_flags` bit (`XEN_X86_MISC_FLAGS_MAX`), arch-x86/xen.h.
pub const MISC_MSR_RELAXED: u32 = 1 << 0;

/// x86 `struct xen_arch_domainconfig { uint32_t emulation_flags @0; uint32_t misc_flags @4; }` = 8
/// bytes (`arch-x86/xen.h`, unchanged 4.17–4.22).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchDomainConfig {
    pub emulation_flags: u32,
    pub misc_flags: u32,
}
const _: () = assert!(size_of::<ArchDomainConfig>() == 8);

super::createdomain_layouts! {
    /// `struct xen_domctl_createdomain` for interface 0x15/0x16 (Xen 4.17, 4.18), x86:
    /// ```text
    /// uint32_t ssidref @0; xen_domain_handle_t handle @4 (uint8_t[16]); uint32_t flags @20;
    /// uint32_t iommu_opts @24; uint32_t max_vcpus @28; uint32_t max_evtchn_port @32;
    /// int32_t max_grant_frames @36; int32_t max_maptrack_frames @40; uint32_t grant_opts @44;
    /// uint32_t vmtrace_size @48; uint32_t cpupool_id @52; struct xen_arch_domainconfig arch @56 (8);
    /// ```
    /// = 64 bytes.
    V15;
    /// `struct xen_domctl_createdomain` for interface 0x17/0x18 (Xen 4.19–4.22), x86: as
    /// [`CreateDomainV15`] up to `grant_opts @44`, then
    /// `struct { uint16_t opts @48; uint16_t nr @50; } altp2m; uint32_t vmtrace_size @52;
    /// uint32_t cpupool_id @56; struct xen_arch_domainconfig arch @60 (8);` = 68 bytes.
    /// (4.19/4.20 spell `altp2m` as one `uint32_t altp2m_opts` at @48: the same bytes with `nr` = 0.)
    V17;
}
const _: () = assert!(size_of::<CreateDomainV15>() == 64);
const _: () = assert!(size_of::<CreateDomainV17>() == 68);
const _: () = assert!(core::mem::offset_of!(CreateDomainV15, arch) == 56);
const _: () = assert!(core::mem::offset_of!(CreateDomainV17, arch) == 60);

/// x86 `struct xen_domctl_getdomaininfo`: [`GetDomainInfoCommon`] (104) + x86 arch config @104 (8) = 112.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetDomainInfo {
    pub common: GetDomainInfoCommon,
    pub arch_config: ArchDomainConfig,
}
const _: () = assert!(size_of::<GetDomainInfo>() == 112);

/// e820 memory types (ACPI "Address Range Types"), the `type` of [`E820Entry`].
pub mod e820 {
    pub const RAM: u32 = 1;
    pub const RESERVED: u32 = 2;
    pub const ACPI: u32 = 3;
    pub const NVS: u32 = 4;
    pub const UNUSABLE: u32 = 5;
}

/// `struct e820entry { uint64_t addr; uint64_t size; uint32_t type; } __attribute__((packed))` = 20 bytes:
/// the element of the `XENMEM_set_memory_map` buffer (`tools/include/xenctrl.h`; Xen reads it as
/// `struct __packed e820entry`, `xen/arch/x86/include/asm/e820.h`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub type_: u32,
}
const _: () = assert!(size_of::<E820Entry>() == 20);

// ---------------------------------------------------------------------------------------------------
// HVM save records (xen/include/public/hvm/save.h, arch-x86/hvm/save.h). A PVH builder reads the whole
// context (for the HEADER record, which carries Xen-chosen CPUID data), then sets HEADER + CPU (+ MTRR)
// + END, as libxenguest's `vcpu_hvm()` does.
// ---------------------------------------------------------------------------------------------------

/// `HVM_SAVE_CODE(END)` = 0 (`DECLARE_HVM_SAVE_TYPE(END, 0, struct hvm_save_end)`, hvm/save.h).
pub const HVM_SAVE_CODE_END: u16 = 0;
/// `HVM_SAVE_CODE(HEADER)` = 1 (arch-x86/hvm/save.h).
pub const HVM_SAVE_CODE_HEADER: u16 = 1;
/// `HVM_SAVE_CODE(CPU)` = 2 (arch-x86/hvm/save.h).
pub const HVM_SAVE_CODE_CPU: u16 = 2;
/// `HVM_SAVE_CODE(MTRR)` = 14 (arch-x86/hvm/save.h).
pub const HVM_SAVE_CODE_MTRR: u16 = 14;
/// `HVM_FILE_MAGIC 0x54381286`.
pub const HVM_FILE_MAGIC: u32 = 0x5438_1286;

/// `struct hvm_save_descriptor { uint16_t typecode @0; uint16_t instance @2; uint32_t length @4; }` = 8.
/// `length` is "In bytes, *not* including this descriptor".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmSaveDescriptor {
    pub typecode: u16,
    pub instance: u16,
    pub length: u32,
}
const _: () = assert!(size_of::<HvmSaveDescriptor>() == 8);

/// `struct hvm_save_header { uint32_t magic @0; uint32_t version @4; uint64_t changeset @8;
/// uint32_t cpuid @16; uint32_t gtsc_khz @20; }` = 24.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmSaveHeader {
    pub magic: u32,
    pub version: u32,
    pub changeset: u64,
    pub cpuid: u32,
    pub gtsc_khz: u32,
}
const _: () = assert!(size_of::<HvmSaveHeader>() == 24);

/// `struct hvm_hw_cpu` (arch-x86/hvm/save.h), unchanged 4.17–4.22. Counted:
/// ```text
/// fpu_regs[512] @0; rax..r15 (16 x u64) @512; rip @640; rflags @648; cr0 cr2 cr3 cr4 @656..688;
/// dr0 dr1 dr2 dr3 dr6 dr7 @688..736; cs..ldtr _sel (8 x u32) @736; cs..gdtr _limit (10 x u32) @768;
/// cs..gdtr _base (10 x u64) @808; cs..ldtr _arbytes (8 x u32) @888; sysenter_cs/esp/eip @920..944;
/// shadow_gs @944; msr_flags msr_lstar msr_star msr_cstar msr_syscall_mask msr_efer msr_tsc_aux
/// @952..1008; tsc @1008; union { uint32_t pending_event; … } @1016; error_code @1020; flags @1024;
/// pad0 @1028;
/// ```
/// = 1032 bytes (`HVM_SAVE_LENGTH(CPU)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmHwCpu {
    pub fpu_regs: [u8; 512],
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub dr0: u64,
    pub dr1: u64,
    pub dr2: u64,
    pub dr3: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub cs_sel: u32,
    pub ds_sel: u32,
    pub es_sel: u32,
    pub fs_sel: u32,
    pub gs_sel: u32,
    pub ss_sel: u32,
    pub tr_sel: u32,
    pub ldtr_sel: u32,
    pub cs_limit: u32,
    pub ds_limit: u32,
    pub es_limit: u32,
    pub fs_limit: u32,
    pub gs_limit: u32,
    pub ss_limit: u32,
    pub tr_limit: u32,
    pub ldtr_limit: u32,
    pub idtr_limit: u32,
    pub gdtr_limit: u32,
    pub cs_base: u64,
    pub ds_base: u64,
    pub es_base: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ss_base: u64,
    pub tr_base: u64,
    pub ldtr_base: u64,
    pub idtr_base: u64,
    pub gdtr_base: u64,
    pub cs_arbytes: u32,
    pub ds_arbytes: u32,
    pub es_arbytes: u32,
    pub fs_arbytes: u32,
    pub gs_arbytes: u32,
    pub ss_arbytes: u32,
    pub tr_arbytes: u32,
    pub ldtr_arbytes: u32,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub shadow_gs: u64,
    pub msr_flags: u64,
    pub msr_lstar: u64,
    pub msr_star: u64,
    pub msr_cstar: u64,
    pub msr_syscall_mask: u64,
    pub msr_efer: u64,
    pub msr_tsc_aux: u64,
    pub tsc: u64,
    pub pending_event: u32,
    pub error_code: u32,
    pub flags: u32,
    pub pad0: u32,
}
const _: () = assert!(size_of::<HvmHwCpu>() == 1032);

/// `struct hvm_hw_mtrr { uint64_t msr_pat_cr @0; uint64_t msr_mtrr_var[MTRR_VCNT*2] @8 (MTRR_VCNT 8);
/// uint64_t msr_mtrr_fixed[NUM_FIXED_MSR] @136 (NUM_FIXED_MSR 11); uint64_t msr_mtrr_cap @224;
/// uint64_t msr_mtrr_def_type @232; }` = 240 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmHwMtrr {
    pub msr_pat_cr: u64,
    pub msr_mtrr_var: [u64; 16],
    pub msr_mtrr_fixed: [u64; 11],
    pub msr_mtrr_cap: u64,
    pub msr_mtrr_def_type: u64,
}
const _: () = assert!(size_of::<HvmHwMtrr>() == 240);

/// One record of an HVM context blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmRecord<'a> {
    pub typecode: u16,
    pub instance: u16,
    pub data: &'a [u8],
}

/// Why an HVM context blob could not be walked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HvmContextError {
    #[error("HVM context truncated: descriptor at byte {offset} needs 8 bytes, {available} left")]
    TruncatedDescriptor { offset: usize, available: usize },
    #[error(
        "HVM context truncated: record type {typecode} at byte {offset} claims {length} bytes, {available} left"
    )]
    TruncatedRecord {
        offset: usize,
        typecode: u16,
        length: u32,
        available: usize,
    },
    #[error("HVM context has no END record")]
    MissingEnd,
    #[error("HVM context has no {0} record")]
    MissingRecord(&'static str),
    #[error("HVM context record {what} has {actual} bytes, expected {expected}")]
    BadLength {
        what: &'static str,
        actual: usize,
        expected: usize,
    },
    #[error("HVM context too large: {0} bytes")]
    TooLarge(usize),
}

/// Walks the records of an HVM context blob up to and including END; never panics on bad input.
pub fn hvm_records(blob: &[u8]) -> Result<Vec<HvmRecord<'_>>, HvmContextError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        let rest = blob.get(offset..).unwrap_or(&[]);
        if rest.is_empty() {
            return Err(HvmContextError::MissingEnd);
        }
        let (desc, body) = HvmSaveDescriptor::read_from_prefix(rest).map_err(|_| {
            HvmContextError::TruncatedDescriptor {
                offset,
                available: rest.len(),
            }
        })?;
        let len = usize::try_from(desc.length).unwrap_or(usize::MAX);
        let data = body.get(..len).ok_or(HvmContextError::TruncatedRecord {
            offset,
            typecode: desc.typecode,
            length: desc.length,
            available: body.len(),
        })?;
        out.push(HvmRecord {
            typecode: desc.typecode,
            instance: desc.instance,
            data,
        });
        if desc.typecode == HVM_SAVE_CODE_END {
            // `struct hvm_save_end {}` is empty; a longer END is not something Xen writes.
            if len != 0 {
                return Err(HvmContextError::BadLength {
                    what: "END",
                    actual: len,
                    expected: 0,
                });
            }
            return Ok(out);
        }
        offset = offset.saturating_add(8).saturating_add(len);
    }
}

/// Assembles an HVM context blob record by record (descriptor + data), finishing with END.
#[derive(Clone, Debug, Default)]
pub struct HvmContextBuilder {
    bytes: Vec<u8>,
}

impl HvmContextBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one record.
    pub fn record(
        mut self,
        typecode: u16,
        instance: u16,
        data: &[u8],
    ) -> Result<Self, HvmContextError> {
        let length =
            u32::try_from(data.len()).map_err(|_| HvmContextError::TooLarge(data.len()))?;
        let desc = HvmSaveDescriptor {
            typecode,
            instance,
            length,
        };
        self.bytes.extend_from_slice(desc.as_bytes());
        self.bytes.extend_from_slice(data);
        Ok(self)
    }

    /// Appends END (typecode 0, length 0: `struct hvm_save_end {}` is empty) and returns the blob.
    pub fn finish(self) -> Vec<u8> {
        let mut bytes = self.bytes;
        bytes.extend_from_slice(
            HvmSaveDescriptor {
                typecode: HVM_SAVE_CODE_END,
                instance: 0,
                length: 0,
            }
            .as_bytes(),
        );
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn createdomain_offsets_match_the_headers() {
        // RELEASE-4.17.0 domctl.h: no altp2m; vmtrace_size follows grant_opts.
        assert_eq!(offset_of!(CreateDomainV15, flags), 20);
        assert_eq!(offset_of!(CreateDomainV15, grant_opts), 44);
        assert_eq!(offset_of!(CreateDomainV15, vmtrace_size), 48);
        assert_eq!(offset_of!(CreateDomainV15, arch), 56);
        // RELEASE-4.19.0 domctl.h: altp2m inserted at 48.
        assert_eq!(offset_of!(CreateDomainV17, altp2m_opts), 48);
        assert_eq!(offset_of!(CreateDomainV17, altp2m_nr), 50);
        assert_eq!(offset_of!(CreateDomainV17, vmtrace_size), 52);
        assert_eq!(offset_of!(CreateDomainV17, cpupool_id), 56);
        assert_eq!(offset_of!(CreateDomainV17, arch), 60);
        assert_eq!(offset_of!(GetDomainInfo, arch_config), 104);
    }

    #[test]
    fn hvm_cpu_offsets_match_the_header() {
        assert_eq!(offset_of!(HvmHwCpu, rax), 512);
        assert_eq!(offset_of!(HvmHwCpu, rbx), 520);
        assert_eq!(offset_of!(HvmHwCpu, rip), 640);
        assert_eq!(offset_of!(HvmHwCpu, cr0), 656);
        assert_eq!(offset_of!(HvmHwCpu, dr6), 720);
        assert_eq!(offset_of!(HvmHwCpu, cs_sel), 736);
        assert_eq!(offset_of!(HvmHwCpu, cs_limit), 768);
        assert_eq!(offset_of!(HvmHwCpu, cs_base), 808);
        assert_eq!(offset_of!(HvmHwCpu, cs_arbytes), 888);
        assert_eq!(offset_of!(HvmHwCpu, sysenter_cs), 920);
        assert_eq!(offset_of!(HvmHwCpu, msr_efer), 992);
        assert_eq!(offset_of!(HvmHwCpu, tsc), 1008);
        assert_eq!(offset_of!(HvmHwCpu, pending_event), 1016);
        assert_eq!(offset_of!(HvmHwCpu, flags), 1024);
        assert_eq!(offset_of!(HvmHwMtrr, msr_mtrr_fixed), 136);
        assert_eq!(offset_of!(HvmHwMtrr, msr_mtrr_def_type), 232);
    }

    #[test]
    fn e820_entry_is_packed() {
        let e = E820Entry {
            addr: 0x1122_3344_5566_7788,
            size: 0x1000,
            type_: e820::RAM,
        };
        let b = e.as_bytes();
        assert_eq!(b.len(), 20);
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[16..20], &1u32.to_le_bytes());
    }

    #[test]
    fn hvm_context_round_trips_and_rejects_truncation() {
        let header = HvmSaveHeader {
            magic: HVM_FILE_MAGIC,
            version: 1,
            ..Default::default()
        };
        let blob = HvmContextBuilder::new()
            .record(HVM_SAVE_CODE_HEADER, 0, header.as_bytes())
            .unwrap()
            .record(HVM_SAVE_CODE_CPU, 1, &[7u8; 16])
            .unwrap()
            .finish();
        let recs = hvm_records(&blob).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].data, header.as_bytes());
        assert_eq!((recs[1].typecode, recs[1].instance), (2, 1));
        assert_eq!(recs[2].typecode, HVM_SAVE_CODE_END);
        for cut in 0..blob.len() {
            assert!(hvm_records(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = blob.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            hvm_records(&lying),
            Err(HvmContextError::TruncatedRecord { .. })
        ));
        let mut long_end = blob.clone();
        long_end.extend_from_slice(&[0, 0]);
        let end_len_at = long_end.len() - 2 - 4;
        long_end[end_len_at..end_len_at + 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            hvm_records(&long_end),
            Err(HvmContextError::BadLength { what: "END", .. })
        ));
    }
}
