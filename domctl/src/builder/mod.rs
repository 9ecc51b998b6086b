//! Domain builders: turn a boot-blob domain into a running guest through the typed [`crate::Xen`] API.
//!
//! * [`pvh`] — x86 PVH guests (direct kernel boot, no device model), as domforge-init builds them at
//!   boot because upstream Xen has no dom0less on x86.
//! * [`memory`] — the seam to `pvh_boot`'s loader: its `GuestMemoryWriter` over foreign mappings.

pub mod memory;
pub mod pvh;

pub use memory::{GuestWriteError, WINDOW_PAGES, WindowedGuestMemory};
pub use pvh::{
    BuildError, BuildFailure, BuildStep, BuiltDomain, Cleanup, PvhBuilder, PvhDomainConfig,
    PvhKernel, RingChannel,
};
