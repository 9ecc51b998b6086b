//! What each domain must see, derived from the plan — never from hand-written strings.
//!
//! For every domain that runs the probe guest (`ramdisk = "builtin:probe"`):
//! - it boots and its report is complete (`begin` … `end`, no line lost);
//! - `cpus.online` equals its vCPUs;
//! - its `System RAM` ranges (`/proc/iomem`) equal the plan's guest RAM banks exactly — for
//!   dom0less guests Xen writes the banks the plan computed into the guest's `/memory` node;
//! - `MemTotal` lies in `[memory − tolerance, memory]` ([`mem_total_tolerance`]);
//! - a `/hypervisor` node exists exactly when Xen promises one: always for dom0, for a dom0less
//!   domU only with `xen,enhanced` (Xen `docs/misc/arm/device-tree/booting.txt`; 4.17
//!   `domain_build.c` writes it only with `DOM0LESS_ENHANCED_NO_XS` set);
//! - every device it owns is present and passes the probe's functional check;
//! - every device another domain owns is absent, and touching its address faults.
//!
//! The probe learns which devices to check from its kernel command line; [`probe_cmdline`]
//! writes those knobs and [`apply_probe_cmdlines`] appends them to the plan *before* the host
//! device tree is written (the command line lives in the DTB's `bootargs`).

use firmware_config::board::Region;
use firmware_config::manifest::{DomainKind, Enhanced};
use firmware_config::plan::{DevicePlan, SystemPlan};
use firmware_config::units::{MIB, human_size};
use probe::ProbeReport;
use std::fmt;

/// The source string of the probe initramfs in a manifest.
pub const PROBE_SOURCE: &str = "builtin:probe";

/// A device as the probe names it: `<kind>@<guest-physical address, lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct DeviceSpec {
    /// Probe kind (`pl031`, `pl061`, `virtio-blk`, or the node name for presence-only checks).
    pub kind: String,
    /// The address at which this domain would reach the device.
    pub addr: u64,
    /// The board's device-tree path.
    pub path: String,
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:x}", self.kind, self.addr)
    }
}

/// The probe kind for a device: the ones with a functional check in the probe's `/init`
/// (`probe/src/probe_init.sh`, `functional_check`), else the node name (presence only).
fn probe_kind(dev: &DevicePlan) -> String {
    for c in &dev.compatible {
        match c.as_str() {
            "arm,pl031" => return "pl031".into(),
            "arm,pl061" => return "pl061".into(),
            // On QEMU the only virtio-mmio device a scenario attaches is a disk.
            "virtio,mmio" => return "virtio-blk".into(),
            _ => {}
        }
    }
    let node = dev.path.rsplit('/').next().unwrap_or(&dev.path);
    let name = node.split('@').next().unwrap_or(node);
    let kind: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if kind.is_empty() {
        "device".into()
    } else {
        kind
    }
}

/// The host address in the node's unit address (`/pl031@9010000` → 0x9010000), else the first
/// mapping's host address.
fn host_addr(dev: &DevicePlan) -> Option<u64> {
    let node = dev.path.rsplit('/').next()?;
    node.split_once('@')
        .and_then(|(_, unit)| u64::from_str_radix(unit.split(',').next()?, 16).ok())
        .or_else(|| dev.mappings.first().map(|m| m.host))
}

/// The spec under which the owner checks the device: at its guest address (the passthrough
/// fragment names the node after the guest address, `device-tree/src/passthrough.rs`).
pub fn owned_spec(dev: &DevicePlan) -> Option<DeviceSpec> {
    let host = host_addr(dev)?;
    let guest = dev
        .mappings
        .iter()
        .find_map(|m| {
            let off = host.checked_sub(m.host)?;
            (off < m.size).then(|| m.guest.checked_add(off)).flatten()
        })
        .unwrap_or(host);
    Some(DeviceSpec {
        kind: probe_kind(dev),
        addr: guest,
        path: dev.path.clone(),
    })
}

/// The spec under which a non-owner checks the device: the physical address, which a domain
/// without a mapping must not reach.
pub fn denied_spec(dev: &DevicePlan) -> Option<DeviceSpec> {
    Some(DeviceSpec {
        kind: probe_kind(dev),
        addr: host_addr(dev)?,
        path: dev.path.clone(),
    })
}

/// What one domain must report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Expectation {
    /// Domain name (`dom0` for dom0).
    pub name: String,
    /// Whether it runs the probe guest (only then can its view be checked).
    pub probe: bool,
    /// vCPUs.
    pub vcpus: u32,
    /// RAM in bytes.
    pub memory: u64,
    /// Guest-physical RAM banks; empty when Xen chooses them (dom0 is mapped 1:1 wherever Xen
    /// finds RAM).
    pub guest_ram: Vec<Region>,
    /// Whether the guest gets a `/hypervisor` node.
    pub hypervisor_node: bool,
    /// The line an owned virtio-blk disk must read back (`<dev> DOMFORGE-DISK <system>`): the disk
    /// `domforge build` attaches on QEMU boards when a domain owns a virtio-mmio transport. Reading it
    /// proves the device's DMA reaches the guest's memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_marker: Option<String>,
    /// Devices it owns.
    pub owned: Vec<DeviceSpec>,
    /// Devices other domains own.
    pub denied: Vec<DeviceSpec>,
}

/// How far below the assigned RAM Linux's `MemTotal` may be.
///
/// `MemTotal` excludes what the kernel reserves before the page allocator starts: its own image
/// (code, data, bss and init — Debian 6.1 arm64: 13248K+2806K+9524K+6464K+627K ≈ 32 MiB, of which
/// init is freed again), the `struct page` array (64 bytes per 4 KiB page = 1/64 of RAM) and
/// early allocations. Measured on Debian 6.1 arm64 dom0less guests: 128 MiB → 28 MiB less,
/// 192 MiB → 26.7 MiB, 256 MiB → 25 MiB. The bound allows 1/32 of RAM plus 48 MiB, which is
/// about twice what was seen; the exact check is the RAM banks, this one catches a wrong size
/// where the banks are not known (dom0).
pub fn mem_total_tolerance(memory: u64) -> u64 {
    (memory / 32).saturating_add(48 * MIB)
}

/// The RAM an x86 Linux guest lists as `System RAM` for the banks it was given: Linux itself takes
/// out the first page and the legacy BIOS area 640 KiB–1 MiB, whatever the e820 says
/// (`arch/x86/kernel/setup.c`, `trim_bios_range()`: `e820__range_update(0, PAGE_SIZE, RAM,
/// RESERVED)` and `e820__range_remove(BIOS_BEGIN 0xa0000, BIOS_END 0x100000 - BIOS_BEGIN, RAM)`).
pub fn x86_linux_visible_ram(banks: &[Region]) -> Vec<Region> {
    const HOLES: [(u64, u64); 2] = [(0, 0x1000), (0xa_0000, 0x10_0000)];
    let mut out = Vec::new();
    for b in banks {
        let Some(end) = b.end() else { continue };
        let mut start = b.base;
        for (h0, h1) in HOLES {
            if h1 <= start || h0 >= end {
                continue;
            }
            if h0 > start {
                out.push(Region::new(start, h0 - start));
            }
            start = start.max(h1);
        }
        if start < end {
            out.push(Region::new(start, end - start));
        }
    }
    out
}

fn uses_probe(plan: &SystemPlan, ramdisk: Option<&String>) -> bool {
    ramdisk.is_some_and(|r| {
        r == PROBE_SOURCE || plan.module(r).is_some_and(|m| m.source == PROBE_SOURCE)
    })
}

/// Every domain's expectation: dom0 first (if any), then the domains in boot order.
pub fn expectations(plan: &SystemPlan) -> Vec<Expectation> {
    let all_devices: Vec<(&str, &DevicePlan)> = plan
        .domains
        .iter()
        .flat_map(|d| d.devices.iter().map(move |dev| (d.name.as_str(), dev)))
        .collect();
    let denied_for = |name: &str| -> Vec<DeviceSpec> {
        let mut v: Vec<DeviceSpec> = all_devices
            .iter()
            .filter(|(owner, _)| *owner != name)
            .filter_map(|(_, dev)| denied_spec(dev))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut out = Vec::new();
    if let Some(d0) = &plan.dom0 {
        out.push(Expectation {
            name: crate::console::DOM0_NAME.to_string(),
            disk_marker: None,
            probe: uses_probe(plan, d0.ramdisk.as_ref()),
            vcpus: d0.vcpus,
            memory: d0.memory,
            guest_ram: Vec::new(),
            hypervisor_node: true,
            owned: Vec::new(),
            denied: denied_for(crate::console::DOM0_NAME),
        });
    }
    for d in &plan.domains {
        out.push(Expectation {
            name: d.name.clone(),
            disk_marker: d
                .devices
                .iter()
                .any(|dev| dev.compatible.iter().any(|c| c == "virtio,mmio"))
                .then(|| format!("vda {}", crate::disk::MarkerDisk::marker_for(&plan.name))),
            probe: uses_probe(plan, d.ramdisk.as_ref()),
            vcpus: d.vcpus,
            memory: d.memory,
            guest_ram: match d.kind {
                DomainKind::Pvh => x86_linux_visible_ram(&d.guest_ram),
                _ => d.guest_ram.clone(),
            },
            // Xen's dom0less builder writes `/hypervisor` only for `xen,enhanced` domains; a
            // toolstack-built ARM guest always gets one (`make_hypervisor_node()` in libxl_arm.c,
            // and domctl's ARM builder after it). PVH guests have no device tree.
            hypervisor_node: (d.kind == DomainKind::Arm64
                && d.builder == firmware_config::manifest::Builder::Init)
                || matches!(
                    d.enhanced,
                    Some(Enhanced::Enabled | Enhanced::NoXenstore | Enhanced::Legacy)
                ),
            owned: d.devices.iter().filter_map(owned_spec).collect(),
            denied: denied_for(&d.name),
        });
    }
    out
}

fn spec_list(specs: &[DeviceSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The probe knobs for one expectation: `domforge.name=… [domforge.expect_devices=…]
/// [domforge.deny_devices=…]` (format: `probe/src/lib.rs`).
pub fn probe_knobs(e: &Expectation) -> String {
    let mut s = format!("domforge.name={}", e.name);
    if !e.owned.is_empty() {
        s.push_str(" domforge.expect_devices=");
        s.push_str(&spec_list(&e.owned));
    }
    if !e.denied.is_empty() {
        s.push_str(" domforge.deny_devices=");
        s.push_str(&spec_list(&e.denied));
    }
    s
}

/// The probe knobs for `domain` (`dom0` for dom0), or `None` when no such domain runs the probe.
pub fn probe_cmdline(plan: &SystemPlan, domain: &str) -> Option<String> {
    expectations(plan)
        .into_iter()
        .find(|e| e.name == domain && e.probe)
        .map(|e| probe_knobs(&e))
}

/// `cmdline` without any `domforge.*` knob, with `knobs` appended.
fn with_knobs(cmdline: &str, knobs: &str) -> String {
    // The runner owns the knobs that say what to check; `domforge.crash=` is the manifest's own
    // request (a guest told to crash, to exercise on_crash) and stays.
    let mut words: Vec<&str> = cmdline
        .split_whitespace()
        .filter(|w| !w.starts_with("domforge.") || w.starts_with("domforge.crash="))
        .collect();
    words.push(knobs);
    words.join(" ")
}

/// Appends each probe domain's knobs to its kernel command line in the plan (replacing any
/// `domforge.*` words the manifest wrote), so the host DTB built from the plan tells every probe
/// what to check. Call before building. Domains without the probe are left alone.
pub fn apply_probe_cmdlines(plan: &mut SystemPlan) {
    let exps = expectations(plan);
    apply_knobs(plan, &exps);
}

/// [`apply_probe_cmdlines`] with the knobs of the given expectations (a test that changes an
/// expectation — an extra device to look for — changes what the probe checks as well).
pub fn apply_knobs(plan: &mut SystemPlan, exps: &[Expectation]) {
    let knobs = |name: &str| {
        exps.iter()
            .find(|e| e.name == name && e.probe)
            .map(probe_knobs)
    };
    if let Some(k) = knobs(crate::console::DOM0_NAME)
        && let Some(d0) = plan.dom0.as_mut()
    {
        d0.cmdline = with_knobs(&d0.cmdline, &k);
    }
    for d in &mut plan.domains {
        if let Some(k) = knobs(&d.name) {
            d.cmdline = with_knobs(&d.cmdline, &k);
        }
    }
}

/// One way in which a domain's view differs from the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// What was checked (`vcpus`, `ram`, `mem-total`, `hypervisor`, `device pl031@9010000`, …).
    pub check: String,
    /// What the manifest promises.
    pub expected: String,
    /// What the guest reported.
    pub seen: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, the guest sees {}",
            self.check, self.expected, self.seen
        )
    }
}

fn diff(
    check: impl Into<String>,
    expected: impl Into<String>,
    seen: impl Into<String>,
) -> Difference {
    Difference {
        check: check.into(),
        expected: expected.into(),
        seen: seen.into(),
    }
}

fn ranges_text(r: &[(u64, u64)]) -> String {
    if r.is_empty() {
        return "no System RAM".into();
    }
    let total: u64 = r
        .iter()
        .map(|(s, e)| e.saturating_sub(*s).saturating_add(1))
        .fold(0, u64::saturating_add);
    format!(
        "{} ({})",
        r.iter()
            .map(|(s, e)| format!("{s:#x}-{e:#x}"))
            .collect::<Vec<_>>()
            .join(", "),
        human_size(total)
    )
}

/// Whether a denied device's `devmem` outcome shows the access faulted. The probe prints
/// `fault` for SIGBUS/SIGSEGV; on Xen 4.17 arm64 the reading process was seen killed with
/// SIGKILL instead (`error:137`: Linux kills a user task on an SError, `arch/arm64/kernel/traps.c`
/// `do_serror`), which is a fault as well. Any exit by a signal other than the timeout's SIGTERM
/// counts; a value read or a timeout does not.
pub fn devmem_faulted(value: &str) -> bool {
    if value == "fault" {
        return true;
    }
    let Some(rest) = value.strip_prefix("error:") else {
        return false;
    };
    let rc: u32 = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (129..=159).contains(&rc) && rc != 143
}

/// Compares a report with the expectation; empty means the domain sees what the plan says.
pub fn check(e: &Expectation, r: &ProbeReport) -> Vec<Difference> {
    let mut out = Vec::new();
    if let Err(err) = r.check_complete() {
        out.push(diff("report", "a complete probe report", err.to_string()));
    }
    match r.cpus_online() {
        Some(n) if n == u64::from(e.vcpus) => {}
        seen => out.push(diff(
            "vcpus",
            format!(
                "{} online CPU{}",
                e.vcpus,
                if e.vcpus == 1 { "" } else { "s" }
            ),
            seen.map_or("no cpus.online line".into(), |n| format!("{n}")),
        )),
    }
    if !e.guest_ram.is_empty() {
        let want: Vec<(u64, u64)> = e
            .guest_ram
            .iter()
            .map(|b| (b.base, b.base.saturating_add(b.size).saturating_sub(1)))
            .collect();
        let seen = r.ram_ranges();
        if seen != want {
            out.push(diff(
                "ram",
                format!("{} as {}", human_size(e.memory), ranges_text(&want)),
                ranges_text(&seen),
            ));
        }
    }
    let tol = mem_total_tolerance(e.memory);
    match r.mem_total_kb().and_then(|kb| kb.checked_mul(1024)) {
        Some(total) if total <= e.memory && total >= e.memory.saturating_sub(tol) => {}
        seen => out.push(diff(
            "mem-total",
            format!(
                "MemTotal between {} and {} ({} minus what Linux reserves)",
                human_size(e.memory.saturating_sub(tol)),
                human_size(e.memory),
                human_size(e.memory)
            ),
            seen.map_or("no mem.total_kb line".into(), |b| {
                format!("MemTotal {}", human_size(b))
            }),
        )),
    }
    let compat = r.get("hypervisor.compatible");
    let has_xen_node = compat.is_some_and(|c| c.split(' ').any(|s| s.starts_with("xen,xen")));
    if e.hypervisor_node != has_xen_node {
        out.push(diff(
            "hypervisor",
            if e.hypervisor_node {
                "a /hypervisor node compatible with \"xen,xen\""
            } else {
                "no /hypervisor node (not xen,enhanced)"
            },
            compat.map_or("no /hypervisor node".into(), |c| {
                format!("/hypervisor compatible \"{c}\"")
            }),
        ));
    }
    for d in &e.owned {
        if r.device(&d.to_string(), "verdict") != Some("ok") {
            let field = |f: &str| r.device(&d.to_string(), f).unwrap_or("?").to_string();
            out.push(diff(
                format!("device {d} ({})", d.path),
                "owned: present and working",
                if r.device(&d.to_string(), "role").is_none() {
                    "no report for it".into()
                } else {
                    format!(
                        "present={} driver={} check={}{}",
                        field("present"),
                        field("driver"),
                        field("check"),
                        r.device(&d.to_string(), "value")
                            .map_or(String::new(), |v| format!(" value={v}"))
                    )
                },
            ));
        }
    }
    if let Some(marker) = &e.disk_marker {
        let read = e
            .owned
            .iter()
            .filter(|d| d.kind == "virtio-blk")
            .filter_map(|d| r.device(&d.to_string(), "value"))
            .collect::<Vec<_>>();
        if !read.iter().any(|v| v == marker) {
            out.push(diff(
                "virtio-blk disk".to_string(),
                format!("reads \"{marker}\" through DMA"),
                if read.is_empty() {
                    "no value reported".to_string()
                } else {
                    format!("read \"{}\"", read.join("\", \""))
                },
            ));
        }
    }
    for d in &e.denied {
        let spec = d.to_string();
        let verdict = r.device(&spec, "verdict");
        let devmem = r.device(&spec, "devmem");
        let ok = verdict == Some("ok") && devmem.is_some_and(devmem_faulted);
        if !ok {
            out.push(diff(
                format!("device {d} ({}) owned by another domain", d.path),
                "absent, and reading its address faults",
                if r.device(&spec, "role").is_none() {
                    "no report for it".into()
                } else {
                    format!(
                        "present={} devmem={}",
                        r.device(&spec, "present").unwrap_or("?"),
                        devmem.unwrap_or("?")
                    )
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_config::plan::Mapping;

    fn pl031() -> DevicePlan {
        DevicePlan {
            path: "/pl031@9010000".into(),
            compatible: vec!["arm,pl031".into(), "arm,primecell".into()],
            mappings: vec![Mapping {
                host: 0x901_0000,
                guest: 0x901_0000,
                size: 0x1000,
            }],
            irqs: vec![34],
            behind_iommu: false,
            forced: true,
            relocated: false,
        }
    }

    #[test]
    fn device_specs_follow_the_probe_format() {
        let d = pl031();
        assert_eq!(
            owned_spec(&d).map(|s| s.to_string()).as_deref(),
            Some("pl031@9010000")
        );
        // A relocated virtio-mmio transport: the owner sees it at the guest address, with the
        // offset inside the page kept (the fragment node is named so).
        let v = DevicePlan {
            path: "/virtio_mmio@a003e00".into(),
            compatible: vec!["virtio,mmio".into()],
            mappings: vec![Mapping {
                host: 0xa00_3000,
                guest: 0x500_0000,
                size: 0x1000,
            }],
            irqs: vec![79],
            behind_iommu: false,
            forced: true,
            relocated: true,
        };
        assert_eq!(
            owned_spec(&v).map(|s| s.to_string()).as_deref(),
            Some("virtio-blk@5000e00")
        );
        assert_eq!(
            denied_spec(&v).map(|s| s.to_string()).as_deref(),
            Some("virtio-blk@a003e00")
        );
        let other = DevicePlan {
            path: "/soc/serial@fe201000".into(),
            compatible: vec!["brcm,bcm2835-uart".into()],
            ..pl031()
        };
        assert_eq!(
            denied_spec(&other).map(|s| s.to_string()).as_deref(),
            Some("serial@fe201000")
        );
    }

    #[test]
    fn knobs_replace_manifest_words() {
        assert_eq!(
            with_knobs("console=ttyAMA0 domforge.name=x  quiet", "domforge.name=y"),
            "console=ttyAMA0 quiet domforge.name=y"
        );
    }

    #[test]
    fn devmem_outcomes() {
        assert!(devmem_faulted("fault"));
        assert!(devmem_faulted("error:137 Killed"));
        assert!(devmem_faulted("error:135 Bus error"));
        assert!(!devmem_faulted("error:143 Terminated"));
        assert!(!devmem_faulted("value:0x00000000"));
        assert!(!devmem_faulted("timeout"));
        assert!(!devmem_faulted("error:1 devmem: mmap: Permission denied"));
        assert!(!devmem_faulted("trying"));
    }

    fn report(lines: &str) -> ProbeReport {
        let mut r = ProbeReport::collect(lines.lines());
        r.remove("t").unwrap_or_default()
    }

    // The report lines are those app-2 printed on a real boot (Xen 4.17.7, Debian 6.1 kernel,
    // 1 vCPU, 192 MiB, PL031 owned by another domain), with `end` recounted.
    const APP2: &str = "\
DOMFORGE-PROBE t begin=1
DOMFORGE-PROBE t cpus.online=1
DOMFORGE-PROBE t mem.total_kb=165152
DOMFORGE-PROBE t mem.ram.0=40000000-4bffffff
DOMFORGE-PROBE t mem.ram.count=1
DOMFORGE-PROBE t hypervisor=none
DOMFORGE-PROBE t dev.pl031@9010000.role=deny
DOMFORGE-PROBE t dev.pl031@9010000.present=no
DOMFORGE-PROBE t dev.pl031@9010000.devmem=trying
DOMFORGE-PROBE t dev.pl031@9010000.devmem=error:137 Killed
DOMFORGE-PROBE t dev.pl031@9010000.verdict=ok
DOMFORGE-PROBE t end=11";

    fn app2() -> Expectation {
        Expectation {
            name: "t".into(),
            disk_marker: None,
            probe: true,
            vcpus: 1,
            memory: 192 * MIB,
            guest_ram: vec![Region::new(0x4000_0000, 192 * MIB)],
            hypervisor_node: false,
            owned: vec![],
            denied: owned_spec(&pl031()).into_iter().collect(),
        }
    }

    #[test]
    fn a_matching_report_passes() {
        assert_eq!(check(&app2(), &report(APP2)), vec![]);
    }

    #[test]
    fn wrong_ram_vcpus_and_devices_are_named() {
        let mut e = app2();
        e.memory = 256 * MIB;
        e.guest_ram = vec![Region::new(0x4000_0000, 256 * MIB)];
        e.vcpus = 2;
        e.owned = vec![DeviceSpec {
            kind: "pl061".into(),
            addr: 0x903_0000,
            path: "/pl061@9030000".into(),
        }];
        let d = check(&e, &report(APP2));
        let checks: Vec<&str> = d.iter().map(|x| x.check.as_str()).collect();
        assert_eq!(
            checks,
            [
                "vcpus",
                "ram",
                "mem-total",
                "device pl061@9030000 (/pl061@9030000)"
            ]
        );
        assert_eq!(d[1].seen, "0x40000000-0x4bffffff (192 MiB)");
        assert!(
            d[1].expected
                .starts_with("256 MiB as 0x40000000-0x4fffffff")
        );
        assert_eq!(d[3].seen, "no report for it");
        // MemTotal far below the assignment is caught even without known banks.
        e.guest_ram.clear();
        e.memory = 1024 * MIB;
        assert!(
            check(&e, &report(APP2))
                .iter()
                .any(|x| x.check == "mem-total")
        );
    }

    #[test]
    fn a_reachable_denied_device_fails() {
        let text = APP2.replace("devmem=error:137 Killed", "devmem=value:0x00000000");
        let d = check(&app2(), &report(&text));
        assert_eq!(d.len(), 1);
        assert!(d[0].seen.contains("devmem=value:0x00000000"), "{:?}", d[0]);
        let lost = APP2.replace("end=11", "end=12");
        assert_eq!(check(&app2(), &report(&lost))[0].check, "report");
    }

    #[test]
    fn x86_guests_lose_page_zero_and_the_bios_area() {
        // What Debian 6.1 PVH guests of 256 and 192 MiB listed in /proc/iomem under domforge-init.
        assert_eq!(
            x86_linux_visible_ram(&[Region::new(0, 256 * MIB)]),
            vec![
                Region::new(0x1000, 0x9_f000),
                Region::new(0x10_0000, 256 * MIB - 0x10_0000)
            ]
        );
        let high = Region::new(0x1_0000_0000, 512 * MIB);
        assert_eq!(x86_linux_visible_ram(&[high]), vec![high]);
    }
}
