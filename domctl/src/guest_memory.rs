//! Writing at guest-physical addresses through a foreign mapping.
//!
//! The loaders (`pvh-boot`, `device-tree`) only know "write bytes at a guest-physical address"
//! (docs/architecture.md: "Guest memory: one small trait"): `pvh_boot::memory::GuestMemoryWriter`,
//! the one such trait in the workspace (re-exported here). [`GuestMapping`] implements it over any
//! [`ForeignMapping`] (a real privcmd mapping or the fake's guest pages); `crate::builder::memory`
//! adds on-demand windows over a whole guest.

use crate::abi::{XEN_PAGE_SHIFT, XEN_PAGE_SIZE};
use crate::transport::{ForeignMapping, TransportError};
pub use pvh_boot::memory::GuestMemoryWriter;
use std::collections::BTreeMap;

/// Why a guest-physical access through a [`GuestMapping`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestMemoryError {
    /// Part of the range lies in a guest frame that this mapping does not cover.
    #[error(
        "guest-physical address {gpa:#x} (frame {pfn:#x}) is not in this mapping of domain {domid}"
    )]
    NotMapped { domid: u16, gpa: u64, pfn: u64 },
    /// `gpa + len` overflows the 64-bit address space.
    #[error("range of {len} bytes at {gpa:#x} wraps around the address space")]
    Overflow { gpa: u64, len: usize },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A set of mapped guest frames, addressed by guest-physical address. Frames need not be contiguous;
/// an access may span several frames as long as each one is mapped.
pub struct GuestMapping<M: ForeignMapping> {
    domid: u16,
    mapping: M,
    /// guest frame number → page index in `mapping`.
    index: BTreeMap<u64, usize>,
}

impl<M: ForeignMapping> GuestMapping<M> {
    /// Wraps `mapping`, whose page `i` is guest frame `pfns[i]`. If a frame is listed twice the first
    /// page wins (both alias the same guest page anyway).
    pub fn new(domid: u16, pfns: &[u64], mapping: M) -> Self {
        let mut index = BTreeMap::new();
        for (i, pfn) in pfns.iter().enumerate() {
            index.entry(*pfn).or_insert(i);
        }
        Self {
            domid,
            mapping,
            index,
        }
    }

    /// The domain whose memory this maps.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// The underlying transport mapping.
    pub fn inner(&self) -> &M {
        &self.mapping
    }

    /// Splits `[gpa, gpa+len)` into per-page pieces: (page index, offset in page, offset in data, len).
    fn pieces(
        &self,
        gpa: u64,
        len: usize,
    ) -> Result<Vec<(usize, usize, usize, usize)>, GuestMemoryError> {
        let len64 = u64::try_from(len).map_err(|_| GuestMemoryError::Overflow { gpa, len })?;
        if len == 0 {
            return Ok(Vec::new());
        }
        gpa.checked_add(len64 - 1)
            .ok_or(GuestMemoryError::Overflow { gpa, len })?;
        let mut out = Vec::new();
        let mut done = 0usize;
        while done < len {
            // `done < len` and `gpa + len - 1` does not overflow, so this cannot either.
            let cur = gpa + done as u64;
            let pfn = cur >> XEN_PAGE_SHIFT;
            let in_page = (cur & (XEN_PAGE_SIZE as u64 - 1)) as usize;
            let chunk = (XEN_PAGE_SIZE - in_page).min(len - done);
            let page = *self.index.get(&pfn).ok_or(GuestMemoryError::NotMapped {
                domid: self.domid,
                gpa: cur,
                pfn,
            })?;
            out.push((page, in_page, done, chunk));
            done += chunk;
        }
        Ok(out)
    }

    /// Reads `out.len()` bytes at `gpa`.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), GuestMemoryError> {
        // Check every page before copying anything.
        let pieces = self.pieces(gpa, out.len())?;
        for (page, in_page, at, len) in pieces {
            let dst = out
                .get_mut(at..at + len)
                .ok_or(GuestMemoryError::Overflow { gpa, len })?;
            self.mapping.read_page(page, in_page, dst)?;
        }
        Ok(())
    }
}

impl<M: ForeignMapping> GuestMemoryWriter for GuestMapping<M> {
    type Error = GuestMemoryError;

    /// Writes `bytes` at `gpa`. Every page is checked first, so an unmapped page leaves memory untouched.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), GuestMemoryError> {
        let pieces = self.pieces(gpa, bytes.len())?;
        for (page, in_page, at, len) in pieces {
            let src = bytes
                .get(at..at + len)
                .ok_or(GuestMemoryError::Overflow { gpa, len })?;
            self.mapping.write_page(page, in_page, src)?;
        }
        Ok(())
    }
}
