//! What a file is, by its first bytes, and whether it is as long as its own headers say.
//!
//! Two questions every caller that is handed a boot file asks before trusting it:
//! - [`identify`]: what does this look like? (`"a device tree blob"`), for messages about a file
//!   given in the wrong place — a DTB or a kernel named as the manifest, a ramdisk as a kernel.
//! - [`check_complete`]: does the file hold every byte its headers promise? A download or copy
//!   cut short keeps a valid header, so magic numbers alone accept it, and Xen would then copy
//!   past the end of the boot module. Each format is checked against its own size fields:
//!
//! | format | the promise checked |
//! |---|---|
//! | flattened device tree | `totalsize` (header word 1), and the struct/strings blocks inside it (devicetree-specification §5.2) |
//! | arm64 `Image` | the PE/COFF section table an EFI-stub kernel (and Xen) carries at `res5` (booting.rst): every section's `PointerToRawData + SizeOfRawData`; and the file is not longer than `image_size` |
//! | x86 bzImage | the payload (`payload_offset` + `payload_length`) and `syssize` (16-byte units after the setup sectors), boot.rst |
//! | U-Boot legacy `uImage` | 64-byte header + `ih_size` (u-boot `include/image.h`) |
//! | ELF | every `PT_LOAD` segment's `p_offset + p_filesz` (checked by [`crate::kernel`]'s parser) |
//! | newc cpio (initramfs) | every entry's name and data (`c_namesize`, `c_filesize`), and a closing `TRAILER!!!` (Linux `init/initramfs.c`) |
//! | gzip, xz, lzma, lz4, bzip2, zstd | the compressed stream ends properly; a cpio or Image inside is checked in turn |
//!
//! LZO streams are not decoded (there is no decoder here; see [`crate::decompress`]).

use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::decompress;
use crate::kernel::{BzImage, Compression, ImageError};

/// A file shorter (or longer) than its own headers say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The format, with an article: `"an arm64 Image"`.
    pub format: &'static str,
    /// Which promise is broken, with both numbers.
    pub reason: String,
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cut short or damaged: {}", self.format, self.reason)
    }
}

const DTB_MAGIC: [u8; 4] = [0xd0, 0x0d, 0xfe, 0xed];
const UIMAGE_MAGIC: [u8; 4] = [0x27, 0x05, 0x19, 0x56];
const ARM64_MAGIC: &[u8; 4] = b"ARMd";

fn be32(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}
fn le16(d: &[u8], off: usize) -> Option<u16> {
    d.get(off..off + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
}
fn le32(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}
fn le64(d: &[u8], off: usize) -> Option<u64> {
    d.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

/// What the bytes look like, with an article (`"a device tree blob"`), or `None` when nothing
/// is recognised. Text is not judged here: callers that expect text know what they expected.
pub fn identify(bytes: &[u8]) -> Option<&'static str> {
    let m = |magic: &[u8]| bytes.starts_with(magic);
    Some(if m(&DTB_MAGIC) {
        "a device tree blob (DTB)"
    } else if m(b"DFBC") {
        "a domforge boot blob"
    } else if m(b"\x7fELF") {
        "an ELF file (a kernel or a program)"
    } else if bytes.get(56..60) == Some(&ARM64_MAGIC[..]) {
        "an arm64 Image (a Linux or Xen kernel)"
    } else if bytes.get(0x202..0x206) == Some(&b"HdrS"[..]) {
        "an x86 bzImage (a Linux kernel)"
    } else if m(&UIMAGE_MAGIC) {
        "a U-Boot legacy image (uImage)"
    } else if m(b"070701") || m(b"070702") {
        "a cpio archive (an initramfs)"
    } else if m(b"070707") {
        "an old-format cpio archive"
    } else if m(b"MZ") {
        "a PE/EFI executable"
    } else if m(b"PK\x03\x04") {
        "a zip archive"
    } else if m(b"!<arch>\n") {
        "an ar archive (a .deb package?)"
    } else if bytes.get(257..262) == Some(&b"ustar"[..]) {
        "a tar archive"
    } else if bytes.get(0x438..0x43a) == Some(&[0x53, 0xef][..]) {
        "an ext2/3/4 file system image"
    } else if let Some(c) = decompress::detect(bytes) {
        match c {
            Compression::Gzip => "gzip-compressed data",
            Compression::Bzip2 => "bzip2-compressed data",
            Compression::Lzma => "lzma-compressed data",
            Compression::Xz => "xz-compressed data",
            Compression::Lzo => "lzo-compressed data",
            Compression::Lz4 => "lz4-compressed data",
            Compression::Zstd => "zstd-compressed data",
        }
    } else {
        return None;
    })
}

/// Checks a boot file against the sizes its own headers promise (see the module docs for each
/// format). Files of no format listed there pass: there is nothing to hold them to.
pub fn check_complete(bytes: &[u8]) -> Result<(), Incomplete> {
    check_with_limit(bytes, decompress::DEFAULT_LIMIT, 0)
}

fn check_with_limit(bytes: &[u8], limit: usize, depth: u8) -> Result<(), Incomplete> {
    let len = bytes.len() as u64;
    if bytes.starts_with(&DTB_MAGIC) {
        return dtb(bytes);
    }
    if bytes.starts_with(&UIMAGE_MAGIC) {
        return uimage(bytes);
    }
    if bytes.get(56..60) == Some(&ARM64_MAGIC[..]) {
        return arm64(bytes, "an arm64 Image");
    }
    if bytes.get(0x202..0x206) == Some(&b"HdrS"[..]) {
        return bzimage(bytes);
    }
    if bytes.starts_with(b"\x7fELF") {
        // The kernel parser bounds-checks every PT_LOAD segment against the file.
        return match crate::kernel::ElfKernel::parse(bytes) {
            Err(ImageError::Truncated {
                what,
                needed,
                available,
            }) => Err(Incomplete {
                format: "an ELF file",
                reason: format!("{what} needs {needed} bytes, the file has {available}"),
            }),
            Err(ImageError::BadSegment { index, reason }) if reason.contains("outside") => {
                Err(Incomplete {
                    format: "an ELF file",
                    reason: format!("PT_LOAD segment {index} {reason} ({len} bytes)"),
                })
            }
            _ => Ok(()),
        };
    }
    if bytes.starts_with(b"070701") || bytes.starts_with(b"070702") {
        return cpio(bytes, limit, depth);
    }
    if let Some(c) = decompress::detect(bytes) {
        return compressed(bytes, c, limit, depth);
    }
    Ok(())
}

fn dtb(b: &[u8]) -> Result<(), Incomplete> {
    const F: &str = "a device tree blob";
    let len = b.len() as u64;
    let field = |off| be32(b, off).map(u64::from);
    let (Some(total), Some(off_struct), Some(off_strings), Some(size_strings), Some(size_struct)) =
        (field(4), field(8), field(12), field(32), field(36))
    else {
        return Err(Incomplete {
            format: F,
            reason: format!("the 40-byte header is cut at {len} bytes"),
        });
    };
    if total > len {
        return Err(Incomplete {
            format: F,
            reason: format!("its header says totalsize {total} bytes, the file has {len}"),
        });
    }
    for (name, off, size) in [
        ("structure block", off_struct, size_struct),
        ("strings block", off_strings, size_strings),
    ] {
        if off + size > total {
            return Err(Incomplete {
                format: F,
                reason: format!(
                    "its {name} ends at byte {}, past totalsize {total}",
                    off + size
                ),
            });
        }
    }
    Ok(())
}

fn uimage(b: &[u8]) -> Result<(), Incomplete> {
    const F: &str = "a U-Boot uImage";
    let len = b.len() as u64;
    let Some(size) = be32(b, 12).filter(|_| b.len() >= 64) else {
        return Err(Incomplete {
            format: F,
            reason: format!("the 64-byte header is cut at {len} bytes"),
        });
    };
    let want = 64 + u64::from(size);
    if want > len {
        return Err(Incomplete {
            format: F,
            reason: format!(
                "its header says 64 + {size} (ih_size) = {want} bytes, the file has {len}"
            ),
        });
    }
    Ok(())
}

/// An arm64 Image (a Linux kernel, or Xen, which carries the same header).
fn arm64(b: &[u8], format: &'static str) -> Result<(), Incomplete> {
    let len = b.len() as u64;
    let image_size = le64(b, 16).unwrap_or(0);
    // image_size counts text, data and BSS; the file stops before BSS, so it is never longer.
    if image_size != 0 && len > image_size {
        return Err(Incomplete {
            format,
            reason: format!(
                "the file has {len} bytes, more than the {image_size} (image_size) its header says the image occupies"
            ),
        });
    }
    // res5 (offset 60): the offset of the PE header of an EFI-stub image, 0 without one.
    let Some(pe) = le32(b, 60).filter(|&o| o != 0).map(|o| o as usize) else {
        return Ok(());
    };
    if b.get(pe..pe + 4) != Some(&b"PE\0\0"[..]) {
        if pe + 4 > b.len() {
            return Err(Incomplete {
                format,
                reason: format!(
                    "its header puts the PE header at byte {pe}, the file has {len} bytes"
                ),
            });
        }
        return Ok(());
    }
    // COFF file header (PE format spec): NumberOfSections at +6, SizeOfOptionalHeader at +20;
    // the section table follows the optional header, 40 bytes per section with SizeOfRawData
    // at +16 and PointerToRawData at +20.
    let (Some(sections), Some(optional)) = (le16(b, pe + 6), le16(b, pe + 20)) else {
        return Err(Incomplete {
            format,
            reason: format!("the PE header at byte {pe} is cut at {len} bytes"),
        });
    };
    let table = pe + 24 + usize::from(optional);
    for i in 0..usize::from(sections) {
        let at = table + i * 40;
        let (Some(raw_size), Some(raw_at)) = (le32(b, at + 16), le32(b, at + 20)) else {
            return Err(Incomplete {
                format,
                reason: format!("the PE section table is cut at {len} bytes"),
            });
        };
        let end = u64::from(raw_at) + u64::from(raw_size);
        if end > len {
            let name = b.get(at..at + 8).unwrap_or(&[]);
            let name = core::str::from_utf8(name)
                .unwrap_or("?")
                .trim_end_matches('\0');
            return Err(Incomplete {
                format,
                reason: format!(
                    "its PE header places section `{name}` up to byte {end}, the file has {len}"
                ),
            });
        }
    }
    Ok(())
}

fn bzimage(b: &[u8]) -> Result<(), Incomplete> {
    const F: &str = "an x86 bzImage";
    let len = b.len() as u64;
    match BzImage::parse(b) {
        Err(ImageError::Truncated {
            what,
            needed,
            available,
        }) => {
            return Err(Incomplete {
                format: F,
                reason: format!("its {what} needs {needed} bytes, the file has {available}"),
            });
        }
        Err(_) => return Ok(()),
        Ok(_) => {}
    }
    // syssize (0x1F4, protocol 2.04+): the protected-mode code in 16-byte units after the setup
    // sectors. Linux's build tool rounds the last unit up, so up to 15 bytes may be missing.
    let setup_sects = match b.get(0x1f1).copied().unwrap_or(0) {
        0 => 4,
        n => u64::from(n),
    };
    let setup = (setup_sects + 1) * 512;
    let syssize = u64::from(le32(b, 0x1f4).unwrap_or(0));
    let want = setup + syssize * 16;
    if want > len + 15 {
        return Err(Incomplete {
            format: F,
            reason: format!(
                "its header says {setup} setup bytes + {syssize} × 16 (syssize) = {want} bytes, the file has {len}"
            ),
        });
    }
    Ok(())
}

fn compressed(b: &[u8], c: Compression, limit: usize, depth: u8) -> Result<(), Incomplete> {
    // A whole-file compressed kernel (Image.gz, vmlinux.xz) carries Linux's size trailer and is
    // checked by the kernel parser; anything else is a compressed file such as an initramfs.
    let inner = match decompress::decompress_file(b, c, limit) {
        Ok(Some(inner)) => inner,
        Ok(None) => return Ok(()),
        Err(ImageError::DecompressedTooLarge { .. }) => return Ok(()),
        Err(e) => {
            return Err(Incomplete {
                format: compressed_name(c),
                reason: format!("the {c} stream does not decode to its end ({e})"),
            });
        }
    };
    if depth >= 2 {
        return Ok(());
    }
    if inner.get(56..60) == Some(&ARM64_MAGIC[..]) {
        return arm64(&inner, "a compressed arm64 Image");
    }
    if inner.starts_with(b"070701") || inner.starts_with(b"070702") {
        return cpio(&inner, limit, depth + 1).map_err(|e| Incomplete {
            format: compressed_name(c),
            reason: format!("the cpio archive inside: {}", e.reason),
        });
    }
    Ok(())
}

fn compressed_name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "a gzip file",
        Compression::Bzip2 => "a bzip2 file",
        Compression::Lzma => "an lzma file",
        Compression::Xz => "an xz file",
        Compression::Lzo => "an lzo file",
        Compression::Lz4 => "an lz4 file",
        Compression::Zstd => "a zstd file",
    }
}

/// newc/crc cpio archives as the kernel unpacks them (`init/initramfs.c`): 110-byte headers
/// of 8-digit hex fields, the name and the data each padded to 4 bytes, `TRAILER!!!` closing an
/// archive; zero padding and further archives (plain or compressed) may follow.
fn cpio(b: &[u8], limit: usize, depth: u8) -> Result<(), Incomplete> {
    const F: &str = "a cpio archive";
    let len = b.len();
    let hex = |at: usize| {
        b.get(at..at + 8)
            .and_then(|h| core::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
    };
    let align4 = |x: usize| x.div_ceil(4) * 4;
    let mut pos = 0usize;
    let mut closed = false;
    while pos < len {
        let rest = b.get(pos..).unwrap_or(&[]);
        if rest.first() == Some(&0) {
            pos += 1;
            continue;
        }
        if !(rest.starts_with(b"070701") || rest.starts_with(b"070702")) {
            if closed && let Some(c) = decompress::detect(rest) {
                return compressed(rest, c, limit, depth);
            }
            return Err(Incomplete {
                format: F,
                reason: format!("byte {pos} is neither a cpio header nor padding"),
            });
        }
        closed = false;
        let (Some(filesize), Some(namesize)) = (hex(pos + 6 + 6 * 8), hex(pos + 6 + 11 * 8)) else {
            return Err(Incomplete {
                format: F,
                reason: format!("the entry header at byte {pos} is cut at {len} bytes"),
            });
        };
        let name_at = pos + 110;
        let name_end = name_at.saturating_add(namesize);
        let data_at = align4(name_end);
        let data_end = data_at.saturating_add(filesize);
        let name = b
            .get(name_at..name_end.min(len))
            .and_then(|n| core::str::from_utf8(n).ok())
            .unwrap_or("?")
            .trim_end_matches('\0');
        if data_end > len {
            return Err(Incomplete {
                format: F,
                reason: format!(
                    "entry `{name}` at byte {pos} needs {filesize} bytes of data up to byte {data_end}, the file has {len}"
                ),
            });
        }
        if name == "TRAILER!!!" {
            closed = true;
        }
        pos = align4(data_end);
    }
    if !closed {
        return Err(Incomplete {
            format: F,
            reason: format!(
                "it ends at byte {len} without the `TRAILER!!!` entry that closes an archive"
            ),
        });
    }
    Ok(())
}
