//! Building Debian's Xen from its source package with Kconfig options Debian leaves off.
//!
//! # Why
//! Debian's `xen-hypervisor-4.17-arm64` lacks `CONFIG_STATIC_MEMORY`, so a dom0less domain
//! cannot have `xen,static-mem` and therefore cannot be `direct-map` (Xen's
//! `docs/misc/arm/device-tree/booting.txt`: "direct-map … only available when
//! xen,static-mem is present"). Without a 1:1 guest RAM, a passed-through DMA master (QEMU's
//! virtio-mmio block device has no SMMU in front of it) writes to host addresses the guest
//! never meant; its first request hangs. `STATIC_MEMORY` depends on `UNSUPPORTED`
//! (`xen/common/Kconfig`: `bool "Static Allocation Support (UNSUPPORTED)" if UNSUPPORTED`),
//! which defaults to `EXPERT` (`xen/Kconfig`), so all three must be set.
//!
//! # How
//! 1. **Source.** A private apt state directory `<cache>/apt/<suite>-source/` with a `deb-src`
//!    sources list (`signed-by` the archive keyring, `target=Sources`) for the suite that
//!    carries the Xen series ([`crate::debian::suite_for_xen`]), its `-updates` and
//!    `-security`. apt verifies the `InRelease` signatures; `apt-cache showsrc xen` gives the
//!    versions with their `Checksums-Sha256`. The newest version of the series is tried
//!    first; when its files cannot be downloaded (a mirror without the security pool's
//!    sources, say) the next one is, with a note on stderr. `apt-get source --download-only`
//!    fetches `.dsc`, `.orig.tar.xz` and `.debian.tar.xz`; we check every file's size and
//!    SHA-256 against the signed index ourselves before `dpkg-source -x` unpacks it and
//!    applies Debian's patches.
//! 2. **Configure** the hypervisor only, the way `debian/rules` does (`override_dh_auto_configure`:
//!    `cp debian/xen-kconfig xen/.config; make -C xen olddefconfig`), with our options appended
//!    to that `.config`. Kconfig silently drops an option whose dependencies are unmet, so the
//!    resulting `.config` is read back and every requested option must be `=y`.
//! 3. **Build** `make -C xen XEN_TARGET_ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- xen`
//!    (no `CROSS_COMPILE` on an arm64 host) with `debian/rules`' environment: `CFLAGS` & co.
//!    unset (dpkg's user-space flags are wrong for a hypervisor), `WGET`/`GIT` = `/bin/false`
//!    (the build must not download), `DEB_VERSION`/`DEB_MAINTAINER` (Debian's banner patch
//!    prints them). The output `xen/xen` is `objcopy -O binary` of `xen-syms`: an arm64 Image
//!    (Xen reuses Linux's image header, magic `ARM\x64` at offset 56).
//! 4. **Verify** the binary: Image magic, and the `.config` Xen embeds
//!    ([`embedded_config`]) enables every requested option.
//!
//! # Cache
//! Results live in `<cache>/xen-build/xen-<source version>-arm64-<key>/` (`xen`, `xen.config`,
//! `build.log`, `built`), where `<key>` hashes the recipe ([`XenBuildConfig::key`]: options,
//! architecture, recipe revision). The directory is assembled under a temporary name and
//! renamed into place, so a half-finished build is never found. A request is answered from the
//! cache (newest cached source version of the series) without running apt or the network;
//! the source tree and objects are deleted after the build (about 200 MB). One lock
//! (`<cache>/xen-build/lock`) serialises builds between processes.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::debian::{self, Arch, DEBIAN_ARCHIVE_KEYRING, IoError, Mirrors, io_err};
use crate::formats;
use crate::version::compare_versions;

/// Kconfig options a hypervisor needs for `xen,static-mem` + `direct-map` domains
/// (`xen/Kconfig`: `EXPERT`, `UNSUPPORTED`; `xen/common/Kconfig`: `STATIC_MEMORY`).
pub const STATIC_MEMORY_OPTIONS: &[&str] = &[
    "CONFIG_EXPERT",
    "CONFIG_UNSUPPORTED",
    "CONFIG_STATIC_MEMORY",
];

/// Revision of the build recipe; part of the cache key so a changed recipe rebuilds.
const RECIPE_REVISION: u32 = 1;

/// The first line Kconfig writes into a `.config` (`xen/tools/kconfig/confdata.c`,
/// `conf_write()`), used to recognise Xen's embedded configuration.
const KCONFIG_HEADER: &str = "#\n# Automatically generated file; DO NOT EDIT.\n";

/// Largest embedded configuration we inflate (Xen 4.17's arm64 `.config` is about 3 KiB);
/// bounds the work a crafted gzip stream can cause.
const MAX_EMBEDDED_CONFIG: u64 = 1 << 20;

/// The source package that builds Xen in Debian.
const SOURCE_PACKAGE: &str = "xen";

/// Errors of the Xen source build. Each says what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum XenBuildError {
    /// A build tool is not installed.
    #[error("`{tool}` is not installed (needed to {purpose}); hint: {hint}")]
    ToolMissing {
        /// Program name.
        tool: String,
        /// What it is needed for.
        purpose: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// The Xen series is in no Debian suite we know.
    #[error(transparent)]
    Fetch(#[from] debian::FetchError),
    /// Only arm64 hypervisors can be built (STATIC_MEMORY is ARM-only).
    #[error(
        "building Xen for {} is not supported: the options domforge builds Xen for \
         (CONFIG_STATIC_MEMORY) exist only on ARM (xen/common/Kconfig: `depends on ARM`)",
        .0.debian()
    )]
    UnsupportedArch(Arch),
    /// The Xen version string is not a series such as `4.17`.
    #[error("{0:?} is not a Xen release series; expected e.g. \"4.17\"")]
    BadSeries(String),
    /// A Kconfig option name is malformed.
    #[error("{0:?} is not a Kconfig option name (expected CONFIG_[A-Z0-9_]+)")]
    BadOption(String),
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// Last lines of its output.
        stderr: String,
    },
    /// The source index has no version of the series.
    #[error(
        "Debian {suite} has no `xen` source package of the {series} series (found: {found}); \
         hint: check the series and the mirror's deb-src support"
    )]
    NoSource {
        /// Series asked for.
        series: String,
        /// Suite searched.
        suite: String,
        /// Versions that were there.
        found: String,
    },
    /// No version of the series could be downloaded.
    #[error("could not download any `xen` {series} source package: {attempts}")]
    DownloadFailed {
        /// Series asked for.
        series: String,
        /// What went wrong for each version tried.
        attempts: String,
    },
    /// A downloaded file does not match the signed index.
    #[error(
        "{file}: {what} does not match the signed Sources index (expected {expected}, got \
         {actual}); the download was discarded"
    )]
    ChecksumMismatch {
        /// File name.
        file: String,
        /// `SHA256` or `Size`.
        what: &'static str,
        /// From the index.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// The index entry lacks the checksums we verify against.
    #[error("the Sources entry of xen {0} lists no Checksums-Sha256")]
    NoChecksums(String),
    /// Kconfig dropped an option we asked for.
    #[error(
        "{option} is not enabled after `make olddefconfig` (it is {actual}); its Kconfig \
         dependencies are not met in Xen {version}"
    )]
    ConfigRejected {
        /// The option.
        option: String,
        /// Its value in the resulting `.config`.
        actual: String,
        /// Source version.
        version: String,
    },
    /// The compiler run failed.
    #[error("building Xen {version} failed; full log: {log}\n{tail}")]
    BuildFailed {
        /// Source version.
        version: String,
        /// The log kept for inspection.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The build produced something that is not what we asked for.
    #[error("{path}: {reason}")]
    BadOutput {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Offline and nothing cached.
    #[error(
        "no cached Xen {series} build with {options} under {dir} and the build is offline; \
         hint: run once with network access"
    )]
    NotCached {
        /// Series.
        series: String,
        /// Options.
        options: String,
        /// Cache directory searched.
        dir: PathBuf,
    },
    /// File system error.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T, E = XenBuildError> = std::result::Result<T, E>;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenBuildConfig {
    /// Xen release series, e.g. `4.17`; the newest Debian source version of it is built.
    pub series: String,
    /// Target architecture (only [`Arch::Arm64`]).
    pub arch: Arch,
    /// Kconfig options set to `y` on top of Debian's `debian/xen-kconfig`.
    pub enable: Vec<String>,
}

impl XenBuildConfig {
    /// Debian's Xen `series` for arm64 with [`STATIC_MEMORY_OPTIONS`].
    pub fn static_memory(series: impl Into<String>) -> Self {
        Self {
            series: series.into(),
            arch: Arch::Arm64,
            enable: STATIC_MEMORY_OPTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    /// Cache key: the first 16 hex digits of SHA-256 over the recipe revision, the
    /// architecture and the sorted, deduplicated options.
    pub fn key(&self) -> String {
        let mut options = self.enable.clone();
        options.sort();
        options.dedup();
        let text = format!(
            "recipe={RECIPE_REVISION}\narch={}\nenable={}\n",
            self.arch.debian(),
            options.join(",")
        );
        let digest = hex(&Sha256::digest(text.as_bytes()));
        digest.get(..16).unwrap_or(&digest).to_owned()
    }

    fn validate(&self) -> Result<()> {
        if self.arch != Arch::Arm64 {
            return Err(XenBuildError::UnsupportedArch(self.arch));
        }
        let mut parts = self.series.split('.');
        let numeric = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if !(numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()) {
            return Err(XenBuildError::BadSeries(self.series.clone()));
        }
        for option in &self.enable {
            let valid = option.strip_prefix("CONFIG_").is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
            if !valid {
                return Err(XenBuildError::BadOption(option.clone()));
            }
        }
        Ok(())
    }
}

/// A built (or cached) hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltXen {
    /// The arm64 Image (`xen/xen` of the build).
    pub image: PathBuf,
    /// The `.config` it was built with.
    pub config: PathBuf,
    /// The make output.
    pub build_log: PathBuf,
    /// Debian source version, e.g. `4.17.5+72-g01140da4e8-1`.
    pub source_version: String,
    /// Wall time of the build; `None` when the result came from the cache.
    pub built_in: Option<Duration>,
    /// The source package's files the build came from (`.dsc`, `.orig.tar.xz`,
    /// `.debian.tar.xz`): `(sha256, file name)`, each checked against the signed `Sources`
    /// index before unpacking. Empty for a cache entry written before they were recorded.
    pub source_files: Vec<(String, String)>,
    /// [`XenBuildConfig::key`] of the recipe.
    pub key: String,
}

/// Builds Xen from Debian's source package. Cheap to create; all state is on disk.
#[derive(Debug, Clone)]
pub struct XenBuilder {
    cache_dir: PathBuf,
    mirrors: Mirrors,
    keyring: PathBuf,
    quiet: bool,
    offline: bool,
    jobs: usize,
}

impl XenBuilder {
    /// A builder caching under `cache_dir` (the same root as [`debian::Fetcher`]), using the
    /// machine's apt mirrors, progress on stderr, one make job per available CPU.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            mirrors: Mirrors::from_system(),
            keyring: PathBuf::from(DEBIAN_ARCHIVE_KEYRING),
            quiet: false,
            offline: false,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    /// No progress lines.
    #[must_use]
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Only cached builds; never runs apt or the compiler.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Parallel make jobs (at least 1).
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Other Debian mirrors.
    #[must_use]
    pub fn with_mirrors(mut self, mirrors: Mirrors) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// Another keyring for the archive's `InRelease` signatures.
    #[must_use]
    pub fn with_keyring(mut self, keyring: impl Into<PathBuf>) -> Self {
        self.keyring = keyring.into();
        self
    }

    fn say(&self, args: fmt::Arguments<'_>) {
        if !self.quiet {
            // Progress is best effort: a closed stderr must not fail a build.
            let _ = writeln!(std::io::stderr().lock(), "xen-build: {args}");
        }
    }

    fn builds_dir(&self) -> PathBuf {
        self.cache_dir.join("xen-build")
    }

    /// The hypervisor for `config`: from the cache, or downloaded, configured, built,
    /// verified and cached (see the module docs).
    pub fn build(&self, config: &XenBuildConfig) -> Result<BuiltXen> {
        config.validate()?;
        let suite = debian::suite_for_xen(&config.series)
            .ok_or_else(|| debian::FetchError::UnknownXenVersion(config.series.clone()))?;
        let builds = self.builds_dir();
        fs::create_dir_all(&builds).map_err(io_err("creating", &builds))?;
        let _lock = lock(&builds.join("lock"))?;
        let key = config.key();
        if let Some(found) = self.cached(config, &key) {
            self.say(format_args!(
                "Xen {} ({}) from the cache: {}",
                found.source_version,
                config.enable.join(" "),
                found.image.display()
            ));
            return Ok(found);
        }
        if self.offline {
            return Err(XenBuildError::NotCached {
                series: config.series.clone(),
                options: config.enable.join(" "),
                dir: builds,
            });
        }
        self.check_tools()?;
        let state = self.cache_dir.join("apt").join(format!("{suite}-source"));
        let candidates = self.source_versions(&state, suite, &config.series)?;
        let mut attempts = Vec::new();
        for candidate in &candidates {
            let work = temp_name(&builds.join("work"));
            fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
            let result = self
                .download(&state, candidate, &work)
                .and_then(|dsc| self.build_from(config, &key, candidate, &dsc, &work));
            let _ = fs::remove_dir_all(&work);
            match result {
                Ok(built) => return Ok(built),
                Err(XenBuildError::CommandFailed {
                    command, stderr, ..
                }) if command.starts_with("apt-get source") => {
                    self.say(format_args!(
                        "could not download xen {} ({stderr}); trying an older version",
                        candidate.version
                    ));
                    attempts.push(format!("{}: {stderr}", candidate.version));
                }
                Err(e) => return Err(e),
            }
        }
        Err(XenBuildError::DownloadFailed {
            series: config.series.clone(),
            attempts: attempts.join("; "),
        })
    }

    /// The cached build of `config` from exactly Debian source `version`, if there is one.
    /// Runs nothing and reads no index: what `check` and `plan` use (they never compile), and
    /// what a lock file's pin of a built hypervisor resolves to.
    pub fn cached_build(&self, config: &XenBuildConfig, version: Option<&str>) -> Option<BuiltXen> {
        let found = self.cached(config, &config.key())?;
        match version {
            None => Some(found),
            Some(v) if found.source_version == v => Some(found),
            Some(v) => self.cached_exact(config, &config.key(), v),
        }
    }

    fn cached_exact(&self, config: &XenBuildConfig, key: &str, version: &str) -> Option<BuiltXen> {
        if !version.starts_with(&format!("{}.", config.series)) {
            return None;
        }
        let dir = self
            .builds_dir()
            .join(format!("xen-{version}-{}-{key}", config.arch.debian()));
        let meta = fs::read_to_string(dir.join("built")).ok()?;
        if !meta.lines().any(|l| l == format!("version={version}")) || !dir.join("xen").is_file() {
            return None;
        }
        Some(BuiltXen::in_cache(&dir, version, &meta, key))
    }

    /// The newest complete cached build of `config`'s series and options.
    fn cached(&self, config: &XenBuildConfig, key: &str) -> Option<BuiltXen> {
        let prefix = format!("xen-{}.", config.series);
        let suffix = format!("-{}-{key}", config.arch.debian());
        let mut best: Option<BuiltXen> = None;
        for entry in fs::read_dir(self.builds_dir()).ok()?.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .strip_prefix("xen-")
                .and_then(|rest| rest.strip_suffix(&suffix))
            else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            let dir = entry.path();
            let meta = fs::read_to_string(dir.join("built")).unwrap_or_default();
            if !meta.lines().any(|l| l == format!("version={version}")) {
                continue;
            }
            let built = BuiltXen::in_cache(&dir, version, &meta, key);
            if !built.image.is_file() {
                continue;
            }
            let newer = best
                .as_ref()
                .is_none_or(|b| compare_versions(&built.source_version, &b.source_version).is_gt());
            if newer {
                best = Some(built);
            }
        }
        best
    }

    fn check_tools(&self) -> Result<()> {
        let compiler = format!("{}gcc", cross_prefix());
        let tools: [(&str, &'static str, &'static str); 7] = [
            (
                "apt-get",
                "download Debian's Xen source",
                "apt-get install apt",
            ),
            (
                "dpkg-source",
                "unpack the source package",
                "apt-get install dpkg-dev",
            ),
            ("make", "build Xen", "apt-get install make"),
            (
                &compiler,
                "compile Xen for arm64",
                "apt-get install gcc-aarch64-linux-gnu",
            ),
            ("bison", "build Xen's Kconfig", "apt-get install bison"),
            ("flex", "build Xen's Kconfig", "apt-get install flex"),
            (
                "python3",
                "run Xen's build scripts",
                "apt-get install python3",
            ),
        ];
        for (tool, purpose, hint) in tools {
            if !on_path(tool) {
                return Err(XenBuildError::ToolMissing {
                    tool: tool.to_owned(),
                    purpose,
                    hint,
                });
            }
        }
        if !self.keyring.exists() {
            return Err(debian::FetchError::KeyringMissing {
                path: self.keyring.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn apt_options(state: &Path) -> Vec<String> {
        let d = |sub: &str| state.join(sub).display().to_string();
        [
            "-q".to_owned(),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Cache={}", d("cache")),
            format!("Dir::Etc::SourceList={}", d("etc/sources.list")),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            "Dir::Etc::Preferences=/dev/null".to_owned(),
            "Dir::Etc::PreferencesParts=/dev/null".to_owned(),
            // Our lock on the cache replaces apt's, which needs root.
            "Debug::NoLocking=1".to_owned(),
            // As root apt would drop to `_apt`, which cannot write into a user's cache.
            "APT::Sandbox::User=root".to_owned(),
        ]
        .into_iter()
        .enumerate()
        .flat_map(|(i, o)| {
            if i == 0 {
                vec![o]
            } else {
                vec!["-o".to_owned(), o]
            }
        })
        .collect()
    }

    fn run_apt(&self, tool: &str, state: &Path, args: &[&str], cwd: &Path) -> Result<Vec<u8>> {
        let output = Command::new(tool)
            .args(Self::apt_options(state))
            .args(args)
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| spawn_error(tool, e))?;
        if !output.status.success() {
            return Err(XenBuildError::CommandFailed {
                command: format!("{tool} {}", args.join(" ")),
                status: output.status.to_string(),
                stderr: tail_lines(&output.stderr, 3),
            });
        }
        Ok(output.stdout)
    }

    /// Writes the private deb-src state, updates it, and lists the series' source versions
    /// (newest first) with their signed checksums.
    fn source_versions(&self, state: &Path, suite: &str, series: &str) -> Result<Vec<SourceEntry>> {
        for sub in ["lists/partial", "cache/archives/partial", "etc"] {
            let dir = state.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        let status = state.join("status");
        if !status.exists() {
            fs::write(&status, b"").map_err(io_err("creating", &status))?;
        }
        let options = format!("[signed-by={} target=Sources]", self.keyring.display());
        let archive = &self.mirrors.archive;
        let mut sources = format!("deb-src {options} {archive} {suite} main\n");
        if !matches!(suite, "sid" | "unstable" | "experimental") {
            sources.push_str(&format!(
                "deb-src {options} {archive} {suite}-updates main\n"
            ));
            sources.push_str(&format!(
                "deb-src {options} {} {suite}-security main\n",
                self.mirrors.security
            ));
        }
        let list = state.join("etc/sources.list");
        fs::write(&list, sources).map_err(io_err("writing", &list))?;
        self.say(format_args!("updating Debian {suite} source index"));
        self.run_apt("apt-get", state, &["update"], state)?;
        let stdout = self.run_apt("apt-cache", state, &["showsrc", SOURCE_PACKAGE], state)?;
        let all = parse_sources(&String::from_utf8_lossy(&stdout));
        let prefix = format!("{series}.");
        let mut matching: Vec<SourceEntry> = all
            .iter()
            .filter(|e| e.package == SOURCE_PACKAGE && e.version.starts_with(&prefix))
            .cloned()
            .collect();
        matching.sort_by(|a, b| compare_versions(&b.version, &a.version));
        matching.dedup_by(|a, b| a.version == b.version);
        if matching.is_empty() {
            return Err(XenBuildError::NoSource {
                series: series.to_owned(),
                suite: suite.to_owned(),
                found: all
                    .iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(matching)
    }

    /// Downloads one source version into `work/dl`, verifies it, returns the `.dsc` path.
    fn download(&self, state: &Path, entry: &SourceEntry, work: &Path) -> Result<PathBuf> {
        if entry.files.is_empty() {
            return Err(XenBuildError::NoChecksums(entry.version.clone()));
        }
        let dl = work.join("dl");
        fs::create_dir_all(&dl).map_err(io_err("creating", &dl))?;
        let total: u64 = entry
            .files
            .iter()
            .map(|f| f.size)
            .fold(0, u64::saturating_add);
        self.say(format_args!(
            "downloading xen {} source ({:.1} MiB)",
            entry.version,
            mib(total)
        ));
        let started = Instant::now();
        let spec = format!("{SOURCE_PACKAGE}={}", entry.version);
        self.run_apt("apt-get", state, &["source", "--download-only", &spec], &dl)?;
        let mut dsc = None;
        for file in &entry.files {
            // File names come from the index; refuse anything that is not a plain name.
            if file.name.contains('/') || file.name.starts_with('.') {
                return Err(XenBuildError::BadOutput {
                    path: PathBuf::from(&file.name),
                    reason: "the Sources index names a file outside the download directory"
                        .to_owned(),
                });
            }
            let path = dl.join(&file.name);
            let size = fs::metadata(&path)
                .map_err(io_err("inspecting downloaded", &path))?
                .len();
            let mismatch =
                |what, expected: String, actual: String| XenBuildError::ChecksumMismatch {
                    file: file.name.clone(),
                    what,
                    expected,
                    actual,
                };
            if size != file.size {
                return Err(mismatch("Size", file.size.to_string(), size.to_string()));
            }
            let sha = debian::sha256_file(&path)?;
            if sha != file.sha256 {
                return Err(mismatch("SHA256", file.sha256.clone(), sha));
            }
            if file.name.ends_with(".dsc") {
                dsc = Some(path);
            }
        }
        self.say(format_args!(
            "downloaded and verified {} files against the signed index in {:.1} s",
            entry.files.len(),
            started.elapsed().as_secs_f64()
        ));
        dsc.ok_or_else(|| XenBuildError::NoChecksums(entry.version.clone()))
    }

    fn build_from(
        &self,
        config: &XenBuildConfig,
        key: &str,
        entry: &SourceEntry,
        dsc: &Path,
        work: &Path,
    ) -> Result<BuiltXen> {
        let started = Instant::now();
        let src = work.join("src");
        self.say(format_args!("unpacking and patching (dpkg-source -x)"));
        run_logged(
            Command::new("dpkg-source")
                .arg("-x")
                .arg(dsc)
                .arg(&src)
                .current_dir(work),
            "dpkg-source -x",
        )?;
        let xen_dir = src.join("xen");
        let dot_config = xen_dir.join(".config");
        // debian/rules override_dh_auto_configure starts from debian/xen-kconfig.
        let mut text = fs::read_to_string(src.join("debian/xen-kconfig")).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# Added by domforge (debian_fetch::xen_build)\n");
        for option in &config.enable {
            text.push_str(&format!("{option}=y\n"));
        }
        fs::write(&dot_config, text).map_err(io_err("writing", &dot_config))?;

        let maintainer = fs::read_to_string(src.join("debian/control"))
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("Maintainer:").map(|m| m.trim().to_owned()))
            })
            .unwrap_or_default();
        let make = |target: &str| {
            let mut c = Command::new("make");
            c.arg("-C")
                .arg(&xen_dir)
                .arg(format!("XEN_TARGET_ARCH={}", config.arch.debian()))
                .arg(format!("CROSS_COMPILE={}", cross_prefix()))
                .arg(target)
                .env("DEB_VERSION", &entry.version)
                .env("DEB_MAINTAINER", &maintainer)
                .env("WGET", "/bin/false")
                .env("GIT", "/bin/false")
                .env("LC_ALL", "C")
                .env_remove("CFLAGS")
                .env_remove("CXXFLAGS")
                .env_remove("CPPFLAGS")
                .env_remove("LDFLAGS")
                .env_remove("MAKEFLAGS")
                .env_remove("MFLAGS")
                .stdin(Stdio::null());
            c
        };
        self.say(format_args!(
            "configuring Debian's xen-kconfig + {} (make olddefconfig)",
            config.enable.join(" ")
        ));
        run_logged(&mut make("olddefconfig"), "make -C xen olddefconfig")?;
        let final_config =
            fs::read_to_string(&dot_config).map_err(io_err("reading", &dot_config))?;
        for option in &config.enable {
            let actual = config_value(&final_config, option);
            if actual.as_deref() != Some("y") {
                return Err(XenBuildError::ConfigRejected {
                    option: option.clone(),
                    actual: actual.unwrap_or_else(|| "not set".to_owned()),
                    version: entry.version.clone(),
                });
            }
        }

        let log_path = work.join("build.log");
        let log = fs::File::create(&log_path).map_err(io_err("creating", &log_path))?;
        let log_err = log.try_clone().map_err(io_err("opening", &log_path))?;
        self.say(format_args!(
            "compiling the hypervisor with {} job(s); log: {}",
            self.jobs,
            log_path.display()
        ));
        let mut command = make("xen");
        command
            .arg(format!("-j{}", self.jobs))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = command.spawn().map_err(|e| spawn_error("make", e))?;
        let compile_started = Instant::now();
        let mut last_report = Instant::now();
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(io_err("waiting for make in", &xen_dir))?
            {
                break status;
            }
            std::thread::sleep(Duration::from_millis(200));
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let compiled = fs::read_to_string(&log_path)
                    .map(|t| {
                        t.lines()
                            .filter(|l| l.trim_start().starts_with("CC "))
                            .count()
                    })
                    .unwrap_or(0);
                self.say(format_args!(
                    "compiling: {compiled} files after {:.0} s",
                    compile_started.elapsed().as_secs_f64()
                ));
            }
        };
        if !status.success() {
            let kept = self.builds_dir().join("last-failure.log");
            let _ = fs::copy(&log_path, &kept);
            let tail = fs::read(&log_path)
                .map(|b| tail_lines(&b, 15).replace(" | ", "\n"))
                .unwrap_or_default();
            return Err(XenBuildError::BuildFailed {
                version: entry.version.clone(),
                log: kept,
                tail,
            });
        }
        let image_path = xen_dir.join("xen");
        let image = fs::read(&image_path).map_err(io_err("reading", &image_path))?;
        verify_image(&image, &config.enable).map_err(|reason| XenBuildError::BadOutput {
            path: image_path.clone(),
            reason,
        })?;

        let final_dir = self.builds_dir().join(format!(
            "xen-{}-{}-{key}",
            entry.version,
            config.arch.debian()
        ));
        let staging = temp_name(&final_dir);
        fs::create_dir_all(&staging).map_err(io_err("creating", &staging))?;
        let copy = |from: &Path, name: &str| {
            let to = staging.join(name);
            fs::copy(from, &to)
                .map(|_| ())
                .map_err(io_err("copying into", &to))
        };
        copy(&image_path, "xen")?;
        copy(&dot_config, "xen.config")?;
        copy(&log_path, "build.log")?;
        let elapsed = started.elapsed();
        let sources: Vec<String> = entry
            .files
            .iter()
            .map(|f| format!("source={} {} {}", f.sha256, f.size, f.name))
            .collect();
        let meta = format!(
            "version={}\narch={}\nenable={}\nkey={key}\nseconds={:.1}\nsha256={}\n{}\n",
            entry.version,
            config.arch.debian(),
            config.enable.join(","),
            elapsed.as_secs_f64(),
            hex(&Sha256::digest(&image)),
            sources.join("\n")
        );
        let meta_path = staging.join("built");
        fs::write(&meta_path, meta).map_err(io_err("writing", &meta_path))?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(io_err("replacing", &final_dir))?;
        }
        fs::rename(&staging, &final_dir).map_err(io_err("renaming into", &final_dir))?;
        self.say(format_args!(
            "built Xen {} in {:.1} s: {}",
            entry.version,
            elapsed.as_secs_f64(),
            final_dir.join("xen").display()
        ));
        Ok(BuiltXen {
            image: final_dir.join("xen"),
            config: final_dir.join("xen.config"),
            build_log: final_dir.join("build.log"),
            source_version: entry.version.clone(),
            built_in: Some(elapsed),
            source_files: entry
                .files
                .iter()
                .map(|f| (f.sha256.clone(), f.name.clone()))
                .collect(),
            key: key.to_owned(),
        })
    }
}

impl BuiltXen {
    /// The build cached in `dir` (the layout `build` writes: `xen`, `xen.config`, `build.log`,
    /// and the `built` record `meta`); whether it is complete is the caller's question.
    fn in_cache(dir: &Path, version: &str, meta: &str, key: &str) -> BuiltXen {
        BuiltXen {
            image: dir.join("xen"),
            config: dir.join("xen.config"),
            build_log: dir.join("build.log"),
            source_version: version.to_owned(),
            built_in: None,
            source_files: recorded_sources(meta),
            key: key.to_owned(),
        }
    }
}

/// The `source=<sha256> <size> <name>` lines of a build's `built` record.
fn recorded_sources(meta: &str) -> Vec<(String, String)> {
    meta.lines()
        .filter_map(|l| l.strip_prefix("source="))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let sha = parts.next()?;
            let _size = parts.next()?;
            let name = parts.next()?;
            Some((sha.to_owned(), name.to_owned()))
        })
        .collect()
}

/// Debian's Xen `series` (e.g. `"4.17"`) for arm64 with `CONFIG_EXPERT`, `CONFIG_UNSUPPORTED`
/// and `CONFIG_STATIC_MEMORY`, built (or found) under `cache_dir`; returns the arm64 Image.
pub fn build_static_memory_xen(cache_dir: &Path, series: &str) -> Result<PathBuf> {
    XenBuilder::new(cache_dir)
        .build(&XenBuildConfig::static_memory(series))
        .map(|b| b.image)
}

/// Checks a built hypervisor: arm64 Image magic, and, when Xen embeds its configuration,
/// every option in `enabled` set to `y` there.
fn verify_image(image: &[u8], enabled: &[String]) -> std::result::Result<(), String> {
    if !formats::is_arm64_image(image) {
        return Err("no arm64 Image magic \"ARM\\x64\" at offset 56".to_owned());
    }
    let config = embedded_config(image)
        .ok_or("no embedded .config found (CONFIG_HYPFS_CONFIG is on in Debian's config)")?;
    for option in enabled {
        if config_value(&config, option).as_deref() != Some("y") {
            return Err(format!("the embedded .config does not set {option}=y"));
        }
    }
    Ok(())
}

/// The `.config` a Xen binary carries, if any.
///
/// With `CONFIG_HYPFS_CONFIG` (on by default with `HYPFS`), `xen/common/Makefile` gzips
/// `.config` (`gzip -n -c`) and `xen/tools/binfile` includes it byte for byte as the
/// `xen_config_data` object in `.rodata`; hypfs serves it as `/buildinfo/config`. The
/// hypervisor binary is `objcopy -O binary` of `xen-syms`, so the gzip stream appears verbatim.
/// We look for gzip members (RFC 1952: ID1 0x1f, ID2 0x8b, CM 8 = deflate) and return the
/// first that inflates (to at most 1 MiB) into text starting with Kconfig's header.
pub fn embedded_config(image: &[u8]) -> Option<String> {
    let mut from = 0usize;
    while let Some(rest) = image.get(from..) {
        let found = rest.windows(3).position(|w| w == [0x1f, 0x8b, 0x08])?;
        let start = from.checked_add(found)?;
        if let Some(text) = image.get(start..).and_then(inflate_config) {
            return Some(text);
        }
        from = start.checked_add(1)?;
    }
    None
}

fn inflate_config(stream: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(stream)
        .take(MAX_EMBEDDED_CONFIG)
        .read_to_end(&mut out)
        .ok()?;
    let text = String::from_utf8(out).ok()?;
    text.starts_with(KCONFIG_HEADER).then_some(text)
}

/// The value of `option` in a Kconfig `.config`: `Some("y")`, `Some("n")` for
/// `# CONFIG_X is not set` (Kconfig's spelling of `n`), the literal value otherwise, `None`
/// when the option does not appear (its dependencies hide it).
pub fn config_value(config: &str, option: &str) -> Option<String> {
    config.lines().find_map(|line| {
        if let Some(value) = line.strip_prefix(option).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_owned());
        }
        let unset = line.strip_prefix("# ")?.strip_prefix(option)?;
        (unset == " is not set").then(|| "n".to_owned())
    })
}

/// One source version from `apt-cache showsrc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SourceEntry {
    package: String,
    version: String,
    files: Vec<SourceFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceFile {
    sha256: String,
    size: u64,
    name: String,
}

/// Parses `apt-cache showsrc` stanzas (Debian Policy §5.4, `Checksums-Sha256` as a
/// multi-line field of `sha256 size name` lines).
fn parse_sources(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut entry = SourceEntry::default();
        let mut in_sha256 = false;
        for line in block.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if in_sha256 {
                    let mut fields = line.split_whitespace();
                    if let (Some(sha), Some(size), Some(name), None) =
                        (fields.next(), fields.next(), fields.next(), fields.next())
                        && sha.len() == 64
                        && sha.bytes().all(|b| b.is_ascii_hexdigit())
                        && let Ok(size) = size.parse()
                    {
                        entry.files.push(SourceFile {
                            sha256: sha.to_ascii_lowercase(),
                            size,
                            name: name.to_owned(),
                        });
                    }
                }
                continue;
            }
            in_sha256 = false;
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key {
                "Package" => value.trim().clone_into(&mut entry.package),
                "Version" => value.trim().clone_into(&mut entry.version),
                "Checksums-Sha256" => in_sha256 = true,
                _ => {}
            }
        }
        if !entry.package.is_empty() && !entry.version.is_empty() {
            entries.push(entry);
        }
    }
    entries
}

/// `aarch64-linux-gnu-` unless we already run on arm64.
fn cross_prefix() -> &'static str {
    if std::env::consts::ARCH == "aarch64" {
        ""
    } else {
        "aarch64-linux-gnu-"
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn spawn_error(tool: &str, error: std::io::Error) -> XenBuildError {
    if error.kind() == std::io::ErrorKind::NotFound {
        XenBuildError::ToolMissing {
            tool: tool.to_owned(),
            purpose: "build Xen from source",
            hint: "run scripts/setup",
        }
    } else {
        XenBuildError::Io(IoError {
            action: "running",
            path: PathBuf::from(tool),
            source: error,
        })
    }
}

fn run_logged(command: &mut Command, label: &str) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(&program, e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    Err(XenBuildError::CommandFailed {
        command: label.to_owned(),
        status: output.status.to_string(),
        stderr: tail_lines(&text, 6),
    })
}

fn lock(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))?;
    file.lock().map_err(io_err("locking", path))?;
    Ok(file)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mib(bytes: u64) -> f64 {
    // Display only; precision loss is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / (1024.0 * 1024.0);
    value
}

/// The last `lines` non-empty lines of `text`, joined by `" | "` (one line for messages).
fn tail_lines(text: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join(" | ")
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(base: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".partial-{}-{n}", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_showsrc_checksums() {
        let text = "Package: xen\nBinary: a, b,\n c\nVersion: 4.17.5+72-g01140da4e8-1\n\
            Files:\n cc505f0bae1df37fc71190cece7ef8c6 4357 xen_4.17.5+72-g01140da4e8-1.dsc\n\
            Checksums-Sha256:\n f13956b67fb7a65707c2b0620d89b41ee5d203434dd7bb913017356791ee66c1 4357 xen_4.17.5+72-g01140da4e8-1.dsc\n \
            53922F4D0A02C577F2EA9D63F65989CD88715779EEBEED879CA1D314103EE06E 4735560 xen_4.17.5+72-g01140da4e8.orig.tar.xz\n\
            Directory: pool/main/x/xen\n\nPackage: xen\nVersion: 4.17.7-1\n";
        let entries = parse_sources(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].files.len(),
            2,
            "the md5 Files lines are not taken"
        );
        assert_eq!(entries[0].files[1].size, 4_735_560);
        assert!(entries[0].files[1].sha256.starts_with("53922f4d"));
        assert!(entries[1].files.is_empty());
    }

    #[test]
    fn reads_kconfig_values() {
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_AB=\"x\"\n";
        assert_eq!(config_value(config, "CONFIG_A").as_deref(), Some("y"));
        assert_eq!(config_value(config, "CONFIG_B").as_deref(), Some("n"));
        assert_eq!(config_value(config, "CONFIG_AB").as_deref(), Some("\"x\""));
        assert_eq!(config_value(config, "CONFIG_C"), None);
    }

    #[test]
    fn finds_a_gzipped_config_among_other_bytes() {
        let config = format!("{KCONFIG_HEADER}# Xen/arm 4.17.5 Configuration\nCONFIG_X=y\n");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(config.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        // A decoy gzip member that is not a config, and a truncated header, come first.
        let mut decoy = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        decoy.write_all(b"not a config").unwrap();
        let mut image = vec![0u8; 64];
        image.extend_from_slice(&[0x1f, 0x8b, 0x08]);
        image.extend(decoy.finish().unwrap());
        image.extend(&gz);
        image.extend_from_slice(&[0u8; 16]);
        assert_eq!(embedded_config(&image).as_deref(), Some(config.as_str()));
        assert_eq!(embedded_config(&image[..image.len() - gz.len() - 16]), None);
        assert_eq!(embedded_config(&[0x1f, 0x8b]), None);
    }

    #[test]
    fn keys_ignore_option_order_but_not_options() {
        let a = XenBuildConfig::static_memory("4.17");
        let mut b = a.clone();
        b.enable.reverse();
        assert_eq!(a.key(), b.key());
        b.enable.push("CONFIG_BOOT_TIME_CPUPOOLS".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key().len(), 16);
    }

    #[test]
    fn rejects_bad_requests() {
        let mut c = XenBuildConfig::static_memory("4.17");
        assert!(c.validate().is_ok());
        c.series = "4.17; rm".into();
        assert!(matches!(c.validate(), Err(XenBuildError::BadSeries(_))));
        c.series = "4.17".into();
        c.enable.push("CONFIG_x".into());
        assert!(matches!(c.validate(), Err(XenBuildError::BadOption(_))));
        c.enable.pop();
        c.arch = Arch::X86_64;
        assert!(matches!(
            c.validate(),
            Err(XenBuildError::UnsupportedArch(_))
        ));
    }
}
