//! Images whose files are not copied into them: [`compose`](crate::compose) lays an image out as
//! [`build`] does, but the runs of the image that hold a file's bytes stay where the caller has
//! those bytes ([`Extent`]s); only the partition table and the FAT metadata are written into memory
//! ([`ComposedImage::base`]). A writer then streams the image as [`ComposedImage::segments`]:
//! a bundle of 64 domains makes two images of 80 MB each out of module files it already holds,
//! and copying them into two image-sized buffers was most of the build's time.
//!
//! fatfs formats the partition and creates every directory and (empty) file; the files' clusters
//! are then given by this crate, one contiguous run a file after the directories (`fat.rs`,
//! `place_files`), so a run is known without writing it. The regions of the runs stay zero in
//! `base` and are never touched, so their pages are never faulted in.
//!
//! [`build`]: crate::build

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
