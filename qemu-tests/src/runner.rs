//! Booting a system in QEMU and watching its console until every domain has reported, something
//! fatal happened, or the deadline passed — and always stopping QEMU afterwards.
//!
//! QEMU runs in its own process group with stdin closed and the serial console on a pipe
//! (`-serial stdio` or `mon:stdio`): a terminal's Ctrl-C then reaches only domforge, which stops
//! QEMU itself (SIGTERM to the group, SIGKILL after [`STOP_GRACE`]). [`QemuGuard`] does that in
//! `Drop`, so every way out — return, `?`, panic unwinding — stops it; `PR_SET_PDEATHSIG` covers
//! the one way `Drop` cannot (domforge itself killed by SIGKILL; note it fires when the spawning
//! *thread* ends, so the guard must not outlive that thread — [`boot`] keeps both together).

use crate::console::{self, ConsoleLine, DomainMap, Fatal, Origin};
use probe::ProbeReport;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long QEMU gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// At most this many console lines are kept (a probe boot prints a few thousand).
pub const MAX_LINES: usize = 200_000;
/// At most this many bytes of QEMU's stderr are kept.
const MAX_STDERR: usize = 64 * 1024;

/// A QEMU command line to run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QemuCommand {
    /// The executable (`qemu-system-aarch64`).
    pub program: String,
    /// Its arguments; the serial console must go to stdout.
    pub args: Vec<String>,
    /// The Debian package that provides `program`, named when it is missing.
    pub package: Option<String>,
    /// Working directory (relative paths in `args` resolve against it); `None`: inherit.
    pub cwd: Option<std::path::PathBuf>,
}

impl QemuCommand {
    /// The command as a shell would show it.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(|a| {
                if a.is_empty() || a.contains([' ', '"', '\'', '$']) {
                    format!("'{}'", a.replace('\'', r"'\''"))
                } else {
                    a.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a boot could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The QEMU binary is not installed.
    #[error("`{program}` is not installed{}", .package.as_ref().map_or(String::new(), |p| format!("\n  help: apt-get install {p}")))]
    QemuMissing {
        /// The binary.
        program: String,
        /// Its package.
        package: Option<String>,
    },
    /// Spawning failed otherwise.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing the SIGINT/SIGTERM handler failed.
    #[error("installing the Ctrl-C handler: {0}")]
    Signal(#[source] nix::Error),
}

/// When to stop watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhen {
    /// As soon as every expected domain is up (or failed).
    AllUp,
    /// Only at the deadline, a fatal error, Ctrl-C or QEMU's exit (`domforge run --stay`).
    Never,
    /// When every expected domain is up (or failed) and, for each `(prefix, times)`, `times`
    /// console lines starting with `prefix` (raw text) have been seen: e.g. a restarted domain's
    /// second report.
    AllUpAndSeen {
        wanted: &'static [(&'static str, usize)],
    },
}

/// How to watch a boot.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The longest the boot may take.
    pub deadline: Duration,
    /// When to stop.
    pub stop: StopWhen,
    /// The domains to wait for, and whether each runs the probe (then "up" means a complete
    /// report; otherwise its first console line).
    pub domains: Vec<(String, bool)>,
}

/// Why watching ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum EndReason {
    /// Every domain came up (or failed on its own).
    AllUp,
    /// The deadline passed.
    Deadline {
        /// The deadline in seconds.
        seconds: f64,
    },
    /// Xen itself failed.
    XenFailed {
        /// The line that said so.
        line: String,
    },
    /// QEMU exited by itself.
    QemuExited {
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Ctrl-C (SIGINT) or SIGTERM.
    Interrupted,
}

impl EndReason {
    /// A short sentence for people.
    pub fn describe(&self) -> String {
        match self {
            EndReason::AllUp => "every domain came up".into(),
            EndReason::Deadline { seconds } => format!("deadline of {seconds:.0} s passed"),
            EndReason::XenFailed { line } => format!("Xen failed: {line}"),
            EndReason::QemuExited { status, stderr } => {
                let s = stderr.trim();
                if s.is_empty() {
                    format!("QEMU exited ({status})")
                } else {
                    format!("QEMU exited ({status}): {s}")
                }
            }
            EndReason::Interrupted => "interrupted".into(),
        }
    }
}

/// When a domain first spoke and when it was up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DomainTiming {
    /// First console line attributed to it, since QEMU started.
    pub first_output: Option<Duration>,
    /// Its report completed (probe) or its first line (others).
    pub up: Option<Duration>,
    /// Why it died, if it did.
    pub failed: Option<String>,
}

/// Everything seen during one boot.
#[derive(Debug, Clone)]
pub struct BootLog {
    /// The console, attributed.
    pub lines: Vec<ConsoleLine>,
    /// Why watching ended.
    pub end: EndReason,
    /// How long it ran.
    pub elapsed: Duration,
    /// Per domain.
    pub timings: BTreeMap<String, DomainTiming>,
    /// QEMU's stderr (the first 64 KiB).
    pub stderr: String,
}

impl BootLog {
    /// The last `n` console lines as they arrived, one per line: the context a failing test prints.
    pub fn tail(&self, n: usize) -> String {
        self.lines[self.lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every probe report on the console, by the name it gave.
    pub fn reports(&self) -> BTreeMap<String, ProbeReport> {
        ProbeReport::collect(
            self.lines
                .iter()
                .filter(|l| l.probe.is_some())
                .map(|l| l.raw.as_str()),
        )
    }

    /// The raw console text.
    pub fn console_text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(&l.raw);
            s.push('\n');
        }
        s
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    // Only an atomic store: async-signal-safe (signal-safety(7)).
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM end a running [`boot`] (which then stops QEMU) instead of killing
/// the process with QEMU left behind. For programs (the CLI); tests need not call it.
pub fn install_interrupt_handler() -> Result<(), RunError> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe, and it
        // replaces the default action process-wide, which is what a CLI wants.
        unsafe { sigaction(sig, &action) }.map_err(RunError::Signal)?;
    }
    Ok(())
}

/// Whether Ctrl-C was pressed since the handler was installed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Owns a running QEMU and stops it when dropped.
#[derive(Debug)]
pub struct QemuGuard {
    child: Child,
    exited: Option<ExitStatus>,
}

impl QemuGuard {
    /// Starts QEMU in its own process group, stdin closed, stdout and stderr piped.
    pub fn spawn(cmd: &QemuCommand) -> Result<Self, RunError> {
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &cmd.cwd {
            c.current_dir(dir);
        }
        // SAFETY: the closure runs in the child between fork and exec and calls only prctl(2),
        // which is async-signal-safe; it allocates nothing.
        unsafe {
            c.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = c.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                RunError::QemuMissing {
                    program: cmd.program.clone(),
                    package: cmd.package.clone(),
                }
            } else {
                RunError::Spawn {
                    program: cmd.program.clone(),
                    source,
                }
            }
        })?;
        Ok(Self {
            child,
            exited: None,
        })
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Stops QEMU (SIGTERM to its process group, SIGKILL after [`STOP_GRACE`]) and reaps it.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Some(s) = self.try_wait() {
            return Some(s);
        }
        let pgid = i32::try_from(self.child.id()).ok().map(Pid::from_raw);
        if let Some(pg) = pgid {
            let _ = killpg(pg, Signal::SIGTERM);
        }
        let until = Instant::now() + STOP_GRACE;
        while Instant::now() < until {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pg) = pgid {
            let _ = killpg(pg, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
        self.exited
    }

    fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Boots `cmd` and watches its console. `on_line` sees every line as it arrives (for
/// `domforge run`'s live console). QEMU is stopped before this returns, whatever happens.
pub fn boot(
    cmd: &QemuCommand,
    map: &DomainMap,
    cfg: &WatchConfig,
    mut on_line: impl FnMut(&ConsoleLine),
) -> Result<BootLog, RunError> {
    let start = Instant::now();
    let mut guard = QemuGuard::spawn(cmd)?;
    let (stdout, stderr) = guard.take_pipes();
    let (tx, rx) = mpsc::channel::<(Duration, String)>();
    let reader = stdout.map(|out| {
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.send((start.elapsed(), line)).is_err() {
                            break;
                        }
                    }
                }
            }
        })
    });
    let err_reader = stderr.map(|err| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let _ = err.take(MAX_STDERR as u64).read_to_end(&mut kept);
            String::from_utf8_lossy(&kept).into_owned()
        })
    });

    let mut lines: Vec<ConsoleLine> = Vec::new();
    let mut timings: BTreeMap<String, DomainTiming> = cfg
        .domains
        .iter()
        .map(|(n, _)| (n.clone(), DomainTiming::default()))
        .collect();
    let probes: BTreeSet<&str> = cfg
        .domains
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut probe_lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let end = 'watch: loop {
        if interrupted() {
            break EndReason::Interrupted;
        }
        let elapsed = start.elapsed();
        if elapsed >= cfg.deadline {
            break EndReason::Deadline {
                seconds: cfg.deadline.as_secs_f64(),
            };
        }
        let wait = (cfg.deadline - elapsed).min(Duration::from_millis(100));
        let (at, raw) = match rx.recv_timeout(wait) {
            Ok(x) => x,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: QEMU is exiting.
                let status = wait_exit(&mut guard, Duration::from_secs(5));
                break EndReason::QemuExited {
                    status,
                    stderr: String::new(),
                };
            }
        };
        for part in console::split_glued(raw.trim_end_matches(['\r', '\n'])) {
            let line = console::classify(map, at, part);
            on_line(&line);
            if let Origin::Domain(name) = &line.origin
                && let Some(t) = timings.get_mut(name)
            {
                t.first_output.get_or_insert(at);
                if !probes.contains(name.as_str()) {
                    t.up.get_or_insert(at);
                }
            }
            if let Some(p) = &line.probe
                && probes.contains(p.name.as_str())
            {
                let collected = probe_lines.entry(p.name.clone()).or_default();
                if p.key == "begin" {
                    collected.clear();
                }
                collected.push(line.raw.clone());
                if p.key == "end"
                    && let Some(t) = timings.get_mut(&p.name)
                    && t.up.is_none()
                {
                    // Up means a complete, well-formed report; a garbled one stays "not up" and is
                    // judged (with the reason) by the expectation check.
                    let reports = ProbeReport::collect(collected.iter().map(String::as_str));
                    if reports
                        .get(&p.name)
                        .is_some_and(|r| r.check_complete().is_ok())
                    {
                        t.up = Some(at);
                    } else {
                        t.failed = Some("incomplete probe report".into());
                    }
                }
            }
            let fatal = console::fatal(map, &line);
            if lines.len() < MAX_LINES {
                lines.push(line);
            }
            match fatal {
                Some(Fatal::Xen { line }) => break 'watch EndReason::XenFailed { line },
                Some(Fatal::Domain { name, line }) => {
                    if let Some(t) = timings.get_mut(&name) {
                        t.failed.get_or_insert(line);
                    }
                }
                None => {}
            }
            let all_up = || {
                timings
                    .values()
                    .all(|t| t.up.is_some() || t.failed.is_some())
            };
            match cfg.stop {
                StopWhen::AllUp if all_up() => break 'watch EndReason::AllUp,
                StopWhen::AllUpAndSeen { wanted }
                    if all_up()
                        && wanted.iter().all(|(prefix, times)| {
                            // The raw line (a relayed `[name] …`) or the text after Xen's own
                            // prefix (a dom0less guest's vPL011 line).
                            let starts = |l: &&ConsoleLine| {
                                l.raw.starts_with(prefix) || l.text.starts_with(prefix)
                            };
                            lines.iter().filter(starts).count() >= *times
                        }) =>
                {
                    break 'watch EndReason::AllUp;
                }
                _ => {}
            }
        }
    };
    guard.stop();
    drop(rx);
    if let Some(h) = reader {
        let _ = h.join();
    }
    let stderr = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    let end = match end {
        EndReason::QemuExited { status, .. } => EndReason::QemuExited {
            status,
            stderr: stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        },
        other => other,
    };
    Ok(BootLog {
        lines,
        end,
        elapsed: start.elapsed(),
        timings,
        stderr,
    })
}

fn wait_exit(guard: &mut QemuGuard, limit: Duration) -> String {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(s) = guard.try_wait() {
            return s.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    "still running; stopped".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> QemuCommand {
        QemuCommand {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            package: None,
            cwd: None,
        }
    }

    fn cfg(deadline: u64, domains: &[(&str, bool)]) -> WatchConfig {
        WatchConfig {
            deadline: Duration::from_secs(deadline),
            stop: StopWhen::AllUp,
            domains: domains.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        }
    }

    fn map() -> DomainMap {
        DomainMap::new([(1, "a".into()), (2, "b".into())], None)
    }

    #[test]
    fn missing_qemu_names_the_package() {
        let cmd = QemuCommand {
            program: "qemu-system-does-not-exist".into(),
            args: vec![],
            package: Some("qemu-system-arm".into()),
            cwd: None,
        };
        let err = boot(&cmd, &map(), &cfg(5, &[]), |_| {}).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("apt-get install qemu-system-arm"), "{text}");
    }

    #[test]
    fn stops_when_every_domain_reported_and_kills_the_rest() {
        // A stand-in for QEMU that reports for two domains, then would run for an hour.
        let script = "echo $$ > \"$PIDFILE\"; echo '(XEN) DOM1: hello'; \
            echo '(XEN) DOM1: DOMFORGE-PROBE a begin=1'; echo '(XEN) DOM1: DOMFORGE-PROBE a end=1'; \
            echo '(XEN) DOM2: DOMFORGE-PROBE b begin=1'; echo '(XEN) DOM2: DOMFORGE-PROBE b end=1'; \
            exec sleep 3600";
        let dir = std::env::temp_dir().join(format!("qemu-tests-runner-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("pid");
        let mut cmd = sh(script);
        cmd.program = "env".into();
        cmd.args = vec![
            format!("PIDFILE={}", pidfile.display()),
            "sh".into(),
            "-c".into(),
            script.into(),
        ];
        let mut seen = 0;
        let log = boot(&cmd, &map(), &cfg(30, &[("a", true), ("b", true)]), |_| {
            seen += 1
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(log.end, EndReason::AllUp);
        assert_eq!(seen, 5);
        assert!(log.timings["a"].first_output <= log.timings["a"].up);
        assert!(log.timings["b"].up.is_some());
        assert_eq!(log.reports().len(), 2);
        // The stand-in was killed: its pid no longer exists (it is reaped, not a zombie).
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid file"));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deadline_and_fatal_lines_end_the_boot() {
        let log = boot(
            &sh("echo '(XEN) DOM1: x'; exec sleep 60"),
            &map(),
            &cfg(1, &[("a", true)]),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(log.end, EndReason::Deadline { .. }));
        assert!(log.elapsed < Duration::from_secs(10));
        assert!(log.timings["a"].first_output.is_some());
        assert_eq!(log.timings["a"].up, None);

        let log = boot(
            &sh("echo '(XEN) Panic on CPU 0:'; exec sleep 60"),
            &map(),
            &cfg(30, &[("a", true)]),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            log.end,
            EndReason::XenFailed {
                line: "(XEN) Panic on CPU 0:".into()
            }
        );

        // A domain whose kernel panics is failed; the boot ends once the others are up.
        let log = boot(
            &sh("echo '(XEN) DOM1: Kernel panic - not syncing: x'; \
                 echo '(XEN) DOM2: DOMFORGE-PROBE b begin=1'; echo '(XEN) DOM2: DOMFORGE-PROBE b end=1'; exec sleep 60"),
            &map(),
            &cfg(30, &[("a", true), ("b", true)]),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(log.end, EndReason::AllUp);
        assert!(log.timings["a"].failed.is_some());
    }

    #[test]
    fn qemu_exiting_is_reported_with_stderr() {
        let log = boot(
            &sh("echo 'qemu: bad option' >&2; exit 1"),
            &map(),
            &cfg(30, &[("a", true)]),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        match log.end {
            EndReason::QemuExited { status, stderr } => {
                assert!(status.contains('1'), "{status}");
                assert!(stderr.contains("bad option"));
            }
            other => panic!("{other:?}"),
        }
    }
}
