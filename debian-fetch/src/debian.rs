//! Fetching Xen, Linux and busybox from Debian's archive, for any architecture, without root
//! and without touching the machine's dpkg/apt configuration.
//!
//! # How
//! Each `(suite, architecture)` pair gets a private apt state directory under
//! `<cache>/apt/<suite>-<arch>/` with its own `sources.list` (the archive keyring via
//! `signed-by`, only the `Packages` index target), its own lists, package cache and an empty
//! dpkg status file. `apt-get` and `apt-cache` run with `-o APT::Architecture=<arch>` and
//! `-o Dir::…` options pointing there and `Debug::NoLocking=1`, so they neither need root nor
//! see the host's architectures, pins or installed packages. apt verifies the index
//! signatures (InRelease, `signed-by`); we take the `SHA256` and `Size` of the chosen package
//! from that verified index and check the downloaded `.deb` against them ourselves before
//! unpacking it with `dpkg-deb -x` (present on every Debian system; a Rust ar/tar/xz reader
//! would add three dependencies for no gain here).
//!
//! # Cache and offline use
//! Unpacked packages live under `<cache>/packages/<arch>/<name>_<version>/` (`package.deb`,
//! `root/`, `fetched` metadata), written to a temporary directory and renamed into place,
//! so a half-finished fetch is never mistaken for a complete one. The index is downloaded
//! once per `(suite, arch)` and refreshed only when a request cannot be resolved or its
//! download fails (e.g. the version left the archive), or when [`Fetcher::refresh_index`] is
//! called. Resolutions (`request → name, version`) are memoised next to the index and
//! dropped on every refresh. A repeated fetch therefore runs no external program and needs
//! no network.
//!
//! # Concurrency
//! Every operation on one `(suite, arch)` state directory holds an exclusive lock on
//! `<state>/lock` (`std::fs::File::lock`), so parallel tests and processes share one cache
//! safely.

use std::fmt;
use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::formats;
use crate::version::compare_versions;

/// Suite used when a request names none: the Debian release our CI machines run.
pub const DEFAULT_SUITE: &str = "bookworm";

/// A miss (unknown package, failed download) refreshes an index older than this.
pub const REFRESH_ON_MISS_AFTER: Duration = Duration::from_secs(3600);

/// Keyring that signs Debian's archive (package `debian-archive-keyring`).
pub const DEBIAN_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Main archive used when the machine's apt sources name none.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Security archive used when the machine's apt sources name none.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// Debian suite that carries a given Xen version (`xen-hypervisor-<version>-<arch>`).
///
/// 4.17 is bookworm's; 4.20 is trixie's (and sid's). Other versions are in no Debian suite.
pub fn suite_for_xen(version: &str) -> Option<&'static str> {
    match version {
        "4.17" => Some("bookworm"),
        "4.20" => Some("trixie"),
        _ => None,
    }
}

/// The architectures we fetch for are the boards' (`schema::Arch`); Debian names them with
/// [`Arch::debian`] (`arm64`, `amd64`).
pub use schema::arch::Arch;

/// Errors of the Debian fetcher. Each names what was missing and how to get it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// An external program is not installed.
    #[error("`{tool}` is not installed (needed to {purpose}); hint: {hint}")]
    ToolMissing {
        /// Program name.
        tool: &'static str,
        /// What we needed it for.
        purpose: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// The archive keyring is missing.
    #[error(
        "Debian archive keyring {path} not found; hint: apt-get install debian-archive-keyring"
    )]
    KeyringMissing {
        /// Expected keyring path.
        path: PathBuf,
    },
    /// An external program failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Last lines of its stderr.
        stderr: String,
    },
    /// No package in the index matches the request.
    #[error(
        "no package matching {pattern:?} for {} in Debian {suite}; hint: check the name with \
         `apt-cache search`, or the suite (Xen 4.17 is in bookworm, 4.20 in trixie)",
        arch.debian()
    )]
    PackageNotFound {
        /// Name or pattern asked for.
        pattern: String,
        /// Architecture.
        arch: Arch,
        /// Suite.
        suite: String,
    },
    /// The index entry for a package lacks a field we rely on.
    #[error("index entry of {package} {version} lacks a valid {field} field")]
    IndexFieldMissing {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// Field name.
        field: &'static str,
    },
    /// The downloaded file does not match the index.
    #[error(
        "{package} {version}: downloaded file does not match the signed index \
         ({what}: expected {expected}, got {actual}); the download was discarded"
    )]
    ChecksumMismatch {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// `SHA256` or `Size`.
        what: &'static str,
        /// Value from the index.
        expected: String,
        /// Value of the file.
        actual: String,
    },
    /// A file expected inside a package is absent.
    #[error("{package} {version} does not contain {what} (looked for {looked_for})")]
    MissingInPackage {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// What was expected.
        what: &'static str,
        /// Path or pattern that was searched.
        looked_for: String,
    },
    /// A fetched file has the wrong format.
    #[error("{path}: {reason}")]
    BadFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A Xen version Debian does not carry.
    #[error(
        "Xen {0} is in no Debian suite we know; hint: use 4.17 (bookworm) or 4.20 (trixie), or \
         name the suite explicitly"
    )]
    UnknownXenVersion(String),
    /// Offline mode and the package is not in the cache.
    #[error(
        "{package} {version} ({}) is not in the cache and the fetcher is offline",
        arch.debian()
    )]
    NotCached {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// Architecture.
        arch: Arch,
    },
    /// A pinned version (a lock file's) is neither cached nor in the archive's index any more.
    #[error(
        "{package} {version} ({}) is pinned but no longer in Debian {suite}'s package index \
         (Debian drops superseded versions at point releases and security updates), and it is not \
         in the cache",
        arch.debian()
    )]
    PinnedVersionGone {
        /// Package name.
        package: String,
        /// The pinned version.
        version: String,
        /// Architecture.
        arch: Arch,
        /// Suite searched.
        suite: String,
    },
    /// The cache holds the pinned version, but with another `.deb` digest than the pin.
    #[error(
        "{} {} ({}) in the cache ({path}) has .deb SHA-256 {actual}, but the pin says {}; the \
         cache entry was modified or comes from another archive; hint: delete {path} to fetch it \
         again",
        .pin.name, .pin.version, .pin.arch.debian(), .pin.sha256
    )]
    PinMismatch {
        /// The pin (boxed: keeps every `Result` of this module small).
        pin: Box<PackagePin>,
        /// The cache entry.
        path: PathBuf,
        /// Digest recorded in the cache.
        actual: String,
    },
    /// The signed index lists the pinned version with another digest than the pin.
    #[error(
        "Debian {}'s signed index lists {} {} ({}) with SHA-256 {index}, but the pin says {}: \
         the archive rebuilt the package under the same version, or the pin was edited; \
         refusing to download it",
        .pin.suite, .pin.name, .pin.version, .pin.arch.debian(), .pin.sha256
    )]
    IndexDisagreesWithPin {
        /// The pin.
        pin: Box<PackagePin>,
        /// Digest in the index.
        index: String,
    },
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("cannot find a cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    /// File system error.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T, E = FetchError> = std::result::Result<T, E>;

/// A file system error: what we were doing, to which path (shared by [`FetchError`] and
/// [`crate::xen_build::XenBuildError`]).
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct IoError {
    /// What we were doing.
    pub action: &'static str,
    /// Path concerned.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// Wraps an `std::io::Error` with what we were doing to `path`, for `map_err`.
/// `?` turns it into the caller's error type.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IoError {
    let path = path.to_owned();
    move |source| IoError {
        action,
        path,
        source,
    }
}

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRequest {
    /// A package name, or a glob with `*` (any run of characters) and `?` (one character),
    /// e.g. `linux-image-6.1.0-*-arm64-unsigned`. Among several matches the highest Debian
    /// version wins (ties: the lexicographically last name).
    pub name_or_pattern: String,
    /// Exact version to fetch; `None` takes the newest in the index.
    pub version: Option<String>,
    /// Architecture.
    pub arch: Arch,
    /// Debian suite (`bookworm`, `trixie`, `sid`, …).
    pub suite: String,
}

impl PackageRequest {
    /// Newest version of `name_or_pattern` for `arch` in [`DEFAULT_SUITE`].
    pub fn new(name_or_pattern: impl Into<String>, arch: Arch) -> Self {
        Self {
            name_or_pattern: name_or_pattern.into(),
            version: None,
            arch,
            suite: DEFAULT_SUITE.to_owned(),
        }
    }

    /// The same request in another suite.
    #[must_use]
    pub fn in_suite(mut self, suite: impl Into<String>) -> Self {
        self.suite = suite.into();
        self
    }

    /// The same request pinned to one version.
    #[must_use]
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// A downloaded, verified and unpacked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPackage {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Architecture of the request.
    pub arch: Arch,
    /// Lower-case hex SHA-256 of the `.deb`, equal to the signed index's `SHA256`.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// The `.deb` file in the cache.
    pub deb_path: PathBuf,
    /// Directory the package was unpacked into (`dpkg-deb -x`).
    pub root_dir: PathBuf,
}

/// One exact package: what a lock file records so that a later fetch needs no index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackagePin {
    /// Package name (no glob).
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// Architecture.
    pub arch: Arch,
    /// The suite it was resolved in (searched again only when it is not cached).
    pub suite: String,
    /// Lower-case hex SHA-256 of the `.deb`, as the signed index gave it.
    pub sha256: String,
}

impl FetchedPackage {
    /// The pin that fetches exactly this package again, from `suite`.
    pub fn pin(&self, suite: &str) -> PackagePin {
        PackagePin {
            name: self.name.clone(),
            version: self.version.clone(),
            arch: self.arch,
            suite: suite.to_owned(),
            sha256: self.sha256.clone(),
        }
    }
}

/// The Xen hypervisor of a Debian package, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenFiles {
    /// The binary QEMU/U-Boot loads (arm64 Image; amd64 gunzipped ELF).
    pub image: PathBuf,
    /// Xen's EFI application in the same package (`boot/xen-<version>-<arch>.efi`), when the
    /// package ships one: what UEFI firmware starts (x86 `xen.efi`; on arm64 the same bytes as
    /// `image`).
    pub efi: Option<PathBuf>,
    /// The package it comes from.
    pub package: FetchedPackage,
    /// The suite it was taken from.
    pub suite: String,
}

/// Files of a Debian Linux kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    /// Kernel release (`uname -r`), e.g. `6.1.0-50-arm64`.
    pub release: String,
    /// The bootable kernel: `boot/vmlinuz-<release>` (arm64: a plain `Image`; amd64: a bzImage).
    pub image: PathBuf,
    /// Device trees shipped with the kernel (`usr/lib/linux-image-<release>/`), arm64 only.
    pub dtbs_dir: Option<PathBuf>,
    /// Modules (`lib/modules/<release>/`).
    pub modules_dir: PathBuf,
    /// Kernel configuration (`boot/config-<release>`), if shipped.
    pub config: Option<PathBuf>,
    /// The package these come from.
    pub package: FetchedPackage,
}

/// Progress events, for a caller that wants to render them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The package index of a suite/arch is being downloaded.
    UpdatingIndex {
        /// Suite.
        suite: String,
        /// Architecture.
        arch: Arch,
    },
    /// Bytes of a package downloaded so far.
    Downloading {
        /// `name_version_arch`.
        package: String,
        /// Bytes on disk so far.
        done: u64,
        /// Size from the index.
        total: u64,
    },
    /// A download finished.
    Downloaded {
        /// `name_version_arch`.
        package: String,
        /// Bytes.
        bytes: u64,
        /// Wall time.
        elapsed: Duration,
    },
    /// A package is being verified and unpacked.
    Unpacking {
        /// `name_version_arch`.
        package: String,
    },
}

/// Where progress goes.
#[derive(Clone, Default)]
pub enum Progress {
    /// Human-readable lines on stderr (a self-overwriting line on a terminal).
    #[default]
    Stderr,
    /// Nothing.
    Quiet,
    /// A caller-supplied sink.
    Callback(Arc<dyn Fn(&ProgressEvent) + Send + Sync>),
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Stderr => f.write_str("Stderr"),
            Progress::Quiet => f.write_str("Quiet"),
            Progress::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

fn mib(bytes: u64) -> String {
    // Display only; precision loss is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / (1024.0 * 1024.0);
    format!("{value:.1} MiB")
}

impl Progress {
    fn emit(&self, event: &ProgressEvent) {
        match self {
            Progress::Quiet => {}
            Progress::Callback(sink) => sink(event),
            Progress::Stderr => {
                let tty = std::io::stderr().is_terminal();
                let mut err = std::io::stderr().lock();
                // Progress output is best effort: a closed stderr must not fail a fetch.
                let _ = match event {
                    ProgressEvent::UpdatingIndex { suite, arch } => {
                        writeln!(
                            err,
                            "images: updating Debian {suite} package index for {}",
                            arch.debian()
                        )
                    }
                    ProgressEvent::Downloading {
                        package,
                        done,
                        total,
                    } => {
                        let percent = done.saturating_mul(100).checked_div(*total).unwrap_or(0);
                        if tty {
                            write!(
                                err,
                                "\rimages: downloading {package}: {} / {} ({percent}%)   ",
                                mib(*done),
                                mib(*total)
                            )
                        } else {
                            writeln!(
                                err,
                                "images: downloading {package}: {} / {} ({percent}%)",
                                mib(*done),
                                mib(*total)
                            )
                        }
                    }
                    ProgressEvent::Downloaded {
                        package,
                        bytes,
                        elapsed,
                    } => writeln!(
                        err,
                        "{}images: downloaded {package}: {} in {:.1} s",
                        if tty { "\r" } else { "" },
                        mib(*bytes),
                        elapsed.as_secs_f64()
                    ),
                    ProgressEvent::Unpacking { package } => {
                        writeln!(err, "images: verified SHA256 and unpacking {package}")
                    }
                };
            }
        }
    }
}

/// Mirrors named in the apt sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// Main archive URL (`…/debian`).
    pub archive: String,
    /// Security archive URL (`…/debian-security`).
    pub security: String,
}

impl Default for Mirrors {
    fn default() -> Self {
        Self {
            archive: DEFAULT_MIRROR.to_owned(),
            security: DEFAULT_SECURITY_MIRROR.to_owned(),
        }
    }
}

impl Mirrors {
    /// The mirrors the machine's own apt configuration uses (`/etc/apt/sources.list` and
    /// `/etc/apt/sources.list.d/*.{list,sources}`), so we reuse a local mirror or proxy
    /// where one is configured. Falls back to [`DEFAULT_MIRROR`] and
    /// [`DEFAULT_SECURITY_MIRROR`]. `DOMFORGE_DEBIAN_MIRROR` and
    /// `DOMFORGE_DEBIAN_SECURITY_MIRROR` override both.
    pub fn from_system() -> Self {
        let mut mirrors = Self::default();
        let mut texts = Vec::new();
        if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
            texts.push(text);
        }
        if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
            let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                let is_source = path
                    .extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources");
                if is_source && let Ok(text) = fs::read_to_string(&path) {
                    texts.push(text);
                }
            }
        }
        let (archive, security) = mirrors_in_sources(&texts.join("\n"));
        if let Some(archive) = archive {
            mirrors.archive = archive;
        }
        if let Some(security) = security {
            mirrors.security = security;
        }
        if let Ok(url) = std::env::var("DOMFORGE_DEBIAN_MIRROR")
            && !url.is_empty()
        {
            mirrors.archive = url;
        }
        if let Ok(url) = std::env::var("DOMFORGE_DEBIAN_SECURITY_MIRROR")
            && !url.is_empty()
        {
            mirrors.security = url;
        }
        mirrors
    }
}

/// Finds the first main-archive URL (path ending in `/debian`) and security URL (ending in
/// `/debian-security`) in one-line (`deb URL suite…`) or deb822 (`URIs: URL`) sources.
fn mirrors_in_sources(text: &str) -> (Option<String>, Option<String>) {
    let mut archive = None;
    let mut security = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let candidates: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().collect()
        } else if line.starts_with("deb ") {
            // `deb [options] URL suite components`; options are bracketed.
            let rest = line.trim_start_matches("deb ").trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']').map_or("", |(_, rest)| rest),
                None => rest,
            };
            rest.split_whitespace().take(1).collect()
        } else {
            Vec::new()
        };
        for url in candidates {
            let url = url.trim_end_matches('/');
            let is_http = url.starts_with("http://") || url.starts_with("https://");
            if !is_http {
                continue;
            }
            if url.ends_with("/debian-security") {
                security.get_or_insert_with(|| url.to_owned());
            } else if url.ends_with("/debian") {
                archive.get_or_insert_with(|| url.to_owned());
            }
        }
    }
    (archive, security)
}

/// Suites that have `-updates` and `-security` companions (stable releases do; `sid`,
/// `unstable` and `experimental` do not).
fn has_update_suites(suite: &str) -> bool {
    !matches!(suite, "sid" | "unstable" | "experimental" | "rc-buggy")
}

/// Whether a suite/codename is safe to put in a path and an apt sources line.
fn valid_suite(suite: &str) -> bool {
    !suite.is_empty()
        && suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Package names per Debian Policy §5.6.1 (plus our glob characters in patterns).
fn valid_package_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'+' | b'-' | b'.' | b'*' | b'?')
        })
}

/// Matches `name` against a glob with `*` and `?`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                backtrack = Some((pi, ni));
                pi = pi.saturating_add(1);
            }
            Some(&c) if c == b'?' || Some(&c) == n.get(ni) => {
                pi = pi.saturating_add(1);
                ni = ni.saturating_add(1);
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pi = star.saturating_add(1);
                    ni = matched.saturating_add(1);
                    backtrack = Some((star, ni));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == b'*')
}

/// One stanza of `apt-cache show`.
#[derive(Debug, Clone, Default)]
struct IndexEntry {
    package: String,
    version: String,
    filename: String,
    size: Option<u64>,
    sha256: Option<String>,
    depends: String,
}

fn parse_stanzas(text: &str) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut entry = IndexEntry::default();
        for line in block.lines() {
            // Continuation lines (leading space) belong to multi-line fields we do not use.
            if line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => entry.package = value.to_owned(),
                "Version" => entry.version = value.to_owned(),
                "Filename" => entry.filename = value.to_owned(),
                "Size" => entry.size = value.parse().ok(),
                "SHA256" => entry.sha256 = Some(value.to_ascii_lowercase()),
                "Depends" => entry.depends = value.to_owned(),
                _ => {}
            }
        }
        if !entry.package.is_empty() && !entry.version.is_empty() {
            entries.push(entry);
        }
    }
    entries
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(io_err("reading", path))?;
        let Some(chunk) = buffer.get(..read) else {
            break;
        };
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
    }
    Ok(hex(&hasher.finalize()))
}

/// Escapes a version for use in a file name the way apt names `.deb` files (`:` → `%3a`).
fn version_in_filename(version: &str) -> String {
    version.replace(':', "%3a")
}

fn tail_lines(text: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(base: &Path, tag: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{tag}-{}-{n}", std::process::id()));
    PathBuf::from(name)
}

/// The fetcher. Cheap to create; all state is on disk.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache_dir: PathBuf,
    mirrors: Mirrors,
    keyring: PathBuf,
    progress: Progress,
    offline: bool,
    /// How often this fetcher (and its clones) consulted a package index: every run of
    /// `apt-get`/`apt-cache` and every opening of a suite's apt state. A lock satisfied by the
    /// cache keeps it at zero ([`Fetcher::fetch_pinned`]); tests read it through
    /// [`Fetcher::index_accesses`].
    index_accesses: Arc<AtomicU64>,
    /// Archive components besides `main` (e.g. `non-free-firmware`); see [`Fetcher::with_components`].
    extra_components: Vec<String>,
}

impl Fetcher {
    /// A fetcher caching under `cache_dir` (created on first use), using the machine's apt
    /// mirrors ([`Mirrors::from_system`]) and progress on stderr.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            mirrors: Mirrors::from_system(),
            keyring: PathBuf::from(DEBIAN_ARCHIVE_KEYRING),
            progress: Progress::Stderr,
            offline: false,
            index_accesses: Arc::new(AtomicU64::new(0)),
            extra_components: Vec::new(),
        }
    }

    /// Counts index accesses into `counter` (shared with whoever holds it) instead of a
    /// counter of its own.
    #[must_use]
    pub fn with_index_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        self.index_accesses = counter;
        self
    }

    /// How many times this fetcher and its clones touched a package index (ran apt or opened
    /// a suite's apt state). Zero after work that a lock and the cache fully answered.
    pub fn index_accesses(&self) -> u64 {
        self.index_accesses.load(Ordering::Relaxed)
    }

    fn note_index_access(&self) {
        self.index_accesses.fetch_add(1, Ordering::Relaxed);
    }

    /// Also reads these archive components besides `main` (Debian's `non-free-firmware` holds
    /// `raspi-firmware`). Such a fetcher keeps its own apt state (`<suite>-<arch>+<components>`),
    /// so the `main`-only index other fetchers share is never rewritten.
    #[must_use]
    pub fn with_components(mut self, components: &[&str]) -> Self {
        self.extra_components = components
            .iter()
            .filter(|c| {
                **c != "main" && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            })
            .map(|c| c.to_string())
            .collect();
        self
    }

    /// Never runs `apt-get` (no index update, no download): only packages already in the
    /// cache are returned, others fail with [`FetchError::NotCached`].
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// A fetcher caching under [`default_cache_dir`].
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(default_cache_dir()?))
    }

    /// Uses other mirrors.
    #[must_use]
    pub fn with_mirrors(mut self, mirrors: Mirrors) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// Uses another keyring to verify the archive's `InRelease` signatures.
    #[must_use]
    pub fn with_keyring(mut self, keyring: impl Into<PathBuf>) -> Self {
        self.keyring = keyring.into();
        self
    }

    /// Sends progress elsewhere.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The cache root.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn state_dir(&self, suite: &str, arch: Arch) -> PathBuf {
        let mut name = format!("{suite}-{}", arch.debian());
        for c in &self.extra_components {
            name.push('+');
            name.push_str(c);
        }
        self.cache_dir.join("apt").join(name)
    }

    /// Creates the private apt tree and writes its sources.list; returns whether the
    /// sources changed (which makes the existing index stale).
    fn prepare_state(&self, state: &Path, suite: &str, arch: Arch) -> Result<bool> {
        for sub in ["lists/partial", "cache/archives/partial", "etc", "resolved"] {
            let dir = state.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        let status = state.join("status");
        if !status.exists() {
            fs::write(&status, b"").map_err(io_err("creating", &status))?;
        }
        if !self.keyring.exists() {
            return Err(FetchError::KeyringMissing {
                path: self.keyring.clone(),
            });
        }
        // `target=Packages` limits `update` to the package lists: no translations, no
        // AppStream (DEP-11) data that the host's apt.conf.d may enable.
        let options = format!(
            "[arch={} signed-by={} target=Packages]",
            arch.debian(),
            self.keyring.display()
        );
        let components = std::iter::once("main")
            .chain(self.extra_components.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let mut sources = format!(
            "deb {options} {} {suite} {components}\n",
            self.mirrors.archive
        );
        if has_update_suites(suite) {
            sources.push_str(&format!(
                "deb {options} {} {suite}-updates {components}\n",
                self.mirrors.archive
            ));
            sources.push_str(&format!(
                "deb {options} {} {suite}-security {components}\n",
                self.mirrors.security
            ));
        }
        let path = state.join("etc/sources.list");
        let changed = fs::read_to_string(&path).ok().as_deref() != Some(sources.as_str());
        if changed {
            fs::write(&path, sources).map_err(io_err("writing", &path))?;
        }
        Ok(changed)
    }

    fn apt_options(state: &Path, arch: Arch) -> Vec<String> {
        let d = |sub: &str| state.join(sub).display().to_string();
        vec![
            "-q".to_owned(),
            "-o".to_owned(),
            format!("APT::Architecture={}", arch.debian()),
            "-o".to_owned(),
            format!("APT::Architectures={}", arch.debian()),
            "-o".to_owned(),
            format!("Dir::State::Lists={}", d("lists")),
            "-o".to_owned(),
            format!("Dir::State::status={}", d("status")),
            "-o".to_owned(),
            format!("Dir::Cache={}", d("cache")),
            "-o".to_owned(),
            format!("Dir::Etc::SourceList={}", d("etc/sources.list")),
            "-o".to_owned(),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            // The host's pins must not change which version we pick.
            "-o".to_owned(),
            "Dir::Etc::Preferences=/dev/null".to_owned(),
            "-o".to_owned(),
            "Dir::Etc::PreferencesParts=/dev/null".to_owned(),
            // Our own lock (see module docs) replaces apt's, which needs root.
            "-o".to_owned(),
            "Debug::NoLocking=1".to_owned(),
            // As root, apt would drop to `_apt`, which cannot write into a user's cache;
            // as non-root apt never switches users and ignores this.
            "-o".to_owned(),
            "APT::Sandbox::User=root".to_owned(),
        ]
    }

    fn run_apt(
        &self,
        tool: &'static str,
        state: &Path,
        arch: Arch,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Result<Vec<u8>> {
        self.note_index_access();
        let mut command = Command::new(tool);
        command.args(Self::apt_options(state, arch)).args(args);
        command.env("LC_ALL", "C").stdin(Stdio::null());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let output = command.output().map_err(|e| apt_spawn_error(tool, e))?;
        if !output.status.success() {
            return Err(FetchError::CommandFailed {
                command: format!("{tool} {}", args.join(" ")),
                status: output.status.to_string(),
                stderr: tail_lines(&output.stderr, 4),
            });
        }
        Ok(output.stdout)
    }

    fn lock(&self, state: &Path) -> Result<fs::File> {
        fs::create_dir_all(state).map_err(io_err("creating", state))?;
        let path = state.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        file.lock().map_err(io_err("locking", &path))?;
        Ok(file)
    }

    fn index_present(state: &Path) -> bool {
        fs::read_dir(state.join("lists")).is_ok_and(|dir| {
            dir.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    fn update_locked(&self, state: &Path, suite: &str, arch: Arch) -> Result<()> {
        self.progress.emit(&ProgressEvent::UpdatingIndex {
            suite: suite.to_owned(),
            arch,
        });
        self.run_apt("apt-get", state, arch, &["update"], None)?;
        // apt sets list mtimes from the server's Last-Modified; keep our own stamp.
        let stamp = state.join("updated");
        fs::write(&stamp, b"").map_err(io_err("writing", &stamp))?;
        // Memoised resolutions refer to the old index.
        let resolved = state.join("resolved");
        if let Ok(dir) = fs::read_dir(&resolved) {
            for entry in dir.filter_map(Result::ok) {
                let _ = fs::remove_file(entry.path());
            }
        }
        if !Self::index_present(state) {
            return Err(FetchError::CommandFailed {
                command: "apt-get update".to_owned(),
                status: "no package list downloaded".to_owned(),
                stderr: format!("check the suite name {suite:?} and the mirror"),
            });
        }
        Ok(())
    }

    /// Downloads the package index of `suite`/`arch` now.
    pub fn refresh_index(&self, suite: &str, arch: Arch) -> Result<()> {
        check_suite(suite)?;
        let state = self.state_dir(suite, arch);
        let _lock = self.lock(&state)?;
        self.prepare_state(&state, suite, arch)?;
        self.update_locked(&state, suite, arch)
    }

    /// Takes the state lock, writes the private apt configuration and, unless offline,
    /// downloads the index if there is none yet. Returns the lock guard and whether the
    /// index was just updated.
    fn open_state(&self, state: &Path, suite: &str, arch: Arch) -> Result<(fs::File, bool)> {
        self.note_index_access();
        let lock = self.lock(state)?;
        let sources_changed = self.prepare_state(state, suite, arch)?;
        if !self.offline && (sources_changed || !Self::index_present(state)) {
            self.update_locked(state, suite, arch)?;
            return Ok((lock, true));
        }
        Ok((lock, false))
    }

    /// Whether a miss (unknown package, failed download) justifies refreshing the index:
    /// not offline, not refreshed during this call, and the index is older than
    /// [`REFRESH_ON_MISS_AFTER`] (so asking for a package that does not exist does not
    /// download the index every time).
    fn may_refresh(&self, state: &Path, updated: bool) -> bool {
        if self.offline || updated {
            return false;
        }
        fs::metadata(state.join("updated"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > REFRESH_ON_MISS_AFTER)
    }

    /// Resolves a request, refreshing the index once on a miss when [`Self::may_refresh`].
    fn resolve_refreshing(
        &self,
        state: &Path,
        request: &PackageRequest,
        updated: &mut bool,
    ) -> Result<(String, String)> {
        match self.resolve_locked(state, request) {
            Err(FetchError::PackageNotFound { .. }) if self.may_refresh(state, *updated) => {
                self.update_locked(state, &request.suite, request.arch)?;
                *updated = true;
                self.resolve_locked(state, request)
            }
            other => other,
        }
    }

    /// Fetches (or finds in the cache) the package a request names.
    pub fn fetch(&self, request: &PackageRequest) -> Result<FetchedPackage> {
        check_suite(&request.suite)?;
        if !valid_package_pattern(&request.name_or_pattern) {
            return Err(FetchError::PackageNotFound {
                pattern: request.name_or_pattern.clone(),
                arch: request.arch,
                suite: request.suite.clone(),
            });
        }
        let (suite, arch) = (request.suite.as_str(), request.arch);
        let state = self.state_dir(suite, arch);
        let (_lock, mut updated) = self.open_state(&state, suite, arch)?;
        loop {
            let (name, version) = self.resolve_refreshing(&state, request, &mut updated)?;
            if let Some(done) = self.cached(&name, &version, arch) {
                return Ok(done);
            }
            if self.offline {
                return Err(FetchError::NotCached {
                    package: name,
                    version,
                    arch,
                });
            }
            let entry = self.index_entry_locked(&state, arch, &name, &version)?;
            match self.download_locked(&state, arch, &entry) {
                Ok(done) => return Ok(done),
                // The version may have left the archive since our index was fetched.
                Err(FetchError::CommandFailed { .. }) if self.may_refresh(&state, updated) => {
                    self.update_locked(&state, suite, arch)?;
                    updated = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches exactly `pin`. When the cache holds it (and its recorded `.deb` digest is the
    /// pin's) nothing else happens: no apt state is opened, no index read, no program run — a
    /// satisfied lock costs file reads only. Otherwise the pinned version is looked up in the
    /// suite's index (refreshed once when it is missing and the index is old), its signed
    /// digest must be the pin's, and it is downloaded and verified as by [`Fetcher::fetch`].
    pub fn fetch_pinned(&self, pin: &PackagePin) -> Result<FetchedPackage> {
        check_suite(&pin.suite)?;
        let (suite, arch) = (pin.suite.as_str(), pin.arch);
        if !valid_package_pattern(&pin.name) || pin.name.contains(['*', '?']) {
            return Err(FetchError::PackageNotFound {
                pattern: pin.name.clone(),
                arch,
                suite: suite.to_owned(),
            });
        }
        if let Some(found) = self.cached(&pin.name, &pin.version, arch) {
            if found.sha256 != pin.sha256 {
                return Err(FetchError::PinMismatch {
                    pin: Box::new(pin.clone()),
                    path: self.package_dir(&pin.name, &pin.version, arch),
                    actual: found.sha256,
                });
            }
            return Ok(found);
        }
        if self.offline {
            return Err(FetchError::NotCached {
                package: pin.name.clone(),
                version: pin.version.clone(),
                arch,
            });
        }
        let state = self.state_dir(suite, arch);
        let (_lock, mut updated) = self.open_state(&state, suite, arch)?;
        loop {
            let entry = self
                .show_locked(&state, arch, &pin.name)?
                .into_iter()
                .find(|e| e.version == pin.version);
            let Some(entry) = entry else {
                if self.may_refresh(&state, updated) {
                    self.update_locked(&state, suite, arch)?;
                    updated = true;
                    continue;
                }
                return Err(FetchError::PinnedVersionGone {
                    package: pin.name.clone(),
                    version: pin.version.clone(),
                    arch,
                    suite: suite.to_owned(),
                });
            };
            if entry.sha256.as_deref() != Some(pin.sha256.as_str()) {
                return Err(FetchError::IndexDisagreesWithPin {
                    pin: Box::new(pin.clone()),
                    index: entry.sha256.unwrap_or_default(),
                });
            }
            match self.download_locked(&state, arch, &entry) {
                Ok(done) => return Ok(done),
                Err(FetchError::CommandFailed { .. }) if self.may_refresh(&state, updated) => {
                    self.update_locked(&state, suite, arch)?;
                    updated = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `apt-cache show` entries of one package name, all versions.
    fn show_locked(&self, state: &Path, arch: Arch, name: &str) -> Result<Vec<IndexEntry>> {
        match self.run_apt("apt-cache", state, arch, &["show", name], None) {
            Ok(stdout) => Ok(parse_stanzas(&String::from_utf8_lossy(&stdout))
                .into_iter()
                .filter(|e| e.package == name)
                .collect()),
            // apt-cache exits 100 for unknown or purely virtual names.
            Err(FetchError::CommandFailed { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Resolves a request to `(name, version)`, memoised per index.
    fn resolve_locked(&self, state: &Path, request: &PackageRequest) -> Result<(String, String)> {
        let key = format!(
            "{}={}",
            request
                .name_or_pattern
                .replace('*', "%2a")
                .replace('?', "%3f"),
            request
                .version
                .as_deref()
                .map(version_in_filename)
                .unwrap_or_default()
        );
        let memo = state.join("resolved").join(&key);
        if let Ok(text) = fs::read_to_string(&memo)
            && let Some((name, version)) = text.trim().split_once(' ')
        {
            return Ok((name.to_owned(), version.to_owned()));
        }
        let not_found = || FetchError::PackageNotFound {
            pattern: request.name_or_pattern.clone(),
            arch: request.arch,
            suite: request.suite.clone(),
        };
        let pattern = &request.name_or_pattern;
        let names: Vec<String> = if pattern.contains(['*', '?']) {
            let prefix: String = pattern
                .chars()
                .take_while(|c| !matches!(c, '*' | '?'))
                .collect();
            let stdout = self.run_apt(
                "apt-cache",
                state,
                request.arch,
                &["pkgnames", &prefix],
                None,
            )?;
            let mut names: Vec<String> = String::from_utf8_lossy(&stdout)
                .lines()
                .map(str::trim)
                .filter(|name| glob_match(pattern, name))
                .map(str::to_owned)
                .collect();
            names.sort();
            names
        } else {
            vec![pattern.clone()]
        };
        let mut best: Option<(String, String)> = None;
        for name in names {
            for entry in self.show_locked(state, request.arch, &name)? {
                if request
                    .version
                    .as_ref()
                    .is_some_and(|v| *v != entry.version)
                {
                    continue;
                }
                let better = best.as_ref().is_none_or(|(best_name, best_version)| {
                    compare_versions(&entry.version, best_version)
                        .then_with(|| entry.package.cmp(best_name))
                        .is_gt()
                });
                if better {
                    best = Some((entry.package.clone(), entry.version.clone()));
                }
            }
        }
        let (name, version) = best.ok_or_else(not_found)?;
        // A lost memo only costs time.
        let _ = fs::write(&memo, format!("{name} {version}\n"));
        Ok((name, version))
    }

    fn index_entry_locked(
        &self,
        state: &Path,
        arch: Arch,
        name: &str,
        version: &str,
    ) -> Result<IndexEntry> {
        self.show_locked(state, arch, name)?
            .into_iter()
            .find(|e| e.version == version)
            .ok_or_else(|| FetchError::IndexFieldMissing {
                package: name.to_owned(),
                version: version.to_owned(),
                field: "Version",
            })
    }

    fn package_dir(&self, name: &str, version: &str, arch: Arch) -> PathBuf {
        self.cache_dir
            .join("packages")
            .join(arch.debian())
            .join(format!("{name}_{}", version_in_filename(version)))
    }

    /// A complete cached unpack of `name` `version`, if present.
    fn cached(&self, name: &str, version: &str, arch: Arch) -> Option<FetchedPackage> {
        let dir = self.package_dir(name, version, arch);
        let meta = fs::read_to_string(dir.join("fetched")).ok()?;
        let field = |key: &str| {
            meta.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let fetched = FetchedPackage {
            name: field("name")?,
            version: field("version")?,
            arch,
            sha256: field("sha256")?,
            size: field("size")?.parse().ok()?,
            deb_path: dir.join("package.deb"),
            root_dir: dir.join("root"),
        };
        (fetched.name == name && fetched.version == version && fetched.root_dir.is_dir())
            .then_some(fetched)
    }

    fn download_locked(
        &self,
        state: &Path,
        arch: Arch,
        entry: &IndexEntry,
    ) -> Result<FetchedPackage> {
        let missing = |field| FetchError::IndexFieldMissing {
            package: entry.package.clone(),
            version: entry.version.clone(),
            field,
        };
        let expected_sha = entry
            .sha256
            .clone()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| missing("SHA256"))?;
        let expected_size = entry.size.ok_or_else(|| missing("Size"))?;
        let label = format!("{}_{}_{}", entry.package, entry.version, arch.debian());

        let final_dir = self.package_dir(&entry.package, &entry.version, arch);
        let parent = final_dir.parent().unwrap_or(&self.cache_dir).to_owned();
        fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
        let work = temp_name(&final_dir, "partial");
        fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
        let result = self.download_into(
            state,
            arch,
            entry,
            &work,
            &label,
            &expected_sha,
            expected_size,
        );
        let fetched = match result {
            Ok(()) => {
                match fs::rename(&work, &final_dir) {
                    Ok(()) => {}
                    // Another process finished first; keep its copy.
                    Err(_) if final_dir.join("fetched").exists() => {
                        let _ = fs::remove_dir_all(&work);
                    }
                    Err(e) => {
                        let _ = fs::remove_dir_all(&work);
                        return Err(io_err("renaming into", &final_dir)(e).into());
                    }
                }
                self.cached(&entry.package, &entry.version, arch)
                    .ok_or_else(|| {
                        FetchError::Io(IoError {
                            action: "reading back",
                            path: final_dir.clone(),
                            source: std::io::Error::other("cache entry incomplete after rename"),
                        })
                    })?
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        Ok(fetched)
    }

    #[allow(clippy::too_many_arguments)]
    fn download_into(
        &self,
        state: &Path,
        arch: Arch,
        entry: &IndexEntry,
        work: &Path,
        label: &str,
        expected_sha: &str,
        expected_size: u64,
    ) -> Result<()> {
        let download_dir = work.join("download");
        fs::create_dir_all(&download_dir).map_err(io_err("creating", &download_dir))?;
        let started = Instant::now();
        let spec = format!("{}={}", entry.package, entry.version);
        self.note_index_access();
        let mut command = Command::new("apt-get");
        command
            .args(Self::apt_options(state, arch))
            .args(["download", &spec])
            .current_dir(&download_dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| apt_spawn_error("apt-get", e))?;
        // Drain stderr on a thread so a chatty apt cannot block on a full pipe.
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = stderr {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        });
        let partial_dir = state.join("cache/archives/partial");
        let mut last_report = Instant::now();
        // A terminal line rewrites itself; logs get a line every few seconds only.
        let interval = if std::io::stderr().is_terminal() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3)
        };
        let status = loop {
            match child
                .try_wait()
                .map_err(io_err("waiting for apt-get in", &download_dir))?
            {
                Some(status) => break status,
                None => {
                    std::thread::sleep(Duration::from_millis(100));
                    if last_report.elapsed() >= interval {
                        last_report = Instant::now();
                        let done = dir_bytes(&download_dir).saturating_add(dir_bytes(&partial_dir));
                        self.progress.emit(&ProgressEvent::Downloading {
                            package: label.to_owned(),
                            done: done.min(expected_size),
                            total: expected_size,
                        });
                    }
                }
            }
        };
        let stderr = reader.join().unwrap_or_default();
        if !status.success() {
            return Err(FetchError::CommandFailed {
                command: format!("apt-get download {spec}"),
                status: status.to_string(),
                stderr: tail_lines(&stderr, 4),
            });
        }
        let deb = fs::read_dir(&download_dir)
            .map_err(io_err("listing", &download_dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|ext| ext == "deb"))
            .ok_or_else(|| FetchError::MissingInPackage {
                package: entry.package.clone(),
                version: entry.version.clone(),
                what: "a downloaded .deb",
                looked_for: download_dir.display().to_string(),
            })?;
        let size = fs::metadata(&deb)
            .map_err(io_err("inspecting", &deb))?
            .len();
        self.progress.emit(&ProgressEvent::Downloaded {
            package: label.to_owned(),
            bytes: size,
            elapsed: started.elapsed(),
        });
        let mismatch = |what, expected: String, actual: String| FetchError::ChecksumMismatch {
            package: entry.package.clone(),
            version: entry.version.clone(),
            what,
            expected,
            actual,
        };
        if size != expected_size {
            return Err(mismatch(
                "Size",
                expected_size.to_string(),
                size.to_string(),
            ));
        }
        let actual_sha = sha256_file(&deb)?;
        if actual_sha != expected_sha {
            return Err(mismatch("SHA256", expected_sha.to_owned(), actual_sha));
        }
        self.progress.emit(&ProgressEvent::Unpacking {
            package: label.to_owned(),
        });
        let deb_path = work.join("package.deb");
        fs::rename(&deb, &deb_path).map_err(io_err("moving", &deb))?;
        let _ = fs::remove_dir_all(&download_dir);
        let root = work.join("root");
        let output = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb_path)
            .arg(&root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => FetchError::ToolMissing {
                    tool: "dpkg-deb",
                    purpose: "unpack Debian packages",
                    hint: "apt-get install dpkg",
                },
                _ => io_err("running dpkg-deb on", &deb_path)(e).into(),
            })?;
        if !output.status.success() {
            return Err(FetchError::CommandFailed {
                command: format!("dpkg-deb -x {}", deb_path.display()),
                status: output.status.to_string(),
                stderr: tail_lines(&output.stderr, 4),
            });
        }
        let meta = format!(
            "name={}\nversion={}\narch={}\nsha256={actual_sha}\nsize={size}\nfilename={}\n",
            entry.package,
            entry.version,
            arch.debian(),
            entry.filename
        );
        let meta_path = work.join("fetched");
        fs::write(&meta_path, meta).map_err(io_err("writing", &meta_path))?;
        Ok(())
    }

    /// The Xen hypervisor binary of `version` (`4.17`, `4.20`) for `arch`, in the suite that
    /// carries it ([`suite_for_xen`]).
    ///
    /// arm64: `boot/xen-<version>-arm64`, checked to carry the arm64 Image header.
    /// amd64: Debian ships `boot/xen-<version>-amd64.gz`; QEMU's multiboot loader cannot read
    /// gzip, so it is gunzipped once into the cache and checked to be an ELF with a
    /// Multiboot header.
    pub fn xen_hypervisor(&self, arch: Arch, version: &str) -> Result<PathBuf> {
        let suite = suite_for_xen(version)
            .ok_or_else(|| FetchError::UnknownXenVersion(version.to_owned()))?;
        self.xen_hypervisor_in(arch, version, suite)
    }

    /// [`Fetcher::xen_hypervisor`] from an explicit suite.
    pub fn xen_hypervisor_in(&self, arch: Arch, version: &str, suite: &str) -> Result<PathBuf> {
        Ok(self.xen_hypervisor_files(arch, version, suite)?.image)
    }

    /// [`Fetcher::xen_hypervisor_in`] with the package it came from (what a lock records).
    pub fn xen_hypervisor_files(&self, arch: Arch, version: &str, suite: &str) -> Result<XenFiles> {
        let package = self.fetch(
            &PackageRequest::new(format!("xen-hypervisor-{version}-{}", arch.debian()), arch)
                .in_suite(suite),
        )?;
        let image = Self::xen_binary(&package, arch, version)?;
        Ok(XenFiles {
            image,
            efi: Self::xen_efi(&package, arch, version),
            package,
            suite: suite.to_owned(),
        })
    }

    /// The Xen hypervisor of exactly `pin` (see [`Fetcher::fetch_pinned`]): no index is read
    /// when the pinned package is cached.
    pub fn xen_hypervisor_pinned(&self, version: &str, pin: &PackagePin) -> Result<XenFiles> {
        let package = self.fetch_pinned(pin)?;
        let image = Self::xen_binary(&package, pin.arch, version)?;
        Ok(XenFiles {
            image,
            efi: Self::xen_efi(&package, pin.arch, version),
            package,
            suite: pin.suite.clone(),
        })
    }

    /// `boot/xen-<version>-<arch>.efi` in an unpacked hypervisor package, if it is there (Debian's
    /// amd64 and arm64 packages ship it; whether it is a real EFI application is for the boot
    /// target to check).
    fn xen_efi(package: &FetchedPackage, arch: Arch, version: &str) -> Option<PathBuf> {
        let path = package
            .root_dir
            .join(format!("boot/xen-{version}-{}.efi", arch.debian()));
        path.is_file().then_some(path)
    }

    /// The bootable hypervisor inside an unpacked `xen-hypervisor-<version>-<arch>` package.
    fn xen_binary(package: &FetchedPackage, arch: Arch, version: &str) -> Result<PathBuf> {
        let missing = |looked_for: &Path| FetchError::MissingInPackage {
            package: package.name.clone(),
            version: package.version.clone(),
            what: "the Xen binary",
            looked_for: looked_for.display().to_string(),
        };
        match arch {
            Arch::Arm64 => {
                let path = package.root_dir.join(format!("boot/xen-{version}-arm64"));
                let bytes = fs::read(&path).map_err(|_| missing(&path))?;
                if !formats::is_arm64_image(&bytes) {
                    return Err(FetchError::BadFormat {
                        path,
                        reason: "no arm64 Image magic \"ARM\\x64\" at offset 56".to_owned(),
                    });
                }
                Ok(path)
            }
            Arch::X86_64 => {
                let gz = package
                    .root_dir
                    .join(format!("boot/xen-{version}-amd64.gz"));
                let elf = package
                    .root_dir
                    .parent()
                    .unwrap_or(&package.root_dir)
                    .join(format!("xen-{version}-amd64"));
                // Extracted by an earlier run: its head is enough to recognise it (the ELF magic
                // and the Multiboot header in the first 8 KiB), so a warm `check` does not read
                // the whole Xen again.
                if read_head(&elf, 8 << 10).is_ok_and(|head| check_xen_elf(&head).is_ok()) {
                    return Ok(elf);
                }
                let compressed = fs::read(&gz).map_err(|_| missing(&gz))?;
                let mut bytes = Vec::new();
                flate2::read::GzDecoder::new(compressed.as_slice())
                    .read_to_end(&mut bytes)
                    .map_err(|e| FetchError::BadFormat {
                        path: gz.clone(),
                        reason: format!("gunzip failed: {e}"),
                    })?;
                check_xen_elf(&bytes).map_err(|reason| FetchError::BadFormat {
                    path: gz.clone(),
                    reason,
                })?;
                let temp = temp_name(&elf, "tmp");
                fs::write(&temp, &bytes).map_err(io_err("writing", &temp))?;
                fs::rename(&temp, &elf).map_err(io_err("renaming into", &elf))?;
                Ok(elf)
            }
        }
    }

    /// The kernel of exactly `pin` (a `linux-image-<release>[-unsigned]` package), without
    /// reading any index when it is cached.
    pub fn linux_kernel_pinned(&self, pin: &PackagePin) -> Result<KernelFiles> {
        let release = pin
            .name
            .strip_prefix("linux-image-")
            .map(|r| r.strip_suffix("-unsigned").unwrap_or(r))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| FetchError::PackageNotFound {
                pattern: pin.name.clone(),
                arch: pin.arch,
                suite: pin.suite.clone(),
            })?
            .to_owned();
        let package = self.fetch_pinned(pin)?;
        kernel_files(package, &release)
    }

    /// The newest Debian kernel for `arch` in [`DEFAULT_SUITE`] (see [`Fetcher::linux_kernel_in`]).
    pub fn linux_kernel(&self, arch: Arch) -> Result<KernelFiles> {
        self.linux_kernel_in(arch, DEFAULT_SUITE)
    }

    /// The kernel the `linux-image-<arch>` metapackage of `suite` depends on, taken from its
    /// `-unsigned` package (same files without the Secure Boot signature). The metapackage
    /// names exactly the default flavour, so no `rt`/`cloud` kernel is picked by accident, as a
    /// glob would.
    pub fn linux_kernel_in(&self, arch: Arch, suite: &str) -> Result<KernelFiles> {
        check_suite(suite)?;
        let meta = format!("linux-image-{}", arch.debian());
        let state = self.state_dir(suite, arch);
        let image_name = {
            let request = PackageRequest::new(meta.clone(), arch).in_suite(suite);
            let (_lock, mut updated) = self.open_state(&state, suite, arch)?;
            let (name, version) = self.resolve_refreshing(&state, &request, &mut updated)?;
            let entry = self.index_entry_locked(&state, arch, &name, &version)?;
            entry
                .depends
                .split([',', '|'])
                .filter_map(|dep| dep.split_whitespace().next())
                .find(|dep| dep.starts_with("linux-image-") && *dep != meta)
                .map(str::to_owned)
                .ok_or(FetchError::IndexFieldMissing {
                    package: meta.clone(),
                    version,
                    field: "Depends",
                })?
        };
        let package = match self
            .fetch(&PackageRequest::new(format!("{image_name}-unsigned"), arch).in_suite(suite))
        {
            Err(FetchError::PackageNotFound { .. }) => {
                self.fetch(&PackageRequest::new(image_name.clone(), arch).in_suite(suite))?
            }
            other => other?,
        };
        let release = image_name.trim_start_matches("linux-image-").to_owned();
        kernel_files(package, &release)
    }

    /// The static busybox for `arch` (`bin/busybox` of `busybox-static`).
    pub fn busybox_static(&self, arch: Arch) -> Result<PathBuf> {
        self.busybox_static_in(arch, DEFAULT_SUITE)
    }

    /// [`Fetcher::busybox_static`] from an explicit suite.
    pub fn busybox_static_in(&self, arch: Arch, suite: &str) -> Result<PathBuf> {
        Ok(self.busybox_static_package(arch, suite)?.1)
    }

    /// [`Fetcher::busybox_static_in`] with the package it came from (what a lock records).
    pub fn busybox_static_package(
        &self,
        arch: Arch,
        suite: &str,
    ) -> Result<(FetchedPackage, PathBuf)> {
        let package = self.fetch(&PackageRequest::new("busybox-static", arch).in_suite(suite))?;
        let path = Self::busybox_binary(&package, arch)?;
        Ok((package, path))
    }

    /// The busybox of exactly `pin`, without reading any index when it is cached.
    pub fn busybox_static_pinned(&self, pin: &PackagePin) -> Result<(FetchedPackage, PathBuf)> {
        let package = self.fetch_pinned(pin)?;
        let path = Self::busybox_binary(&package, pin.arch)?;
        Ok((package, path))
    }

    fn busybox_binary(package: &FetchedPackage, arch: Arch) -> Result<PathBuf> {
        let path = package.root_dir.join("bin/busybox");
        let bytes = fs::read(&path).map_err(|_| FetchError::MissingInPackage {
            package: package.name.clone(),
            version: package.version.clone(),
            what: "the busybox binary",
            looked_for: path.display().to_string(),
        })?;
        // e_machine at offset 18 (System V ABI): EM_AARCH64 = 183, EM_X86_64 = 62.
        let expected_machine: u16 = match arch {
            Arch::Arm64 => 183,
            Arch::X86_64 => 62,
        };
        let machine = bytes.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if !formats::is_elf(&bytes) || machine != Some(expected_machine) {
            return Err(FetchError::BadFormat {
                path,
                reason: format!("not an ELF executable for {}", arch.debian()),
            });
        }
        Ok(path)
    }
}

fn kernel_files(package: FetchedPackage, release: &str) -> Result<KernelFiles> {
    let root = &package.root_dir;
    let image = root.join(format!("boot/vmlinuz-{release}"));
    if !image.is_file() {
        return Err(FetchError::MissingInPackage {
            package: package.name.clone(),
            version: package.version.clone(),
            what: "the kernel image",
            looked_for: image.display().to_string(),
        });
    }
    let dtbs = root.join(format!("usr/lib/linux-image-{release}"));
    let config = root.join(format!("boot/config-{release}"));
    Ok(KernelFiles {
        release: release.to_owned(),
        image,
        dtbs_dir: dtbs.is_dir().then_some(dtbs),
        modules_dir: root.join(format!("lib/modules/{release}")),
        config: config.is_file().then_some(config),
        package,
    })
}

/// The first `n` bytes of `path` (fewer if it is shorter).
fn read_head(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    fs::File::open(path)?.take(n).read_to_end(&mut head)?;
    Ok(head)
}

fn check_xen_elf(bytes: &[u8]) -> std::result::Result<(), String> {
    if !formats::is_elf(bytes) {
        return Err("gunzipped Xen is not an ELF file".to_owned());
    }
    if formats::multiboot1_header_offset(bytes).is_none() {
        return Err("Xen ELF has no Multiboot header in its first 8 KiB".to_owned());
    }
    Ok(())
}

fn check_suite(suite: &str) -> Result<()> {
    if valid_suite(suite) {
        Ok(())
    } else {
        Err(FetchError::CommandFailed {
            command: "apt".to_owned(),
            status: "not run".to_owned(),
            stderr: format!("invalid suite name {suite:?}"),
        })
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
            .fold(0u64, u64::saturating_add)
    })
}

fn apt_spawn_error(tool: &'static str, error: std::io::Error) -> FetchError {
    if error.kind() == std::io::ErrorKind::NotFound {
        FetchError::ToolMissing {
            tool,
            purpose: "read Debian's package index and download packages",
            hint: "domforge fetches Debian packages with apt (apt-get install apt); on a non-Debian \
                   host, provide the files yourself",
        }
    } else {
        FetchError::Io(IoError {
            action: "running",
            path: PathBuf::from(tool),
            source: error,
        })
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/domforge`.
pub fn default_cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or(FetchError::NoCacheDir)?,
        )
        .join(".cache"),
    };
    Ok(base.join("domforge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "linux-image-6.1.0-*-arm64-unsigned",
            "linux-image-6.1.0-50-arm64-unsigned"
        ));
        assert!(!glob_match(
            "linux-image-6.1.0-*-arm64-unsigned",
            "linux-image-6.1.0-50-arm64"
        ));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("*-unsigned", "x-unsigned-unsigned"));
    }

    #[test]
    fn finds_mirrors_in_both_source_formats() {
        let deb822 = "Types: deb\n# URIs: http://wrong.example/debian\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm\n\nURIs: http://deb.debian.org/debian-security/\n";
        assert_eq!(
            mirrors_in_sources(deb822),
            (
                Some("http://deb.debian.org/debian".to_owned()),
                Some("http://deb.debian.org/debian-security".to_owned())
            )
        );
        let one_line = "deb [signed-by=/k.gpg] http://mirror.local/debian bookworm main\n\
                        deb https://packages.cloud.example/apt cloud-sdk main\n";
        assert_eq!(
            mirrors_in_sources(one_line),
            (Some("http://mirror.local/debian".to_owned()), None)
        );
    }

    #[test]
    fn parses_apt_cache_stanzas() {
        let text = "Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nTag: a,\n b\n\
                    Filename: pool/main/b/busybox/x.deb\nSize: 822236\n\
                    SHA256: 732C9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5\n\n\
                    Package: other\nVersion: 1\n";
        let entries = parse_stanzas(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].size, Some(822_236));
        assert_eq!(
            entries[0].sha256.as_deref(),
            Some("732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5")
        );
    }

    #[test]
    fn rejects_odd_names() {
        assert!(!valid_suite("bookworm main"));
        assert!(!valid_suite("../x"));
        assert!(valid_suite("bookworm-backports"));
        assert!(!valid_package_pattern("Busybox"));
        assert!(!valid_package_pattern("a b"));
    }

    /// A cache entry as `download_locked` leaves it, for a package that was never downloaded.
    fn fake_cached(cache: &Path, name: &str, version: &str, sha: &str) {
        let dir = cache
            .join("packages/arm64")
            .join(format!("{name}_{}", version_in_filename(version)));
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::write(
            dir.join("fetched"),
            format!("name={name}\nversion={version}\narch=arm64\nsha256={sha}\nsize=1\n"),
        )
        .unwrap();
    }

    #[test]
    fn a_cached_pin_runs_nothing_and_a_mismatched_one_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        // A keyring that does not exist: opening the apt state would fail loudly.
        let fetcher = Fetcher::new(cache.path())
            .with_keyring("/nonexistent/keyring.gpg")
            .with_progress(Progress::Quiet);
        let pin = PackagePin {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            arch: Arch::Arm64,
            suite: "bookworm".into(),
            sha256: "a".repeat(64),
        };
        fake_cached(cache.path(), &pin.name, &pin.version, &pin.sha256);
        let got = fetcher.fetch_pinned(&pin).expect("answered from the cache");
        assert_eq!(
            (got.name.as_str(), got.version.as_str()),
            ("busybox-static", "1:1.35.0-4")
        );
        assert_eq!(fetcher.index_accesses(), 0);
        assert!(!cache.path().join("apt").exists());

        let other = PackagePin {
            sha256: "b".repeat(64),
            ..pin.clone()
        };
        match fetcher.fetch_pinned(&other) {
            Err(FetchError::PinMismatch { actual, .. }) => assert_eq!(actual, pin.sha256),
            other => panic!("expected PinMismatch, got {other:?}"),
        }
        assert_eq!(fetcher.index_accesses(), 0);

        // Not cached: offline refuses without an index; online the index is needed (and the
        // missing keyring says so).
        let absent = PackagePin {
            version: "2".into(),
            ..pin.clone()
        };
        let offline = fetcher.clone().with_offline(true);
        assert!(matches!(
            offline.fetch_pinned(&absent),
            Err(FetchError::NotCached { .. })
        ));
        assert_eq!(fetcher.index_accesses(), 0);
        assert!(matches!(
            fetcher.fetch_pinned(&absent),
            Err(FetchError::KeyringMissing { .. })
        ));
        assert_eq!(fetcher.index_accesses(), 1, "clones share the counter");
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
