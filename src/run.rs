//! `domforge run` and `domforge test`: build a manifest's artifacts and boot them in QEMU.
//!
//! Both go plan → expectations ([`qemu_tests::expect`]) → probe knobs on each kernel command line
//! → [`crate::build::build`] → [`qemu_tests::runner::boot`]. A manifest that fails validation stops
//! at the plan: QEMU is never started. `test` then judges the probe reports
//! ([`qemu_tests::report::evaluate`]); `run` streams the console with `[domain]` prefixes and
//! reports whether every domain came up.
//!
//! The Xen release comes from the manifest or from [`Options::xen_override`] (`--xen`), which
//! re-targets the parsed manifest before validation ([`pipeline::retarget_xen`]), so one
//! scenario file runs against every release of the matrix in `tests/qemu_scenarios.rs`.
//!
//! ARM64 only for now because [`crate::build`] is; the runner itself knows no architecture
//! (x86 joins when the x86 builder produces a QEMU invocation).

use crate::build::{self, BuildOutput};
use crate::pipeline::{self, Loaded, Options, PipelineError};
use firmware_config::plan::SystemPlan;
use qemu_tests::console::{ConsoleLine, DomainMap};
use qemu_tests::expect::{self, Expectation};
use qemu_tests::report::{self, TestReport};
use qemu_tests::runner::{self, BootLog, QemuCommand, StopWhen, WatchConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default per-boot deadline: TCG with Xen nested on a busy 2-core machine brings three probe
/// guests up in 10–60 s; 180 s leaves room without hiding a hang for long.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);

/// How to build and boot.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to build; `None`: a temporary directory, removed afterwards.
    pub out_dir: Option<PathBuf>,
    /// The longest a boot may take.
    pub deadline: Duration,
    /// Keep watching after every domain is up (until the deadline or Ctrl-C).
    pub stay: bool,
    /// Instead of stopping when every domain is up, also wait for this many console lines starting
    /// with this text (tests of restarts: the restarted guest's second report).
    pub until_seen: Option<(&'static str, usize)>,
    /// Run this program instead of the board's QEMU (tests use a sentinel here).
    pub qemu_program: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out_dir: None,
            deadline: DEFAULT_DEADLINE,
            stay: false,
            until_seen: None,
            qemu_program: None,
        }
    }
}

/// A built system ready to boot, with what each domain must report.
pub struct Prepared {
    pub loaded: Loaded,
    /// The plan as built: the probe knobs are on the command lines.
    pub plan: SystemPlan,
    pub expectations: Vec<Expectation>,
    pub built: BuildOutput,
    pub qemu: QemuCommand,
    pub map: DomainMap,
    temp_dir: Option<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn temp_out() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "domforge-run-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Loads, validates and plans `manifest`, lets `adjust` change the expectations (tests use it to
/// state a deliberately wrong one), writes the probe knobs and builds. Validation errors come
/// back before anything is built or booted.
pub fn prepare(
    manifest: &Path,
    opts: &Options,
    ropts: &RunOptions,
    adjust: impl FnOnce(&mut Vec<Expectation>),
) -> Result<Prepared, PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    let (mut plan, _warnings) = loaded.plan()?;
    // A domain without a console can never report: refuse before building and booting.
    let silent = firmware_config::observe::unobservable_domains(&loaded.manifest);
    if silent.has_errors() {
        return Err(PipelineError::Diagnostics {
            diags: silent,
            manifest: loaded.manifest_file.clone(),
            board: Some(loaded.board_file.clone()),
        });
    }
    let mut expectations = expect::expectations(&plan);
    adjust(&mut expectations);
    expect::apply_knobs(&mut plan, &expectations);
    keep_serial_input_with_xen(&mut plan);
    let (out, temp_dir) = match &ropts.out_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = temp_out();
            (d.clone(), Some(d))
        }
    };
    let built = match build::build(&loaded, &plan, &out, false) {
        Ok(b) => b,
        Err(e) => {
            if let Some(d) = &temp_dir {
                let _ = std::fs::remove_dir_all(d);
            }
            return Err(e.into());
        }
    };
    let package = loaded.board.qemu.as_ref().map(|q| q.package.clone());
    let qemu = QemuCommand {
        program: ropts
            .qemu_program
            .clone()
            .unwrap_or_else(|| built.qemu.program.clone()),
        args: built.qemu.args.clone(),
        package,
        cwd: Some(built.dir.clone()),
    };
    let map = DomainMap::from_plan(&plan);
    Ok(Prepared {
        loaded,
        plan,
        expectations,
        built,
        qemu,
        map,
        temp_dir,
    })
}

impl Prepared {
    /// Boots the built system once; `on_line` sees the console live.
    pub fn boot(
        &self,
        ropts: &RunOptions,
        on_line: impl FnMut(&ConsoleLine),
    ) -> Result<BootLog, PipelineError> {
        let cfg = WatchConfig {
            deadline: ropts.deadline,
            stop: match (ropts.stay, ropts.until_seen) {
                (true, _) => StopWhen::Never,
                (false, Some((prefix, times))) => StopWhen::AllUpAndSeen { prefix, times },
                (false, None) => StopWhen::AllUp,
            },
            domains: self
                .expectations
                .iter()
                .map(|e| (e.name.clone(), e.probe))
                .collect(),
        };
        runner::boot(&self.qemu, &self.map, &cfg, on_line)
            .map_err(|e| PipelineError::Other(e.to_string()))
    }

    /// Boots once and judges the result against the expectations.
    pub fn test(
        &self,
        ropts: &RunOptions,
        on_line: impl FnMut(&ConsoleLine),
    ) -> Result<(TestReport, BootLog), PipelineError> {
        let log = self.boot(ropts, on_line)?;
        Ok((
            report::evaluate(&self.plan.name, &self.expectations, &log),
            log,
        ))
    }
}

/// The Xen option that keeps serial input with Xen after boot (`conswitch=<char>x`,
/// `docs/misc/xen-command-line.pandoc`; `a` is the default switch character, Ctrl-A).
pub const SERIAL_INPUT_STAYS_WITH_XEN: &str = "conswitch=ax";

/// Keeps the serial console's input with Xen when no dom0 would take it, so that every
/// dom0less domain's output arrives as whole `(XEN) DOM<n>: …` lines.
///
/// Without a dom0, Xen 4.20 hands serial input to the first domU at the end of boot
/// (`console_endboot()` → `switch_serial_input()` in `xen/drivers/char/console.c`; the console
/// says "*** Serial input to DOM1", where 4.17 says "DOM0" even without a dom0, so no domU has
/// it there). `vpl011_write_data_xen()` (`xen/arch/arm/vpl011.c`) prints the input domain's
/// output one character per `printk("%c")`, without the `DOM<n>:` prefix,
/// while the other domains' lines are buffered and printed whole; with two physical CPUs the
/// characters interleave with those lines and with `(XEN) ` prefixes mid-line (seen on Debian's
/// 4.20.4: `(XEN) DO(XEN) MFORGE-PROBE app-1 …`), losing probe lines no demultiplexer can put
/// back. The harness never types into the console, so Xen may keep the input (the trailing
/// `x`); nothing the guests see changes. A `conswitch` the manifest sets itself is left alone,
/// and with a dom0 (which takes the input and whose `hvc0` is printed as written) nothing is
/// added.
pub fn keep_serial_input_with_xen(plan: &mut SystemPlan) {
    let set_already = plan
        .xen_cmdline
        .split_whitespace()
        .any(|w| w.starts_with("conswitch="));
    if plan.dom0.is_none() && plan.arch == firmware_config::board::Arch::Arm64 && !set_already {
        if !plan.xen_cmdline.is_empty() {
            plan.xen_cmdline.push(' ');
        }
        plan.xen_cmdline.push_str(SERIAL_INPUT_STAYS_WITH_XEN);
    }
}

/// `domforge test MANIFEST`: build, boot once, judge.
pub fn test(
    manifest: &Path,
    opts: &Options,
    ropts: &RunOptions,
    on_line: impl FnMut(&ConsoleLine),
) -> Result<TestReport, PipelineError> {
    let prepared = prepare(manifest, opts, ropts, |_| {})?;
    Ok(prepared.test(ropts, on_line)?.0)
}

/// The `[domain] text` form of a console line for `domforge run`, the label padded to `width`.
pub fn prefixed(line: &ConsoleLine, width: usize) -> String {
    format!(
        "{:<width$} {}",
        format!("[{}]", line.origin.label()),
        line.text
    )
}
