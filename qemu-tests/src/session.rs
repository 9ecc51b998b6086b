//! `domforge run` and `domforge test`: build a manifest's bundle and boot it in QEMU.
//!
//! `run` boots exactly what `domforge build` writes and `./run-qemu.sh` boots: load → plan →
//! [`pipeline::build`] → [`crate::runner::boot`], with the console split per domain.
//! `test` adds two things, both shown and both only in the test: the probe **overlay**
//! ([`expect::apply_knobs`]: what each probe guest is to look for, on its kernel command line) and,
//! when a domain owns a virtio-mmio transport, a **marker disk** behind it ([`crate::disk`]), which
//! the probe reads back. Then it judges the probe reports ([`crate::report::evaluate`]). A manifest
//! that fails validation or finalize stops before anything is built or booted.
//!
//! The Xen release comes from the manifest or from [`Options::xen_override`] (`--xen`), which
//! re-targets the parsed manifest before validation ([`pipeline::retarget_xen`]), so one
//! scenario file runs against every release of the matrix in `tests/qemu_scenarios.rs`.

use crate::console::{ConsoleLine, DomainMap};
use crate::expect::{self, Expectation};
use crate::report::{self, TestReport};
use crate::runner::{self, BootLog, QemuCommand, StopWhen, WatchConfig};
use firmware_config::plan::SystemPlan;
use pipeline::{BuildOutput, Loaded, Options, PipelineError};
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
    /// Instead of stopping when every domain is up, also wait until, for each `(prefix, times)`, that
    /// many console lines starting with `prefix` were seen (tests of restarts: the restarted guest's
    /// second report; guests judged by the test itself: each one's `end=`). Empty: just every
    /// domain up.
    pub until_seen: &'static [(&'static str, usize)],
    /// Run this program instead of the board's QEMU (tests use a sentinel here).
    pub qemu_program: Option<String>,
    /// How QEMU boots the bundle: directly, or through U-Boot from the disk image.
    pub boot: BootPath,
}

/// How QEMU boots a bundle (`domforge run/test --boot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BootPath {
    /// QEMU loads Xen, the DTB and every module itself (`run-qemu.sh`).
    #[default]
    Direct,
    /// Debian's `u-boot-qemu` as the firmware, `boot.img` as a virtio disk: U-Boot's distro boot
    /// runs `boot.scr` from the image (`run-qemu-uboot.sh`). ARM only.
    UBoot,
    /// UEFI firmware (EDK2) starts Xen's EFI loader from the bundle's ESP image
    /// (`run-qemu-uefi.sh`).
    Uefi,
    /// UEFI firmware (OVMF) starts Debian's GRUB from the bundle's `grub.img`, which loads Xen by
    /// multiboot2 (`run-qemu-grub.sh`). x86_64 only.
    Grub,
}

impl BootPath {
    /// The bundle's boot target this path boots.
    pub fn target(self) -> bundle::BootTarget {
        match self {
            Self::Direct => bundle::BootTarget::QemuDirect,
            Self::UBoot => bundle::BootTarget::UBoot,
            Self::Uefi => bundle::BootTarget::Uefi,
            Self::Grub => bundle::BootTarget::Grub,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out_dir: None,
            deadline: DEFAULT_DEADLINE,
            stay: false,
            until_seen: &[],
            qemu_program: None,
            boot: BootPath::Direct,
        }
    }
}

/// A built system ready to boot, with what each domain must report.
pub struct Prepared {
    pub loaded: Loaded,
    /// The plan as built: the probe knobs are on the command lines.
    pub plan: SystemPlan,
    pub expectations: Vec<Expectation>,
    /// The probe overlay `test` applied: (domain, the knobs added to its command line).
    pub overlay: Vec<(String, String)>,
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

/// What a boot adds to the bundle `build` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `domforge run`: the bundle as built, nothing added.
    AsBuilt,
    /// `domforge test`: the probe overlay and the marker disk.
    Test,
}

/// Loads, validates and plans `manifest`, lets `adjust` change the expectations (tests use it to
/// state a deliberately wrong one), applies the probe overlay and builds: what `domforge test`
/// boots. Validation errors come back before anything is built or booted.
pub fn prepare(
    manifest: &Path,
    opts: &Options,
    ropts: &RunOptions,
    adjust: impl FnOnce(&mut Vec<Expectation>),
) -> Result<Prepared, PipelineError> {
    prepare_as(Mode::Test, manifest, opts, ropts, adjust)
}

/// As [`prepare`] for `mode`.
pub fn prepare_as(
    mode: Mode,
    manifest: &Path,
    opts: &Options,
    ropts: &RunOptions,
    adjust: impl FnOnce(&mut Vec<Expectation>),
) -> Result<Prepared, PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    let (mut plan, _warnings) = loaded.plan()?;
    if loaded.board.qemu.is_none() {
        return Err(PipelineError::Other(format!(
            "board `{}` has no [qemu] table: QEMU does not emulate it, so `run` and `test` cannot \
             boot it; `domforge build` writes its bundle for the board's firmware",
            loaded.board.name
        )));
    }
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
    let overlay = match mode {
        Mode::AsBuilt => Vec::new(),
        Mode::Test => apply_overlay(&mut plan, &expectations),
    };
    let (out, temp_dir) = match &ropts.out_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = temp_out();
            (d.clone(), Some(d))
        }
    };
    let (built, invocation) = match build_for(mode, &loaded, &plan, &out, ropts.boot) {
        Ok(b) => b,
        Err(e) => {
            if let Some(d) = &temp_dir {
                let _ = std::fs::remove_dir_all(d);
            }
            return Err(e);
        }
    };
    let package = loaded.board.qemu.as_ref().map(|q| q.package.clone());
    let qemu = QemuCommand {
        program: ropts
            .qemu_program
            .clone()
            .unwrap_or_else(|| invocation.program.clone()),
        args: invocation.args.clone(),
        package,
        cwd: Some(built.dir.clone()),
    };
    let map = DomainMap::from_plan(&plan);
    Ok(Prepared {
        loaded,
        plan,
        expectations,
        overlay,
        built,
        qemu,
        map,
        temp_dir,
    })
}

/// Applies the probe knobs and returns what each domain's command line gained.
fn apply_overlay(plan: &mut SystemPlan, exps: &[Expectation]) -> Vec<(String, String)> {
    let before = cmdlines(plan);
    expect::apply_knobs(plan, exps);
    cmdlines(plan)
        .into_iter()
        .zip(before)
        .filter(|(after, before)| after.1 != before.1)
        .map(|(after, _)| {
            let knobs: Vec<&str> = after
                .1
                .split_whitespace()
                .filter(|w| w.starts_with("domforge."))
                .collect();
            (after.0, knobs.join(" "))
        })
        .collect()
}

fn cmdlines(plan: &SystemPlan) -> Vec<(String, String)> {
    plan.dom0
        .iter()
        .map(|d| (crate::console::DOM0_NAME.to_string(), d.cmdline.clone()))
        .chain(
            plan.domains
                .iter()
                .map(|d| (d.name.clone(), d.cmdline.clone())),
        )
        .collect()
}

/// Builds the bundle; in a test, with a marker disk behind a passed-through virtio-mmio transport.
///
/// QEMU plugs the first `virtio-blk-device` into the highest transport (`/virtio_mmio@a003e00` on
/// `virt`), and the board DTB is the same with or without it (checked in the disk tests); the probe
/// guest reads the marker line back through the device's DMA.
fn build_for(
    mode: Mode,
    loaded: &Loaded,
    plan: &SystemPlan,
    out: &Path,
    boot: BootPath,
) -> Result<(BuildOutput, qemu_launch::QemuInvocation), PipelineError> {
    let virtio = plan.domains.iter().any(|d| {
        d.devices
            .iter()
            .any(|dev| dev.compatible.iter().any(|c| c == "virtio,mmio"))
    });
    if boot == BootPath::UBoot {
        if virtio {
            return Err(PipelineError::Other(
                "`--boot uboot` attaches the boot disk as QEMU's first virtio-blk device, which \
                 takes the virtio-mmio transport a domain of this system owns; boot it with \
                 `--boot direct`"
                    .into(),
            ));
        }
        if !Path::new(qemu_launch::UBOOT_QEMU_ARM64).is_file() {
            return Err(PipelineError::Other(format!(
                "`--boot uboot` boots {} as the firmware, which is not installed\n  help: apt-get install {}",
                qemu_launch::UBOOT_QEMU_ARM64,
                qemu_launch::UBOOT_QEMU_PACKAGE
            )));
        }
    }
    if boot == BootPath::Uefi && virtio {
        return Err(PipelineError::Other(
            "`--boot uefi` attaches uefi.img as QEMU's first virtio-blk device, which takes the \
             virtio-mmio transport a domain of this system owns; boot it with `--boot direct`"
                .into(),
        ));
    }
    if matches!(boot, BootPath::Uefi | BootPath::Grub) {
        let (firmware, package) = match loaded.board.arch {
            firmware_config::board::Arch::Arm64 => (
                qemu_launch::EDK2_QEMU_ARM64,
                qemu_launch::EDK2_QEMU_ARM64_PACKAGE,
            ),
            firmware_config::board::Arch::X86_64 => {
                (qemu_launch::x86::OVMF, qemu_launch::x86::OVMF_PACKAGE)
            }
        };
        if !Path::new(firmware).is_file() {
            return Err(PipelineError::Other(format!(
                "`--boot {}` boots {firmware} as the firmware, which is not installed\n  help: apt-get install {package}",
                boot.target()
            )));
        }
    }
    let target = boot.target();
    if !loaded.board.supports(target) {
        return Err(PipelineError::Other(format!(
            "board `{}` cannot boot by `{target}`: its firmware's boot targets are {}\n  help: pick one of those with `--boot`",
            plan.board,
            loaded
                .board
                .targets
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let built = pipeline::build(loaded, plan, out, false)?;
    let mut invocation = built.qemu(target).cloned().ok_or_else(|| {
        PipelineError::Other(if loaded.board.qemu.is_none() {
            format!("board `{}` has no QEMU machine to boot in", plan.board)
        } else {
            let why = built
                .notes
                .iter()
                .find(|n| n.contains(&format!("`{target}` target")))
                .map_or_else(
                    || {
                        format!(
                            "it is not built for {} bundles yet",
                            loaded.board.arch.as_str()
                        )
                    },
                    Clone::clone,
                );
            format!("the bundle has no `{target}` boot: {why}\n  help: boot with `--boot direct`")
        })
    })?;
    if mode == Mode::Test && virtio {
        let disk = crate::disk::MarkerDisk::write(
            &built.dir.join("disk0.img"),
            &crate::disk::MarkerDisk::marker_for(&plan.name),
            crate::disk::DEFAULT_DISK_SIZE,
        )
        .map_err(|e| PipelineError::Other(format!("writing the virtio-blk marker disk: {e}")))?;
        invocation.args.extend(disk.qemu_args("d0"));
    }
    Ok((built, invocation))
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
                (false, []) => StopWhen::AllUp,
                (false, wanted) => StopWhen::AllUpAndSeen { wanted },
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
