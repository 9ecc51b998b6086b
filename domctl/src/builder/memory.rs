//! Guest memory for the loaders: `pvh_boot::memory::GuestMemoryWriter` over foreign mappings.
//!
//! Two adapters:
//! * [`GuestMapping`] (crate::guest_memory) implements the trait directly, for callers that mapped
//!   exactly the frames they write.
//! * [`WindowedGuestMemory`] maps on demand: a write at a guest-physical address maps a window of up to
//!   [`WINDOW_PAGES`] populated frames around it (`IOCTL_PRIVCMD_MMAPBATCH_V2`), keeps it while writes
//!   stay inside, and replaces it when they move on. The PVH loader writes in address order (kernel
//!   segments, ramdisk, start_info, ACPI, special pages), so a 40 MiB kernel costs a handful of mapping
//!   calls instead of mapping the whole guest — which for a multi-GiB guest would exhaust dom0's address
//!   space and take long under emulation. Windows never cross an unpopulated frame, because mapping one
//!   fails (`MMAPBATCH_V2` reports `-ENOENT`/`-EINVAL` per page).

use crate::guest_memory::{GuestMapping, GuestMemoryError};
use crate::transport::Hypercalls;
use crate::xen::{DomId, Xen, XenError};
use pvh_boot::memory::{GuestMemoryWriter, PAGE_SIZE, PfnRange};

/// Most frames mapped at once by [`WindowedGuestMemory`] (16 MiB): large enough that a kernel needs
/// few `MMAPBATCH_V2` calls, small enough for a 32-bit-sized frame array and a modest mmap.
pub const WINDOW_PAGES: u64 = 4096;

/// Why a write through [`WindowedGuestMemory`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestWriteError {
    /// The address lies in no populated range: the layout and the populate list disagree (a bug), or
    /// the write runs past the end of guest RAM.
    #[error("guest-physical address {gpa:#x} of domain {domid} is not populated")]
    NotPopulated { domid: u16, gpa: u64 },
    /// `gpa + len` overflows.
    #[error("a write of {len} bytes at {gpa:#x} wraps around the address space")]
    Overflow { gpa: u64, len: usize },
    /// Mapping the window failed.
    #[error("mapping guest frames {first_pfn:#x}..{end_pfn:#x}: {source}")]
    Map {
        first_pfn: u64,
        end_pfn: u64,
        #[source]
        source: XenError,
    },
    /// Writing through the mapping failed.
    #[error(transparent)]
    Write(#[from] GuestMemoryError),
}

/// Writes guest memory of one domain through on-demand windows (see the module docs).
pub struct WindowedGuestMemory<'x, H: Hypercalls> {
    xen: &'x mut Xen<H>,
    domid: DomId,
    populated: Vec<PfnRange>,
    window: Option<(u64, u64, GuestMapping<H::Mapping>)>,
    maps: usize,
}

impl<'x, H: Hypercalls> WindowedGuestMemory<'x, H> {
    /// Writes to `domid`, whose populated frames are `populated`.
    pub fn new(xen: &'x mut Xen<H>, domid: DomId, populated: &[PfnRange]) -> Self {
        let mut populated = populated.to_vec();
        populated.sort();
        Self {
            xen,
            domid,
            populated,
            window: None,
            maps: 0,
        }
    }

    /// How many foreign mappings were made so far.
    pub fn mappings_made(&self) -> usize {
        self.maps
    }

    /// Maps the window holding `pfn`: from `pfn` to the end of its populated range, at most
    /// [`WINDOW_PAGES`].
    fn map_window(&mut self, pfn: u64, gpa: u64) -> Result<(), GuestWriteError> {
        let range = self
            .populated
            .iter()
            .find(|r| r.contains(pfn))
            .copied()
            .ok_or(GuestWriteError::NotPopulated {
                domid: self.domid.get(),
                gpa,
            })?;
        let end = range.end().min(pfn.saturating_add(WINDOW_PAGES));
        let pfns: Vec<u64> = (pfn..end).collect();
        // Drop the old window first: one mapping alive at a time.
        self.window = None;
        let mapping =
            self.xen
                .map_foreign(self.domid, &pfns)
                .map_err(|source| GuestWriteError::Map {
                    first_pfn: pfn,
                    end_pfn: end,
                    source,
                })?;
        self.maps += 1;
        self.window = Some((pfn, end, mapping));
        Ok(())
    }
}

impl<H: Hypercalls> GuestMemoryWriter for WindowedGuestMemory<'_, H> {
    type Error = GuestWriteError;

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestWriteError> {
        let len = bytes.len();
        let len64 = u64::try_from(len).map_err(|_| GuestWriteError::Overflow { gpa, len })?;
        if len == 0 {
            return Ok(());
        }
        let end = gpa
            .checked_add(len64)
            .ok_or(GuestWriteError::Overflow { gpa, len })?;
        let mut cur = gpa;
        while cur < end {
            let pfn = cur / PAGE_SIZE;
            let inside = matches!(&self.window, Some((s, e, _)) if pfn >= *s && pfn < *e);
            if !inside {
                self.map_window(pfn, cur)?;
            }
            let Some((_, win_end, mapping)) = self.window.as_mut() else {
                return Err(GuestWriteError::NotPopulated {
                    domid: self.domid.get(),
                    gpa: cur,
                });
            };
            // Write up to the end of the window (or of the data) in one go.
            let stop = end.min(win_end.saturating_mul(PAGE_SIZE));
            let from =
                usize::try_from(cur - gpa).map_err(|_| GuestWriteError::Overflow { gpa, len })?;
            let to =
                usize::try_from(stop - gpa).map_err(|_| GuestWriteError::Overflow { gpa, len })?;
            let chunk = bytes
                .get(from..to)
                .ok_or(GuestWriteError::Overflow { gpa, len })?;
            mapping.write(cur, chunk)?;
            cur = stop;
        }
        Ok(())
    }
}
