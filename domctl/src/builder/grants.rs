//! Seeding a new guest's reserved grant entries, so its backends can map the console and xenstore
//! rings by grant reference before the guest has run.
//!
//! A guest's first grant-table frame holds 8 reserved entries (`GNTTAB_NR_RESERVED_ENTRIES`,
//! `xen/include/public/grant_table.h`); entry 0 grants the console ring and entry 1 the xenstore ring
//! to their backends. Debian's C xenstored maps a guest's store ring only through
//! `GNTTAB_RESERVED_XENSTORE` (`tools/xenstored/domain.c` `map_interface`), and Linux keeps the reserved
//! entries when it takes the table over (`drivers/xen/grant-table.c` starts allocating at
//! `GNTTAB_NR_RESERVED_ENTRIES`), so the builder must write them — as libxl does in
//! `xc_dom_gnttab_seed` (`tools/libs/guest/xg_dom_boot.c`): for an HVM-container guest it maps grant
//! frame 0 at a scratch guest frame just past the highest one in use, maps that frame, writes the two
//! version-1 entries, and takes the frame out of the p2m again.

use crate::abi::{self, GrantEntryV1, XEN_PAGE_SHIFT, XEN_PAGE_SIZE, grant};
use crate::builder::BuildFailure;
use crate::guest_memory::GuestMemoryWriter;
use crate::transport::Hypercalls;
use crate::xen::{DomId, Xen};
use zerocopy::IntoBytes;

/// The two rings a guest shares with its backends, by guest frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRings {
    /// Domain that runs the console and xenstore backends (dom0 here).
    pub backend: u16,
    pub console_pfn: u64,
    pub xenstore_pfn: u64,
}

/// Writes grant entries [`grant::RESERVED_CONSOLE`] and [`grant::RESERVED_XENSTORE`] of `domid`
/// (libxl's `xc_dom_gnttab_hvm_seed`). On failure the caller destroys the domain, scratch frame and all.
pub fn seed<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    rings: SeedRings,
) -> Result<(), BuildFailure> {
    // `xc_core_arch_get_scratch_gpfn`: one past the highest frame the p2m holds is free.
    let scratch = xen.maximum_gpfn(domid)? + 1;
    xen.add_to_physmap(domid, abi::mapspace::GRANT_TABLE, 0, scratch)?;
    write_entries(xen, domid, scratch, rings)?;
    xen.remove_from_physmap(domid, scratch)?;
    Ok(())
}

/// The first grant frame's bytes: zeroes but for the two entries (libxl clears the whole frame too).
pub fn first_frame(domid: DomId, rings: SeedRings) -> Result<Vec<u8>, BuildFailure> {
    let frame = |pfn: u64| {
        u32::try_from(pfn).map_err(|_| {
            BuildFailure::Config(format!(
                "ring frame {pfn:#x} of domain {} does not fit a version-1 grant entry",
                domid.get()
            ))
        })
    };
    let entries = [
        (grant::RESERVED_CONSOLE, frame(rings.console_pfn)?),
        (grant::RESERVED_XENSTORE, frame(rings.xenstore_pfn)?),
    ];
    let mut page = vec![0u8; XEN_PAGE_SIZE];
    let size = size_of::<GrantEntryV1>();
    for (reference, frame) in entries {
        let entry = GrantEntryV1 {
            flags: grant::GTF_PERMIT_ACCESS,
            domid: rings.backend,
            frame,
        };
        page[reference * size..(reference + 1) * size].copy_from_slice(entry.as_bytes());
    }
    Ok(page)
}

fn write_entries<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    scratch: u64,
    rings: SeedRings,
) -> Result<(), BuildFailure> {
    let page = first_frame(domid, rings)?;
    write_frame(xen, domid, scratch, 0, &page)
}

/// Writes `bytes` at `offset` into guest frame `pfn` of `domid`, through a one-frame foreign mapping.
pub(crate) fn write_frame<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    pfn: u64,
    offset: usize,
    bytes: &[u8],
) -> Result<(), BuildFailure> {
    let mut mapping = xen.map_foreign(domid, &[pfn])?;
    mapping
        .write((pfn << XEN_PAGE_SHIFT) + offset as u64, bytes)
        .map_err(crate::builder::memory::GuestWriteError::Write)?;
    Ok(())
}
