//! Writes seed inputs for `blob_decode`: the boot blob of every example manifest in the repository's
//! `examples/`, planned against the hand-made QEMU virt board, both whole and as a bare payload (the
//! target also frames its input itself).
//!
//! `cargo run --example seed_blobs -- corpus/blob_decode` (from `firmware-config/fuzz`).

use firmware_config::blob::{self, HEADER_LEN};
use firmware_config::manifest::Manifest;
use firmware_config::plan;
use firmware_config::validate::CheckInput;
use std::path::{Path, PathBuf};

#[path = "../common/fixtures.rs"]
mod fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("corpus/blob_decode".into()),
    );
    std::fs::create_dir_all(&out)?;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let setups = [
        (fixtures::qemu_virt_board(), fixtures::qemu_virt_inventory()),
        fixtures::qemu_x86_board(),
    ];
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let manifest =
            Manifest::parse(&text).map_err(|d| format!("{}: {:?}", path.display(), d.0))?;
        let planned = setups.iter().find_map(|(board, inventory)| {
            let artifacts = fixtures::artifacts_for(&manifest, board.arch);
            let input = CheckInput {
                manifest: &manifest,
                board,
                inventory,
                artifacts: &artifacts,
            };
            plan::plan(input).ok()
        });
        let Some((p, _)) = planned else {
            eprintln!("{}: plans on no fixture board; skipped", path.display());
            continue;
        };
        let config = plan::boot_config(&p).map_err(|d| d.message)?;
        let bytes = blob::encode(&config)?;
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        std::fs::write(out.join(format!("{stem}.blob")), &bytes)?;
        std::fs::write(out.join(format!("{stem}.payload")), &bytes[HEADER_LEN..])?;
        println!("{stem}: {} bytes", bytes.len());
    }
    Ok(())
}
