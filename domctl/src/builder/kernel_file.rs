//! Kernels streamed from their file (issue 14), for both builders: an LZ4 legacy file is decoded
//! a block at a time ([`pvh_boot::stream`]) when the kernel is opened (its first block, for the
//! headers) and at every build (all of it, into guest memory). Without the `lz4` feature nothing
//! is streamed: [`with_first_block`] answers `None` and kernels load in memory.

use std::path::Path;

use pvh_boot::kernel::ImageError;

use super::BuildFailure;

/// Why a kernel file could not be opened ([`super::PvhKernel::open`], [`super::ArmKernel::open`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// A kernel file read in pieces, for [`pvh_boot::stream::Lz4Legacy`].
pub(crate) struct FileSource {
    file: std::io::BufReader<std::fs::File>,
    remaining: u64,
}

impl FileSource {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let remaining = file.metadata()?.len();
        Ok(Self {
            file: std::io::BufReader::with_capacity(64 << 10, file),
            remaining,
        })
    }
}

impl pvh_boot::stream::ByteSource for FileSource {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        use std::io::Read;
        self.file
            .read_exact(buf)
            .map_err(|_| ImageError::Truncated {
                what: "kernel file",
                needed: buf.len() as u64,
                available: self.remaining,
            })?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// `look(first decoded block)` if the file at `path` is LZ4 legacy frames with at least one
/// block; `None` if it is not (the caller loads it in memory then). Only a file that cannot be
/// opened is an error.
pub(crate) fn with_first_block<R>(
    path: &Path,
    look: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>, OpenError> {
    let src = FileSource::open(path).map_err(OpenError::Read)?;
    #[cfg(feature = "lz4")]
    {
        use pvh_boot::stream::{BlockSource, Lz4Legacy};
        let Ok(Some(mut blocks)) = Lz4Legacy::open(src) else {
            return Ok(None);
        };
        Ok(blocks.next_block().ok().flatten().map(look))
    }
    #[cfg(not(feature = "lz4"))]
    {
        let _ = (src, look);
        Ok(None)
    }
}

/// The decoded blocks of the streamed kernel at `path`, from the start, for a build.
pub(crate) fn blocks(path: &Path) -> Result<Box<dyn pvh_boot::stream::BlockSource>, BuildFailure> {
    let src = FileSource::open(path).map_err(|source| BuildFailure::KernelFile {
        path: path.display().to_string(),
        source,
    })?;
    #[cfg(feature = "lz4")]
    {
        let blocks = pvh_boot::stream::Lz4Legacy::open(src)?.ok_or(ImageError::UnknownFormat)?;
        Ok(Box::new(blocks))
    }
    #[cfg(not(feature = "lz4"))]
    {
        let _ = src;
        Err(ImageError::UnknownFormat.into())
    }
}
