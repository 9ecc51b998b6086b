//! Where the bytes of a bundle's input files come from.
//!
//! The plan names its files by the manifest's source strings (`debian:kernel`, `images/app.cpio`);
//! whoever resolved them (the `pipeline` crate: files, Debian packages, built-ins) examined each
//! once and recorded its path, size, format and digest. An [`ArtifactSource`] hands the bytes back
//! and proves they are the bytes the plan was made from.

use firmware_config::artifacts::{ArtifactFacts, ArtifactTable};
use firmware_config::board::Arch;
use std::path::Path;

/// Gives a source's bytes, proven to be the file that was examined.
pub trait ArtifactSource {
    /// What examining `source` found.
    fn facts(&self, source: &str) -> Result<&ArtifactFacts, String>;
    /// The bytes of `source`, the same bytes [`facts`](Self::facts) describes.
    fn read(&self, source: &str) -> Result<Vec<u8>, String>;
    /// The kernel `source` in the form domforge-init loads fastest for `arch`
    /// ([`crate::kernel_prep`]); sources with a cache override this to prepare it once.
    fn prepared_kernel(&self, source: &str, arch: Arch) -> Result<Vec<u8>, String> {
        let bytes = self.read(source)?;
        Ok(crate::kernel_prep::prepare(&bytes, arch).unwrap_or(bytes))
    }
    /// Whether only sizes are needed from this source (`check` and `plan`, which keep no bundle):
    /// finalize then sizes dom0's generated initramfs from the files' sizes instead of composing
    /// it ([`crate::dom0`]); the bytes of [`read`](Self::read) and the rest are still given.
    fn sizes_only(&self) -> bool {
        false
    }
    /// The length of [`prepared_kernel`](Self::prepared_kernel)'s result; sources with a cache
    /// override this to answer from it without reading the kernel.
    fn prepared_kernel_len(&self, source: &str, arch: Arch) -> Result<u64, String> {
        Ok(self.prepared_kernel(source, arch)?.len() as u64)
    }
    /// `source` gzip'd as Xen's ARM kernel loader reads it ([`crate::arm`]); sources with a cache
    /// override this to compress it once.
    fn gzipped(&self, source: &str) -> Result<Vec<u8>, String> {
        crate::arm::gzip(&self.read(source)?).map_err(|e| format!("gzip: {e}"))
    }
}

/// [`ArtifactSource::gzipped`] through the derived-file cache: `<cache>/gzip/<sha256>-<v>.gz`.
pub fn gzipped_cached(
    cache: Option<&Path>,
    source_sha256: &str,
    verify: bool,
    read: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    // The version names the encoder: flate2's default level with a fixed header. Another
    // encoder or level must change it, or old entries would be served for the new output.
    let what = crate::derived::Derivation {
        kind: "gzip",
        variant: "flate2-default-v1.gz".into(),
    };
    let mut failed = None;
    let out = crate::derived::cached(cache, &what, source_sha256, verify, read, |b| {
        crate::arm::gzip(b).map_err(|e| failed = Some(e)).ok()
    })?;
    match failed {
        Some(e) => Err(format!("gzip: {e}")),
        None => Ok(out),
    }
}

/// Files on disk, as an [`ArtifactTable`] describes them: read and checked against the digest.
/// The second field is the cache of prepared kernels (`<cache>/prepared`), if any.
pub struct VerifiedFiles<'a>(pub &'a ArtifactTable, pub Option<&'a Path>);

impl ArtifactSource for VerifiedFiles<'_> {
    fn facts(&self, source: &str) -> Result<&ArtifactFacts, String> {
        match self.0.get(source) {
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(e.clone()),
            None => Err("was never examined".into()),
        }
    }

    fn read(&self, source: &str) -> Result<Vec<u8>, String> {
        let facts = self.facts(source)?;
        let bytes = std::fs::read(&facts.path).map_err(|e| format!("{}: {e}", facts.path))?;
        if crate::sha256_hex(&bytes) != facts.sha256 {
            return Err(format!(
                "{} changed since it was examined; run the command again",
                facts.path
            ));
        }
        Ok(bytes)
    }

    fn prepared_kernel(&self, source: &str, arch: Arch) -> Result<Vec<u8>, String> {
        let sha = &self.facts(source)?.sha256;
        crate::kernel_prep::prepared_cached(self.1, sha, arch, true, || self.read(source))
    }

    fn gzipped(&self, source: &str) -> Result<Vec<u8>, String> {
        let sha = &self.facts(source)?.sha256;
        gzipped_cached(self.1, sha, true, || self.read(source))
    }
}
