//! One test policy for the whole workspace (a dev-dependency only; nothing in the product uses it).
//!
//! - **Strict** ([`strict`]): under `scripts/test-all` (which CI runs, `CI=true`) every prerequisite
//!   must be present: a missing tool, package or network is a test failure, never a silent pass.
//!   `scripts/test-all --quick` and a bare `cargo test` are not strict: a test whose prerequisite is
//!   missing prints `SKIPPED <test>: <why>` and passes.
//! - **QEMU boots** ([`qemu_enabled`]) take minutes: they run under `scripts/test-all` (and CI) or
//!   with `DOMFORGE_QEMU_TESTS=1`, and are skipped by `--quick`.
//!
//! [`require!`] states a prerequisite at the top of a test:
//!
//! ```ignore
//! require!(tool "fdtget", "device-tree-compiler");
//! require!(qemu "scenario_1");
//! require!(network fetcher.linux_kernel(arch), "Debian's arm64 kernel");
//! ```

use std::process::Command;

fn flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| v == "true" || v == "1")
}

/// Missing prerequisites fail (`DOMFORGE_STRICT=1`, set by `scripts/test-all`, or `CI=true`), unless
/// `DOMFORGE_STRICT=0` (`--quick`).
pub fn strict() -> bool {
    flag("DOMFORGE_STRICT").unwrap_or_else(|| flag("CI").unwrap_or(false))
}

/// QEMU boots run (`DOMFORGE_QEMU_TESTS=1`, set by `scripts/test-all`, or `CI=true`), unless
/// `DOMFORGE_QEMU_TESTS=0` (`--quick`).
pub fn qemu_enabled() -> bool {
    flag("DOMFORGE_QEMU_TESTS").unwrap_or_else(|| flag("CI").unwrap_or(false))
}

/// Whether `tool` runs at all (`--version`, any output or a zero exit).
pub fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// A prerequisite is missing: fails when [`strict`], else says why the test is skipped. Returns
/// `false` so callers can `return` from the test.
pub fn missing(test: &str, why: &str) -> bool {
    assert!(
        !strict(),
        "{test}: a prerequisite is missing ({why}); scripts/test-all and CI need every one \
         (scripts/setup installs them)"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether a tool is there (see [`missing`] for what happens when it is not).
pub fn need_tool(test: &str, tool: &str, package: &str) -> bool {
    tool_present(tool)
        || missing(
            test,
            &format!("`{tool}` is not installed (apt-get install {package})"),
        )
}

/// [`need_tool`] for each `(tool, package)`, stopping at the first that is missing.
pub fn need_tools(test: &str, tools: &[(&str, &str)]) -> bool {
    tools
        .iter()
        .all(|(tool, package)| need_tool(test, tool, package))
}

/// Whether QEMU boots run now (they are skipped, never failed, when not enabled).
pub fn need_qemu(test: &str) -> bool {
    if !qemu_enabled() {
        eprintln!(
            "SKIPPED {test}: QEMU boots take minutes; scripts/test-all runs them \
             (or DOMFORGE_QEMU_TESTS=1)"
        );
    }
    qemu_enabled()
}

/// Returns from the calling test when a prerequisite is missing (failing instead when strict).
#[macro_export]
macro_rules! require {
    (tool $tool:expr, $package:expr) => {
        if !$crate::need_tool(module_path!(), $tool, $package) {
            return;
        }
    };
    (qemu $test:expr) => {
        if !$crate::need_qemu($test) {
            return;
        }
    };
    (network $result:expr, $what:expr) => {
        match $result {
            Ok(v) => v,
            Err(e) => {
                $crate::missing(
                    module_path!(),
                    &format!("{} could not be obtained: {e}", $what),
                );
                return;
            }
        }
    };
}

/// Runs a command-line binary as a person would in `dir` (`--quiet` appended, `NO_COLOR=1` so
/// the rendered diagnostics are plain text) and returns its exit code (-1 when killed by a
/// signal), stdout and stderr. Test binaries pass `env!("CARGO_BIN_EXE_…")` and
/// `env!("CARGO_MANIFEST_DIR")`, which only they can name.
pub fn run_quiet(bin: &str, dir: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .arg("--quiet")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Values in brackets on the lines of `readelf` output that contain `tag`, e.g.
/// `(NEEDED) Shared library: [libc.so.6]` or `[Requesting program interpreter: /lib64/ld-…]`
/// (the interpreter's label dropped).
pub fn readelf_bracketed(text: &str, tag: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(tag))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.rfind(']')?;
            let value = l.get(start..end)?;
            Some(
                value
                    .trim_start_matches("Requesting program interpreter: ")
                    .to_owned(),
            )
        })
        .collect()
}
