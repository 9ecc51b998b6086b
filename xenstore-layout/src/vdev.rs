//! Guest disk names → Xen virtual device numbers, per `docs/misc/vbd-interface.txt`:
//!
//! - `xvd<disk><part>`: disk < 16 and part < 16: `202 << 8 | disk << 4 | part`; otherwise the
//!   extended form `1 << 28 | disk << 8 | part` (disk < 2^20, part < 256).
//! - `hd<disk><part>`: disks a–d only, `hda`/`hdb` major 3, `hdc`/`hdd` major 22:
//!   `major << 8 | (disk % 2) << 6 | part`, part < 64.
//! - `sd<disk><part>`: disks a–p, `8 << 8 | disk << 4 | part`, part < 16.
//! - a plain number is taken as the device number itself.
//!
//! Disk letters count as in Linux: `a`=0 … `z`=25, `aa`=26 … (bijective base 26).

use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VdevError {
    /// Not `xvd`/`hd`/`sd` followed by letters and an optional partition number, nor a number.
    Syntax,
    /// The disk or partition is beyond what the name's scheme can encode.
    OutOfRange,
}

impl fmt::Display for VdevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdevError::Syntax => f.write_str("expected xvdX, hdX or sdX (optionally a partition number) or a device number"),
            VdevError::OutOfRange => f.write_str("disk or partition number out of range for this naming scheme (docs/misc/vbd-interface.txt)"),
        }
    }
}

fn split(rest: &str) -> Result<(u32, u32), VdevError> {
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 || letters > 4 {
        return Err(VdevError::Syntax);
    }
    let mut disk: u32 = 0;
    for b in rest[..letters].bytes() {
        disk = disk * 26 + u32::from(b - b'a' + 1);
    }
    let disk = disk - 1;
    let digits = &rest[letters..];
    let part = if digits.is_empty() {
        0
    } else {
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return Err(VdevError::Syntax);
        }
        digits.parse::<u32>().map_err(|_| VdevError::OutOfRange)?
    };
    Ok((disk, part))
}

/// The device number of a guest disk name (`xvda` → 51712).
pub fn vdev_to_devid(vdev: &str) -> Result<u32, VdevError> {
    if !vdev.is_empty() && vdev.bytes().all(|b| b.is_ascii_digit()) {
        return vdev.parse::<u32>().map_err(|_| VdevError::OutOfRange);
    }
    if let Some(rest) = vdev.strip_prefix("xvd") {
        let (disk, part) = split(rest)?;
        if disk < 16 && part < 16 {
            return Ok(202 << 8 | disk << 4 | part);
        }
        if disk >= 1 << 20 || part >= 256 {
            return Err(VdevError::OutOfRange);
        }
        return Ok(1 << 28 | disk << 8 | part);
    }
    if let Some(rest) = vdev.strip_prefix("hd") {
        let (disk, part) = split(rest)?;
        if disk >= 4 || part >= 64 {
            return Err(VdevError::OutOfRange);
        }
        let major = if disk < 2 { 3 } else { 22 };
        return Ok(major << 8 | (disk % 2) << 6 | part);
    }
    if let Some(rest) = vdev.strip_prefix("sd") {
        let (disk, part) = split(rest)?;
        if disk >= 16 || part >= 16 {
            return Err(VdevError::OutOfRange);
        }
        return Ok(8 << 8 | disk << 4 | part);
    }
    Err(VdevError::Syntax)
}
