//! `import → export → import` keeps the system: for every ARM example manifest, and for a manifest
//! that uses the settings ImageBuilder has no variable for, the manifest that comes back plans to
//! the same `SystemPlan` as the original (planned by `firmware_config` for the QEMU virt inventory
//! typed from QEMU's `dumpdtb`, `fuzz/common/fixtures.rs`), and a second round changes nothing.

#[path = "../../firmware-config/fuzz/common/fixtures.rs"]
mod fixtures;

use firmware_config::board::{Arch, Board, builtin_board};
use firmware_config::manifest::Manifest;
use firmware_config::plan::{self, SystemPlan};
use firmware_config::validate::CheckInput;
use migrate::imagebuilder::{self, ImageBuilderOptions};
use migrate::{InputFile, Paths};
use std::path::Path;

/// Export `text`, import the config again; returns the config and the new manifest's TOML.
fn round(name: &str, text: &str) -> (String, String) {
    let m = Manifest::parse(text).unwrap_or_else(|d| panic!("{name}: {d:?}"));
    let board = Board::parse(builtin_board(&m.system.board.value).unwrap()).unwrap();
    let inv = board
        .name
        .starts_with("qemu-virt")
        .then(fixtures::qemu_virt_inventory);
    let (config, _report) = imagebuilder::export(name, text, &m, &board, inv.as_ref()).unwrap();
    let f = InputFile::new("config", config.clone());
    let data = imagebuilder::read_config(&f).unwrap_or_else(|e| {
        panic!("{name}: the exported config does not read back: {e}\n{config}")
    });
    let opts = ImageBuilderOptions::default();
    let sys = imagebuilder::system_name(&data, &opts);
    let choice = imagebuilder::choose_board(&f, &data, None, &sys, &Paths::default()).unwrap();
    assert_eq!(
        choice.name, m.system.board.value,
        "{name}: the board comes back"
    );
    let out = imagebuilder::import(&f, &data, &choice, &board, inv.as_ref(), &opts).unwrap();
    (config, out.manifest.to_toml(""))
}

fn plan_of(name: &str, text: &str) -> SystemPlan {
    let m = Manifest::parse(text).unwrap_or_else(|d| panic!("{name}: {d:?}\n{text}"));
    let board = fixtures::qemu_virt_board();
    let inv = fixtures::qemu_virt_inventory();
    let arts = fixtures::artifacts_for(&m, Arch::Arm64);
    plan::plan(CheckInput {
        manifest: &m,
        board: &board,
        inventory: &inv,
        artifacts: &arts,
    })
    .unwrap_or_else(|d| panic!("{name}: does not plan: {d:?}\n{text}"))
    .0
}

fn check_round_trip(name: &str, text: &str) {
    let (config, back) = round(name, text);
    let m = Manifest::parse(text).unwrap();
    if m.system.board.value == "qemu-virt-arm64" {
        let (a, b) = (
            plan_of(name, text),
            plan_of(&format!("{name} (imported)"), &back),
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap(),
            "{name}: the plan changed\n--- config ---\n{config}\n--- imported ---\n{back}"
        );
    }
    let (_, again) = round(&format!("{name} (imported)"), &back);
    assert_eq!(back, again, "{name}: a second round changed the manifest");
}

#[test]
fn every_arm_example_survives_the_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        // Only manifests: `<manifest>.lock` files sit beside them once a command has run.
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let m = Manifest::parse(&text).unwrap();
        let board = Board::parse(builtin_board(&m.system.board.value).unwrap()).unwrap();
        if board.arch != Arch::Arm64 {
            continue;
        }
        check_round_trip(&path.display().to_string(), &text);
        n += 1;
    }
    assert!(n >= 3, "only {n} ARM examples");
}

const RICH: &str = r#"
[system]
name = "rich"
board = "qemu-virt-arm64"
xen = "4.20"
hypervisor = "xen-custom"
xen_features = ["static-memory", "boot-cpupools"]
xen_cmdline = "sched=null vwfi=native"
xen_memory = "160M"

[[cpupool]]
name = "rt"
cpus = [1]
scheduler = "null"

[[domain]]
name = "rtc-driver"
kind = "arm64"
roles = ["driver"]
memory = "128M"
kernel = "kernels/a.Image"
ramdisk = "initrd/probe.cpio"
cmdline = "console=ttyAMA0 it's quoted"
passthrough = ["/pl031@9010000"]
force_without_iommu = true
boot_order = 2
p2m_pool = "4M"
max_grant_frames = 64
cpupool = "rt"

[[domain]]
name = "static"
kind = "arm64"
vcpus = 1
memory = "256M"
kernel = "kernels/b.Image"
direct_map = true
static_memory = [
  { base = "0x60000000", size = "128M" },
  { base = "0x70000000", size = "128M" },
]
enhanced = "disabled"
depends_on = ["rtc-driver"]

[[domain]]
name = "app"
kind = "arm64"
memory = "64M"
kernel = "kernels/a.Image"
console = "vpl011"
sve = 256

[[shared_memory]]
id = "ring"
size = "2M"
guest_address = "0x50000000"
owner = "static"
borrowers = ["app"]
"#;

#[test]
fn settings_imagebuilder_lacks_come_back_through_domforge_variables() {
    check_round_trip("rich.toml", RICH);
    let (config, back) = round("rich.toml", RICH);
    for line in [
        "DOMFORGE_DOMU_FORCE_WITHOUT_IOMMU[0]=\"true\"",
        "DOMU_STATIC_MEM[1]='0x60000000 0x8000000 0x70000000 0x8000000'",
        "DOMU_DIRECT_MAP[1]=1",
        "DOMU_CPUPOOL[0]=0",
        "CPUPOOL[0]='cpu@1 null'",
        "DOMU_DRIVER_DOMAIN[0]=1",
        "DOMU_CMD[0]='console=ttyAMA0 it'\\''s quoted'",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "`{line}` not in\n{config}"
        );
    }
    let m = Manifest::parse(&back).unwrap();
    assert_eq!(m.shared_memory.len(), 1);
    assert_eq!(
        m.domain("rtc-driver")
            .unwrap()
            .cmdline
            .as_ref()
            .unwrap()
            .value,
        "console=ttyAMA0 it's quoted"
    );
}
