//! What a large input file is (its SHA-256 and format), computed once and remembered by the
//! file's identity, so a warm `check` neither re-hashes a 30 MiB kernel nor decompresses a bzImage
//! again to find its PVH entry (issue 14: "large files are hashed once and their digests cached by
//! (path, size, mtime)").
//!
//! The identity is (device, inode, size, mtime, ctime) in nanoseconds. Any write to the file, a
//! replacement (new inode) or a `touch` changes it; ctime in particular cannot be set back from
//! user space, so editing a file and restoring its mtime is still noticed. A file whose mtime or
//! ctime lies within [`RACY_WINDOW`] of the moment it was hashed is not remembered: the kernel's
//! timestamps are coarse, and a write in the same tick after hashing would keep the identity
//! (Git's "racily clean" index entries are the same problem).
//!
//! Facts hashed by this command carry the identity the file had, when it had settled
//! ([`ArtifactFacts::identity`]); remembered facts carry none. The bundle
//! ([`bundle::VerifiedFiles`]) reads each file it copies and compares the open file's identity
//! before and after the read with it: equal, the bytes are the ones this command hashed moments
//! ago, so nothing is hashed twice in one command; absent (remembered, small or racy) or moved, it
//! hashes what it read and refuses a mismatch. So every byte a bundle ships was hashed by the
//! command that shipped it, and a stale or planted cache entry can only make `check` wrong, never
//! a bundle.
//!
//! Entries live in `<cache>/facts/<first 32 hex digits of SHA-256(path)>.json`, written to a
//! temporary name and renamed; a missing, unreadable or stale entry only costs the hashing.

use firmware_config::artifacts::{ArtifactFacts, FileIdentity, ImageFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files smaller than this are hashed every time (cheaper than a cache entry).
pub const MIN_CACHED_SIZE: u64 = 256 * 1024;

/// Timestamps this close to the hashing are too fresh to trust (see the module docs).
/// Three seconds: FAT (a board's mounted boot partition) keeps mtime in 2 s steps.
pub const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Whether both timestamps of `id` are older than [`RACY_WINDOW`] before `now`.
fn settled(id: &FileIdentity, now: SystemTime) -> bool {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    let window = i128::try_from(RACY_WINDOW.as_nanos()).unwrap_or(0);
    id.mtime_ns.max(id.ctime_ns) + window < now_ns
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    identity: FileIdentity,
    sha256: String,
    format: ImageFormat,
}

fn entry_path(cache_dir: &Path, path: &str) -> PathBuf {
    let digest = crate::hex(&Sha256::digest(path.as_bytes()));
    cache_dir
        .join("facts")
        .join(format!("{}.json", &digest[..32]))
}

/// The facts of the file at `path`: remembered ones when its identity is unchanged, else read,
/// hashed and classified (and remembered when the file is large and settled).
pub fn examine_file(cache_dir: &Path, path: &Path) -> Result<ArtifactFacts, String> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let identity = FileIdentity::of(&meta);
    let entry_file = entry_path(cache_dir, &shown);
    if identity.size >= MIN_CACHED_SIZE
        && let Ok(text) = std::fs::read(&entry_file)
        && let Ok(entry) = serde_json::from_slice::<Entry>(&text)
        && entry.path == shown
        && entry.identity == identity
    {
        return Ok(ArtifactFacts {
            size: identity.size,
            format: entry.format,
            path: shown,
            sha256: entry.sha256,
            // A digest remembered by an earlier command is good enough for `check`, not for the
            // bytes a bundle ships: those are hashed once in this command (see the module docs).
            identity: None,
        });
    }
    let hashed_at = SystemTime::now();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut facts = ArtifactFacts {
        size: bytes.len() as u64,
        format: crate::classify(&bytes),
        path: shown.clone(),
        sha256: crate::hex(&Sha256::digest(&bytes)),
        identity: None,
    };
    // Remember only what was hashed from the file as `identity` describes it.
    let unchanged = std::fs::metadata(path).is_ok_and(|m| FileIdentity::of(&m) == identity);
    if facts.size >= MIN_CACHED_SIZE
        && facts.size == identity.size
        && unchanged
        && settled(&identity, hashed_at)
    {
        facts.identity = Some(identity);
        remember(
            &entry_file,
            &Entry {
                path: shown,
                identity,
                sha256: facts.sha256.clone(),
                format: facts.format.clone(),
            },
        );
    }
    Ok(facts)
}

/// Best effort: a lost entry only costs hashing next time.
fn remember(file: &Path, entry: &Entry) {
    let Some(dir) = file.parent() else { return };
    let Ok(text) = serde_json::to_vec(entry) else {
        return;
    };
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let ok = std::fs::create_dir_all(dir).is_ok()
        && std::fs::write(&tmp, text).is_ok()
        && std::fs::rename(&tmp, file).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_facts_follow_the_file() {
        let cache = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("initrd");
        let mut bytes = vec![0u8; MIN_CACHED_SIZE as usize];
        bytes[..6].copy_from_slice(b"070701");
        std::fs::write(&file, &bytes).unwrap();
        let shown = file.display().to_string();

        // Fresh: hashed, but too fresh to remember.
        let first = examine_file(cache.path(), &file).unwrap();
        assert_eq!(first.sha256, crate::hex(&Sha256::digest(&bytes)));
        // What the file is does not matter here; that it is remembered does.
        assert_eq!(first.format, crate::classify(&bytes));
        assert!(
            !entry_path(cache.path(), &shown).exists(),
            "racy: not remembered"
        );

        std::thread::sleep(RACY_WINDOW + Duration::from_millis(200));
        let second = examine_file(cache.path(), &file).unwrap();
        // The same facts, now with the settled identity the bundle may trust instead of hashing.
        assert_eq!(first.identity, None, "racy: no identity to trust");
        let id = FileIdentity::of(&std::fs::metadata(&file).unwrap());
        assert_eq!(second.identity, Some(id));
        assert_eq!(
            ArtifactFacts {
                identity: None,
                ..second.clone()
            },
            first
        );
        assert!(
            entry_path(cache.path(), &shown).exists(),
            "settled: remembered"
        );

        // A remembered entry is used as is (proved by planting a wrong digest in it), but carries
        // no identity: a bundle hashes the bytes it ships itself …
        let entry_file = entry_path(cache.path(), &shown);
        let mut entry: Entry =
            serde_json::from_slice(&std::fs::read(&entry_file).unwrap()).unwrap();
        entry.sha256 = "f".repeat(64);
        std::fs::write(&entry_file, serde_json::to_vec(&entry).unwrap()).unwrap();
        let remembered = examine_file(cache.path(), &file).unwrap();
        assert_eq!(remembered.sha256, "f".repeat(64));
        assert_eq!(
            remembered.identity, None,
            "remembered: never trusted by a bundle"
        );

        // … until the file changes: same size, same mtime restored, new ctime.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        bytes[100] = 1;
        std::fs::write(&file, &bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let changed = examine_file(cache.path(), &file).unwrap();
        assert_eq!(changed.sha256, crate::hex(&Sha256::digest(&bytes)));
    }
}
