//! The probe guest: an initramfs whose `/init` reports what the guest actually sees, so a
//! scenario test can check the manifest's promises (vCPUs, RAM, devices owned and not owned)
//! against a real boot.
//!
//! The image holds a static busybox, `/init` (a POSIX sh script, [`INIT_SCRIPT`]), optional
//! kernel modules with their load order ([`initramfs::kmod`]) and `/dev/console`. It works for
//! arm64 and amd64 guests alike; only the busybox (and modules) differ.
//!
//! # Kernel command line
//! - `domforge.name=<name>`: the name printed on every line (`[A-Za-z0-9_.-]`, ≤ 64 chars;
//!   default `unnamed`). Consoles of several domains are interleaved and Xen's prefixes vary
//!   between versions, so lines name their domain themselves.
//! - `domforge.expect_devices=<spec>[,<spec>…]`: devices this guest must own and be able to use.
//! - `domforge.deny_devices=<spec>[,<spec>…]`: devices this guest must not see.
//!   A `<spec>` is `<kind>@<address>` with the guest-physical base address in lower-case hex
//!   without `0x`, as in a device-tree unit address (`pl031@9010000`). Kinds with a
//!   functional check: `pl031`/`rtc` (reads `since_epoch` of the RTC bound to that address),
//!   `pl061`/`gpio` (finds the gpiochip), `virtio-blk` (reads the first line of the disk, a
//!   marker the test wrote at offset 0). Any other kind is checked for presence only.
//! - `domforge.pv_disks=<vdev>:<marker>[,…]`: PV disks (xen-blkfront) this guest must have, each
//!   whose first line is `<marker>`, alone or followed by a space and more (waits up to 20 s for
//!   the frontend to connect).
//! - `domforge.deny_pv_disks=1`: the guest must have no `xvd*` disk at all.
//! - `domforge.pv_nics=<if>=<addr>/<prefix>@<peer>[,…]`: PV network interfaces (xen-netfront):
//!   each gets the address and must reach `<peer>` by ping within 30 tries.
//! - `domforge.pv_wait=<seconds>`: how long to wait for each PV device to appear (default 20); a
//!   dom0less guest waits for dom0 to introduce it to xenstore first.
//! - `domforge.crash=1`: crash the kernel (`sysrq c`) after the report.
//!
//! # Report format, version 1
//! Each report line is
//! ```text
//! DOMFORGE-PROBE <name> <key>=<value>
//! ```
//! - The marker `DOMFORGE-PROBE` may be preceded by anything (a console prefix such as
//!   `(XEN) DOM1: ` or `(d1) `); the line is taken from the first occurrence of the marker.
//! - `<name>`: 1–64 characters of `[A-Za-z0-9_.-]`.
//! - `<key>`: 1–128 characters of `[a-z0-9_.@:-]`. One key per line.
//! - `<value>`: 0–256 printable ASCII characters (0x20–0x7e) up to the end of the line;
//!   trailing spaces and `\r` are not part of it.
//!
//! Keys, in the order they appear:
//!
//! | key | value |
//! |---|---|
//! | `begin` | format version, `1` — always the first line |
//! | `arch`, `kernel` | `uname -m`, `uname -r` |
//! | `cpus.online` | number of CPUs in `/sys/devices/system/cpu/online` |
//! | `cpus.cpuinfo` | `processor` entries in `/proc/cpuinfo` |
//! | `mem.total_kb` | `MemTotal` of `/proc/meminfo` |
//! | `mem.ram.<i>`, `mem.ram.count` | top-level `System RAM` ranges of `/proc/iomem`, `<start>-<end>` hex, inclusive |
//! | `hypervisor.compatible` | ARM: `/proc/device-tree/hypervisor/compatible`, strings joined by spaces |
//! | `hypervisor.version` | `<major>.<minor>` from `/sys/hypervisor/version` (Xen) |
//! | `hypervisor.detected` | x86: the kernel's `Hypervisor detected:` message |
//! | `hypervisor` | `xen`, another `/sys/hypervisor/type`, `unknown` (CPU flag only) or `none` |
//! | `passthrough.<i>`, `passthrough.count` | child nodes of `/proc/device-tree/passthrough` |
//! | `module.<name>` | `ok`/`fail`: loading a bundled kernel module |
//! | `dev.<spec>.role` | `expect` or `deny` |
//! | `dev.<spec>.present` | `yes`/`no`: a DT node `*@<address>` or a platform device `<address>.*` exists |
//! | `dev.<spec>.dt` | DT path of the node (empty if none) |
//! | `dev.<spec>.driver` | bound driver or `none` |
//! | `dev.<spec>.check` | present devices: `ok`/`fail`/`skip` (no functional check for the kind) |
//! | `dev.<spec>.value` | what the check read (RTC seconds, `gpiochipN ngpio=N`, `vda <marker>`) |
//! | `dev.<spec>.devmem` | absent denied devices: `trying`, then `fault` (SIGBUS/SIGSEGV reading the address), `value:<v>`, `timeout` or `error:<rc> <msg>`; present ones: `skip-present` |
//! | `dev.<spec>.verdict` | `ok`/`fail`: expect → present and check not failed; deny → absent |
//! | `pvdisk.<vdev>.present` | `yes`/`no`: `/sys/block/<vdev>` appeared within 20 s |
//! | `pvdisk.<vdev>.size`, `.ro`, `.marker` | present disks: 512-byte sectors, `0`/`1`, first line read |
//! | `pvdisk.<vdev>.verdict` | `ok`: present and the first line is the marker (or starts with it and a space) |
//! | `pvdisk.none` | with `deny_pv_disks`: `ok`, or `fail:<disks>` |
//! | `pvnic.<if>.present`, `.mac`, `.carrier` | the interface, its MAC, `/sys/class/net/<if>/carrier` once up |
//! | `pvnic.<if>.ping`, `.verdict` | `ok`/`fail`: the peer answered a ping |
//! | `crash` | `requested` when `domforge.crash=1` |
//! | `end` | number of report lines before this one (including `begin`) — always the last line |
//!
//! After `end` the guest stays alive (its console stays up) unless it crashes on request.

use std::collections::BTreeMap;

use initramfs::cpio::{CpioError, Initramfs};
use initramfs::kmod::{KmodError, ModuleSet};

/// The probe's `/init`, run by busybox `sh`.
pub const INIT_SCRIPT: &str = include_str!("probe_init.sh");

/// The line marker.
pub const MARKER: &str = "DOMFORGE-PROBE";
/// The report format version printed by `begin`.
pub const FORMAT_VERSION: u32 = 1;
/// Kernel modules the probe needs on Debian's arm64 kernel for a virtio-mmio disk
/// (bookworm builds `virtio_mmio` and `virtio_blk` as modules). Built-in ones are skipped.
pub const ARM64_VIRTIO_MODULES: &[&str] = &["virtio_mmio", "virtio_blk"];
/// Everything the probe carries on Debian's arm64 kernel: the virtio-mmio disk of the passthrough
/// scenarios and the PV frontends (`xen-blkfront`, `xen-netfront`, modules there as on amd64).
pub const ARM64_MODULES: &[&str] = &["virtio_mmio", "virtio_blk", "xen-blkfront", "xen-netfront"];
/// The PV frontends the probe needs on Debian's amd64 kernel for `domforge.pv_disks`/`pv_nics`
/// (bookworm builds xen-blkfront and xen-netfront as modules; xenbus itself is built in).
pub const AMD64_XEN_FRONTEND_MODULES: &[&str] = &["xen-blkfront", "xen-netfront"];

/// Errors building the probe initramfs.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The busybox binary could not be read.
    #[error("reading busybox from {path}")]
    Busybox {
        /// The path given.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// Adding kernel modules failed.
    #[error(transparent)]
    Kmod(#[from] KmodError),
}

/// Builds the probe guest's initramfs.
#[derive(Debug, Clone)]
pub struct ProbeImage {
    initramfs: Initramfs,
}

impl ProbeImage {
    /// A probe image around a static busybox binary for the guest's architecture.
    pub fn new(busybox: &[u8]) -> Result<Self, ProbeError> {
        let mut initramfs = Initramfs::new();
        initramfs.add_file("bin/busybox", 0o755, busybox.to_vec())?;
        initramfs.add_symlink("bin/sh", "busybox")?;
        for dir in ["proc", "sys", "tmp", "etc", "sbin", "usr/bin", "usr/sbin"] {
            initramfs.add_directory(dir, 0o755)?;
        }
        initramfs.add_directory("tmp", 0o1777)?;
        initramfs.add_file("init", 0o755, INIT_SCRIPT.as_bytes().to_vec())?;
        Ok(Self { initramfs })
    }

    /// [`ProbeImage::new`] reading busybox from a file (e.g. `debian_fetch::Fetcher::busybox_static`).
    pub fn from_busybox_file(path: &std::path::Path) -> Result<Self, ProbeError> {
        let bytes = std::fs::read(path).map_err(|source| ProbeError::Busybox {
            path: path.to_owned(),
            source,
        })?;
        Self::new(&bytes)
    }

    /// Bundles kernel modules; `/init` loads them in order before checking devices.
    pub fn with_modules(mut self, modules: &ModuleSet) -> Result<Self, ProbeError> {
        modules.add_to(&mut self.initramfs)?;
        Ok(self)
    }

    /// The underlying initramfs, to add more files.
    pub fn initramfs_mut(&mut self) -> &mut Initramfs {
        &mut self.initramfs
    }

    /// The gzip'd newc archive.
    pub fn to_cpio_gz(&self) -> Result<Vec<u8>, ProbeError> {
        Ok(self.initramfs.to_cpio_gz()?)
    }

    /// The uncompressed newc archive.
    pub fn to_cpio(&self) -> Result<Vec<u8>, ProbeError> {
        Ok(self.initramfs.to_cpio()?)
    }
}

/// One parsed report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    /// The guest's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'.' | b'@' | b':' | b'-')
        })
}

/// Parses one console line; `None` unless it holds a well-formed report line.
pub fn parse_report_line(line: &str) -> Option<ProbeLine> {
    let start = line.find(MARKER)?;
    let rest = line
        .get(start.checked_add(MARKER.len())?..)?
        .strip_prefix(' ')?;
    let rest = rest.trim_end_matches(['\r', '\n', ' ']);
    let (name, pair) = rest.split_once(' ')?;
    let (key, value) = pair.split_once('=')?;
    if !valid_name(name) || !valid_key(key) || value.len() > 256 {
        return None;
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return None;
    }
    Some(ProbeLine {
        name: name.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Why a report is not (yet) complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// No `begin` line.
    #[error("probe {0}: no begin line")]
    NoBegin(String),
    /// A format version we do not understand.
    #[error("probe {name}: report format {version:?}, expected {FORMAT_VERSION}")]
    Version {
        /// Guest name.
        name: String,
        /// Version printed.
        version: String,
    },
    /// No `end` line (yet).
    #[error("probe {0}: no end line (report incomplete)")]
    NoEnd(String),
    /// Lines were lost between `begin` and `end`.
    #[error("probe {name}: end says {expected} lines, {seen} arrived (lines lost or garbled)")]
    LostLines {
        /// Guest name.
        name: String,
        /// Count from `end`.
        expected: u64,
        /// Lines seen.
        seen: u64,
    },
}

/// All lines of one guest's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// Guest name.
    pub name: String,
    /// Key → value (a repeated key keeps its last value, e.g. `devmem`'s `trying`).
    pub values: BTreeMap<String, String>,
    lines_before_end: u64,
    end: Option<u64>,
    begin: Option<String>,
}

impl ProbeReport {
    /// Collects the reports of every guest found in console text, by name. A new `begin`
    /// for a name (the guest rebooted) starts its report afresh.
    pub fn collect<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, ProbeReport> {
        let mut reports: BTreeMap<String, ProbeReport> = BTreeMap::new();
        for line in lines {
            let Some(parsed) = parse_report_line(line) else {
                continue;
            };
            let report = reports.entry(parsed.name.clone()).or_default();
            if parsed.key == "begin" {
                *report = ProbeReport {
                    name: parsed.name.clone(),
                    ..ProbeReport::default()
                };
                report.begin = Some(parsed.value.clone());
            }
            if report.name.is_empty() {
                report.name.clone_from(&parsed.name);
            }
            if parsed.key == "end" {
                if report.end.is_none() {
                    report.end = parsed.value.parse().ok();
                }
                continue;
            }
            if report.end.is_none() {
                report.lines_before_end = report.lines_before_end.saturating_add(1);
            }
            report.values.insert(parsed.key, parsed.value);
        }
        reports
    }

    /// Checks that the report has `begin` (format 1) and `end`, and no line went missing.
    pub fn check_complete(&self) -> Result<(), ReportError> {
        match self.begin.as_deref() {
            None => return Err(ReportError::NoBegin(self.name.clone())),
            Some("1") => {}
            Some(other) => {
                return Err(ReportError::Version {
                    name: self.name.clone(),
                    version: other.to_owned(),
                });
            }
        }
        let expected = self
            .end
            .ok_or_else(|| ReportError::NoEnd(self.name.clone()))?;
        if expected != self.lines_before_end {
            return Err(ReportError::LostLines {
                name: self.name.clone(),
                expected,
                seen: self.lines_before_end,
            });
        }
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A numeric value.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// `cpus.online`.
    pub fn cpus_online(&self) -> Option<u64> {
        self.get_u64("cpus.online")
    }

    /// `mem.total_kb`.
    pub fn mem_total_kb(&self) -> Option<u64> {
        self.get_u64("mem.total_kb")
    }

    /// The `System RAM` ranges as inclusive `(start, end)` addresses.
    pub fn ram_ranges(&self) -> Vec<(u64, u64)> {
        let count = self.get_u64("mem.ram.count").unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let (start, end) = self.get(&format!("mem.ram.{i}"))?.split_once('-')?;
                Some((
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                ))
            })
            .collect()
    }

    /// `dev.<spec>.<field>`.
    pub fn device(&self, spec: &str, field: &str) -> Option<&str> {
        self.get(&format!("dev.{spec}.{field}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_behind_console_prefixes() {
        let line = "(XEN) DOM1: DOMFORGE-PROBE dom-a_1 cpus.online=2\r";
        assert_eq!(
            parse_report_line(line),
            Some(ProbeLine {
                name: "dom-a_1".into(),
                key: "cpus.online".into(),
                value: "2".into()
            })
        );
        let line = "(d1) DOMFORGE-PROBE t dev.pl031@9010000.value=1763780000";
        let parsed = parse_report_line(line).unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(parsed.key, "dev.pl031@9010000.value");
        assert_eq!(parsed.value, "1763780000");
        let empty = parse_report_line("DOMFORGE-PROBE t dev.x@1.dt=")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(empty.value, "");
        let spaced = parse_report_line("DOMFORGE-PROBE t arch=vda DOMFORGE-DISK ok  ")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(spaced.value, "vda DOMFORGE-DISK ok");
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "DOMFORGE-PROBE",
            "DOMFORGE-PROBE t",
            "DOMFORGE-PROBE t key",
            "DOMFORGE-PROBEt key=v",
            "DOMFORGE-PROBE  t key=v",
            "DOMFORGE-PROBE t Key=v",
            "DOMFORGE-PROBE t =v",
            "DOMFORGE-PROBE n/a key=v",
            "DOMFORGE-PROBE t key=v\u{7f}",
            "DOMFORGE-PROBE t key=caf\u{e9}",
            "random kernel message",
        ] {
            assert_eq!(parse_report_line(bad), None, "{bad:?} accepted");
        }
        let long_value = format!("DOMFORGE-PROBE t k={}", "x".repeat(257));
        assert_eq!(parse_report_line(&long_value), None);
        let long_name = format!("DOMFORGE-PROBE {} k=v", "n".repeat(65));
        assert_eq!(parse_report_line(&long_name), None);
    }

    #[test]
    fn collects_complete_and_incomplete_reports() {
        let console = "\
(XEN) DOM1: DOMFORGE-PROBE a begin=1
(XEN) DOM2: DOMFORGE-PROBE b begin=1
(XEN) DOM1: DOMFORGE-PROBE a cpus.online=2
(XEN) DOM1: DOMFORGE-PROBE a mem.ram.0=40000000-7fffffff
(XEN) DOM1: DOMFORGE-PROBE a mem.ram.count=1
(XEN) DOM2: DOMFORGE-PROBE b cpus.online=1
(XEN) DOM2: DOMFORGE-PROBE b end=3
(XEN) DOM1: DOMFORGE-PROBE a end=4";
        let reports = ProbeReport::collect(console.lines());
        let a = &reports["a"];
        assert_eq!(a.check_complete(), Ok(()));
        assert_eq!(a.cpus_online(), Some(2));
        assert_eq!(a.ram_ranges(), vec![(0x4000_0000, 0x7fff_ffff)]);
        assert_eq!(
            reports["b"].check_complete(),
            Err(ReportError::LostLines {
                name: "b".into(),
                expected: 3,
                seen: 2
            })
        );
        let partial = ProbeReport::collect(["DOMFORGE-PROBE c begin=1"]);
        assert_eq!(
            partial["c"].check_complete(),
            Err(ReportError::NoEnd("c".into()))
        );
    }

    #[test]
    fn init_script_is_valid_posix_sh() {
        // `sh -n` (dash on Debian) is an independent syntax check of the embedded script.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("init");
        std::fs::write(&path, INIT_SCRIPT).unwrap_or_else(|e| panic!("{e}"));
        let status = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .status();
        match status {
            Ok(status) => assert!(status.success(), "sh -n rejected the probe init"),
            Err(e) => panic!("cannot run sh: {e}"),
        }
    }
}
