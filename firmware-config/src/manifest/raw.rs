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

/// In the JSON Schema a quantity is what the deserializer above accepts: a string (its unit syntax
/// is checked by the parser, E0013/E0014, with better messages than a regex could give) or a
/// non-negative integer.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size or address: a string with a binary unit (\"256M\", \"1G\"), a hex address (\"0x40000000\"), or a byte count.",
            "oneOf": [
                { "type": "string", "pattern": "^\\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*\\s*([kKmMgGtT][iI]?[bB]?|[bB])?)\\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[cfg_attr(feature = "schema", schemars(with = "RawSystem"))]
    pub system: Spanned<RawSystem>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawDom0>"))]
    pub dom0: Option<Spanned<RawDom0>>,
    #[serde(default, rename = "domain")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<RawDomain>"))]
    pub domains: Vec<Spanned<RawDomain>>,
    #[serde(default, rename = "cpupool")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<RawCpupool>"))]
    pub cpupools: Vec<Spanned<RawCpupool>>,
    #[serde(default, rename = "shared_memory")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<RawSharedMemory>"))]
    pub shared_memory: Vec<Spanned<RawSharedMemory>>,
}

pub const MANIFEST_KEYS: &[&str] = &["system", "dom0", "domain", "cpupool", "shared_memory"];

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub name: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub board: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub xen: Option<Spanned<String>>,
    /// Extra Xen command-line options, appended after the board's console options.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub xen_cmdline: Option<Spanned<String>>,
    /// An explicit hypervisor binary; wins over the Debian package chosen by `xen`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub hypervisor: Option<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    pub dom0: Option<Spanned<bool>>,
    /// Memory Xen keeps for itself (heap, frame table, per-domain structures); default from the board.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    pub xen_memory: Option<Spanned<Quantity>>,
    /// Kconfig options the hypervisor build has beyond Debian's, e.g. `["static-memory"]`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDom0 {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub kernel: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub ramdisk: Option<Spanned<String>>,
    #[serde(alias = "extra")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub cmdline: Option<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    pub memory: Option<Spanned<Quantity>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub vcpus: Option<Spanned<u32>>,
}

pub const DOM0_KEYS: &[&str] = &["kernel", "ramdisk", "cmdline", "extra", "memory", "vcpus"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    Arm64,
    Pvh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RawRole {
    App,
    Driver,
    Control,
    Hardware,
    Xenstore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RawConsole {
    Vpl011,
    Hvc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RawOnCrash {
    Destroy,
    Restart,
    RebootPlatform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RawEnhanced {
    Enabled,
    Disabled,
    NoXenstore,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RawBuilder {
    Xen,
    Init,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    #[cfg_attr(feature = "schema", schemars(with = "Quantity"))]
    pub base: Spanned<Quantity>,
    #[cfg_attr(feature = "schema", schemars(with = "Quantity"))]
    pub size: Spanned<Quantity>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub name: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "RawKind"))]
    pub kind: Spanned<RawKind>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<RawRole>>"))]
    pub roles: Option<Spanned<Vec<Spanned<RawRole>>>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub vcpus: Option<Spanned<u32>>,
    #[cfg_attr(feature = "schema", schemars(with = "Quantity"))]
    pub memory: Spanned<Quantity>,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub kernel: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub ramdisk: Option<Spanned<String>>,
    #[serde(alias = "extra")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub cmdline: Option<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawConsole>"))]
    pub console: Option<Spanned<RawConsole>>,
    /// Host device-tree paths (ARM). xl calls the same list `dtdev`.
    #[serde(default, alias = "dtdev")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub passthrough: Vec<Spanned<String>>,
    /// PCI devices as `SSSS:BB:DD.F` or `BB:DD.F`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub pci: Vec<Spanned<String>>,
    /// Raw MMIO grants in xl's syntax: `"IOMEM_START,NUM_PAGES[@GFN]"`, page frame numbers in hex.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub iomem: Vec<Spanned<String>>,
    /// Raw interrupt grants (ARM: GIC INTIDs of SPIs, as xl's `irqs`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<u32>"))]
    pub irqs: Vec<Spanned<u32>>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<RawRange>"))]
    pub static_memory: Vec<Spanned<RawRange>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    pub direct_map: Option<Spanned<bool>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub cpupool: Option<Spanned<String>>,
    /// Hard affinity per vCPU, in xl's cpu-list syntax (`"0-3"`, `"1,4-7"`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub vcpu_affinity: Vec<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawEnhanced>"))]
    pub enhanced: Option<Spanned<RawEnhanced>>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub depends_on: Vec<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub boot_order: Option<Spanned<u32>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawOnCrash>"))]
    pub on_crash: Option<Spanned<RawOnCrash>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    pub force_without_iommu: Option<Spanned<bool>>,
    /// Drop phandle dependencies (clocks, resets...) of passed-through devices the guest cannot have.
    #[cfg_attr(feature = "schema", schemars(with = "Option<bool>"))]
    pub drop_device_dependencies: Option<Spanned<bool>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawBuilder>"))]
    pub builder: Option<Spanned<RawBuilder>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    pub p2m_pool: Option<Spanned<Quantity>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub sve: Option<Spanned<u32>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub max_grant_frames: Option<Spanned<u32>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<u32>"))]
    pub max_maptrack_frames: Option<Spanned<u32>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub llc_colors: Option<Spanned<String>>,
    /// PV disks in xl's DISKSPEC syntax (`"vdev=xvda, backend=storage, target=/srv/disk.img"`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub disk: Vec<Spanned<String>>,
    /// PV network interfaces in xl's vif syntax (`"bridge=xenbr0, backend=netdrv"`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub vif: Vec<Spanned<String>>,
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
    "disk",
    "vif",
];

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawCpupool {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub name: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Vec<u32>"))]
    pub cpus: Spanned<Vec<Spanned<u32>>>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub scheduler: Option<Spanned<String>>,
}

pub const CPUPOOL_KEYS: &[&str] = &["name", "cpus", "scheduler"];

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSharedMemory {
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub id: Spanned<String>,
    #[cfg_attr(feature = "schema", schemars(with = "Quantity"))]
    pub size: Spanned<Quantity>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    pub host_address: Option<Spanned<Quantity>>,
    #[cfg_attr(feature = "schema", schemars(with = "Quantity"))]
    pub guest_address: Spanned<Quantity>,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub owner: Option<Spanned<String>>,
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
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
