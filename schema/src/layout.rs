//! dom0's generated initramfs, as the host tool writes it (`images::dom0`, the planner's module
//! paths) and domforge-init reads it: paths relative to the initramfs root.

/// The boot blob domforge-init decodes (`/domforge/boot.blob` at boot).
pub const BOOT_BLOB: &str = "domforge/boot.blob";

/// The directory holding every module domforge-init loads: `<MODULES_DIR>/<module id>`.
pub const MODULES_DIR: &str = "domforge/modules";

/// Kernel modules (one path per line, in load order) the control domain's `/init` inserts before
/// anything else (`/etc/domforge/modules` at boot).
pub const KERNEL_MODULE_LIST: &str = "etc/domforge/modules";

/// The absolute path at boot of the module `id` (what the boot blob names).
pub fn module_path(id: &str) -> alloc::string::String {
    alloc::format!("/{MODULES_DIR}/{id}")
}

/// Debian's C xenstored (`xen-utils-<release>`'s `/usr/lib/xen-<release>/bin/xenstored`), where
/// dom0's initramfs carries it when the system has PV devices (issue 19); its shared libraries go to
/// Debian's own library directories beside it.
pub const XENSTORED: &str = "usr/sbin/xenstored";

/// [`XENSTORED`] as domforge-init starts it.
pub const XENSTORED_AT_BOOT: &str = "/usr/sbin/xenstored";

/// Directories xenstored writes to (Xen `config/Paths.mk`: `XEN_RUN_STORED` = /var/run/xenstored,
/// `XEN_LIB_STORED` = /var/lib/xenstored; `/var/run` is a symlink to `/run` in our initramfs).
pub const XENSTORED_DIRS: &[&str] = &["run/xenstored", "var/lib/xenstored"];

/// The marker of a driver domain's generated initramfs: its `/init` (domforge-init) serves the
/// domain's PV backends instead of building domains (issue 19).
pub const SERVE_MARKER: &str = "etc/domforge/serve";

/// [`SERVE_MARKER`] as domforge-init looks for it at boot.
pub const SERVE_MARKER_AT_BOOT: &str = "/etc/domforge/serve";

/// [`BOOT_BLOB`] as domforge-init opens it at boot.
pub const BOOT_BLOB_AT_BOOT: &str = "/domforge/boot.blob";

/// [`KERNEL_MODULE_LIST`] as the control domain's `/init` opens it at boot.
pub const KERNEL_MODULE_LIST_AT_BOOT: &str = "/etc/domforge/modules";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_paths_are_the_initramfs_paths_from_the_root() {
        assert_eq!(BOOT_BLOB_AT_BOOT, alloc::format!("/{BOOT_BLOB}"));
        assert_eq!(
            KERNEL_MODULE_LIST_AT_BOOT,
            alloc::format!("/{KERNEL_MODULE_LIST}")
        );
        assert_eq!(module_path("kernel-0"), "/domforge/modules/kernel-0");
        assert_eq!(XENSTORED_AT_BOOT, alloc::format!("/{XENSTORED}"));
        assert_eq!(SERVE_MARKER_AT_BOOT, alloc::format!("/{SERVE_MARKER}"));
    }
}
