//! Issue 19, booted for real: dom0 serves PV devices. Debian's Xen in QEMU x86_64 (TCG), Debian's
//! kernel as PV dom0 with `domforge-init` as `/init`, which starts Debian's xenstored, introduces the
//! two PVH guests of `tests/scenarios/x86-pvh-pv-dom0.toml` and writes their devices' nodes; dom0's
//! blkback serves `app` the scenario's `pv-disk.img` (shipped into dom0, attached to a loop device)
//! read-only as `xvda`, and netback gives both guests a vif on dom0's bridge `xenbr0`.
//!
//! The guests' own kernels judge it (xen-blkfront, xen-netfront in the probe):
//! * `app` has `xvda`, read-only, of the image file's size, and reads the image's first line;
//! * `peer` has no PV disk at all;
//! * each guest's `eth0` has the MAC its manifest gives and pings the other across the bridge;
//! * domforge-init reports every device connected (backend state 4) by name.
//!
//! `x86_driver_domains_serve_a_disk_and_a_network` is the same shape with the backends in driver
//! domains (`tests/scenarios/x86-pvh-driver-domains.toml`): `storage`'s blkback serves the disk,
//! `net`'s netback the vifs on its own bridge; both run domforge's generated initramfs, whose
//! domforge-init reports `event=serving` and does the hotplug work there (the vif of `app` is
//! renamed to its `vifname`).
//!
//! `arm_driver_domains_serve_a_disk_and_a_network` is that shape on ARM64 (QEMU `virt`, TCG, Xen
//! nested; `tests/scenarios/arm64-pv-driver-domains.toml`): dom0 runs Debian's arm64 xenstored and
//! domforge-init builds the four ARM guests (`builder = "init"`) with a store page each.
//!
//! In the driver-domain cells the frontends must be built only after their driver domain served
//! (docs/manifest.md, "Boot order").
//!
//! Under nested x86 TCG a PVH guest sporadically dies (a triple fault, or a kernel fault in
//! interrupt entry; see [`emulator_damage`]); it is restarted (`on_reboot`, or the scenario's
//! `on_crash = "restart"`) and its devices introduced again, a rebuilt driver domain taking its
//! frontends with it, so the test judges each guest's last report, whichever instance gives it.
//! A cell that fails in a boot with such damage gets one more boot, which must pass whole.
//!
//! Runs when `CI=true` or `DOMFORGE_QEMU_TESTS=1`, once per release in [`RELEASES`].

mod common;
use common::{enabled, opts};
use firmware_config::xen::XenVersion;
use qemu_tests::runner::BootLog;
use qemu_tests::session::{self as run, RunOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const RELEASES: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// What one scenario must show.
struct Case {
    scenario: &'static str,
    /// Who serves the disk and the vifs (`dom0` or a domain name).
    disk_backend: &'static str,
    nic_backend: &'static str,
    macs: [(&'static str, &'static str); 2],
    /// A dom0less (`enhanced`) guest with a vif, introduced by domforge-init: (name, MAC).
    dom0less: Option<(&'static str, &'static str)>,
    /// The report ends to wait for.
    until: &'static [(&'static str, usize)],
}

/// Both init-built probe guests' last report line.
const APP_AND_PEER: &[(&str, usize)] = &[
    ("[app] DOMFORGE-PROBE app end=", 1),
    ("[peer] DOMFORGE-PROBE peer end=", 1),
];

#[test]
fn x86_dom0_serves_a_pv_disk_and_a_bridged_network() {
    on_every_release(
        "x86_dom0_serves_a_pv_disk_and_a_bridged_network",
        Case {
            scenario: "tests/scenarios/x86-pvh-pv-dom0.toml",
            disk_backend: "dom0",
            nic_backend: "dom0",
            macs: [("app", "00:16:3e:00:19:02"), ("peer", "00:16:3e:00:19:03")],
            dom0less: None,
            until: APP_AND_PEER,
        },
    );
}

#[test]
fn x86_driver_domains_serve_a_disk_and_a_network() {
    on_every_release(
        "x86_driver_domains_serve_a_disk_and_a_network",
        Case {
            scenario: "tests/scenarios/x86-pvh-driver-domains.toml",
            disk_backend: "storage",
            nic_backend: "net",
            macs: [("app", "00:16:3e:00:19:12"), ("peer", "00:16:3e:00:19:13")],
            dom0less: None,
            until: APP_AND_PEER,
        },
    );
}

#[test]
fn arm_driver_domains_serve_a_disk_and_a_network() {
    on_every_release(
        "arm_driver_domains_serve_a_disk_and_a_network",
        Case {
            scenario: "tests/scenarios/arm64-pv-driver-domains.toml",
            disk_backend: "storage",
            nic_backend: "net",
            macs: [("app", "00:16:3e:00:19:22"), ("peer", "00:16:3e:00:19:23")],
            dom0less: Some(("boot-app", "00:16:3e:00:19:24")),
            until: &[
                ("[app] DOMFORGE-PROBE app end=", 1),
                ("[peer] DOMFORGE-PROBE peer end=", 1),
                ("DOMFORGE-PROBE boot-app end=", 1),
            ],
        },
    );
}

/// Boots `case` once per release in [`RELEASES`], unless QEMU tests are off.
fn on_every_release(test: &str, case: Case) {
    if !enabled(test) {
        return;
    }
    for release in RELEASES {
        let first = boot(&case, release);
        let Err(failure) = judged(&case, release, &first) else {
            continue;
        };
        let Some(damage) = emulator_damage(&first.0) else {
            std::panic::resume_unwind(failure);
        };
        eprintln!(
            "note: Xen {release}: {} failed in a boot where nested TCG damaged a guest ({damage}); \
             booting it once more\n--- domforge-init's lifecycle events ---\n{}",
            case.scenario,
            lifecycle(&first.0)
        );
        let second = boot(&case, release);
        if let Err(failure) = judged(&case, release, &second) {
            std::panic::resume_unwind(failure);
        }
    }
}

/// [`judge`] with its verdict caught, so that a failure can be looked at before it is reported.
fn judged(case: &Case, release: XenVersion, boot: &(BootLog, f64)) -> std::thread::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        judge(case, release, &boot.0, boot.1)
    }))
}

/// The first sign that the emulator, not the system under test, broke a guest: Xen's `dNvM Triple
/// fault` (it resets the guest) or a guest kernel's fatal exception. QEMU 7.2's nested SVM under
/// TCG does this to PVH guests at random (seen in interrupt entry: an event delivered twice, the
/// second time on the kernel's entry stack with the user's GS). Every guest of these scenarios
/// restarts and the supervisor rebuilds the frontends of a rebuilt driver domain, but a guest that
/// dies while its peer pings it can fail a cell that no product bug failed. Such a cell gets one
/// more boot, which must pass whole; a failure without this evidence is reported as it is.
fn emulator_damage(log: &BootLog) -> Option<String> {
    log.lines
        .iter()
        .find(|l| {
            (l.raw.starts_with("(XEN) d") && l.raw.contains(" Triple fault"))
                || l.raw
                    .contains("Kernel panic - not syncing: Fatal exception")
        })
        .map(|l| l.raw.trim().to_string())
}

/// The domain id domforge-init gave `name` last (`event=started`), `0` for dom0.
fn domid_of(log: &BootLog, name: &str) -> String {
    if name == "dom0" {
        return "0".into();
    }
    let prefix = format!("DOMFORGE-INIT event=started name={name} domid=");
    log.lines
        .iter()
        .rev()
        .find_map(|l| l.raw.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} never started"))
        .to_string()
}

/// The last value of `key` in `name`'s probe lines (a restarted guest reports again), relayed by
/// domforge-init (`[name] …`) or printed through Xen's vPL011 (a dom0less guest).
fn probe_value(log: &BootLog, name: &str, key: &str) -> Option<String> {
    let relayed = format!("[{name}] DOMFORGE-PROBE {name} {key}=");
    let direct = format!("DOMFORGE-PROBE {name} {key}=");
    log.lines.iter().rev().find_map(|l| {
        l.raw
            .strip_prefix(&relayed)
            .or_else(|| l.text.strip_prefix(&direct))
            .map(str::to_owned)
    })
}

/// The two tests of this file run in one process: one QEMU at a time.
static ONE_QEMU_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Boots `case` on `release` until its reports are in; returns the log and the seconds it took.
fn boot(case: &Case, release: XenVersion) -> (BootLog, f64) {
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let ro = RunOptions {
        // Seen: both reports 50-75 s after QEMU's start with dom0 as the backend, 40-150 s with
        // two driver domains (the frontends built once those serve), and up to 351 s when nested
        // TCG broke a driver domain (which then takes its frontends with it) or a guest more than
        // once.
        deadline: Duration::from_secs(540),
        until_seen: case.until,
        ..RunOptions::default()
    };
    // Both guests are judged here: no probe overlay may replace their `domforge.pv_*` words.
    let prepared = run::prepare(&path(case.scenario), &opts(release), &ro, |exps| {
        exps.iter_mut().for_each(|e| e.probe = false)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let t0 = std::time::Instant::now();
    let log = prepared.boot(&ro, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    (log, t0.elapsed().as_secs_f64())
}

/// What one boot of `case` must show (see the file's head); panics on the first thing missing.
fn judge(case: &Case, release: XenVersion, log: &BootLog, seconds: f64) {
    let tail = || {
        format!(
            "{}\n--- domforge-init's lifecycle events ---\n{}",
            log.tail(60),
            lifecycle(log)
        )
    };
    let seen = |pred: &dyn Fn(&str) -> bool| log.lines.iter().any(|l| pred(&l.raw));
    assert!(
        seen(&|l| l.starts_with("DOMFORGE-INIT event=xenstored pid=")),
        "Xen {release}: domforge-init did not start xenstored\n{}",
        tail()
    );
    let disk_backend = domid_of(log, case.disk_backend);
    let nic_backend = domid_of(log, case.nic_backend);
    for (name, device, backend) in [
        ("app", "xvda", &disk_backend),
        ("app", "vif_0", &nic_backend),
        ("peer", "vif_0", &nic_backend),
    ] {
        let want = format!(
            "DOMFORGE-INIT event=device-connected name={name} device={device} backend={backend} "
        );
        assert!(
            seen(&|l| l.starts_with(&want)),
            "Xen {release}: {name}'s {device} never connected to domain {backend}\n{}",
            tail()
        );
    }
    // A driver domain's own domforge-init did the hotplug work there.
    for driver in [case.disk_backend, case.nic_backend] {
        if driver != "dom0" {
            let want = format!("[{driver}] DOMFORGE-INIT event=serving domid=");
            assert!(
                seen(&|l| l.starts_with(&want)),
                "Xen {release}: driver domain {driver} did not start serving\n{}",
                tail()
            );
        }
    }
    for (frontend, driver) in [("app", case.disk_backend), ("peer", case.nic_backend)] {
        built_after_its_driver_served(log, release, frontend, driver);
    }
    if case.nic_backend != "dom0" {
        let renamed = format!("[{}] domforge-init: serving domain ", case.nic_backend);
        assert!(
            seen(&|l| l.starts_with(&renamed) && l.ends_with(": app-eth0 in bridge appnet")),
            "Xen {release}: app's vif was not renamed to its vifname and bridged"
        );
    }

    // The disk as the image file says it must look (independent of what domforge wrote).
    let image = std::fs::read(path("tests/scenarios/pv-disk.img")).unwrap();
    let first_line = String::from_utf8_lossy(image.split(|b| *b == b'\n').next().unwrap());
    let v = |name: &str, key: &str| probe_value(log, name, key);
    assert_eq!(
        v("app", "pvdisk.xvda.present").as_deref(),
        Some("yes"),
        "Xen {release}\n{}",
        tail()
    );
    assert_eq!(
        v("app", "pvdisk.xvda.size"),
        Some((image.len() / 512).to_string())
    );
    assert_eq!(
        v("app", "pvdisk.xvda.ro").as_deref(),
        Some("1"),
        "access=ro"
    );
    assert_eq!(
        v("app", "pvdisk.xvda.marker").as_deref(),
        Some(first_line.as_ref())
    );
    assert_eq!(v("app", "pvdisk.xvda.verdict").as_deref(), Some("ok"));
    assert_eq!(
        v("peer", "pvdisk.none").as_deref(),
        Some("ok"),
        "peer has no disk"
    );

    for (name, mac) in case.macs {
        assert_eq!(
            v(name, "pvnic.eth0.mac").as_deref(),
            Some(mac),
            "Xen {release}: {name}\n{}",
            tail()
        );
        assert_eq!(v(name, "pvnic.eth0.carrier").as_deref(), Some("1"));
        assert_eq!(
            v(name, "pvnic.eth0.ping").as_deref(),
            Some("ok"),
            "Xen {release}: {name} could not reach its peer\n{}",
            tail()
        );
    }
    if let Some((name, mac)) = case.dom0less {
        dom0less_served(log, release, name, mac, &nic_backend);
    }
    eprintln!(
        "{} on Xen {release}: pass in {seconds:.1} s; builds: {}",
        case.scenario,
        builds(log)
    );
}

/// domforge-init's lifecycle events in order (every build, shutdown, restart and wait), for a
/// failure's message: under nested TCG guests restart, and the history says which and when.
fn lifecycle(log: &BootLog) -> String {
    const KINDS: [&str; 7] = [
        "started",
        "shutdown",
        "restarted",
        "waiting",
        "wait-timeout",
        "gave-up",
        "build-failed",
    ];
    log.lines
        .iter()
        .filter(|l| {
            l.raw
                .strip_prefix("DOMFORGE-INIT event=")
                .is_some_and(|rest| KINDS.iter().any(|k| rest.starts_with(&format!("{k} "))))
        })
        .map(|l| l.raw.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How often each domain was built, `name×n` in order of first build.
fn builds(log: &BootLog) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in &log.lines {
        let Some(rest) = l.raw.strip_prefix("DOMFORGE-INIT event=started name=") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name.to_string(), 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| format!("{n}×{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// domforge-init builds a frontend once its driver domain serves (docs/manifest.md, "Boot
/// order"): dom0 said `frontend` waits for `driver` before it first built it, and `driver` itself
/// said `serving` on its console (unless dom0 says the wait ran out). The two consoles are not
/// compared line by line: a guest's console reaches dom0 through hvc's buffer and its ring, so the
/// driver's line can be relayed after dom0's own next lines although it was written first.
fn built_after_its_driver_served(log: &BootLog, release: XenVersion, frontend: &str, driver: &str) {
    if driver == "dom0" {
        return;
    }
    let first = |want: &str| log.lines.iter().position(|l| l.raw.starts_with(want));
    let waited = log.lines.iter().position(|l| {
        l.raw
            .strip_prefix(&format!("DOMFORGE-INIT event=waiting name={frontend} for="))
            .is_some_and(|rest| rest.split(',').any(|d| d.trim() == driver))
    });
    let built = first(&format!("DOMFORGE-INIT event=started name={frontend} "));
    assert!(
        matches!((waited, built), (Some(w), Some(b)) if w < b),
        "Xen {release}: {frontend} did not wait for its driver domain {driver} before its first build\n{}",
        lifecycle(log)
    );
    let timed_out = first(&format!("DOMFORGE-INIT event=wait-timeout name={frontend}")).is_some();
    let served = first(&format!("[{driver}] DOMFORGE-INIT event=serving ")).is_some();
    assert!(
        timed_out || served,
        "Xen {release}: {frontend} was built although its driver domain {driver} never served\n{}",
        lifecycle(log)
    );
}

/// A dom0less guest got its store page and was introduced by domforge-init, its vif connected to
/// the driver domain, and its own netfront reached its peer.
fn dom0less_served(log: &BootLog, release: XenVersion, name: &str, mac: &str, backend: &str) {
    let tail = || log.tail(60);
    let seen = |want: &str| log.lines.iter().any(|l| l.raw.starts_with(want));
    assert!(
        seen(&format!(
            "DOMFORGE-INIT event=introduced name={name} domid="
        )),
        "Xen {release}: dom0less {name} was not introduced\n{}",
        tail()
    );
    let connected =
        format!("DOMFORGE-INIT event=device-connected name={name} device=vif_0 backend={backend} ");
    assert!(
        seen(&connected),
        "Xen {release}: {name}'s vif never connected to {backend}\n{}",
        tail()
    );
    let v = |key: &str| probe_value(log, name, key);
    assert_eq!(
        v("pvnic.eth0.mac").as_deref(),
        Some(mac),
        "Xen {release}\n{}",
        tail()
    );
    assert_eq!(
        v("pvnic.eth0.ping").as_deref(),
        Some("ok"),
        "Xen {release}\n{}",
        tail()
    );
}
