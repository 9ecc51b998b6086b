//! Debian's `xl` toolstack for a dom0 initramfs, to measure `domforge-init` against it
//! (issue 6: the benchmark `benches/xl_vs_domforge_init.rs` boots both in one dom0).
//!
//! `xl`, the C `xenstored` and `xenconsoled` come from bookworm's `xen-utils-4.17`
//! (`/usr/lib/xen-4.17/bin/`; Debian's `/usr/sbin/xl` is only a wrapper script that picks a
//! version). They are dynamically linked, so the initramfs must also carry the dynamic loader and
//! every shared library they need: [`elf_closure`] computes that from the binaries themselves.

use debian_fetch::{Arch, FetchError, FetchedPackage, Fetcher, PackageRequest};
pub use elf_closure::{
    Closure, ClosureError, ClosureFile, GLIBC_DLOPENS, PackageRoot, PackageView, closure,
    closure_with,
};
use initramfs::cpio::{CpioError, Initramfs};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The Debian package with `xl`, `xenstored` and `xenconsoled` for Xen 4.17 (bookworm).
pub const XEN_UTILS_PACKAGE: &str = "xen-utils-4.17";
/// `xl` itself (the real binary; `/usr/sbin/xl` in Debian is `xen-utils-wrapper`).
pub const XL: &str = "usr/lib/xen-4.17/bin/xl";
/// The C xenstore daemon (the package also has `oxenstored`, the OCaml one).
pub const XENSTORED: &str = "usr/lib/xen-4.17/bin/xenstored";
/// The console daemon that serves the PV consoles of the guests `xl` creates.
pub const XENCONSOLED: &str = "usr/lib/xen-4.17/bin/xenconsoled";
/// Writes dom0's own xenstore entries (`/local/domain/0/…`); Debian's init script runs it right
/// after xenstored, before any `xl` command.
pub const XEN_INIT_DOM0: &str = "usr/lib/xen-4.17/bin/xen-init-dom0";
/// The binaries a dom0 needs to run `xl create`.
pub const TOOLSTACK_BINARIES: &[&str] = &[XL, XENSTORED, XENCONSOLED, XEN_INIT_DOM0];

/// Packages searched for the libraries of [`TOOLSTACK_BINARIES`] (bookworm amd64 names). Only the
/// files the closure reaches are used; a package listed here that nothing needs costs a cached
/// download, not initramfs space. The `libxen*` ones are built from the same source as
/// [`XEN_UTILS_PACKAGE`] and are fetched at exactly its version.
pub const LIBRARY_PACKAGES: &[&str] = &[
    "libc6",
    "libxenmisc4.17",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "libuuid1",
    "liblzma5",
    "libzstd1",
    "zlib1g",
    "libbz2-1.0",
    "libgcc-s1",
    "libsystemd0",
    "libcap2",
    "libgcrypt20",
    "libgpg-error0",
    "liblz4-1",
];

/// Directories `xl`, libxl, xenstored and xenconsoled write to (Xen 4.17 `config/Paths.mk`:
/// `XEN_RUN_DIR`, `XEN_RUN_STORED`, `XEN_LIB_DIR`, `XEN_LIB_STORED`, `XEN_LOG_DIR`, `XEN_LOCK_DIR`,
/// `XEN_CONFIG_DIR`). Debian configures `/var/run` paths; `/var/run` is made a symlink to `/run`.
pub const RUNTIME_DIRS: &[&str] = &[
    "run/xen",
    "run/xenstored",
    "run/lock",
    "var/lib/xen",
    "var/lib/xenstored",
    "var/log/xen/console",
    "var/lock",
    "etc/xen",
];

/// Why the toolstack could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum XlDom0Error {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Closure(#[from] ClosureError),
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

type Result<T, E = XlDom0Error> = std::result::Result<T, E>;

/// Adds every file of `closure` (mode 0755: executables and shared objects) and symlink to
/// `initramfs`.
pub fn add_closure(closure: &Closure, initramfs: &mut Initramfs) -> Result<()> {
    for f in &closure.files {
        initramfs.add_host_file(&f.path, 0o755, &f.host_path)?;
    }
    for (path, target) in &closure.symlinks {
        initramfs.add_symlink(path, target)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Debian's xl toolstack
// ------------------------------------------------------------------------------------------------

/// `xl` and its daemons from Debian, ready to go into a dom0 initramfs.
#[derive(Debug, Clone)]
pub struct XlToolstack {
    /// The `xen-utils-4.17` package used.
    pub xen_utils: FetchedPackage,
    /// Every package fetched (library candidates included).
    pub packages: Vec<FetchedPackage>,
    /// `xl` alone with its closure.
    pub xl: Closure,
    /// [`TOOLSTACK_BINARIES`] with their closure: what a dom0 must carry to run `xl create`.
    pub toolstack: Closure,
    /// Static busybox (`busybox-static`), for the shell that drives the toolstack.
    pub busybox: PathBuf,
}

impl XlToolstack {
    /// Fetches [`XEN_UTILS_PACKAGE`], [`LIBRARY_PACKAGES`] and busybox for amd64 (bookworm) and
    /// computes the closures.
    pub fn fetch(fetcher: &Fetcher) -> Result<Self> {
        let arch = Arch::X86_64;
        let xen_utils = fetcher.fetch(&PackageRequest::new(XEN_UTILS_PACKAGE, arch))?;
        let mut packages = vec![xen_utils.clone()];
        for name in LIBRARY_PACKAGES {
            let mut request = PackageRequest::new(*name, arch);
            if name.starts_with("libxen") {
                request = request.with_version(xen_utils.version.clone());
            }
            packages.push(fetcher.fetch(&request)?);
        }
        let busybox = fetcher.busybox_static(arch)?;
        let view = PackageView::new(
            packages
                .iter()
                .map(|p| PackageRoot {
                    label: format!("{} {}", p.name, p.version),
                    dir: p.root_dir.clone(),
                })
                .collect(),
        );
        let xl = closure_with(&view, &[XL], GLIBC_DLOPENS)?;
        let toolstack = closure_with(&view, TOOLSTACK_BINARIES, GLIBC_DLOPENS)?;
        Ok(Self {
            xen_utils,
            packages,
            xl,
            toolstack,
            busybox,
        })
    }

    /// Adds the toolstack closure, `/bin/busybox` with `/bin/sh`, the [`RUNTIME_DIRS`],
    /// `/var/run -> /run` and an `/etc/xen/xl.conf` with `xl_conf` to `initramfs`.
    pub fn add_to(&self, initramfs: &mut Initramfs, xl_conf: &str) -> Result<()> {
        add_closure(&self.toolstack, initramfs)?;
        initramfs.add_host_file("bin/busybox", 0o755, &self.busybox)?;
        initramfs.add_symlink("bin/sh", "busybox")?;
        for dir in RUNTIME_DIRS {
            initramfs.add_directory(dir, 0o755)?;
        }
        initramfs.add_symlink("var/run", "../run")?;
        initramfs.add_file("etc/xen/xl.conf", 0o644, xl_conf.as_bytes().to_vec())?;
        Ok(())
    }

    /// Sizes of `domforge-init` (`domforge_init_bytes`) against this toolstack.
    pub fn size_report(&self, domforge_init_bytes: u64) -> SizeReport {
        SizeReport {
            domforge_init_bytes,
            domforge_init_stripped_bytes: None,
            xl: self.xl.clone(),
            toolstack: self.toolstack.clone(),
        }
    }
}

/// `domforge-init` (one static file) against `xl` + closure and the whole xl toolstack + closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeReport {
    /// `domforge-init` as cargo built it (release, with its symbol table).
    pub domforge_init_bytes: u64,
    /// The same binary stripped (`strip`), as Debian ships its executables (`dh_strip`), if known.
    pub domforge_init_stripped_bytes: Option<u64>,
    pub xl: Closure,
    pub toolstack: Closure,
}

impl SizeReport {
    /// `xl` + closure over `domforge-init`.
    pub fn xl_ratio(&self) -> f64 {
        ratio(self.xl.total_bytes(), self.domforge_init_bytes)
    }

    /// Toolstack + closure over `domforge-init`.
    pub fn toolstack_ratio(&self) -> f64 {
        ratio(self.toolstack.total_bytes(), self.domforge_init_bytes)
    }

    /// A table for people: totals, then every file of the toolstack closure.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            s,
            "domforge-init (static, one file)           {:>10} bytes ({:.2} MiB)",
            self.domforge_init_bytes,
            mib(self.domforge_init_bytes)
        );
        if let Some(stripped) = self.domforge_init_stripped_bytes {
            let _ = writeln!(
                s,
                "domforge-init stripped                     {:>10} bytes ({:.2} MiB); xl+libraries = {:.1}x, toolstack = {:.1}x that",
                stripped,
                mib(stripped),
                ratio(self.xl.total_bytes(), stripped),
                ratio(self.toolstack.total_bytes(), stripped)
            );
        }
        let _ = writeln!(
            s,
            "xl + libraries ({:>2} files)                 {:>10} bytes ({:.2} MiB) = {:.1}x",
            self.xl.files.len(),
            self.xl.total_bytes(),
            mib(self.xl.total_bytes()),
            self.xl_ratio()
        );
        let _ = writeln!(
            s,
            "xl+xenstored+xenconsoled+xen-init-dom0     {:>10} bytes ({:.2} MiB) = {:.1}x",
            self.toolstack.total_bytes(),
            mib(self.toolstack.total_bytes()),
            self.toolstack_ratio()
        );
        let _ = writeln!(s, "  + libraries ({} files):", self.toolstack.files.len());
        let in_xl: BTreeSet<&str> = self.xl.files.iter().map(|f| f.path.as_str()).collect();
        for f in &self.toolstack.files {
            let _ = writeln!(
                s,
                "  {} {:>9}  /{:<52} {}",
                if in_xl.contains(f.path.as_str()) {
                    "xl"
                } else {
                    "  "
                },
                f.size,
                f.path,
                f.package
            );
        }
        s
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
