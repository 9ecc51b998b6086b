//! The cache of files derived from examined inputs (issue 14: nothing is decompressed or
//! compressed twice): kernels prepared for domforge-init ([`crate::kernel_prep`]) and arm64 kernels
//! gzip'd for Xen ([`crate::arm`]). Either costs seconds for a 30 MB kernel, so a command that
//! needs one does it once and later commands read it back.
//!
//! An entry is `<cache>/<kind>/<source sha256>-<variant>.<ext>` and, beside it, `<entry>.sha256`
//! holding the entry's own digest and size. `verify` (a build, whose every byte must be proven)
//! re-hashes the entry; otherwise its size is checked. A missing, short or corrupt entry only costs
//! the deriving again. Entries are written under temporary names and renamed, the digest last, so a
//! reader sees a whole entry or none.

use std::path::{Path, PathBuf};

/// One kind of derived file: the cache subdirectory and the entry's name for a source digest.
pub struct Derivation<'a> {
    /// Subdirectory of the cache (`prepared`, `gzip`).
    pub kind: &'a str,
    /// The rest of the entry name after the source digest: whatever else the output depends on,
    /// including a format version that must change when the derivation's output does.
    pub variant: String,
}

impl Derivation<'_> {
    fn entry(&self, cache: &Path, source_sha256: &str) -> PathBuf {
        cache
            .join(self.kind)
            .join(format!("{source_sha256}-{}", self.variant))
    }
}

/// `derive(read()?)` for the source whose examined digest is `source_sha256`, from the cache when
/// an entry is there, else derived now and remembered. `derive` returning `None` means "keep the
/// source as it is" (nothing is cached then, so the source is read each time; that is the cheap
/// case).
pub fn cached(
    cache: Option<&Path>,
    what: &Derivation<'_>,
    source_sha256: &str,
    verify: bool,
    read: impl FnOnce() -> Result<Vec<u8>, String>,
    derive: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let entry = cache.map(|dir| what.entry(dir, source_sha256));
    if let Some(hit) = entry.as_deref().and_then(|e| lookup(e, verify)) {
        return Ok(hit);
    }
    let bytes = read()?;
    let Some(derived) = derive(&bytes) else {
        return Ok(bytes);
    };
    if let Some(e) = &entry {
        remember(e, &derived);
    }
    Ok(derived)
}

/// The length of the entry for `source_sha256` if the cache holds a whole one (its digest record
/// and a file of the recorded size), without reading it.
pub fn cached_len(cache: &Path, what: &Derivation<'_>, source_sha256: &str) -> Option<u64> {
    let entry = what.entry(cache, source_sha256);
    let (_, len) = record(&entry)?;
    (std::fs::metadata(&entry).ok()?.len() == len).then_some(len)
}

/// The entry's digest record: its SHA-256 and length.
fn record(entry: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(digest_file(entry)).ok()?;
    let (sha, len) = text.trim().split_once(' ')?;
    Some((sha.to_owned(), len.parse().ok()?))
}

fn digest_file(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn lookup(entry: &Path, verify: bool) -> Option<Vec<u8>> {
    let (sha, len) = record(entry)?;
    let bytes = std::fs::read(entry).ok()?;
    let ok = bytes.len() as u64 == len && (!verify || crate::sha256_hex(&bytes) == sha);
    ok.then_some(bytes)
}

/// Writes the entry; failing to cache is not an error (the next command derives again).
fn remember(entry: &Path, bytes: &[u8]) {
    let Some(dir) = entry.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let pid = std::process::id();
    let with = |suffix: &str| {
        let mut name = entry.as_os_str().to_owned();
        name.push(format!(".{suffix}{pid}"));
        PathBuf::from(name)
    };
    let (tmp, tmp_sum) = (with("tmp"), with("sumtmp"));
    let record = format!("{} {}\n", crate::sha256_hex(bytes), bytes.len());
    let _ = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, entry))
        .and_then(|()| std::fs::write(&tmp_sum, record))
        .and_then(|()| std::fs::rename(&tmp_sum, digest_file(entry)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_skips_reading_and_deriving_and_a_bad_entry_is_derived_again() {
        let dir = std::env::temp_dir().join(format!("derived-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let what = Derivation {
            kind: "test",
            variant: "v1.bin".into(),
        };
        let twice = |b: &[u8]| Some([b, b].concat());
        let first = cached(Some(&dir), &what, "sha", true, || Ok(b"ab".to_vec()), twice);
        assert_eq!(first.unwrap(), b"abab");
        let hit = cached(
            Some(&dir),
            &what,
            "sha",
            true,
            || Err("read".into()),
            |_| None,
        );
        assert_eq!(hit.unwrap(), b"abab");
        // Same size, other bytes: only a verifying lookup notices.
        std::fs::write(dir.join("test/sha-v1.bin"), b"abac").unwrap();
        let unverified = cached(
            Some(&dir),
            &what,
            "sha",
            false,
            || Err("read".into()),
            twice,
        );
        assert_eq!(unverified.unwrap(), b"abac");
        let verified = cached(Some(&dir), &what, "sha", true, || Ok(b"ab".to_vec()), twice);
        assert_eq!(verified.unwrap(), b"abab");
        // "Keep the source" is not cached.
        let kept = cached(
            Some(&dir),
            &what,
            "other",
            true,
            || Ok(b"x".to_vec()),
            |_| None,
        );
        assert_eq!(kept.unwrap(), b"x");
        assert!(!dir.join("test/other-v1.bin").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
