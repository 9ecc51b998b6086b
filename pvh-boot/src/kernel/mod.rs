//! Kernel image formats: ELF (`vmlinux`), x86 bzImage and the arm64 `Image`.
//!
//! [`KernelImage::parse`] recognises the format from its magic numbers; [`pvh_elf_bytes`]
//! turns any x86 image into the ELF bytes a PVH guest is loaded from.

mod arm64;
mod bzimage;
mod elf;

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;

pub use arm64::Arm64Image;
pub use bzimage::BzImage;
pub use elf::{
    ElfClass, ElfKernel, LoadSegment, Phys32Reloc, XenNote, XenNoteValue, note_type, xen_note_name,
};

use crate::decompress;

/// Payload compression formats Linux can use (`CONFIG_KERNEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Compression {
    /// gzip (magic 1F 8B or 1F 9E).
    Gzip,
    /// bzip2 (magic "BZh").
    Bzip2,
    /// Legacy LZMA-alone (magic 5D 00).
    Lzma,
    /// xz (magic FD "7zXZ" 00).
    Xz,
    /// lzop (magic 89 "LZO").
    Lzo,
    /// LZ4 legacy framing (magic 02 21 4C 18).
    Lz4,
    /// zstd (magic 28 B5 2F FD).
    Zstd,
}

impl Compression {
    /// Lower-case name, as in `CONFIG_KERNEL_<NAME>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Lzma => "lzma",
            Self::Xz => "xz",
            Self::Lzo => "lzo",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// CPU architecture of an image (ELF `e_machine` values from the System V gABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `EM_X86_64` (62).
    X86_64,
    /// `EM_386` (3).
    X86,
    /// `EM_AARCH64` (183).
    Aarch64,
    /// `EM_ARM` (40).
    Arm,
    /// `EM_RISCV` (243).
    Riscv,
    /// Anything else: the raw `e_machine`.
    Other(u16),
}

impl Arch {
    /// Map an ELF `e_machine`.
    pub fn from_e_machine(machine: u16) -> Self {
        match machine {
            62 => Self::X86_64,
            3 => Self::X86,
            183 => Self::Aarch64,
            40 => Self::Arm,
            243 => Self::Riscv,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::X86_64 => f.write_str("x86_64"),
            Self::X86 => f.write_str("x86"),
            Self::Aarch64 => f.write_str("aarch64"),
            Self::Arm => f.write_str("arm"),
            Self::Riscv => f.write_str("riscv"),
            Self::Other(m) => write!(f, "e_machine {m}"),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why an image was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file ends before a structure it must contain.
    #[error("truncated image: {what} needs {needed} bytes, only {available} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// No known magic number.
    #[error(
        "unknown image format: not an ELF, x86 bzImage or arm64 Image (and not a compressed one)"
    )]
    UnknownFormat,
    /// The ELF structure is malformed.
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// A `PT_LOAD` segment is inconsistent.
    #[error("malformed ELF: PT_LOAD segment {index}: {reason}")]
    BadSegment {
        /// Index among the program headers.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The ELF lacks `XEN_ELFNOTE_PHYS32_ENTRY`.
    #[error(
        "ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, type 18); build the kernel with CONFIG_PVH=y"
    )]
    MissingPvhNote,
    /// The PVH entry point is not a 32-bit physical address.
    #[error("PVH entry {entry:#x} is above 4 GiB; PVH starts in 32-bit mode")]
    PvhEntryAbove4G {
        /// The entry from the note.
        entry: u64,
    },
    /// The image is for another architecture.
    #[error("wrong architecture: image is {found}, expected {expected}")]
    WrongArchitecture {
        /// What the image is.
        found: Arch,
        /// What the operation needs.
        expected: &'static str,
    },
    /// A bzImage's setup header is invalid.
    #[error("malformed bzImage: {0}")]
    BadBzImage(&'static str),
    /// An arm64 Image header is invalid.
    #[error("malformed arm64 Image: {0}")]
    BadArm64Image(&'static str),
    /// The payload's magic number matches no known compression.
    #[error(
        "unknown compression: payload starts with {magic:02x?}, which is neither ELF nor gzip/bzip2/lzma/xz/lzo/lz4/zstd"
    )]
    UnknownCompression {
        /// First bytes of the payload.
        magic: [u8; 4],
    },
    /// The compression is recognised but cannot be decoded here.
    #[error("unsupported compression {compression}: {reason}")]
    UnsupportedCompression {
        /// The format.
        compression: Compression,
        /// Why.
        reason: &'static str,
    },
    /// The decoder rejected the data.
    #[error("{compression} payload is corrupt: {reason}")]
    Decompress {
        /// The format.
        compression: Compression,
        /// Decoder message.
        reason: String,
    },
    /// The output would exceed the size limit.
    #[error("{compression} payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The format.
        compression: Compression,
        /// The limit.
        limit: u64,
    },
    /// The decoded length differs from the size trailer.
    #[error("{compression} payload decompressed to {actual} bytes but its trailer says {declared}")]
    SizeMismatch {
        /// The format.
        compression: Compression,
        /// From the trailer.
        declared: u64,
        /// Produced.
        actual: u64,
    },
    /// The decompressed payload is not what the container promised.
    #[error("{container} payload is not {expected} after decompression")]
    BadPayload {
        /// bzImage, gzip file, ...
        container: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// A recognised kernel image, borrowing the file bytes.
#[derive(Debug, Clone)]
pub enum KernelImage<'a> {
    /// An ELF file (`vmlinux`).
    Elf(ElfKernel<'a>),
    /// An x86 bzImage.
    BzImage(BzImage<'a>),
    /// An uncompressed arm64 `Image`.
    Arm64(Arm64Image),
    /// A whole-file compressed image (`vmlinux.gz`, `Image.gz`, ...): decompress, then parse.
    Compressed {
        /// The format.
        compression: Compression,
        /// The whole file.
        data: &'a [u8],
    },
}

impl<'a> KernelImage<'a> {
    /// Recognise and parse an image by its magic numbers.
    pub fn parse(data: &'a [u8]) -> Result<Self, ImageError> {
        if data.starts_with(b"\x7fELF") {
            return ElfKernel::parse(data).map(Self::Elf);
        }
        if bzimage::looks_like_bzimage(data) {
            return BzImage::parse(data).map(Self::BzImage);
        }
        if arm64::looks_like_arm64(data) {
            return Arm64Image::parse(data, None).map(Self::Arm64);
        }
        if let Some(compression) = decompress::detect(data) {
            return Ok(Self::Compressed { compression, data });
        }
        if data.len() < 64 {
            return Err(ImageError::Truncated {
                what: "kernel image header",
                needed: 64,
                available: data.len() as u64,
            });
        }
        Err(ImageError::UnknownFormat)
    }
}

/// The ELF bytes a PVH guest is loaded from: the file itself for an ELF, the decompressed
/// payload of a bzImage, or the decompressed content of a compressed ELF.
pub fn pvh_elf_bytes(data: &[u8]) -> Result<Cow<'_, [u8]>, ImageError> {
    pvh_elf_bytes_with_limit(data, decompress::DEFAULT_LIMIT)
}

/// [`pvh_elf_bytes`] with an explicit ceiling on decompressed size (used by the fuzzers).
pub fn pvh_elf_bytes_with_limit(data: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, ImageError> {
    match KernelImage::parse(data)? {
        KernelImage::Elf(_) => Ok(Cow::Borrowed(data)),
        KernelImage::BzImage(bz) => bz.vmlinux_with_limit(limit),
        KernelImage::Arm64(_) => Err(ImageError::WrongArchitecture {
            found: Arch::Aarch64,
            expected: "x86 or x86_64 (PVH)",
        }),
        KernelImage::Compressed { compression, data } => {
            let inner = decompress::decompress(data, compression, limit)?;
            if inner.starts_with(b"\x7fELF") {
                Ok(Cow::Owned(inner))
            } else if arm64::looks_like_arm64(&inner) {
                Err(ImageError::WrongArchitecture {
                    found: Arch::Aarch64,
                    expected: "x86 or x86_64 (PVH)",
                })
            } else {
                Err(ImageError::BadPayload {
                    container: compression.name(),
                    expected: "an ELF kernel",
                })
            }
        }
    }
}
