//! Guest-physical layout of a PVH guest: memory map, special pages, ACPI region and the
//! placement of everything the builder writes.
//!
//! The shape follows what libxl/libxenguest build for a PVH domU (`tools/libs/light/libxl_x86.c`
//! `domain_construct_memmap`, `tools/libs/guest/xg_dom_x86.c`), simplified to what a
//! device-model-less guest needs:
//!
//! | region | where | memmap type |
//! |---|---|---|
//! | low RAM | `0 .. min(memory, 0xFC000000)` | RAM |
//! | ACPI tables | 16 pages at `0xFC000000` (`ACPI_INFO_PHYSICAL_ADDRESS`, `NUM_ACPI_PAGES`) | NVS, as libxl marks them |
//! | special pages | pfn `0xFEFF8 ..= 0xFEFFF` (`X86_HVM_END_SPECIAL_REGION` − `X86_HVM_NR_SPECIAL_PAGES`) | RESERVED |
//! | high RAM | `4 GiB ..` the rest of the memory when it exceeds the hole start | RAM |
//!
//! Inside low RAM the kernel's `PT_LOAD` segments go to their `p_paddr` (an HVM container
//! ignores `VIRT_BASE`/`PADDR_OFFSET`), then — like libxenguest's bump allocator — the
//! ramdisk, `hvm_start_info`, the command line, the module list and the memory map table
//! follow, each starting on a 4 KiB boundary. Everything stays below 4 GiB because the guest
//! starts in 32-bit mode without paging (`start_info.h`: "Xen on x86 will always try to place
//! all the data below the 4GiB boundary").

use alloc::vec::Vec;

use crate::kernel::LoadSegment;
use crate::memory::{PAGE_SIZE, PfnRange};
use crate::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, MemmapEntry, MemmapType,
};

/// Start of the MMIO hole. For PVH libxl computes `4 GiB - min(special_start, LAPIC
/// 0xFEE00000, ACPI_INFO_PHYSICAL_ADDRESS 0xFC000000)`, i.e. the hole starts at 0xFC000000.
pub const MMIO_HOLE_START: u64 = 0xFC00_0000;
/// Where RAM that does not fit below the hole continues (`GUEST_HIGH_MEM_START_DEFAULT`).
pub const HIGH_MEM_START: u64 = 1 << 32;
/// Base of the ACPI tables (`ACPI_INFO_PHYSICAL_ADDRESS` in `tools/libacpi/libacpi.h`).
pub const ACPI_BASE: u64 = 0xFC00_0000;
/// Pages reserved for ACPI tables (`NUM_ACPI_PAGES` in `libxl_x86_acpi.c`).
pub const ACPI_PAGES: u64 = 16;
/// `X86_HVM_END_SPECIAL_REGION` (`xen/include/public/hvm/params.h`).
pub const SPECIAL_REGION_END_PFN: u64 = 0xFF000;
/// `X86_HVM_NR_SPECIAL_PAGES`.
pub const NR_SPECIAL_PAGES: u64 = 8;
/// First special page: pfn 0xFEFF8.
pub const SPECIAL_PAGES_START_PFN: u64 = SPECIAL_REGION_END_PFN - NR_SPECIAL_PAGES;
/// `HVM_MAX_VCPUS` (`xen/include/public/hvm/hvm_info_table.h`); also keeps the LAPIC IDs
/// (`2 * vcpu`) within the 8-bit xAPIC ID the MADT entry carries.
pub const MAX_VCPUS: u32 = 128;
/// Longest command line accepted, including the NUL: one page. (Linux/x86 itself truncates at
/// `COMMAND_LINE_SIZE` = 2048.)
pub const MAX_CMDLINE: usize = 4096;
/// Sanity bound on guest memory (1 TiB): far above what domforge targets, low enough that
/// no address computation can overflow.
pub const MAX_MEMORY: u64 = 1 << 40;

/// The special pages, indexed as in `xg_dom_x86.c` (`SPECIALPAGE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SpecialPage {
    /// `SPECIALPAGE_PAGING` = 0.
    Paging = 0,
    /// `SPECIALPAGE_ACCESS` = 1.
    Access = 1,
    /// `SPECIALPAGE_SHARING` = 2.
    Sharing = 2,
    /// `SPECIALPAGE_BUFIOREQ` = 3.
    BufIoreq = 3,
    /// `SPECIALPAGE_XENSTORE` = 4 (`HVM_PARAM_STORE_PFN`).
    Xenstore = 4,
    /// `SPECIALPAGE_IOREQ` = 5.
    Ioreq = 5,
    /// `SPECIALPAGE_IDENT_PT` = 6 (`HVM_PARAM_IDENT_PT`).
    IdentPt = 6,
    /// `SPECIALPAGE_CONSOLE` = 7 (`HVM_PARAM_CONSOLE_PFN`).
    Console = 7,
}

impl SpecialPage {
    /// Its pfn: `X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES + index`.
    pub fn pfn(self) -> u64 {
        SPECIAL_PAGES_START_PFN + self as u64
    }
}

/// What the caller wants booted.
#[derive(Debug, Clone, Copy)]
pub struct LayoutRequest<'a> {
    /// Guest RAM in bytes (the memory map's RAM total); a multiple of 4 KiB. The ACPI and
    /// special pages come on top of it.
    pub memory_bytes: u64,
    /// Number of vCPUs (1..=128); one MADT entry each.
    pub vcpus: u32,
    /// Kernel command line (no NUL bytes).
    pub cmdline: &'a str,
    /// Initial ramdisk, passed as module 0.
    pub ramdisk: Option<&'a [u8]>,
}

/// A placed object: `len` bytes at `gpa` (page aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Region {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.gpa + self.len
    }
}

/// Why a layout could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Memory size is not a whole number of pages.
    #[error("memory size {memory_bytes:#x} is not a multiple of 4 KiB")]
    MemoryNotPageAligned {
        /// Requested size.
        memory_bytes: u64,
    },
    /// Memory size above [`MAX_MEMORY`].
    #[error("memory size {memory_bytes:#x} exceeds the supported maximum {max:#x}")]
    MemoryTooLarge {
        /// Requested size.
        memory_bytes: u64,
        /// Limit.
        max: u64,
    },
    /// vCPU count outside 1..=128.
    #[error("{vcpus} vCPUs requested; a PVH guest has 1 to {max}")]
    BadVcpuCount {
        /// Requested count.
        vcpus: u32,
        /// `HVM_MAX_VCPUS`.
        max: u32,
    },
    /// Command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte at offset {offset}")]
    CmdlineHasNul {
        /// Where.
        offset: usize,
    },
    /// Command line too long.
    #[error("kernel command line is {len} bytes; at most {max} fit (including the NUL)")]
    CmdlineTooLong {
        /// Length with NUL.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Ramdisk given but empty.
    #[error("ramdisk is empty")]
    EmptyRamdisk,
    /// The kernel has no `PT_LOAD` segment.
    #[error("kernel has no PT_LOAD segment")]
    NoLoadSegments,
    /// A kernel segment is not inside low RAM.
    #[error(
        "kernel segment {index} [{start:#x}, {end:#x}) is not inside guest low RAM [0, {ram_end:#x})"
    )]
    SegmentOutsideRam {
        /// Segment index among PT_LOADs.
        index: usize,
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// The PVH entry point is not inside the loaded kernel.
    #[error("PVH entry {entry:#x} is not inside any loaded kernel segment")]
    EntryOutsideKernel {
        /// The entry.
        entry: u64,
    },
    /// Two placed objects overlap.
    #[error(
        "{first} [{first_start:#x}, {first_end:#x}) overlaps {second} [{second_start:#x}, {second_end:#x})"
    )]
    Overlap {
        /// First object.
        first: &'static str,
        /// Its start.
        first_start: u64,
        /// Its end.
        first_end: u64,
        /// Second object.
        second: &'static str,
        /// Its start.
        second_start: u64,
        /// Its end.
        second_end: u64,
    },
    /// Not enough low RAM for everything.
    #[error(
        "guest memory too small: {what} would end at {end:#x}, but low RAM ends at {ram_end:#x}"
    )]
    DoesNotFit {
        /// What did not fit.
        what: &'static str,
        /// Where it would end.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
}

/// The complete placement of a PVH guest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PvhLayout {
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// End of RAM below the MMIO hole.
    pub low_ram_end: u64,
    /// RAM above 4 GiB, if any.
    pub high_ram: Option<Region>,
    /// Span of the kernel segments (lowest `p_paddr` to highest end, page aligned).
    pub kernel: Region,
    /// The ramdisk.
    pub ramdisk: Option<Region>,
    /// `hvm_start_info`.
    pub start_info: Region,
    /// Command line with its NUL.
    pub cmdline: Region,
    /// `hvm_modlist_entry` array (present with a ramdisk).
    pub modlist: Option<Region>,
    /// `hvm_memmap_table_entry` array.
    pub memmap_table: Region,
    /// ACPI tables region (whole reserved area).
    pub acpi: Region,
    /// The memory map, sorted, for `XENMEM_set_memory_map` and `start_info.memmap`.
    pub memmap: Vec<MemmapEntry>,
    /// Page frames the builder must populate (RAM, ACPI pages, special pages), sorted.
    pub populate: Vec<PfnRange>,
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

impl PvhLayout {
    /// Place a kernel (its `PT_LOAD` segments) and the request's objects.
    pub fn plan(segments: &[LoadSegment], req: &LayoutRequest<'_>) -> Result<Self, LayoutError> {
        let mem = req.memory_bytes;
        if !mem.is_multiple_of(PAGE_SIZE) {
            return Err(LayoutError::MemoryNotPageAligned { memory_bytes: mem });
        }
        if mem > MAX_MEMORY {
            return Err(LayoutError::MemoryTooLarge {
                memory_bytes: mem,
                max: MAX_MEMORY,
            });
        }
        if req.vcpus == 0 || req.vcpus > MAX_VCPUS {
            return Err(LayoutError::BadVcpuCount {
                vcpus: req.vcpus,
                max: MAX_VCPUS,
            });
        }
        if let Some(offset) = req.cmdline.bytes().position(|b| b == 0) {
            return Err(LayoutError::CmdlineHasNul { offset });
        }
        let cmdline_len = req.cmdline.len() + 1;
        if cmdline_len > MAX_CMDLINE {
            return Err(LayoutError::CmdlineTooLong {
                len: cmdline_len,
                max: MAX_CMDLINE,
            });
        }
        if req.ramdisk.is_some_and(|r| r.is_empty()) {
            return Err(LayoutError::EmptyRamdisk);
        }

        let low_ram_end = mem.min(MMIO_HOLE_START);
        let high_len = mem - low_ram_end;
        let high_ram = (high_len > 0).then_some(Region {
            gpa: HIGH_MEM_START,
            len: high_len,
        });

        // Kernel segments: inside low RAM, pairwise disjoint.
        let mut placed: Vec<(&'static str, u64, u64)> = Vec::new();
        let mut kstart = u64::MAX;
        let mut kend = 0u64;
        for (index, seg) in segments.iter().enumerate() {
            let end = seg
                .paddr
                .checked_add(seg.memsz)
                .ok_or(LayoutError::SegmentOutsideRam {
                    index,
                    start: seg.paddr,
                    end: u64::MAX,
                    ram_end: low_ram_end,
                })?;
            if end > low_ram_end {
                return Err(LayoutError::SegmentOutsideRam {
                    index,
                    start: seg.paddr,
                    end,
                    ram_end: low_ram_end,
                });
            }
            if seg.memsz > 0 {
                placed.push(("kernel segment", seg.paddr, end));
            }
            kstart = kstart.min(seg.paddr);
            kend = kend.max(end);
        }
        if segments.is_empty() {
            return Err(LayoutError::NoLoadSegments);
        }
        let kstart = kstart & !(PAGE_SIZE - 1);
        let kend_page = page_up(kend).unwrap_or(u64::MAX);
        let kernel = Region {
            gpa: kstart,
            len: kend_page - kstart,
        };

        // Bump allocation after the kernel.
        let mut cursor = kend_page;
        let mut take = |what: &'static str, len: u64| -> Result<Region, LayoutError> {
            let gpa = cursor;
            let end = gpa.saturating_add(len);
            let next = page_up(end).unwrap_or(u64::MAX);
            if next > low_ram_end {
                return Err(LayoutError::DoesNotFit {
                    what,
                    end,
                    ram_end: low_ram_end,
                });
            }
            cursor = next;
            Ok(Region { gpa, len })
        };
        let ramdisk = match req.ramdisk {
            Some(r) => Some(take("ramdisk", r.len() as u64)?),
            None => None,
        };
        let start_info = take(
            "hvm_start_info",
            core::mem::size_of::<HvmStartInfo>() as u64,
        )?;
        let cmdline = take("command line", cmdline_len as u64)?;
        let modlist = match ramdisk {
            Some(_) => Some(take(
                "module list",
                core::mem::size_of::<HvmModlistEntry>() as u64,
            )?),
            None => None,
        };

        let acpi = Region {
            gpa: ACPI_BASE,
            len: ACPI_PAGES * PAGE_SIZE,
        };
        let special = Region {
            gpa: SPECIAL_PAGES_START_PFN * PAGE_SIZE,
            len: NR_SPECIAL_PAGES * PAGE_SIZE,
        };
        let mut memmap = Vec::with_capacity(4);
        if low_ram_end > 0 {
            memmap.push(MemmapEntry {
                addr: 0,
                size: low_ram_end,
                kind: MemmapType::Ram,
            });
        }
        memmap.push(MemmapEntry {
            addr: acpi.gpa,
            size: acpi.len,
            kind: MemmapType::Nvs,
        });
        memmap.push(MemmapEntry {
            addr: special.gpa,
            size: special.len,
            kind: MemmapType::Reserved,
        });
        if let Some(h) = high_ram {
            memmap.push(MemmapEntry {
                addr: h.gpa,
                size: h.len,
                kind: MemmapType::Ram,
            });
        }
        let memmap_table = take(
            "memory map table",
            (memmap.len() * core::mem::size_of::<HvmMemmapTableEntry>()) as u64,
        )?;

        for (name, r) in [("ramdisk", ramdisk), ("module list", modlist)] {
            if let Some(r) = r {
                placed.push((name, r.gpa, r.end()));
            }
        }
        placed.push(("hvm_start_info", start_info.gpa, start_info.end()));
        placed.push(("command line", cmdline.gpa, cmdline.end()));
        placed.push(("memory map table", memmap_table.gpa, memmap_table.end()));
        placed.push(("ACPI tables", acpi.gpa, acpi.end()));
        placed.push(("special pages", special.gpa, special.end()));
        check_disjoint(&mut placed)?;

        let mut populate = Vec::with_capacity(4);
        if low_ram_end > 0 {
            populate.push(PfnRange {
                start: 0,
                count: low_ram_end / PAGE_SIZE,
            });
        }
        populate.push(PfnRange {
            start: ACPI_BASE / PAGE_SIZE,
            count: ACPI_PAGES,
        });
        populate.push(PfnRange {
            start: SPECIAL_PAGES_START_PFN,
            count: NR_SPECIAL_PAGES,
        });
        if let Some(h) = high_ram {
            populate.push(PfnRange {
                start: h.gpa / PAGE_SIZE,
                count: h.len / PAGE_SIZE,
            });
        }

        Ok(Self {
            memory_bytes: mem,
            vcpus: req.vcpus,
            low_ram_end,
            high_ram,
            kernel,
            ramdisk,
            start_info,
            cmdline,
            modlist,
            memmap_table,
            acpi,
            memmap,
            populate,
        })
    }

    /// Total pages to populate (RAM + ACPI + special pages): what `max_mem` must allow.
    pub fn total_pages(&self) -> u64 {
        self.populate.iter().map(|r| r.count).sum()
    }

    /// pfn of a special page.
    pub fn special_pfn(&self, page: SpecialPage) -> u64 {
        page.pfn()
    }
}

fn check_disjoint(placed: &mut [(&'static str, u64, u64)]) -> Result<(), LayoutError> {
    placed.sort_by_key(|&(_, s, e)| (s, e));
    for pair in placed.windows(2) {
        if let [(an, as_, ae), (bn, bs, be)] = pair
            && bs < ae
        {
            return Err(LayoutError::Overlap {
                first: an,
                first_start: *as_,
                first_end: *ae,
                second: bn,
                second_start: *bs,
                second_end: *be,
            });
        }
    }
    Ok(())
}
