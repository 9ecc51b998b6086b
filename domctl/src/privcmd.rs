//! The Linux transport: `/dev/xen/privcmd` ioctls through `nix`, argument buffers from
//! `/dev/xen/hypercall`.
//!
//! * Hypercalls go through `IOCTL_PRIVCMD_HYPERCALL`, `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))`
//!   (Linux `include/uapi/xen/privcmd.h`; Xen's copy `tools/include/xen-sys/Linux/privcmd.h`). Direction
//!   NONE with a non-zero size is unusual, so nix's `ioctl_readwrite!` would encode the wrong number; the
//!   number is built with `nix::ioc!` and the call with `ioctl_readwrite_bad!`.
//! * Xen reads and writes hypercall arguments by guest-virtual address, possibly while the kernel is not
//!   in the calling process's context; ordinary (swappable, possibly not-yet-faulted) process memory can
//!   make it fail with `EFAULT`. Linux's `xen-privcmdbuf` device (`/dev/xen/hypercall`) hands out pages
//!   that are safe for that, mapped with `mmap(MAP_SHARED)`; every [`PrivcmdBuffer`] is such a mapping.
//! * Foreign guest pages are mapped with `IOCTL_PRIVCMD_MMAPBATCH_V2` into a `MAP_SHARED` mapping of
//!   `/dev/xen/privcmd` itself, with per-page errors in an `err` array.
//!
//! This assumes 4 KiB Linux pages (true for Debian's amd64 and arm64 kernels); [`Privcmd::open`] refuses
//! a kernel with another page size rather than mis-mapping.

use crate::abi::XEN_PAGE_SIZE;
use crate::transport::{
    Errno, ForeignMapping, HypercallBuffer, Hypercalls, TransportError, XenArch, check_bounds,
};
use nix::fcntl::{OFlag, open};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::stat::Mode;
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// `/dev/xen/privcmd`.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// `/dev/xen/hypercall` (Linux `drivers/xen/privcmd-buf.c`).
pub const HYPERCALL_BUF_PATH: &str = "/dev/xen/hypercall";

/// `struct privcmd_hypercall { __u64 op; __u64 arg[5]; }` = 48 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PrivcmdHypercall {
    pub op: u64,
    pub arg: [u64; 5],
}
const _: () = assert!(size_of::<PrivcmdHypercall>() == 48);

/// `struct privcmd_mmapbatch_v2 { unsigned int num @0; domid_t dom @4; __u64 addr @8;
/// const xen_pfn_t __user *arr @16; int __user *err @24; }` = 32 bytes (`xen_pfn_t` is 64-bit on both
/// x86_64 and arm64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PrivcmdMmapBatchV2 {
    pub num: u32,
    pub dom: u16,
    pub _pad: u16,
    pub addr: u64,
    pub arr: u64,
    pub err: u64,
}
const _: () = assert!(size_of::<PrivcmdMmapBatchV2>() == 32);

/// `IOCTL_PRIVCMD_HYPERCALL` = `_IOC(_IOC_NONE, 'P', 0, 48)`.
pub const IOCTL_PRIVCMD_HYPERCALL: u32 = nix::ioc!(
    nix::sys::ioctl::NONE,
    b'P',
    0,
    size_of::<PrivcmdHypercall>()
) as u32;
/// `IOCTL_PRIVCMD_MMAPBATCH_V2` = `_IOC(_IOC_NONE, 'P', 4, 32)`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 = nix::ioc!(
    nix::sys::ioctl::NONE,
    b'P',
    4,
    size_of::<PrivcmdMmapBatchV2>()
) as u32;

mod ioctls {
    use super::{PrivcmdHypercall, PrivcmdMmapBatchV2};
    nix::ioctl_readwrite_bad!(
        privcmd_hypercall,
        nix::ioc!(
            nix::sys::ioctl::NONE,
            b'P',
            0,
            size_of::<PrivcmdHypercall>()
        ),
        PrivcmdHypercall
    );
    nix::ioctl_readwrite_bad!(
        privcmd_mmapbatch_v2,
        nix::ioc!(
            nix::sys::ioctl::NONE,
            b'P',
            4,
            size_of::<PrivcmdMmapBatchV2>()
        ),
        PrivcmdMmapBatchV2
    );
}

/// The privcmd transport. Not `Sync`: one builder drives it.
pub struct Privcmd {
    privcmd: OwnedFd,
    hypercall_buf: OwnedFd,
}

fn open_dev(path: &str) -> Result<OwnedFd, TransportError> {
    open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| TransportError::Os {
        what: format!(
            "opening {path} (is this a Xen control domain with the xen-privcmd driver and devtmpfs at /dev?)"
        ),
        source: e,
    })
}

impl Privcmd {
    /// Opens `/dev/xen/privcmd` and `/dev/xen/hypercall`.
    pub fn open() -> Result<Self, TransportError> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten();
        if page != Some(XEN_PAGE_SIZE as _) {
            return Err(TransportError::Os {
                what: format!(
                    "kernel page size is {page:?}; this transport supports 4 KiB pages only"
                ),
                source: Errno::EOPNOTSUPP,
            });
        }
        Ok(Self {
            privcmd: open_dev(PRIVCMD_PATH)?,
            hypercall_buf: open_dev(HYPERCALL_BUF_PATH)?,
        })
    }
}

/// A fresh read-write shared mapping of `len` bytes of the device `fd` (opened from `path`), at an
/// address the kernel chooses.
fn map_shared(
    fd: &OwnedFd,
    len: NonZeroUsize,
    path: &str,
) -> Result<NonNull<c_void>, TransportError> {
    // SAFETY: a new mapping at a kernel-chosen address aliases no Rust object.
    unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    }
    .map_err(|e| TransportError::Os {
        what: format!("mmap of {} bytes from {path}", len.get()),
        source: e,
    })
}

/// Bytes rounded up to whole pages (at least one), for mmap.
fn mapping_len(len: usize) -> Result<NonZeroUsize, TransportError> {
    let pages = len.div_ceil(XEN_PAGE_SIZE).max(1);
    pages
        .checked_mul(XEN_PAGE_SIZE)
        .and_then(NonZeroUsize::new)
        .ok_or(TransportError::OutOfBounds {
            what: "mapping",
            offset: 0,
            len,
            size: isize::MAX as usize,
        })
}

/// A hypercall-safe buffer: pages mmap'd `MAP_SHARED` from `/dev/xen/hypercall`.
pub struct PrivcmdBuffer {
    ptr: NonNull<c_void>,
    len: usize,
    map_len: NonZeroUsize,
}

impl HypercallBuffer for PrivcmdBuffer {
    fn address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
    fn len(&self) -> usize {
        self.len
    }
    fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        check_bounds("hypercall buffer", offset, data.len(), self.len)?;
        // SAFETY: `offset + data.len() <= self.len <= map_len` (checked above); the mapping is owned by
        // this buffer, readable and writable, and lives until drop. `data` cannot overlap it (we never
        // hand out references into the mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().cast::<u8>().add(offset),
                data.len(),
            );
        }
        Ok(())
    }
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        check_bounds("hypercall buffer", offset, out.len(), self.len)?;
        // SAFETY: as in `write_at`; Xen only writes to the buffer during a hypercall, which cannot run
        // concurrently with this `&self` call on the same thread.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>().add(offset),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        Ok(())
    }
}

impl Drop for PrivcmdBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`map_len` are exactly what mmap returned and nothing refers to the mapping now.
        // An munmap failure cannot be acted on in drop.
        let _ = unsafe { munmap(self.ptr, self.map_len.get()) };
    }
}

/// Guest pages mapped with `IOCTL_PRIVCMD_MMAPBATCH_V2`.
pub struct PrivcmdMapping {
    ptr: NonNull<c_void>,
    pages: usize,
    map_len: NonZeroUsize,
}

impl PrivcmdMapping {
    fn page_ptr(&self, index: usize, offset: usize, len: usize) -> Result<*mut u8, TransportError> {
        if index >= self.pages {
            return Err(TransportError::OutOfBounds {
                what: "foreign mapping",
                offset: index,
                len: 1,
                size: self.pages,
            });
        }
        check_bounds("mapped page", offset, len, XEN_PAGE_SIZE)?;
        // SAFETY: index < pages and offset + len <= page size, so the result lies in the mapping.
        Ok(unsafe {
            self.ptr
                .as_ptr()
                .cast::<u8>()
                .add(index * XEN_PAGE_SIZE + offset)
        })
    }
}

impl ForeignMapping for PrivcmdMapping {
    fn pages(&self) -> usize {
        self.pages
    }
    fn write_page(
        &mut self,
        index: usize,
        offset: usize,
        data: &[u8],
    ) -> Result<(), TransportError> {
        let dst = self.page_ptr(index, offset, data.len())?;
        // SAFETY: `dst..dst+len` is inside the owned, writable mapping (checked by `page_ptr`).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
    fn read_page(&self, index: usize, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let src = self.page_ptr(index, offset, out.len())?;
        // SAFETY: as in `write_page`.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl Drop for PrivcmdMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned; nothing refers to it any more.
        let _ = unsafe { munmap(self.ptr, self.map_len.get()) };
    }
}

impl Hypercalls for Privcmd {
    type Buffer = PrivcmdBuffer;
    type Mapping = PrivcmdMapping;

    fn arch(&self) -> XenArch {
        XenArch::host()
    }

    fn alloc_buffer(&mut self, len: usize) -> Result<PrivcmdBuffer, TransportError> {
        let map_len = mapping_len(len)?;
        let ptr = map_shared(&self.hypercall_buf, map_len, HYPERCALL_BUF_PATH)?;
        // The device hands out zeroed pages; clear anyway so "zeroed" does not depend on the driver.
        // SAFETY: the whole mapping is ours and writable.
        unsafe { std::ptr::write_bytes(ptr.as_ptr().cast::<u8>(), 0, map_len.get()) };
        Ok(PrivcmdBuffer { ptr, len, map_len })
    }

    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> Result<u64, TransportError> {
        let mut call = PrivcmdHypercall { op, arg: args };
        // SAFETY: `call` is a valid `privcmd_hypercall` for the whole ioctl; pointers inside the
        // arguments are the caller's buffers (see `Hypercalls::hypercall`).
        let r = unsafe { ioctls::privcmd_hypercall(self.privcmd.as_raw_fd(), &mut call) };
        match r {
            Ok(v) => u64::try_from(v).map_err(|_| TransportError::Xen(Errno::EINVAL)),
            Err(e) => Err(TransportError::Xen(e)),
        }
    }

    fn map_foreign(&mut self, domid: u16, pfns: &[u64]) -> Result<PrivcmdMapping, TransportError> {
        let num = u32::try_from(pfns.len()).map_err(|_| TransportError::OutOfBounds {
            what: "frame list",
            offset: 0,
            len: pfns.len(),
            size: u32::MAX as usize,
        })?;
        let map_len = mapping_len(
            pfns.len()
                .checked_mul(XEN_PAGE_SIZE)
                .ok_or(TransportError::Xen(Errno::E2BIG))?,
        )?;
        let ptr = map_shared(&self.privcmd, map_len, PRIVCMD_PATH)?;
        let mapping = PrivcmdMapping {
            ptr,
            pages: pfns.len(),
            map_len,
        };
        let mut errs = vec![0i32; pfns.len()];
        let mut batch = PrivcmdMmapBatchV2 {
            num,
            dom: domid,
            _pad: 0,
            addr: ptr.as_ptr() as u64,
            arr: pfns.as_ptr() as u64,
            err: errs.as_mut_ptr() as u64,
        };
        // SAFETY: `batch` points at `pfns` (num entries, read by the kernel), `errs` (num entries,
        // written by the kernel) and our fresh mapping of `num` pages; all outlive the call.
        let r = unsafe { ioctls::privcmd_mmapbatch_v2(self.privcmd.as_raw_fd(), &mut batch) };
        // Per-page errors are negative errnos; report the first one.
        if let Some((i, e)) = errs.iter().enumerate().find(|(_, e)| **e != 0) {
            return Err(TransportError::MapFailed {
                domid,
                pfn: pfns.get(i).copied().unwrap_or_default(),
                errno: Errno::from_raw(e.saturating_neg()),
            });
        }
        r.map_err(TransportError::Xen)?;
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_IOC(dir, type, nr, size)` from Linux `include/uapi/asm-generic/ioctl.h` (x86 and arm64):
    /// nr bits 0-7, type bits 8-15, size bits 16-29, dir bits 30-31, `_IOC_NONE` = 0.
    const fn linux_ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
        (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
    }

    #[test]
    fn request_numbers_match_linux_and_what_was_seen_on_xen() {
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, linux_ioc(0, b'P', 0, 48));
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, linux_ioc(0, b'P', 4, 32));
        // Numbers observed under Debian's Xen 4.17 (notes/crates.md).
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
    }

    #[test]
    fn mmapbatch_v2_layout_matches_privcmd_h() {
        assert_eq!(core::mem::offset_of!(PrivcmdMmapBatchV2, dom), 4);
        assert_eq!(core::mem::offset_of!(PrivcmdMmapBatchV2, addr), 8);
        assert_eq!(core::mem::offset_of!(PrivcmdMmapBatchV2, arr), 16);
        assert_eq!(core::mem::offset_of!(PrivcmdMmapBatchV2, err), 24);
        assert_eq!(core::mem::offset_of!(PrivcmdHypercall, arg), 8);
    }

    #[test]
    fn mapping_lengths_round_to_pages() {
        assert_eq!(mapping_len(0).unwrap().get(), 4096);
        assert_eq!(mapping_len(144).unwrap().get(), 4096);
        assert_eq!(mapping_len(4097).unwrap().get(), 8192);
        assert!(mapping_len(usize::MAX).is_err());
    }

    /// Without Xen the transport must say what is missing, not fail obscurely.
    #[test]
    fn open_without_xen_names_the_device() {
        if std::path::Path::new(PRIVCMD_PATH).exists() {
            eprintln!("skipping: {PRIVCMD_PATH} exists on this machine (running under Xen)");
            return;
        }
        let err = Privcmd::open().err().expect("no Xen here");
        let msg = err.to_string();
        assert!(msg.contains(PRIVCMD_PATH), "{msg}");
        assert!(msg.contains("xen-privcmd"), "{msg}");
    }
}
