//! The QEMU scenarios of issue 4, booted for real (Xen nested in QEMU's aarch64 `virt`, TCG)
//! through the library API `domforge test` uses, as a **release matrix** (issue 8): every ARM
//! scenario in `tests/scenarios/` runs on every release in [`RELEASES`], three boots each, each
//! boot checked against the expectations derived from its plan. One scenario file serves every
//! release: [`Options::xen_override`] re-targets the parsed manifest (what `domforge test --xen`
//! does), so validation, the plan and `debian:xen` (bookworm's 4.17, trixie's 4.20) follow it.
//! A pair the matrix cannot run here is listed in [`NOT_RUN`] with its reason, printed as
//! `not run on <release>: <reason>` and asserted, never skipped silently.
//!
//! Also: a manifest that fails validation never reaches QEMU (on every release); deliberately wrong
//! expectations fail naming the domain and the difference.
//!
//! These boots take minutes. They run when `CI=true` (CI must run them: a missing QEMU or
//! package is a failure there) or `DOMFORGE_QEMU_TESTS=1`; otherwise each test prints why it
//! skipped. Boots are serialised (one QEMU at a time) so timings stay meaningful on 2 cores.
//! Every run is printed and appended to `$CARGO_TARGET_TMPDIR/qemu-scenarios.txt`; the matrix so
//! far (scenario × release × run, seconds) is rewritten to `$CARGO_TARGET_TMPDIR/qemu-matrix.md`
//! and printed after each scenario, so the last one to finish leaves the whole table.

mod common;
use common::{enabled, opts};
use firmware_config::xen::XenVersion;
use pipeline::PipelineError;
use qemu_tests::expect::DeviceSpec;
use qemu_tests::report::Outcome;
use qemu_tests::session::{self as run, RunOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Per boot: TCG on a busy 2-core machine (three guests come up in 30–60 s when idle).
const DEADLINE: Duration = Duration::from_secs(180);
const RUNS: usize = 3;

/// The Xen releases every ARM scenario runs on: Debian 12's 4.17 (domctl interface 0x15) and
/// Debian 13's 4.20 (0x17), both Debian's stock `xen-hypervisor-<release>-arm64`.
const RELEASES: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];

/// The ARM dom0less scenarios booted by this file (one `#[test]` each, below).
const SCENARIOS: [&str; 5] = [
    "1-three-domus-gicv3.toml",
    "2-three-domus-gicv2.toml",
    "3-dom0-plus-domus.toml",
    "4-driver-domain-pl031.toml",
    "5-not-owner-faults.toml",
];

/// Scenario 4b boots in `tests/qemu_static_mem.rs` (it builds its own Xen and checks DMA through
/// the disk); it is part of the matrix all the same, so its release coverage is stated here.
const STATIC_MEMORY_SCENARIO: &str = "static-mem-virtio-blk.toml";

/// Matrix cells that are not run here, with the reason. Printed in the matrix table and asserted
/// by [`matrix_exclusions_are_explicit`]: adding a scenario or a release without deciding its
/// cells fails that test.
const NOT_RUN: &[(&str, XenVersion, &str)] = &[(
    STATIC_MEMORY_SCENARIO,
    XenVersion::V4_20,
    "direct-map needs a Xen built with CONFIG_STATIC_MEMORY; `builtin:xen-static-memory` \
     rebuilds Debian's `xen` source of the release, and the Debian archive reachable here serves \
     no 4.20 source (404 for xen_4.20.4+63-g7abfd2bce2-0+deb13u1.dsc/.orig.tar.xz and \
     4.20.3+127-gc42374a105-0+deb13u1.dsc), while Debian's stock xen-hypervisor-4.20-arm64 \
     is built without it (its /boot/xen-4.20-arm64.config)",
)];

/// Scenario 7 (issue 7: dom0less and domforge-init-built guests on one board, a crash restart)
/// boots in `tests/qemu_init_arm.rs`, which judges the restart as well as the reports.
const MIXED_BUILDERS_SCENARIO: &str = "7-mixed-builders-arm.toml";

/// The ARM PV-device scenario (issue 19) boots in `tests/qemu_pv.rs`, which judges the devices the
/// guests' frontends see, beside the x86 ones.
const PV_DEVICES_SCENARIO: &str = "arm64-pv-driver-domains.toml";

/// Cells run by another test file: (scenario, release, test).
const RUN_ELSEWHERE: &[(&str, XenVersion, &str)] = &[
    (PV_DEVICES_SCENARIO, XenVersion::V4_17, "tests/qemu_pv.rs"),
    (PV_DEVICES_SCENARIO, XenVersion::V4_20, "tests/qemu_pv.rs"),
    (
        STATIC_MEMORY_SCENARIO,
        XenVersion::V4_17,
        "tests/qemu_static_mem.rs",
    ),
    (
        MIXED_BUILDERS_SCENARIO,
        XenVersion::V4_17,
        "tests/qemu_init_arm.rs",
    ),
    (
        MIXED_BUILDERS_SCENARIO,
        XenVersion::V4_20,
        "tests/qemu_init_arm.rs",
    ),
];

static ONE_QEMU_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn ropts() -> RunOptions {
    RunOptions {
        deadline: DEADLINE,
        ..RunOptions::default()
    }
}

fn record(line: &str) {
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-scenarios.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

/// One boot of the matrix.
#[derive(Debug, Clone)]
struct Run {
    scenario: &'static str,
    release: XenVersion,
    passed: bool,
    seconds: f64,
}

/// Every boot of this test process, in the order they finished.
static MATRIX: Mutex<Vec<Run>> = Mutex::new(Vec::new());

/// The matrix as a Markdown table: one row per scenario × release, one column per run (seconds
/// from QEMU's start until every domain had reported), and the cells not run with their reason.
fn matrix_table(runs: &[Run]) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = write!(t, "| scenario | Xen |");
    for i in 1..=RUNS {
        let _ = write!(t, " run {i} |");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "|---|---|{}", "---|".repeat(RUNS));
    let all = SCENARIOS
        .iter()
        .copied()
        .chain([STATIC_MEMORY_SCENARIO, MIXED_BUILDERS_SCENARIO]);
    for sc in all {
        for release in RELEASES {
            let name = sc.trim_end_matches(".toml");
            if let Some((_, _, why)) = NOT_RUN.iter().find(|(s, r, _)| *s == sc && *r == release) {
                let _ = writeln!(t, "| {name} | {release} | not run on {release}: {why} |");
                continue;
            }
            if let Some((_, _, test)) = RUN_ELSEWHERE
                .iter()
                .find(|(s, r, _)| *s == sc && *r == release)
            {
                let _ = writeln!(t, "| {name} | {release} | run by {test} |");
                continue;
            }
            let cells: Vec<String> = runs
                .iter()
                .filter(|r| r.scenario == sc && r.release == release)
                .map(|r| format!("{}{:.1} s", if r.passed { "" } else { "FAIL " }, r.seconds))
                .collect();
            if cells.is_empty() {
                continue;
            }
            let _ = writeln!(t, "| {name} | {release} | {} |", cells.join(" | "));
        }
    }
    t
}

fn publish_matrix(run: Run) {
    let table = {
        let mut m = MATRIX.lock().unwrap_or_else(|p| p.into_inner());
        m.push(run);
        matrix_table(&m)
    };
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-matrix.md");
    let _ = std::fs::write(path, &table);
}

fn print_matrix() {
    let table = matrix_table(&MATRIX.lock().unwrap_or_else(|p| p.into_inner()));
    println!("Xen release matrix so far:\n{table}");
}

/// Builds `file` for every release in [`RELEASES`] and boots it three times on each; every boot
/// must pass.
fn matrix_row(file: &'static str) {
    assert!(SCENARIOS.contains(&file), "{file} is not in SCENARIOS");
    for release in RELEASES {
        if let Some((_, _, why)) = NOT_RUN.iter().find(|(s, r, _)| *s == file && *r == release) {
            record(&format!("{file}: not run on {release}: {why}"));
            continue;
        }
        three_runs(file, release);
    }
    print_matrix();
}

/// Builds `file` for `release` once and boots it three times; every boot must pass.
fn three_runs(file: &'static str, release: XenVersion) {
    let _one = ONE_QEMU_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ro = ropts();
    let prepared = run::prepare(&scenario(file), &opts(release), &ro, |_| {})
        .unwrap_or_else(|e| panic!("{file} on Xen {release}: {e}"));
    assert_eq!(
        prepared.plan.xen, release,
        "the plan targets the matrix release"
    );
    assert_eq!(
        Some(prepared.plan.domctl_interface),
        release.domctl_interface_version(),
    );
    for i in 1..=RUNS {
        let (report, log) = prepared
            .test(&ro, |_| {})
            .unwrap_or_else(|e| panic!("{file} on Xen {release} run {i}: {e}"));
        let times: Vec<String> = report
            .domains
            .iter()
            .map(|d| {
                format!(
                    "{} {:?}/{:?}",
                    d.name,
                    d.first_output_s.unwrap_or(-1.0),
                    d.ready_s.unwrap_or(-1.0)
                )
            })
            .collect();
        record(&format!(
            "{file} Xen {release} run {i}/{RUNS}: {} in {:.1} s [domain first-output/ready s: {}]",
            if report.passed { "pass" } else { "FAIL" },
            report.elapsed_s,
            times.join(", ")
        ));
        publish_matrix(Run {
            scenario: file,
            release,
            passed: report.passed,
            seconds: report.elapsed_s,
        });
        // The boot log must show the release we asked for, not whatever was cached.
        let banner = format!("Xen version {release}.");
        assert!(
            log.lines.iter().any(|l| l.raw.contains(&banner)),
            "{file} run {i}: no `{banner}` banner on the console: wrong hypervisor booted"
        );
        assert!(
            report.passed,
            "{file} on Xen {release} run {i}:\n{}\n--- console tail ---\n{}",
            report.table(),
            log.tail(40)
        );
        assert_eq!(report.domains.len(), prepared.expectations.len());
        assert!(report.domains.iter().all(|d| d.outcome == Outcome::Pass));
    }
}

/// Every cell of the matrix is decided: run here, run by a named test file, or excluded with a
/// reason that says why. Runs always (no QEMU): it keeps [`NOT_RUN`] honest and visible.
#[test]
fn matrix_exclusions_are_explicit() {
    let scenarios_on_disk: Vec<String> = std::fs::read_dir(scenario(""))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    // Every ARM boot scenario on disk is in the matrix (6 never boots; x86 ones have their own
    // file until the x86 builder joins the matrix).
    for f in &scenarios_on_disk {
        let text = std::fs::read_to_string(scenario(f)).unwrap_or_else(|e| panic!("{e}"));
        let arm = text.contains("board = \"qemu-virt-arm64");
        if arm && !f.starts_with("6-") {
            assert!(
                SCENARIOS.contains(&f.as_str())
                    || f == STATIC_MEMORY_SCENARIO
                    || f == MIXED_BUILDERS_SCENARIO
                    || f == PV_DEVICES_SCENARIO,
                "{f} is an ARM scenario missing from the release matrix"
            );
        }
    }
    for (sc, release, why) in NOT_RUN {
        assert!(
            scenarios_on_disk.iter().any(|f| f == sc),
            "NOT_RUN names {sc}, which is not in tests/scenarios"
        );
        assert!(RELEASES.contains(release), "NOT_RUN names Xen {release}");
        assert!(why.len() > 40, "a reason, not a shrug: {why}");
        eprintln!("{sc}: not run on {release}: {why}");
    }
    // What is excluded today, stated so a change is deliberate: only 4b on 4.20.
    let excluded: Vec<(&str, XenVersion)> = NOT_RUN.iter().map(|(s, r, _)| (*s, *r)).collect();
    assert_eq!(excluded, [(STATIC_MEMORY_SCENARIO, XenVersion::V4_20)]);
    // Every cell is decided exactly once.
    for sc in SCENARIOS
        .iter()
        .copied()
        .chain([STATIC_MEMORY_SCENARIO, MIXED_BUILDERS_SCENARIO])
    {
        for release in RELEASES {
            let decided = usize::from(SCENARIOS.contains(&sc))
                + NOT_RUN
                    .iter()
                    .filter(|(s, r, _)| *s == sc && *r == release)
                    .count()
                + RUN_ELSEWHERE
                    .iter()
                    .filter(|(s, r, _)| *s == sc && *r == release)
                    .count();
            assert_eq!(decided, 1, "{sc} on Xen {release}");
        }
    }
    let table = matrix_table(&[]);
    assert!(table.contains("| static-mem-virtio-blk | 4.20 | not run on 4.20: direct-map needs"));
    assert!(table.contains("| static-mem-virtio-blk | 4.17 | run by tests/qemu_static_mem.rs |"));
}

#[test]
fn scenario_1_three_domus_gicv3() {
    if enabled("scenario 1") {
        matrix_row("1-three-domus-gicv3.toml");
    }
}

#[test]
fn scenario_2_three_domus_gicv2() {
    if enabled("scenario 2") {
        matrix_row("2-three-domus-gicv2.toml");
    }
}

#[test]
fn scenario_3_dom0_plus_domus() {
    if enabled("scenario 3") {
        matrix_row("3-dom0-plus-domus.toml");
    }
}

#[test]
fn scenario_4_driver_domain_pl031() {
    if enabled("scenario 4") {
        matrix_row("4-driver-domain-pl031.toml");
    }
}

#[test]
fn scenario_5_not_owner_faults() {
    if enabled("scenario 5") {
        matrix_row("5-not-owner-faults.toml");
    }
}

/// Scenario 6 needs no QEMU: it always runs, on every release. The QEMU program is replaced by a
/// sentinel script that leaves a file behind if it is ever started.
#[test]
fn scenario_6_invalid_manifest_never_reaches_qemu() {
    for release in RELEASES {
        let dir =
            std::env::temp_dir().join(format!("domforge-s6-{}-{release}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mark = dir.join("qemu-was-started");
        let sentinel = dir.join("fake-qemu");
        std::fs::write(
            &sentinel,
            format!("#!/bin/sh\ntouch '{}'\n", mark.display()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sentinel, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let ro = RunOptions {
            qemu_program: Some(sentinel.display().to_string()),
            out_dir: Some(dir.join("out")),
            ..ropts()
        };
        let result = run::test(
            &scenario("6-invalid-never-boots.toml"),
            &opts(release),
            &ro,
            |_| {},
        );
        match result {
            Err(PipelineError::Diagnostics { diags, .. }) => {
                let codes: Vec<&str> = diags.errors().map(|d| d.code).collect();
                assert_eq!(codes.len(), 2, "Xen {release}: {codes:?}");
            }
            Err(other) => panic!("Xen {release}: expected validation errors, got: {other}"),
            Ok(report) => panic!(
                "Xen {release}: an invalid manifest was booted: {}",
                report.table()
            ),
        }
        assert!(
            !mark.exists(),
            "Xen {release}: QEMU was started for an invalid manifest"
        );
        assert!(
            !dir.join("out").exists(),
            "Xen {release}: artifacts were built for an invalid manifest"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A domain that sees a different RAM size than the plan says, and a device that is absent:
/// the test must fail, naming the domain and the difference. This checks the harness, not Xen,
/// so it boots once, on the oldest release of the matrix.
#[test]
fn wrong_expectations_fail_naming_domain_and_difference() {
    if !enabled("wrong expectations") {
        return;
    }
    let _one = ONE_QEMU_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ro = ropts();
    // The guest gets 192 MiB as the manifest says; the expectation claims 256 MiB, and app-1 is
    // told to own the PL061 GPIO, which nobody passed through to it.
    let prepared = run::prepare(
        &scenario("1-three-domus-gicv3.toml"),
        &opts(RELEASES[0]),
        &ro,
        |exps| {
            for e in exps.iter_mut() {
                if e.name == "app-2" {
                    e.memory = 256 << 20;
                    if let Some(bank) = e.guest_ram.first_mut() {
                        bank.size = 256 << 20;
                    }
                }
                if e.name == "app-1" {
                    e.owned.push(DeviceSpec {
                        kind: "pl061".into(),
                        addr: 0x903_0000,
                        path: "/pl061@9030000".into(),
                    });
                }
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (report, _log) = prepared.test(&ro, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    record(&format!(
        "wrong expectations: {} in {:.1} s",
        if report.passed {
            "pass (WRONG)"
        } else {
            "fail (as it must)"
        },
        report.elapsed_s
    ));
    assert!(!report.passed, "{}", report.table());
    let msgs = report.messages();
    let table = report.table();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("app-2: ram: expected 256 MiB")
                && m.contains("the guest sees 0x40000000-0x4bffffff (192 MiB)")),
        "{table}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("app-1: device pl061@9030000") && m.contains("present=no")),
        "{table}"
    );
    let outcome = |n: &str| {
        report
            .domains
            .iter()
            .find(|d| d.name == n)
            .map(|d| d.outcome)
    };
    assert_eq!(outcome("app-1"), Some(Outcome::Fail));
    assert_eq!(outcome("app-2"), Some(Outcome::Fail));
    assert_eq!(outcome("app-3"), Some(Outcome::Pass));
}
