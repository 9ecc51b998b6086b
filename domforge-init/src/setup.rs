//! Bringing up the control domain when domforge-init is its `/init`: the pseudo file systems and the Xen
//! drivers that Debian's kernel builds as modules.

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where initramfs::kmod writes the module load order (one absolute `.ko` path per line, dependencies
/// first).
pub const MODULE_LIST: &str = schema::layout::KERNEL_MODULE_LIST_AT_BOOT;

/// Mounts `proc`, `sysfs` and `devtmpfs` (the kernel does not mount devtmpfs for an initramfs: its
/// `CONFIG_DEVTMPFS_MOUNT` applies to the real root only). Returns problems, which are logged, not
/// fatal: an already-mounted file system answers `EBUSY`.
pub fn mount_basics() -> Vec<String> {
    let mut problems = Vec::new();
    for (fstype, target) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        if let Err(e) = std::fs::create_dir_all(target) {
            problems.push(format!("mkdir {target}: {e}"));
        }
        match mount(
            Some(fstype),
            target,
            Some(fstype),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            None::<&str>,
        ) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => problems.push(format!("mount {fstype} on {target}: {e}")),
        }
    }
    problems
}

/// Sets the console log level to 5 (`KERN_WARNING` and worse are printed; proc(5)
/// `/proc/sys/kernel/printk`, first field). Best effort.
pub fn quiet_console() {
    let _ = std::fs::write("/proc/sys/kernel/printk", "5");
}

/// `xenfs` on `/proc/xen` (what `xl` expects; domforge-init itself needs only `/dev/xen/*`).
pub fn mount_xenfs() -> Result<(), String> {
    std::fs::create_dir_all("/proc/xen").map_err(|e| format!("mkdir /proc/xen: {e}"))?;
    match mount(
        Some("xenfs"),
        "/proc/xen",
        Some("xenfs"),
        MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(format!("mount xenfs on /proc/xen: {e}")),
    }
}

/// One module load.
#[derive(Debug)]
pub struct ModuleLoad {
    pub path: String,
    /// `Ok(true)` loaded, `Ok(false)` already there (`EEXIST`).
    pub result: Result<bool, String>,
}

/// Loads the modules listed in `list` in order with `finit_module(2)`.
pub fn load_modules(list: &Path) -> Vec<ModuleLoad> {
    let Ok(text) = std::fs::read_to_string(list) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let result = std::fs::File::open(path)
            .map_err(|e| format!("open: {e}"))
            .and_then(|f| match finit_module(&f, c"", ModuleInitFlags::empty()) {
                Ok(()) => Ok(true),
                Err(Errno::EEXIST) => Ok(false),
                Err(e) => Err(format!("finit_module: {e}")),
            });
        out.push(ModuleLoad {
            path: path.to_string(),
            result,
        });
    }
    out
}

/// Waits until `path` exists (devtmpfs nodes appear asynchronously after a driver registers).
pub fn wait_for(path: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if Path::new(path).exists() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
