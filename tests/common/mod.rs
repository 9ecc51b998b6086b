//! Shared by the QEMU test files (each test file is its own crate; `mod common;` includes this).

use firmware_config::xen::XenVersion;
use pipeline::Options;
use qemu_tests::runner::BootLog;

/// QEMU boots take minutes: they run under `scripts/test-all` (and CI) or with
/// `DOMFORGE_QEMU_TESTS=1`; otherwise the test prints why it skipped (`test_support`).
pub fn enabled(test: &str) -> bool {
    test_support::need_qemu(test)
}

/// Pipeline options for `release`, quiet: the scenario files say 4.17 and are re-targeted as
/// `domforge test --xen` does.
pub fn opts(release: XenVersion) -> Options {
    let mut o = Options::from_env().unwrap_or_else(|e| panic!("{e}"));
    o.quiet = true;
    o.xen_override = Some(release);
    o
}

/// The boot with `name`'s first life only: its lines after its (requested) panic dropped — the
/// rebuilt guest's report is judged separately — and the panic no longer counted as its failure.
/// Every other domain's lines stay.
#[allow(dead_code)] // used by the files that boot scenario 7 (init_arm, uefi)
pub fn before_requested_crash(log: &BootLog, name: &str) -> BootLog {
    let prefix = format!("[{name}] ");
    let cut = log
        .lines
        .iter()
        .position(|l| l.raw.starts_with(&prefix) && l.raw.contains("Kernel panic"))
        .unwrap_or(log.lines.len());
    let mut before = log.clone();
    before.lines = log
        .lines
        .iter()
        .enumerate()
        .filter(|(i, l)| *i < cut || !l.raw.starts_with(&prefix))
        .map(|(_, l)| l.clone())
        .collect();
    if let Some(t) = before.timings.get_mut(name)
        && t.failed
            .as_deref()
            .is_some_and(|f| f.contains("Kernel panic"))
    {
        t.failed = None;
    }
    before
}
