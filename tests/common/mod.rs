//! Shared by the QEMU test files (each test file is its own crate; `mod common;` includes this).

use firmware_config::xen::XenVersion;
use pipeline::Options;

/// QEMU boots take minutes: they run when `CI=true` (where a missing QEMU or package is a failure)
/// or `DOMFORGE_QEMU_TESTS=1`; otherwise the test prints why it skipped.
pub fn enabled(test: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let asked = std::env::var("DOMFORGE_QEMU_TESTS").is_ok_and(|v| v == "1");
    if !(ci || asked) {
        eprintln!(
            "SKIPPED {test}: QEMU boots take minutes; set DOMFORGE_QEMU_TESTS=1 (CI=true runs them)"
        );
    }
    ci || asked
}

/// Pipeline options for `release`, quiet: the scenario files say 4.17 and are re-targeted as
/// `domforge test --xen` does.
pub fn opts(release: XenVersion) -> Options {
    let mut o = Options::from_env().unwrap_or_else(|e| panic!("{e}"));
    o.quiet = true;
    o.xen_override = Some(release);
    o
}
