//! Issue 7, booted for real: one ARM64 board (QEMU `virt`, TCG, Xen nested) with both builders.
//! `tests/scenarios/7-mixed-builders-arm.toml`: Xen builds `boot-app` at boot (dom0less); dom0
//! (Debian's kernel) runs the static aarch64 `domforge-init` as `/init`, which builds `app`
//! (2 vCPUs, told to crash after its report, `on_crash = "restart"`) and the driver domain
//! `rtc-driver` (QEMU's PL031 by MMIO + SPI, no DMA, no IOMMU) through domctls and relays their
//! PV consoles as `[name] line`.
//!
//! Every boot must show, on each Xen release of the matrix (issue 8) and three times each:
//! * every domain's probe report matches the plan (vCPUs, guest RAM, `/hypervisor`, the PL031
//!   working in `rtc-driver` and faulting in `boot-app`), judged on the console up to `app`'s
//!   crash;
//! * the init-built guests' reports came through domforge-init's relay;
//! * domforge-init saw `app` go down after its panic (as `SHUTDOWN_reboot`: ARM Linux reports a
//!   panic only by resetting, which the plan's `panic=1` asks for), rebuilt it, and the new `app`
//!   reported again; `rtc-driver` never went down;
//! * domforge-init found the release the manifest targets (`event=xen … match=exact`).
//!
//! Each boot prints the time from dom0's first console line to each init-built guest's first
//! output and domforge-init's build time per guest; the matrix goes to
//! `$CARGO_TARGET_TMPDIR/qemu-init-arm-matrix.md`. Runs when `CI=true` or
//! `DOMFORGE_QEMU_TESTS=1`; otherwise prints why it skipped.

mod common;
use common::{before_requested_crash, enabled, opts};
use firmware_config::xen::XenVersion;
use qemu_tests::report::{self, Outcome};
use qemu_tests::session::{self as run, RunOptions};
use std::path::Path;
use std::time::Duration;

const SCENARIO: &str = "tests/scenarios/7-mixed-builders-arm.toml";
const RELEASES: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];
const RUNS: usize = 3;
/// The domains domforge-init builds in the scenario.
const INIT_BUILT: [&str; 2] = ["app", "rtc-driver"];

#[test]
fn mixed_builders_arm_boot_restart_and_passthrough() {
    if !enabled("mixed_builders_arm_boot_restart_and_passthrough") {
        return;
    }
    let mut matrix = String::from(
        "| Xen | run | result | s to all reports + app's restart report | dom0 first line -> app / rtc-driver first output (s) |\n|---|---|---|---|---|\n",
    );
    let ro = RunOptions {
        deadline: Duration::from_secs(360),
        until_seen: &[("[app] DOMFORGE-PROBE app end=", 2)],
        ..RunOptions::default()
    };
    for release in RELEASES {
        let prepared = run::prepare(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO),
            &opts(release),
            &ro,
            |_| {},
        )
        .unwrap_or_else(|e| panic!("Xen {release}: {e}"));
        assert_eq!(prepared.plan.xen, release);
        for run in 1..=RUNS {
            let log = prepared
                .boot(&ro, |_| {})
                .unwrap_or_else(|e| panic!("Xen {release} run {run}: {e}"));
            let raw = |pred: &dyn Fn(&str) -> bool| log.lines.iter().position(|l| pred(&l.raw));
            let at = |i: usize| log.lines[i].at.as_secs_f64();

            // 1. Every promise of the manifest, as the guests saw it before app's crash.
            let before = before_requested_crash(&log, "app");
            let verdict = report::evaluate(&prepared.plan.name, &prepared.expectations, &before);
            eprintln!("Xen {release} run {run}:\n{}", verdict.table());
            assert!(
                verdict.domains.iter().all(|d| d.outcome.ok())
                    && verdict.domains.len() == prepared.expectations.len(),
                "Xen {release} run {run}:\n{}\n--- console tail ---\n{}",
                verdict.table(),
                log.tail(60)
            );
            assert!(
                verdict
                    .domains
                    .iter()
                    .filter(|d| d.name != "dom0")
                    .all(|d| d.outcome == Outcome::Pass),
                "{}",
                verdict.table()
            );

            // 2. The init-built guests reported through domforge-init's relay.
            let dom0_first = log
                .timings
                .get("dom0")
                .and_then(|t| t.first_output)
                .unwrap_or_else(|| panic!("dom0 printed nothing\n{}", log.tail(60)))
                .as_secs_f64();
            let mut first_outputs = Vec::new();
            for name in INIT_BUILT {
                let first = raw(&|l| l.starts_with(&format!("[{name}] ")))
                    .unwrap_or_else(|| panic!("no relayed line of {name}\n{}", log.tail(60)));
                raw(&|l| l.starts_with(&format!("[{name}] DOMFORGE-PROBE {name} end=")))
                    .unwrap_or_else(|| {
                        panic!(
                            "{name}'s report did not come through the relay\n{}",
                            log.tail(60)
                        )
                    });
                first_outputs.push(format!("{:.1}", at(first) - dom0_first));
                let started =
                    raw(&|l| l.starts_with(&format!("DOMFORGE-INIT event=started name={name} ")))
                        .unwrap_or_else(|| panic!("domforge-init never started {name}"));
                eprintln!(
                    "Xen {release} run {run}: {name}: first output {:.1} s after dom0's first line; {}",
                    at(first) - dom0_first,
                    log.lines[started].raw
                );
            }

            // 3. app crashed, was rebuilt and reported again; rtc-driver stayed up. ARM Linux has
            // no Xen panic notifier, so the crash reaches Xen as the reset `panic=1` (added by the
            // plan for on_crash = "restart") asks for: SHUTDOWN_reboot, which domforge-init answers
            // by rebuilding the guest.
            let first_end = raw(&|l| l.starts_with("[app] DOMFORGE-PROBE app end="))
                .unwrap_or_else(|| panic!("app never reported"));
            assert!(
                raw(&|l| l == "[app] DOMFORGE-PROBE app crash=requested")
                    .is_some_and(|i| i < first_end),
                "app was not told to crash"
            );
            let shutdown = log
                .lines
                .iter()
                .skip(first_end)
                .position(|l| {
                    l.raw.starts_with("DOMFORGE-INIT event=shutdown name=app ")
                        && l.raw.contains(" reason=reboot ")
                        && l.raw.ends_with(" action=restart")
                })
                .map(|i| i + first_end)
                .unwrap_or_else(|| {
                    panic!("no crash of app seen by domforge-init\n{}", log.tail(60))
                });
            let restarted = log
                .lines
                .iter()
                .skip(shutdown)
                .position(|l| l.raw == "DOMFORGE-INIT event=restarted name=app")
                .map(|i| i + shutdown)
                .unwrap_or_else(|| panic!("app was not restarted\n{}", log.tail(60)));
            let second_end = log
                .lines
                .iter()
                .skip(restarted)
                .position(|l| l.raw.starts_with("[app] DOMFORGE-PROBE app end="))
                .map(|i| i + restarted)
                .unwrap_or_else(|| panic!("the restarted app never reported\n{}", log.tail(60)));
            assert!(
                log.lines[restarted..second_end]
                    .iter()
                    .any(|l| l.raw == "[app] DOMFORGE-PROBE app cpus.online=2"),
                "the restarted app does not see its 2 vCPUs"
            );
            assert!(
                raw(&|l| l.starts_with("DOMFORGE-INIT event=shutdown name=rtc-driver ")).is_none(),
                "rtc-driver went down"
            );

            // 4. The release the manifest targets.
            let xen_event = raw(&|l| l.starts_with("DOMFORGE-INIT event=xen "))
                .map(|i| log.lines[i].raw.clone())
                .unwrap_or_else(|| panic!("domforge-init never reported the Xen it found"));
            assert!(
                xen_event.contains(&format!(" running={release} "))
                    && xen_event.ends_with(" match=exact"),
                "{xen_event}"
            );
            let line = format!(
                "| {release} | {run} | pass | {:.1} | {} |\n",
                at(second_end),
                first_outputs.join(" / ")
            );
            eprint!("{line}");
            matrix.push_str(&line);
            let _ = std::fs::write(
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-init-arm-matrix.md"),
                &matrix,
            );
        }
    }
    println!("{matrix}");
}
