//! A manifest being written: the TOML keys of `docs/manifest.md`, every optional key left out when
//! unset, rendered with the `toml` crate so quoting and escaping are TOML's own.
//!
//! The draft is the importers' output. It is deliberately not `firmware_config::manifest::Manifest`:
//! that type is what a *parsed* manifest looks like (typed values with source spans); a draft is
//! text-to-be, and the proof that it is right is that `Manifest::parse` accepts what it renders.

use firmware_config::units::{GIB, KIB, MIB};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DraftManifest {
    pub system: DraftSystem,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dom0: Option<DraftDom0>,
    #[serde(rename = "domain", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DraftDomain>,
    #[serde(rename = "cpupool", skip_serializing_if = "Vec::is_empty")]
    pub cpupools: Vec<DraftCpupool>,
    /// `[[shared_memory]]` tables carried through as TOML (ImageBuilder has no such variable).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_memory: Vec<toml::Table>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DraftSystem {
    pub name: String,
    pub board: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub xen_features: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xen_cmdline: Option<String>,
    /// Further `[system]` keys carried through as TOML values.
    #[serde(flatten)]
    pub extra: toml::Table,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DraftDom0 {
    pub kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DraftRange {
    pub base: String,
    pub size: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DraftDomain {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    pub vcpus: u32,
    pub memory: String,
    pub kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub iomem: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub irqs: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_map: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpupool: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vcpu_affinity: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_crash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_without_iommu: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2m_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sve: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_grant_frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_maptrack_frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llc_colors: Option<String>,
    /// Further keys carried through as TOML values (see `imagebuilder`'s `DOMFORGE_DOMU_*`).
    #[serde(flatten)]
    pub extra: toml::Table,
    /// Last: TOML writes arrays of tables after a table's plain keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_memory: Vec<DraftRange>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DraftCpupool {
    pub name: String,
    pub cpus: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
}

impl DraftManifest {
    /// The manifest as TOML, after `header` (each line becomes a `#` comment).
    pub fn to_toml(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(if line.is_empty() { "#" } else { "# " });
            out.push_str(line);
            out.push('\n');
        }
        if !header.is_empty() {
            out.push('\n');
        }
        // Serialising plain strings, integers, booleans and tables cannot fail.
        out.push_str(&toml::to_string(self).unwrap_or_default());
        out
    }
}

/// A size as a manifest writes it: the largest binary unit that divides it exactly.
pub fn size_text(bytes: u64) -> String {
    for (unit, suffix) in [(GIB, "G"), (MIB, "M"), (KIB, "K")] {
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// An address as a manifest writes it.
pub fn address_text(addr: u64) -> String {
    format!("{addr:#x}")
}

/// A name domforge accepts (1-63 lowercase letters, digits, `-`), made from any text; `None` when
/// nothing usable is left. The manifest parser's rule is the reference (E0012).
pub fn sanitize_name(text: &str) -> Option<String> {
    let mut s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s: String = s.trim_matches('-').chars().take(63).collect();
    let s = s.trim_end_matches('-').to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(size_text(256 * MIB), "256M");
        assert_eq!(size_text(2 * GIB), "2G");
        assert_eq!(size_text(1536 * MIB), "1536M");
        assert_eq!(size_text(4096), "4K");
        assert_eq!(size_text(100), "100");
    }

    #[test]
    fn names_become_valid() {
        assert_eq!(sanitize_name("My_Guest.1").as_deref(), Some("my-guest-1"));
        assert_eq!(sanitize_name("--x--").as_deref(), Some("x"));
        assert_eq!(sanitize_name("__"), None);
    }
}
