//! The lock file: `<manifest>.lock` beside the manifest pins every `debian:` and `builtin:` input.
//!
//! # Why
//! `debian:kernel` and `debian:xen` float: the same manifest built next month boots another kernel,
//! and resolving them means asking apt about the index on every command (two `apt-cache` runs made
//! `check` take seconds). The lock records what each source resolved to — the Debian package, its
//! exact version, suite and architecture, the `.deb`'s SHA-256 from the signed index, and the
//! SHA-256 of the file domforge actually uses (for `builtin:` builds, the digests of their inputs
//! too) — so that a later command fetches exactly that and, when the cache already holds it, reads
//! no package index at all ([`debian_fetch::Fetcher::fetch_pinned`]).
//!
//! # Format
//! TOML, commit-friendly: entries sorted by (source, architecture, xen), packages in the order the
//! source uses them, no timestamps, no absolute paths. `version` is the format version. Example:
//!
//! ```toml
//! version = 1
//!
//! [[source]]
//! source = "debian:kernel"
//! architecture = "arm64"
//! sha256 = "…"            # boot/vmlinuz-6.1.0-57-arm64 inside the package
//!
//! [[source.package]]
//! name = "linux-image-6.1.0-57-arm64-unsigned"
//! version = "6.1.192-3"
//! suite = "bookworm"
//! architecture = "arm64"
//! sha256 = "…"            # the .deb, as the signed Packages index gives it
//! ```
//!
//! # Policy ([`LockPolicy`])
//! - **Use** (the CLI's default): pinned entries are fetched exactly; sources the lock does not
//!   know yet are resolved and added; the file is rewritten only when it changes, and the change is
//!   reported. Entries a run does not need stay (e.g. `debian:xen` of another `--xen` release).
//! - **Locked** (`--locked`, for CI): as Use, but a lock that is missing or would change is an
//!   error ([`LockError::Missing`], [`LockError::WouldChange`]); sources the lock lacks are not
//!   resolved at all, so no index is read.
//! - **Update** (`domforge update`): pins are ignored, every source is resolved afresh (the index
//!   is refreshed first), and the lock is rewritten with exactly what the manifest needs.
//! - **Off**: no lock is read or written (library callers that build from scratch).
//!
//! In every policy a cached file whose SHA-256 differs from what the lock records for the same
//! inputs is refused (the cache was modified): the lock is also an integrity check of the cache.

use debian_fetch::PackagePin;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The lock file format this domforge reads and writes.
pub const LOCK_FORMAT: u32 = 1;

/// How a command treats the lock file (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockPolicy {
    /// Read no lock, write none.
    #[default]
    Off,
    /// Use the pins, add what is missing, write when changed.
    Use,
    /// Use the pins; a missing lock or any change is an error.
    Locked,
    /// Ignore the pins, resolve everything afresh, rewrite.
    Update,
    /// Resolve everything afresh as [`LockPolicy::Update`] does, but refuse any difference
    /// instead of writing it (`domforge update --locked`: is the lock current?).
    Verify,
}

/// A parsed lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// Format version ([`LOCK_FORMAT`]).
    pub version: u32,
    /// One entry per resolved source, sorted by [`LockedSource::key`].
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<LockedSource>,
}

/// What one manifest source (for one architecture and Xen release) resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    /// The source as the manifest (or board) writes it: `debian:kernel`, `debian:xen`,
    /// `builtin:probe`, `builtin:xen-static-memory`, or `dtb:<path>` for a board DTB taken from
    /// a Debian kernel package.
    pub source: String,
    /// Debian architecture of the board (`arm64`, `amd64`).
    pub architecture: String,
    /// The Xen release, for sources that depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xen: Option<String>,
    /// SHA-256 of the file domforge uses (the extracted kernel or hypervisor, the built probe
    /// initramfs, the compiled hypervisor, the DTB).
    pub sha256: String,
    /// For builds: the recipe's key (build options and recipe revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// The Debian packages it comes from, in the order the source uses them.
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<LockedPackage>,
}

/// One exact Debian package (binary, or a source package for builds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub suite: String,
    /// Debian architecture, or `source` for a source package.
    pub architecture: String,
    /// SHA-256 of the `.deb` (of the `.dsc` for a source package) from the signed index.
    pub sha256: String,
    /// A source package's files: `"<sha256> <name>"`, each checked against the signed
    /// `Sources` index before the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// The identity of a lock entry: (source, architecture, xen release).
pub type LockKey = (String, String, Option<String>);

impl LockedSource {
    pub fn key(&self) -> LockKey {
        (
            self.source.clone(),
            self.architecture.clone(),
            self.xen.clone(),
        )
    }

    /// `name version` of each package, for messages.
    fn summary(&self) -> String {
        let packages: Vec<String> = self
            .packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        let mut s = if packages.is_empty() {
            format!("sha256 {}", short(&self.sha256))
        } else {
            packages.join(" + ")
        };
        if let Some(r) = &self.recipe {
            s.push_str(&format!(" (recipe {r})"));
        }
        s
    }

    fn label(&self) -> String {
        match &self.xen {
            Some(x) => format!("{} ({}, Xen {x})", self.source, self.architecture),
            None => format!("{} ({})", self.source, self.architecture),
        }
    }
}

impl LockedPackage {
    /// The fetcher's pin of a binary package.
    pub fn pin(&self) -> Option<PackagePin> {
        Some(PackagePin {
            name: self.name.clone(),
            version: self.version.clone(),
            arch: debian_fetch::Arch::from_debian(&self.architecture)?,
            suite: self.suite.clone(),
            sha256: self.sha256.clone(),
        })
    }

    /// The lock's record of a fetched binary package.
    pub fn binary(package: &debian_fetch::FetchedPackage, suite: &str) -> Self {
        Self {
            name: package.name.clone(),
            version: package.version.clone(),
            suite: suite.to_owned(),
            architecture: package.arch.debian().to_owned(),
            sha256: package.sha256.clone(),
            files: Vec::new(),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// One difference between two locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    Added(LockedSource),
    Removed(LockedSource),
    Changed {
        from: LockedSource,
        to: LockedSource,
    },
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockChange::Added(s) => write!(f, "+ {}: {}", s.label(), s.summary()),
            LockChange::Removed(s) => write!(f, "- {}: {}", s.label(), s.summary()),
            LockChange::Changed { from, to } if from.summary() == to.summary() => write!(
                f,
                "~ {}: {} (file sha256 {} -> {})",
                to.label(),
                to.summary(),
                short(&from.sha256),
                short(&to.sha256)
            ),
            LockChange::Changed { from, to } => {
                write!(
                    f,
                    "~ {}: {} -> {}",
                    to.label(),
                    from.summary(),
                    to.summary()
                )
            }
        }
    }
}

/// Why the lock stopped a command.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a domforge lock file: {message}\n  help: `domforge update {manifest}` writes a fresh one"
    )]
    Parse {
        path: PathBuf,
        manifest: String,
        message: String,
    },
    #[error(
        "{path} has lock format version {found}; this domforge reads version {LOCK_FORMAT}\n  help: `domforge update {manifest}` rewrites it"
    )]
    Format {
        path: PathBuf,
        manifest: String,
        found: u32,
    },
    #[error(
        "--locked: {manifest} has no lock file {path} (or it lacks {}), and --locked forbids writing one\n  help: run `domforge update {manifest}` and commit {path}",
        .missing.join(", ")
    )]
    Missing {
        path: PathBuf,
        manifest: String,
        missing: Vec<String>,
    },
    #[error(
        "--locked: {path} would change:\n{}\n  help: run `domforge update {manifest}`, review the change and commit it",
        .changes.iter().map(|c| format!("    {c}")).collect::<Vec<_>>().join("\n")
    )]
    WouldChange {
        path: PathBuf,
        manifest: String,
        changes: Vec<LockChange>,
    },
    #[error("writing lock file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockFile {
    /// Parses a lock file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())
    }

    /// The file's text: a comment naming the manifest, then the entries sorted by key.
    pub fn to_text(&self, manifest_name: &str) -> String {
        let mut sorted = self.clone();
        sorted.sources.sort_by_key(LockedSource::key);
        let body = toml::to_string(&sorted).unwrap_or_default();
        format!(
            "# domforge lock file for {manifest_name}: the exact Debian packages and builds its\n\
             # `debian:` and `builtin:` sources resolved to. Written by domforge; commit it.\n\
             # `domforge update {manifest_name}` re-resolves; `--locked` refuses any change.\n\n{body}"
        )
    }

    fn map(&self) -> BTreeMap<LockKey, LockedSource> {
        self.sources.iter().map(|s| (s.key(), s.clone())).collect()
    }
}

/// What changed from `old` to `new`, in key order.
pub fn diff(old: &LockFile, new: &LockFile) -> Vec<LockChange> {
    let (old, new) = (old.map(), new.map());
    let keys: BTreeSet<&LockKey> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (None, Some(n)) => Some(LockChange::Added(n.clone())),
            (Some(o), None) => Some(LockChange::Removed(o.clone())),
            (Some(o), Some(n)) if o != n => Some(LockChange::Changed {
                from: o.clone(),
                to: n.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The lock file of a manifest: `<manifest>.lock` beside it.
pub fn lock_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What a command did to the lock.
#[derive(Debug, Clone, Default)]
pub struct LockOutcome {
    /// The lock file (`None` under [`LockPolicy::Off`]).
    pub path: Option<PathBuf>,
    /// What changed against the file as it was (empty: unchanged).
    pub changes: Vec<LockChange>,
    /// Whether the file was (re)written.
    pub written: bool,
}

/// The lock as one command uses it: the file as read, and what the command resolved.
#[derive(Debug)]
pub struct LockSession {
    policy: LockPolicy,
    path: PathBuf,
    manifest: String,
    old: Option<LockFile>,
    used: BTreeMap<LockKey, LockedSource>,
    missing: Vec<String>,
    refreshed: BTreeSet<(String, String)>,
}

impl LockSession {
    /// Reads `<manifest>.lock` (if the policy uses it).
    pub fn open(manifest: &Path, policy: LockPolicy) -> Result<Self, LockError> {
        let path = lock_path(manifest);
        let manifest = manifest.display().to_string();
        let old = match policy {
            LockPolicy::Off => None,
            _ => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let lock = LockFile::parse(&text).map_err(|message| LockError::Parse {
                        path: path.clone(),
                        manifest: manifest.clone(),
                        message,
                    })?;
                    if lock.version != LOCK_FORMAT {
                        return Err(LockError::Format {
                            path,
                            manifest,
                            found: lock.version,
                        });
                    }
                    Some(lock)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(LockError::Read { path, source }),
            },
        };
        Ok(Self {
            policy,
            path,
            manifest,
            old,
            used: BTreeMap::new(),
            missing: Vec::new(),
            refreshed: BTreeSet::new(),
        })
    }

    pub fn policy(&self) -> LockPolicy {
        self.policy
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest as the command named it (for messages).
    pub fn manifest(&self) -> &str {
        &self.manifest
    }

    fn old_entry(&self, key: &LockKey) -> Option<&LockedSource> {
        self.old.as_ref()?.sources.iter().find(|s| s.key() == *key)
    }

    /// The lock's entry for `key`, when the policy follows pins.
    pub fn pinned(&self, key: &LockKey) -> Option<&LockedSource> {
        match self.policy {
            LockPolicy::Use | LockPolicy::Locked => self.old_entry(key),
            LockPolicy::Off | LockPolicy::Update | LockPolicy::Verify => None,
        }
    }

    /// A pinned package of `arch` whose name starts with `prefix`: first from `key`'s own
    /// entry, then from any entry this run resolved, then from the rest of the lock. Sources
    /// that share a package (the kernel of `debian:kernel`, of the probe's modules and of a
    /// board's DTB) thus stay on one version even when one of them is added later.
    pub fn package_pin(&self, key: &LockKey, prefix: &str) -> Option<PackagePin> {
        let matching = |s: &LockedSource| {
            s.packages
                .iter()
                .find(|p| p.architecture == key.1 && p.name.starts_with(prefix))
                .and_then(LockedPackage::pin)
        };
        if let Some(p) = self.pinned(key).and_then(matching) {
            return Some(p);
        }
        if let Some(p) = self.used.values().find_map(matching) {
            return Some(p);
        }
        match self.policy {
            LockPolicy::Use | LockPolicy::Locked => {
                self.old.as_ref()?.sources.iter().find_map(matching)
            }
            LockPolicy::Off | LockPolicy::Update | LockPolicy::Verify => None,
        }
    }

    /// Whether `key` may be resolved from the archive. Under `--locked` a source the lock does
    /// not pin is not resolved (that would read the index only to fail); it is remembered for
    /// [`LockSession::finish`]'s error.
    pub fn may_resolve(&mut self, key: &LockKey) -> Result<(), String> {
        if self.policy == LockPolicy::Locked && self.old_entry(key).is_none() {
            let label = match &key.2 {
                Some(x) => format!("{} ({}, Xen {x})", key.0, key.1),
                None => format!("{} ({})", key.0, key.1),
            };
            self.missing.push(label);
            return Err(format!(
                "{} does not pin it and --locked forbids resolving it; run `domforge update {}`",
                self.path.display(),
                self.manifest
            ));
        }
        Ok(())
    }

    /// Under [`LockPolicy::Update`], whether the index of `(suite, arch)` still has to be
    /// refreshed in this run (answers `true` once per pair).
    pub fn needs_refresh(&mut self, suite: &str, arch: &str) -> bool {
        matches!(self.policy, LockPolicy::Update | LockPolicy::Verify)
            && self.refreshed.insert((suite.to_owned(), arch.to_owned()))
    }

    /// Records what a source resolved to. Refuses a file whose digest differs from what the
    /// lock records for the same inputs: the cached file was modified.
    pub fn record(&mut self, entry: LockedSource, path: &Path) -> Result<(), String> {
        if self.policy == LockPolicy::Off {
            return Ok(());
        }
        if let Some(old) = self.old_entry(&entry.key())
            && old.packages == entry.packages
            && old.recipe == entry.recipe
            && old.sha256 != entry.sha256
        {
            return Err(format!(
                "{} has SHA-256 {}, but {} records {} for the same inputs ({}): the cached file \
                 was modified; delete it to fetch or build it again",
                path.display(),
                entry.sha256,
                self.path.display(),
                old.sha256,
                old.summary()
            ));
        }
        self.used.insert(entry.key(), entry);
        Ok(())
    }

    /// The lock as this run leaves it.
    fn result(&self) -> LockFile {
        let mut map = match (self.policy, &self.old) {
            (LockPolicy::Update | LockPolicy::Verify, _) | (_, None) => BTreeMap::new(),
            (_, Some(old)) => old.map(),
        };
        map.extend(self.used.iter().map(|(k, v)| (k.clone(), v.clone())));
        LockFile {
            version: LOCK_FORMAT,
            sources: map.into_values().collect(),
        }
    }

    /// Applies the policy: writes the lock when it changed (atomically), or refuses under
    /// `--locked`.
    pub fn finish(self) -> Result<LockOutcome, LockError> {
        if self.policy == LockPolicy::Off {
            return Ok(LockOutcome::default());
        }
        let new = self.result();
        let empty = LockFile {
            version: LOCK_FORMAT,
            sources: Vec::new(),
        };
        let changes = diff(self.old.as_ref().unwrap_or(&empty), &new);
        let mut outcome = LockOutcome {
            path: Some(self.path.clone()),
            changes,
            written: false,
        };
        if matches!(self.policy, LockPolicy::Locked | LockPolicy::Verify) {
            if !self.missing.is_empty() || (self.old.is_none() && !new.sources.is_empty()) {
                return Err(LockError::Missing {
                    path: self.path,
                    manifest: self.manifest,
                    missing: self.missing,
                });
            }
            if !outcome.changes.is_empty() {
                return Err(LockError::WouldChange {
                    path: self.path,
                    manifest: self.manifest,
                    changes: outcome.changes,
                });
            }
            return Ok(outcome);
        }
        let unchanged = match &self.old {
            Some(old) => old.map() == new.map(),
            None => new.sources.is_empty(),
        };
        if unchanged {
            return Ok(outcome);
        }
        let name = Path::new(&self.manifest).file_name().map_or_else(
            || self.manifest.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        let text = new.to_text(&name);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let write = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(source) = write {
            let _ = std::fs::remove_file(&tmp);
            return Err(LockError::Write {
                path: self.path,
                source,
            });
        }
        outcome.written = true;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, version: &str, sha: &str) -> LockedSource {
        LockedSource {
            source: source.into(),
            architecture: "arm64".into(),
            xen: None,
            sha256: sha.into(),
            recipe: None,
            packages: vec![LockedPackage {
                name: "linux-image-6.1.0-57-arm64-unsigned".into(),
                version: version.into(),
                suite: "bookworm".into(),
                architecture: "arm64".into(),
                sha256: "d".repeat(64),
                files: Vec::new(),
            }],
        }
    }

    #[test]
    fn text_round_trips_and_is_sorted() {
        let mut lock = LockFile {
            version: LOCK_FORMAT,
            sources: vec![
                entry("debian:kernel", "6.1.192-3", &"a".repeat(64)),
                entry("builtin:probe", "6.1.192-3", &"b".repeat(64)),
            ],
        };
        lock.sources[1].packages[0].files = vec!["x y".into()];
        let text = lock.to_text("m.toml");
        let back = LockFile::parse(&text).unwrap();
        assert_eq!(back.map(), lock.map());
        assert_eq!(back.sources[0].source, "builtin:probe", "sorted by source");
        // Writing what was read gives the same bytes: no timestamps, stable order.
        assert_eq!(back.to_text("m.toml"), text);
        // A generic TOML reader sees the documented shape.
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["version"].as_integer(), Some(1));
        assert_eq!(
            v["source"][1]["package"][0]["version"].as_str(),
            Some("6.1.192-3")
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = LockFile::parse("version = 1\nextra = 2\n").unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn diff_names_what_moved() {
        let old = LockFile {
            version: 1,
            sources: vec![entry("debian:kernel", "6.1.192-3", &"a".repeat(64))],
        };
        let new = LockFile {
            version: 1,
            sources: vec![entry("debian:kernel", "6.1.193-1", &"c".repeat(64))],
        };
        let d = diff(&old, &new);
        assert_eq!(d.len(), 1);
        let text = d[0].to_string();
        assert!(text.contains("6.1.192-3 -> linux-image"), "{text}");
        assert!(text.contains("6.1.193-1"), "{text}");
        assert!(diff(&old, &old).is_empty());
    }
}
