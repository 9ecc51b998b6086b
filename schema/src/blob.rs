//! The boot blob: the validated system as domforge-init needs it at boot, in a few hundred bytes.
//!
//! Layout (all little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"DFBC"` (domforge boot config) |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 4 | payload length in bytes |
//! | 12 | 4 | CRC-32C (Castagnoli, as iSCSI/ext4) of the payload |
//! | 16 | n | payload: [`BootConfig`] in postcard encoding |
//!
//! We frame the blob ourselves instead of using postcard's `embedded-io`/COBS flavours: those cover
//! embedded-io 0.4/0.6 only and carry no version or checksum (see `shared/notes/crates.md`). Every
//! collection but the domain list is a bounded `heapless` type, so a domain decodes in place with no
//! allocation of its own; the list is one vector of at most [`MAX_DOMAINS`]. The bounds are checked
//! when the blob is built, so a manifest that exceeds them is refused at `domforge compile` time,
//! never truncated.

use crc::{CRC_32_ISCSI, Crc};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 4] = *b"DFBC";
/// Bumped on any incompatible change of [`BootConfig`].
pub const FORMAT_VERSION: u16 = 3;
pub const HEADER_LEN: usize = 16;
/// Largest payload a blob may carry; more means the blob is not ours or is corrupt. Room for
/// [`MAX_DOMAINS`] domains with every field near its bound (~3.3 KB each).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Domains in one blob. The dependency indices (`depends_on`) are one byte, which bounds it at
/// 256; nothing else in Xen or domforge-init does (domids go to 0x7fef, `DOMID_FIRST_RESERVED` in
/// Xen's public/xen.h). Was 16 when the list was a fixed-capacity array on domforge-init's stack,
/// whose every copy would have moved ~800 KB at 256; the list is now the blob's one allocation
/// (every domain's fields stay bounded), so its memory grows with the system, not the bound.
pub const MAX_DOMAINS: usize = 256;
pub const MAX_NAME: usize = 63;
pub const MAX_PATH: usize = 128;
pub const MAX_CMDLINE: usize = 1024;
pub const MAX_DEVICES: usize = 8;
pub const MAX_IRQS: usize = 32;
pub const MAX_IOMEM: usize = 16;
pub const MAX_DEPS: usize = 8;
pub const MAX_VCPUS: usize = 128;
/// PV disks and vifs per domain (issue 19); libxl has no bound, 8 each covers appliances.
pub const MAX_PV_DISKS: usize = 8;
pub const MAX_PV_NICS: usize = 8;
/// A guest disk name (`xvda`, `hdc`, `sdb2`, or a device number).
pub const MAX_VDEV: usize = 16;
/// Linux's IFNAMSIZ (16) without the NUL.
pub const MAX_IFNAME: usize = 15;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootKind {
    Arm64,
    Pvh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootBuilder {
    Xen,
    Init,
}

/// The virtual GIC of the board's ARM guests (`xen_arch_domainconfig.gic_version`, Xen
/// `public/arch-arm.h`): the host's GIC, which the guest DT must describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootGic {
    V2,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootConsole {
    Vpl011,
    Hvc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootOnCrash {
    Destroy,
    Restart,
    RebootPlatform,
}

/// An MMIO grant: `nr_pages` host frames from `first_mfn`, mapped at guest frame `gfn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIomem {
    pub first_mfn: u64,
    pub nr_pages: u64,
    pub gfn: u64,
}

/// A PV disk of a domain: the frontend nodes go under the domain, the backend's under
/// `backend` (xenstore-layout's `disk_nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootDisk {
    pub vdev: String<MAX_VDEV>,
    /// Xen virtual device number (docs/misc/vbd-interface.txt).
    pub devid: u32,
    /// Index into [`BootConfig::domains`] of the serving domain; `None`: the control domain.
    pub backend: Option<u8>,
    /// The file or block device in the backend domain.
    pub target: String<MAX_PATH>,
    pub read_only: bool,
    pub cdrom: bool,
}

/// A PV network interface of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootNic {
    pub handle: u32,
    pub mac: [u8; 6],
    /// As [`BootDisk::backend`].
    pub backend: Option<u8>,
    pub bridge: String<MAX_IFNAME>,
    /// The backend interface's name; `None`: netback's `vif<domid>.<handle>`.
    pub vifname: Option<String<MAX_IFNAME>>,
    pub mtu: u32,
}

/// One domain as domforge-init builds or supervises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootDomain {
    pub name: String<MAX_NAME>,
    pub kind: BootKind,
    pub builder: BootBuilder,
    pub vcpus: u32,
    pub memory_kib: u64,
    /// Path of the kernel inside the control domain's initramfs.
    pub kernel: String<MAX_PATH>,
    pub ramdisk: Option<String<MAX_PATH>>,
    pub cmdline: String<MAX_CMDLINE>,
    pub console: BootConsole,
    pub on_crash: BootOnCrash,
    /// Indices into [`BootConfig::domains`] that must be running first.
    pub depends_on: Vec<u8, MAX_DEPS>,
    pub iomem: Vec<BootIomem, MAX_IOMEM>,
    pub irqs: Vec<u32, MAX_IRQS>,
    /// Host device-tree paths to assign with `XEN_DOMCTL_assign_device` (ARM; devices behind an
    /// IOMMU only — the others are given by `iomem` and `irqs` alone).
    pub dt_devices: Vec<String<MAX_PATH>, MAX_DEVICES>,
    pub p2m_pool_kib: u64,
    /// ARM: path inside the control domain's initramfs of the passthrough partial device tree
    /// (`/passthrough`, `/aliases`) merged into the guest DT, when the domain owns devices.
    pub passthrough_dtb: Option<String<MAX_PATH>>,
    /// PV disks this domain sees (frontend).
    pub pv_disks: Vec<BootDisk, MAX_PV_DISKS>,
    /// PV network interfaces this domain sees (frontend).
    pub pv_nics: Vec<BootNic, MAX_PV_NICS>,
}

impl BootDomain {
    /// The domains (indices in [`BootConfig::domains`]) serving this domain's PV disks and vifs,
    /// once per device; devices the control domain serves are left out.
    pub fn backends(&self) -> impl Iterator<Item = u8> + '_ {
        self.pv_disks
            .iter()
            .filter_map(|x| x.backend)
            .chain(self.pv_nics.iter().filter_map(|x| x.backend))
    }
}

/// The whole system, in boot order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootConfig {
    pub system: String<MAX_NAME>,
    pub xen_major: u8,
    pub xen_minor: u8,
    /// `XEN_DOMCTL_INTERFACE_VERSION` the manifest targets; the running Xen is probed at boot.
    pub domctl_interface: u32,
    /// ARM boards: the GIC the guests get. `None` on x86.
    pub arm_gic: Option<BootGic>,
    /// At most [`MAX_DOMAINS`] ([`BootConfig::check`]).
    pub domains: alloc::vec::Vec<BootDomain>,
    /// The control domain runs xenstored and domforge-init introduces every domain it builds
    /// (some domain has a PV device).
    pub xenstore: bool,
}

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the blob is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("not a domforge boot blob: magic is {found:02x?}, expected \"DFBC\"")]
    BadMagic { found: [u8; 4] },
    #[error(
        "blob format {found} is newer than this build understands (up to {supported}); rebuild domforge-init"
    )]
    NewerFormat { found: u16, supported: u16 },
    #[error(
        "blob format {found} was written by an older domforge (this build reads format {supported}); run `domforge compile` again"
    )]
    OlderFormat { found: u16, supported: u16 },
    #[error("blob format {found} is not a valid format version")]
    BadFormat { found: u16 },
    #[error("reserved header field is {found:#x}, expected 0")]
    Reserved { found: u16 },
    #[error(
        "header says the payload is {declared} bytes, but {actual} bytes follow (truncated or padded)"
    )]
    LengthMismatch { declared: usize, actual: usize },
    #[error("payload of {len} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge { len: usize },
    #[error(
        "checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x} (corrupt blob)"
    )]
    Checksum { expected: u32, actual: u32 },
    #[error("payload does not decode: {0}")]
    Decode(postcard::Error),
    #[error("payload has {0} unused trailing bytes")]
    Trailing(usize),
    #[error("invalid content: {0}")]
    Invalid(&'static str),
    #[error("the blob needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall { needed: usize, available: usize },
}

/// Writes the framed blob into `out`, returning its length. No allocation.
pub fn encode_into(config: &BootConfig, out: &mut [u8]) -> Result<usize, BlobError> {
    if out.len() < HEADER_LEN {
        return Err(BlobError::BufferTooSmall {
            needed: HEADER_LEN,
            available: out.len(),
        });
    }
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let available = body.len();
    let payload = postcard::to_slice(config, body).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => BlobError::BufferTooSmall {
            needed: available + 1,
            available,
        },
        other => BlobError::Decode(other),
    })?;
    let len = payload.len();
    let crc = CRC32C.checksum(payload);
    header[0..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[6..8].copy_from_slice(&0u16.to_le_bytes());
    header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER_LEN + len)
}

/// Encodes into a fresh vector.
pub fn encode(config: &BootConfig) -> Result<alloc::vec::Vec<u8>, BlobError> {
    let mut buf = alloc::vec![0u8; HEADER_LEN + MAX_PAYLOAD];
    let n = encode_into(config, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    x.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Checks the frame and returns the payload, without decoding it.
pub fn payload(blob: &[u8]) -> Result<&[u8], BlobError> {
    if blob.len() < HEADER_LEN {
        return Err(BlobError::TooShort { len: blob.len() });
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&blob[0..4]);
    if magic != MAGIC {
        return Err(BlobError::BadMagic { found: magic });
    }
    let version = u16_at(blob, 4);
    if version == 0 {
        return Err(BlobError::BadFormat { found: version });
    }
    if version > FORMAT_VERSION {
        return Err(BlobError::NewerFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    // Format 1 lacked `arm_gic` and `passthrough_dtb`, format 2 the PV devices and `xenstore`:
    // postcard has no field tags, so decoding an older format as this one would misread every later
    // field. Refuse it by number instead.
    if version < FORMAT_VERSION {
        return Err(BlobError::OlderFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let reserved = u16_at(blob, 6);
    if reserved != 0 {
        return Err(BlobError::Reserved { found: reserved });
    }
    let declared = u32_at(blob, 8) as usize;
    if declared > MAX_PAYLOAD {
        return Err(BlobError::TooLarge { len: declared });
    }
    let body = &blob[HEADER_LEN..];
    if body.len() != declared {
        return Err(BlobError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    let expected = u32_at(blob, 12);
    let actual = CRC32C.checksum(body);
    if expected != actual {
        return Err(BlobError::Checksum { expected, actual });
    }
    Ok(body)
}

/// Verifies and decodes a blob. One allocation, the domain list; every other field lands in a
/// bounded `heapless` field.
pub fn decode(blob: &[u8]) -> Result<BootConfig, BlobError> {
    let body = payload(blob)?;
    let (config, rest): (BootConfig, &[u8]) =
        postcard::take_from_bytes(body).map_err(BlobError::Decode)?;
    if !rest.is_empty() {
        return Err(BlobError::Trailing(rest.len()));
    }
    config.check()?;
    Ok(config)
}

impl BootConfig {
    /// Invariants a decoded blob must hold, so that domforge-init can trust it without re-checking.
    pub fn check(&self) -> Result<(), BlobError> {
        let n = self.domains.len();
        if n > MAX_DOMAINS {
            return Err(BlobError::Invalid("more than 256 domains"));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if d.name.is_empty() {
                return Err(BlobError::Invalid("a domain has an empty name"));
            }
            if d.vcpus == 0 || d.vcpus as usize > MAX_VCPUS {
                return Err(BlobError::Invalid("a domain has 0 or more than 128 vCPUs"));
            }
            if d.memory_kib == 0 || d.memory_kib % 4 != 0 {
                return Err(BlobError::Invalid(
                    "a domain's memory is not a whole number of pages",
                ));
            }
            if d.kernel.is_empty() {
                return Err(BlobError::Invalid("a domain has no kernel"));
            }
            if d.depends_on
                .iter()
                .any(|&j| j as usize >= n || j as usize >= i)
            {
                return Err(BlobError::Invalid(
                    "a dependency points at a later or missing domain",
                ));
            }
            if self.domains[..i].iter().any(|o| o.name == d.name) {
                return Err(BlobError::Invalid("two domains share a name"));
            }
            for b in d.backends() {
                if b as usize >= n || b as usize == i {
                    return Err(BlobError::Invalid(
                        "a PV device's backend is the domain itself or missing",
                    ));
                }
            }
            if (!d.pv_disks.is_empty() || !d.pv_nics.is_empty()) && !self.xenstore {
                return Err(BlobError::Invalid("PV devices without xenstore"));
            }
            for g in &d.iomem {
                if g.nr_pages == 0
                    || g.first_mfn.checked_add(g.nr_pages).is_none()
                    || g.gfn.checked_add(g.nr_pages).is_none()
                {
                    return Err(BlobError::Invalid("an iomem grant is empty or wraps"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootConfig {
        let mut domains: heapless::Vec<BootDomain, 2> = Vec::new();
        for (i, name) in ["guest-a", "guest-b"].iter().enumerate() {
            let mut deps = Vec::new();
            if i == 1 {
                deps.push(0).unwrap();
            }
            domains
                .push(BootDomain {
                    name: String::try_from(*name).unwrap(),
                    kind: BootKind::Pvh,
                    builder: BootBuilder::Init,
                    vcpus: 2,
                    memory_kib: 256 * 1024,
                    kernel: String::try_from("/guests/vmlinuz").unwrap(),
                    ramdisk: Some(String::try_from("/guests/probe.cpio.gz").unwrap()),
                    cmdline: String::try_from("console=hvc0").unwrap(),
                    console: BootConsole::Hvc,
                    on_crash: BootOnCrash::Restart,
                    depends_on: deps,
                    iomem: Vec::new(),
                    irqs: Vec::new(),
                    dt_devices: Vec::new(),
                    p2m_pool_kib: 2048,
                    passthrough_dtb: None,
                    pv_disks: Vec::new(),
                    pv_nics: Vec::new(),
                })
                .unwrap();
        }
        BootConfig {
            system: String::try_from("demo").unwrap(),
            xen_major: 4,
            xen_minor: 17,
            domctl_interface: 0x15,
            arm_gic: None,
            domains: domains.into_iter().collect(),
            xenstore: false,
        }
    }

    #[test]
    fn the_domain_bound_is_checked_both_ways() {
        let mut c = sample();
        let template = c.domains[0].clone();
        c.domains.clear();
        for i in 0..MAX_DOMAINS {
            let mut d = template.clone();
            d.name = String::try_from(alloc::format!("d{i}").as_str()).unwrap();
            // Every field near its bound, so the payload limit is shown to hold the worst case.
            d.cmdline.clear();
            while d.cmdline.push('x').is_ok() {}
            d.kernel.clear();
            while d.kernel.push('k').is_ok() {}
            c.domains.push(d);
        }
        let blob = encode(&c).unwrap();
        assert!(blob.len() > 256 * 1024, "{}", blob.len());
        assert_eq!(decode(&blob).unwrap().domains.len(), MAX_DOMAINS);
        c.domains.push(c.domains[0].clone());
        c.domains.last_mut().unwrap().name = String::try_from("one-too-many").unwrap();
        assert_eq!(
            decode(&encode(&c).unwrap()),
            Err(BlobError::Invalid("more than 256 domains"))
        );
    }

    #[test]
    fn round_trips() {
        let blob = encode(&sample()).unwrap();
        assert_eq!(&blob[..4], b"DFBC");
        assert_eq!(decode(&blob).unwrap(), sample());
    }

    #[test]
    fn header_fields_are_where_the_docs_say() {
        let blob = encode(&sample()).unwrap();
        assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), FORMAT_VERSION);
        let len = u32::from_le_bytes([blob[8], blob[9], blob[10], blob[11]]) as usize;
        assert_eq!(len, blob.len() - HEADER_LEN);
        // CRC-32C check value of "123456789" is 0xE3069283 (RFC 3720 / the Rocksoft catalogue).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn every_corruption_is_named() {
        let good = encode(&sample()).unwrap();
        assert!(matches!(
            decode(&good[..10]),
            Err(BlobError::TooShort { len: 10 })
        ));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(BlobError::LengthMismatch { .. })
        ));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(decode(&b), Err(BlobError::BadMagic { .. })));
        let mut b = good.clone();
        b[4] = 9;
        assert!(matches!(
            decode(&b),
            Err(BlobError::NewerFormat {
                found: 9,
                supported: 3
            })
        ));
        let mut b = good.clone();
        b[4] = 1;
        assert!(matches!(
            decode(&b),
            Err(BlobError::OlderFormat {
                found: 1,
                supported: 3
            })
        ));
        let mut b = good.clone();
        b[4] = 2;
        assert!(matches!(
            decode(&b),
            Err(BlobError::OlderFormat {
                found: 2,
                supported: 3
            })
        ));
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(decode(&b), Err(BlobError::Checksum { .. })));
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(decode(&b), Err(BlobError::LengthMismatch { .. })));
    }

    #[test]
    fn semantic_checks_run_after_decoding() {
        let mut c = sample();
        c.domains[0].depends_on.push(1).unwrap();
        let blob = encode(&c).unwrap();
        assert_eq!(
            decode(&blob),
            Err(BlobError::Invalid(
                "a dependency points at a later or missing domain"
            ))
        );
    }
}
