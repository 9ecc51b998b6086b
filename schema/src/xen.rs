//! Xen releases and what each one understands.
//!
//! The dom0less binding grew in every release from 4.17 to 4.22. The table below is the one place that
//! says which release first documents a property (`docs/misc/arm/device-tree/booting.txt` diffed at each
//! RELEASE tag, see `shared/notes/xen-landscape.md` §1.3) and which domctl interface version a release
//! speaks (`XEN_DOMCTL_INTERFACE_VERSION` in `xen/include/public/domctl.h` at each tag, §8.2).

use core::fmt;

/// A Xen release, `major.minor`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct XenVersion {
    pub major: u8,
    pub minor: u8,
}

impl XenVersion {
    pub const V4_16: Self = Self::new(4, 16);
    pub const V4_17: Self = Self::new(4, 17);
    pub const V4_18: Self = Self::new(4, 18);
    pub const V4_19: Self = Self::new(4, 19);
    pub const V4_20: Self = Self::new(4, 20);
    pub const V4_21: Self = Self::new(4, 21);
    pub const V4_22: Self = Self::new(4, 22);

    /// The oldest and newest releases domforge knows the ABI and bindings of.
    pub const OLDEST: Self = Self::V4_17;
    pub const NEWEST: Self = Self::V4_22;

    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// Parses `"4.17"` (a trailing patch level such as `"4.17.5"` is accepted and ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        if let Some(patch) = parts.next() {
            patch.parse::<u16>().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Self { major, minor })
    }

    pub fn is_supported(self) -> bool {
        self >= Self::OLDEST && self <= Self::NEWEST
    }

    /// `XEN_DOMCTL_INTERFACE_VERSION` of this release (`xen/include/public/domctl.h`).
    pub fn domctl_interface_version(self) -> Option<u32> {
        Some(match (self.major, self.minor) {
            (4, 16) => 0x14,
            (4, 17) => 0x15,
            (4, 18) => 0x16,
            (4, 19..=21) => 0x17,
            (4, 22) => 0x18,
            _ => return None,
        })
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A feature a manifest can ask for whose availability depends on the Xen release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum XenFeature {
    /// `xen,static-mem` (4.16; cell handling fixed in 4.17).
    StaticMemory,
    /// `direct-map` for domUs.
    DirectMap,
    /// `xen,enhanced` (PV interfaces for dom0less domUs), values "enabled"/"disabled"/"no-xenstore".
    Enhanced,
    /// `xen,enhanced = "legacy"`.
    EnhancedLegacy,
    /// Boot-time cpupools (`xen,cpupool`, `domain-cpupool`).
    Cpupools,
    /// `xen,domain-p2m-mem-mb`.
    P2mPoolSize,
    /// Static shared memory with a host address.
    SharedMemory,
    /// Static shared memory without a host address.
    SharedMemoryNoHost,
    /// `sve` vector length.
    Sve,
    /// `max_grant_version`, `max_grant_frames`, `max_maptrack_frames`.
    GrantLimits,
    /// `llc-colors`.
    LlcColors,
    /// `capabilities` (control/hardware/xenstore domUs: dom0 disaggregation at boot).
    Capabilities,
    /// Per-vCPU `xen,vcpu` nodes with `hard-affinity`.
    VcpuAffinity,
}

impl XenFeature {
    /// First release whose `booting.txt` documents the feature (xen-landscape.md §1.3).
    pub const fn since(self) -> XenVersion {
        match self {
            Self::StaticMemory => XenVersion::V4_16,
            Self::DirectMap
            | Self::Enhanced
            | Self::Cpupools
            | Self::P2mPoolSize
            | Self::SharedMemory => XenVersion::V4_17,
            Self::Sve | Self::GrantLimits => XenVersion::V4_18,
            Self::SharedMemoryNoHost => XenVersion::V4_19,
            Self::LlcColors => XenVersion::V4_20,
            Self::Capabilities | Self::VcpuAffinity | Self::EnhancedLegacy => XenVersion::V4_21,
        }
    }

    /// The device-tree property or node a person would look up in `booting.txt`.
    pub const fn binding(self) -> &'static str {
        match self {
            Self::StaticMemory => "xen,static-mem",
            Self::DirectMap => "direct-map",
            Self::Enhanced => "xen,enhanced",
            Self::EnhancedLegacy => "xen,enhanced = \"legacy\"",
            Self::Cpupools => "xen,cpupool / domain-cpupool",
            Self::P2mPoolSize => "xen,domain-p2m-mem-mb",
            Self::SharedMemory => "xen,domain-shared-memory-v1",
            Self::SharedMemoryNoHost => "xen,shared-mem without a host address",
            Self::Sve => "sve",
            Self::GrantLimits => "max_grant_frames / max_maptrack_frames",
            Self::LlcColors => "llc-colors",
            Self::Capabilities => "capabilities",
            Self::VcpuAffinity => "xen,vcpu hard-affinity",
        }
    }

    pub fn available_in(self, version: XenVersion) -> bool {
        version >= self.since()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(XenVersion::parse("4.17"), Some(XenVersion::V4_17));
        assert_eq!(XenVersion::parse("4.20.3"), Some(XenVersion::V4_20));
        assert_eq!(XenVersion::parse("4"), None);
        assert_eq!(XenVersion::parse("4.x"), None);
        assert_eq!(XenVersion::parse("4.17.1.2"), None);
    }

    #[test]
    fn interface_versions_follow_the_headers() {
        // Values from XEN_DOMCTL_INTERFACE_VERSION at each RELEASE tag (xen-landscape.md §8.2).
        assert_eq!(XenVersion::V4_17.domctl_interface_version(), Some(0x15));
        assert_eq!(XenVersion::V4_18.domctl_interface_version(), Some(0x16));
        assert_eq!(XenVersion::V4_20.domctl_interface_version(), Some(0x17));
        assert_eq!(XenVersion::V4_22.domctl_interface_version(), Some(0x18));
    }

    #[test]
    fn feature_gates() {
        assert!(!XenFeature::LlcColors.available_in(XenVersion::V4_17));
        assert!(XenFeature::LlcColors.available_in(XenVersion::V4_20));
        assert!(XenFeature::Cpupools.available_in(XenVersion::V4_17));
        assert!(!XenFeature::Capabilities.available_in(XenVersion::V4_20));
    }
}
