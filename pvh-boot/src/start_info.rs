//! The PVH start-of-day ABI: `struct hvm_start_info` and its tables.
//!
//! Layouts follow `xen/include/public/arch-x86/hvm/start_info.h` (Xen 4.10+, version 1 of
//! the structure). All fields are little-endian on x86; the fields here use zerocopy's
//! little-endian integer types so the bytes are right on any host. Offsets and sizes are
//! asserted at compile time against the offset diagrams in that header.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_HVM_START_MAGIC_VALUE` from `start_info.h`: "xEn3" with the 0x80 bit of the "E" set.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// Version of `hvm_start_info` we write. Version 1 added `memmap_paddr`/`memmap_entries`
/// (`start_info.h`: "Current version is 1").
pub const HVM_START_INFO_VERSION: u32 = 1;

/// `XEN_HVM_MEMMAP_TYPE_*` values from `start_info.h`, identical to the E820 type numbers
/// that `XENMEM_set_memory_map` takes (`xen/include/public/arch-x86/hvm/start_info.h`,
/// "The values match E820 type values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u32)]
pub enum MemmapType {
    /// `XEN_HVM_MEMMAP_TYPE_RAM` = 1.
    Ram = 1,
    /// `XEN_HVM_MEMMAP_TYPE_RESERVED` = 2.
    Reserved = 2,
    /// `XEN_HVM_MEMMAP_TYPE_ACPI` = 3.
    Acpi = 3,
    /// `XEN_HVM_MEMMAP_TYPE_NVS` = 4.
    Nvs = 4,
    /// `XEN_HVM_MEMMAP_TYPE_UNUSABLE` = 5.
    Unusable = 5,
    /// `XEN_HVM_MEMMAP_TYPE_DISABLED` = 6.
    Disabled = 6,
    /// `XEN_HVM_MEMMAP_TYPE_PMEM` = 7.
    Pmem = 7,
}

impl MemmapType {
    /// The numeric type as stored in the table.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// Decode a numeric type; `None` for values the header does not define.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::Acpi,
            4 => Self::Nvs,
            5 => Self::Unusable,
            6 => Self::Disabled,
            7 => Self::Pmem,
            _ => return None,
        })
    }
}

/// `struct hvm_start_info` (56 bytes). Its guest-physical address is passed in `%ebx`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmStartInfo {
    /// Offset 0: `XEN_HVM_START_MAGIC_VALUE`.
    pub magic: U32,
    /// Offset 4: structure version (1).
    pub version: U32,
    /// Offset 8: `SIF_xxx` flags (none are meaningful for an unprivileged PVH guest).
    pub flags: U32,
    /// Offset 12: number of entries in the module list.
    pub nr_modules: U32,
    /// Offset 16: physical address of an array of [`HvmModlistEntry`].
    pub modlist_paddr: U64,
    /// Offset 24: physical address of the NUL-terminated command line.
    pub cmdline_paddr: U64,
    /// Offset 32: physical address of the ACPI RSDP.
    pub rsdp_paddr: U64,
    /// Offset 40: physical address of an array of [`HvmMemmapTableEntry`] (version 1).
    pub memmap_paddr: U64,
    /// Offset 48: number of memory map entries (version 1).
    pub memmap_entries: U32,
    /// Offset 52: must be zero.
    pub reserved: U32,
}

/// `struct hvm_modlist_entry` (32 bytes).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// Offset 0: physical address of the module.
    pub paddr: U64,
    /// Offset 8: size of the module in bytes.
    pub size: U64,
    /// Offset 16: physical address of the module's command line (0 = none).
    pub cmdline_paddr: U64,
    /// Offset 24: must be zero.
    pub reserved: U64,
}

/// `struct hvm_memmap_table_entry` (24 bytes).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// Offset 0: base address of the region.
    pub addr: U64,
    /// Offset 8: size of the region in bytes.
    pub size: U64,
    /// Offset 16: `XEN_HVM_MEMMAP_TYPE_*`.
    pub type_: U32,
    /// Offset 20: must be zero.
    pub reserved: U32,
}

// Sizes and offsets from the diagrams in xen/include/public/arch-x86/hvm/start_info.h.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<HvmStartInfo>() == 56);
    assert!(offset_of!(HvmStartInfo, magic) == 0);
    assert!(offset_of!(HvmStartInfo, version) == 4);
    assert!(offset_of!(HvmStartInfo, flags) == 8);
    assert!(offset_of!(HvmStartInfo, nr_modules) == 12);
    assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
    assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
    assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
    assert!(offset_of!(HvmStartInfo, memmap_paddr) == 40);
    assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);
    assert!(offset_of!(HvmStartInfo, reserved) == 52);

    assert!(size_of::<HvmModlistEntry>() == 32);
    assert!(offset_of!(HvmModlistEntry, paddr) == 0);
    assert!(offset_of!(HvmModlistEntry, size) == 8);
    assert!(offset_of!(HvmModlistEntry, cmdline_paddr) == 16);
    assert!(offset_of!(HvmModlistEntry, reserved) == 24);

    assert!(size_of::<HvmMemmapTableEntry>() == 24);
    assert!(offset_of!(HvmMemmapTableEntry, addr) == 0);
    assert!(offset_of!(HvmMemmapTableEntry, size) == 8);
    assert!(offset_of!(HvmMemmapTableEntry, type_) == 16);
    assert!(offset_of!(HvmMemmapTableEntry, reserved) == 20);
};

/// One entry of the guest memory map, used both for `XENMEM_set_memory_map` and for
/// `hvm_start_info.memmap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MemmapEntry {
    /// Base guest-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// What the region is.
    pub kind: MemmapType,
}

/// Size of one `struct e820entry` as `XENMEM_set_memory_map` reads it: Xen's
/// `xen/arch/x86/include/asm/e820.h` declares it `__packed` { u64 addr; u64 size; u32 type; }
/// and libxl (`tools/libs/light/libxl_x86.c`) passes the same packed layout.
pub const E820_ENTRY_SIZE: usize = 20;

impl MemmapEntry {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }

    /// The `hvm_memmap_table_entry` for `start_info.memmap`.
    pub fn to_table_entry(&self) -> HvmMemmapTableEntry {
        HvmMemmapTableEntry {
            addr: self.addr.into(),
            size: self.size.into(),
            type_: self.kind.raw().into(),
            reserved: 0.into(),
        }
    }

    /// The packed 20-byte `struct e820entry` for `XENMEM_set_memory_map`.
    pub fn to_e820_bytes(&self) -> [u8; E820_ENTRY_SIZE] {
        let mut out = [0u8; E820_ENTRY_SIZE];
        out[0..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..20].copy_from_slice(&self.kind.raw().to_le_bytes());
        out
    }
}
