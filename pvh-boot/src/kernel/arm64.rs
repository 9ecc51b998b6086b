//! The arm64 `Image` header (`Documentation/arch/arm64/booting.rst`, "Call the kernel
//! image"): 64 bytes at the start of the image.
//!
//! ```text
//!  0 u32 code0          8 u64 text_offset     16 u64 image_size   24 u64 flags
//! 32 u64 res2          40 u64 res3            48 u64 res4         56 u32 magic "ARM\x64"
//! 60 u32 res5 (PE header offset)
//! ```

use super::{Compression, ImageError};

/// `magic` at offset 56: "ARM\x64" little-endian.
const ARM64_MAGIC: u32 = 0x644d_5241;
const HEADER_LEN: usize = 64;

pub(super) fn looks_like_arm64(data: &[u8]) -> bool {
    data.get(56..60) == Some(&ARM64_MAGIC.to_le_bytes()[..])
}

/// A parsed arm64 `Image` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm64Image {
    /// Offset from a 2 MiB aligned base at which the image must be placed.
    pub text_offset: u64,
    /// Effective image size including BSS; 0 from kernels older than 3.17.
    pub image_size: u64,
    /// Raw `flags`.
    pub flags: u64,
    /// Length of the (decompressed) image file.
    pub file_len: u64,
    /// Whether the file was compressed (e.g. `Image.gz`).
    pub compression: Option<Compression>,
}

impl Arm64Image {
    /// Parse the header of an uncompressed image; `compression` records how it was stored.
    pub fn parse(data: &[u8], compression: Option<Compression>) -> Result<Self, ImageError> {
        let header = data.get(..HEADER_LEN).ok_or(ImageError::Truncated {
            what: "arm64 Image header",
            needed: HEADER_LEN as u64,
            available: data.len() as u64,
        })?;
        if !looks_like_arm64(header) {
            return Err(ImageError::BadArm64Image(
                "no \"ARM\\x64\" magic at offset 56",
            ));
        }
        let u64_at = |off: usize| {
            header
                .get(off..off + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let image = Self {
            text_offset: u64_at(8),
            image_size: u64_at(16),
            flags: u64_at(24),
            file_len: data.len() as u64,
            compression,
        };
        if image.image_size != 0 && image.image_size < HEADER_LEN as u64 {
            return Err(ImageError::BadArm64Image(
                "image_size is smaller than the header",
            ));
        }
        Ok(image)
    }

    /// Bit 0 of `flags`: kernel endianness (true = big-endian).
    pub fn big_endian(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Bits 1-2 of `flags`: kernel page size in bytes, `None` if unspecified.
    pub fn page_size(&self) -> Option<u32> {
        match (self.flags >> 1) & 3 {
            1 => Some(4 << 10),
            2 => Some(16 << 10),
            3 => Some(64 << 10),
            _ => None,
        }
    }

    /// Bit 3 of `flags`: the image may be placed anywhere in memory (otherwise as close as
    /// possible to the base of DRAM).
    pub fn place_anywhere(&self) -> bool {
        self.flags & 8 != 0
    }

    /// Bytes of memory the image occupies from its load address; booting.rst says to
    /// assume `text_offset` 0x80000 and no known size for `image_size == 0`.
    pub fn effective_size(&self) -> u64 {
        if self.image_size == 0 {
            self.file_len
        } else {
            self.image_size
        }
    }
}
