//! The [`Hypercalls`] trait: the one seam between the typed API ([`crate::Xen`]) and a hypervisor.
//!
//! The trait sits at the ABI boundary on purpose: the typed layer builds the real `repr(C)` argument
//! structures into [`HypercallBuffer`]s and issues raw hypercalls, and both transports take those same
//! bytes — [`crate::privcmd::Privcmd`] hands them to Linux's privcmd driver, `fake::FakeXen` (cargo
//! feature `fake`) decodes them as Xen would (checking the interface version, lengths and handles).
//! So unit tests against the fake exercise the same marshalling that runs on real Xen.

use core::fmt;

pub use nix::errno::Errno;

/// The hypervisor's architecture, which selects the arch-specific layouts (`crate::abi::x86` /
/// `crate::abi::arm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XenArch {
    X86_64,
    Arm64,
}

impl XenArch {
    /// The architecture of the machine this code runs on; a control domain always runs on the same
    /// architecture as its hypervisor.
    pub const fn host() -> Self {
        if cfg!(target_arch = "aarch64") {
            Self::Arm64
        } else {
            Self::X86_64
        }
    }
}

impl fmt::Display for XenArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        })
    }
}

/// What went wrong below the typed layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The hypercall ran and Xen answered `-errno` (privcmd returns Xen's result as the ioctl's errno).
    #[error("Xen answered {0}")]
    Xen(Errno),
    /// The operating system refused something the transport needs (opening a device, mmap, …).
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: Errno,
    },
    /// A buffer or mapping access outside its bounds (a bug in the caller, reported, never a panic).
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte {what}")]
    OutOfBounds {
        what: &'static str,
        offset: usize,
        len: usize,
        size: usize,
    },
    /// A foreign page could not be mapped (per-page error of `IOCTL_PRIVCMD_MMAPBATCH_V2`).
    #[error("guest frame {pfn:#x} of domain {domid} could not be mapped: {errno}")]
    MapFailed { domid: u16, pfn: u64, errno: Errno },
    /// A handle passed to the fake does not point into a live buffer it handed out.
    #[error("guest handle {0:#x} does not point into a live hypercall buffer")]
    BadHandle(u64),
}

/// Memory that Xen may read and write during a hypercall (on Linux: mmap'd from `/dev/xen/hypercall`).
/// Its [`address`](Self::address) is what goes into guest handles and hypercall arguments.
pub trait HypercallBuffer {
    /// The address to place in a guest handle (`XEN_GUEST_HANDLE`) or hypercall argument.
    fn address(&self) -> u64;
    /// Usable length in bytes.
    fn len(&self) -> usize;
    /// Whether the buffer has no usable bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `data` into the buffer at `offset`.
    fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError>;
    /// Copies bytes out of the buffer at `offset` into `out`.
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError>;
}

/// Pages of another domain mapped into this one (`IOCTL_PRIVCMD_MMAPBATCH_V2`), indexed in the order
/// their frame numbers were given.
pub trait ForeignMapping {
    /// Number of 4 KiB pages mapped.
    fn pages(&self) -> usize;
    /// Writes `data` into page `index` at `offset` (must not cross the page end).
    fn write_page(
        &mut self,
        index: usize,
        offset: usize,
        data: &[u8],
    ) -> Result<(), TransportError>;
    /// Reads page `index` at `offset` into `out` (must not cross the page end).
    fn read_page(&self, index: usize, offset: usize, out: &mut [u8]) -> Result<(), TransportError>;
}

/// A way to issue Xen hypercalls. Implemented by [`crate::privcmd::Privcmd`] (Linux) and
/// `fake::FakeXen` (tests, cargo feature `fake`).
pub trait Hypercalls {
    type Buffer: HypercallBuffer;
    type Mapping: ForeignMapping;

    /// The hypervisor's architecture.
    fn arch(&self) -> XenArch;

    /// Allocates a zeroed hypercall-safe buffer of at least `len` bytes (`len` may be 0).
    fn alloc_buffer(&mut self, len: usize) -> Result<Self::Buffer, TransportError>;

    /// Issues hypercall `op` with five arguments. Pointers among the arguments, and guest handles in the
    /// structures they point to, must be addresses of buffers from [`alloc_buffer`](Self::alloc_buffer).
    /// Returns Xen's non-negative result.
    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> Result<u64, TransportError>;

    /// Maps the guest frames `pfns` of domain `domid` into this process.
    fn map_foreign(&mut self, domid: u16, pfns: &[u64]) -> Result<Self::Mapping, TransportError>;
}

/// Checks `offset + len <= size` without overflow; shared by the buffer implementations.
pub(crate) fn check_bounds(
    what: &'static str,
    offset: usize,
    len: usize,
    size: usize,
) -> Result<core::ops::Range<usize>, TransportError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(offset..end),
        _ => Err(TransportError::OutOfBounds {
            what,
            offset,
            len,
            size,
        }),
    }
}
