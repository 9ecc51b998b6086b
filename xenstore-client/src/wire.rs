//! The xenstore wire format (Xen `xen/include/public/io/xs_wire.h`, docs/misc/xenstore.txt):
//! every message is a `struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; }` header in the
//! host's byte order (little-endian on every architecture we build for: x86_64, aarch64)
//! followed by `len` bytes of payload, at most `XENSTORE_PAYLOAD_MAX`.

/// `XENSTORE_PAYLOAD_MAX` (xs_wire.h).
pub const PAYLOAD_MAX: usize = 4096;
/// `sizeof(struct xsd_sockmsg)`.
pub const HEADER_LEN: usize = 16;

/// `enum xsd_sockmsg_type` (xs_wire.h; numbering is the wire ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    // 20 was XS_RESTRICT (removed).
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// One `struct xsd_sockmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len]
            .iter()
            .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        Self {
            ty: word(0),
            req_id: word(1),
            tx_id: word(2),
            len: word(3),
        }
    }
}

/// Who may do what with a node: one element of `XS_SET_PERMS`/`XS_GET_PERMS` (written `n0`, `r1`,
/// `w2`, `b3`, docs/misc/xenstore.txt "PERM"). One definition for the layout and the client.
pub use xenstore_layout::{Access, Perm};

/// Splits a payload of NUL-terminated strings (a directory listing, a watch event, a perms list).
pub fn split_strings(payload: &[u8]) -> Vec<String> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_four_le_words() {
        let h = Header {
            ty: MsgType::Write as u32,
            req_id: 7,
            tx_id: 3,
            len: 0x102,
        };
        let b = h.encode();
        assert_eq!(&b[..4], &[11, 0, 0, 0]);
        assert_eq!(&b[12..], &[2, 1, 0, 0]);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn perms_round_trip() {
        for s in ["n0", "r1", "w2", "b65535"] {
            assert_eq!(Perm::parse(s).unwrap().to_wire(), s);
        }
        assert_eq!(Perm::parse("x1"), None);
        assert_eq!(Perm::parse("r"), None);
    }

    #[test]
    fn numbering_matches_xs_wire_h() {
        // xs_wire.h: XS_SET_TARGET = 19, XS_RESET_WATCHES = XS_SET_TARGET + 2.
        assert_eq!(MsgType::SetTarget as u32, 19);
        assert_eq!(MsgType::from_u32(21), Some(MsgType::ResetWatches));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(split_strings(b"a\0bc\0"), vec!["a", "bc"]);
        assert!(split_strings(b"").is_empty());
    }
}
