//! The `uefi` boot target proven through the real firmware (issue 18): Debian's EDK2 for arm64
//! (`/usr/share/qemu-efi-aarch64/QEMU_EFI.fd`, package `qemu-efi-aarch64`) is QEMU's `-bios` on
//! `virt`, the bundle's `uefi.img` is its virtio disk, and nothing else is given to QEMU. EDK2 must
//! start `EFI/BOOT/BOOTAA64.EFI` (Xen's EFI loader) by itself, Xen must read `BOOTAA64.cfg`, load
//! the DTB and every module the DTB names (`xen,uefi-binary`), and build the domains; every probe
//! must then report what the manifest promises, as in the direct-boot matrix.
//!
//! - Scenario 1: three dom0less domUs (a kernel shared by all three, loaded once).
//! - Scenario 7: dom0 (its kernel and generated initramfs named in the DTB too) runs
//!   domforge-init, which builds `app` and the PL031 driver domain `rtc-driver`, beside the
//!   dom0less `boot-app`. QEMU gets `-machine acpi=off` ([`qemu_launch::arm_uefi`]): with firmware
//!   and ACPI on, `virt` replaces the PL061 GPIO the board's DTB describes by an ACPI GED, and dom0
//!   took an external abort probing it.
//! - x86_64, the example (board qemu-x86_64): OVMF (`/usr/share/ovmf/OVMF.fd`, package `ovmf`)
//!   starts `xen.efi` from `EFI/BOOT/BOOTX64.EFI`; Xen loads dom0's kernel and initramfs from
//!   `BOOTX64.cfg`, says "Bootloader: EFI", and domforge-init in dom0 builds the PVH guests `web`
//!   and `worker`, which report.
//! - x86_64 through GRUB: OVMF starts Debian's GRUB from `grub.img`, GRUB reads domforge's
//!   `grub.cfg` and boots Xen by multiboot2 ("Bootloader: GRUB 2..."), the rest as above.
//!
//! Each boot must show Xen's "EFI loader" line before Xen's banner, so a direct boot cannot pass
//! for this one. Once per Xen release (4.17, 4.20); `DOMFORGE_QEMU_RUNS=3` for 3/3. Times from QEMU
//! start (the EFI loader line, Xen's banner, each domain's report) go to
//! `$CARGO_TARGET_TMPDIR/qemu-uefi.txt`. Runs when `CI=true` or `DOMFORGE_QEMU_TESTS=1`.

mod common;
use common::{assert_relayed, before_requested_crash, enabled, opts};
use firmware_config::xen::XenVersion;
use qemu_tests::report::{self, Outcome};
use qemu_tests::runner::BootLog;
use qemu_tests::session::{self as run, BootPath, Prepared, RunOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Per boot: the direct matrix's time plus EDK2's ~6 s before it starts Xen (notes: first probe
/// at 18.8 s, all three domUs by 26 s; 26.4 s measured here on 4.17), with room for a busy host.
const DEADLINE: Duration = Duration::from_secs(240);
const RELEASES: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];

static ONE_QEMU_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Boots per release: 1 (CI), or `DOMFORGE_QEMU_RUNS`.
fn runs() -> usize {
    std::env::var("DOMFORGE_QEMU_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn record(line: &str) {
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-uefi.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

fn prepare(file: &str, release: XenVersion, ro: &RunOptions) -> Prepared {
    prepare_at(&scenario(file), release, ro)
}

fn prepare_at(manifest: &Path, release: XenVersion, ro: &RunOptions) -> Prepared {
    let file = manifest.display();
    let prepared = run::prepare(manifest, &opts(release), ro, |_| {})
        .unwrap_or_else(|e| panic!("{file} on Xen {release}: {e}"));
    let args = prepared.qemu.args.join(" ");
    let firmware = match prepared.plan.arch {
        firmware_config::board::Arch::Arm64 => "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
        firmware_config::board::Arch::X86_64 => "/usr/share/ovmf/OVMF.fd",
    };
    assert!(
        args.contains(&format!("-bios {firmware}"))
            && args.contains(if ro.boot == BootPath::Grub {
                "grub.img"
            } else {
                "uefi.img"
            })
            && !args.contains("-kernel")
            && !args.contains("loader,"),
        "QEMU must be given only the firmware and the ESP disk: {args}"
    );
    prepared
}

/// Asserts the firmware path: Xen's EFI loader line, then Xen's banner; returns both times.
fn firmware_path(log: &BootLog, release: XenVersion, what: &str) -> (f64, f64) {
    let at = |needle: &str| {
        log.lines
            .iter()
            .find(|l| l.raw.contains(needle))
            .map(|l| l.at.as_secs_f64())
    };
    // xen/common/efi/boot.c, efi_start(): "Xen <version> (c/s ...) EFI loader".
    let banner = format!("Xen version {release}.");
    match (at("EFI loader"), at(&banner)) {
        (Some(e), Some(x)) if e <= x => (e, x),
        _ => panic!(
            "{what}: Xen's `EFI loader` line, then `{banner}`, must appear in that order:\n{}",
            log.tail(60)
        ),
    }
}

fn times(verdict: &report::TestReport) -> String {
    verdict
        .domains
        .iter()
        .map(|d| format!("{} {:.1}", d.name, d.ready_s.unwrap_or(-1.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn scenario_1_three_domus_through_uefi() {
    if !enabled("scenario 1 through UEFI") {
        return;
    }
    let file = "1-three-domus-gicv3.toml";
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let ro = RunOptions {
        deadline: DEADLINE,
        boot: BootPath::Uefi,
        ..RunOptions::default()
    };
    for release in RELEASES {
        let prepared = prepare(file, release, &ro);
        for i in 1..=runs() {
            let what = format!("{file} Xen {release} via UEFI run {i}/{}", runs());
            let (verdict, log) = prepared
                .test(&ro, |_| {})
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let (efi, xen) = firmware_path(&log, release, &what);
            record(&format!(
                "{what}: {} in {:.1} s [EFI loader {efi:.1} s, Xen banner {xen:.1} s; domains ready: {}]",
                if verdict.passed { "pass" } else { "FAIL" },
                verdict.elapsed_s,
                times(&verdict)
            ));
            assert!(
                verdict.passed,
                "{what}:\n{}\n--- console tail ---\n{}",
                verdict.table(),
                log.tail(40)
            );
            assert_eq!(verdict.domains.len(), prepared.expectations.len());
            assert!(verdict.domains.iter().all(|d| d.outcome == Outcome::Pass));
        }
    }
}

#[test]
fn scenario_7_dom0_with_domforge_init_through_uefi() {
    if !enabled("scenario 7 through UEFI") {
        return;
    }
    let file = "7-mixed-builders-arm.toml";
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // `app` is told to crash after its report (the restart is tests/qemu_init_arm.rs's subject):
    // stop at its first report and judge the boot up to its panic.
    let ro = RunOptions {
        deadline: Duration::from_secs(360),
        boot: BootPath::Uefi,
        until_seen: &[("[app] DOMFORGE-PROBE app end=", 1)],
        ..RunOptions::default()
    };
    for release in RELEASES {
        let prepared = prepare(file, release, &ro);
        for i in 1..=runs() {
            let what = format!("{file} Xen {release} via UEFI run {i}/{}", runs());
            let log = prepared
                .boot(&ro, |_| {})
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let (efi, xen) = firmware_path(&log, release, &what);
            let before = before_requested_crash(&log, "app");
            let verdict = report::evaluate(&prepared.plan.name, &prepared.expectations, &before);
            record(&format!(
                "{what}: {} [EFI loader {efi:.1} s, Xen banner {xen:.1} s; domains ready: {}]",
                if verdict.domains.iter().all(|d| d.outcome.ok()) {
                    "pass"
                } else {
                    "FAIL"
                },
                times(&verdict)
            ));
            assert!(
                verdict.domains.iter().all(|d| d.outcome.ok())
                    && verdict.domains.len() == prepared.expectations.len(),
                "{what}:\n{}\n--- console tail ---\n{}",
                verdict.table(),
                log.tail(60)
            );
            assert_relayed(&log, &["app", "rtc-driver"], &what);
        }
    }
}

#[test]
fn x86_example_through_uefi() {
    if enabled("the x86 example through UEFI") {
        x86_example(BootPath::Uefi, "(XEN) Bootloader: EFI");
    }
}

#[test]
fn x86_example_through_grub() {
    if enabled("the x86 example through GRUB") {
        x86_example(BootPath::Grub, "(XEN) Bootloader: GRUB 2");
    }
}

/// The x86 example booted by `boot` through OVMF: Xen must say which loader started it
/// (`bootloader`, from the multiboot2 or EFI loader name, xen/arch/x86/setup.c), and both PVH
/// guests must report through domforge-init's relay.
fn x86_example(boot: BootPath, bootloader: &str) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qemu-x86_64.toml");
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The direct boot's 420 s (tests/qemu_x86.rs, 90-160 s seen on a loaded machine) plus OVMF's ~5 s.
    let ro = RunOptions {
        deadline: Duration::from_secs(420),
        boot,
        ..RunOptions::default()
    };
    let path = boot.target();
    for release in RELEASES {
        let prepared = prepare_at(&manifest, release, &ro);
        for i in 1..=runs() {
            let what = format!("x86 example Xen {release} via {path} run {i}/{}", runs());
            let (verdict, log) = prepared
                .test(&ro, |_| {})
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let at = |needle: &str| {
                log.lines
                    .iter()
                    .find(|l| l.raw.contains(needle))
                    .map(|l| l.at.as_secs_f64())
            };
            let banner = at(&format!("Xen version {release}.")).unwrap_or(-1.0);
            record(&format!(
                "{what}: {} in {:.1} s [Xen banner {banner:.1} s; domains ready: {}]",
                if verdict.passed { "pass" } else { "FAIL" },
                verdict.elapsed_s,
                times(&verdict)
            ));
            assert!(
                verdict.passed,
                "{what}:\n{}\n--- console tail ---\n{}",
                verdict.table(),
                log.tail(40)
            );
            // Started by the firmware path, not by QEMU's multiboot loader.
            assert!(
                at(bootloader).is_some(),
                "{what}: no `{bootloader}` from Xen\n{}",
                log.tail(40)
            );
            assert_relayed(&log, &["web", "worker"], &what);
        }
    }
}
