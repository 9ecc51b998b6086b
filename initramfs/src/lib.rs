//! Writing initramfs images: one job, the bytes a kernel unpacks at boot.
//!
//! - [`cpio`]: a deterministic newc cpio writer and gzip'd initramfs builder.
//! - [`kmod`]: the closure of kernel modules (`modules.dep`, `.modinfo` of each `.ko`) taken
//!   from a Debian kernel package, written with their load order.
//! - [`dom0`]: the control domain's initramfs (`domforge-init` as `/init`, the boot blob, the
//!   guests' kernels and ramdisks, the Xen driver modules).

pub mod cpio;
pub mod dom0;
pub mod kmod;
