//! # pvh-boot: everything needed to start a Xen PVH guest by direct kernel boot
//!
//! Turns a kernel image, a ramdisk, a command line and a memory size into the exact
//! guest-physical memory contents and boot register state of a PVH guest, independent of how
//! that memory is written: every write goes through [`memory::GuestMemoryWriter`], which the
//! `domctl` crate implements over Xen foreign mappings and tests implement with
//! [`memory::VecGuestMemory`].
//!
//! ```text
//! kernel bytes ─▶ kernel::KernelImage (ELF | bzImage ─▶ decompress ─▶ ELF | arm64 Image)
//!                 └▶ ElfKernel: PT_LOAD segments + XEN_ELFNOTE_PHYS32_ENTRY
//! LayoutRequest ─▶ layout::PvhLayout (memmap, placement, populate list)
//!                 ─▶ acpi::build_tables (RSDP/XSDT/FADT/MADT/DSDT)
//!                 ─▶ start_info (hvm_start_info, modlist, memmap table)
//! build() writes all of it and returns BootState { entry, start_info_gpa, memory_map, ... }
//! ```
//!
//! ## Choices
//! - `no_std` + `alloc`; only the bzip2 decoder needs `std` (`bzip2-rs` is written against
//!   `std::io`). Each decompressor is a cargo feature, all on by default (see [`decompress`]).
//!   `core::error::Error` makes the `thiserror` errors usable without `std`.
//! - ELF parsing uses `object`'s low-level `read::elf` layer rather than a hand-written
//!   parser: it is `no_std`, does no allocation, bounds-checks every header and table it
//!   returns and is fuzzed upstream; this crate adds only the Xen-note semantics.
//! - ABI structs are `repr(C)` zerocopy types with little-endian fields and compile-time size
//!   and offset asserts citing `xen/include/public/arch-x86/hvm/start_info.h`.
//! - Everything is deterministic: the same inputs give the same bytes at the same addresses.
//! - The kernel is loaded at its ELF `p_paddr` (as libxenguest does for HVM containers).
//!   `XEN_ELFNOTE_PHYS32_RELOC` is reported but relocation is not needed: a domU's memory
//!   map is ours, and Linux's `LOAD_PHYSICAL_ADDR` (16 MiB) is always RAM.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod acpi;
pub mod decompress;
pub mod identify;
pub mod inspect;
pub mod kernel;
pub mod layout;
pub mod memory;
pub mod start_info;
pub mod stream;

use alloc::vec::Vec;

use zerocopy::IntoBytes;

use crate::acpi::{AcpiError, AcpiTables};
use crate::kernel::{ElfKernel, ImageError};
use crate::layout::{
    LayoutError, LayoutRequest, NR_SPECIAL_PAGES, PvhLayout, SPECIAL_PAGES_START_PFN, SpecialPage,
};
use crate::memory::{GuestMemoryWriter, PAGE_SIZE, PfnRange};
use crate::start_info::{
    HVM_START_INFO_VERSION, HvmModlistEntry, HvmStartInfo, MemmapEntry, XEN_HVM_START_MAGIC_VALUE,
};

/// Why [`build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E: core::error::Error + 'static> {
    /// The kernel image is unusable.
    #[error("kernel image: {0}")]
    Image(#[from] ImageError),
    /// The guest layout is impossible.
    #[error("guest layout: {0}")]
    Layout(#[from] LayoutError),
    /// ACPI tables could not be built.
    #[error("ACPI tables: {0}")]
    Acpi(#[from] AcpiError),
    /// Writing guest memory failed.
    #[error("writing {what} ({len} bytes at {gpa:#x})")]
    Write {
        /// What was being written.
        what: &'static str,
        /// Where.
        gpa: u64,
        /// How much.
        len: u64,
        /// The writer's error.
        #[source]
        source: E,
    },
}

/// The special pages' pfns, for `HVM_PARAM_*_PFN` (`xg_dom_x86.c` `special_pfn()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SpecialPages {
    /// First special page (0xFEFF8); there are eight.
    pub first_pfn: u64,
    /// Console ring (`SPECIALPAGE_CONSOLE`, the 7th index): `HVM_PARAM_CONSOLE_PFN`.
    pub console_pfn: u64,
    /// Xenstore ring (`SPECIALPAGE_XENSTORE`, the 4th index): `HVM_PARAM_STORE_PFN`.
    pub xenstore_pfn: u64,
    /// Identity page table page (`SPECIALPAGE_IDENT_PT`): `HVM_PARAM_IDENT_PT`.
    pub ident_pt_pfn: u64,
}

/// What the domain builder needs after memory has been written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BootState {
    /// `rip` of the BSP: the PVH 32-bit entry (`XEN_ELFNOTE_PHYS32_ENTRY`); the vCPU starts
    /// in protected mode with paging off (`docs/misc/pvh.pandoc`).
    pub entry: u32,
    /// `rbx` of the BSP: guest-physical address of `hvm_start_info`.
    pub start_info_gpa: u64,
    /// Memory map for `XENMEM_set_memory_map` (also written to `start_info.memmap`).
    pub memory_map: Vec<MemmapEntry>,
    /// Special page pfns.
    pub special_pages: SpecialPages,
    /// Page frames to populate before writing (RAM, ACPI pages, special pages).
    pub populate: Vec<PfnRange>,
    /// ACPI RSDP address (0 if none).
    pub rsdp_gpa: u64,
    /// The full placement, for diagnostics.
    pub layout: PvhLayout,
}

fn write<W: GuestMemoryWriter>(
    mem: &mut W,
    what: &'static str,
    gpa: u64,
    bytes: &[u8],
) -> Result<(), BuildError<W::Error>> {
    mem.write(gpa, bytes).map_err(|source| BuildError::Write {
        what,
        gpa,
        len: bytes.len() as u64,
        source,
    })
}

fn zero<W: GuestMemoryWriter>(
    mem: &mut W,
    what: &'static str,
    gpa: u64,
    len: u64,
) -> Result<(), BuildError<W::Error>> {
    mem.zero(gpa, len).map_err(|source| BuildError::Write {
        what,
        gpa,
        len,
        source,
    })
}

/// Plan the guest for an already-parsed PVH kernel (no memory is written).
pub fn plan(
    kernel: &ElfKernel<'_>,
    request: &LayoutRequest<'_>,
) -> Result<(u32, PvhLayout), LayoutOrImageError> {
    let entry = kernel.pvh_entry_checked()?;
    let layout = PvhLayout::plan(&kernel.segments, request)?;
    let inside = kernel
        .segments
        .iter()
        .any(|s| u64::from(entry) >= s.paddr && u64::from(entry) < s.paddr_end());
    if !inside {
        return Err(LayoutError::EntryOutsideKernel {
            entry: u64::from(entry),
        }
        .into());
    }
    Ok((entry, layout))
}

/// Either error of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutOrImageError {
    /// The kernel is unusable.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The layout is impossible.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl<E: core::error::Error + 'static> From<LayoutOrImageError> for BuildError<E> {
    fn from(e: LayoutOrImageError) -> Self {
        match e {
            LayoutOrImageError::Image(i) => Self::Image(i),
            LayoutOrImageError::Layout(l) => Self::Layout(l),
        }
    }
}

/// Build a PVH guest's memory from a kernel image (ELF or bzImage) and a request.
///
/// Writes the kernel segments (BSS zeroed), the ramdisk, `hvm_start_info`, the command line,
/// the module list, the memory map table and the ACPI tables, and zeroes the eight special
/// pages (console and xenstore rings must start empty). The caller must have populated
/// [`BootState::populate`] — available beforehand from [`plan`] — and then sets the memory
/// map, HVM params and the BSP registers from the returned state.
pub fn build<W: GuestMemoryWriter>(
    kernel_bytes: &[u8],
    request: &LayoutRequest<'_>,
    mem: &mut W,
) -> Result<BootState, BuildError<W::Error>> {
    let elf_bytes = kernel::pvh_elf_bytes(kernel_bytes)?;
    let elf = ElfKernel::parse(&elf_bytes)?;
    build_from_elf(&elf, request, mem)
}

/// [`build`] for an already-parsed ELF kernel.
pub fn build_from_elf<W: GuestMemoryWriter>(
    elf: &ElfKernel<'_>,
    request: &LayoutRequest<'_>,
    mem: &mut W,
) -> Result<BootState, BuildError<W::Error>> {
    build_with_segments(elf, request, mem, |mem| {
        for seg in &elf.segments {
            write(mem, "kernel segment", seg.paddr, elf.segment_data(seg)?)?;
        }
        Ok(())
    })
}

/// [`build`] for a kernel whose headers are `elf` ([`ElfKernel::parse_prefix`] of the first
/// decoded bytes) and whose whole file `blocks` decodes from the start: each block's segment bytes
/// go straight into guest memory, so the decoded kernel is never held (see [`stream`]).
pub fn build_streamed<W: GuestMemoryWriter>(
    elf: &ElfKernel<'_>,
    blocks: &mut dyn stream::BlockSource,
    request: &LayoutRequest<'_>,
    mem: &mut W,
) -> Result<BootState, BuildError<W::Error>> {
    build_with_segments(elf, request, mem, |mem| {
        let need = stream::file_bytes_end(&elf.segments);
        let mut at = 0u64;
        while at < need {
            let Some(block) = blocks.next_block()? else {
                return Err(BuildError::Image(ImageError::Truncated {
                    what: "kernel segments (decoded stream)",
                    needed: need,
                    available: at,
                }));
            };
            stream::split_block(&elf.segments, at, block, |i, off, bytes| {
                write(mem, "kernel segment", elf.segments[i].paddr + off, bytes)
            })?;
            at += block.len() as u64;
        }
        Ok(())
    })
}

/// The build, with the kernel segments' file bytes written by `segments` (BSS is zeroed here).
fn build_with_segments<W: GuestMemoryWriter>(
    elf: &ElfKernel<'_>,
    request: &LayoutRequest<'_>,
    mem: &mut W,
    segments: impl FnOnce(&mut W) -> Result<(), BuildError<W::Error>>,
) -> Result<BootState, BuildError<W::Error>> {
    let (entry, layout) = plan(elf, request)?;
    let tables: AcpiTables = acpi::build_tables(request.vcpus, layout.acpi.gpa)?;

    segments(mem)?;
    for seg in &elf.segments {
        let bss = seg.memsz - seg.filesz;
        if bss > 0 {
            zero(mem, "kernel BSS", seg.paddr + seg.filesz, bss)?;
        }
    }
    if let (Some(r), Some(bytes)) = (layout.ramdisk, request.ramdisk) {
        write(mem, "ramdisk", r.gpa, bytes)?;
    }

    let mut cmdline = Vec::with_capacity(request.cmdline.len() + 1);
    cmdline.extend_from_slice(request.cmdline.as_bytes());
    cmdline.push(0);
    write(mem, "command line", layout.cmdline.gpa, &cmdline)?;

    let mut nr_modules = 0u32;
    let mut modlist_paddr = 0u64;
    if let (Some(m), Some(r)) = (layout.modlist, layout.ramdisk) {
        let entry = HvmModlistEntry {
            paddr: r.gpa.into(),
            size: r.len.into(),
            cmdline_paddr: 0.into(),
            reserved: 0.into(),
        };
        write(mem, "module list", m.gpa, entry.as_bytes())?;
        nr_modules = 1;
        modlist_paddr = m.gpa;
    }

    let mut table = Vec::with_capacity(layout.memmap_table.len as usize);
    for e in &layout.memmap {
        table.extend_from_slice(e.to_table_entry().as_bytes());
    }
    write(mem, "memory map table", layout.memmap_table.gpa, &table)?;

    zero(mem, "ACPI area", layout.acpi.gpa, layout.acpi.len)?;
    write(mem, "ACPI tables", tables.base, &tables.bytes)?;
    zero(
        mem,
        "special pages",
        SPECIAL_PAGES_START_PFN * PAGE_SIZE,
        NR_SPECIAL_PAGES * PAGE_SIZE,
    )?;

    let si = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE.into(),
        version: HVM_START_INFO_VERSION.into(),
        flags: 0.into(),
        nr_modules: nr_modules.into(),
        modlist_paddr: modlist_paddr.into(),
        cmdline_paddr: layout.cmdline.gpa.into(),
        rsdp_paddr: tables.rsdp.into(),
        memmap_paddr: layout.memmap_table.gpa.into(),
        memmap_entries: (layout.memmap.len() as u32).into(),
        reserved: 0.into(),
    };
    write(mem, "hvm_start_info", layout.start_info.gpa, si.as_bytes())?;

    Ok(BootState {
        entry,
        start_info_gpa: layout.start_info.gpa,
        memory_map: layout.memmap.clone(),
        special_pages: SpecialPages {
            first_pfn: SPECIAL_PAGES_START_PFN,
            console_pfn: SpecialPage::Console.pfn(),
            xenstore_pfn: SpecialPage::Xenstore.pfn(),
            ident_pt_pfn: SpecialPage::IdentPt.pfn(),
        },
        populate: layout.populate.clone(),
        rsdp_gpa: tables.rsdp,
        layout,
    })
}
