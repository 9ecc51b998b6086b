//! Shared by the QEMU test files (each test file is its own crate; `mod common;` includes this).

use firmware_config::xen::XenVersion;
use pipeline::Options;

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
