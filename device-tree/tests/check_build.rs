//! `check` ⇔ `build` on the built-in boards with Debian DTBs: for random selections of a board's
//! devices, whatever validation and the planner accept, the passthrough-fragment generator (the emission
//! path, `from_plan::passthrough_fragments`) writes; whatever it refuses, validation refused first.
//!
//! The selections come from a fixed-seed xorshift generator so a failure reproduces; each case prints
//! the manifest it used.

mod support;

use device_tree::DeviceTree;
use firmware_config::artifacts::{ArtifactFacts, ArtifactTable, ImageFormat};
use firmware_config::board::{Board, builtin_board};
use firmware_config::manifest::Manifest;
use firmware_config::validate::CheckInput;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn artifacts() -> ArtifactTable {
    let mut t = ArtifactTable::new();
    for s in ["Image", "debian:xen"] {
        t.insert(
            s.into(),
            Ok(ArtifactFacts {
                size: 4 << 20,
                format: ImageFormat::Arm64Image,
                path: s.into(),
                sha256: String::new(),
                identity: None,
            }),
        );
    }
    t
}

#[test]
fn what_check_accepts_build_writes() {
    let boards = [
        ("rock-pi-4b", "rockchip/rk3399-rock-pi-4b.dtb", "4.17"),
        ("rzg2m", "renesas/r8a774a1-hihope-rzg2m-rev2.dtb", "4.17"),
        ("am625-sk", "ti/k3-am625-sk.dtb", "4.20"),
        ("rpi4", "broadcom/bcm2711-rpi-4-b.dtb", "4.17"),
        ("zcu102", "xilinx/zynqmp-zcu102-rev1.0.dtb", "4.17"),
    ];
    let cases = std::env::var("CHECK_BUILD_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut rng = Rng(0x5eed_d0f0_2026_1303);
    let mut disagreements = Vec::new();
    let mut accepted = 0;
    for (name, dtb, xen) in boards {
        let Some(blob) = support::debian_dtb(dtb) else {
            return;
        };
        let tree = DeviceTree::from_dtb(&blob).expect("parse");
        let board = Board::parse(builtin_board(name).expect("built in")).expect("board");
        let inv = board
            .resolve_inventory(Some(
                device_tree::inventory::read_inventory(&tree).expect("inventory"),
            ))
            .expect("inventory");
        let console = board
            .console_uart
            .clone()
            .or_else(|| inv.stdout_path.clone());
        let candidates: Vec<&str> = inv
            .devices
            .iter()
            .filter(|d| d.enabled && Some(&d.path) != console.as_ref())
            .map(|d| d.path.as_str())
            .collect();
        for _ in 0..cases {
            let n = 1 + rng.below(3);
            let mut picked: Vec<&str> = Vec::new();
            for _ in 0..n {
                let p = candidates[rng.below(candidates.len())];
                if !picked.contains(&p) {
                    picked.push(p);
                }
            }
            let drop = rng.below(2) == 0;
            let list = picked
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let text = format!(
                "[system]\nname = \"cb\"\nboard = \"{name}\"\nxen = \"{xen}\"\n\n[[domain]]\nname = \"drv\"\nkind = \"arm64\"\nmemory = \"128M\"\nkernel = \"Image\"\ncmdline = \"console=ttyAMA0\"\npassthrough = [{list}]\nforce_without_iommu = true\ndrop_device_dependencies = {drop}\n"
            );
            let m = Manifest::parse(&text).expect("generated manifest parses");
            let artifacts = artifacts();
            let input = CheckInput {
                manifest: &m,
                board: &board,
                inventory: &inv,
                artifacts: &artifacts,
            };
            let Ok((plan, _)) = firmware_config::plan::plan(input) else {
                continue;
            };
            accepted += 1;
            if let Err(e) = device_tree::from_plan::passthrough_fragments(&tree, &plan) {
                disagreements.push(format!("{name}: {list} (drop = {drop}): {e}"));
            }
        }
    }
    assert!(
        accepted > 50,
        "the generator must reach accepted plans, got {accepted}"
    );
    assert!(
        disagreements.is_empty(),
        "check/plan accepted, the fragment generator refused ({} of {accepted}):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// A DMA master forced without an IOMMU into a domain that is not direct-mapped is E0248 — on
/// RK3399 the GMAC was "the device tree shows no DMA capability" before DMA masters were recognised.
#[test]
fn dma_masters_without_a_xen_iommu_need_a_direct_map() {
    let Some(blob) = support::rock_pi_4b() else {
        return;
    };
    let tree = DeviceTree::from_dtb(&blob).expect("parse");
    let board = Board::parse(builtin_board("rock-pi-4b").expect("built in")).expect("board");
    let inv = board
        .resolve_inventory(Some(
            device_tree::inventory::read_inventory(&tree).expect("inventory"),
        ))
        .expect("inventory");
    let text = "[system]\nname = \"dma\"\nboard = \"rock-pi-4b\"\nxen = \"4.17\"\n\n[[domain]]\nname = \"net\"\nkind = \"arm64\"\nmemory = \"128M\"\nkernel = \"Image\"\ncmdline = \"console=ttyAMA0\"\npassthrough = [\"/ethernet@fe300000\"]\nforce_without_iommu = true\ndrop_device_dependencies = true\n";
    let m = Manifest::parse(text).expect("parses");
    let artifacts = artifacts();
    let diags = firmware_config::validate::check(CheckInput {
        manifest: &m,
        board: &board,
        inventory: &inv,
        artifacts: &artifacts,
    });
    let e = diags
        .0
        .iter()
        .find(|d| d.code == "E0248")
        .unwrap_or_else(|| panic!("E0248 expected: {:?}", diags.0));
    assert_eq!(
        e.message,
        "`/ethernet@fe300000` masters DMA, has no IOMMU, and `net` is not direct-mapped"
    );
    // The rule that recognised it: the GMAC's node name is the generic name of a DMA master.
    let rule =
        device_tree::inventory::dma_master_rule(tree.node("/ethernet@fe300000").expect("gmac"));
    assert!(rule.is_some_and(|r| r.contains("`ethernet`")));
}
