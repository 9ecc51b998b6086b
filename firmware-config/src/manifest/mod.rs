//! The manifest: one TOML file that describes a whole Xen system.
//!
//! Parsing happens in two steps. [`raw`] mirrors the TOML with a source span on every value and rejects
//! unknown keys; [`Manifest::parse`] then turns strings into typed values (sizes, addresses, cpu lists,
//! PCI addresses, xl `iomem` grants) and reports every field-level problem at once, each pointing at
//! the offending text. Whole-system rules (does it fit the board, do two domains claim one device) are
//! the job of [`crate::validate`].

pub mod pv;
pub mod raw;

use crate::board::Region;
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::units::{PAGE_SIZE, parse_size};
use crate::xen::XenVersion;
use core::ops::Range;
use raw::*;
use std::borrow::ToOwned;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;
use toml::Spanned;

pub type Span = Range<usize>;

/// A value with the span of the text it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct At<T> {
    pub value: T,
    #[serde(skip)]
    pub span: Span,
}

impl<T> At<T> {
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

impl<T> From<&Spanned<T>> for At<T>
where
    T: Clone,
{
    fn from(s: &Spanned<T>) -> Self {
        At::new(s.get_ref().clone(), s.span())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// An arm64 guest (dom0less-built by Xen, or built by domforge-init).
    Arm64,
    /// An x86_64 PVH guest built by domforge-init.
    Pvh,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    App,
    Driver,
    Control,
    Hardware,
    Xenstore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Console {
    /// Xen's emulated SBSA UART at GUEST_PL011_BASE, SPI 32 (ARM only).
    Vpl011,
    /// The Xen PV console (`hvc0`), served by a console backend.
    Hvc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCrash {
    Destroy,
    Restart,
    RebootPlatform,
}

/// `xen,enhanced`: which PV interfaces a dom0less domain gets (booting.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enhanced {
    Enabled,
    Disabled,
    NoXenstore,
    Legacy,
}

/// Who builds the domain at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// Xen itself, from `/chosen` (dom0less, ARM only).
    Xen,
    /// domforge-init, through domctl, from a control domain.
    Init,
}

/// A PCI address `segment:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct PciAddress {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl core::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// An xl-style `iomem` grant: `nr_pages` frames from `first_mfn`, mapped at `guest_frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IomemGrant {
    pub first_mfn: u64,
    pub nr_pages: u64,
    /// Guest frame; xl defaults it to the host frame (1:1).
    pub guest_frame: u64,
}

impl IomemGrant {
    pub fn host_region(&self) -> Region {
        Region::new(self.first_mfn * PAGE_SIZE, self.nr_pages * PAGE_SIZE)
    }
    pub fn guest_region(&self) -> Region {
        Region::new(self.guest_frame * PAGE_SIZE, self.nr_pages * PAGE_SIZE)
    }
}

/// A set of physical CPU indices, from xl's cpu-list syntax.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpuSet(pub Vec<u32>);

#[derive(Debug, Clone, serde::Serialize)]
pub struct System {
    pub name: At<String>,
    pub board: At<String>,
    pub xen: At<XenVersion>,
    pub xen_cmdline: Option<At<String>>,
    pub hypervisor: Option<At<String>>,
    pub dom0: Option<At<bool>>,
    pub xen_memory: Option<At<u64>>,
    pub xen_features: Vec<At<String>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Dom0 {
    #[serde(skip)]
    pub span: Span,
    pub kernel: At<String>,
    pub ramdisk: Option<At<String>>,
    pub cmdline: Option<At<String>>,
    pub memory: Option<At<u64>>,
    pub vcpus: Option<At<u32>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Domain {
    #[serde(skip)]
    pub span: Span,
    pub name: At<String>,
    pub kind: At<DomainKind>,
    /// Declared roles; `[app]` when the manifest says nothing.
    pub roles: Vec<At<Role>>,
    pub vcpus: At<u32>,
    /// Bytes.
    pub memory: At<u64>,
    pub kernel: At<String>,
    pub ramdisk: Option<At<String>>,
    pub cmdline: Option<At<String>>,
    pub console: Option<At<Console>>,
    pub passthrough: Vec<At<String>>,
    pub pci: Vec<At<PciAddress>>,
    pub iomem: Vec<At<IomemGrant>>,
    pub irqs: Vec<At<u32>>,
    pub static_memory: Vec<At<Region>>,
    pub direct_map: Option<At<bool>>,
    pub cpupool: Option<At<String>>,
    pub vcpu_affinity: Vec<At<CpuSet>>,
    pub enhanced: Option<At<Enhanced>>,
    pub depends_on: Vec<At<String>>,
    pub boot_order: Option<At<u32>>,
    pub on_crash: Option<At<OnCrash>>,
    pub force_without_iommu: Option<At<bool>>,
    pub drop_device_dependencies: Option<At<bool>>,
    pub builder: Option<At<Builder>>,
    pub p2m_pool: Option<At<u64>>,
    pub sve: Option<At<u32>>,
    pub max_grant_frames: Option<At<u32>>,
    pub max_maptrack_frames: Option<At<u32>>,
    pub llc_colors: Option<At<String>>,
    pub disks: Vec<Disk>,
    pub vifs: Vec<Vif>,
}

pub use pv::{DiskAccess, DiskDevtype};

/// A PV disk of a domain (`disk = [...]`, xl's DISKSPEC syntax), spans mapped into the manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disk {
    /// The whole entry.
    #[serde(skip)]
    pub span: Span,
    pub vdev: At<String>,
    /// Xen's virtual device number of `vdev` (docs/misc/vbd-interface.txt).
    pub devid: u32,
    /// The file or block device as the backend domain sees it.
    pub target: At<String>,
    pub access: DiskAccess,
    pub devtype: DiskDevtype,
    /// The serving domain; `None`: the control domain (dom0).
    pub backend: Option<At<String>>,
    /// A build-host file the bundle ships into the backend domain at `target`.
    pub image: Option<At<String>>,
}

/// A PV network interface of a domain (`vif = [...]`, xl's vif syntax).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Vif {
    #[serde(skip)]
    pub span: Span,
    /// The frontend's handle (`device/vif/<handle>`): `devid`, else the entry's index.
    pub handle: At<u32>,
    pub mac: Option<At<[u8; 6]>>,
    pub bridge: Option<At<String>>,
    pub backend: Option<At<String>>,
    pub vifname: Option<At<String>>,
    pub mtu: Option<At<u32>>,
}

/// libxl's default bridge (libxl_nic.c `libxl__device_nic_setdefault`).
pub const DEFAULT_BRIDGE: &str = "xenbr0";

impl Vif {
    pub fn bridge(&self) -> &str {
        self.bridge.as_ref().map_or(DEFAULT_BRIDGE, |b| &b.value)
    }
}

impl Domain {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r.value == role)
    }
    pub fn direct_map(&self) -> bool {
        self.direct_map.as_ref().is_some_and(|d| d.value)
    }
    pub fn force_without_iommu(&self) -> bool {
        self.force_without_iommu.as_ref().is_some_and(|d| d.value)
    }
    /// Who builds this domain: explicit, else Xen for arm64 (dom0less) and domforge-init for PVH.
    pub fn builder(&self) -> Builder {
        match (&self.builder, self.kind.value) {
            (Some(b), _) => b.value,
            (None, DomainKind::Arm64) => Builder::Xen,
            (None, DomainKind::Pvh) => Builder::Init,
        }
    }
    pub fn on_crash(&self) -> OnCrash {
        self.on_crash.as_ref().map_or(OnCrash::Destroy, |o| o.value)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cpupool {
    #[serde(skip)]
    pub span: Span,
    pub name: At<String>,
    pub cpus: At<Vec<At<u32>>>,
    pub scheduler: Option<At<String>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SharedMemory {
    #[serde(skip)]
    pub span: Span,
    pub id: At<String>,
    pub size: At<u64>,
    pub host_address: Option<At<u64>>,
    pub guest_address: At<u64>,
    pub owner: Option<At<String>>,
    pub borrowers: At<Vec<At<String>>>,
}

/// A parsed manifest: every value typed, every value with its span.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Manifest {
    pub system: System,
    pub dom0: Option<Dom0>,
    pub domains: Vec<Domain>,
    pub cpupools: Vec<Cpupool>,
    pub shared_memory: Vec<SharedMemory>,
}

/// Schedulers Xen accepts for `cpupool-sched` (xen/common/sched/*.c `opt_name`).
pub const SCHEDULERS: &[&str] = &["credit", "credit2", "rtds", "arinc653", "null"];

/// Manifest size limit: a system description is a few KiB; megabytes mean the wrong file was given.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

impl Manifest {
    /// Parses manifest text. Returns every field-level error found, each pointing at its text.
    pub fn parse(text: &str) -> Result<Manifest, Diagnostics> {
        if text.len() > MAX_MANIFEST_BYTES {
            let mut d = Diagnostics::default();
            d.push(
                Diagnostic::error(
                    "E0001",
                    format!("the manifest is {} bytes, over the 1 MiB limit", text.len()),
                )
                .help("is this the right file? A manifest is a small TOML document"),
            );
            return Err(d);
        }
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let mut d = Diagnostics::default();
            d.push(toml_error(&e, text));
            d
        })?;
        let mut cx = Convert {
            diags: Diagnostics::default(),
            text,
        };
        let manifest = cx.manifest(raw);
        if cx.diags.has_errors() {
            Err(cx.diags)
        } else {
            Ok(manifest)
        }
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name.value == name)
    }

    pub fn has_dom0(&self) -> bool {
        self.system.dom0.as_ref().is_some_and(|d| d.value)
    }
}

/// The text of a manifest file, or E0019 when the bytes are not UTF-8 text. `identify` says what
/// a binary file looks like (`pvh_boot::identify::identify`: "a device tree blob (DTB)"), so a
/// DTB or kernel given in the manifest's place is named for what it is. The error comes with the
/// text to show it against: the file itself (invalid bytes replaced) when it is text with a stray
/// byte, so the location points at that byte; nothing when it is binary.
pub fn manifest_text(
    bytes: Vec<u8>,
    identify: impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<String, (String, Diagnostic)> {
    toml_text(bytes, "the manifest", identify)
}

/// [`manifest_text`] for any TOML file domforge reads; `file` names it in the message
/// (`"the manifest"`, `"board file `x.toml`"`).
pub fn toml_text(
    bytes: Vec<u8>,
    file: &str,
    identify: impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<String, (String, Diagnostic)> {
    // Binary: control bytes other than tab, newline, carriage return and form feed (TOML allows
    // none of them outside strings either), or invalid UTF-8 in a recognised binary format.
    // NUL is valid UTF-8, so a kernel or cpio archive can pass the UTF-8 test.
    let head = &bytes[..bytes.len().min(8192)];
    let control = head
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c) || b == 0x7f);
    let valid = core::str::from_utf8(&bytes).map_err(|e| e.valid_up_to());
    let kind = identify(&bytes);
    if control || (valid.is_err() && kind.is_some()) {
        let what = kind.unwrap_or("binary data");
        let d = Diagnostic::error("E0019", format!("{file} is not text: this is {what}"))
            .at(0..0, "not a TOML file")
            .help("give the manifest (a .toml file) here; kernels, ramdisks and DTBs are named inside it");
        return Err((String::new(), d));
    }
    let at = match valid {
        Ok(_) => return Ok(String::from_utf8(bytes).unwrap_or_default()),
        Err(at) => at,
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let byte = bytes.get(at).copied().unwrap_or(0);
    let d = Diagnostic::error(
        "E0019",
        format!("{file} is not UTF-8 text: byte {byte:#04x} at offset {at} is not UTF-8"),
    )
    // The replacement character U+FFFD stands for the byte in the text shown.
    .at(at..at + '\u{fffd}'.len_utf8(), "not UTF-8")
    .help("TOML files are UTF-8: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)");
    Err((text, d))
}

/// Turns a TOML or serde error in a manifest into a diagnostic, adding "did you mean" for misspelt
/// keys and values.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str) -> Diagnostic {
    toml_error_in(e, text, true)
}

/// [`toml_error`] for a board file: the same hints, but none about manifest tables or xl.cfg keys.
pub(crate) fn board_toml_error(e: &toml::de::Error, text: &str) -> Diagnostic {
    toml_error_in(e, text, false)
}

fn toml_error_in(e: &toml::de::Error, text: &str, manifest: bool) -> Diagnostic {
    let message = e.message().trim().to_string();
    let span = e.span().unwrap_or(0..0);
    let offending = text.get(span.clone()).unwrap_or("").trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if !manifest {
            let d = Diagnostic::error("E0002", format!("unknown key `{field}`"))
                .at(span, "not a key of this table");
            let all = format!("keys allowed here: {}", candidates.join(", "));
            return d.suggest(
                field,
                candidates.iter().copied(),
                (!candidates.is_empty()).then_some(all.as_str()),
            );
        }
        return unknown_key(field, &candidates, span);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let d = Diagnostic::error("E0003", format!("`{value}` is not an accepted value"))
            .at(span, format!("expected one of: {}", candidates.join(", ")));
        // xl's `builder = "hvm"` chose the guest type; domforge's `builder` says who builds it.
        if candidates.contains(&"init") && ["hvm", "generic", "pv", "pvh"].contains(&value) {
            return d.help("xl's `builder` chose the guest type, which is `kind` here (`kind = \"pvh\"`); `builder` says who builds the domain: `\"xen\"` (dom0less) or `\"init\"` (domforge-init)");
        }
        return d.suggest(value, candidates.iter().copied(), None);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let table = offending.lines().next().unwrap_or("").trim().to_string();
        let d = Diagnostic::error("E0004", format!("missing required key `{field}`"));
        if let Some(keys) = TABLE_KEYS_REQUIRED
            .iter()
            .find(|(t, _)| manifest && *t == field)
        {
            // A missing table (only `[system]` is required at the top level), not a key.
            return d
                .at(span, format!("the manifest has no `[{field}]` table"))
                .help(format!(
                    "`{field}` is a table: add `[{field}]` with {}; see docs/manifest.md",
                    keys.1
                ));
        }
        return d
            .at(span, format!("`{field}` must be set in this table"))
            .help(format!(
                "add `{field} = ...` to {}; see docs/manifest.md",
                if table.starts_with('[') {
                    table
                } else {
                    "this table".into()
                }
            ));
    }
    if message.contains("cannot be negative") {
        return Diagnostic::error("E0013", format!("invalid size: {message}"))
            .at(span, "a size or address is zero or more");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return type_error(rest, &offending, text, span);
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        // serde: "invalid value: integer `-1`, expected u32" (a number out of the field's range).
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let value = found.split('`').nth(1).unwrap_or(found);
        let range = match expected {
            "u8" => "0 to 255",
            "u16" => "0 to 65535",
            "u32" => "0 to 4294967295",
            "u64" => "0 or more",
            other => other,
        };
        let mut d = Diagnostic::error(
            "E0005",
            match key_before(text, span.start) {
                Some(k) => {
                    format!("wrong value: `{k}` takes a whole number from {range}, not {value}")
                }
                None => format!("wrong value: expected a whole number from {range}, not {value}"),
            },
        )
        .at(span, "out of range");
        if value.starts_with('-') {
            d = d.help("negative numbers mean nothing here");
        }
        return d;
    }
    Diagnostic::error("E0006", format!("TOML syntax: {message}")).at(span, "here")
}

/// For a memory size written as a bare number that is too small to be bytes: xl.cfg counts MiB,
/// so say what it would be with the unit.
fn bare_mib_hint(raw: &Quantity, bytes: u64) -> Option<String> {
    let bare = !raw.0.is_empty() && raw.0.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    (bare && bytes > 0 && bytes < crate::units::MIB).then(|| {
        format!("a bare number is bytes, not MiB as in xl.cfg: did you mean \"{bytes}M\"?")
    })
}

/// The tables a manifest must have, with what they need, for "add `[system]`".
const TABLE_KEYS_REQUIRED: &[(&str, &str)] = &[("system", "`name` and `board`")];

/// The table header a key list belongs to, for "`xen_cmdline` is a key of `[system]`".
fn table_of(list: &[&str]) -> &'static str {
    const TABLES: &[(&[&str], &str)] = &[
        (MANIFEST_KEYS, "the top level"),
        (SYSTEM_KEYS, "`[system]`"),
        (DOM0_KEYS, "`[dom0]`"),
        (DOMAIN_KEYS, "`[[domain]]`"),
        (CPUPOOL_KEYS, "`[[cpupool]]`"),
        (SHARED_MEMORY_KEYS, "`[[shared_memory]]`"),
    ];
    TABLES
        .iter()
        .find(|(keys, _)| core::ptr::eq(*keys, list))
        .map_or("another table", |(_, t)| t)
}

/// Keys people bring from xl.cfg(5) and ImageBuilder's config (`DOMU_*`, `DOM0_*`), with the
/// domforge key of the same meaning (`Some`), or why there is none.
const FOREIGN_KEYS: &[(&str, Option<&str>, &str)] = &[
    // xl.cfg(5)
    (
        "cpus",
        Some("vcpu_affinity"),
        "xl's `cpus` pins vCPUs to physical CPUs; here that is `vcpu_affinity`, one cpu list per vCPU: `cpus = \"1\"` becomes `vcpu_affinity = [\"1\"]`",
    ),
    (
        "cpus_soft",
        None,
        "xl's `cpus_soft` (soft affinity) has no domforge equivalent: Xen's dom0less and domforge-init set hard affinity only, with `vcpu_affinity`",
    ),
    (
        "maxvcpus",
        Some("vcpus"),
        "domforge domains have a fixed vCPU count: `vcpus`",
    ),
    (
        "maxmem",
        Some("memory"),
        "domforge domains have fixed memory (no balloon target): set `memory`",
    ),
    (
        "type",
        Some("kind"),
        "xl's `type` is `kind` here: `kind = \"pvh\"` (x86_64) or `kind = \"arm64\"`",
    ),
    ("pvh", Some("kind"), "write `kind = \"pvh\"`"),
    (
        "vuart",
        Some("console"),
        "xl's `vuart = \"sbsa_uart\"` is `console = \"vpl011\"` here",
    ),
    (
        "root",
        Some("cmdline"),
        "xl's `root` is appended to the kernel command line: put `root=...` in `cmdline`",
    ),
    (
        "device_tree",
        Some("passthrough"),
        "domforge writes the partial device tree itself from the DT paths in `passthrough`",
    ),
    (
        "static_shm",
        Some("[[shared_memory]]"),
        "shared memory is a `[[shared_memory]]` table with `id`, `size`, `guest_address`, `owner` and `borrowers`",
    ),
    (
        "vfb",
        None,
        "xl's `vfb` has no domforge equivalent: there are no framebuffer backends",
    ),
    (
        "on_poweroff",
        None,
        "xl's `on_poweroff` has no domforge equivalent: a domain that powers off stays down (only `on_crash` is configurable)",
    ),
    (
        "on_reboot",
        None,
        "xl's `on_reboot` has no domforge equivalent: only `on_crash` is configurable",
    ),
    (
        "uuid",
        None,
        "xl's `uuid` has no domforge equivalent: domains are named by `name`",
    ),
    (
        "gic_version",
        None,
        "xl's `gic_version` has no domforge equivalent: guests get the board's GIC version",
    ),
    (
        "nr_spis",
        None,
        "xl's `nr_spis` has no domforge equivalent: the number of SPIs follows from the devices in `passthrough`",
    ),
    (
        "bootloader",
        None,
        "xl's `bootloader` has no domforge equivalent: domains boot `kernel` directly",
    ),
    (
        "seclabel",
        None,
        "xl's `seclabel` (XSM/FLASK) has no domforge equivalent",
    ),
    (
        "shadow_memory",
        Some("p2m_pool"),
        "the P2M pool size is `p2m_pool` (a size)",
    ),
    (
        "tee",
        None,
        "xl's `tee` has no domforge equivalent: no TEE mediator is configured for guests",
    ),
    (
        "ioports",
        None,
        "xl's `ioports` has no domforge equivalent: x86 I/O-port grants are not supported; grant MMIO with `iomem`",
    ),
    (
        "on_watchdog",
        None,
        "xl's `on_watchdog` has no domforge equivalent: only `on_crash` is configurable",
    ),
    (
        "on_soft_reset",
        None,
        "xl's `on_soft_reset` has no domforge equivalent: only `on_crash` is configurable",
    ),
    (
        "viridian",
        None,
        "xl's `viridian` is an HVM option; domforge builds PVH and arm64 guests",
    ),
    (
        "acpi",
        None,
        "xl's `acpi` has no domforge equivalent: PVH guests get ACPI tables from domforge-init, arm64 guests a device tree",
    ),
    (
        "device_model_version",
        None,
        "xl's device-model options have no domforge equivalent: there is no QEMU device model",
    ),
    (
        "localtime",
        None,
        "xl's `localtime` has no domforge equivalent",
    ),
    (
        "e820_host",
        None,
        "xl's `e820_host` has no domforge equivalent: PVH guests get domforge's own memory map",
    ),
    (
        "vtpm",
        None,
        "xl's `vtpm` has no domforge equivalent: domforge builds no PV backends",
    ),
    (
        "vkb",
        None,
        "xl's `vkb` has no domforge equivalent: domforge builds no PV backends",
    ),
    (
        "channel",
        None,
        "xl's `channel` has no domforge equivalent: domforge builds no PV backends",
    ),
    (
        "p9",
        None,
        "xl's `p9` has no domforge equivalent: domforge builds no PV backends",
    ),
    (
        "usbctrl",
        None,
        "xl's `usbctrl` has no domforge equivalent: domforge builds no PV backends; pass a USB controller with `passthrough`",
    ),
    // ImageBuilder (uboot-script-gen config), as TOML keys
    (
        "domu_kernel",
        Some("kernel"),
        "ImageBuilder's `DOMU_KERNEL[n]` is `kernel` in the n-th `[[domain]]`",
    ),
    (
        "domu_ramdisk",
        Some("ramdisk"),
        "ImageBuilder's `DOMU_RAMDISK[n]` is `ramdisk` in the n-th `[[domain]]`",
    ),
    (
        "domu_mem",
        Some("memory"),
        "ImageBuilder's `DOMU_MEM[n]` (MiB) is `memory` with a unit, e.g. `memory = \"256M\"`",
    ),
    (
        "domu_vcpus",
        Some("vcpus"),
        "ImageBuilder's `DOMU_VCPUS[n]` is `vcpus`",
    ),
    (
        "domu_cmd",
        Some("cmdline"),
        "ImageBuilder's `DOMU_CMD[n]` is `cmdline`",
    ),
    (
        "domu_name",
        Some("name"),
        "ImageBuilder's `DOMU_NAME[n]` is `name`",
    ),
    (
        "domu_passthrough_paths",
        Some("passthrough"),
        "ImageBuilder's `DOMU_PASSTHROUGH_PATHS[n]` is `passthrough`, a list of DT paths",
    ),
    (
        "domu_passthrough_dtb",
        Some("passthrough"),
        "domforge generates the passthrough DTB from `passthrough`; there is no file to give",
    ),
    (
        "domu_static_mem",
        Some("static_memory"),
        "ImageBuilder's `DOMU_STATIC_MEM[n]` is `static_memory = [{ base = ..., size = ... }]`",
    ),
    (
        "domu_direct_map",
        Some("direct_map"),
        "ImageBuilder's `DOMU_DIRECT_MAP[n]` is `direct_map`",
    ),
    (
        "domu_enhanced",
        Some("enhanced"),
        "ImageBuilder's `DOMU_ENHANCED[n]` is `enhanced`",
    ),
    (
        "domu_colors",
        Some("llc_colors"),
        "ImageBuilder's `DOMU_COLORS[n]` is `llc_colors`",
    ),
    (
        "domu_cpupool",
        Some("cpupool"),
        "ImageBuilder's `DOMU_CPUPOOL[n]` is `cpupool`",
    ),
    (
        "num_domus",
        None,
        "ImageBuilder's `NUM_DOMUS` has no domforge equivalent: write one `[[domain]]` table per domain",
    ),
    (
        "dom0_kernel",
        Some("kernel"),
        "ImageBuilder's `DOM0_KERNEL` is `kernel` in `[dom0]`",
    ),
    (
        "dom0_ramdisk",
        Some("ramdisk"),
        "ImageBuilder's `DOM0_RAMDISK` is `ramdisk` in `[dom0]`",
    ),
    (
        "dom0_mem",
        Some("memory"),
        "Xen's `dom0_mem` / ImageBuilder's `DOM0_MEM` is `memory` in `[dom0]`",
    ),
    (
        "dom0_vcpus",
        Some("vcpus"),
        "ImageBuilder's `DOM0_VCPUS` is `vcpus` in `[dom0]`",
    ),
    (
        "dom0_max_vcpus",
        Some("vcpus"),
        "Xen's `dom0_max_vcpus` is `vcpus` in `[dom0]`",
    ),
    (
        "dom0_cmd",
        Some("cmdline"),
        "ImageBuilder's `DOM0_CMD` is `cmdline` in `[dom0]`",
    ),
    (
        "xen_cmd",
        Some("xen_cmdline"),
        "ImageBuilder's `XEN_CMD` is `xen_cmdline` in `[system]`",
    ),
    (
        "device_tree_file",
        Some("board"),
        "the host device tree comes from the board: `board` in `[system]`",
    ),
];

/// E0002 for a key this table does not have: the close key of this table, or the table that has
/// it, or the domforge name of an xl.cfg/ImageBuilder key, or the keys allowed here.
fn unknown_key(field: &str, candidates: &[&str], span: Span) -> Diagnostic {
    let mut d = Diagnostic::error("E0002", format!("unknown key `{field}`"))
        .at(span, "not a key of this table");
    let lower = field.to_ascii_lowercase();
    // A mapping applies where its key lives (xl's `cpus` means `vcpu_affinity` in a domain, not
    // in `[dom0]`), or when its hint names the table, or when there is no equivalent at all.
    let applies = |ours: &Option<&str>, why: &str| {
        ours.is_none_or(|o| candidates.contains(&o) || why.contains("in `[") || o.starts_with('['))
    };
    if let Some((_, _, why)) = FOREIGN_KEYS
        .iter()
        .find(|(k, ours, why)| *k == lower && applies(ours, why))
    {
        return d.help(*why);
    }
    if did_you_mean(field, candidates.iter().copied()).is_some() {
        return d.suggest(field, candidates.iter().copied(), None);
    }
    // The key in other tables (name them all), else a close key in another table.
    let others: Vec<&[&str]> = ALL_KEY_LISTS
        .iter()
        .copied()
        .filter(|l| !candidates.iter().all(|c| l.contains(c)) || candidates.is_empty())
        .collect();
    let exact: Vec<&str> = others
        .iter()
        .filter(|l| l.contains(&field))
        .map(|l| table_of(l))
        .collect();
    let close = others
        .iter()
        .find_map(|l| did_you_mean(field, l.iter().copied()).map(|k| (k, table_of(l))));
    if !exact.is_empty() {
        d = d.help(format!(
            "`{field}` is a key of {}, not of this table; move it there",
            exact.join(" and ")
        ));
    } else if let Some((key, table)) = close {
        d = d.help(format!(
            "did you mean `{key}`? It is a key of {table}, not of this table"
        ));
    } else if !candidates.is_empty() {
        d = d.help(format!("keys allowed here: {}", candidates.join(", ")));
    }
    d
}

/// E0005 in our words: what the key takes, what was written, and how to write it.
fn type_error(rest: &str, offending: &str, text: &str, span: Span) -> Diagnostic {
    // serde: "invalid type: <found>, expected <expected>"
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let found_kind = found.split([' ', '`', '"']).next().unwrap_or(found);
    let key = key_before(text, span.start);
    let want = match expected {
        "a sequence" => "a list",
        "a boolean" => "`true` or `false`",
        "a string" => "a string",
        e if e.starts_with('u') || e.starts_with('i') || e.contains("integer") => "a whole number",
        e if e.starts_with("a size or address") => "a size or address",
        e => e,
    };
    let got = match found_kind {
        "map" => "a table",
        "sequence" => "a list",
        "string" => "a string",
        "integer" => "a number",
        "floating" => "a floating-point number",
        "boolean" => "a boolean",
        other => other,
    };
    let single_table = found_kind == "map"
        && want == "a list"
        && offending.starts_with('[')
        && !offending.starts_with("[[");
    let table_array = offending.starts_with("[[") && want != "a list";
    let table_name = offending.trim_matches(['[', ']']).trim();
    let what = match &key {
        _ if single_table => {
            format!("`[{table_name}]` is one table, but `{table_name}` is an array of tables")
        }
        _ if table_array => {
            format!("`[[{table_name}]]` makes a list of tables, but there is one `[{table_name}]`")
        }
        Some(k) => format!("`{k}` takes {want}, not {got}"),
        None => format!("expected {want}, found {got}"),
    };
    let mut d =
        Diagnostic::error("E0005", format!("wrong type: {what}")).at(span, format!("{got} here"));
    let unquoted = offending.trim_matches('"');
    let xl_passthrough = key.as_deref() == Some("passthrough")
        && ["enabled", "disabled", "sync_pt", "share_pt"].contains(&unquoted);
    let help = if xl_passthrough {
        Some(format!(
            "xl's `passthrough = \"{unquoted}\"` sets up the IOMMU; here `passthrough` lists the devices, by DT path: `passthrough = [\"/pl031@9010000\"]`"
        ))
    } else if single_table {
        Some(format!(
            "write `[[{table_name}]]`: each `[[{table_name}]]` header starts one entry"
        ))
    } else if table_array {
        Some(format!("write `[{table_name}]`"))
    } else if found_kind == "map" && want == "a list" {
        Some(format!(
            "a list of tables, even of one: write `[{offending}]`"
        ))
    } else if want == "a list" && found_kind != "map" {
        Some(format!("a list, even of one: write `[{offending}]`"))
    } else if found_kind == "string" && (want == "a whole number" || want.starts_with("`true`")) {
        Some(format!("write `{unquoted}` without quotes"))
    } else if found_kind == "integer" && want.starts_with("`true`") {
        Some(String::from("write `true` or `false`"))
    } else if found_kind == "floating" && want == "a whole number" {
        let whole = offending
            .strip_suffix(".0")
            .filter(|w| w.bytes().all(|b| b.is_ascii_digit()));
        Some(match whole {
            Some(w) => format!("write `{w}`"),
            None => String::from("a whole number: no fractions"),
        })
    } else if found_kind == "floating" && want == "a size or address" {
        Some(String::from(
            "fractions are not accepted: write a whole number with a unit, e.g. \"1536M\" for 1.5 GiB",
        ))
    } else if found_kind == "sequence" && want != "a list" {
        Some(String::from("one value, not a list: remove the brackets"))
    } else if want == "a string" && found_kind != "map" {
        Some(format!("write it in quotes: `\"{unquoted}\"`"))
    } else if found_kind == "map" && want != "a list" {
        Some(String::from("a value, not a table: write `key = value`"))
    } else {
        None
    };
    if let Some(h) = help {
        d = d.help(h);
    }
    d
}

/// The key of the `key = value` pair whose value starts at `at`, if the value follows one.
fn key_before(text: &str, at: usize) -> Option<String> {
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..at)?.trim_end();
    let key = before.strip_suffix('=')?.trim();
    let key = key.rsplit(['{', ',']).next()?.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

#[derive(Default)]
struct Convert<'t> {
    diags: Diagnostics,
    /// The manifest text, to map ranges inside a string value (a disk spec) to file spans.
    text: &'t str,
}

impl Convert<'_> {
    fn manifest(&mut self, raw: RawManifest) -> Manifest {
        let system = self.system(raw.system);
        let dom0 = raw.dom0.map(|d| self.dom0(d));
        let domains = raw.domains.into_iter().map(|d| self.domain(d)).collect();
        let cpupools = raw
            .cpupools
            .into_iter()
            .map(|p| {
                let span = p.span();
                let p = p.into_inner();
                Cpupool {
                    span,
                    name: self.name(&p.name, "cpupool"),
                    cpus: At::new(
                        p.cpus.get_ref().iter().map(At::from).collect(),
                        p.cpus.span(),
                    ),
                    scheduler: p.scheduler.map(|s| {
                        if !SCHEDULERS.contains(&s.get_ref().as_str()) {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0007",
                                    format!("unknown scheduler `{}`", s.get_ref()),
                                )
                                .at(
                                    s.span(),
                                    format!("Xen schedulers: {}", SCHEDULERS.join(", ")),
                                )
                                .suggest(
                                    s.get_ref(),
                                    SCHEDULERS.iter().copied(),
                                    None,
                                ),
                            );
                        }
                        At::from(&s)
                    }),
                }
            })
            .collect();
        let shared_memory = raw
            .shared_memory
            .into_iter()
            .map(|s| {
                let span = s.span();
                let s = s.into_inner();
                if s.id.get_ref().is_empty() || s.id.get_ref().len() > 16 {
                    self.diags.push(
                        Diagnostic::error("E0008", "a shared-memory id must be 1 to 16 characters")
                            .at(
                                s.id.span(),
                                "Xen's xen,shm-id holds at most 16 characters (booting.txt)",
                            ),
                    );
                }
                SharedMemory {
                    span,
                    id: At::from(&s.id),
                    size: self.size(&s.size),
                    host_address: s.host_address.as_ref().map(|a| self.address(a)),
                    guest_address: self.address(&s.guest_address),
                    owner: s.owner.as_ref().map(At::from),
                    borrowers: At::new(
                        s.borrowers.get_ref().iter().map(At::from).collect(),
                        s.borrowers.span(),
                    ),
                }
            })
            .collect();
        Manifest {
            system,
            dom0,
            domains,
            cpupools,
            shared_memory,
        }
    }

    fn system(&mut self, raw: Spanned<RawSystem>) -> System {
        let sys_span = raw.span();
        let s = raw.into_inner();
        let xen = match &s.xen {
            Some(x) => match XenVersion::parse(x.get_ref()) {
                Some(v) => At::new(v, x.span()),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            "E0009",
                            format!("`{}` is not a Xen version", x.get_ref()),
                        )
                        .at(x.span(), "expected `major.minor`, e.g. \"4.17\""),
                    );
                    At::new(XenVersion::V4_17, x.span())
                }
            },
            None => At::new(XenVersion::V4_17, sys_span.start..sys_span.start),
        };
        System {
            name: self.name(&s.name, "system"),
            board: At::from(&s.board),
            xen,
            xen_cmdline: s.xen_cmdline.as_ref().map(At::from),
            hypervisor: s.hypervisor.as_ref().map(At::from),
            dom0: s.dom0.as_ref().map(At::from),
            xen_memory: s.xen_memory.as_ref().map(|m| self.size(m)),
            xen_features: s.xen_features.iter().map(At::from).collect(),
        }
    }

    fn dom0(&mut self, raw: Spanned<RawDom0>) -> Dom0 {
        let span = raw.span();
        let d = raw.into_inner();
        Dom0 {
            span,
            kernel: At::from(&d.kernel),
            ramdisk: d.ramdisk.as_ref().map(At::from),
            cmdline: d.cmdline.as_ref().map(At::from),
            memory: d.memory.as_ref().map(|m| {
                let before = self.diags.0.len();
                let size = self.size(m);
                // Xen's `dom0_mem=` takes whole MiB here; refuse what would be silently rounded.
                if self.diags.0.len() == before
                    && (size.value == 0 || !size.value.is_multiple_of(crate::units::MIB))
                {
                    let mut diag = Diagnostic::error(
                        "E0011",
                        "dom0 memory must be a non-zero whole number of MiB",
                    )
                    .at(size.span.clone(), "passed to Xen as `dom0_mem=<n>M`");
                    if let Some(h) = bare_mib_hint(m.get_ref(), size.value) {
                        diag = diag.help(h);
                    }
                    self.diags.push(diag);
                }
                size
            }),
            vcpus: d.vcpus.as_ref().map(At::from),
        }
    }

    fn domain(&mut self, raw: Spanned<RawDomain>) -> Domain {
        let span = raw.span();
        let d = raw.into_inner();
        let roles = match &d.roles {
            Some(r) => r
                .get_ref()
                .iter()
                .map(|role| At::new(convert_role(*role.get_ref()), role.span()))
                .collect(),
            None => std::vec![At::new(Role::App, d.name.span())],
        };
        Domain {
            span,
            name: self.name(&d.name, "domain"),
            kind: At::new(
                match d.kind.get_ref() {
                    RawKind::Arm64 => DomainKind::Arm64,
                    RawKind::Pvh => DomainKind::Pvh,
                },
                d.kind.span(),
            ),
            roles,
            vcpus: d.vcpus.as_ref().map_or(At::new(1, d.name.span()), |v| {
                if *v.get_ref() == 0 {
                    self.diags.push(
                        Diagnostic::error("E0010", "a domain needs at least one vCPU")
                            .at(v.span(), "zero vCPUs"),
                    );
                }
                At::from(v)
            }),
            memory: {
                let before = self.diags.0.len();
                let m = self.size(&d.memory);
                let parsed = self.diags.0.len() == before;
                let hint = bare_mib_hint(d.memory.get_ref(), m.value);
                let problem = if !parsed {
                    // The size itself is wrong; it was reported, and its value means nothing.
                    None
                } else if m.value == 0 {
                    Some("zero bytes")
                } else if !m.value.is_multiple_of(PAGE_SIZE) {
                    Some("not a whole number of 4 KiB pages")
                } else if m.value < crate::units::MIB {
                    Some("this is under 1 MiB")
                } else {
                    None
                };
                if let Some(label) = problem {
                    let mut diag = Diagnostic::error(
                        "E0011",
                        "domain memory must be at least 1 MiB, a whole number of 4 KiB pages",
                    )
                    .at(m.span.clone(), label);
                    if let Some(h) = hint {
                        diag = diag.help(h);
                    }
                    self.diags.push(diag);
                }
                m
            },
            kernel: At::from(&d.kernel),
            ramdisk: d.ramdisk.as_ref().map(At::from),
            cmdline: d.cmdline.as_ref().map(At::from),
            console: d.console.as_ref().map(|c| {
                At::new(
                    match c.get_ref() {
                        RawConsole::Vpl011 => Console::Vpl011,
                        RawConsole::Hvc => Console::Hvc,
                        RawConsole::None => Console::None,
                    },
                    c.span(),
                )
            }),
            passthrough: d.passthrough.iter().map(|p| self.dt_path(p)).collect(),
            pci: d.pci.iter().filter_map(|p| self.pci(p)).collect(),
            iomem: d.iomem.iter().filter_map(|g| self.iomem(g)).collect(),
            irqs: d.irqs.iter().map(At::from).collect(),
            static_memory: d
                .static_memory
                .iter()
                .map(|r| {
                    let base = self.address(&r.get_ref().base);
                    let size = self.size(&r.get_ref().size);
                    At::new(Region::new(base.value, size.value), r.span())
                })
                .collect(),
            direct_map: d.direct_map.as_ref().map(At::from),
            cpupool: d.cpupool.as_ref().map(At::from),
            vcpu_affinity: d.vcpu_affinity.iter().map(|a| self.cpu_list(a)).collect(),
            enhanced: d.enhanced.as_ref().map(|e| {
                At::new(
                    match e.get_ref() {
                        RawEnhanced::Enabled => Enhanced::Enabled,
                        RawEnhanced::Disabled => Enhanced::Disabled,
                        RawEnhanced::NoXenstore => Enhanced::NoXenstore,
                        RawEnhanced::Legacy => Enhanced::Legacy,
                    },
                    e.span(),
                )
            }),
            depends_on: d.depends_on.iter().map(At::from).collect(),
            boot_order: d.boot_order.as_ref().map(At::from),
            on_crash: d.on_crash.as_ref().map(|o| {
                At::new(
                    match o.get_ref() {
                        RawOnCrash::Destroy => OnCrash::Destroy,
                        RawOnCrash::Restart => OnCrash::Restart,
                        RawOnCrash::RebootPlatform => OnCrash::RebootPlatform,
                    },
                    o.span(),
                )
            }),
            force_without_iommu: d.force_without_iommu.as_ref().map(At::from),
            drop_device_dependencies: d.drop_device_dependencies.as_ref().map(At::from),
            builder: d.builder.as_ref().map(|b| {
                At::new(
                    match b.get_ref() {
                        RawBuilder::Xen => Builder::Xen,
                        RawBuilder::Init => Builder::Init,
                    },
                    b.span(),
                )
            }),
            p2m_pool: d.p2m_pool.as_ref().map(|p| self.size(p)),
            sve: d.sve.as_ref().map(At::from),
            max_grant_frames: d.max_grant_frames.as_ref().map(At::from),
            max_maptrack_frames: d.max_maptrack_frames.as_ref().map(At::from),
            llc_colors: d.llc_colors.as_ref().map(At::from),
            disks: d.disk.iter().filter_map(|s| self.disk(s)).collect(),
            vifs: d
                .vif
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.vif(i, s))
                .collect(),
        }
    }

    /// Where bytes `at` of a string value are in the file: exact when the value is written
    /// without escapes (its source text between the quotes is the value), else the whole value.
    fn inner_span(&self, value: &Spanned<String>, at: &Range<usize>) -> Span {
        let span = value.span();
        let src = self.text.get(span.clone()).unwrap_or("");
        let quoted = src.len() == value.get_ref().len() + 2
            && src.get(1..src.len() - 1) == Some(value.get_ref().as_str());
        if quoted && at.end <= value.get_ref().len() {
            span.start + 1 + at.start..span.start + 1 + at.end
        } else {
            span
        }
    }

    fn inner(&self, value: &Spanned<String>, part: &pv::Part) -> At<String> {
        At::new(part.text.clone(), self.inner_span(value, &part.at))
    }

    fn spec_error(&mut self, raw: &Spanned<String>, code: &'static str, e: pv::SpecError) {
        let code = if e.unsupported { "E0022" } else { code };
        let mut d = Diagnostic::error(code, e.message).at(self.inner_span(raw, &e.at), e.label);
        if let Some(h) = e.help {
            d = d.help(h);
        }
        if let Some(n) = e.note {
            d = d.note(n);
        }
        self.diags.push(d);
    }

    fn disk(&mut self, raw: &Spanned<String>) -> Option<Disk> {
        match pv::parse_disk(raw.get_ref()) {
            Ok(s) => Some(Disk {
                span: raw.span(),
                vdev: self.inner(raw, &s.vdev),
                devid: s.devid,
                target: self.inner(raw, &s.target),
                access: s.access,
                devtype: s.devtype,
                backend: s.backend.as_ref().map(|b| self.inner(raw, b)),
                image: s.image.as_ref().map(|i| self.inner(raw, i)),
            }),
            Err(e) => {
                self.spec_error(raw, "E0020", e);
                None
            }
        }
    }

    fn vif(&mut self, index: usize, raw: &Spanned<String>) -> Option<Vif> {
        match pv::parse_vif(raw.get_ref()) {
            Ok(s) => {
                let at = |r: &Range<usize>| self.inner_span(raw, r);
                let handle = match &s.devid {
                    Some((id, r)) => At::new(*id, at(r)),
                    None => At::new(u32::try_from(index).unwrap_or(u32::MAX), raw.span()),
                };
                Some(Vif {
                    span: raw.span(),
                    handle,
                    mac: s.mac.as_ref().map(|(m, r)| At::new(*m, at(r))),
                    bridge: s.bridge.as_ref().map(|b| self.inner(raw, b)),
                    backend: s.backend.as_ref().map(|b| self.inner(raw, b)),
                    vifname: s.vifname.as_ref().map(|b| self.inner(raw, b)),
                    mtu: s.mtu.as_ref().map(|(m, r)| At::new(*m, at(r))),
                })
            }
            Err(e) => {
                self.spec_error(raw, "E0021", e);
                None
            }
        }
    }

    /// Domain, pool and system names: DNS-label-like (RFC 1123), because they become DT node names,
    /// xenstore names and console prefixes.
    fn name(&mut self, raw: &Spanned<String>, what: &str) -> At<String> {
        let n = raw.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !ok {
            let suggestion: String = n
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
                .trim_matches('-')
                .chars()
                .take(63)
                .collect();
            let mut d = Diagnostic::error("E0012", format!("`{n}` is not a valid {what} name"))
                .at(raw.span(), "names are 1-63 lowercase letters, digits and '-', not starting or ending with '-'")
                .note("names become device-tree node names, xenstore names and console prefixes");
            if !suggestion.is_empty() {
                d = d.help(format!("try `{suggestion}`"));
            }
            self.diags.push(d);
        }
        At::from(raw)
    }

    fn size(&mut self, raw: &Spanned<Quantity>) -> At<u64> {
        match parse_size(&raw.get_ref().0) {
            Ok(v) => At::new(v, raw.span()),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("E0013", format!("invalid size: {e}"))
                        .at(raw.span(), "expected e.g. \"256M\", \"1G\" or a byte count")
                        .help("units are binary: K = 1024, M = 1024 K, G = 1024 M"),
                );
                At::new(0, raw.span())
            }
        }
    }

    fn address(&mut self, raw: &Spanned<Quantity>) -> At<u64> {
        match parse_size(&raw.get_ref().0) {
            Ok(v) => At::new(v, raw.span()),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("E0014", format!("invalid address: {e}"))
                        .at(raw.span(), "expected e.g. \"0x60000000\""),
                );
                At::new(0, raw.span())
            }
        }
    }

    fn dt_path(&mut self, raw: &Spanned<String>) -> At<String> {
        let p = raw.get_ref();
        if !p.starts_with('/') || p.len() > 1 && p.ends_with('/') || p.contains("//") {
            self.diags.push(
                Diagnostic::error("E0015", format!("`{p}` is not a device-tree path"))
                    .at(
                        raw.span(),
                        "expected an absolute path such as \"/pl031@9010000\"",
                    )
                    .help("list the board's devices with `domforge inspect --board <board>`"),
            );
        }
        At::from(raw)
    }

    fn pci(&mut self, raw: &Spanned<String>) -> Option<At<PciAddress>> {
        match parse_pci(raw.get_ref()) {
            Some(a) => Some(At::new(a, raw.span())),
            None => {
                self.diags.push(
                    Diagnostic::error("E0016", format!("`{}` is not a PCI address", raw.get_ref()))
                        .at(
                            raw.span(),
                            "expected `SSSS:BB:DD.F` or `BB:DD.F` (hexadecimal, function 0-7)",
                        ),
                );
                None
            }
        }
    }

    fn iomem(&mut self, raw: &Spanned<String>) -> Option<At<IomemGrant>> {
        match parse_iomem(raw.get_ref()) {
            Ok(g) => Some(At::new(g, raw.span())),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("E0017", format!("invalid iomem grant: {e}"))
                        .at(raw.span(), "expected xl's \"IOMEM_START,NUM_PAGES[@GFN]\" in hex page frames")
                        .help("e.g. \"9010,1\" grants the page at 0x9010000; prefer `passthrough` with a DT path"),
                );
                None
            }
        }
    }

    fn cpu_list(&mut self, raw: &Spanned<String>) -> At<CpuSet> {
        match parse_cpu_list(raw.get_ref()) {
            Ok(set) => At::new(set, raw.span()),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("E0018", format!("invalid cpu list: {e}")).at(
                        raw.span(),
                        "expected xl's cpu-list syntax, e.g. \"0-3\" or \"1,4-7\"",
                    ),
                );
                At::new(CpuSet(Vec::new()), raw.span())
            }
        }
    }
}

fn convert_role(r: RawRole) -> Role {
    match r {
        RawRole::App => Role::App,
        RawRole::Driver => Role::Driver,
        RawRole::Control => Role::Control,
        RawRole::Hardware => Role::Hardware,
        RawRole::Xenstore => Role::Xenstore,
    }
}

/// `SSSS:BB:DD.F` or `BB:DD.F`, hexadecimal (the `BDF` notation of xl-pci-configuration(5)).
pub fn parse_pci(text: &str) -> Option<PciAddress> {
    let (rest, function) = text.trim().rsplit_once('.')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (segment, bus, device) = match parts.as_slice() {
        [seg, bus, dev] => (u16::from_str_radix(seg, 16).ok()?, *bus, *dev),
        [bus, dev] => (0, *bus, *dev),
        _ => return None,
    };
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let device = u8::from_str_radix(device, 16).ok()?;
    let function = function.parse::<u8>().ok()?;
    (device < 32 && function < 8).then_some(PciAddress {
        segment,
        bus,
        device,
        function,
    })
}

/// xl.cfg(5) `iomem = [ "IOMEM_START,NUM_PAGES[@GFN]" ]`: hexadecimal page frame numbers.
pub fn parse_iomem(text: &str) -> Result<IomemGrant, String> {
    let (start, rest) = text.trim().split_once(',').ok_or("missing `,NUM_PAGES`")?;
    let (pages, gfn) = match rest.split_once('@') {
        Some((p, g)) => (p, Some(g)),
        None => (rest, None),
    };
    let hex = |s: &str| {
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        u64::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a hexadecimal number"))
    };
    let first_mfn = hex(start)?;
    let nr_pages = hex(pages)?;
    if nr_pages == 0 {
        return Err("NUM_PAGES must be at least 1".to_owned());
    }
    let guest_frame = match gfn {
        Some(g) => hex(g)?,
        None => first_mfn,
    };
    let last = |f: u64| {
        f.checked_add(nr_pages)
            .and_then(|e| e.checked_mul(PAGE_SIZE))
    };
    if last(first_mfn).is_none() || last(guest_frame).is_none() {
        return Err("the range does not fit in the 64-bit address space".to_owned());
    }
    Ok(IomemGrant {
        first_mfn,
        nr_pages,
        guest_frame,
    })
}

/// xl's cpu-list: comma-separated CPU numbers and inclusive ranges.
pub fn parse_cpu_list(text: &str) -> Result<CpuSet, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("`{part}` is not a CPU number or range"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("`{part}` is not a CPU number or range"))?;
        if a > b {
            return Err(format!("range `{part}` runs backwards"));
        }
        if b >= 4096 {
            return Err(format!("CPU {b} is beyond any board"));
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuSet(cpus))
}

#[cfg(test)]
mod tests;
