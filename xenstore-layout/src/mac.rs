//! MAC addresses of PV network interfaces.

use alloc::string::String;
use core::fmt::{self, Write};

/// Xen's IEEE OUI (00:16:3e), the prefix libxl uses for the MACs it makes up (libxl_nic.c,
/// `libxl__device_nic_setdefault`: random low three bytes).
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacError;

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected six hex bytes separated by ':' (e.g. 00:16:3e:12:34:56)")
    }
}

/// `00:16:3e:63:7a:5d` → bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6], MacError> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let p = parts.next().ok_or(MacError)?;
        if p.len() != 2 {
            return Err(MacError);
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| MacError)?;
    }
    if parts.next().is_some() {
        return Err(MacError);
    }
    Ok(out)
}

/// Lower-case, colon-separated, as libxl writes `mac` (`LIBXL_MAC_FMT`).
pub fn format_mac(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A MAC that stays the same from build to build (unlike libxl's random one, so a guest's DHCP
/// lease and udev names survive a rebuild): Xen's OUI + the low 24 bits of FNV-1a over
/// `system \0 domain \0 index`. Collisions are possible (24 bits); the validator refuses two
/// equal MACs in one system, and a manifest `mac` resolves one.
pub fn default_mac(system: &str, domain: &str, index: u32) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(system.as_bytes());
    feed(&[0]);
    feed(domain.as_bytes());
    feed(&[0]);
    feed(&index.to_le_bytes());
    let [_, a, b, c] = h.to_be_bytes();
    [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], a, b, c]
}
