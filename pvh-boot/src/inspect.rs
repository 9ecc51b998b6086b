//! What the tool sees in a kernel image, for `domforge inspect IMAGE [--json]`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::decompress;
use crate::kernel::{
    Arch, Arm64Image, Compression, ElfClass, ElfKernel, ImageError, KernelImage, LoadSegment,
    XenNote,
};

/// Container format of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ImageFormat {
    /// 64-bit ELF.
    #[cfg_attr(feature = "serde", serde(rename = "elf64"))]
    Elf64,
    /// 32-bit ELF.
    #[cfg_attr(feature = "serde", serde(rename = "elf32"))]
    Elf32,
    /// x86 bzImage.
    #[cfg_attr(feature = "serde", serde(rename = "bzimage"))]
    BzImage,
    /// arm64 `Image`.
    #[cfg_attr(feature = "serde", serde(rename = "arm64-image"))]
    Arm64Image,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Elf64 => "ELF64",
            Self::Elf32 => "ELF32",
            Self::BzImage => "bzImage",
            Self::Arm64Image => "arm64 Image",
        })
    }
}

/// Everything `inspect` reports. The JSON form has exactly the fields `format`, `arch`,
/// `compression`, `entry`, `pvh_entry`, `xen_notes` and `segments`; `details` appear only in
/// the human-readable [`Display`](fmt::Display) form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct KernelReport {
    /// Outer container format (for a whole-file compressed image, the format inside).
    pub format: ImageFormat,
    /// Architecture.
    pub arch: Arch,
    /// Compression of the payload (bzImage) or of the whole file, if any.
    pub compression: Option<Compression>,
    /// ELF `e_entry` (of the payload vmlinux for a bzImage); for an arm64 Image the
    /// `text_offset`, where execution starts relative to the 2 MiB-aligned load base.
    pub entry: u64,
    /// `XEN_ELFNOTE_PHYS32_ENTRY`, the PVH entry point.
    pub pvh_entry: Option<u64>,
    /// All Xen ELF notes.
    pub xen_notes: Vec<XenNote>,
    /// `PT_LOAD` segments (an arm64 Image is reported as one segment at `text_offset`).
    pub segments: Vec<LoadSegment>,
    /// Format-specific facts, `(label, value)`, shown by `Display`.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub details: Vec<(&'static str, String)>,
}

/// Inspect any kernel image: ELF, bzImage (payload decompressed), arm64 Image, or a
/// gzip/xz/... compressed ELF or Image.
pub fn inspect_kernel(bytes: &[u8]) -> Result<KernelReport, ImageError> {
    inspect_kernel_with_limit(bytes, decompress::DEFAULT_LIMIT)
}

/// [`inspect_kernel`] with an explicit ceiling on decompressed size.
pub fn inspect_kernel_with_limit(bytes: &[u8], limit: usize) -> Result<KernelReport, ImageError> {
    match KernelImage::parse(bytes)? {
        KernelImage::Elf(elf) => Ok(elf_report(&elf, None, Vec::new())),
        KernelImage::BzImage(bz) => {
            let mut details = Vec::new();
            if let Some(v) = &bz.kernel_version {
                details.push(("kernel version", v.clone()));
            }
            details.push((
                "boot protocol",
                format!("{}.{:02}", bz.protocol >> 8, bz.protocol & 0xff),
            ));
            details.push(("setup sectors", format!("{}", bz.setup_sects)));
            details.push((
                "payload",
                format!(
                    "{} bytes at file offset {:#x}",
                    bz.payload.len(),
                    bz.payload_offset
                ),
            ));
            details.push(("64-bit entry (XLF_KERNEL_64)", yes_no(bz.is_64bit())));
            details.push(("relocatable", yes_no(bz.relocatable)));
            details.push(("kernel alignment", format!("{:#x}", bz.kernel_alignment)));
            details.push(("preferred load address", format!("{:#x}", bz.pref_address)));
            details.push(("init size", format!("{:#x}", bz.init_size)));
            details.push(("max command line", format!("{} bytes", bz.cmdline_size)));
            let vmlinux = bz.vmlinux_with_limit(limit)?;
            details.push(("decompressed vmlinux", format!("{} bytes", vmlinux.len())));
            let elf = ElfKernel::parse(&vmlinux)?;
            let mut report = elf_report(&elf, bz.compression, details);
            report.format = ImageFormat::BzImage;
            Ok(report)
        }
        KernelImage::Arm64(img) => Ok(arm64_report(&img)),
        KernelImage::Compressed { compression, data } => {
            let inner = decompress::decompress(data, compression, limit)?;
            match KernelImage::parse(&inner)? {
                KernelImage::Elf(elf) => {
                    let details =
                        alloc::vec![("decompressed size", format!("{} bytes", inner.len()))];
                    Ok(elf_report(&elf, Some(compression), details))
                }
                KernelImage::Arm64(_) => {
                    Ok(arm64_report(&Arm64Image::parse(&inner, Some(compression))?))
                }
                _ => Err(ImageError::BadPayload {
                    container: compression.name(),
                    expected: "an ELF or arm64 Image",
                }),
            }
        }
    }
}

fn yes_no(b: bool) -> String {
    String::from(if b { "yes" } else { "no" })
}

fn elf_report(
    elf: &ElfKernel<'_>,
    compression: Option<Compression>,
    mut details: Vec<(&'static str, String)>,
) -> KernelReport {
    let pvh = match elf.pvh_entry_checked() {
        Ok(_) => String::from("yes"),
        Err(e) => format!("no: {e}"),
    };
    details.push(("PVH bootable", pvh));
    if let Some(r) = elf.phys32_reloc() {
        details.push((
            "relocatable PVH (PHYS32_RELOC)",
            format!("align {:#x}, min {:#x}, max {:#x}", r.align, r.min, r.max),
        ));
    }
    KernelReport {
        format: match elf.class {
            ElfClass::Elf64 => ImageFormat::Elf64,
            ElfClass::Elf32 => ImageFormat::Elf32,
        },
        arch: elf.arch,
        compression,
        entry: elf.entry,
        pvh_entry: elf.pvh_entry(),
        xen_notes: elf.xen_notes.clone(),
        segments: elf.segments.clone(),
        details,
    }
}

fn arm64_report(img: &Arm64Image) -> KernelReport {
    let details = alloc::vec![
        ("image size", format!("{:#x} bytes", img.effective_size())),
        (
            "endianness",
            String::from(if img.big_endian() { "big" } else { "little" })
        ),
        (
            "page size",
            img.page_size()
                .map_or(String::from("unspecified"), |p| format!("{} KiB", p >> 10))
        ),
        (
            "placement",
            String::from(if img.place_anywhere() {
                "anywhere in RAM"
            } else {
                "2 MiB aligned, near the base of DRAM"
            })
        ),
        (
            "PVH bootable",
            String::from("no: arm64 kernels boot through a device tree (dom0less), not PVH")
        ),
    ];
    KernelReport {
        format: ImageFormat::Arm64Image,
        arch: Arch::Aarch64,
        compression: img.compression,
        entry: img.text_offset,
        pvh_entry: None,
        xen_notes: Vec::new(),
        segments: alloc::vec![LoadSegment {
            offset: 0,
            vaddr: img.text_offset,
            paddr: img.text_offset,
            filesz: img.file_len,
            memsz: img.effective_size(),
            flags: 7,
            align: 2 << 20,
        }],
        details,
    }
}

impl fmt::Display for KernelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format:       {}", self.format)?;
        writeln!(f, "architecture: {}", self.arch)?;
        match self.compression {
            Some(c) => writeln!(f, "compression:  {c}")?,
            None => writeln!(f, "compression:  none")?,
        }
        writeln!(f, "entry:        {:#x}", self.entry)?;
        match self.pvh_entry {
            Some(e) => writeln!(f, "PVH entry:    {e:#x} (XEN_ELFNOTE_PHYS32_ENTRY)")?,
            None => writeln!(f, "PVH entry:    none")?,
        }
        for (label, value) in &self.details {
            writeln!(f, "{label}: {value}")?;
        }
        if self.xen_notes.is_empty() {
            writeln!(f, "Xen notes:    none")?;
        } else {
            writeln!(f, "Xen notes:")?;
            for n in &self.xen_notes {
                writeln!(f, "  {n}")?;
            }
        }
        writeln!(f, "load segments:")?;
        writeln!(
            f,
            "  {:>2}  {:>10}  {:>18}  {:>12}  {:>10}  {:>10}  flags",
            "#", "offset", "vaddr", "paddr", "filesz", "memsz"
        )?;
        for (i, s) in self.segments.iter().enumerate() {
            let flags = [(4, 'R'), (2, 'W'), (1, 'X')]
                .iter()
                .map(|&(bit, c)| if s.flags & bit != 0 { c } else { '-' })
                .collect::<String>();
            writeln!(
                f,
                "  {i:>2}  {:>#10x}  {:>#18x}  {:>#12x}  {:>#10x}  {:>#10x}  {flags}",
                s.offset, s.vaddr, s.paddr, s.filesz, s.memsz
            )?;
        }
        Ok(())
    }
}
