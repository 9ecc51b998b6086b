//! Manifest text all the way to a boot blob: parse, validate and plan against three hand-made boards
//! (QEMU virt GICv3; the same with an SMMU, reserved memory and awkward devices; QEMU x86_64), then
//! turn every plan into a boot blob and decode it again.
//!
//! Besides "never panics", the target checks what must hold for every input:
//! - a rejected manifest carries at least one error, and every manifest span lies inside the text;
//! - planning is deterministic (equal plans, byte-identical JSON);
//! - boot modules never overlap one another;
//! - a validated plan becomes a blob (or is refused for a blob bound, E0304, never for an invariant
//!   `BootConfig::check` finds), and the blob decodes to exactly the configuration that was encoded.
#![no_main]

use firmware_config::blob;
use firmware_config::board::{Board, HardwareInventory};
use firmware_config::diag::{Diagnostics, SourceId};
use firmware_config::manifest::Manifest;
use firmware_config::plan::{self, SystemPlan};
use firmware_config::validate::CheckInput;
use libfuzzer_sys::fuzz_target;
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
