//! Properties of every plan of a valid manifest, and of every refusal of an invalid one.
//!
//! Manifests are generated as TOML text (so the whole front end runs: parse, validate, plan) for the
//! hand-made QEMU virt inventories in `fuzz/common/fixtures.rs`, which are typed from QEMU's own
//! `dumpdtb` output. The expected facts come from the manifest, the inventory and Xen's guest memory
//! map (`xen/include/public/arch-arm.h`, via `guest_map`), never from the planner's output:
//!
//! - no two boot modules overlap; each lies inside a RAM bank, clear of reserved memory, static
//!   memory and shared memory; each module the loader places (all but Xen) lies inside the board's
//!   module window, and none overlaps Xen's load region;
//! - each domain's guest RAM adds up to its `memory`, and (unless direct-mapped) stays clear of the
//!   fixed guest regions; a direct-mapped domain's guest RAM is exactly its static memory;
//! - device mappings are page aligned, cover the device's registers, and (unless direct-mapped) stay
//!   clear of guest RAM, the fixed regions and each other;
//! - every interrupt belongs to at most one domain, and a domain owns exactly its devices' SPIs;
//! - planning twice gives identical JSON, and the plan's boot blob decodes to what was encoded.
//!
//! A second property breaks valid manifests (targeted faults and random text edits) and checks that
//! whatever the validator refuses comes back as errors, at least one of them pointing into the text,
//! with no panic on the way.

#[path = "../fuzz/common/fixtures.rs"]
mod fixtures;

use firmware_config::blob;
use firmware_config::board::{Board, HardwareInventory, Region};
use firmware_config::diag::{Diagnostics, SourceId};
use firmware_config::guest_map;
use firmware_config::manifest::{Console, Manifest};
use firmware_config::plan::{self, ModuleKind, SystemPlan};
use firmware_config::units::{MIB, PAGE_SIZE};
use firmware_config::validate::CheckInput;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const KERNELS: &[&str] = &["debian:kernel", "kernels/a.Image", "kernels/b.Image"];
const RAMDISKS: &[&str] = &["builtin:probe", "initrd/probe.cpio"];
/// Sum of all domains' `memory` stays under this, so the system always fits 2 GiB of RAM with Xen's
/// 128 MiB, the 32 MiB carve-out and the P2M pools.
const DOMAIN_BUDGET: u64 = 1024 * MIB;
/// Static memory starts 320 MiB into the board's module window (which begins at 0x48200000, above
/// Xen and QEMU's DTB), so the modules always keep room below it: at most 3 kernels and 2 ramdisks
/// of ~40 MiB each and one 2 MiB passthrough DTB per domain.
const STATIC_FLOOR: u64 = 0x4820_0000 + 320 * MIB;

#[derive(Debug, Clone)]
struct DomainSpec {
    memory_2m: u64,
    vcpus: u32,
    kernel: usize,
    ramdisk: Option<usize>,
    cmdline: bool,
    /// Static memory: gap (in 2 MiB units) after the previous range, and whether to split it in two.
    static_memory: Option<(u64, bool)>,
    direct_map: bool,
}

#[derive(Debug, Clone)]
struct SystemSpec {
    smmu_board: bool,
    xen_minor: u8,
    domains: Vec<DomainSpec>,
    /// Per passable device, the domain (index modulo the domain count) that owns it, if any.
    owners: Vec<Option<usize>>,
    /// Static memory starts this many 2 MiB steps above [`STATIC_FLOOR`].
    static_start_2m: u64,
    shared_memory: Option<ShmSpec>,
}

/// One `[[shared_memory]]` region between dom0less domains.
#[derive(Debug, Clone)]
struct ShmSpec {
    size_2m: u64,
    /// Index into [`SHM_GUEST_ADDRESSES`].
    guest: usize,
    owner: usize,
    /// Bit i: domain i borrows it (the owner's bit is ignored).
    borrowers: u8,
    /// Give a host address (placed after the static memory); without one needs Xen 4.19.
    host: bool,
}

/// Guest addresses for shared memory that clear guest RAM and Xen's fixed regions. The first two lie
/// in the hole the planner relocates colliding devices into (`plan::GUEST_DEVICE_HOLE`, 0x05000000..
/// 0x10000000), so relocation must go around them.
const SHM_GUEST_ADDRESSES: &[u64] = &[0x0500_0000, 0x0600_0000, 0x1000_0000, 0x3a00_0000];

/// Case count: the default, or `PROPTEST_CASES` for a longer local run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn domain_spec() -> impl Strategy<Value = DomainSpec> {
    (
        // 16 MiB and 512 MiB, the bounds, get extra weight.
        prop_oneof![1 => Just(8u64), 1 => Just(256u64), 6 => 8u64..=256],
        1u32..=2,
        0..KERNELS.len(),
        proptest::option::of(0..RAMDISKS.len()),
        any::<bool>(),
        proptest::option::weighted(0.4, (0u64..64, any::<bool>())),
        any::<bool>(),
    )
        .prop_map(
            |(memory_2m, vcpus, kernel, ramdisk, cmdline, static_memory, direct_map)| DomainSpec {
                memory_2m,
                vcpus,
                kernel,
                ramdisk,
                cmdline,
                static_memory,
                direct_map,
            },
        )
}

fn shm_spec() -> impl Strategy<Value = ShmSpec> {
    (
        1u64..=8,
        0..SHM_GUEST_ADDRESSES.len(),
        0usize..6,
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(size_2m, guest, owner, borrowers, host)| ShmSpec {
            size_2m,
            guest,
            owner,
            borrowers,
            host,
        })
}

fn system_spec() -> impl Strategy<Value = SystemSpec> {
    (
        any::<bool>(),
        17u8..=22,
        proptest::collection::vec(domain_spec(), 1..=6),
        proptest::collection::vec(proptest::option::weighted(0.5, 0usize..6), 10),
        0u64..256,
        proptest::option::weighted(0.3, shm_spec()),
    )
        .prop_map(
            |(smmu_board, xen_minor, domains, owners, static_start_2m, shared_memory)| SystemSpec {
                smmu_board,
                xen_minor,
                domains,
                owners,
                static_start_2m,
                shared_memory,
            },
        )
}

/// Devices a guest may own on the chosen inventory, as groups that must go to one domain together
/// (the SMMU board's ethernet needs its clock controller).
fn passable(smmu_board: bool) -> Vec<Vec<&'static str>> {
    let mut groups: Vec<Vec<&str>> = fixtures::PASSABLE_DEVICES
        .iter()
        .map(|d| vec![*d])
        .collect();
    if smmu_board {
        groups.push(vec!["/ethernet@9080000", "/clock-controller@9070000"]);
        // Its registers sit on the guest GIC distributor: non-direct-mapped guests get it relocated.
        groups.push(vec!["/sram@3000800"]);
    }
    groups
}

/// A generated manifest with what the generator decided, for the checks.
struct Generated {
    text: String,
    smmu_board: bool,
    /// Static ranges per domain name.
    statics: BTreeMap<String, Vec<Region>>,
    /// Shared memory: host range (if any), guest range, member domain names.
    shm: Option<(Option<Region>, Region, Vec<String>)>,
}

fn render(spec: &SystemSpec) -> Generated {
    let n = spec.domains.len() as u64;
    let cap_2m = (DOMAIN_BUDGET / n / (2 * MIB)).max(8);
    let mut statics: BTreeMap<String, Vec<Region>> = BTreeMap::new();
    let mut cursor = STATIC_FLOOR + spec.static_start_2m * 2 * MIB;
    let ram_end = fixtures::VIRT_RAM.end().unwrap_or(u64::MAX);
    let mut owned: Vec<Vec<&str>> = vec![Vec::new(); spec.domains.len()];
    for (group, owner) in passable(spec.smmu_board).into_iter().zip(&spec.owners) {
        if let Some(o) = owner {
            owned[o % spec.domains.len()].extend(group);
        }
    }
    let mut domains_text = String::new();
    for (i, d) in spec.domains.iter().enumerate() {
        let name = format!("guest-{i}");
        let memory = d.memory_2m.min(cap_2m) * 2 * MIB;
        let mut ranges = Vec::new();
        if let Some((gap_2m, split)) = d.static_memory {
            // Lay ranges out upwards, skipping the SMMU board's reserved carve-out.
            let mut base = cursor + gap_2m * 2 * MIB;
            let reserved = fixtures::RESERVED;
            // A split leaves a 2 MiB hole between its halves: the ranges span memory + 2 MiB.
            let span = memory + if split { 2 * MIB } else { 0 };
            if Region::new(base, span).overlaps(&reserved) {
                base = reserved.end().unwrap_or(u64::MAX);
            }
            if base + memory <= ram_end {
                let first = if split && memory >= 4 * MIB {
                    (memory / 2) & !(2 * MIB - 1)
                } else {
                    memory
                };
                ranges.push(Region::new(base, first));
                if first < memory {
                    // Leave a 2 MiB hole so the two ranges are really two banks.
                    ranges.push(Region::new(base + first + 2 * MIB, memory - first));
                }
                let end = ranges.last().and_then(Region::end).unwrap_or(u64::MAX);
                if end <= ram_end {
                    cursor = end;
                } else {
                    ranges.clear();
                }
            }
        }
        let _ = writeln!(
            domains_text,
            "\n[[domain]]\nname = \"{name}\"\nkind = \"arm64\""
        );
        let _ = writeln!(
            domains_text,
            "vcpus = {}\nmemory = \"{}M\"",
            d.vcpus,
            memory / MIB
        );
        let _ = writeln!(domains_text, "kernel = \"{}\"", KERNELS[d.kernel]);
        if let Some(r) = d.ramdisk {
            let _ = writeln!(domains_text, "ramdisk = \"{}\"", RAMDISKS[r]);
        }
        if d.cmdline {
            let _ = writeln!(
                domains_text,
                "cmdline = \"console=ttyAMA0 domforge.name={name}\""
            );
        }
        // A DMA master forced without an IOMMU works only in a direct-mapped domain (E0248), so
        // virtio transports go to direct-mapped domains only.
        let direct_mapped = d.direct_map && !ranges.is_empty();
        owned[i].retain(|p| direct_mapped || !p.starts_with("/virtio_mmio"));
        if !owned[i].is_empty() {
            let list: Vec<String> = owned[i].iter().map(|p| format!("\"{p}\"")).collect();
            let _ = writeln!(domains_text, "passthrough = [{}]", list.join(", "));
            let _ = writeln!(domains_text, "force_without_iommu = true");
        }
        if !ranges.is_empty() {
            let list: Vec<String> = ranges
                .iter()
                .map(|r| {
                    format!(
                        "{{ base = \"{:#x}\", size = \"{}M\" }}",
                        r.base,
                        r.size / MIB
                    )
                })
                .collect();
            let _ = writeln!(domains_text, "static_memory = [{}]", list.join(", "));
            if d.direct_map {
                let _ = writeln!(domains_text, "direct_map = true");
            }
            statics.insert(name, ranges);
        }
    }
    let mut shm = None;
    if let Some(sh) = &spec.shared_memory {
        let n = spec.domains.len();
        let size = sh.size_2m * 2 * MIB;
        let owner = sh.owner % n;
        let mut members = vec![format!("guest-{owner}")];
        members.extend(
            (0..n)
                .filter(|i| *i != owner && sh.borrowers & (1 << i) != 0)
                .map(|i| format!("guest-{i}")),
        );
        // A host address goes after the static memory, clear of the carve-out; Xen 4.17 and 4.18
        // need one.
        let mut host = None;
        if sh.host || spec.xen_minor < 19 {
            let mut base = cursor.max(STATIC_FLOOR);
            if Region::new(base, size).overlaps(&fixtures::RESERVED) {
                base = fixtures::RESERVED.end().unwrap_or(u64::MAX);
            }
            if base + size <= ram_end {
                host = Some(Region::new(base, size));
            }
        }
        if host.is_some() || spec.xen_minor >= 19 {
            let guest = Region::new(SHM_GUEST_ADDRESSES[sh.guest], size);
            let _ = writeln!(
                domains_text,
                "\n[[shared_memory]]\nid = \"shm0\"\nsize = \"{}M\"",
                size / MIB
            );
            if let Some(h) = host {
                let _ = writeln!(domains_text, "host_address = \"{:#x}\"", h.base);
            }
            let borrowers: Vec<String> = members[1..].iter().map(|m| format!("\"{m}\"")).collect();
            let _ = writeln!(
                domains_text,
                "guest_address = \"{:#x}\"\nowner = \"{}\"\nborrowers = [{}]",
                guest.base,
                members[0],
                borrowers.join(", ")
            );
            shm = Some((host, guest, members));
        }
    }
    let features = if statics.is_empty() {
        ""
    } else {
        // Debian's Xen lacks CONFIG_STATIC_MEMORY (E0262): name a hypervisor built with it (the
        // fixtures give any such file an arm64 Image header, as Xen's).
        "hypervisor = \"xen-static\"\nxen_features = [\"static-memory\"]\n"
    };
    let text = format!(
        "# generated by plan_properties\n[system]\nname = \"prop\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.{}\"\n{features}{domains_text}",
        spec.xen_minor
    );
    Generated {
        text,
        smmu_board: spec.smmu_board,
        statics,
        shm,
    }
}

fn setup(smmu_board: bool) -> (Board, HardwareInventory) {
    let inv = if smmu_board {
        fixtures::iommu_inventory()
    } else {
        fixtures::qemu_virt_inventory()
    };
    (fixtures::qemu_virt_board(), inv)
}

fn describe(diags: &Diagnostics) -> String {
    diags
        .0
        .iter()
        .map(|d| {
            format!(
                "{} {} ({:?})",
                d.code,
                d.message,
                d.primary.as_ref().map(|l| &l.span)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn plan_of(
    g: &Generated,
    board: &Board,
    inv: &HardwareInventory,
) -> Result<(Manifest, SystemPlan), TestCaseError> {
    let manifest = Manifest::parse(&g.text).map_err(|d| {
        TestCaseError::fail(format!(
            "generated manifest does not parse:\n{}\n{}",
            describe(&d),
            g.text
        ))
    })?;
    let artifacts = fixtures::artifacts_for(&manifest, board.arch);
    let input = CheckInput {
        manifest: &manifest,
        board,
        inventory: inv,
        artifacts: &artifacts,
    };
    let (p, _warnings) = plan::plan(input).map_err(|d| {
        TestCaseError::fail(format!(
            "valid manifest refused:\n{}\n{}",
            describe(&d),
            g.text
        ))
    })?;
    // Deterministic: a second run gives the same JSON, byte for byte.
    let (again, _) = plan::plan(input).map_err(|d| TestCaseError::fail(describe(&d)))?;
    let json = serde_json::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let json_again =
        serde_json::to_string(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(json, json_again);
    Ok((manifest, p))
}

fn inside_some(r: &Region, banks: &[Region]) -> bool {
    banks.iter().any(|b| b.contains(r))
}

fn check_modules(
    p: &SystemPlan,
    board: &Board,
    inv: &HardwareInventory,
    g: &Generated,
) -> Result<(), TestCaseError> {
    let window = board
        .module_window
        .ok_or_else(|| TestCaseError::fail("board has no window"))?;
    let xen_load = board
        .xen_load
        .ok_or_else(|| TestCaseError::fail("board has no Xen region"))?;
    let statics: Vec<Region> = g.statics.values().flatten().copied().collect();
    let loaded: Vec<(&str, ModuleKind, Region)> = p
        .modules
        .iter()
        .map(|m| {
            m.load.map(|l| (m.id.as_str(), m.kind, l)).ok_or_else(|| {
                TestCaseError::fail(format!("module {} has no address on arm64", m.id))
            })
        })
        .collect::<Result<_, _>>()?;
    for (i, (id, kind, r)) in loaded.iter().enumerate() {
        prop_assert!(r.end().is_some(), "{} wraps", id);
        prop_assert!(inside_some(r, &inv.memory), "{} {:x?} outside RAM", id, r);
        for res in &inv.reserved {
            prop_assert!(
                !r.overlaps(&res.region),
                "{} {:x?} on reserved {}",
                id,
                r,
                res.name
            );
        }
        for s in &statics {
            prop_assert!(!r.overlaps(s), "{} {:x?} on static memory {:x?}", id, r, s);
        }
        if let Some((Some(host), _, _)) = &g.shm {
            prop_assert!(
                !r.overlaps(host),
                "{} {:x?} on shared memory {:x?}",
                id,
                r,
                host
            );
        }
        if *kind == ModuleKind::Xen {
            prop_assert!(xen_load.contains(r), "Xen {:x?} outside its load region", r);
        } else {
            prop_assert!(
                window.contains(r),
                "{} {:x?} outside the module window",
                id,
                r
            );
            prop_assert!(
                !r.overlaps(&xen_load),
                "{} {:x?} on Xen's load region",
                id,
                r
            );
            prop_assert_eq!(
                r.base % plan::MODULE_ALIGN,
                0,
                "{} is not 2 MiB aligned",
                id
            );
        }
        for (other, _, o) in &loaded[i + 1..] {
            prop_assert!(
                !r.overlaps(o),
                "modules {} {:x?} and {} {:x?} overlap",
                id,
                r,
                other,
                o
            );
        }
    }
    Ok(())
}

fn check_domains(
    p: &SystemPlan,
    m: &Manifest,
    inv: &HardwareInventory,
    g: &Generated,
) -> Result<(), TestCaseError> {
    let mut irq_owner: BTreeMap<u32, &str> = BTreeMap::new();
    prop_assert_eq!(p.domains.len(), m.domains.len());
    for d in &p.domains {
        let md = m
            .domain(&d.name)
            .ok_or_else(|| TestCaseError::fail(format!("planned unknown domain {}", d.name)))?;
        let fixed: Vec<(&str, Region)> =
            guest_map::fixed_regions(true, d.console == Console::Vpl011).collect();
        // Guest RAM.
        let total = d
            .guest_ram
            .iter()
            .try_fold(0u64, |a, r| a.checked_add(r.size))
            .ok_or_else(|| TestCaseError::fail("guest RAM overflows"))?;
        prop_assert_eq!(
            total,
            md.memory.value,
            "guest RAM of {} does not add up",
            &d.name
        );
        let statics = g.statics.get(&d.name).cloned().unwrap_or_default();
        prop_assert_eq!(&d.static_memory, &statics);
        if d.direct_map {
            prop_assert_eq!(
                &d.guest_ram,
                &statics,
                "direct-mapped {} RAM is its static memory",
                &d.name
            );
        } else {
            for r in &d.guest_ram {
                for (what, f) in &fixed {
                    prop_assert!(
                        !r.overlaps(f),
                        "{} RAM {:x?} on the guest {}",
                        &d.name,
                        r,
                        what
                    );
                }
            }
        }
        for (i, a) in d.guest_ram.iter().enumerate() {
            for b in &d.guest_ram[i + 1..] {
                prop_assert!(!a.overlaps(b), "{} RAM banks overlap", &d.name);
            }
        }
        // Shared memory this domain maps: it must not land on the domain's RAM or devices.
        let shared: Vec<Region> = g
            .shm
            .iter()
            .filter(|(_, _, members)| members.contains(&d.name))
            .map(|(_, guest, _)| *guest)
            .collect();
        for s in &shared {
            for r in &d.guest_ram {
                prop_assert!(
                    !s.overlaps(r),
                    "{} shared memory {:x?} on its RAM",
                    &d.name,
                    s
                );
            }
        }
        // Devices.
        let mut guest_maps: Vec<Region> = Vec::new();
        let mut expected_irqs: Vec<u32> = Vec::new();
        prop_assert_eq!(d.devices.len(), md.passthrough.len());
        for dev in &d.devices {
            let node = inv.device(&dev.path).ok_or_else(|| {
                TestCaseError::fail(format!("planned unknown device {}", dev.path))
            })?;
            for reg in &node.regions {
                prop_assert!(
                    dev.mappings
                        .iter()
                        .any(|mp| Region::new(mp.host, mp.size).contains(reg)),
                    "{} register {:x?} not mapped",
                    &dev.path,
                    reg
                );
            }
            for mp in &dev.mappings {
                prop_assert!(
                    mp.host % PAGE_SIZE == 0
                        && mp.guest % PAGE_SIZE == 0
                        && mp.size % PAGE_SIZE == 0
                        && mp.size > 0,
                    "{} mapping {:x?} not page aligned",
                    &dev.path,
                    mp
                );
                let guest = Region::new(mp.guest, mp.size);
                if d.direct_map {
                    prop_assert_eq!(mp.guest, mp.host, "direct-mapped devices map 1:1");
                } else {
                    for r in &d.guest_ram {
                        prop_assert!(
                            !guest.overlaps(r),
                            "{} at {:x?} on guest RAM",
                            &dev.path,
                            guest
                        );
                    }
                    for (what, f) in &fixed {
                        prop_assert!(
                            !guest.overlaps(f),
                            "{} at {:x?} on the guest {}",
                            &dev.path,
                            guest,
                            what
                        );
                    }
                    for s in &shared {
                        prop_assert!(
                            !guest.overlaps(s),
                            "{} at {:x?} on shared memory {:x?} of {}",
                            &dev.path,
                            guest,
                            s,
                            &d.name
                        );
                    }
                    for other in &guest_maps {
                        prop_assert!(
                            !guest.overlaps(other),
                            "{} at {:x?} on another mapping",
                            &dev.path,
                            guest
                        );
                    }
                }
                guest_maps.push(guest);
            }
            for i in &node.interrupts {
                if let firmware_config::board::DeviceInterrupt::Spi(n) = i {
                    expected_irqs.push(*n);
                }
            }
        }
        expected_irqs.sort_unstable();
        expected_irqs.dedup();
        prop_assert_eq!(
            &d.irqs,
            &expected_irqs,
            "{} owns exactly its devices' SPIs",
            &d.name
        );
        for irq in &d.irqs {
            if let Some(other) = irq_owner.insert(*irq, &d.name) {
                prop_assert!(false, "IRQ {} in both {} and {}", irq, other, &d.name);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_of_a_valid_manifest_keeps_its_promises(spec in system_spec()) {
        let g = render(&spec);
        let (board, inv) = setup(g.smmu_board);
        let (manifest, p) = plan_of(&g, &board, &inv)?;
        check_modules(&p, &board, &inv, &g)?;
        check_domains(&p, &manifest, &inv, &g)?;
        // The blob has fixed bounds (e.g. 8 devices per domain) checked only here, so a valid plan
        // may be refused, but only for a bound (E0304 "more than"/"longer than"), never for breaking
        // an invariant of the blob.
        match plan::boot_config(&p) {
            Ok(config) => {
                let bytes = blob::encode(&config).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(blob::decode(&bytes), Ok(config));
            }
            Err(d) => {
                prop_assert_eq!(d.code, "E0304");
                prop_assert!(
                    d.message.contains("more than") || d.message.contains("longer than"),
                    "{}",
                    d.message
                );
            }
        }
    }
}

/// Faults that a person makes, each turning a valid manifest into one the validator must refuse or
/// at least survive.
fn break_manifest(text: &str, fault: usize, at: usize, token: &str) -> String {
    let on_domain = |t: &str, line: &str| {
        t.replacen(
            "kind = \"arm64\"\n",
            &format!("kind = \"arm64\"\n{line}\n"),
            1,
        )
    };
    match fault {
        0 => text.replacen("vcpus = ", "vcpus = 1", 1),
        1 => text.replacen("memory = \"", "memory = \"9", 1),
        2 => on_domain(text, "passthrough = [\"/pl011@9000000\"]"),
        3 => on_domain(
            text,
            "passthrough = [\"/pl031@9010000\", \"/pl031@9010000\"]",
        ),
        4 => on_domain(
            text,
            "passthrough = [\"/virtio_mmio@a000200\"]\nforce_without_iommu = true",
        ),
        5 => on_domain(text, "depends_on = [\"guest-9\"]"),
        6 => on_domain(text, "irqs = [27, 32]"),
        7 => on_domain(
            text,
            "static_memory = [{ base = \"0x50100000\", size = \"3M\" }]",
        ),
        8 => text.replacen("kernel = \"", "kernel = \"missing-", 1),
        // A 3 GiB kernel: no room in the module window (E0303, from the planner, not the validator).
        9 => text.replacen("kernel = \"", "kernel = \"huge-", 1),
        22 => text.replacen("kernel = \"", "kernel = \"dtb-", 1),
        10 => text.replacen("kind = \"arm64\"", "kind = \"pvh\"", 1),
        11 => text.replacen("memory = \"", "memroy = \"", 1),
        12 => on_domain(text, "builder = \"init\""),
        13 => on_domain(text, "on_crash = \"restart\""),
        14 => on_domain(text, "iomem = [\"3001,1\"]"),
        15 => text.replacen("xen = \"4.", "xen = \"5.", 1),
        16 => on_domain(text, "cpupool = \"fast\""),
        17 => on_domain(text, "enhanced = \"enabled\""),
        18 => text.replacen("kernel = \"", "ramdisk = \"broken\"\nkernel = \"", 1),
        19 => format!(
            "{text}\n[[shared_memory]]\nid = \"{token}\"\nsize = \"4K\"\nguest_address = \"0x40000000\"\nborrowers = [\"guest-0\"]\n"
        ),
        // Random text edits: a token inserted, or a slice deleted, at a char boundary.
        20 => {
            let at = floor_boundary(text, at % (text.len() + 1));
            format!("{}{token}{}", &text[..at], &text[at..])
        }
        _ => {
            let start = floor_boundary(text, at % (text.len() + 1));
            let end = floor_boundary(text, (start + token.len() + 1).min(text.len()));
            format!("{}{}", &text[..start], &text[end..])
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn check_refusal(diags: &Diagnostics, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        diags.has_errors(),
        "refused without an error:\n{}",
        describe(diags)
    );
    let inside = |s: &std::ops::Range<usize>| s.start <= s.end && s.end <= text.len();
    for d in &diags.0 {
        for l in d.primary.iter().chain(&d.secondary) {
            if l.source == SourceId::Manifest {
                prop_assert!(
                    inside(&l.span),
                    "{} span {:?} outside the text",
                    d.code,
                    l.span
                );
            }
        }
    }
    prop_assert!(
        diags.errors().any(|d| d
            .primary
            .as_ref()
            .is_some_and(|l| l.source == SourceId::Manifest && inside(&l.span))),
        "no error points into the manifest:\n{}\n{}",
        describe(diags),
        text
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn refused_manifests_carry_errors_that_point_into_the_text(
        spec in system_spec(),
        fault in 0usize..24,
        at in any::<usize>(),
        token in prop::sample::select(vec![
            "[", "]", "\"", "=", "\n", "[[domain]]\n", "0x", "é", "memory = \"1G\"\n", "vcpus = 0\n",
            "name = \"Bad Name\"\n", "kernel", "\n[system]\n", "{", "#", "'''", "-1", "4096",
        ]),
    ) {
        let g = render(&spec);
        let text = break_manifest(&g.text, fault, at, token);
        let (board, inv) = setup(g.smmu_board);
        match Manifest::parse(&text) {
            Err(diags) => check_refusal(&diags, &text)?,
            Ok(manifest) => {
                let artifacts = fixtures::artifacts_for(&manifest, board.arch);
                let input = CheckInput { manifest: &manifest, board: &board, inventory: &inv, artifacts: &artifacts };
                if let Err(diags) = plan::plan(input) {
                    check_refusal(&diags, &text)?;
                }
            }
        }
    }
}

/// The generator must reach what the properties are about, or they hold vacuously.
#[test]
fn generator_reaches_every_feature() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bump = |k: &'static str, yes: bool| *seen.entry(k).or_default() += usize::from(yes);
    for _ in 0..300 {
        let spec = system_spec()
            .new_tree(&mut runner)
            .expect("strategy")
            .current();
        let g = render(&spec);
        let (board, inv) = setup(g.smmu_board);
        let (_, p) = plan_of(&g, &board, &inv).expect("valid manifest plans");
        bump("six domains", p.domains.len() == 6);
        bump("smmu board", g.smmu_board);
        bump(
            "shared kernel",
            p.modules
                .iter()
                .any(|m| m.kind == ModuleKind::Kernel && m.users.len() > 1),
        );
        bump(
            "ramdisk",
            p.modules.iter().any(|m| m.kind == ModuleKind::Ramdisk),
        );
        bump(
            "shared memory with a host address",
            p.shared_memory.iter().any(|s| s.host.is_some()),
        );
        bump(
            "shared memory without a host address",
            p.shared_memory.iter().any(|s| s.host.is_none()),
        );
        bump(
            "passthrough dtb",
            p.modules
                .iter()
                .any(|m| m.kind == ModuleKind::PassthroughDtb),
        );
        for d in &p.domains {
            bump("static memory", !d.static_memory.is_empty());
            bump("two static banks", d.static_memory.len() == 2);
            bump("direct map", d.direct_map);
            bump("forced device", d.devices.iter().any(|x| x.forced));
            bump(
                "device behind an IOMMU",
                d.devices.iter().any(|x| x.behind_iommu),
            );
            bump("relocated device", d.devices.iter().any(|x| x.relocated));
            bump(
                "direct-mapped device",
                d.direct_map && !d.devices.is_empty(),
            );
            bump(
                "static memory in the module window",
                d.static_memory
                    .iter()
                    .any(|r| board.module_window.is_some_and(|w| w.overlaps(r))),
            );
            bump("512 MiB domain", d.memory == 512 * MIB);
            bump(
                "relocated device with shared memory",
                d.devices.iter().any(|x| x.relocated) && !p.shared_memory.is_empty(),
            );
            bump("16 MiB domain", d.memory == 16 * MIB);
        }
    }
    let missing: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    assert!(
        missing.is_empty(),
        "never generated: {missing:?} (counts {seen:?})"
    );
}

/// Regression for a gap the refusal property found: a kernel too large for the module window was
/// refused by the planner with E0303 pointing nowhere, so the CLI could not show the manifest line.
/// `plan::place_modules` now labels E0303 with the source's span.
#[test]
fn module_without_room_points_at_its_source() {
    let text = "[system]\nname = \"prop\"\nboard = \"qemu-virt-arm64\"\n\n[[domain]]\nname = \"guest-0\"\nkind = \"arm64\"\nmemory = \"16M\"\nkernel = \"huge-kernel\"\n";
    let manifest = Manifest::parse(text).expect("parses");
    let (board, inv) = setup(false);
    let artifacts = fixtures::artifacts_for(&manifest, board.arch);
    let input = CheckInput {
        manifest: &manifest,
        board: &board,
        inventory: &inv,
        artifacts: &artifacts,
    };
    let diags =
        plan::plan(input).expect_err("a 3 GiB kernel does not fit QEMU virt's module window");
    let e = diags.errors().next().expect("an error");
    assert_eq!(e.code, "E0303");
    let span = e
        .primary
        .as_ref()
        .map(|l| l.span.clone())
        .expect("E0303 points into the manifest");
    assert_eq!(&text[span], "\"huge-kernel\"");
}

/// A one-domain system on the SMMU board whose `/sram@3000800` collides with the guest GIC and is
/// relocated into `plan::GUEST_DEVICE_HOLE`, plus `extra` lines in the domain and `tail` after it.
fn relocation_case(extra: &str, tail: &str) -> (String, Result<SystemPlan, Diagnostics>) {
    let text = format!(
        "[system]\nname = \"prop\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.19\"\n\n[[domain]]\nname = \"guest-0\"\nkind = \"arm64\"\nmemory = \"16M\"\nkernel = \"debian:kernel\"\npassthrough = [\"/sram@3000800\"]\n{extra}{tail}"
    );
    let result = plan_text(&text, true);
    (text, result)
}

/// The plan of manifest `text` on QEMU virt (with the SMMU inventory if `smmu_board`).
fn plan_text(text: &str, smmu_board: bool) -> Result<SystemPlan, Diagnostics> {
    let manifest = Manifest::parse(text).expect("parses");
    let (board, inv) = setup(smmu_board);
    let artifacts = fixtures::artifacts_for(&manifest, board.arch);
    let input = CheckInput {
        manifest: &manifest,
        board: &board,
        inventory: &inv,
        artifacts: &artifacts,
    };
    plan::plan(input).map(|(p, _)| p)
}

/// Either the manifest is refused with an error pointing into it, or the relocated device misses
/// `taken` in the guest.
fn assert_relocation_avoids(text: &str, result: Result<SystemPlan, Diagnostics>, taken: Region) {
    match result {
        Err(d) => assert!(
            d.errors()
                .any(|e| e.primary.as_ref().is_some_and(|l| l.span.end <= text.len())),
            "{}",
            describe(&d)
        ),
        Ok(p) => {
            let dev = &p.domains[0].devices[0];
            assert!(
                dev.relocated,
                "the fixture device collides with the guest GIC"
            );
            for m in &dev.mappings {
                assert!(
                    !Region::new(m.guest, m.size).overlaps(&taken),
                    "{} relocated to {:#x}, onto {taken:x?} which the guest already maps",
                    dev.path,
                    m.guest
                );
            }
        }
    }
}

/// Found by the plan property (regression): a device relocated into the guest device hole used to land
/// on shared memory the domain maps there; the planner now counts shared memory as occupied.
#[test]
fn relocated_device_avoids_shared_memory() {
    let (text, result) = relocation_case(
        "",
        "\n[[shared_memory]]\nid = \"shm0\"\nsize = \"2M\"\nguest_address = \"0x5000000\"\nowner = \"guest-0\"\nborrowers = []\n",
    );
    assert_relocation_avoids(&text, result, Region::new(0x0500_0000, 2 * MIB));
}

/// The same gap for an xl-style `iomem` grant whose guest frame lies in the device hole (now refused
/// for dom0less domains, E0247; the planner also counts iomem grants as occupied).
#[test]
fn relocated_device_avoids_iomem_grants() {
    let (text, result) = relocation_case(
        "iomem = [\"9060,1@5000\"]\nforce_without_iommu = true\n",
        "",
    );
    assert_relocation_avoids(&text, result, Region::new(0x0500_0000, PAGE_SIZE));
}

/// The plan of an ARM system with dom0, a domain `storage` and a domain `app` whose disk is served
/// by `backend` (`None`: dom0), with `xen_cmdline` if given.
fn pv_case(backend: Option<&str>, xen_cmdline: Option<&str>) -> Result<SystemPlan, Diagnostics> {
    let cmdline = xen_cmdline.map_or(String::new(), |c| format!("xen_cmdline = \"{c}\"\n"));
    let backend = backend.map_or(String::new(), |b| format!("backend={b}, "));
    let text = format!(
        "[system]\nname = \"pv\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.17\"\n{cmdline}\n[dom0]\nkernel = \"debian:kernel\"\n\n[[domain]]\nname = \"storage\"\nkind = \"arm64\"\nbuilder = \"init\"\nmemory = \"64M\"\nkernel = \"debian:kernel\"\n\n[[domain]]\nname = \"app\"\nkind = \"arm64\"\nbuilder = \"init\"\nmemory = \"64M\"\nkernel = \"debian:kernel\"\ndisk = [\"vdev=xvda, {backend}target=/dev/vdb\"]\n"
    );
    plan_text(&text, false)
}

/// Debian's arm64 Xen defaults to XSM SILO, which forbids domU-to-domU event channels: a driver
/// domain serving another domU gets Xen booted with `xsm=dummy`, a dom0-served system does not, and
/// an explicit `xsm=` is the user's.
#[test]
fn driver_domains_on_arm_boot_xen_without_silo() {
    let words = |p: &SystemPlan| {
        p.xen_cmdline
            .split_whitespace()
            .filter(|w| w.starts_with("xsm="))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let driver = pv_case(Some("storage"), None).expect("plans");
    assert_eq!(words(&driver), ["xsm=dummy"]);
    let dom0 = pv_case(None, None).expect("plans");
    assert!(words(&dom0).is_empty(), "{}", dom0.xen_cmdline);
    let flask = pv_case(Some("storage"), Some("xsm=flask")).expect("plans");
    assert_eq!(words(&flask), ["xsm=flask"]);
    let silo = pv_case(Some("storage"), Some("xsm=silo")).expect_err("SILO forbids it");
    assert!(
        silo.errors().any(|e| e.code == "E0271"),
        "{}",
        describe(&silo)
    );
}
