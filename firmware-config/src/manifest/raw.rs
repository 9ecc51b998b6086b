//! The manifest exactly as TOML spells it: every field keeps its source span, unknown keys are errors.
//!
//! Names follow xl.cfg where the meaning is the same (`memory`, `vcpus`, `kernel`, `ramdisk`,
//! `extra`/`cmdline`, `pci`, `iomem`, `irqs`, `dtdev`), so Xen users feel at home.

use serde::{Deserialize, Deserializer};
use std::string::String;
use std::vec::Vec;
use toml::Spanned;

/// A size or address as written: a string with a unit (`"256M"`, `"0x40000000"`) or a bare integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a size or address such as \"256M\", \"1G\" or \"0x40000000\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.into()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                if v < 0 {
                    return Err(E::custom("a size or address cannot be negative"));
                }
                Ok(Quantity(std::format!("{v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(std::format!("{v}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub system: Spanned<RawSystem>,
    pub dom0: Option<Spanned<RawDom0>>,
    #[serde(default, rename = "domain")]
    pub domains: Vec<Spanned<RawDomain>>,
    #[serde(default, rename = "cpupool")]
    pub cpupools: Vec<Spanned<RawCpupool>>,
    #[serde(default, rename = "shared_memory")]
    pub shared_memory: Vec<Spanned<RawSharedMemory>>,
}

pub const MANIFEST_KEYS: &[&str] = &["system", "dom0", "domain", "cpupool", "shared_memory"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub name: Spanned<String>,
    pub board: Spanned<String>,
    pub xen: Option<Spanned<String>>,
    /// Extra Xen command-line options, appended after the board's console options.
    pub xen_cmdline: Option<Spanned<String>>,
    /// An explicit hypervisor binary; wins over the Debian package chosen by `xen`.
    pub hypervisor: Option<Spanned<String>>,
    pub dom0: Option<Spanned<bool>>,
    /// Memory Xen keeps for itself (heap, frame table, per-domain structures); default from the board.
    pub xen_memory: Option<Spanned<Quantity>>,
    /// Kconfig options the hypervisor build has beyond Debian's, e.g. `["static-memory"]`.
    #[serde(default)]
    pub xen_features: Vec<Spanned<String>>,
}

pub const SYSTEM_KEYS: &[&str] = &[
    "name",
    "board",
    "xen",
    "xen_cmdline",
    "hypervisor",
    "dom0",
    "xen_memory",
    "xen_features",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDom0 {
    pub kernel: Spanned<String>,
    pub ramdisk: Option<Spanned<String>>,
    #[serde(alias = "extra")]
    pub cmdline: Option<Spanned<String>>,
    pub memory: Option<Spanned<Quantity>>,
    pub vcpus: Option<Spanned<u32>>,
}

pub const DOM0_KEYS: &[&str] = &["kernel", "ramdisk", "cmdline", "extra", "memory", "vcpus"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    Arm64,
    Pvh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRole {
    App,
    Driver,
    Control,
    Hardware,
    Xenstore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawConsole {
    Vpl011,
    Hvc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawOnCrash {
    Destroy,
    Restart,
    RebootPlatform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawEnhanced {
    Enabled,
    Disabled,
    NoXenstore,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawBuilder {
    Xen,
    Init,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub base: Spanned<Quantity>,
    pub size: Spanned<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub name: Spanned<String>,
    pub kind: Spanned<RawKind>,
    pub roles: Option<Spanned<Vec<Spanned<RawRole>>>>,
    pub vcpus: Option<Spanned<u32>>,
    pub memory: Spanned<Quantity>,
    pub kernel: Spanned<String>,
    pub ramdisk: Option<Spanned<String>>,
    #[serde(alias = "extra")]
    pub cmdline: Option<Spanned<String>>,
    pub console: Option<Spanned<RawConsole>>,
    /// Host device-tree paths (ARM). xl calls the same list `dtdev`.
    #[serde(default, alias = "dtdev")]
    pub passthrough: Vec<Spanned<String>>,
    /// PCI devices as `SSSS:BB:DD.F` or `BB:DD.F`.
    #[serde(default)]
    pub pci: Vec<Spanned<String>>,
    /// Raw MMIO grants in xl's syntax: `"IOMEM_START,NUM_PAGES[@GFN]"`, page frame numbers in hex.
    #[serde(default)]
    pub iomem: Vec<Spanned<String>>,
    /// Raw interrupt grants (ARM: GIC INTIDs of SPIs, as xl's `irqs`).
    #[serde(default)]
    pub irqs: Vec<Spanned<u32>>,
    #[serde(default)]
    pub static_memory: Vec<Spanned<RawRange>>,
    pub direct_map: Option<Spanned<bool>>,
    pub cpupool: Option<Spanned<String>>,
    /// Hard affinity per vCPU, in xl's cpu-list syntax (`"0-3"`, `"1,4-7"`).
    #[serde(default)]
    pub vcpu_affinity: Vec<Spanned<String>>,
    pub enhanced: Option<Spanned<RawEnhanced>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub boot_order: Option<Spanned<u32>>,
    pub on_crash: Option<Spanned<RawOnCrash>>,
    pub force_without_iommu: Option<Spanned<bool>>,
    /// Drop phandle dependencies (clocks, resets...) of passed-through devices the guest cannot have.
    pub drop_device_dependencies: Option<Spanned<bool>>,
    pub builder: Option<Spanned<RawBuilder>>,
    pub p2m_pool: Option<Spanned<Quantity>>,
    pub sve: Option<Spanned<u32>>,
    pub max_grant_frames: Option<Spanned<u32>>,
    pub max_maptrack_frames: Option<Spanned<u32>>,
    pub llc_colors: Option<Spanned<String>>,
}

pub const DOMAIN_KEYS: &[&str] = &[
    "name",
    "kind",
    "roles",
    "vcpus",
    "memory",
    "kernel",
    "ramdisk",
    "cmdline",
    "extra",
    "console",
    "passthrough",
    "dtdev",
    "pci",
    "iomem",
    "irqs",
    "static_memory",
    "direct_map",
    "cpupool",
    "vcpu_affinity",
    "enhanced",
    "depends_on",
    "boot_order",
    "on_crash",
    "force_without_iommu",
    "drop_device_dependencies",
    "builder",
    "p2m_pool",
    "sve",
    "max_grant_frames",
    "max_maptrack_frames",
    "llc_colors",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCpupool {
    pub name: Spanned<String>,
    pub cpus: Spanned<Vec<Spanned<u32>>>,
    pub scheduler: Option<Spanned<String>>,
}

pub const CPUPOOL_KEYS: &[&str] = &["name", "cpus", "scheduler"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedMemory {
    pub id: Spanned<String>,
    pub size: Spanned<Quantity>,
    pub host_address: Option<Spanned<Quantity>>,
    pub guest_address: Spanned<Quantity>,
    pub owner: Option<Spanned<String>>,
    pub borrowers: Spanned<Vec<Spanned<String>>>,
}

pub const SHARED_MEMORY_KEYS: &[&str] = &[
    "id",
    "size",
    "host_address",
    "guest_address",
    "owner",
    "borrowers",
];

/// Every key list, for "did you mean" across tables.
pub const ALL_KEY_LISTS: &[&[&str]] = &[
    MANIFEST_KEYS,
    SYSTEM_KEYS,
    DOM0_KEYS,
    DOMAIN_KEYS,
    CPUPOOL_KEYS,
    SHARED_MEMORY_KEYS,
];
