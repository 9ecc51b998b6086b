//! domctl: the Xen hypercall ABI a domain builder needs, behind one transport trait.
//!
//! * [`abi`] — `repr(C)` mirrors of Xen's public headers (domctl, memory_op, hvm_op, event_channel_op,
//!   HVM save records, arm64 vCPU context), size-asserted, for domctl interface versions 0x15 (Xen 4.17)
//!   to 0x18 (Xen 4.22), with x86 and ARM layouts side by side ([`abi::x86`], [`abi::arm`]).
//! * [`transport::Hypercalls`] — the seam: allocate hypercall-safe buffers, issue a hypercall, map
//!   foreign pages. Implemented by [`privcmd::Privcmd`] (Linux `/dev/xen/privcmd` via `nix`) and
//!   `fake::FakeXen` (an in-memory hypervisor that decodes the same bytes, records typed calls and keeps
//!   guest memory, for unit tests; behind the `fake` cargo feature so it does not ship in a product).
//! * [`Xen`] — the typed API: `create_domain`, `max_vcpus`, `set_max_mem`, `populate_physmap`, … with
//!   [`XenError`]s that name the operation and explain the errno; [`Xen::open`] probes the interface
//!   version (a mismatch answers `EACCES`, reported as a version mismatch, not "permission denied").
//! * [`guest_memory`] — "write bytes at a guest-physical address" over a foreign mapping.
//! * [`builder`] — domain builders over [`Xen`]: [`builder::PvhBuilder`] builds an x86 PVH guest from a
//!   kernel, ramdisk and command line (`pvh-boot` lays out its memory); [`builder::ArmBuilder`] an arm64
//!   guest from an `Image`, ramdisk, generated device tree and passthrough list. Both destroy the domain
//!   again if any step fails, with a [`builder::BuildError`] that names the step, and return the same
//!   [`builder::BuiltDomain`].
//!
//! Where the Xen ABI is concerned every constant and layout cites its header and field; the tags read
//! were `RELEASE-4.17.0` … `RELEASE-4.22.0` of xen.git.

pub mod abi;
pub mod builder;
#[cfg(feature = "fake")]
pub mod fake;
pub mod guest_memory;
pub mod privcmd;
pub mod transport;
mod xen;

pub use abi::InterfaceVersion;
pub use guest_memory::{GuestMapping, GuestMemoryError, GuestMemoryWriter};
pub use transport::{Errno, ForeignMapping, HypercallBuffer, Hypercalls, TransportError, XenArch};
pub use xen::{
    ArchConfig, CreateDomain, DomId, DomainInfo, Op, ProbeAttempt, ProbeReport, Xen, XenError,
    errno_meaning,
};
