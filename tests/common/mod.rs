//! Shared by the QEMU test files (each test file is its own crate; `mod common;` includes this).

use firmware_config::xen::XenVersion;
use pipeline::Options;
use qemu_tests::runner::BootLog;

/// QEMU boots take minutes: they run under `scripts/test-all` (and CI) or with
/// `DOMFORGE_QEMU_TESTS=1`; otherwise the test prints why it skipped (`test_support`).
#[allow(dead_code)] // used by the QEMU test files
pub fn enabled(test: &str) -> bool {
    test_support::need_qemu(test)
}

/// Pipeline options for `release`, quiet: the scenario files say 4.17 and are re-targeted as
/// `domforge test --xen` does.
#[allow(dead_code)] // used by the QEMU test files
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

/// Asserts that each of `names` printed its probe report through domforge-init's relay (a
/// `[name] DOMFORGE-PROBE name end=` line); `what` names the boot in the message.
#[allow(dead_code)] // used by the files that boot init-built domains
pub fn assert_relayed(log: &BootLog, names: &[&str], what: &str) {
    for name in names {
        assert!(
            log.lines.iter().any(|l| l
                .raw
                .starts_with(&format!("[{name}] DOMFORGE-PROBE {name} end="))),
            "{what}: {name}'s report did not come through domforge-init's relay\n{}",
            log.tail(60)
        );
    }
}

/// An example (or scenario) built for a test that reads the bundle back.
#[allow(dead_code)] // used by the build read-back tests
pub struct Built {
    pub loaded: pipeline::Loaded,
    pub plan: firmware_config::plan::SystemPlan,
    pub out: bundle::write::BuildOutput,
}

/// Loads `manifest` (relative to the repository) with `opts` and builds it into `out`; `None`
/// (after saying why, `test_support::missing`) where it cannot be built here: a Debian download or
/// QEMU is missing, or no domforge-init was built (`scripts/build-init`).
#[allow(dead_code)] // used by the build read-back tests
pub fn build(test: &str, manifest: &str, opts: &Options, out: &std::path::Path) -> Option<Built> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
    let loaded = match pipeline::load(&manifest, opts) {
        Ok(l) => l,
        Err(pipeline::PipelineError::Other(msg)) => {
            test_support::missing(test, &msg);
            return None;
        }
        Err(e) => panic!("{}: {e:?}", manifest.display()),
    };
    let (plan, _) = loaded.plan().expect("plan");
    match pipeline::build(&loaded, &plan, out, false) {
        Ok(out) => Some(Built { loaded, plan, out }),
        Err(e) if e.to_string().contains("domforge-init") => {
            test_support::missing(test, &e.to_string());
            None
        }
        Err(e) => panic!("{}: {e}", manifest.display()),
    }
}

/// Quiet pipeline options from the environment.
#[allow(dead_code)] // used by the build read-back tests
pub fn quiet() -> Options {
    let mut o = Options::from_env().unwrap_or_else(|e| panic!("{e}"));
    o.quiet = true;
    o
}

/// Runs `cmd` (in `dir`, `stdin` piped in when given) and returns its stdout; panics with its
/// stderr when it fails.
#[allow(dead_code)] // used by the build read-back tests
pub fn tool(cmd: &str, args: &[&str], dir: &std::path::Path, stdin: Option<&[u8]>) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input));
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
