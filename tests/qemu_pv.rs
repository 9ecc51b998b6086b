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
//! Under nested x86 TCG a fresh PVH guest sporadically triple-faults early (see qemu_x86.rs); it is
//! restarted by `on_reboot` and its devices introduced again, so the test waits for both guests'
//! last report, whichever instance gives it.
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
        pv_on(&case, release);
    }
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

fn pv_on(case: &Case, release: XenVersion) {
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let ro = RunOptions {
        // Seen: both reports 50-75 s after QEMU's start with dom0 as the backend, 130-190 s with
        // two driver domains, and up to 351 s when nested TCG triple-faulted a driver domain
        // (which then takes its frontends with it) or a guest more than once.
        deadline: Duration::from_secs(720),
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
    let tail = || log.tail(60);
    let seen = |pred: &dyn Fn(&str) -> bool| log.lines.iter().any(|l| pred(&l.raw));
    assert!(
        seen(&|l| l.starts_with("DOMFORGE-INIT event=xenstored pid=")),
        "Xen {release}: domforge-init did not start xenstored\n{}",
        tail()
    );
    let disk_backend = domid_of(&log, case.disk_backend);
    let nic_backend = domid_of(&log, case.nic_backend);
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
    let v = |name: &str, key: &str| probe_value(&log, name, key);
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
        dom0less_served(&log, release, name, mac, &nic_backend);
    }
    eprintln!(
        "{} on Xen {release}: pass in {:.1} s",
        case.scenario,
        t0.elapsed().as_secs_f64()
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
