//! The U-Boot boot target proven through the real firmware (issue 17): Debian's `u-boot-qemu`
//! (`/usr/lib/u-boot/qemu_arm64/u-boot.bin`) runs as QEMU's `-bios` on `virt`, the bundle's
//! `boot.img` is its virtio disk, and nothing else is given to QEMU: U-Boot's distro boot must
//! find `/boot.scr` on the image, the script must load Xen, the host DTB and every module at the
//! planned addresses, and `booti` must start Xen, which builds the dom0less guests. Every probe
//! must then report what the manifest promises, exactly as in the direct-boot matrix
//! (`tests/qemu_scenarios.rs`).
//!
//! Scenario 1 (three domUs, GICv3) and scenario 4 (a PL031 driver domain) on Xen 4.17 and 4.20,
//! three boots each. Each boot must show U-Boot's banner and "Found U-Boot script /boot.scr"
//! before Xen's banner, so a direct boot can never pass for this one.
//!
//! Runs when `CI=true` or `DOMFORGE_QEMU_TESTS=1` (see `tests/common`); one QEMU at a time.
//! Results are appended to `$CARGO_TARGET_TMPDIR/qemu-uboot.txt`.

mod common;
use common::{enabled, opts};
use firmware_config::xen::XenVersion;
use qemu_tests::report::Outcome;
use qemu_tests::session::{self as run, BootPath, RunOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Per boot: as the direct matrix, plus U-Boot's ~3 s (2 s autoboot countdown, the empty qfw and
/// USB probes, reading ~35 MB from the virtio disk).
const DEADLINE: Duration = Duration::from_secs(210);
const RUNS: usize = 3;
const RELEASES: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];

static ONE_QEMU_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn record(line: &str) {
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-uboot.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

fn three_runs_through_u_boot(file: &str, release: XenVersion) {
    let _one = ONE_QEMU_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ro = RunOptions {
        deadline: DEADLINE,
        boot: BootPath::UBoot,
        ..RunOptions::default()
    };
    let prepared = run::prepare(&scenario(file), &opts(release), &ro, |_| {})
        .unwrap_or_else(|e| panic!("{file} on Xen {release}: {e}"));
    let args = prepared.qemu.args.join(" ");
    assert!(
        args.contains("-bios /usr/lib/u-boot/qemu_arm64/u-boot.bin")
            && !args.contains("-kernel")
            && !args.contains("loader,"),
        "QEMU must be given only the firmware and the disk: {args}"
    );
    for i in 1..=RUNS {
        let (report, log) = prepared
            .test(&ro, |_| {})
            .unwrap_or_else(|e| panic!("{file} on Xen {release} run {i}: {e}"));
        let at = |needle: &str| {
            log.lines
                .iter()
                .find(|l| l.raw.contains(needle))
                .map(|l| l.at.as_secs_f64())
        };
        let banner = format!("Xen version {release}.");
        let (uboot, script, xen) = (
            at("U-Boot 20"),
            at("Found U-Boot script /boot.scr"),
            at(&banner),
        );
        record(&format!(
            "{file} Xen {release} via U-Boot run {i}/{RUNS}: {} in {:.1} s [U-Boot {:?} s, boot.scr {:?} s, Xen banner {:?} s; domains ready: {}]",
            if report.passed { "pass" } else { "FAIL" },
            report.elapsed_s,
            uboot,
            script,
            xen,
            report
                .domains
                .iter()
                .map(|d| format!("{} {:.1}", d.name, d.ready_s.unwrap_or(-1.0)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        assert!(
            matches!((uboot, script, xen), (Some(u), Some(s), Some(x)) if u <= s && s <= x),
            "{file} run {i}: U-Boot's banner, then `Found U-Boot script /boot.scr`, then `{banner}` \
             must appear in that order:\n{}",
            log.tail(60)
        );
        assert!(
            report.passed,
            "{file} on Xen {release} through U-Boot, run {i}:\n{}\n--- console tail ---\n{}",
            report.table(),
            log.tail(40)
        );
        assert_eq!(report.domains.len(), prepared.expectations.len());
        assert!(report.domains.iter().all(|d| d.outcome == Outcome::Pass));
    }
}

fn both_releases(file: &str) {
    for release in RELEASES {
        three_runs_through_u_boot(file, release);
    }
}

#[test]
fn scenario_1_three_domus_gicv3_through_u_boot() {
    if enabled("scenario 1 through U-Boot") {
        both_releases("1-three-domus-gicv3.toml");
    }
}

#[test]
fn scenario_4_driver_domain_pl031_through_u_boot() {
    if enabled("scenario 4 through U-Boot") {
        both_releases("4-driver-domain-pl031.toml");
    }
}
