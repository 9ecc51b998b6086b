//! Disk images of a bundle made without copying its files into them: `add` lays the image out
//! with [`disk_image::compose`] and keeps, for each run of a file that is itself a file of the
//! bundle (a module, the host DTB, `boot.scr`), only which bundle file it is. [`Bundle::write`]
//! and `SHA256SUMS` then read the image as [`Bundle::segments`]: the FAT metadata, then the
//! module files' own bytes. A 64-domain bundle's `boot.img` and `uefi.img` (86 MB each) cost
//! their metadata in memory, not two more copies of every module. Bytes that are not a bundle
//! file (GRUB's modules, `xen.efi`, the UEFI variant of the DTB) are copied in as before.

use std::path::PathBuf;

use crate::{Bundle, BundleFile, Contents, Role};

/// A file of a disk image: a file of the bundle (its path in the bundle), or bytes of its own.
pub(crate) enum Source<'a> {
    Bundle(String),
    Bytes(&'a [u8]),
}

/// A disk image of a bundle: its layout, and which bundle file each run of it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageContents {
    image: disk_image::ComposedImage,
    /// For each file given to `compose`, the bundle file it is (`None`: copied into the image).
    sources: Vec<Option<PathBuf>>,
}

impl ImageContents {
    /// The image's size in bytes.
    pub fn len(&self) -> u64 {
        self.image.len()
    }

    /// Whether the image is empty (never).
    pub fn is_empty(&self) -> bool {
        self.image.is_empty()
    }

    /// The image's bytes in order, reading its files from `bundle`; `None` if one is missing.
    pub(crate) fn segments<'a>(&'a self, bundle: &'a Bundle) -> Option<Vec<&'a [u8]>> {
        self.image.segments(|i| {
            let path = self.sources.get(i)?.as_ref()?;
            bundle.file(path.to_str()?)?.bytes()
        })
    }
}

/// Adds the disk image `path` of `files` (path on the image, source) to `bundle`.
pub(crate) fn add(
    bundle: &mut Bundle,
    path: &str,
    files: &[(String, Source<'_>)],
    opts: &disk_image::ImageOptions,
) -> Result<(), String> {
    let contents = {
        let mut refs: Vec<(&str, &[u8])> = Vec::with_capacity(files.len());
        for (on_image, source) in files {
            let bytes = match source {
                Source::Bundle(p) => bundle.bytes_of(p)?,
                Source::Bytes(b) => b,
            };
            refs.push((on_image.as_str(), bytes));
        }
        let mut image = disk_image::compose(&refs, &|b| bundle.known_digest(b), opts)
            .map_err(|e| e.to_string())?;
        let mut sources = Vec::with_capacity(files.len());
        for (i, (_, source)) in files.iter().enumerate() {
            sources.push(match source {
                Source::Bundle(p) => Some(PathBuf::from(p)),
                Source::Bytes(b) => {
                    image.fill(i, b);
                    None
                }
            });
        }
        ImageContents { image, sources }
    };
    bundle.files.push(BundleFile {
        path: path.into(),
        role: Role::DiskImage,
        contents: Contents::Image(contents),
        executable: false,
    });
    Ok(())
}
