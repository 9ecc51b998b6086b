//! Where the bytes of a bundle's input files come from.
//!
//! The plan names its files by the manifest's source strings (`debian:kernel`, `images/app.cpio`);
//! whoever resolved them (the `pipeline` crate: files, Debian packages, built-ins) examined each
//! once and recorded its path, size, format and digest. An [`ArtifactSource`] hands the bytes back
//! and proves they are the bytes the plan was made from.

use firmware_config::artifacts::{ArtifactFacts, ArtifactTable, FileIdentity};
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

/// Reads `path` whole, and says whether the open file had identity `known` both before and after
/// the read (and `size` bytes were read): then the bytes are the ones `known` was hashed as.
fn read_watched(
    path: &Path,
    known: Option<&FileIdentity>,
    size: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let before = FileIdentity::of(&file.metadata()?);
    let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    let after = FileIdentity::of(&file.metadata()?);
    let unchanged =
        known.is_some_and(|k| *k == before && *k == after) && bytes.len() as u64 == size;
    Ok((bytes, unchanged))
}

/// Files on disk, as an [`ArtifactTable`] describes them: read and checked against the digest
/// (by the file's unchanged identity when the facts carry one, else by hashing what was read).
/// The second field is the cache of prepared kernels (`<cache>/prepared`), if any.
pub struct VerifiedFiles<'a>(pub &'a ArtifactTable, pub Option<&'a Path>);

/// What `table` says of `source`: its facts, or why it has none (the examination's error, or
/// that it was never examined).
pub fn examined<'a>(table: &'a ArtifactTable, source: &str) -> Result<&'a ArtifactFacts, String> {
    match table.get(source) {
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => Err(e.clone()),
        None => Err("was never examined".into()),
    }
}

impl ArtifactSource for VerifiedFiles<'_> {
    fn facts(&self, source: &str) -> Result<&ArtifactFacts, String> {
        examined(self.0, source)
    }

    fn read(&self, source: &str) -> Result<Vec<u8>, String> {
        let facts = self.facts(source)?;
        let (bytes, unchanged) =
            read_watched(Path::new(&facts.path), facts.identity.as_ref(), facts.size)
                .map_err(|e| format!("{}: {e}", facts.path))?;
        // Hashed once per command: a file read under the identity its digest was computed for is
        // those bytes (pipeline::facts); anything else is hashed and must match.
        if !unchanged && crate::sha256_hex(&bytes) != facts.sha256 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_of(path: &Path, bytes: &[u8], identity: Option<FileIdentity>) -> ArtifactFacts {
        ArtifactFacts {
            size: bytes.len() as u64,
            format: firmware_config::artifacts::ImageFormat::Unknown("test".into()),
            path: path.display().to_string(),
            sha256: crate::sha256_hex(bytes),
            identity,
        }
    }

    /// The digest is trusted only for the identity it was computed under: proved by facts whose
    /// digest is wrong on purpose, which the identity lets through and hashing does not.
    #[test]
    fn a_file_is_hashed_again_only_when_its_identity_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel");
        std::fs::write(&path, b"the bytes that were hashed").unwrap();
        let id = FileIdentity::of(&std::fs::metadata(&path).unwrap());
        let mut wrong = facts_of(&path, b"the bytes that were hashed", Some(id));
        wrong.sha256 = crate::sha256_hex(b"something else");
        let table: ArtifactTable = [("k".to_string(), Ok(wrong.clone()))].into();
        assert_eq!(
            VerifiedFiles(&table, None).read("k").unwrap(),
            b"the bytes that were hashed"
        );

        // Without an identity, or under another one, what was read is hashed and refused.
        for identity in [
            None,
            Some(FileIdentity {
                ctime_ns: id.ctime_ns + 1,
                ..id
            }),
        ] {
            let facts = ArtifactFacts {
                identity,
                ..wrong.clone()
            };
            let table: ArtifactTable = [("k".to_string(), Ok(facts))].into();
            let e = VerifiedFiles(&table, None).read("k").unwrap_err();
            assert!(e.contains("changed since it was examined"), "{e}");
        }

        // A replaced file (same length, renamed over it, as editors and downloads do) has a new
        // identity whatever the timestamps' grain, so its new bytes are hashed.
        let good = facts_of(&path, b"the bytes that were hashed", Some(id));
        let new = dir.path().join("kernel.new");
        std::fs::write(&new, b"the bytes that were HASHED").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let table: ArtifactTable = [("k".to_string(), Ok(good))].into();
        let e = VerifiedFiles(&table, None).read("k").unwrap_err();
        assert!(e.contains("changed since it was examined"), "{e}");
    }
}
