//! Manifest text all the way to a boot blob: parse, validate and plan against three hand-made boards
//! (QEMU virt GICv3; the same with an SMMU, reserved memory and awkward devices; QEMU x86_64), then
//! turn every plan into a boot blob and decode it again.
//!
//! Besides "never panics", the target checks what must hold for every input:
//! - a rejected manifest carries at least one error, and every manifest span lies inside the text;
//! - planning is deterministic (equal plans, byte-identical JSON);
//! - boot modules never overlap one another;
//! - every ARM domain's guest RAM adds up to its memory and (unless direct-mapped) misses Xen's fixed
//!   guest regions; device mappings are page aligned and (unless direct-mapped) miss guest RAM, the
//!   fixed regions, shared memory, iomem grants and each other; no interrupt has two owners;
//! - a validated plan becomes a blob (or is refused for a blob bound, E0304, never for an invariant
//!   `BootConfig::check` finds), and the blob decodes to exactly the configuration that was encoded.
#![no_main]

use firmware_config::blob;
use firmware_config::board::{Board, HardwareInventory, InterruptControllerKind, Region};
use firmware_config::diag::{Diagnostics, SourceId};
use firmware_config::guest_map;
use firmware_config::manifest::Manifest;
use firmware_config::manifest::{Console, DomainKind};
use firmware_config::plan::{self, SystemPlan};
use firmware_config::units::PAGE_SIZE;
use firmware_config::validate::CheckInput;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[path = "../common/fixtures.rs"]
mod fixtures;

fn setups() -> &'static [(Board, HardwareInventory)] {
    static SETUPS: OnceLock<Vec<(Board, HardwareInventory)>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let virt = fixtures::qemu_virt_board();
        vec![
            (virt.clone(), fixtures::qemu_virt_inventory()),
            (virt, fixtures::iommu_inventory()),
            fixtures::qemu_x86_board(),
        ]
    })
}

fn check_spans(diags: &Diagnostics, text: &str) {
    for d in &diags.0 {
        for label in d.primary.iter().chain(&d.secondary) {
            if label.source == SourceId::Manifest {
                assert!(
                    label.span.start <= label.span.end && label.span.end <= text.len(),
                    "{} span {:?} outside the {}-byte manifest: {}",
                    d.code,
                    label.span,
                    text.len(),
                    d.message
                );
            }
        }
    }
}

fn check_plan(p: &SystemPlan, input: CheckInput<'_>) {
    // Deterministic: plan again, compare values and JSON.
    let (again, _) = plan::plan(input).expect("the same input planned once already");
    assert_eq!(p, &again);
    let json = serde_json::to_string(p).expect("plans serialise");
    assert_eq!(
        json,
        serde_json::to_string(&again).expect("plans serialise")
    );

    let loads: Vec<_> = p
        .modules
        .iter()
        .filter_map(|m| m.load.map(|l| (m, l)))
        .collect();
    for (i, (a, ra)) in loads.iter().enumerate() {
        for (b, rb) in &loads[i + 1..] {
            assert!(
                !ra.overlaps(rb),
                "modules {} {ra:x?} and {} {rb:x?} overlap",
                a.id,
                b.id
            );
        }
    }

    let gic_v3 = input
        .inventory
        .interrupt_controller
        .as_ref()
        .is_some_and(|c| c.kind == InterruptControllerKind::GicV3);
    let mut irq_owner: BTreeMap<u32, &str> = BTreeMap::new();
    for d in &p.domains {
        for irq in &d.irqs {
            if let Some(other) = irq_owner.insert(*irq, &d.name) {
                panic!("IRQ {irq} owned by {other} and {}", d.name);
            }
        }
        let total = d
            .guest_ram
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.size));
        assert_eq!(total, d.memory, "guest RAM of {} does not add up", d.name);
        if d.kind != DomainKind::Arm64 {
            continue;
        }
        let fixed: Vec<(&str, Region)> =
            guest_map::fixed_regions(gic_v3, d.console == Console::Vpl011).collect();
        if !d.direct_map {
            for r in &d.guest_ram {
                for (what, f) in &fixed {
                    assert!(!r.overlaps(f), "{} RAM {r:x?} on the guest {what}", d.name);
                }
            }
        }
        let mut taken: Vec<(String, Region)> = p
            .shared_memory
            .iter()
            .filter(|s| {
                s.owner.as_deref() == Some(d.name.as_str()) || s.borrowers.contains(&d.name)
            })
            .map(|s| {
                (
                    format!("shared memory {}", s.id),
                    Region::new(s.guest, s.size),
                )
            })
            .collect();
        taken.extend(
            d.iomem
                .iter()
                .map(|m| ("an iomem grant".to_string(), Region::new(m.guest, m.size))),
        );
        for dev in &d.devices {
            for m in &dev.mappings {
                assert!(
                    m.host % PAGE_SIZE == 0 && m.guest % PAGE_SIZE == 0 && m.size % PAGE_SIZE == 0,
                    "{} mapping {m:x?} not page aligned",
                    dev.path
                );
                if d.direct_map {
                    continue;
                }
                let g = Region::new(m.guest, m.size);
                for r in &d.guest_ram {
                    assert!(
                        !g.overlaps(r),
                        "{} at {g:x?} on guest RAM of {}",
                        dev.path,
                        d.name
                    );
                }
                for (what, f) in &fixed {
                    assert!(!g.overlaps(f), "{} at {g:x?} on the guest {what}", dev.path);
                }
                for (what, t) in &taken {
                    assert!(
                        !g.overlaps(t),
                        "{} at {g:x?} on {what} of {}",
                        dev.path,
                        d.name
                    );
                }
                taken.push((dev.path.clone(), g));
            }
        }
    }

    match plan::boot_config(p) {
        Ok(config) => {
            let bytes = blob::encode(&config).expect("a bounded config fits the blob");
            assert_eq!(blob::decode(&bytes), Ok(config));
        }
        Err(d) => {
            assert_eq!(d.code, "E0304");
            assert!(
                !d.message.contains("would be invalid"),
                "a validated plan breaks a blob invariant: {}",
                d.message
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let manifest = match Manifest::parse(text) {
        Ok(m) => m,
        Err(diags) => {
            assert!(diags.has_errors(), "a refused manifest names an error");
            check_spans(&diags, text);
            return;
        }
    };
    for (board, inventory) in setups() {
        let artifacts = fixtures::artifacts_for(&manifest, board.arch);
        let input = CheckInput {
            manifest: &manifest,
            board,
            inventory,
            artifacts: &artifacts,
        };
        match plan::plan(input) {
            Ok((p, warnings)) => {
                assert!(!warnings.has_errors());
                check_spans(&warnings, text);
                check_plan(&p, input);
            }
            Err(diags) => {
                assert!(diags.has_errors(), "a refused plan names an error");
                check_spans(&diags, text);
            }
        }
    }
});
