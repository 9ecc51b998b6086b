//! ELF32/ELF64 kernels: `PT_LOAD` segments, entry point and Xen ELF notes.
//!
//! Parsing uses `object`'s low-level `read::elf` layer (`read_core` + `elf` features): it is
//! `no_std`, allocation-free, bounds-checks every table and is fuzzed upstream, so we get a
//! hardened reader for ~no code. The Xen-specific part (which notes exist, how their values
//! are encoded) is ours and follows `xen/include/public/elfnote.h`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use object::Endianness;
use object::elf;
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader, SectionHeader};

use super::{Arch, ImageError};

/// `e_ident` length and class byte index (System V gABI).
const EI_NIDENT: usize = 16;
const EI_CLASS: usize = 4; // ELFCLASS32 = 1, ELFCLASS64 = 2

/// Note owner name Xen uses (`elfnote.h`: 'have "Xen" in the name field').
const XEN_NOTE_NAME: &[u8] = b"Xen";

/// `XEN_ELFNOTE_*` numbers from `xen/include/public/elfnote.h`.
pub mod note_type {
    /// NAME=VALUE pair (string).
    pub const INFO: u32 = 0;
    /// Virtual entry point (numeric, PV).
    pub const ENTRY: u32 = 1;
    /// Virtual address of the hypercall page (numeric, PV).
    pub const HYPERCALL_PAGE: u32 = 2;
    /// Virtual base of the kernel mapping (numeric, PV).
    pub const VIRT_BASE: u32 = 3;
    /// Offset of ELF paddr from the required pseudo-physical address (numeric, PV).
    pub const PADDR_OFFSET: u32 = 4;
    /// Xen version the guest works with (string).
    pub const XEN_VERSION: u32 = 5;
    /// Guest OS name (string).
    pub const GUEST_OS: u32 = 6;
    /// Guest OS version (string).
    pub const GUEST_VERSION: u32 = 7;
    /// Loader type (string).
    pub const LOADER: u32 = 8;
    /// PAE mode (string).
    pub const PAE_MODE: u32 = 9;
    /// Feature string (string).
    pub const FEATURES: u32 = 10;
    /// BSD symbol table request (string).
    pub const BSD_SYMTAB: u32 = 11;
    /// Lowest hypervisor virtual address (numeric, PV).
    pub const HV_START_LOW: u32 = 12;
    /// L1 MFN-valid mask/value pairs (numeric array, PV).
    pub const L1_MFN_VALID: u32 = 13;
    /// Suspend-cancel support (numeric).
    pub const SUSPEND_CANCEL: u32 = 14;
    /// Initial P2M virtual address (numeric, PV).
    pub const INIT_P2M: u32 = 15;
    /// Module start given as pfn (numeric, PV).
    pub const MOD_START_PFN: u32 = 16;
    /// Supported features bitmap (numeric).
    pub const SUPPORTED_FEATURES: u32 = 17;
    /// 32-bit physical entry point for PVH (numeric).
    pub const PHYS32_ENTRY: u32 = 18;
    /// PVH relocation constraints, up to three u32: align, min, max (Xen 4.19).
    pub const PHYS32_RELOC: u32 = 19;
}

/// Symbolic name of a Xen note type, as in `XEN_ELFNOTE_<name>`.
pub fn xen_note_name(kind: u32) -> &'static str {
    match kind {
        note_type::INFO => "INFO",
        note_type::ENTRY => "ENTRY",
        note_type::HYPERCALL_PAGE => "HYPERCALL_PAGE",
        note_type::VIRT_BASE => "VIRT_BASE",
        note_type::PADDR_OFFSET => "PADDR_OFFSET",
        note_type::XEN_VERSION => "XEN_VERSION",
        note_type::GUEST_OS => "GUEST_OS",
        note_type::GUEST_VERSION => "GUEST_VERSION",
        note_type::LOADER => "LOADER",
        note_type::PAE_MODE => "PAE_MODE",
        note_type::FEATURES => "FEATURES",
        note_type::BSD_SYMTAB => "BSD_SYMTAB",
        note_type::HV_START_LOW => "HV_START_LOW",
        note_type::L1_MFN_VALID => "L1_MFN_VALID",
        note_type::SUSPEND_CANCEL => "SUSPEND_CANCEL",
        note_type::INIT_P2M => "INIT_P2M",
        note_type::MOD_START_PFN => "MOD_START_PFN",
        note_type::SUPPORTED_FEATURES => "SUPPORTED_FEATURES",
        note_type::PHYS32_ENTRY => "PHYS32_ENTRY",
        note_type::PHYS32_RELOC => "PHYS32_RELOC",
        _ => "UNKNOWN",
    }
}

/// `XEN_ELFNOTE_PHYS32_RELOC` contents; absent fields take the defaults of `elfnote.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Phys32Reloc {
    /// Required start alignment (default 0x200000).
    pub align: u32,
    /// Minimum start address (default 0).
    pub min: u32,
    /// Maximum address of the last byte (default 0xffffffff).
    pub max: u32,
}

/// Decoded value of a Xen note.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum XenNoteValue {
    /// A 4- or 8-byte numeric note ("Numeric types are either 4 or 8 bytes").
    Numeric(u64),
    /// A NUL-terminated ASCII string note.
    String(String),
    /// PVH relocation constraints.
    Phys32Reloc(Phys32Reloc),
    /// Anything else, raw.
    Bytes(Vec<u8>),
}

/// One Xen ELF note (owner "Xen").
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct XenNote {
    /// `XEN_ELFNOTE_*` number.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: u32,
    /// Symbolic name (`PHYS32_ENTRY`, ...).
    pub name: &'static str,
    /// Decoded description.
    pub value: XenNoteValue,
}

impl fmt::Display for XenNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.name, self.kind)?;
        match &self.value {
            XenNoteValue::Numeric(v) => write!(f, "{v:#x}"),
            XenNoteValue::String(s) => write!(f, "{s:?}"),
            XenNoteValue::Phys32Reloc(r) => {
                write!(f, "align {:#x} min {:#x} max {:#x}", r.align, r.min, r.max)
            }
            XenNoteValue::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// ELF class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    /// 32-bit ELF.
    Elf32,
    /// 64-bit ELF.
    Elf64,
}

/// A `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LoadSegment {
    /// Offset of the segment's bytes in the file.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Physical address: where a PVH (HVM container) loader puts it.
    pub paddr: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero-filled BSS).
    pub memsz: u64,
    /// `PF_*` flags.
    pub flags: u32,
    /// Alignment.
    pub align: u64,
}

impl LoadSegment {
    /// One past the last physical byte.
    pub fn paddr_end(&self) -> u64 {
        self.paddr.saturating_add(self.memsz)
    }
}

/// A parsed ELF kernel, borrowing the file bytes.
#[derive(Debug, Clone)]
pub struct ElfKernel<'a> {
    data: &'a [u8],
    /// 32- or 64-bit.
    pub class: ElfClass,
    /// Machine (`e_machine`).
    pub arch: Arch,
    /// `e_entry` (a virtual address for Linux).
    pub entry: u64,
    /// `PT_LOAD` segments in program-header order.
    pub segments: Vec<LoadSegment>,
    /// Xen notes from `PT_NOTE` segments (or `SHT_NOTE` sections if there are none).
    pub xen_notes: Vec<XenNote>,
    /// The `PT_NOTE` program headers, as [`LoadSegment`]s (`filesz` = `memsz` = the notes' size),
    /// for whoever rewrites the file ([`Self::parse_prefix`] needs them inside the prefix).
    pub note_segments: Vec<LoadSegment>,
}

/// Upper bound on program headers we accept; real kernels have fewer than 16.
const MAX_PHDRS: usize = 256;

impl<'a> ElfKernel<'a> {
    /// Parse an ELF image. Trailing data after the ELF (e.g. the relocation table Linux appends
    /// to `vmlinux.bin` inside a bzImage) is ignored, as the boot decompressor does.
    pub fn parse(data: &'a [u8]) -> Result<Self, ImageError> {
        Self::parse_within(data, None)
    }

    /// Parses the first bytes of an ELF file whose whole length is `file_len`: the headers and the
    /// `PT_NOTE` segments must lie in `prefix`, the `PT_LOAD` file bytes within `file_len`. For a
    /// loader that streams the segments from a decoder instead of holding the file
    /// ([`crate::stream`]); [`Self::segment_data`] then refuses what is not in the prefix.
    pub fn parse_prefix(prefix: &'a [u8], file_len: u64) -> Result<Self, ImageError> {
        Self::parse_within(prefix, Some(file_len))
    }

    fn parse_within(data: &'a [u8], file_len: Option<u64>) -> Result<Self, ImageError> {
        let ident = data.get(..EI_NIDENT).ok_or(ImageError::Truncated {
            what: "ELF identification",
            needed: EI_NIDENT as u64,
            available: data.len() as u64,
        })?;
        if ident.get(..4) != Some(&elf::ELFMAG[..]) {
            return Err(ImageError::UnknownFormat);
        }
        match ident.get(EI_CLASS).copied() {
            Some(2) => {
                Self::parse_as::<elf::FileHeader64<Endianness>>(data, ElfClass::Elf64, file_len)
            }
            Some(1) => {
                Self::parse_as::<elf::FileHeader32<Endianness>>(data, ElfClass::Elf32, file_len)
            }
            _ => Err(ImageError::Elf(
                "unknown ELF class (neither ELFCLASS32 nor ELFCLASS64)".into(),
            )),
        }
    }

    fn parse_as<H: FileHeader<Endian = Endianness>>(
        data: &'a [u8],
        class: ElfClass,
        file_len: Option<u64>,
    ) -> Result<Self, ImageError> {
        let header = H::parse(data).map_err(|e| ImageError::Elf(elf_msg(e)))?;
        let endian = header.endian().map_err(|e| ImageError::Elf(elf_msg(e)))?;
        let arch = Arch::from_e_machine(header.e_machine(endian).0);
        let entry: u64 = header.e_entry(endian).into();
        let phdrs = header
            .program_headers(endian, data)
            .map_err(|e| ImageError::Elf(elf_msg(e)))?;
        if phdrs.len() > MAX_PHDRS {
            return Err(ImageError::Elf("more than 256 program headers".into()));
        }
        let mut segments = Vec::new();
        let mut xen_notes = Vec::new();
        let mut note_segments = Vec::new();
        let mut saw_note_segment = false;
        for (index, ph) in phdrs.iter().enumerate() {
            let p_type = ph.p_type(endian);
            if p_type == elf::PT_LOAD {
                let seg = LoadSegment {
                    offset: ph.p_offset(endian).into(),
                    vaddr: ph.p_vaddr(endian).into(),
                    paddr: ph.p_paddr(endian).into(),
                    filesz: ph.p_filesz(endian).into(),
                    memsz: ph.p_memsz(endian).into(),
                    flags: ph.p_flags(endian).0,
                    align: ph.p_align(endian).into(),
                };
                if seg.filesz > seg.memsz {
                    return Err(ImageError::BadSegment {
                        index,
                        reason: "p_filesz is larger than p_memsz",
                    });
                }
                if seg.paddr.checked_add(seg.memsz).is_none() {
                    return Err(ImageError::BadSegment {
                        index,
                        reason: "p_paddr + p_memsz overflows",
                    });
                }
                let in_file = match file_len {
                    None => ph.data(endian, data).is_ok(),
                    Some(len) => seg.offset.checked_add(seg.filesz).is_some_and(|e| e <= len),
                };
                if !in_file {
                    return Err(ImageError::BadSegment {
                        index,
                        reason: "file bytes lie outside the image",
                    });
                }
                segments.push(seg);
            } else if p_type == elf::PT_NOTE {
                saw_note_segment = true;
                let size: u64 = ph.p_filesz(endian).into();
                note_segments.push(LoadSegment {
                    offset: ph.p_offset(endian).into(),
                    vaddr: ph.p_vaddr(endian).into(),
                    paddr: ph.p_paddr(endian).into(),
                    filesz: size,
                    memsz: size,
                    flags: ph.p_flags(endian).0,
                    align: ph.p_align(endian).into(),
                });
                let notes = ph
                    .notes(endian, data)
                    .map_err(|e| ImageError::Elf(elf_msg(e)))?;
                if let Some(notes) = notes {
                    collect_xen_notes::<H>(notes, endian, &mut xen_notes)?;
                }
            }
        }
        if !saw_note_segment {
            // Xen's libelf falls back to SHT_NOTE sections when there is no PT_NOTE.
            if let Ok(sections) = header.section_headers(endian, data) {
                for sh in sections {
                    if let Ok(Some(notes)) = sh.notes(endian, data) {
                        collect_xen_notes::<H>(notes, endian, &mut xen_notes)?;
                    }
                }
            }
        }
        Ok(Self {
            data,
            class,
            arch,
            entry,
            segments,
            xen_notes,
            note_segments,
        })
    }

    /// The whole ELF file.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The file bytes of a segment (`filesz` bytes at `offset`); checked at parse time.
    pub fn segment_data(&self, seg: &LoadSegment) -> Result<&'a [u8], ImageError> {
        let start = usize::try_from(seg.offset).ok();
        let len = usize::try_from(seg.filesz).ok();
        start
            .zip(len)
            .and_then(|(s, l)| Some((s, s.checked_add(l)?)))
            .and_then(|(s, e)| self.data.get(s..e))
            .ok_or(ImageError::BadSegment {
                index: 0,
                reason: "file bytes lie outside the image",
            })
    }

    /// First Xen note of the given type.
    pub fn xen_note(&self, kind: u32) -> Option<&XenNote> {
        self.xen_notes.iter().find(|n| n.kind == kind)
    }

    /// `XEN_ELFNOTE_PHYS32_ENTRY`, if present and numeric.
    pub fn pvh_entry(&self) -> Option<u64> {
        match self.xen_note(note_type::PHYS32_ENTRY)?.value {
            XenNoteValue::Numeric(v) => Some(v),
            _ => None,
        }
    }

    /// `XEN_ELFNOTE_PHYS32_RELOC`, if present.
    pub fn phys32_reloc(&self) -> Option<Phys32Reloc> {
        match self.xen_note(note_type::PHYS32_RELOC)?.value {
            XenNoteValue::Phys32Reloc(r) => Some(r),
            _ => None,
        }
    }

    /// Check this kernel can be started as a PVH guest and return its 32-bit entry.
    ///
    /// PVH requires an x86 ELF with `XEN_ELFNOTE_PHYS32_ENTRY` (`docs/misc/pvh.pandoc`); the
    /// entry runs in 32-bit protected mode without paging, so it must be below 4 GiB.
    pub fn pvh_entry_checked(&self) -> Result<u32, ImageError> {
        if !matches!(self.arch, Arch::X86 | Arch::X86_64) {
            return Err(ImageError::WrongArchitecture {
                found: self.arch,
                expected: "x86 or x86_64 (PVH)",
            });
        }
        let entry = self.pvh_entry().ok_or(ImageError::MissingPvhNote)?;
        u32::try_from(entry).map_err(|_| ImageError::PvhEntryAbove4G { entry })
    }
}

fn collect_xen_notes<H: FileHeader<Endian = Endianness>>(
    mut notes: NoteIterator<'_, H>,
    endian: Endianness,
    out: &mut Vec<XenNote>,
) -> Result<(), ImageError> {
    while let Some(note) = notes.next().map_err(|e| ImageError::Elf(elf_msg(e)))? {
        if note.name() != XEN_NOTE_NAME {
            continue;
        }
        if out.len() >= 256 {
            return Err(ImageError::Elf("more than 256 Xen notes".into()));
        }
        let kind = note.n_type(endian).0;
        out.push(XenNote {
            kind,
            name: xen_note_name(kind),
            value: decode_value(kind, note.desc(), endian),
        });
    }
    Ok(())
}

fn read_uint(bytes: &[u8], endian: Endianness) -> Option<u64> {
    let little = matches!(endian, Endianness::Little);
    match bytes.len() {
        4 => {
            let a: [u8; 4] = bytes.try_into().ok()?;
            Some(u64::from(if little {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }))
        }
        8 => {
            let a: [u8; 8] = bytes.try_into().ok()?;
            Some(if little {
                u64::from_le_bytes(a)
            } else {
                u64::from_be_bytes(a)
            })
        }
        _ => None,
    }
}

fn decode_value(kind: u32, desc: &[u8], endian: Endianness) -> XenNoteValue {
    use note_type::*;
    match kind {
        ENTRY | HYPERCALL_PAGE | VIRT_BASE | PADDR_OFFSET | HV_START_LOW | SUSPEND_CANCEL
        | INIT_P2M | MOD_START_PFN | SUPPORTED_FEATURES | PHYS32_ENTRY => {
            match read_uint(desc, endian) {
                Some(v) => XenNoteValue::Numeric(v),
                None => XenNoteValue::Bytes(desc.to_vec()),
            }
        }
        INFO | XEN_VERSION | GUEST_OS | GUEST_VERSION | LOADER | PAE_MODE | FEATURES
        | BSD_SYMTAB => {
            let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
            XenNoteValue::String(
                String::from_utf8_lossy(desc.get(..end).unwrap_or(&[])).into_owned(),
            )
        }
        PHYS32_RELOC if desc.len() <= 12 && desc.len().is_multiple_of(4) => {
            let word = |i: usize| {
                desc.get(i * 4..i * 4 + 4)
                    .and_then(|b| read_uint(b, endian))
                    .map(|v| v as u32)
            };
            XenNoteValue::Phys32Reloc(Phys32Reloc {
                align: word(0).unwrap_or(0x20_0000),
                min: word(1).unwrap_or(0),
                max: word(2).unwrap_or(0xffff_ffff),
            })
        }
        _ => XenNoteValue::Bytes(desc.to_vec()),
    }
}

fn elf_msg(e: object::read::Error) -> String {
    use alloc::string::ToString;
    e.to_string()
}
