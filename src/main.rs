//! `domforge`: one manifest describes a whole Xen system; this tool validates it against its board,
//! plans it, and produces what boots it.

use clap::{CommandFactory, Parser, Subcommand};
use domforge::render::{Sources, render};
use firmware_config::blob;
use firmware_config::diag::{Diagnostics, SourceFile};
use firmware_config::plan::SystemPlan;
use firmware_config::units::human_size;
use firmware_config::xen::XenVersion;
use pipeline::{self, Options, PipelineError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--version`: the tool's version and the Xen releases whose interfaces it speaks.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (speaks Xen {} to {})",
        env!("CARGO_PKG_VERSION"),
        XenVersion::OLDEST,
        XenVersion::NEWEST
    )
});

#[derive(Parser)]
#[command(
    name = "domforge",
    version = VERSION.as_str(),
    about = "A static Xen toolstack: one manifest, validated, planned and booted"
)]
struct Cli {
    /// Never use the network; fail if something is not cached yet.
    #[arg(long, global = true)]
    offline: bool,
    /// Cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/domforge).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Less progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// The static domforge-init to put in dom0's initramfs: the binary, or a directory holding
    /// `<target>/domforge-init` (default: beside this executable, see docs/architecture.md).
    #[arg(long, global = true, value_name = "PATH")]
    init: Option<PathBuf>,
    /// Refuse to create or change `<manifest>.lock` (for CI): fail when it is missing or does
    /// not pin every `debian:`/`builtin:` source. With `update`: fail if re-resolving would
    /// change it.
    #[arg(long, global = true)]
    locked: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-resolve every `debian:` and `builtin:` source (after refreshing Debian's index) and
    /// rewrite `<manifest>.lock`, showing what changed. Without MANIFEST: every manifest in the
    /// current directory that has a lock file.
    Update { manifests: Vec<PathBuf> },
    /// Resolve, download and build every input of the manifest into the cache (compiling
    /// `builtin:xen-static-memory` when no build is cached) and lock it; `check` and `plan`
    /// never compile, `build` does this too.
    Fetch { manifest: PathBuf },
    /// Validate a manifest against its board: every whole-system rule, every error at once.
    Check {
        manifest: PathBuf,
        /// Machine-readable diagnostics.
        #[arg(long)]
        json: bool,
    },
    /// Show the resolved system: guest RAM, devices, interrupts, boot-module addresses.
    Plan {
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also draw the system map (host memory with owners, each domain's guest map, vCPUs,
        /// devices, interrupts) as SVG into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Compile the validated manifest into a boot blob for domforge-init.
    Compile {
        manifest: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Tell what an artifact is: a boot blob, a kernel image or a device tree.
    Inspect {
        /// The file to inspect.
        file: Option<PathBuf>,
        /// Instead of a file, list a board's hardware (CPUs, RAM, devices and their IOMMU wiring).
        #[arg(long, conflicts_with = "file")]
        board: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the built-in boards.
    Boards,
    /// Turn another tool's configuration into a manifest; every key is reported as carried over
    /// or not (and why), and the written manifest is checked.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Write a manifest in another tool's format.
    Export {
        #[command(subcommand)]
        to: ExportTo,
    },
    /// Print the JSON Schema of the manifest (for editors: `#:schema` in taplo / Even Better TOML).
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Build the system and boot it in QEMU (TCG, Xen nested), the console split per domain;
    /// exits 0 once every domain is up, non-zero on a failure or the deadline. Ctrl-C stops QEMU.
    Run {
        manifest: PathBuf,
        /// Build into this directory (default: a temporary one, removed afterwards).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Seconds to wait for every domain.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
        /// Keep the system running after it is up (until the deadline or Ctrl-C).
        #[arg(long)]
        stay: bool,
        /// Target this Xen release instead of the manifest's `[system] xen` (e.g. 4.20):
        /// validation, plan and `debian:xen` follow it.
        #[arg(long, value_name = "RELEASE", value_parser = parse_xen)]
        xen: Option<XenVersion>,
        /// How QEMU boots the bundle: `direct` (QEMU loads everything), `uboot` (Debian's
        /// u-boot-qemu runs boot.scr from the bundle's disk image), `uefi` (EDK2 starts Xen's EFI
        /// loader from uefi.img) or `grub`; the board must list the target.
        #[arg(long, value_enum, default_value_t = BootArg::Direct)]
        boot: BootArg,
    },
    /// Build, boot with a deadline and check that every domain sees what the manifest promises
    /// (vCPUs, RAM, devices owned and not owned); prints a table per domain.
    Test {
        manifest: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the result as JUnit XML.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Seconds the boot may take.
        #[arg(long, default_value_t = 180)]
        deadline: u64,
        /// Build into this directory (default: a temporary one, removed afterwards).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write the whole console to this file.
        #[arg(long, value_name = "FILE")]
        console: Option<PathBuf>,
        /// Target this Xen release instead of the manifest's `[system] xen` (e.g. 4.20):
        /// validation, plan and `debian:xen` follow it.
        #[arg(long, value_name = "RELEASE", value_parser = parse_xen)]
        xen: Option<XenVersion>,
        /// How QEMU boots the bundle: `direct` (QEMU loads everything), `uboot` (Debian's
        /// u-boot-qemu runs boot.scr from the bundle's disk image), `uefi` (EDK2 starts Xen's EFI
        /// loader from uefi.img) or `grub`; the board must list the target.
        #[arg(long, value_enum, default_value_t = BootArg::Direct)]
        boot: BootArg,
    },
    /// Write what boots the system (ARM64): host DTB, passthrough DTBs, modules, run-qemu.sh,
    /// U-Boot script, boot.img (flashable disk image), run-qemu-uboot.sh, SHA256SUMS.
    Build {
        manifest: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write DTS text next to every DTB, for review.
        #[arg(long)]
        dts: bool,
    },
}

/// `--boot`: the QEMU boot path of `run` and `test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BootArg {
    Direct,
    Uboot,
    Uefi,
    Grub,
}

impl From<BootArg> for qemu_tests::session::BootPath {
    fn from(b: BootArg) -> Self {
        match b {
            BootArg::Direct => Self::Direct,
            BootArg::Uboot => Self::UBoot,
            BootArg::Uefi => Self::Uefi,
            BootArg::Grub => Self::Grub,
        }
    }
}

#[derive(Subcommand)]
enum ImportFrom {
    /// xl.cfg(5) files, one domain each, into one manifest.
    Xl {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The board the system runs on (a built-in board or a board file).
        #[arg(long)]
        board: String,
        /// `[system] name` (default: imported-xl).
        #[arg(long)]
        name: Option<String>,
        /// Write the manifest here (default: print it).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// An ImageBuilder `config` (read as data; bash is not run).
    Imagebuilder {
        config: PathBuf,
        /// The board (default: `DOMFORGE_SYSTEM_BOARD`, a built-in board with the config's
        /// DEVICE_TREE, else a board file derived from DEVICE_TREE and MEMORY_START/END).
        #[arg(long)]
        board: Option<String>,
        /// ImageBuilder's `-d` root, which the config's paths are relative to (default: the
        /// config's directory).
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ExportTo {
    /// The equivalent ImageBuilder `config` for uboot-script-gen.
    Imagebuilder {
        manifest: PathBuf,
        /// Write the config here (default: print it).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns `domforge inspect --board x | head` into a panic on the next
    // println!. Restore the default so a closed pipe ends the program quietly, as for any Unix tool.
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let json = cli.command.json();
    let mut opts = match Options::from_env() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    opts.offline = cli.offline;
    opts.quiet = cli.quiet;
    opts.init = bundle::init::InitLocator::new(cli.init);
    if let Some(dir) = cli.cache_dir {
        opts.cache_dir = dir;
    }
    opts.lock = if cli.locked {
        pipeline::LockPolicy::Locked
    } else {
        pipeline::LockPolicy::Use
    };
    let result = match cli.command {
        Command::Update { manifests } => update_cmd(manifests, cli.locked, &opts),
        Command::Fetch { manifest } => fetch_cmd(&manifest, &opts),
        Command::Check { manifest, json } => check(&manifest, &opts.without_builds(), json),
        Command::Plan {
            manifest,
            json,
            svg,
        } => plan(&manifest, &opts.without_builds(), json).and_then(|()| match svg {
            Some(file) => plan_svg(&manifest, &file, &opts.without_builds()),
            None => Ok(()),
        }),
        Command::Import { from } => import_cmd(from, &opts),
        Command::Export {
            to: ExportTo::Imagebuilder { manifest, output },
        } => export_imagebuilder(&manifest, output.as_deref(), &opts),
        Command::Schema => {
            println!("{}", firmware_config::json_schema::manifest_schema_json());
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "domforge",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| PipelineError::Other(e.to_string())),
        Command::Compile { manifest, output } => compile(&manifest, &output, &opts),
        Command::Inspect {
            file: Some(file),
            json,
            ..
        } => inspect(&file, json),
        Command::Inspect {
            board: Some(board),
            json,
            ..
        } => inspect_board(&board, &opts, json),
        Command::Inspect { .. } => Err(PipelineError::Other(
            "inspect needs a FILE or --board NAME".into(),
        )),
        Command::Build {
            manifest,
            output,
            dts,
        } => build_cmd(&manifest, &output, dts, &opts),
        Command::Run {
            manifest,
            output,
            deadline,
            stay,
            xen,
            boot,
        } => run_cmd(
            &manifest,
            &Options {
                xen_override: xen,
                ..opts
            },
            output,
            deadline,
            stay,
            boot.into(),
        ),
        Command::Test {
            manifest,
            json,
            junit,
            deadline,
            output,
            console,
            xen,
            boot,
        } => test_cmd(
            &manifest,
            &Options {
                xen_override: xen,
                ..opts
            },
            json,
            junit.as_deref(),
            deadline,
            output,
            console.as_deref(),
            boot.into(),
        ),
        Command::Boards => {
            for (name, text) in firmware_config::board::BUILTIN_BOARDS {
                let desc = firmware_config::board::Board::parse(text)
                    .map(|b| b.description)
                    .unwrap_or_default();
                println!("{name:<24} {desc}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if json => {
            // `--json` promises JSON on stdout whatever went wrong (one document: not a second one
            // after a printed test report); stderr gets one summary line.
            if !JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed) {
                println!("{}", error_json(&e));
            }
            eprintln!("error: {}", summary(&e));
            ExitCode::FAILURE
        }
        Err(e) => fail(&e),
    }
}

/// Set once a command has printed its JSON document, so a failure after it adds no second one.
static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Command {
    /// Whether the command was asked for machine-readable output.
    fn json(&self) -> bool {
        match self {
            Command::Check { json, .. }
            | Command::Plan { json, .. }
            | Command::Inspect { json, .. }
            | Command::Test { json, .. } => *json,
            _ => false,
        }
    }
}

/// The one-line account of a failure: the error count for diagnostics, else the message.
fn summary(e: &PipelineError) -> String {
    match e {
        PipelineError::Diagnostics {
            diags, manifest, ..
        } => {
            let n = diags.errors().count();
            format!(
                "{} failed validation with {n} error{}",
                manifest.name,
                if n == 1 { "" } else { "s" }
            )
        }
        other => {
            // The error and its causes, outermost first: `writing the bundle: out/x: …`.
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

/// The `--json` form of a failure: `{"ok": false, "diagnostics": [...]}`, with `"error"` holding
/// the message of a failure that is not about a place in a file.
fn error_json(e: &PipelineError) -> serde_json::Value {
    match e {
        PipelineError::Diagnostics {
            diags,
            manifest,
            board,
        } => {
            serde_json::json!({ "ok": false, "diagnostics": diags_json(diags, manifest, board.as_ref()) })
        }
        other => {
            serde_json::json!({ "ok": false, "error": summary(other), "diagnostics": [] })
        }
    }
}

/// Says on stderr what a command changed in the manifest's lock file.
fn lock_note(loaded: &pipeline::Loaded, opts: &Options) {
    if opts.quiet || !loaded.lock.written {
        return;
    }
    if let Some(path) = &loaded.lock.path {
        eprintln!("note: updated {}:", path.display());
        for c in &loaded.lock.changes {
            eprintln!("  {c}");
        }
    }
}

/// `domforge update [MANIFEST…]`: re-resolve and rewrite each lock, or (`--locked`) verify it.
fn update_cmd(manifests: Vec<PathBuf>, locked: bool, opts: &Options) -> Result<(), PipelineError> {
    let manifests = if manifests.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(".")
            .map_err(|e| PipelineError::Other(format!("listing the current directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.strip_suffix(".lock")?.to_owned();
                let manifest = p.with_file_name(name);
                (manifest.extension().is_some_and(|e| e == "toml") && manifest.is_file())
                    .then_some(manifest)
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(PipelineError::Other(
                "no MANIFEST given and no `<manifest>.toml.lock` in the current directory; \
                 name the manifest to lock"
                    .into(),
            ));
        }
        found
    } else {
        manifests
    };
    let opts = Options {
        lock: if locked {
            pipeline::LockPolicy::Verify
        } else {
            pipeline::LockPolicy::Update
        },
        ..opts.clone()
    };
    for manifest in &manifests {
        let loaded = pipeline::load(manifest, &opts)?;
        // A source that cannot be resolved must not vanish from the lock silently.
        loaded.check()?;
        let path = loaded.lock.path.clone().unwrap_or_default();
        if loaded.lock.changes.is_empty() {
            println!("{}: up to date", path.display());
        } else {
            println!("{}:", path.display());
            for c in &loaded.lock.changes {
                println!("  {c}");
            }
        }
    }
    Ok(())
}

/// `domforge fetch MANIFEST`: every input resolved, downloaded, built and locked.
fn fetch_cmd(manifest: &Path, opts: &Options) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    lock_note(&loaded, opts);
    loaded.check()?;
    println!(
        "{}: {} input{} ready in {}",
        loaded.manifest_file.name,
        loaded.artifacts.len(),
        if loaded.artifacts.len() == 1 { "" } else { "s" },
        opts.cache_dir.display()
    );
    Ok(())
}

/// `--xen RELEASE`: a release domforge knows the bindings and domctl interface of.
fn parse_xen(text: &str) -> Result<XenVersion, String> {
    let v = XenVersion::parse(text)
        .ok_or_else(|| format!("`{text}` is not a Xen release; expected e.g. 4.17 or 4.20"))?;
    if v.is_supported() {
        Ok(v)
    } else {
        Err(format!(
            "Xen {v} is not supported; domforge speaks Xen {} to {}",
            XenVersion::OLDEST,
            XenVersion::NEWEST
        ))
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diags(diags: &Diagnostics, manifest: &SourceFile, board: Option<&SourceFile>) {
    let sources = Sources { manifest, board };
    for d in &diags.0 {
        eprintln!("{}", render(d, &sources, color()));
    }
}

fn fail(e: &PipelineError) -> ExitCode {
    if let PipelineError::Diagnostics {
        diags,
        manifest,
        board,
    } = e
    {
        print_diags(diags, manifest, board.as_ref());
    }
    eprintln!("error: {}", summary(e));
    ExitCode::FAILURE
}

/// `domforge build`: load, plan, finalize, write the bundle, and say what was written.
fn build_cmd(manifest: &Path, out: &Path, dts: bool, opts: &Options) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    lock_note(&loaded, opts);
    let (plan, warnings) = loaded.plan()?;
    print_diags(&warnings, &loaded.manifest_file, Some(&loaded.board_file));
    let built = pipeline::build(&loaded, &plan, out, dts)?;
    for n in &built.notes {
        eprintln!("note: {n}");
    }
    eprintln!("built `{}` into {}", plan.name, built.dir.display());
    for m in &built.modules {
        eprintln!(
            "  {:<26} {:#012x} {:>10} bytes{}  {}",
            m.id,
            m.addr,
            m.size,
            if m.gzip { " (gzip)" } else { "" },
            m.path.strip_prefix(&built.dir).unwrap_or(&m.path).display()
        );
    }
    for (target, _) in &built.qemu_boots {
        eprintln!(
            "boot it in QEMU by `{target}`: {}",
            built
                .dir
                .join(bundle::targets::qemu::script_name(*target))
                .display()
        );
    }
    let image = built.dir.join("boot.img");
    if image.is_file() {
        eprintln!(
            "flash it: dd if={} of=/dev/sdX bs=4M conv=fsync",
            image.display()
        );
    }
    Ok(())
}

/// The JSON form of diagnostics: code, severity, message, the primary `location` and every label
/// (primary first, then the secondary ones such as "first claimed here"), help and notes.
fn diags_json(
    diags: &Diagnostics,
    manifest: &SourceFile,
    board: Option<&SourceFile>,
) -> serde_json::Value {
    let label = |l: &firmware_config::diag::Label, primary: bool| {
        let f = match l.source {
            firmware_config::diag::SourceId::Manifest => Some(manifest),
            firmware_config::diag::SourceId::Board => board,
        }?;
        let (line, col) = f.line_col(l.span.start);
        let (end_line, end_col) = f.line_col(l.span.end.max(l.span.start));
        Some(serde_json::json!({
            "file": f.name, "line": line, "column": col, "end_line": end_line,
            "end_column": end_col, "text": f.text.get(l.span.clone()).unwrap_or(""),
            "message": l.message, "primary": primary,
        }))
    };
    serde_json::Value::Array(
        diags
            .0
            .iter()
            .map(|d| {
                let labels: Vec<serde_json::Value> = d
                    .primary
                    .iter()
                    .map(|l| label(l, true))
                    .chain(d.secondary.iter().map(|l| label(l, false)))
                    .flatten()
                    .collect();
                serde_json::json!({
                    "severity": d.severity, "code": d.code, "message": d.message,
                    "location": d.primary.as_ref().and_then(|l| label(l, true)),
                    "labels": labels, "help": d.help, "notes": d.notes,
                })
            })
            .collect(),
    )
}

fn check(manifest: &Path, opts: &Options, json: bool) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    lock_note(&loaded, opts);
    let warnings = loaded.check()?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "diagnostics": diags_json(&warnings, &loaded.manifest_file, Some(&loaded.board_file)) })
        );
    } else {
        print_diags(&warnings, &loaded.manifest_file, Some(&loaded.board_file));
        println!(
            "{}: ok — {} domain{} on {} (Xen {}){}",
            loaded.manifest_file.name,
            loaded.manifest.domains.len(),
            if loaded.manifest.domains.len() == 1 {
                ""
            } else {
                "s"
            },
            loaded.board.name,
            loaded.manifest.system.xen.value,
            match warnings.warnings().count() {
                0 => String::new(),
                n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
            }
        );
    }
    Ok(())
}

fn plan(manifest: &Path, opts: &Options, json: bool) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    lock_note(&loaded, opts);
    let (fin, warnings) = loaded.final_plan()?;
    let plan = fin.plan;
    print_diags(&warnings, &loaded.manifest_file, Some(&loaded.board_file));
    if json {
        let text =
            serde_json::to_string_pretty(&plan).map_err(|e| PipelineError::Other(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", plan_table(&plan));
    }
    Ok(())
}

fn region(r: &firmware_config::board::Region) -> String {
    format!("{:#011x}-{:#011x}", r.base, r.base.saturating_add(r.size))
}

/// The human table of `domforge plan`.
/// The PV disks and vifs of a domain, one line each, with the domain serving them.
fn render_pv_devices(s: &mut String, d: &firmware_config::plan::DomainPlan) {
    use std::fmt::Write as _;
    for x in &d.pv_disks {
        let access = match x.access {
            firmware_config::manifest::DiskAccess::Ro => "ro",
            firmware_config::manifest::DiskAccess::Rw => "rw",
        };
        let cdrom = match x.devtype {
            firmware_config::manifest::DiskDevtype::Cdrom => " cdrom",
            firmware_config::manifest::DiskDevtype::Disk => "",
        };
        let shipped = x
            .image
            .as_ref()
            .map_or(String::new(), |i| format!(" (shipped from {i})"));
        let _ = writeln!(
            s,
            "     disk {} (vbd {}){cdrom} {access}: {}{shipped}, served by {}",
            x.vdev, x.devid, x.target, x.backend
        );
    }
    for v in &d.pv_nics {
        let _ = writeln!(
            s,
            "     vif {} {}: bridge {} mtu {}, served by {}",
            v.handle, v.mac, v.bridge, v.mtu, v.backend
        );
    }
}

fn plan_table(p: &SystemPlan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "system {} on {} ({}), Xen {} (domctl interface {:#x}), boot: {:?}",
        p.name,
        p.board,
        p.arch.as_str(),
        p.xen,
        p.domctl_interface,
        p.boot
    );
    let _ = writeln!(s, "xen cmdline: {}", p.xen_cmdline);
    let m = &p.memory;
    let _ = writeln!(
        s,
        "memory: RAM {} (reserved {}) = Xen {} + dom0 {} + domains {} + static {} + P2M {} + shm {}; free {}",
        human_size(m.ram),
        human_size(m.reserved),
        human_size(m.xen),
        human_size(m.dom0),
        human_size(m.domains),
        human_size(m.static_memory),
        human_size(m.p2m_pools),
        human_size(m.shared_memory),
        human_size(m.free)
    );
    let _ = writeln!(s, "\nboot modules:");
    let _ = writeln!(
        s,
        "  {:<22} {:<16} {:>10}  {:<25} source",
        "id", "kind", "size", "load"
    );
    for md in &p.modules {
        let size = md.size.map_or("(built)".to_string(), |x| x.to_string());
        let init_only = md.users.iter().all(|u| {
            p.domains
                .iter()
                .any(|d| &d.name == u && d.builder == firmware_config::manifest::Builder::Init)
        });
        let load = md.load.as_ref().map_or_else(
            || {
                if init_only && p.arch == firmware_config::board::Arch::Arm64 {
                    "(in dom0's initramfs)".to_string()
                } else {
                    "(loader decides)".to_string()
                }
            },
            region,
        );
        let _ = writeln!(
            s,
            "  {:<22} {:<16} {:>10}  {:<25} {}",
            md.id,
            format!("{:?}", md.kind),
            size,
            load,
            md.source
        );
    }
    if let Some(d0) = &p.dom0 {
        let _ = writeln!(
            s,
            "\ndom0: {} vCPU, {}, kernel {}, cmdline \"{}\"",
            d0.vcpus,
            human_size(d0.memory),
            d0.kernel,
            d0.cmdline
        );
    }
    if p.xenstore {
        let _ = writeln!(
            s,
            "xenstore: dom0 runs xenstored; domforge-init introduces every domain and writes its PV devices"
        );
    }
    let _ = writeln!(s, "\ndomains (boot order):");
    for d in &p.domains {
        let _ = writeln!(
            s,
            "  {}. {} [{:?}, built by {:?}] {} vCPU, {}, console {:?}, on_crash {:?}",
            d.boot_index,
            d.name,
            d.kind,
            d.builder,
            d.vcpus,
            human_size(d.memory),
            d.console,
            d.on_crash
        );
        let _ = writeln!(
            s,
            "     guest RAM: {}",
            d.guest_ram
                .iter()
                .map(region)
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !d.static_memory.is_empty() {
            let _ = writeln!(
                s,
                "     static memory: {}{}",
                d.static_memory
                    .iter()
                    .map(region)
                    .collect::<Vec<_>>()
                    .join(", "),
                if d.direct_map { " (direct-mapped)" } else { "" }
            );
        }
        for dev in &d.devices {
            let maps: Vec<String> = dev
                .mappings
                .iter()
                .map(|m| format!("{:#x}->{:#x} ({:#x})", m.host, m.guest, m.size))
                .collect();
            let _ = writeln!(
                s,
                "     device {}: {} irqs {:?}{}{}",
                dev.path,
                maps.join(", "),
                dev.irqs,
                if dev.behind_iommu {
                    " [iommu]"
                } else if dev.forced {
                    " [forced, no iommu]"
                } else {
                    ""
                },
                if dev.relocated { " [relocated]" } else { "" }
            );
        }
        if !d.irqs.is_empty() {
            let _ = writeln!(s, "     interrupts: {:?}", d.irqs);
        }
        render_pv_devices(&mut s, d);
        let _ = writeln!(
            s,
            "     kernel {}{}{}, cmdline \"{}\"",
            d.kernel,
            d.ramdisk
                .as_ref()
                .map_or(String::new(), |r| format!(", ramdisk {r}")),
            d.passthrough_dtb
                .as_ref()
                .map_or(String::new(), |r| format!(", device tree {r}")),
            d.cmdline
        );
    }
    for c in &p.cpupools {
        let _ = writeln!(
            s,
            "cpupool {}: cpus {:?}, scheduler {}, domains {:?}",
            c.name, c.cpus, c.scheduler, c.domains
        );
    }
    s
}

fn compile(manifest: &Path, output: &Path, opts: &Options) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    let (plan, warnings) = loaded.plan()?;
    print_diags(&warnings, &loaded.manifest_file, Some(&loaded.board_file));
    let config =
        firmware_config::plan::boot_config(&plan).map_err(|d| PipelineError::Diagnostics {
            diags: Diagnostics(vec![d]),
            manifest: loaded.manifest_file.clone(),
            board: Some(loaded.board_file.clone()),
        })?;
    let bytes = blob::encode(&config).map_err(|e| PipelineError::Other(e.to_string()))?;
    std::fs::write(output, &bytes)
        .map_err(|e| PipelineError::Other(format!("writing {}: {e}", output.display())))?;
    eprintln!(
        "wrote {} ({} bytes, {} domains, format {})",
        output.display(),
        bytes.len(),
        config.domains.len(),
        blob::FORMAT_VERSION
    );
    Ok(())
}

fn inspect(file: &Path, json: bool) -> Result<(), PipelineError> {
    let bytes = std::fs::read(file)
        .map_err(|e| PipelineError::Other(format!("cannot read {}: {e}", file.display())))?;
    if bytes.starts_with(&blob::MAGIC) {
        let config = blob::decode(&bytes).map_err(|e| {
            PipelineError::Other(format!("{}: domforge boot blob, but {e}", file.display()))
        })?;
        if json {
            println!(
                "{}",
                serde_json::json!({ "kind": "boot-blob", "format_version": blob::FORMAT_VERSION, "size": bytes.len(), "config": config })
            );
        } else {
            println!(
                "{}: domforge boot blob, format {}, {} bytes",
                file.display(),
                blob::FORMAT_VERSION,
                bytes.len()
            );
            println!(
                "  system {} for Xen {}.{} (domctl {:#x}){}",
                config.system,
                config.xen_major,
                config.xen_minor,
                config.domctl_interface,
                config
                    .arm_gic
                    .map(|g| format!(", guests get GIC{g:?}"))
                    .unwrap_or_default()
            );
            for (i, d) in config.domains.iter().enumerate() {
                println!(
                    "  {i}. {} {:?} by {:?}: {} vCPU, {} KiB, kernel {}, console {:?}, on_crash {:?}, depends on {:?}",
                    d.name,
                    d.kind,
                    d.builder,
                    d.vcpus,
                    d.memory_kib,
                    d.kernel,
                    d.console,
                    d.on_crash,
                    d.depends_on
                );
                if !d.irqs.is_empty() || !d.iomem.is_empty() || d.passthrough_dtb.is_some() {
                    println!(
                        "     passthrough: SPIs {:?}, {} MMIO range(s), assigned {:?}, fragment {}",
                        d.irqs,
                        d.iomem.len(),
                        d.dt_devices,
                        d.passthrough_dtb.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        return Ok(());
    }
    // A header is no proof of a whole file: a cut kernel, DTB or initramfs is refused with the
    // size its header promises, not described as if it were whole.
    if let Err(e) = pvh_boot::identify::check_complete(&bytes) {
        return Err(PipelineError::Other(format!("{}: {e}", file.display())));
    }
    if bytes.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]) {
        let tree = device_tree::DeviceTree::from_dtb(&bytes).map_err(|e| {
            PipelineError::Other(format!("{}: device tree blob, but {e}", file.display()))
        })?;
        let inv = device_tree::inventory::read_inventory(&tree)
            .map_err(|e| PipelineError::Other(e.to_string()))?;
        return print_inventory(&file.display().to_string(), &inv, json);
    }
    match pvh_boot::inspect::inspect_kernel(&bytes) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| PipelineError::Other(e.to_string()))?
                );
            } else {
                println!("{}:\n{report}", file.display());
            }
            Ok(())
        }
        Err(e) => Err(PipelineError::Other(
            match pvh_boot::identify::identify(&bytes) {
                Some(what) => format!(
                    "{}: {what}, not a boot blob, device tree or kernel image",
                    file.display()
                ),
                None => format!(
                    "{}: not a boot blob, device tree or kernel image: {e}",
                    file.display()
                ),
            },
        )),
    }
}

fn inspect_board(name: &str, opts: &Options, json: bool) -> Result<(), PipelineError> {
    let text = firmware_config::board::builtin_board(name)
        .map(str::to_string)
        .or_else(|| std::fs::read_to_string(name).ok())
        .ok_or_else(|| PipelineError::Other(format!("no built-in board or board file `{name}`")))?;
    let board = firmware_config::board::Board::parse(&text).map_err(|e| {
        PipelineError::Other(format!(
            "board `{name}`: {}",
            e.first().map_or(String::new(), |d| d.message.clone())
        ))
    })?;
    let dir = Path::new(name)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dtb = pipeline::board_dtb(&board, &dir, opts)?;
    let from_dtb = match &dtb {
        Some(b) => Some(
            device_tree::DeviceTree::from_dtb(b)
                .and_then(|t| device_tree::inventory::read_inventory(&t))
                .map_err(|e| PipelineError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let inv = board
        .resolve_inventory(from_dtb)
        .map_err(|d| PipelineError::Other(d.message))?;
    print_inventory(&board.name, &inv, json)
}

fn print_inventory(
    what: &str,
    inv: &firmware_config::board::HardwareInventory,
    json: bool,
) -> Result<(), PipelineError> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(inv).map_err(|e| PipelineError::Other(e.to_string()))?
        );
        return Ok(());
    }
    println!("{what}: {} ({})", inv.model, inv.compatible.join(", "));
    println!(
        "  cpus: {}",
        inv.cpus
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  ram: {}",
        inv.memory.iter().map(region).collect::<Vec<_>>().join(", ")
    );
    for r in &inv.reserved {
        println!("  reserved {}: {}", r.name, region(&r.region));
    }
    if let Some(ic) = &inv.interrupt_controller {
        println!("  interrupt controller: {} {:?}", ic.path, ic.kind);
    }
    if let Some(s) = &inv.stdout_path {
        println!("  console: {s}");
    }
    println!("  devices:");
    for d in &inv.devices {
        println!(
            "    {:<40} {:<28} irqs {:?}{}{}",
            d.path,
            d.regions.iter().map(region).collect::<Vec<_>>().join(" "),
            d.interrupts,
            if d.behind_iommu { " [iommu]" } else { "" },
            if d.enabled { "" } else { " [disabled]" }
        );
    }
    Ok(())
}

/// `domforge run`: build, boot, show the console with `[domain]` prefixes.
fn run_cmd(
    manifest: &Path,
    opts: &Options,
    output: Option<PathBuf>,
    deadline: u64,
    stay: bool,
    boot: qemu_tests::session::BootPath,
) -> Result<(), PipelineError> {
    use qemu_tests::session as run;
    let ropts = run::RunOptions {
        out_dir: output,
        deadline: std::time::Duration::from_secs(deadline),
        stay,
        until_seen: &[],
        qemu_program: None,
        boot,
    };
    let prepared = run::prepare_as(run::Mode::AsBuilt, manifest, opts, &ropts, |_| {})?;
    qemu_tests::runner::install_interrupt_handler()
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    let width = prepared
        .expectations
        .iter()
        .map(|e| e.name.len() + 2)
        .max()
        .unwrap_or(0)
        .max(9);
    eprintln!(
        "booting `{}`: {}",
        prepared.plan.name,
        prepared.qemu.display()
    );
    let log = prepared.boot(&ropts, |line| println!("{}", run::prefixed(line, width)))?;
    for (name, t) in &log.timings {
        let up = t.up.map_or("not up".to_string(), |d| {
            format!("up at {:.1} s", d.as_secs_f64())
        });
        match &t.failed {
            Some(why) => eprintln!("{name}: FAILED ({why})"),
            None => eprintln!("{name}: {up}"),
        }
    }
    let all_up = log
        .timings
        .values()
        .all(|t| t.up.is_some() && t.failed.is_none());
    if all_up && (stay || log.end == qemu_tests::runner::EndReason::AllUp) {
        eprintln!("`{}` came up ({})", prepared.plan.name, log.end.describe());
        Ok(())
    } else {
        Err(PipelineError::Other(format!(
            "`{}` did not come up: {}",
            prepared.plan.name,
            log.end.describe()
        )))
    }
}

/// `domforge test`: build, boot with a deadline, judge every domain's probe report.
#[allow(clippy::too_many_arguments)] // one argument per flag of `domforge test`
fn test_cmd(
    manifest: &Path,
    opts: &Options,
    json: bool,
    junit: Option<&Path>,
    deadline: u64,
    output: Option<PathBuf>,
    console: Option<&Path>,
    boot: qemu_tests::session::BootPath,
) -> Result<(), PipelineError> {
    use qemu_tests::session as run;
    let ropts = run::RunOptions {
        out_dir: output,
        deadline: std::time::Duration::from_secs(deadline),
        stay: false,
        until_seen: &[],
        qemu_program: None,
        boot,
    };
    let prepared = run::prepare(manifest, opts, &ropts, |_| {})?;
    if !opts.quiet {
        for (domain, knobs) in &prepared.overlay {
            eprintln!("probe overlay: {domain}: kernel command line += {knobs}");
        }
    }
    qemu_tests::runner::install_interrupt_handler()
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    if !opts.quiet {
        eprintln!(
            "booting `{}` ({} domain{}, deadline {deadline} s)",
            prepared.plan.name,
            prepared.expectations.len(),
            if prepared.expectations.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    let (report, log) = prepared.test(&ropts, |_| {})?;
    if let Some(path) = console {
        std::fs::write(path, log.console_text())
            .map_err(|e| PipelineError::Other(format!("writing {}: {e}", path.display())))?;
    }
    if let Some(path) = junit {
        std::fs::write(path, report.to_junit())
            .map_err(|e| PipelineError::Other(format!("writing {}: {e}", path.display())))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json())
                .map_err(|e| PipelineError::Other(e.to_string()))?
        );
        JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    } else {
        print!("{}", report.table());
    }
    if report.passed {
        Ok(())
    } else {
        Err(PipelineError::Other(format!(
            "`{}` failed its test",
            prepared.plan.name
        )))
    }
}

fn migrate_err(e: migrate::ImportError) -> PipelineError {
    PipelineError::Other(e.to_string())
}

/// The board's hardware when it can be read (built-in boards, board files with a DTB); the
/// ImageBuilder importer uses it to turn CPU node names into indices.
fn board_inventory(
    board: &firmware_config::board::Board,
    dir: &Path,
    opts: &Options,
) -> Option<firmware_config::board::HardwareInventory> {
    let dtb = pipeline::board_dtb(board, dir, opts).ok()?;
    let from_dtb = match dtb {
        Some(b) => Some(
            device_tree::DeviceTree::from_dtb(&b)
                .and_then(|t| device_tree::inventory::read_inventory(&t))
                .ok()?,
        ),
        None => None,
    };
    board.resolve_inventory(from_dtb).ok()
}

/// `domforge import xl|imagebuilder`: write the manifest, print the report, check what was written.
fn import_cmd(from: ImportFrom, opts: &Options) -> Result<(), PipelineError> {
    let (imported, command, output) = match from {
        ImportFrom::Xl {
            files,
            board,
            name,
            output,
        } => {
            let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let imported = migrate::files::import_xl(&files, &board, name, output.as_deref());
            let command = format!("domforge import xl {} --board {board}", list.join(" "));
            (imported.map_err(migrate_err)?, command, output)
        }
        ImportFrom::Imagebuilder {
            config,
            board,
            root,
            name,
            output,
        } => {
            let imported = migrate::files::import_imagebuilder(
                &config,
                root.as_deref(),
                board.as_deref(),
                name,
                output.as_deref(),
                |b, dir| board_inventory(b, dir, opts),
            );
            let command = format!("domforge import imagebuilder {}", config.display());
            (imported.map_err(migrate_err)?, command, output)
        }
    };
    eprint!("{}", imported.report);
    let Some(written) =
        migrate::files::write(&imported, &command, output.as_deref()).map_err(migrate_err)?
    else {
        eprintln!("not checked: give -o FILE to write the manifest and check it");
        return Ok(());
    };
    eprintln!("wrote {}; checking it:", written.display());
    check(&written, opts, false)
}

/// `domforge export imagebuilder`.
fn export_imagebuilder(
    manifest: &Path,
    output: Option<&Path>,
    opts: &Options,
) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    let (config, report) = migrate::imagebuilder::export(
        &loaded.manifest_file.name,
        &loaded.manifest_file.text,
        &loaded.manifest,
        &loaded.board,
        Some(&loaded.inventory),
    )
    .map_err(migrate_err)?;
    eprint!("{report}");
    match output {
        Some(path) => std::fs::write(path, config)
            .map_err(|e| PipelineError::Other(format!("writing {}: {e}", path.display()))),
        None => {
            print!("{config}");
            Ok(())
        }
    }
}

/// `domforge plan --svg FILE`.
fn plan_svg(manifest: &Path, file: &Path, opts: &Options) -> Result<(), PipelineError> {
    let loaded = pipeline::load(manifest, opts)?;
    let (plan, _) = loaded.plan()?;
    let svg = system_map::render_svg(&plan);
    std::fs::write(file, svg)
        .map_err(|e| PipelineError::Other(format!("writing {}: {e}", file.display())))?;
    eprintln!("wrote {}", file.display());
    Ok(())
}
