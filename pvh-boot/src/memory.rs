//! The one seam between this crate and guest memory.
//!
//! Everything the builder produces is expressed as "write these bytes at this guest-physical
//! address" through [`GuestMemoryWriter`], so the same code fills a test buffer
//! ([`VecGuestMemory`]) or a Xen foreign mapping (implemented by the `domctl` crate over
//! `IOCTL_PRIVCMD_MMAPBATCH_V2`). This mirrors rust-vmm's `vm-memory` idea without its `std`
//! dependency.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Size of an x86 page; every region this crate places is aligned to it.
pub const PAGE_SIZE: u64 = 4096;

/// Writes bytes into guest-physical memory.
pub trait GuestMemoryWriter {
    /// Why a write failed (unmapped address, hypercall error, ...).
    type Error: core::error::Error + 'static;

    /// Write `bytes` starting at guest-physical address `gpa`.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Fill `len` bytes at `gpa` with zeros.
    ///
    /// Freshly populated Xen memory is already zeroed, but the builder still clears what the
    /// guest relies on being zero (ELF BSS, xenstore/console rings) so the result does not
    /// depend on the memory's history. Implementations may override this with something cheaper.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), Self::Error> {
        const ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
        let mut done = 0u64;
        while done < len {
            let chunk = (len - done).min(PAGE_SIZE);
            // `chunk` is at most PAGE_SIZE, so the slice bound always holds.
            let bytes = ZEROS.get(..chunk as usize).unwrap_or(&ZEROS);
            self.write(gpa.saturating_add(done), bytes)?;
            done += chunk;
        }
        Ok(())
    }
}

/// A range of guest page frame numbers, `[start, start + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PfnRange {
    /// First page frame number.
    pub start: u64,
    /// Number of pages.
    pub count: u64,
}

impl PfnRange {
    /// One past the last pfn (saturating; ranges built by this crate never overflow).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.count)
    }

    /// Whether `pfn` lies inside the range.
    pub fn contains(&self, pfn: u64) -> bool {
        pfn >= self.start && pfn < self.end()
    }
}

/// Why a [`VecGuestMemory`] write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VecMemoryError {
    /// The write touched a page that is not in any populated range.
    #[error("write of {len} bytes at {gpa:#x} touches unpopulated page {pfn:#x}")]
    Unpopulated {
        /// Start of the write.
        gpa: u64,
        /// Length of the write.
        len: u64,
        /// First page that is not populated.
        pfn: u64,
    },
    /// The write's end overflows the 64-bit address space.
    #[error("write of {len} bytes at {gpa:#x} overflows the address space")]
    Overflow {
        /// Start of the write.
        gpa: u64,
        /// Length of the write.
        len: u64,
    },
}

/// Sparse, in-process guest memory for tests and offline inspection.
///
/// Only pages in the populated ranges given at construction may be written, exactly like a
/// Xen guest where writing an unpopulated pfn fails. Pages are stored sparsely, so a 6 GiB
/// guest costs only the pages actually written.
#[derive(Debug, Clone, Default)]
pub struct VecGuestMemory {
    populated: Vec<PfnRange>,
    pages: BTreeMap<u64, Box<[u8; PAGE_SIZE as usize]>>,
}

impl VecGuestMemory {
    /// Memory where exactly the pages in `populated` exist.
    pub fn new(populated: &[PfnRange]) -> Self {
        Self {
            populated: populated.to_vec(),
            pages: BTreeMap::new(),
        }
    }

    /// Whether `pfn` is populated.
    pub fn is_populated(&self, pfn: u64) -> bool {
        self.populated.iter().any(|r| r.contains(pfn))
    }

    /// Read `len` bytes at `gpa`; pages never written read as zero, like fresh Xen memory.
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut out = alloc::vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let addr = gpa.wrapping_add(done as u64);
            let pfn = addr / PAGE_SIZE;
            let off = (addr % PAGE_SIZE) as usize;
            let chunk = (len - done).min(PAGE_SIZE as usize - off);
            if let (Some(page), Some(dst)) = (self.pages.get(&pfn), out.get_mut(done..done + chunk))
                && let Some(src) = page.get(off..off + chunk)
            {
                dst.copy_from_slice(src);
            }
            done += chunk;
        }
        out
    }

    /// Read a NUL-terminated string at `gpa` (at most `max` bytes), without the NUL.
    pub fn read_cstr(&self, gpa: u64, max: usize) -> Vec<u8> {
        let bytes = self.read(gpa, max);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.get(..end).unwrap_or(&[]).to_vec()
    }

    /// Number of pages that have been written (memory actually held).
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), VecMemoryError> {
        if len == 0 {
            return Ok(());
        }
        let last = gpa
            .checked_add(len - 1)
            .ok_or(VecMemoryError::Overflow { gpa, len })?;
        let mut pfn = gpa / PAGE_SIZE;
        while pfn <= last / PAGE_SIZE {
            match self.populated.iter().find(|r| r.contains(pfn)) {
                Some(r) => pfn = r.end(),
                None => return Err(VecMemoryError::Unpopulated { gpa, len, pfn }),
            }
        }
        Ok(())
    }
}

impl GuestMemoryWriter for VecGuestMemory {
    type Error = VecMemoryError;

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        self.check(gpa, bytes.len() as u64)?;
        let mut done = 0usize;
        while done < bytes.len() {
            let addr = gpa + done as u64;
            let pfn = addr / PAGE_SIZE;
            let off = (addr % PAGE_SIZE) as usize;
            let chunk = (bytes.len() - done).min(PAGE_SIZE as usize - off);
            let page = self
                .pages
                .entry(pfn)
                .or_insert_with(|| Box::new([0u8; PAGE_SIZE as usize]));
            if let (Some(dst), Some(src)) = (
                page.get_mut(off..off + chunk),
                bytes.get(done..done + chunk),
            ) {
                dst.copy_from_slice(src);
            }
            done += chunk;
        }
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), Self::Error> {
        self.check(gpa, len)?;
        // Unwritten pages read as zero: clear only the pages that exist.
        let end = gpa + len;
        let mut addr = gpa;
        while addr < end {
            let pfn = addr / PAGE_SIZE;
            let off = (addr % PAGE_SIZE) as usize;
            let chunk = (end - addr).min(PAGE_SIZE - off as u64) as usize;
            if let Some(page) = self.pages.get_mut(&pfn)
                && let Some(dst) = page.get_mut(off..off + chunk)
            {
                dst.fill(0);
            }
            addr += chunk as u64;
        }
        Ok(())
    }
}
