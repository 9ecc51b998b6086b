//! dom0's side of PV devices, done by hand instead of Xen's hotplug scripts (`block`, `vif-bridge`,
//! which need a shell, losetup and ip/brctl that this initramfs does not carry): the real
//! [`HotplugHost`] on Linux ioctls.
//!
//! * **Disks.** A regular file is attached to a free loop device (`/dev/loop-control`
//!   `LOOP_CTL_GET_FREE`, then `LOOP_CONFIGURE` on the new `/dev/loopN`, `include/uapi/linux/loop.h`);
//!   a block device is served as it is. blkback then opens the device by the `major:minor` the store
//!   gives it. The loop device is not `LO_FLAGS_AUTOCLEAR`: blkback opens it only after we close our
//!   descriptor, which would detach it. A target attached once is reused when its domain restarts.
//! * **vifs.** netback creates `vif<domid>.<handle>` when the frontend connects; it joins its bridge
//!   (`SIOCBRADDBR`, `SIOCBRADDIF`, `include/uapi/linux/sockios.h`), gets the MTU and is brought up
//!   with the bridge (`SIOCSIFMTU`, `SIOCGIFFLAGS`/`SIOCSIFFLAGS` `IFF_UP`), as `vif-bridge` does with
//!   `ip link set … master`/`up`; a `vifname` is netback's interface renamed first (`SIOCSIFNAME`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::store::HotplugHost;

/// `LO_FLAGS_READ_ONLY` (`include/uapi/linux/loop.h`).
const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_NAME_SIZE`.
const LO_NAME_SIZE: usize = 64;
/// `IFNAMSIZ` (`include/uapi/linux/if.h`).
const IFNAMSIZ: usize = 16;
/// `IFF_UP`.
const IFF_UP: i16 = 1;

/// `struct loop_info64` (`include/uapi/linux/loop.h`): 232 bytes.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config { __u32 fd; __u32 block_size; struct loop_info64 info; __u64 __reserved[8]; }`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}
const _: () = assert!(size_of::<LoopInfo64>() == 232 && size_of::<LoopConfig>() == 304);
const _: () = assert!(core::mem::offset_of!(LoopConfig, info) == 8);

/// `struct ifreq`: the name and a 24-byte union of which we use the `int` (`ifr_ifindex`,
/// `ifr_mtu`) and the `short` (`ifr_flags`) at offset 16; 40 bytes on 64-bit Linux.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    value: [u8; 24],
}
const _: () = assert!(size_of::<IfReq>() == 40);

mod ioctls {
    use super::{IFNAMSIZ, IfReq, LoopConfig};
    // The loop and socket ioctl numbers are plain constants, not `_IOC` encodings.
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
    nix::ioctl_write_ptr_bad!(br_add_bridge, 0x89a0, [u8; IFNAMSIZ]);
    nix::ioctl_readwrite_bad!(br_add_if, 0x89a2, IfReq);
    nix::ioctl_readwrite_bad!(get_ifindex, 0x8933, IfReq);
    nix::ioctl_readwrite_bad!(get_flags, 0x8913, IfReq);
    nix::ioctl_readwrite_bad!(set_flags, 0x8914, IfReq);
    nix::ioctl_readwrite_bad!(set_mtu, 0x8922, IfReq);
    nix::ioctl_readwrite_bad!(set_name, 0x8923, IfReq);
}

/// The real hotplug host (see the module docs).
#[derive(Debug, Default)]
pub struct StdHotplug {
    /// Targets already attached: `(major, minor, node)`.
    attached: HashMap<String, (u32, u32, String)>,
}

impl HotplugHost for StdHotplug {
    fn attach_disk(&mut self, target: &str, read_only: bool) -> Result<(u32, u32, String), String> {
        if let Some(done) = self.attached.get(target) {
            return Ok(done.clone());
        }
        let meta = std::fs::metadata(target).map_err(|e| e.to_string())?;
        let done = if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            (major(rdev), minor(rdev), target.to_string())
        } else if meta.is_file() {
            attach_loop(target, read_only)?
        } else {
            return Err("neither a regular file nor a block device".into());
        };
        self.attached.insert(target.to_string(), done.clone());
        Ok(done)
    }

    fn interface_exists(&mut self, name: &str) -> bool {
        Path::new("/sys/class/net").join(name).exists()
    }

    fn rename_interface(&mut self, from: &str, to: &str) -> Result<(), String> {
        let sock = socket()?;
        let mut req = ifreq(from)?;
        req.value[..IFNAMSIZ].copy_from_slice(&if_name(to)?);
        // SAFETY: `req` is a valid `struct ifreq` (`ifr_newname` at offset 16).
        unsafe { ioctls::set_name(sock.as_raw_fd(), &mut req) }.map_err(|e| e.to_string())?;
        Ok(())
    }

    fn join_bridge(&mut self, bridge: &str, ifname: &str, mtu: u32) -> Result<(), String> {
        let sock = socket()?;
        let fd = sock.as_raw_fd();
        let br = if_name(bridge)?;
        // SAFETY: `br` is an IFNAMSIZ buffer the kernel reads (net/bridge/br_ioctl.c `br_ioctl_stub`).
        match unsafe { ioctls::br_add_bridge(fd, &br) } {
            Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("creating bridge {bridge}: {e}")),
        }
        let mut req = ifreq(ifname)?;
        // SAFETY: `req` is a valid `struct ifreq` for the duration of each call.
        unsafe { ioctls::get_ifindex(fd, &mut req) }.map_err(|e| format!("{ifname}: {e}"))?;
        let index = i32::from_ne_bytes(req.value[..4].try_into().unwrap_or_default());
        let mtu = i32::try_from(mtu).map_err(|_| format!("MTU {mtu} out of range"))?;
        let mut req = ifreq(ifname)?;
        req.value[..4].copy_from_slice(&mtu.to_ne_bytes());
        // SAFETY: as above.
        unsafe { ioctls::set_mtu(fd, &mut req) }
            .map_err(|e| format!("setting {ifname}'s MTU to {mtu}: {e}"))?;
        let mut req = ifreq(bridge)?;
        req.value[..4].copy_from_slice(&index.to_ne_bytes());
        // SAFETY: as above.
        match unsafe { ioctls::br_add_if(fd, &mut req) } {
            // Already a port (a rebuilt domain gets a new vif, but be forgiving).
            Ok(_) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("adding {ifname} to {bridge}: {e}")),
        }
        for name in [bridge, ifname] {
            bring_up(fd, name)?;
        }
        Ok(())
    }
}

/// Attaches `path` to a free loop device; returns its numbers and node.
fn attach_loop(path: &str, read_only: bool) -> Result<(u32, u32, String), String> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("/dev/loop-control (is the loop driver loaded?): {e}"))?;
    // SAFETY: no argument.
    let n = unsafe { ioctls::loop_ctl_get_free(control.as_raw_fd()) }
        .map_err(|e| format!("no free loop device: {e}"))?;
    let node = format!("/dev/loop{n}");
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| e.to_string())?;
    let device = open_when_present(&node)?;
    let mut config = LoopConfig {
        fd: u32::try_from(backing.as_raw_fd()).map_err(|_| "bad descriptor".to_string())?,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: if read_only { LO_FLAGS_READ_ONLY } else { 0 },
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    let name = path.as_bytes();
    let len = name.len().min(LO_NAME_SIZE - 1);
    config.info.lo_file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: `config` is a valid `struct loop_config`; the kernel takes its own reference to `fd`.
    unsafe { ioctls::loop_configure(device.as_raw_fd(), &config) }
        .map_err(|e| format!("LOOP_CONFIGURE on {node}: {e}"))?;
    let rdev = std::fs::metadata(&node).map_err(|e| e.to_string())?.rdev();
    Ok((major(rdev), minor(rdev), node))
}

/// Opens a device node devtmpfs creates asynchronously after `LOOP_CTL_GET_FREE`.
fn open_when_present(node: &str) -> Result<File, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match OpenOptions::new().read(true).write(true).open(node) {
            Ok(f) => return Ok(f),
            Err(e) if std::time::Instant::now() >= deadline => return Err(format!("{node}: {e}")),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

fn socket() -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bring_up(fd: i32, name: &str) -> Result<(), String> {
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a valid `struct ifreq`.
    unsafe { ioctls::get_flags(fd, &mut req) }.map_err(|e| format!("{name}: {e}"))?;
    let flags = i16::from_ne_bytes([req.value[0], req.value[1]]) | IFF_UP;
    req.value[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: as above.
    unsafe { ioctls::set_flags(fd, &mut req) }.map_err(|e| format!("bringing {name} up: {e}"))?;
    Ok(())
}

/// `name` as an `IFNAMSIZ` buffer (NUL-terminated; the kernel refuses longer names with `EINVAL`
/// anyway, we say so first).
fn if_name(name: &str) -> Result<[u8; IFNAMSIZ], String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= IFNAMSIZ || b.contains(&0) {
        return Err(format!(
            "interface name {name:?} must be 1..{} bytes",
            IFNAMSIZ - 1
        ));
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn ifreq(name: &str) -> Result<IfReq, String> {
    Ok(IfReq {
        name: if_name(name)?,
        value: [0; 24],
    })
}

/// glibc's `gnu_dev_major`/`gnu_dev_minor` split of a 64-bit `dev_t`.
fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32
}
fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_splits_like_glibc() {
        // makedev(7, 3) and makedev(259, 0x12345) as glibc's gnu_dev_makedev builds them.
        let makedev = |ma: u64, mi: u64| {
            ((ma & 0xfffff000) << 32)
                | ((ma & 0xfff) << 8)
                | ((mi & 0xffffff00) << 12)
                | (mi & 0xff)
        };
        assert_eq!((major(makedev(7, 3)), minor(makedev(7, 3))), (7, 3));
        let d = makedev(259, 0x12345);
        assert_eq!((major(d), minor(d)), (259, 0x12345));
    }

    #[test]
    fn interface_names_are_checked_before_the_kernel() {
        assert!(if_name("xenbr0").is_ok());
        assert!(if_name("").is_err());
        assert!(if_name("a-very-long-bridge").is_err());
        assert_eq!(&if_name("vif1.0").unwrap()[..7], b"vif1.0\0");
    }

    #[test]
    fn block_devices_are_served_as_they_are_and_others_refused() {
        let mut h = StdHotplug::default();
        // /dev/null is a character device: neither a file nor a block device.
        assert!(
            h.attach_disk("/dev/null", true)
                .unwrap_err()
                .contains("neither")
        );
        assert!(h.attach_disk("/nonexistent/disk.img", true).is_err());
    }
}
