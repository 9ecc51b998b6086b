//! A xenstore page for a domain Xen built at boot (dom0less, `xen,enhanced`), given after it runs:
//! what Xen's `tools/helpers/init-dom0less.c` (`init_domain()`, `alloc_xs_page()`) does for Xen
//! 4.17–4.20, before the domain is introduced to xenstored.
//!
//! Xen allocates such a domain's store event channel at boot (`HVM_PARAM_STORE_EVTCHN`, remote end
//! the hardware domain) and leaves `HVM_PARAM_STORE_PFN` at `~0`; Linux (since "xen: add support for
//! initializing xenstore later as HVM domain", 5.19) sees the `~0`, waits on the channel, and on the
//! first event reads the parameter again and connects (`drivers/xen/xenbus/xenbus_probe.c`
//! `xenbus_late_init()`). So, in init-dom0less's order:
//!
//! 1. raise the domain's maximum by one page and populate it at `GUEST_MAGIC_BASE` + 1 page
//!    (`XENSTORE_PFN_OFFSET`, the page libxl gives other guests);
//! 2. clear it and set `connection = XENSTORE_RECONNECT` (`xen/include/public/io/xs_wire.h`);
//! 3. grant it to the store's domain as `GNTTAB_RESERVED_XENSTORE`, which is how xenstored maps it;
//! 4. set `HVM_PARAM_STORE_PFN`. The caller then writes the domain's nodes and introduces it;
//!    xenstored's `XS_INTRODUCE` notifies the channel (`introduce_domain()`), which wakes the guest.
//!
//! Step 3 differs from libxl's seeding of a new guest ([`super::grants`]) on purpose: that maps
//! grant frame 0 at a scratch frame, writes, and takes the frame out of the p2m again. A running ARM
//! guest has already mapped frame 0 at `GUEST_GNTTAB_BASE` (Linux maps the grant table where the
//! `/hypervisor` node's first `reg` says), and Xen's ARM p2m keeps a Xen-heap page at one guest
//! frame only (`xenmem_add_to_physmap_one()` in `xen/arch/arm/mm.c` refuses a second with EBUSY),
//! so the frame is mapped at `GUEST_GNTTAB_BASE` itself (Xen answers EBUSY when the guest already
//! has it there, and it is then written in place), only entry 1 is written, the seven other reserved entries and the guest's own grants are left alone,
//! and the mapping stays where the guest expects it.
//!
//! A domain whose `HVM_PARAM_STORE_PFN` is already a frame (Xen 4.21+ allocates the page itself
//! unless `xen,enhanced = "legacy"`) needs none of this and is only introduced.

use crate::abi::{self, GrantEntryV1, XEN_PAGE_SHIFT, grant, hvm_param};
use crate::builder::BuildFailure;
use crate::builder::grants::write_frame;
use crate::transport::Hypercalls;
use crate::xen::{DomId, Xen};
use device_tree::guest::layout;
use zerocopy::IntoBytes;

/// `XENSTORE_RING_SIZE` (xs_wire.h): the request and response rings precede the indexes.
const XENSTORE_RING_SIZE: usize = 1024;
/// Offset of `connection` in `struct xenstore_domain_interface`: `req[1024]`, `rsp[1024]`, four
/// `XENSTORE_RING_IDX` (u32), `server_features` (u32), then `connection` (u32).
pub const CONNECTION_OFFSET: usize = 2 * XENSTORE_RING_SIZE + 4 * 4 + 4;
/// `XENSTORE_RECONNECT` (xs_wire.h): the server is not ready yet; the guest waits.
pub const XENSTORE_RECONNECT: u32 = 1;

/// What [`give_store_page`] found or made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateStore {
    /// `HVM_PARAM_STORE_EVTCHN` is 0: the domain has no `xen,enhanced` xenstore.
    NotEnhanced,
    /// The store page (guest frame) and the channel Xen allocated for it; `allocated` when this
    /// call populated the page (Xen 4.17–4.20), not Xen (4.21+).
    Ready {
        pfn: u64,
        port: u32,
        allocated: bool,
    },
}

/// Gives running domain `domid` its xenstore page, served by `backend` (see the module docs).
pub fn give_store_page<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    backend: DomId,
) -> Result<LateStore, BuildFailure> {
    let port = xen.get_hvm_param(domid, hvm_param::STORE_EVTCHN)?;
    if port == 0 {
        return Ok(LateStore::NotEnhanced);
    }
    let port = u32::try_from(port).map_err(|_| {
        BuildFailure::Config(format!(
            "domain {}'s HVM_PARAM_STORE_EVTCHN {port:#x} is not a port",
            domid.get()
        ))
    })?;
    let current = xen.get_hvm_param(domid, hvm_param::STORE_PFN)?;
    if current != 0 && current != u64::MAX {
        return Ok(LateStore::Ready {
            pfn: current,
            port,
            allocated: false,
        });
    }
    let pfn = (layout::GUEST_MAGIC_BASE >> XEN_PAGE_SHIFT) + super::arm::XENSTORE_PFN_OFFSET;
    let info = xen.getdomaininfo(domid)?;
    // `max_pages` is in 4 KiB pages; one more page, in KiB (`alloc_xs_page()`).
    xen.set_max_mem(domid, (info.max_pages + 1) * 4)?;
    xen.populate_physmap(domid, &[pfn])?;
    let mut page = vec![0u8; 1 << XEN_PAGE_SHIFT];
    page[CONNECTION_OFFSET..CONNECTION_OFFSET + 4]
        .copy_from_slice(&XENSTORE_RECONNECT.to_le_bytes());
    write_frame(xen, domid, pfn, 0, &page)?;
    seed_store_entry(xen, domid, pfn, backend)?;
    xen.set_hvm_param(domid, hvm_param::STORE_PFN, pfn)?;
    Ok(LateStore::Ready {
        pfn,
        port,
        allocated: true,
    })
}

/// Writes grant entry [`grant::RESERVED_XENSTORE`] of grant frame 0, where the guest maps it.
fn seed_store_entry<H: Hypercalls>(
    xen: &mut Xen<H>,
    domid: DomId,
    store_pfn: u64,
    backend: DomId,
) -> Result<(), BuildFailure> {
    let frame0 = layout::GUEST_GNTTAB_BASE >> XEN_PAGE_SHIFT;
    // EBUSY: the frame is in the guest's p2m already, which is where Linux maps it (seen on Xen
    // 4.17 with the guest running), so it is written where it is.
    match xen.add_to_physmap(domid, abi::mapspace::GRANT_TABLE, 0, frame0) {
        Ok(()) => {}
        Err(crate::xen::XenError::Hypervisor {
            errno: crate::Errno::EBUSY,
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    let frame = u32::try_from(store_pfn).map_err(|_| {
        BuildFailure::Config(format!(
            "store frame {store_pfn:#x} does not fit a grant entry"
        ))
    })?;
    let entry = GrantEntryV1 {
        flags: grant::GTF_PERMIT_ACCESS,
        domid: backend.get(),
        frame,
    };
    let offset = grant::RESERVED_XENSTORE * size_of::<GrantEntryV1>();
    write_frame(xen, domid, frame0, offset, entry.as_bytes())
}
