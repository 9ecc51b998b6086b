//! Loading a kernel's segments from a stream of decoded blocks, so a loader never holds the whole
//! decoded kernel (issue 14: domforge-init's peak memory, and one copy less per build).
//!
//! A [`ByteSource`] gives the stored file (domforge-init reads it from dom0's initramfs in small
//! pieces); [`Lz4Legacy`] decodes it block by block into one reused buffer; [`BlockSource`] is
//! what the loaders consume ([`crate::build_streamed`]). The kernel's headers come from the first
//! block ([`crate::kernel::ElfKernel::parse_prefix`]): domforge's host-side preparation puts the
//! ELF and program headers and the notes first, and keeps LZ4 blocks small, so the first block holds
//! them and the buffer stays small. A kernel whose headers are not in its first block is loaded the
//! in-memory way instead.

#[cfg(feature = "lz4")]
use alloc::vec::Vec;

#[cfg(feature = "lz4")]
use crate::kernel::Compression;
use crate::kernel::{ImageError, LoadSegment};

/// The stored (compressed) file, read front to back.
pub trait ByteSource {
    /// Fills `buf` with the next bytes, or fails (a short file is an error).
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ImageError>;
    /// Bytes not read yet.
    fn remaining(&self) -> u64;
}

/// A byte slice as a [`ByteSource`] (tests, and callers that hold the file anyway).
pub struct SliceSource<'a>(pub &'a [u8]);

impl ByteSource for SliceSource<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        let (head, tail) = self
            .0
            .split_at_checked(buf.len())
            .ok_or(ImageError::Truncated {
                what: "compressed kernel",
                needed: buf.len() as u64,
                available: self.0.len() as u64,
            })?;
        buf.copy_from_slice(head);
        self.0 = tail;
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.0.len() as u64
    }
}

/// The decoded file, in order, a block at a time.
pub trait BlockSource {
    /// The next decoded bytes (valid until the next call), or `None` at the end.
    fn next_block(&mut self) -> Result<Option<&[u8]>, ImageError>;
}

/// The LZ4 legacy frame's magic (`lib/decompress_unlz4.c`, `ARCHIVE_MAGICNUMBER`).
pub const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// The largest block of an LZ4 legacy frame, decoded (`LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE`).
pub const LZ4_LEGACY_BLOCK_MAX: usize = 8 << 20;

/// The output buffer's first size: the block size domforge's host-side preparation writes.
#[cfg(feature = "lz4")]
const FIRST_OUTPUT: usize = 1 << 20;

/// LZ4 legacy frames (as `lz4 -l` and kbuild write them, optionally followed by kbuild's 4-byte
/// size trailer) decoded one block at a time. The output buffer grows to the largest block seen
/// (1 MiB for kernels domforge prepared, at most 8 MiB).
#[cfg(feature = "lz4")]
pub struct Lz4Legacy<S> {
    src: S,
    input: Vec<u8>,
    output: Vec<u8>,
}

#[cfg(feature = "lz4")]
impl<S: ByteSource> Lz4Legacy<S> {
    /// Checks the magic; `None` if `src` is not an LZ4 legacy stream (nothing else is read then
    /// but the four bytes).
    pub fn open(mut src: S) -> Result<Option<Self>, ImageError> {
        let mut magic = [0u8; 4];
        src.read_exact(&mut magic)?;
        if u32::from_le_bytes(magic) != LZ4_LEGACY_MAGIC {
            return Ok(None);
        }
        Ok(Some(Self {
            src,
            input: Vec::new(),
            output: Vec::new(),
        }))
    }

    fn fail(reason: &str) -> ImageError {
        ImageError::Decompress {
            compression: Compression::Lz4,
            reason: reason.into(),
        }
    }
}

#[cfg(feature = "lz4")]
impl<S: ByteSource> BlockSource for Lz4Legacy<S> {
    fn next_block(&mut self) -> Result<Option<&[u8]>, ImageError> {
        loop {
            // Four bytes left can only be kbuild's size trailer: a block is a length and at
            // least one byte.
            match self.src.remaining() {
                0 => return Ok(None),
                4 => {
                    let mut trailer = [0u8; 4];
                    self.src.read_exact(&mut trailer)?;
                    return Ok(None);
                }
                _ => {}
            }
            let mut len = [0u8; 4];
            self.src.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len);
            if len == LZ4_LEGACY_MAGIC {
                continue; // a concatenated stream
            }
            let len = len as usize;
            // An LZ4 block of an 8 MiB chunk is at most this long (LZ4_COMPRESSBOUND).
            if len > LZ4_LEGACY_BLOCK_MAX + LZ4_LEGACY_BLOCK_MAX / 255 + 16 {
                return Err(Self::fail("block length over the 8 MiB chunk's bound"));
            }
            self.input.resize(len, 0);
            self.src.read_exact(&mut self.input)?;
            // The block's decoded size is not stored: start at 1 MiB (the blocks domforge writes)
            // and double up to the format's 8 MiB when a block does not fit, so the buffer (all of
            // it written by `resize`) is as large as the largest block, not the format's bound.
            if self.output.is_empty() {
                self.output.resize(FIRST_OUTPUT, 0);
            }
            loop {
                match lz4_flex::block::decompress_into(&self.input, &mut self.output) {
                    Ok(n) => return Ok(self.output.get(..n)),
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                        if self.output.len() < LZ4_LEGACY_BLOCK_MAX =>
                    {
                        let bigger = (self.output.len() * 2).min(LZ4_LEGACY_BLOCK_MAX);
                        self.output.resize(bigger, 0);
                    }
                    Err(_) => return Err(Self::fail("corrupt LZ4 block")),
                }
            }
        }
    }
}

/// Hands the parts of `block` (decoded file bytes `at..at + block.len()`) that fall in a segment's
/// file bytes to `put(segment index, offset into the segment, bytes)`.
pub fn split_block<E>(
    segments: &[LoadSegment],
    at: u64,
    block: &[u8],
    mut put: impl FnMut(usize, u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let end = at + block.len() as u64;
    for (i, seg) in segments.iter().enumerate() {
        let lo = at.max(seg.offset);
        let hi = end.min(seg.offset.saturating_add(seg.filesz));
        if lo < hi {
            let bytes = &block[(lo - at) as usize..(hi - at) as usize];
            put(i, lo - seg.offset, bytes)?;
        }
    }
    Ok(())
}

/// Where the last segment's file bytes end: how much of the stream a loader must read.
pub fn file_bytes_end(segments: &[LoadSegment]) -> u64 {
    segments
        .iter()
        .map(|s| s.offset.saturating_add(s.filesz))
        .max()
        .unwrap_or(0)
}

#[cfg(all(test, feature = "lz4"))]
mod tests {
    use super::*;
    use alloc::vec;

    fn frames(data: &[u8], block: usize, trailer: bool) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(block) {
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        if trailer {
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        out
    }

    #[test]
    fn blocks_decode_in_order_with_or_without_the_trailer() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for trailer in [false, true] {
            let stored = frames(&data, 65536, trailer);
            let mut d = Lz4Legacy::open(SliceSource(&stored)).unwrap().unwrap();
            let mut back = Vec::new();
            while let Some(b) = d.next_block().unwrap() {
                assert!(b.len() <= 65536);
                back.extend_from_slice(b);
            }
            assert_eq!(back, data);
        }
        // Blocks larger than the first buffer (as `lz4 -l` writes them, 8 MiB) grow it.
        let big: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 97) as u8).collect();
        let stored = frames(&big, 3 << 20, true);
        let mut d = Lz4Legacy::open(SliceSource(&stored)).unwrap().unwrap();
        assert_eq!(d.next_block().unwrap().unwrap(), &big[..]);
        assert!(d.next_block().unwrap().is_none());
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let data = vec![5u8; 100_000];
        let mut stored = frames(&data, 65536, true);
        let at = stored.len() / 2;
        stored.truncate(at);
        let mut d = Lz4Legacy::open(SliceSource(&stored)).unwrap().unwrap();
        let mut failed = false;
        for _ in 0..4 {
            match d.next_block() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
        assert!(Lz4Legacy::open(SliceSource(b"\x7fELF")).unwrap().is_none());
    }

    #[test]
    fn blocks_are_split_across_segments() {
        let seg = |offset, filesz| LoadSegment {
            offset,
            vaddr: 0,
            paddr: 0,
            filesz,
            memsz: filesz,
            flags: 0,
            align: 0,
        };
        let segs = [seg(10, 5), seg(20, 30)];
        let mut got = Vec::new();
        split_block::<()>(&segs, 0, &[1; 25], |i, off, b| {
            got.push((i, off, b.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [(0, 0, 5), (1, 0, 5)]);
        assert_eq!(file_bytes_end(&segs), 50);
    }
}
