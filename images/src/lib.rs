//! Guest images for domforge: the real parts the QEMU scenarios boot.
//!
//! - [`debian`]: fetches Xen, Linux and busybox for any architecture from Debian's archive
//!   (private apt state, no root, SHA-256 checked against the signed index) and caches them
//!   under `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`.
//! - [`cpio`]: a deterministic newc cpio writer and gzip'd initramfs builder.
//! - [`probe`]: the probe guest, an initramfs whose `/init` reports what the guest sees
//!   (name, CPUs, RAM, hypervisor, devices present/absent) in a line format documented there,
//!   and the parser for those lines.
//! - [`dom0`]: the x86 control domain's initramfs (`domforge-init` as `/init`, the boot blob, the
//!   guests' kernels and ramdisks, the Xen driver modules).
//! - [`formats`]: magic-number checks for the binaries involved (arm64 Image, ELF, Multiboot).
//! - [`version`]: Debian version ordering (Debian Policy §5.6.12).
//! - [`xen_build`]: builds Debian's Xen source package with extra Kconfig options
//!   (`CONFIG_STATIC_MEMORY` for direct-mapped driver domains), cached like the fetches.
//! - [`xl_dom0`]: Debian's `xl`, `xenstored` and `xenconsoled` with the shared libraries they
//!   need (closure read from their ELF dynamic sections), for the `xl` vs `domforge-init` benchmark.

pub mod cpio;
pub mod debian;
pub mod dom0;
pub mod formats;
pub mod kmod;
pub mod probe;
pub mod version;
pub mod xen_build;
pub mod xl_dom0;

pub use debian::{
    Arch, FetchError, FetchedPackage, Fetcher, KernelFiles, PackagePin, PackageRequest, XenFiles,
};
