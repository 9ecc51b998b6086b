//! domforge-init: the boot-time toolstack of a domforge system.
//!
//! Upstream Xen has no dom0less on x86, so a small control domain builds the guests at boot; on ARM64
//! it builds the domains the manifest marks `builder = "init"` (restartable, supervised), beside the
//! ones Xen builds at boot. This crate is that control domain's `/init`: one static executable
//! (`x86_64-unknown-linux-musl` or `aarch64-unknown-linux-musl`) with no xl or libxl beside it (and
//! Debian's xenstored only when some domain has PV devices, [`store`]). It
//! 1. mounts `/proc`, `/sys`, `/dev` and loads the Xen drivers Debian builds as modules ([`setup`]);
//! 2. reads the compiled manifest, `/domforge/boot.blob` (`firmware_config::blob`);
//! 3. builds each of its domains in boot order through domctls (`domctl::builder::pvh` for x86 PVH,
//!    `domctl::builder::arm` for arm64) with the kernels, passthrough fragments and
//!    ramdisks found in its own initramfs under `/domforge/modules/`;
//! 4. is their console backend: it maps each console ring ([`ring`]), binds its event channel
//!    ([`evtchn`]) and writes every line to its own console as `[name] line` ([`lines`]);
//! 5. supervises them (`VIRQ_DOM_EXC` + `getdomaininfo`) and applies `on_crash` ([`policy`]): restart
//!    rebuilds the domain from the same manifest entry ([`supervisor`]), generic over the hypercall
//!    transport, the event channel device ([`evtchn::EventChannel`]) and the [`host::Host`] so that
//!    all of this is unit-tested against domctl's `FakeXen`;
//! 6. with PV devices (issue 19): starts xenstored, introduces each domain, writes its device
//!    nodes in one transaction before unpausing it ([`store`]) and does dom0's hotplug work (loop
//!    devices, bridges: [`hotplug`]).
//!
//! ## Building the shipped binary
//! `cargo build -p domforge-init --profile init --target x86_64-unknown-linux-musl` (or
//! `aarch64-unknown-linux-musl`): the `init` profile of the workspace's `Cargo.toml` (fat LTO, one
//! codegen unit, panic=abort; its comment has the measurements). The kernel decompressors are cargo
//! features (`gzip`, `xz`, `lz4`, `zstd`, `bzip2`), all on by default; a build with
//! `--no-default-features` boots only uncompressed kernels (ELF for PVH, `Image` for arm64) and
//! refuses a compressed one with the missing feature's name.

pub mod compat;
pub mod evtchn;
pub mod host;
pub mod hotplug;
pub mod lines;
pub mod log;
pub mod policy;
pub mod ring;
pub mod serve;
pub mod setup;
pub mod store;
pub mod supervisor;

/// Where the boot blob lives in the control domain's initramfs.
pub const BOOT_BLOB: &str = schema::layout::BOOT_BLOB_AT_BOOT;
