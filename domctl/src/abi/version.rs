//! `XEN_DOMCTL_INTERFACE_VERSION` values this crate speaks, and what differs between them.
//!
//! Xen checks the version before anything else (`do_domctl()` in `xen/common/domctl.c`:
//! `if ( op->interface_version != XEN_DOMCTL_INTERFACE_VERSION ) return -EACCES;`), so a mismatch shows
//! up as `EACCES` — which a naive tool reports as "permission denied".
//!
//! Values, from `#define XEN_DOMCTL_INTERFACE_VERSION` in `xen/include/public/domctl.h` at each tag:
//! `RELEASE-4.17.0` 0x15, `RELEASE-4.18.0` 0x16, `RELEASE-4.19.0`/`4.20.0`/`4.21.0` 0x17,
//! `RELEASE-4.22.0` 0x18.

use core::fmt;

/// A domctl interface version known to this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InterfaceVersion {
    /// 0x15: Xen 4.17.
    V15,
    /// 0x16: Xen 4.18. Bumped for the `XEN_DOMCTL_getdomaininfo` change (xen.git bdb1184d4f, "The change
    /// to XEN_DOMCTL_getdomaininfo was a binary incompatible one"): 4.17 returns the *first domain with
    /// id >= the requested one*; 4.18+ returns the requested domain or `-ESRCH`.
    V16,
    /// 0x17: Xen 4.19, 4.20 and 4.21. createdomain gained `altp2m` (a `uint32_t altp2m_opts` in
    /// 4.19/4.20, split into `uint16_t opts, nr` in 4.21 — same bytes on little-endian) before
    /// `vmtrace_size`, moving every later field by 4 bytes.
    V17,
    /// 0x18: Xen 4.22. createdomain's auto-allocation needs `DOMID_ANY` (0x7FF5); 0 now means "exactly
    /// domain 0" (`domid_alloc()`, `xen/common/domid.c`). The ARM arch config gained `v8r_el1_msa`.
    V18,
}

impl InterfaceVersion {
    /// Every version, oldest first: the order the probe tries them in.
    pub const ALL: [InterfaceVersion; 4] = [Self::V15, Self::V16, Self::V17, Self::V18];

    /// The number placed in `xen_domctl.interface_version`.
    pub const fn value(self) -> u32 {
        match self {
            Self::V15 => 0x15,
            Self::V16 => 0x16,
            Self::V17 => 0x17,
            Self::V18 => 0x18,
        }
    }

    /// The version with this number, if known.
    pub const fn from_value(value: u32) -> Option<Self> {
        match value {
            0x15 => Some(Self::V15),
            0x16 => Some(Self::V16),
            0x17 => Some(Self::V17),
            0x18 => Some(Self::V18),
            _ => None,
        }
    }

    /// The Xen release family that speaks this version.
    pub const fn release_family(self) -> &'static str {
        match self {
            Self::V15 => "Xen 4.17",
            Self::V16 => "Xen 4.18",
            Self::V17 => "Xen 4.19-4.21",
            Self::V18 => "Xen 4.22",
        }
    }

    /// Whether getdomaininfo answers only for the exact domain asked (0x16+). On 0x15 it answers for the
    /// next existing domain at or above the requested id, so the caller must compare ids.
    pub const fn getdomaininfo_is_exact(self) -> bool {
        !matches!(self, Self::V15)
    }

    /// Whether createdomain carries the `altp2m` field (0x17+); see [`crate::abi::x86::CreateDomainV17`].
    pub const fn createdomain_has_altp2m(self) -> bool {
        matches!(self, Self::V17 | Self::V18)
    }

    /// The `xen_domctl.domain` value that asks createdomain to pick a free id. Before 4.22 that is 0
    /// ("If it is specified as an invalid value (0 or >= DOMID_FIRST_RESERVED), an id is
    /// auto-allocated", `domctl.h`); from 4.22 it is `DOMID_ANY`.
    pub const fn createdomain_auto_domid(self) -> u16 {
        match self {
            Self::V18 => super::domid::ANY,
            _ => 0,
        }
    }

    /// Whether createdomain can ask for domain id 0 exactly (only from 4.22; before, 0 means "any").
    pub const fn can_request_domid_zero(self) -> bool {
        matches!(self, Self::V18)
    }
}

impl fmt::Display for InterfaceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x} ({})", self.value(), self.release_family())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_headers_of_each_release() {
        // Typed from `#define XEN_DOMCTL_INTERFACE_VERSION` at RELEASE-4.17.0 .. RELEASE-4.22.0.
        assert_eq!(InterfaceVersion::V15.value(), 0x0000_0015);
        assert_eq!(InterfaceVersion::V16.value(), 0x0000_0016);
        assert_eq!(InterfaceVersion::V17.value(), 0x0000_0017);
        assert_eq!(InterfaceVersion::V18.value(), 0x0000_0018);
        for v in InterfaceVersion::ALL {
            assert_eq!(InterfaceVersion::from_value(v.value()), Some(v));
        }
        assert_eq!(InterfaceVersion::from_value(0x14), None);
        assert_eq!(InterfaceVersion::from_value(0x19), None);
    }

    #[test]
    fn auto_domid_follows_each_release() {
        assert_eq!(InterfaceVersion::V17.createdomain_auto_domid(), 0);
        assert_eq!(InterfaceVersion::V18.createdomain_auto_domid(), 0x7FF5);
        assert_eq!(
            InterfaceVersion::V15.to_string(),
            "0x15 (Xen 4.17)".to_string()
        );
    }
}
