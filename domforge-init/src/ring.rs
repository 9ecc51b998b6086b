//! The PV console ring a guest writes its console into, read from the backend side.
//!
//! Layout (`xen/include/public/io/console.h`, unchanged since Xen 3.x):
//! ```text
//! struct xencons_interface {
//!     char in[1024];                       // @0     backend → guest
//!     char out[2048];                      // @1024  guest → backend
//!     XENCONS_RING_IDX in_cons, in_prod;   // @3072, @3076
//!     XENCONS_RING_IDX out_cons, out_prod; // @3080, @3084
//! };                                       // typedef uint32_t XENCONS_RING_IDX
//! ```
//! Indices run freely and wrap at 2^32; a byte's slot is `MASK_XENCONS_IDX(idx, out)` =
//! `idx & (sizeof(out) - 1)`. The guest (Linux `drivers/tty/hvc/hvc_xen.c`, `__write_console`) fills
//! `out[out_prod]`, issues a write barrier, advances `out_prod` and notifies the event channel; the
//! backend (Xen's `tools/console/daemon/io.c`, `buffer_append`) reads `out_prod`, issues a read barrier,
//! copies `out[out_cons..out_prod]`, issues a full barrier and stores `out_cons`. A corrupt producer
//! index (more than 2048 bytes ahead) is treated like xenconsoled does: the ring is resynchronised
//! rather than trusted.

use std::sync::atomic::{Ordering, fence};

/// Offset of `out[]`.
pub const OUT_OFFSET: usize = 1024;
/// `sizeof(out)`.
pub const OUT_SIZE: u32 = 2048;
/// Offset of `out_cons`.
pub const OUT_CONS_OFFSET: usize = 3080;
/// Offset of `out_prod`.
pub const OUT_PROD_OFFSET: usize = 3084;

/// A shared page the ring lives in (a foreign mapping in domforge-init, a byte array in tests).
pub trait SharedPage {
    type Error: std::error::Error;
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Self::Error>;
    fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Self::Error>;
}

/// The console page of a guest, mapped from the control domain.
pub struct ConsolePage<M: domctl::ForeignMapping> {
    mapping: domctl::GuestMapping<M>,
    gpa: u64,
}

impl<M: domctl::ForeignMapping> ConsolePage<M> {
    /// `mapping` must cover guest frame `pfn`.
    pub fn new(mapping: domctl::GuestMapping<M>, pfn: u64) -> Self {
        Self {
            mapping,
            gpa: pfn << 12,
        }
    }
}

impl<M: domctl::ForeignMapping> SharedPage for ConsolePage<M> {
    type Error = domctl::GuestMemoryError;
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Self::Error> {
        self.mapping.read(self.gpa + offset as u64, out)
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Self::Error> {
        domctl::GuestMemoryWriter::write(&mut self.mapping, self.gpa + offset as u64, data)
    }
}

fn read_u32<P: SharedPage>(page: &P, offset: usize) -> Result<u32, P::Error> {
    let mut b = [0u8; 4];
    page.read(offset, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// What one drain found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub bytes: Vec<u8>,
    /// The producer was more than a ring ahead (guest bug or hostile guest); the backlog was dropped.
    pub resynced: bool,
}

/// Takes everything the guest has written since the last call and frees the space.
pub fn drain_out<P: SharedPage>(page: &mut P) -> Result<Drained, P::Error> {
    let cons = read_u32(page, OUT_CONS_OFFSET)?;
    let prod = read_u32(page, OUT_PROD_OFFSET)?;
    // Read the index before the data it covers (the guest wrote data, wmb(), then out_prod).
    fence(Ordering::Acquire);
    let mut pending = prod.wrapping_sub(cons);
    let mut out = Drained::default();
    let mut start = cons;
    if pending > OUT_SIZE {
        // Keep the newest ring's worth, as if the guest had overwritten the rest.
        out.resynced = true;
        start = prod.wrapping_sub(OUT_SIZE);
        pending = OUT_SIZE;
    }
    let mut buf = vec![0u8; pending as usize];
    let mut done = 0u32;
    while done < pending {
        let idx = start.wrapping_add(done) & (OUT_SIZE - 1);
        // Contiguous up to the end of out[].
        let n = (OUT_SIZE - idx).min(pending - done);
        page.read(
            OUT_OFFSET + idx as usize,
            &mut buf[done as usize..(done + n) as usize],
        )?;
        done += n;
    }
    // Data copied before the slots are handed back (mb() in xenconsoled).
    fence(Ordering::SeqCst);
    page.write(OUT_CONS_OFFSET, &prod.to_le_bytes())?;
    out.bytes = buf;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Page(Vec<u8>);
    #[derive(Debug, thiserror::Error)]
    #[error("out of page")]
    struct OutOfPage;
    impl SharedPage for Page {
        type Error = OutOfPage;
        fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), OutOfPage> {
            out.copy_from_slice(self.0.get(offset..offset + out.len()).ok_or(OutOfPage)?);
            Ok(())
        }
        fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), OutOfPage> {
            self.0
                .get_mut(offset..offset + data.len())
                .ok_or(OutOfPage)?
                .copy_from_slice(data);
            Ok(())
        }
    }

    /// What hvc_xen's `__write_console` does: bytes at `out[MASK(prod)]`, then `out_prod += n`.
    fn guest_writes(p: &mut Page, data: &[u8]) {
        let mut prod = u32::from_le_bytes(p.0[3084..3088].try_into().unwrap());
        for b in data {
            p.0[1024 + (prod & 2047) as usize] = *b;
            prod = prod.wrapping_add(1);
        }
        p.0[3084..3088].copy_from_slice(&prod.to_le_bytes());
    }

    fn page_at(index: u32) -> Page {
        let mut p = Page(vec![0; 4096]);
        p.0[3080..3084].copy_from_slice(&index.to_le_bytes());
        p.0[3084..3088].copy_from_slice(&index.to_le_bytes());
        p
    }

    #[test]
    fn offsets_are_console_h() {
        // in[1024] then out[2048], then four uint32_t indices.
        assert_eq!(OUT_OFFSET, 1024);
        assert_eq!(OUT_CONS_OFFSET, 1024 + 2048 + 8);
        assert_eq!(OUT_PROD_OFFSET, OUT_CONS_OFFSET + 4);
    }

    #[test]
    fn drains_across_the_ring_end_and_the_index_wrap() {
        for start in [0u32, 2040, u32::MAX - 3] {
            let mut p = page_at(start);
            guest_writes(&mut p, b"hello, console\n");
            let d = drain_out(&mut p).unwrap();
            assert_eq!(d.bytes, b"hello, console\n", "start {start}");
            assert!(!d.resynced);
            assert_eq!(p.0[3080..3084], p.0[3084..3088]);
            assert!(drain_out(&mut p).unwrap().bytes.is_empty());
        }
    }

    #[test]
    fn a_full_ring_is_read_whole() {
        let mut p = page_at(100);
        let data: Vec<u8> = (0..2048u32).map(|i| (i % 200) as u8 + 32).collect();
        guest_writes(&mut p, &data);
        assert_eq!(drain_out(&mut p).unwrap().bytes, data);
    }

    #[test]
    fn a_lying_producer_is_resynchronised_not_trusted() {
        let mut p = page_at(0);
        p.0[3084..3088].copy_from_slice(&1_000_000u32.to_le_bytes());
        let d = drain_out(&mut p).unwrap();
        assert!(d.resynced);
        assert_eq!(d.bytes.len(), 2048);
        assert_eq!(
            u32::from_le_bytes(p.0[3080..3084].try_into().unwrap()),
            1_000_000
        );
    }
}
