//! Fetching domforge's real parts from Debian: one job, the archive.
//!
//! - [`debian`] (re-exported at the root): fetches Xen, Linux and busybox for any architecture
//!   from Debian's archive (private apt state, no root, SHA-256 checked against the signed
//!   index), caches them under `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`, and fetches exact
//!   pins ([`PackagePin`]) without reading any index when the cache holds them (lock files).
//! - [`xen_build`]: builds Debian's Xen source package with extra Kconfig options
//!   (`CONFIG_STATIC_MEMORY` for direct-mapped driver domains), cached like the fetches.
//! - [`formats`]: magic-number checks for the binaries fetched (arm64 Image, ELF, Multiboot).
//! - [`version`]: Debian version ordering (Debian Policy §5.6.12).
//!
//! Writing initramfs images is the `initramfs` crate's job, the probe guest the `probe` crate's.

pub mod debian;
pub mod formats;
pub mod version;
pub mod xen_build;

pub use debian::*;
