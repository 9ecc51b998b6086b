//! x86 bzImage: the Linux/x86 boot protocol setup header and its payload.
//!
//! Offsets are from the setup header table in `Documentation/arch/x86/boot.rst`. The payload
//! (`payload_offset`/`payload_length`, protocol 2.08+) is the compressed `vmlinux.bin`,
//! an ELF, which is what a PVH loader needs: the setup code and decompressor stub are never
//! run under PVH.

use alloc::borrow::Cow;
use alloc::string::String;

use super::{Compression, ImageError};
use crate::decompress;

/// `boot_flag` at 0x1FE.
const BOOT_FLAG: u16 = 0xAA55;
/// `header` at 0x202: "HdrS".
const HDRS: &[u8; 4] = b"HdrS";
/// Setup header must reach `init_size` (0x260 + 4) for the fields we read.
const MIN_LEN: usize = 0x264;

pub(super) fn looks_like_bzimage(data: &[u8]) -> bool {
    data.get(0x202..0x206) == Some(&HDRS[..])
}

fn u8_at(d: &[u8], off: usize) -> u8 {
    d.get(off).copied().unwrap_or(0)
}
fn u16_at(d: &[u8], off: usize) -> u16 {
    d.get(off..off + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}
fn u32_at(d: &[u8], off: usize) -> u32 {
    d.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}
fn u64_at(d: &[u8], off: usize) -> u64 {
    d.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// A parsed bzImage.
#[derive(Debug, Clone)]
pub struct BzImage<'a> {
    /// Boot protocol version (`version`, 0x206), e.g. 0x020f.
    pub protocol: u16,
    /// Setup sectors (`setup_sects`, 0x1F1; 0 means 4).
    pub setup_sects: u8,
    /// `loadflags` (0x211).
    pub loadflags: u8,
    /// `xloadflags` (0x236); bit 0 `XLF_KERNEL_64` says a 64-bit entry exists.
    pub xloadflags: u16,
    /// `kernel_alignment` (0x230).
    pub kernel_alignment: u32,
    /// `relocatable_kernel` (0x234).
    pub relocatable: bool,
    /// `cmdline_size` (0x238): longest command line the kernel accepts, without the NUL.
    pub cmdline_size: u32,
    /// `pref_address` (0x258).
    pub pref_address: u64,
    /// `init_size` (0x260): linear memory the kernel needs during initialisation.
    pub init_size: u32,
    /// Human-readable version string (`kernel_version`, 0x20E), if present.
    pub kernel_version: Option<String>,
    /// Offset of the payload in the file.
    pub payload_offset: u64,
    /// The (compressed) payload, including Linux's 4-byte size trailer.
    pub payload: &'a [u8],
    /// Payload compression; `None` for an uncompressed ELF payload (`CONFIG_KERNEL_UNCOMPRESSED`).
    pub compression: Option<Compression>,
}

impl<'a> BzImage<'a> {
    /// Parse the setup header and locate the payload.
    pub fn parse(data: &'a [u8]) -> Result<Self, ImageError> {
        if data.len() < MIN_LEN {
            return Err(ImageError::Truncated {
                what: "bzImage setup header",
                needed: MIN_LEN as u64,
                available: data.len() as u64,
            });
        }
        if !looks_like_bzimage(data) {
            return Err(ImageError::BadBzImage("no \"HdrS\" signature at 0x202"));
        }
        if u16_at(data, 0x1fe) != BOOT_FLAG {
            return Err(ImageError::BadBzImage("boot_flag at 0x1FE is not 0xAA55"));
        }
        let protocol = u16_at(data, 0x206);
        if protocol < 0x0208 {
            return Err(ImageError::BadBzImage(
                "boot protocol older than 2.08 has no payload_offset/payload_length",
            ));
        }
        let setup_sects = match u8_at(data, 0x1f1) {
            0 => 4,
            n => n,
        };
        let setup_len = (u64::from(setup_sects) + 1) * 512;
        let payload_offset = setup_len + u64::from(u32_at(data, 0x248));
        let payload_length = u64::from(u32_at(data, 0x24c));
        let end = payload_offset
            .checked_add(payload_length)
            .ok_or(ImageError::BadBzImage(
                "payload_offset + payload_length overflows",
            ))?;
        let payload = usize::try_from(payload_offset)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| data.get(s..e))
            .ok_or(ImageError::Truncated {
                what: "bzImage payload",
                needed: end,
                available: data.len() as u64,
            })?;
        let compression = if payload.starts_with(b"\x7fELF") {
            None
        } else {
            Some(decompress::detect(payload).ok_or_else(|| {
                let mut magic = [0u8; 4];
                for (d, s) in magic.iter_mut().zip(payload) {
                    *d = *s;
                }
                ImageError::UnknownCompression { magic }
            })?)
        };
        let kernel_version = match u16_at(data, 0x20e) {
            0 => None,
            ptr => {
                let start = usize::from(ptr) + 0x200;
                data.get(start..).map(|rest| {
                    let rest = rest.get(..256).unwrap_or(rest);
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    String::from_utf8_lossy(rest.get(..end).unwrap_or(&[])).into_owned()
                })
            }
        };
        Ok(Self {
            protocol,
            setup_sects,
            loadflags: u8_at(data, 0x211),
            xloadflags: u16_at(data, 0x236),
            kernel_alignment: u32_at(data, 0x230),
            relocatable: u8_at(data, 0x234) != 0,
            cmdline_size: u32_at(data, 0x238),
            pref_address: u64_at(data, 0x258),
            init_size: u32_at(data, 0x260),
            kernel_version,
            payload_offset,
            payload,
            compression,
        })
    }

    /// Whether the kernel has a 64-bit entry point (`XLF_KERNEL_64`).
    pub fn is_64bit(&self) -> bool {
        self.xloadflags & 1 != 0
    }

    /// Decompress the payload to the ELF `vmlinux` (with the default size limit).
    pub fn vmlinux(&self) -> Result<Cow<'a, [u8]>, ImageError> {
        self.vmlinux_with_limit(decompress::DEFAULT_LIMIT)
    }

    /// Decompress the payload to the ELF `vmlinux`, refusing output above `limit` bytes.
    pub fn vmlinux_with_limit(&self, limit: usize) -> Result<Cow<'a, [u8]>, ImageError> {
        let elf = match self.compression {
            None => Cow::Borrowed(self.payload),
            Some(c) => Cow::Owned(decompress::decompress(self.payload, c, limit)?),
        };
        if !elf.starts_with(b"\x7fELF") {
            return Err(ImageError::BadPayload {
                container: "bzImage",
                expected: "an ELF vmlinux",
            });
        }
        Ok(elf)
    }
}
