//! Images whose files are not copied into them: [`compose`](crate::compose) lays an image out as [`build`] does,
//! but the runs of the image that hold a file's bytes stay where the caller has those bytes
//! ([`Extent`]s); only the partition table and the FAT metadata are written into memory
//! ([`ComposedImage::base`]). A writer then streams the image as [`ComposedImage::segments`]:
//! a bundle of 64 domains makes two images of 86 MB each out of module files it already holds,
//! and copying them into two image-sized buffers was most of the build's time.
//!
//! How the runs are found: fatfs 0.3's `File::write` passes a slice *of the caller's buffer*
//! straight to the storage's `write` (`fatfs-0.3.6/src/file.rs`, `disk.write(&buf[..write_size])`
//! after seeking to the cluster), one cluster at a time. `Partition`, the storage here, knows
//! where every file's bytes are, so a write whose slice lies inside one of them is recorded as a
//! run of that file instead of being copied; every other write (boot sector, FATs, FSInfo,
//! directory entries, the zeros of a new directory cluster) lands in the partition's bytes. fatfs
//! never reads a file's data back while writing it (a fresh cluster is written whole, the last one
//! partly, never read-modified-written), and nothing else of this crate reads file data; the
//! regions of the runs stay zero in `base` and are never faulted in.
//!
//! [`build`]: crate::build

use std::io::{Read, Seek, SeekFrom, Write};

use crate::{DiskImage, GptIds};

/// A run of the image holding `len` bytes of file `file` (its index in the slice given to
/// [`compose`](crate::compose)) from `offset`, at byte `at` of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub at: u64,
    pub file: usize,
    pub offset: u64,
    pub len: u64,
}

/// An image laid out by [`compose`](crate::compose): `base` is the whole image with the
/// [`extents`](Self::extents) left zero; the files' bytes go there when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedImage {
    pub base: Vec<u8>,
    /// Sorted by `at`, not overlapping; one per file for a fresh FAT (contiguous clusters).
    pub extents: Vec<Extent>,
    /// As in [`DiskImage`].
    pub disk_signature: u32,
    pub volume_id: u32,
    pub partition_size: u64,
    pub gpt: Option<GptIds>,
}

impl ComposedImage {
    /// The image's size in bytes.
    pub fn len(&self) -> u64 {
        self.base.len() as u64
    }

    /// Whether the image has no bytes (never, for an image [`compose`](crate::compose) made).
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Copies file `file`'s runs into `base` (`bytes`: that file, as given to `compose`), for a
    /// file whose bytes will not be at hand when the image is written.
    pub fn fill(&mut self, file: usize, bytes: &[u8]) {
        let base = &mut self.base;
        self.extents.retain(|e| {
            if e.file != file {
                return true;
            }
            let (at, from) = (e.at as usize, e.offset as usize);
            let len = e.len as usize;
            base[at..at + len].copy_from_slice(&bytes[from..from + len]);
            false
        });
    }

    /// The whole image in memory (`files`: as given to `compose`).
    pub fn into_image(mut self, files: &[(&str, &[u8])]) -> DiskImage {
        for (i, (_, bytes)) in files.iter().enumerate() {
            self.fill(i, bytes);
        }
        DiskImage {
            bytes: self.base,
            disk_signature: self.disk_signature,
            volume_id: self.volume_id,
            partition_size: self.partition_size,
            gpt: self.gpt,
        }
    }

    /// The image's bytes in order, as slices of `base` and of the files (`file(i)`: file `i`'s
    /// bytes as given to `compose`); `None` if a file is shorter than its runs say.
    pub fn segments<'a>(
        &'a self,
        file: impl Fn(usize) -> Option<&'a [u8]>,
    ) -> Option<Vec<&'a [u8]>> {
        let mut out = Vec::with_capacity(2 * self.extents.len() + 1);
        let mut at = 0usize;
        for e in &self.extents {
            let start = e.at as usize;
            out.push(self.base.get(at..start)?);
            let from = e.offset as usize;
            out.push(file(e.file)?.get(from..from + e.len as usize)?);
            at = start + e.len as usize;
        }
        out.push(self.base.get(at..)?);
        out.retain(|s| !s.is_empty());
        Some(out)
    }
}

/// The FAT partition as fatfs's storage: a cursor over the partition's bytes that records the
/// writes of file data as [`Extent`]s instead of copying them (see the module docs).
pub(crate) struct Partition<'a> {
    bytes: &'a mut [u8],
    pos: u64,
    /// Where the partition starts in the image (extents are in image offsets).
    start: u64,
    /// The files being written: (index given to `compose`, bytes).
    files: &'a [(usize, &'a [u8])],
    /// `files`' positions sorted by address, and the address range they span: most writes are
    /// metadata from fatfs's own buffers, which the span check turns away at once.
    by_addr: Vec<usize>,
    span: (usize, usize),
    /// The file of the last recorded run: the next write is almost always the same file's.
    last: usize,
    /// The lowest partition offset of a run (FAT and boot sectors lie below every one).
    lowest: u64,
    pub(crate) extents: Vec<Extent>,
}

impl<'a> Partition<'a> {
    pub(crate) fn new(bytes: &'a mut [u8], start: u64, files: &'a [(usize, &'a [u8])]) -> Self {
        let addr = |i: &usize| files[*i].1.as_ptr() as usize;
        let mut by_addr: Vec<usize> = (0..files.len())
            .filter(|&i| !files[i].1.is_empty())
            .collect();
        by_addr.sort_by_key(addr);
        let span = match (
            by_addr.first(),
            by_addr.iter().map(|&i| addr(&i) + files[i].1.len()).max(),
        ) {
            (Some(first), Some(end)) => (addr(first), end),
            _ => (0, 0),
        };
        Partition {
            bytes,
            pos: 0,
            start,
            files,
            by_addr,
            span,
            last: 0,
            lowest: u64::MAX,
            extents: Vec::new(),
        }
    }

    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// Which file `buf` lies in, and where: (position in `files`, offset in that file).
    fn owner(&self, buf: &[u8]) -> Option<(usize, u64)> {
        let (p, n) = (buf.as_ptr() as usize, buf.len());
        if p < self.span.0 || p + n > self.span.1 {
            return None;
        }
        let inside = |i: usize| {
            let f = self.files.get(i)?.1;
            let s = f.as_ptr() as usize;
            (!f.is_empty() && p >= s && p + n <= s + f.len()).then(|| (i, (p - s) as u64))
        };
        inside(self.last).or_else(|| {
            // The last file starting at or below `p` is the only one that can hold it (the
            // files' bytes do not overlap, or overlap as the same bytes).
            let k = self
                .by_addr
                .partition_point(|&i| self.files[i].1.as_ptr() as usize <= p);
            inside(*self.by_addr.get(k.checked_sub(1)?)?)
        })
    }

    fn record(&mut self, i: usize, offset: u64, len: u64) {
        let e = Extent {
            at: self.start + self.pos,
            file: self.files[i].0,
            offset,
            len,
        };
        match self.extents.last_mut() {
            Some(l) if l.file == e.file && l.at + l.len == e.at && l.offset + l.len == offset => {
                l.len += len
            }
            _ => self.extents.push(e),
        }
        self.lowest = self.lowest.min(self.pos);
        self.last = i;
    }
}

impl Read for Partition<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let at = (self.pos as usize).min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - at);
        buf[..n].copy_from_slice(&self.bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Partition<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let at = (self.pos as usize).min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - at);
        if n == 0 {
            return Ok(0);
        }
        match self.owner(&buf[..n]) {
            Some((i, offset)) => self.record(i, offset, n as u64),
            None => {
                let end = self.pos + n as u64;
                if end > self.lowest
                    && self.extents.iter().any(|e| {
                        let run = e.at - self.start;
                        self.pos < run + e.len && run < end
                    })
                {
                    // fatfs never writes metadata over a file's clusters; if it ever did, the
                    // image would be wrong, so refuse rather than guess.
                    return Err(std::io::Error::other(
                        "a metadata write over a file's data (disk-image's storage)",
                    ));
                }
                self.bytes[at..at + n].copy_from_slice(&buf[..n]);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Partition<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.bytes.len() as i128;
        let at = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(at).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
