//! How deep a `toml_to_plan` corpus reaches: how many inputs are UTF-8, parse as a manifest, pass
//! validation and planning on each fixture board, and become a boot blob.
//!
//! `cargo run --example corpus_stats -- corpus/toml_to_plan` (from `firmware-config/fuzz`).

use firmware_config::manifest::Manifest;
use firmware_config::plan;
use firmware_config::validate::CheckInput;
use std::collections::BTreeMap;

#[path = "../common/fixtures.rs"]
mod fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("corpus/toml_to_plan".into());
    let virt = fixtures::qemu_virt_board();
    let setups = [
        ("qemu-virt", virt.clone(), fixtures::qemu_virt_inventory()),
        ("qemu-virt+smmu", virt, fixtures::iommu_inventory()),
        {
            let (b, i) = fixtures::qemu_x86_board();
            ("qemu-x86_64", b, i)
        },
    ];
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut bump = |k: String| *count.entry(k).or_default() += 1;
    for entry in std::fs::read_dir(&dir)? {
        let bytes = std::fs::read(entry?.path())?;
        bump("inputs".into());
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        bump("utf-8".into());
        let manifest = match Manifest::parse(text) {
            Ok(m) => m,
            Err(d) => {
                if let Some(e) = d.errors().next() {
                    bump(format!("parse error {}", e.code));
                }
                continue;
            }
        };
        bump("parsed".into());
        for (name, board, inventory) in &setups {
            let artifacts = fixtures::artifacts_for(&manifest, board.arch);
            let input = CheckInput {
                manifest: &manifest,
                board,
                inventory,
                artifacts: &artifacts,
            };
            match plan::plan(input) {
                Ok((p, _)) => {
                    bump(format!("planned on {name}"));
                    if plan::boot_config(&p).is_ok() {
                        bump(format!("blob on {name}"));
                    }
                }
                Err(d) => {
                    for e in d.errors() {
                        bump(format!("{name} refused with {}", e.code));
                    }
                }
            }
        }
    }
    for (k, v) in &count {
        println!("{v:8}  {k}");
    }
    Ok(())
}
