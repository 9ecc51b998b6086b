//! Decompressors for the kernel payload formats Linux uses.
//!
//! Linux compresses `vmlinux.bin` with one of gzip, bzip2, lzma, xz, lzo, lz4 or zstd and,
//! for every format except gzip, appends the uncompressed size as a 4-byte little-endian
//! word (`size_append` in `scripts/Makefile.lib`, used by the `*_with_size` rules of
//! `arch/x86/boot/compressed/Makefile`); for gzip the last four bytes are the gzip `ISIZE`,
//! which is the same number. `arch/x86/boot/compressed/mkpiggy.c` reads the output length
//! from there, and so do we: the trailer is cut before decoding (xz and lz4 decoders reject
//! it as garbage otherwise) and the decoded length is checked against it.
//!
//! All decoders are pure Rust. gzip (`miniz_oxide`), xz and lzma (`lzma-rust2`'s sans-I/O
//! streams, which handle the x86 BCJ filter Linux's `xz_wrap.sh` uses), lz4 legacy framing
//! (`lz4_flex` block API plus ~20 lines of framing) and zstd (`ruzstd`) work without `std`.
//! bzip2 needs the `std` feature: the only pure-Rust decoder on crates.io, `bzip2-rs`, is
//! written against `std::io` (and `libbz2-rs-sys` is a C-ABI port needing `unsafe` calls).
//! LZO has no maintained pure-Rust decoder and is reported as unsupported.
//!
//! Each decoder is a cargo feature (`gzip`, `xz` — which also decodes `.lzma` —, `lz4`, `zstd`,
//! `bzip2`), all on by default. A program that only ever receives kernels prepared on the host
//! (decompressed ELF or arm64 `Image`) can leave them out to be smaller; a payload whose decoder
//! is left out is refused with [`ImageError::UnsupportedCompression`] naming the feature, never
//! misread ([`has_decoder`] tells in advance).

use alloc::format;
use alloc::vec::Vec;

use crate::kernel::{Compression, ImageError};

/// Default ceiling on a decompressed kernel: Linux x86-64's `KERNEL_IMAGE_SIZE` is 1 GiB,
/// real vmlinux files are well below 256 MiB.
pub const DEFAULT_LIMIT: usize = 512 << 20;

#[cfg(feature = "xz")]
/// Memory the xz/lzma dictionaries may take, in KiB. Linux uses a 32 MiB (xz) or up to
/// 64 MiB (`lzma -9`) dictionary.
const LZMA_MEM_LIMIT_KB: u32 = 256 * 1024;

/// Growth step of the output buffer.
#[cfg(feature = "xz")]
const CHUNK: usize = 1 << 20;

/// Identify a compressed payload by its magic, as `Documentation/arch/x86/boot.rst`
/// (field `payload_offset`) prescribes.
pub fn detect(payload: &[u8]) -> Option<Compression> {
    let m = |magic: &[u8]| payload.starts_with(magic);
    if m(&[0x1f, 0x8b]) || m(&[0x1f, 0x9e]) {
        Some(Compression::Gzip)
    } else if m(b"BZh") {
        Some(Compression::Bzip2)
    } else if m(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Compression::Xz)
    } else if m(&[0x5d, 0x00]) {
        Some(Compression::Lzma)
    } else if m(&[0x89, b'L', b'Z', b'O']) {
        Some(Compression::Lzo)
    } else if m(&[0x02, 0x21, 0x4c, 0x18]) {
        Some(Compression::Lz4)
    } else if m(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// Whether this build carries the decoder for `compression` (see the module docs on features).
pub const fn has_decoder(compression: Compression) -> bool {
    match compression {
        Compression::Gzip => cfg!(feature = "gzip"),
        Compression::Xz | Compression::Lzma => cfg!(feature = "xz"),
        Compression::Lz4 => cfg!(feature = "lz4"),
        Compression::Zstd => cfg!(feature = "zstd"),
        Compression::Bzip2 => cfg!(feature = "bzip2"),
        Compression::Lzo => false,
    }
}

/// The error for a payload whose decoder this build leaves out.
#[allow(dead_code)] // every arm is used only when some feature is off
fn left_out(compression: Compression) -> ImageError {
    let reason = match compression {
        Compression::Gzip => {
            "this build leaves out the gzip decoder (pvh-boot feature `gzip`); give it the \
             kernel uncompressed (the host can prepare it) or build with the feature"
        }
        Compression::Xz | Compression::Lzma => {
            "this build leaves out the xz/lzma decoder (pvh-boot feature `xz`); give it the \
             kernel uncompressed (the host can prepare it) or build with the feature"
        }
        Compression::Lz4 => {
            "this build leaves out the lz4 decoder (pvh-boot feature `lz4`); give it the \
             kernel uncompressed (the host can prepare it) or build with the feature"
        }
        Compression::Zstd => {
            "this build leaves out the zstd decoder (pvh-boot feature `zstd`); give it the \
             kernel uncompressed (the host can prepare it) or build with the feature"
        }
        Compression::Bzip2 => {
            "this build leaves out the bzip2 decoder (pvh-boot feature `bzip2`, which needs \
             `std`); give it the kernel uncompressed (the host can prepare it) or build with the \
             feature"
        }
        Compression::Lzo => "no pure-Rust LZO decoder is available",
    };
    ImageError::UnsupportedCompression {
        compression,
        reason,
    }
}

/// Decompress a Linux kernel payload (with its 4-byte size trailer) of the given format.
///
/// Output larger than `limit` bytes is rejected before it is produced.
pub fn decompress(
    payload: &[u8],
    compression: Compression,
    limit: usize,
) -> Result<Vec<u8>, ImageError> {
    let split = payload.len().checked_sub(4).ok_or(ImageError::Truncated {
        what: "compressed payload size trailer",
        needed: 4,
        available: payload.len() as u64,
    })?;
    let (body, trailer) = payload.split_at(split);
    let declared = u32::from_le_bytes(trailer.try_into().map_err(|_| ImageError::Truncated {
        what: "compressed payload size trailer",
        needed: 4,
        available: 0,
    })?);
    if compression != Compression::Gzip && declared as usize > limit {
        return Err(ImageError::DecompressedTooLarge {
            compression,
            limit: limit as u64,
        });
    }
    let out = decode(compression, payload, body, declared as usize, limit)?;
    // gzip's ISIZE is the size modulo 2^32, the other trailers are plain u32.
    if out.len() as u64 & 0xffff_ffff != u64::from(declared) {
        return Err(ImageError::SizeMismatch {
            compression,
            declared: u64::from(declared),
            actual: out.len() as u64,
        });
    }
    Ok(out)
}

/// Decompress a whole compressed *file* (a `.cpio.gz` ramdisk, an `.xz` archive), which has no
/// Linux size trailer: the stream itself must end properly, so a file cut short is an error.
/// Returns `Ok(None)` for LZO, which has no decoder here.
#[allow(unused_variables)] // all of them unused when every decoder feature is off
pub fn decompress_file(
    data: &[u8],
    compression: Compression,
    limit: usize,
) -> Result<Option<Vec<u8>>, ImageError> {
    let out = match compression {
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip(data, limit)?,
        #[cfg(feature = "xz")]
        Compression::Xz => xz(data, limit)?,
        #[cfg(feature = "xz")]
        Compression::Lzma => lzma(data, limit)?,
        #[cfg(feature = "lz4")]
        Compression::Lz4 => lz4_legacy(data, limit)?,
        #[cfg(feature = "bzip2")]
        Compression::Bzip2 => bzip2(data, limit)?,
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd_file(data, limit)?,
        // LZO has no decoder here; nor has a codec whose feature is off.
        #[allow(unreachable_patterns)]
        _ => return Ok(None),
    };
    Ok(Some(out))
}

#[cfg(feature = "zstd")]
/// zstd frames of unknown total size (a `.zst` file has no Linux size trailer), decoded a
/// megabyte at a time; a frame cut short fails reading its next block.
fn zstd_file(mut data: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
    const C: Compression = Compression::Zstd;
    let mut out = Vec::new();
    let mut decoder = FrameDecoder::new();
    while !data.is_empty() {
        decoder.reset(&mut data).map_err(|e| fail(C, e))?;
        while !decoder.is_finished() {
            decoder
                .decode_blocks(&mut data, BlockDecodingStrategy::UptoBytes(CHUNK))
                .map_err(|e| fail(C, e))?;
            if let Some(chunk) = decoder.collect() {
                if out.len() + chunk.len() > limit {
                    return Err(ImageError::DecompressedTooLarge {
                        compression: C,
                        limit: limit as u64,
                    });
                }
                out.extend_from_slice(&chunk);
            }
        }
        if let Some(chunk) = decoder.collect() {
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

/// Runs the decoder for `compression`: `payload` is the whole payload (gzip reads its own
/// trailer), `body` the payload without the size trailer, `declared` the trailer's size.
#[allow(unused_variables)] // all of them unused when every decoder feature is off
fn decode(
    compression: Compression,
    payload: &[u8],
    body: &[u8],
    declared: usize,
    limit: usize,
) -> Result<Vec<u8>, ImageError> {
    match compression {
        #[cfg(feature = "gzip")]
        Compression::Gzip => gzip(payload, limit),
        #[cfg(feature = "xz")]
        Compression::Xz => xz(body, limit),
        #[cfg(feature = "xz")]
        Compression::Lzma => lzma(body, limit),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => lz4_legacy(body, limit),
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd(body, declared),
        #[cfg(feature = "bzip2")]
        Compression::Bzip2 => bzip2(body, limit),
        Compression::Lzo => Err(ImageError::UnsupportedCompression {
            compression,
            reason: "no pure-Rust LZO decoder is available; rebuild the kernel with another KERNEL_* compression",
        }),
        #[allow(unreachable_patterns)] // reachable when a decoder feature is off
        _ => Err(left_out(compression)),
    }
}

#[allow(dead_code)] // unused when every decoder feature is off
fn fail(compression: Compression, reason: impl core::fmt::Debug) -> ImageError {
    ImageError::Decompress {
        compression,
        reason: format!("{reason:?}"),
    }
}

#[cfg(feature = "xz")]
fn grow(out: &mut Vec<u8>, compression: Compression, limit: usize) -> Result<(), ImageError> {
    let len = out.len();
    if len >= limit {
        return Err(ImageError::DecompressedTooLarge {
            compression,
            limit: limit as u64,
        });
    }
    let step = CHUNK.min(limit - len);
    out.try_reserve(step)
        .map_err(|_| fail(compression, "out of memory"))?;
    out.resize(len + step, 0);
    Ok(())
}

/// gzip (RFC 1952) header, then raw deflate.
#[cfg(feature = "gzip")]
fn gzip(data: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    const C: Compression = Compression::Gzip;
    let trunc = || ImageError::Truncated {
        what: "gzip header",
        needed: 10,
        available: data.len() as u64,
    };
    let header = data.get(..10).ok_or_else(trunc)?;
    let (method, flags) = (header.get(2).copied(), header.get(3).copied().unwrap_or(0));
    if method != Some(8) {
        return Err(fail(C, "compression method is not deflate"));
    }
    let mut pos = 10usize;
    if flags & 0x04 != 0 {
        // FEXTRA: 2-byte length, then that many bytes.
        let xlen = data.get(pos..pos + 2).ok_or_else(trunc)?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for bit in [0x08u8, 0x10] {
        // FNAME, FCOMMENT: NUL-terminated strings.
        if flags & bit != 0 {
            let rest = data.get(pos..).ok_or_else(trunc)?;
            let nul = rest.iter().position(|&b| b == 0).ok_or_else(trunc)?;
            pos += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2; // FHCRC
    }
    let body = data.get(pos..).ok_or_else(trunc)?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| match e.status {
        miniz_oxide::inflate::TINFLStatus::HasMoreOutput => ImageError::DecompressedTooLarge {
            compression: C,
            limit: limit as u64,
        },
        status => fail(C, status),
    })
}

/// xz container (with the x86 BCJ filter for Linux kernels).
#[cfg(feature = "xz")]
fn xz(body: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    let mut stream = lzma_rust2::XzStream::new_mem_limit(false, LZMA_MEM_LIMIT_KB);
    drive_lzma_stream(Compression::Xz, body, limit, |i, o| {
        stream.process(i, o, lzma_rust2::Action::Finish)
    })
}

/// Legacy `.lzma` (LZMA-alone) with its 13-byte header.
#[cfg(feature = "xz")]
fn lzma(body: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    let mut stream = lzma_rust2::LzmaStream::new_mem_limit(LZMA_MEM_LIMIT_KB, None);
    drive_lzma_stream(Compression::Lzma, body, limit, |i, o| {
        stream.process(i, o, lzma_rust2::Action::Finish)
    })
}

/// Feeds `body` through one of lzma-rust2's streaming decoders (xz and LZMA-alone share the
/// `process(input, output, action) -> StreamResult` shape), growing the output up to `limit`.
#[cfg(feature = "xz")]
fn drive_lzma_stream<E: core::fmt::Debug>(
    c: Compression,
    body: &[u8],
    limit: usize,
    mut process: impl FnMut(&[u8], &mut [u8]) -> Result<lzma_rust2::StreamResult, E>,
) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut produced = 0usize;
    loop {
        if produced == out.len() {
            grow(&mut out, c, limit)?;
        }
        let input = body.get(consumed..).unwrap_or(&[]);
        let dst = out.get_mut(produced..).unwrap_or(&mut []);
        let r = process(input, dst).map_err(|e| fail(c, e))?;
        consumed += r.bytes_consumed;
        produced += r.bytes_produced;
        if r.status == lzma_rust2::Status::StreamEnd {
            break;
        }
        if r.bytes_consumed == 0 && r.bytes_produced == 0 && produced < out.len() {
            return Err(fail(c, "stream ended early"));
        }
    }
    out.truncate(produced);
    Ok(out)
}

/// LZ4 "legacy" framing as written by `lz4 -l` (`lib/decompress_unlz4.c`): magic
/// 0x184C2102, then blocks of `u32 compressed length` + LZ4 block, each decoding to at most
/// 8 MiB. A repeated magic starts a concatenated stream.
#[cfg(feature = "lz4")]
fn lz4_legacy(body: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    const C: Compression = Compression::Lz4;
    use crate::stream::{LZ4_LEGACY_BLOCK_MAX as BLOCK_MAX, LZ4_LEGACY_MAGIC as MAGIC};
    let mut rest = body.get(4..).ok_or(ImageError::Truncated {
        what: "lz4 magic",
        needed: 4,
        available: body.len() as u64,
    })?;
    let mut out: Vec<u8> = Vec::new();
    while !rest.is_empty() {
        let (len_bytes, tail) = rest
            .split_at_checked(4)
            .ok_or_else(|| fail(C, "truncated block length"))?;
        let len = u32::from_le_bytes(
            len_bytes
                .try_into()
                .map_err(|_| fail(C, "truncated block length"))?,
        );
        if len == MAGIC {
            rest = tail;
            continue;
        }
        let (block, tail) = tail
            .split_at_checked(len as usize)
            .ok_or_else(|| fail(C, "block extends past the end of the payload"))?;
        let start = out.len();
        let room = BLOCK_MAX.min(limit.saturating_sub(start));
        if room == 0 {
            return Err(ImageError::DecompressedTooLarge {
                compression: C,
                limit: limit as u64,
            });
        }
        out.try_reserve(room)
            .map_err(|_| fail(C, "out of memory"))?;
        out.resize(start + room, 0);
        let dst = out.get_mut(start..).unwrap_or(&mut []);
        let n = lz4_flex::block::decompress_into(block, dst).map_err(|e| fail(C, e))?;
        out.truncate(start + n);
        rest = tail;
    }
    Ok(out)
}

/// zstd frames; the size trailer tells how much output to expect (already capped).
#[cfg(feature = "zstd")]
fn zstd(body: &[u8], declared: usize) -> Result<Vec<u8>, ImageError> {
    const C: Compression = Compression::Zstd;
    let mut out = Vec::new();
    out.try_reserve_exact(declared)
        .map_err(|_| fail(C, "out of memory"))?;
    out.resize(declared, 0);
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    let n = decoder.decode_all(body, &mut out).map_err(|e| fail(C, e))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(feature = "bzip2")]
fn bzip2(body: &[u8], limit: usize) -> Result<Vec<u8>, ImageError> {
    use std::io::Read;
    const C: Compression = Compression::Bzip2;
    let mut reader = bzip2_rs::DecoderReader::new(body).take(limit as u64 + 1);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| fail(C, e))?;
    if out.len() > limit {
        return Err(ImageError::DecompressedTooLarge {
            compression: C,
            limit: limit as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a build that leaves decoders out (e.g. `--no-default-features --features gzip`), each
    /// left-out format is refused by name before any byte is decoded; in the default build every
    /// format has its decoder.
    #[test]
    fn left_out_decoders_are_refused_with_the_feature_named() {
        let all = [
            (Compression::Gzip, "gzip"),
            (Compression::Xz, "xz"),
            (Compression::Lzma, "xz"),
            (Compression::Lz4, "lz4"),
            (Compression::Zstd, "zstd"),
            (Compression::Bzip2, "bzip2"),
        ];
        for (c, feature) in all {
            if has_decoder(c) {
                continue;
            }
            let err = decompress(&[0u8; 32], c, 1 << 20).unwrap_err();
            assert!(
                matches!(err, ImageError::UnsupportedCompression { compression, .. } if compression == c),
                "{c}: {err}"
            );
            assert!(
                format!("{err}").contains(&format!("feature `{feature}`")),
                "{c}: {err}"
            );
        }
        if cfg!(all(
            feature = "gzip",
            feature = "xz",
            feature = "lz4",
            feature = "zstd",
            feature = "bzip2"
        )) {
            assert!(all.iter().all(|(c, _)| has_decoder(*c)));
        }
        assert!(!has_decoder(Compression::Lzo));
    }
}
