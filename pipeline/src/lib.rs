//! parse → resolve board and DTB → examine artifacts → validate → plan → finalize.
//!
//! This is the only place that touches the file system and the network on the way to a plan: it reads
//! the manifest and board files, obtains the board's DTB (QEMU `dumpdtb`, a file, or a Debian package),
//! and examines every kernel and ramdisk the manifest names. Everything after that is library code:
//! `firmware_config` validates and plans, [`bundle::finalize`] decides what is left (fragments, dom0's
//! generated initramfs, every slot), and this crate maps what finalize refuses back to manifest
//! spans ([`Loaded::final_plan`]), so `check` reports everything `build` would refuse.
//! [`build`] is finalize → assemble → write.

use firmware_config::artifacts::{ArtifactFacts, ArtifactTable, ImageFormat};
use firmware_config::board::{
    Arch, Board, DtbSource, HardwareInventory, builtin_board, suggest_builtin,
};
use firmware_config::diag::{Diagnostic, Diagnostics, SourceFile};
use firmware_config::manifest::Manifest;
use firmware_config::plan::{self, SystemPlan};
use firmware_config::validate::CheckInput;
use firmware_config::xen::XenVersion;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use bundle::{BuildOutput, FinalPlan};
pub use lock::{LockChange, LockError, LockOutcome, LockPolicy};

mod blame;
pub mod facts;
pub mod lock;
pub mod xenstored;

use lock::{LockKey, LockSession, LockedPackage, LockedSource};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Problems in the files a person wrote, with spans to render.
    #[error("{} error(s) in the manifest or board", .diags.errors().count())]
    Diagnostics {
        diags: Diagnostics,
        manifest: SourceFile,
        board: Option<SourceFile>,
    },
    /// Writing the bundle failed (I/O only: everything else was refused at finalize).
    #[error("writing the bundle")]
    Write(#[from] bundle::WriteError),
    /// An input changed or vanished between examining it and assembling the bundle.
    #[error("assembling the bundle")]
    Assemble(#[from] bundle::AssembleError),
    /// The lock file refused the command (`--locked`), or could not be read or written.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Anything else (I/O, tools, downloads), with a message for people.
    #[error("{0}")]
    Other(String),
}

impl PipelineError {
    fn other(msg: impl Into<String>) -> Self {
        PipelineError::Other(msg.into())
    }
}

/// Where things are fetched and cached, and whether the network may be used.
#[derive(Debug, Clone)]
pub struct Options {
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub quiet: bool,
    /// Target this Xen release instead of the manifest's `[system] xen` (`--xen` on `run` and
    /// `test`; the release matrix in `tests/qemu_scenarios.rs`). Applied by [`retarget_xen`] right
    /// after parsing, so validation, planning and `debian:xen` all use this release — one
    /// manifest serves several releases without copies. An explicit `[system] hypervisor` file
    /// is still used as given: it must be a build of this release.
    pub xen_override: Option<XenVersion>,
    /// Where `domforge-init` comes from (`--init`; see [`bundle::init`]).
    pub init: bundle::init::InitLocator,
    /// How `<manifest>.lock` is used ([`lock`]). [`Options::from_env`] leaves it
    /// [`LockPolicy::Off`] (a library call writes nothing beside the manifest); the CLI uses
    /// [`LockPolicy::Use`], `--locked` and `domforge update` the others.
    pub lock: LockPolicy,
    /// Whether resolving `builtin:xen-static-memory` may compile Xen when no build is cached.
    /// `check` and `plan` turn it off: they use a cached (or locked) build or say how to make
    /// one, and never compile.
    pub build_builtins: bool,
    /// Shared by every fetcher these options make: how often a package index was touched
    /// ([`debian_fetch::Fetcher::index_accesses`]). A command answered by a satisfied lock leaves it
    /// unchanged.
    pub index_accesses: Arc<AtomicU64>,
}

impl Options {
    pub fn from_env() -> Result<Self, PipelineError> {
        let cache_dir =
            debian_fetch::default_cache_dir().map_err(|e| PipelineError::other(e.to_string()))?;
        Ok(Self {
            cache_dir,
            offline: false,
            quiet: false,
            xen_override: None,
            init: bundle::init::InitLocator::default(),
            lock: LockPolicy::Off,
            build_builtins: true,
            index_accesses: Arc::new(AtomicU64::new(0)),
        })
    }

    /// These options for `check` and `plan`: the same, but never compiling a `builtin:` build
    /// ([`Options::build_builtins`] off).
    pub fn without_builds(&self) -> Options {
        Options {
            build_builtins: false,
            ..self.clone()
        }
    }

    /// How often fetchers made from these options touched a package index.
    pub fn index_accesses(&self) -> u64 {
        self.index_accesses
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn fetcher(&self) -> debian_fetch::Fetcher {
        let progress = if self.quiet {
            debian_fetch::Progress::Quiet
        } else {
            debian_fetch::Progress::Stderr
        };
        debian_fetch::Fetcher::new(&self.cache_dir)
            .with_offline(self.offline)
            .with_progress(progress)
            .with_index_counter(Arc::clone(&self.index_accesses))
    }
}

/// Everything loaded and examined, ready for validation.
pub struct Loaded {
    pub manifest_file: SourceFile,
    pub manifest_dir: PathBuf,
    pub manifest: Manifest,
    pub board_file: SourceFile,
    pub board: Board,
    /// The board's DTB as read (ARM boards).
    pub board_dtb: Option<Vec<u8>>,
    pub inventory: HardwareInventory,
    pub artifacts: ArtifactTable,
    /// domforge's cache (`Options::cache_dir`): prepared kernels are remembered there.
    pub cache_dir: PathBuf,
    /// The manifest's own `[system] xen` when [`Options::xen_override`] replaced it.
    pub xen_retargeted_from: Option<XenVersion>,
    /// Where `domforge-init` comes from ([`Options::init`]).
    pub init: bundle::init::InitLocator,
    /// What this load did to `<manifest>.lock` ([`Options::lock`]).
    pub lock: LockOutcome,
    /// The firmware files the board's boot partition needs (the Pi 4's), by name on the card.
    pub firmware: Vec<(String, Vec<u8>)>,
    /// Debian's GRUB files for the grub target by their path on the ESP (x86 boards listing
    /// `grub`; [`bundle::targets::grub`]).
    pub grub: Vec<(String, Vec<u8>)>,
    /// Debian's xenstored with its libraries, when the system has PV devices (x86).
    pub xenstored: Option<bundle::dom0::XenstoredFiles>,
}

impl Loaded {
    pub fn input(&self) -> CheckInput<'_> {
        CheckInput {
            manifest: &self.manifest,
            board: &self.board,
            inventory: &self.inventory,
            artifacts: &self.artifacts,
        }
    }

    fn fail(&self, mut diags: Diagnostics) -> PipelineError {
        if let Some(from) = self.xen_retargeted_from {
            let note = format!(
                "this run targets Xen {} (`--xen`), not the manifest's `xen = \"{from}\"`",
                self.manifest.system.xen.value
            );
            for d in &mut diags.0 {
                d.notes.push(note.clone());
            }
        }
        PipelineError::Diagnostics {
            diags,
            manifest: self.manifest_file.clone(),
            board: Some(self.board_file.clone()),
        }
    }

    /// Every check `build` would apply: validation, planning and finalize. `Ok` carries the
    /// warnings.
    pub fn check(&self) -> Result<Diagnostics, PipelineError> {
        // Planning validates first and returns validation's warnings with the plan.
        let (plan, warnings) = self.plan()?;
        self.finalize_examined(plan)?;
        Ok(warnings)
    }

    /// Checks and plans, before finalize: what an overlay (the probe knobs of `domforge test`)
    /// may still change.
    pub fn plan(&self) -> Result<(SystemPlan, Diagnostics), PipelineError> {
        plan::plan(self.input()).map_err(|d| self.fail(d))
    }

    /// Checks, plans and finalizes: the plan as it will be built (for showing it: [`build`]
    /// finalizes again from re-verified bytes).
    pub fn final_plan(&self) -> Result<(FinalPlan, Diagnostics), PipelineError> {
        let (plan, warnings) = self.plan()?;
        Ok((self.finalize_examined(plan)?, warnings))
    }

    /// What finalize and assemble read: the manifest, board, DTB and examined files.
    pub fn bundle_inputs<'a>(
        &'a self,
        files: &'a dyn bundle::ArtifactSource,
        init: &'a bundle::init::InitLocator,
    ) -> bundle::finalize::Inputs<'a> {
        bundle::finalize::Inputs {
            check: self.input(),
            board_dtb: self.board_dtb.as_deref(),
            files,
            init,
            firmware: &self.firmware,
            grub: &self.grub,
            xenstored: self.xenstored.as_ref(),
        }
    }

    /// Finalizes `plan` (made from this input, perhaps with an overlay), every refusal as a
    /// diagnostic pointing at what it concerns.
    pub fn finalize(&self, plan: SystemPlan) -> Result<FinalPlan, PipelineError> {
        self.finalize_from(
            &bundle::VerifiedFiles(&self.artifacts, Some(&self.cache_dir)),
            plan,
        )
    }

    /// [`Loaded::finalize`] for `check` and `plan`, which keep nothing: the files are read back
    /// without hashing them again ([`ExaminedFiles`]).
    fn finalize_examined(&self, plan: SystemPlan) -> Result<FinalPlan, PipelineError> {
        self.finalize_from(&ExaminedFiles(&self.artifacts, &self.cache_dir), plan)
    }

    fn finalize_from(
        &self,
        files: &dyn bundle::ArtifactSource,
        plan: SystemPlan,
    ) -> Result<FinalPlan, PipelineError> {
        bundle::finalize(&self.bundle_inputs(files, &self.init), plan).map_err(|errs| {
            self.fail(Diagnostics(
                errs.iter()
                    .map(|e| blame::diagnostic(&self.manifest, e))
                    .collect(),
            ))
        })
    }

    pub fn board_arch(&self) -> Arch {
        self.board.arch
    }
}

/// The examined files read back for `check` and `plan`: the size must still be the examined
/// one, the digest is not recomputed — `load` computed (or, by file identity, remembered) it in
/// this command, and nothing is hashed twice in one command (issue 14). What `check` and `plan`
/// compose is shown and dropped; [`build`] finalizes again with [`bundle::VerifiedFiles`], which
/// makes sure every byte that goes into a bundle was hashed by this command (`facts`' docs).
struct ExaminedFiles<'a>(&'a ArtifactTable, &'a Path);

impl bundle::ArtifactSource for ExaminedFiles<'_> {
    fn facts(&self, source: &str) -> Result<&ArtifactFacts, String> {
        bundle::source::examined(self.0, source)
    }

    fn read(&self, source: &str) -> Result<Vec<u8>, String> {
        let facts = self.facts(source)?;
        let bytes = std::fs::read(&facts.path).map_err(|e| format!("{}: {e}", facts.path))?;
        if bytes.len() as u64 != facts.size {
            return Err(format!(
                "{} changed since it was examined; run the command again",
                facts.path
            ));
        }
        Ok(bytes)
    }

    fn prepared_kernel(&self, source: &str, arch: Arch) -> Result<Vec<u8>, String> {
        let sha = &self.facts(source)?.sha256;
        bundle::kernel_prep::prepared_cached(Some(self.1), sha, arch, false, || self.read(source))
    }

    fn gzipped(&self, source: &str) -> Result<Vec<u8>, String> {
        let sha = &self.facts(source)?.sha256;
        bundle::source::gzipped_cached(Some(self.1), sha, false, || self.read(source))
    }

    fn sizes_only(&self) -> bool {
        true
    }

    fn prepared_kernel_len(&self, source: &str, arch: Arch) -> Result<u64, String> {
        let sha = &self.facts(source)?.sha256;
        bundle::kernel_prep::prepared_len_cached(self.1, sha, arch, || self.read(source))
    }
}

/// Reads the manifest, its board and the board's hardware, and examines every file it names.
pub fn load(manifest_path: &Path, opts: &Options) -> Result<Loaded, PipelineError> {
    let bytes = std::fs::read(manifest_path).map_err(|e| {
        PipelineError::other(format!(
            "cannot read manifest {}: {e}",
            manifest_path.display()
        ))
    })?;
    let text = firmware_config::manifest::manifest_text(bytes, pvh_boot::identify::identify)
        .map_err(|(text, d)| PipelineError::Diagnostics {
            diags: Diagnostics(vec![d]),
            manifest: SourceFile::new(manifest_path.display().to_string(), text),
            board: None,
        })?;
    let manifest_file = SourceFile::new(manifest_path.display().to_string(), text);
    let mut manifest =
        Manifest::parse(&manifest_file.text).map_err(|diags| PipelineError::Diagnostics {
            diags,
            manifest: manifest_file.clone(),
            board: None,
        })?;
    let xen_retargeted_from = opts
        .xen_override
        .and_then(|release| retarget_xen(&mut manifest, release));
    let manifest_dir = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (board_file, board_dir) = board_source(&manifest, &manifest_file, &manifest_dir)?;
    let board = Board::parse(&board_file.text).map_err(|errs| PipelineError::Diagnostics {
        diags: Diagnostics(errs),
        manifest: manifest_file.clone(),
        board: Some(board_file.clone()),
    })?;
    let mut lock = LockSession::open(manifest_path, opts.lock)?;
    let board_dtb = board_dtb_in(&board, &board_dir, opts, &mut lock)?;
    let dtb_inventory = match &board_dtb {
        Some(bytes) => {
            let tree = device_tree::DeviceTree::from_dtb(bytes).map_err(|e| {
                PipelineError::other(format!(
                    "the DTB of board `{}` is not usable: {e}",
                    board.name
                ))
            })?;
            Some(device_tree::inventory::read_inventory(&tree).map_err(|e| {
                PipelineError::other(format!("reading board `{}`'s DTB: {e}", board.name))
            })?)
        }
        None => None,
    };
    let inventory =
        board
            .resolve_inventory(dtb_inventory)
            .map_err(|d| PipelineError::Diagnostics {
                diags: Diagnostics(vec![d]),
                manifest: manifest_file.clone(),
                board: Some(board_file.clone()),
            })?;
    let mut artifacts = ArtifactTable::new();
    let xen_source = xen_source(&manifest);
    let mut sources: Vec<&str> = vec![xen_source.as_str()];
    if let Some(d0) = &manifest.dom0 {
        sources.push(&d0.kernel.value);
        sources.extend(d0.ramdisk.iter().map(|r| r.value.as_str()));
    }
    for d in &manifest.domains {
        sources.push(&d.kernel.value);
        sources.extend(d.ramdisk.iter().map(|r| r.value.as_str()));
        // Disk images the bundle ships into a backend domain (`image=` of a `disk`).
        sources.extend(
            d.disks
                .iter()
                .filter_map(|x| x.image.as_ref())
                .map(|i| i.value.as_str()),
        );
    }
    // The x86 uefi target starts Xen's EFI binary, a file of its own beside the ELF.
    if board.wants(Arch::X86_64, firmware_config::board::BootTarget::Uefi) {
        sources.extend(bundle::targets::uefi_x86::efi_source_of(&xen_source));
    }
    for s in sources {
        if !artifacts.contains_key(s) {
            let facts = examine_in(
                s,
                &manifest_dir,
                board.arch,
                &manifest.system.xen.value.to_string(),
                opts,
                &mut lock,
            );
            artifacts.insert(s.to_string(), facts);
        }
    }
    let grub = if board.wants(Arch::X86_64, firmware_config::board::BootTarget::Grub) {
        grub_files(opts, &mut lock).map_err(|e| {
            PipelineError::other(format!(
                "the grub target of board `{}` needs Debian's GRUB: {e}",
                board.name
            ))
        })?
    } else {
        Vec::new()
    };
    let firmware = board_firmware(&inventory, board.arch, opts, &mut lock)?;
    // A system with PV devices runs Debian's xenstored in dom0 (of dom0's architecture).
    let xenstored = if firmware_config::validate::needs_xenstore(&manifest) {
        let series = manifest.system.xen.value.to_string();
        Some(
            xenstored::fetch(opts, &mut lock, &series, board.arch).map_err(|e| {
                PipelineError::other(format!(
                    "the PV devices of system `{}` need Debian's xenstored in dom0: {e}",
                    manifest.system.name.value
                ))
            })?,
        )
    } else {
        None
    };
    let lock = lock.finish()?;
    Ok(Loaded {
        firmware,
        grub,
        xenstored,
        cache_dir: opts.cache_dir.clone(),
        manifest_file,
        manifest_dir,
        manifest,
        board_file,
        board,
        board_dtb,
        inventory,
        artifacts,
        xen_retargeted_from,
        init: opts.init.clone(),
        lock,
    })
}

/// Debian's GRUB for the grub target ([`bundle::targets::grub`]): the prebuilt EFI image and
/// `multiboot2.mod` with its dependencies, by their paths on the ESP; pinned by the lock like
/// `debian:kernel` (source `debian:grub-efi`).
fn grub_files(opts: &Options, lock: &mut LockSession) -> Result<Vec<(String, Vec<u8>)>, String> {
    use bundle::targets::grub;
    let key = lock_key("debian:grub-efi", Arch::X86_64, None);
    let fetcher = opts.fetcher();
    let (package, suite) = match lock.package_pin(&key, grub::PACKAGE) {
        Some(pin) => (
            fetcher
                .fetch_pinned(&pin)
                .map_err(|e| fetch_message(&e, lock))?,
            pin.suite.clone(),
        ),
        None => {
            lock.may_resolve(&key)?;
            let suite = debian_fetch::DEFAULT_SUITE;
            let arch = Arch::X86_64;
            refresh_for_update(lock, &fetcher, opts, suite, arch)?;
            let request = debian_fetch::PackageRequest::new(grub::PACKAGE, arch).in_suite(suite);
            (
                fetcher.fetch(&request).map_err(|e| e.to_string())?,
                suite.to_owned(),
            )
        }
    };
    let read = |rel: &str| {
        let p = package.root_dir.join(rel);
        std::fs::read(&p).map_err(|e| format!("`{} {}`: {rel}: {e}", package.name, package.version))
    };
    let image_path = package.root_dir.join(grub::IMAGE_IN_PACKAGE);
    let image = read(grub::IMAGE_IN_PACKAGE)?;
    // The image must look for its config where grub.cfg goes (Debian builds it `-p /EFI/debian`).
    let prefix = format!("/{}", grub::PREFIX);
    if memchr::memmem::find(&image, prefix.as_bytes()).is_none() {
        return Err(format!(
            "`{} {}`'s {} does not embed the prefix {prefix}, where domforge puts grub.cfg",
            package.name,
            package.version,
            grub::IMAGE_IN_PACKAGE
        ));
    }
    let moddep =
        String::from_utf8_lossy(&read(&format!("{}/moddep.lst", grub::MODULE_DIR))?).into_owned();
    let mut files = vec![(grub::LOADER.to_string(), image)];
    for m in grub::module_closure(&moddep, grub::NEEDED_MODULE)? {
        let bytes = read(&format!("{}/{m}.mod", grub::MODULE_DIR))?;
        files.push((format!("{}/x86_64-efi/{m}.mod", grub::PREFIX), bytes));
    }
    lock.record(
        LockedSource {
            source: key.0,
            architecture: key.1,
            xen: None,
            // Remembered by the file's identity (`facts`): a warm `check` does not hash the
            // 4 MB image again.
            sha256: facts::examine_file(&opts.cache_dir, &image_path)
                .map(|f| f.sha256)
                .unwrap_or_else(|_| hex(&Sha256::digest(&files[0].1))),
            recipe: None,
            packages: vec![LockedPackage::binary(&package, &suite)],
        },
        &image_path,
    )?;
    Ok(files)
}

/// Fetches the firmware files the board's boot partition needs
/// ([`bundle::targets::rpi::firmware_for`]) from Debian, so a missing package stops `check` before
/// anything is built.
pub fn board_firmware(
    inventory: &HardwareInventory,
    arch: Arch,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<Vec<(String, Vec<u8>)>, PipelineError> {
    let files = bundle::targets::rpi::firmware_for(inventory);
    let mut out = Vec::new();
    let mut packages: Vec<&str> = files.iter().map(|f| f.package).collect();
    packages.dedup();
    for name in packages {
        let of_package: Vec<_> = files.iter().filter(|f| f.package == name).collect();
        let component = of_package[0].component;
        let fail = |e: String| {
            let names: Vec<&str> = of_package.iter().map(|f| f.on_card).collect();
            PipelineError::other(format!(
                "the boot partition needs {} from Debian's `{name}` (component {component}): {e}",
                names.join(", ")
            ))
        };
        let (package, suite) = firmware_package(name, component, arch, opts, lock).map_err(fail)?;
        let mut taken = Vec::new();
        for f in &of_package {
            let path = package.root_dir.join(f.path);
            let bytes = std::fs::read(&path).map_err(|e| {
                fail(format!(
                    "`{}` {}: no {} ({e})",
                    package.name, package.version, f.path
                ))
            })?;
            taken.push((f.on_card.to_string(), bytes));
        }
        // The lock entry's digest covers every file taken, in order, by name and content.
        let mut h = Sha256::new();
        for (n, b) in &taken {
            h.update(n.as_bytes());
            h.update(Sha256::digest(b));
        }
        lock.record(
            LockedSource {
                source: format!("debian:{name}"),
                architecture: arch.debian().to_owned(),
                xen: None,
                sha256: hex(&h.finalize()),
                recipe: None,
                packages: vec![LockedPackage::binary(&package, &suite)],
            },
            &package.root_dir,
        )
        .map_err(fail)?;
        out.extend(taken);
    }
    Ok(out)
}

/// A board firmware package (`debian:<name>` in the lock), pinned like `debian:kernel`.
fn firmware_package(
    name: &str,
    component: &str,
    arch: Arch,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<(debian_fetch::FetchedPackage, String), String> {
    let key = lock_key(&format!("debian:{name}"), arch, None);
    let fetcher = opts.fetcher().with_components(&[component]);
    if let Some(pin) = lock.package_pin(&key, name) {
        let package = fetcher
            .fetch_pinned(&pin)
            .map_err(|e| fetch_message(&e, lock))?;
        return Ok((package, pin.suite));
    }
    lock.may_resolve(&key)?;
    let suite = debian_fetch::DEFAULT_SUITE;
    refresh_for_update(lock, &fetcher, opts, suite, arch)?;
    let request = debian_fetch::PackageRequest::new(name, arch).in_suite(suite);
    let package = fetcher.fetch(&request).map_err(|e| e.to_string())?;
    Ok((package, suite.to_owned()))
}

/// Builds `plan` (made from `loaded`, perhaps with an overlay) into `out`: finalize, assemble,
/// write. After a passing `check`, only I/O can fail here.
pub fn build(
    loaded: &Loaded,
    plan: &SystemPlan,
    out: &Path,
    dts: bool,
) -> Result<BuildOutput, PipelineError> {
    let fin = loaded.finalize(plan.clone())?;
    let files = bundle::VerifiedFiles(&loaded.artifacts, Some(&loaded.cache_dir));
    let inputs = loaded.bundle_inputs(&files, &loaded.init);
    let b = bundle::assemble(&fin, &inputs, dts)?;
    Ok(b.write(out)?)
}

/// Re-targets a parsed manifest at Xen `release`: the transformation behind
/// [`Options::xen_override`]. Only the value changes; the span still points at the manifest's
/// `xen = "…"` (or the start of `[system]` when the key is absent), so diagnostics about the
/// release still point into the file. Returns the manifest's own release when it differed.
pub fn retarget_xen(manifest: &mut Manifest, release: XenVersion) -> Option<XenVersion> {
    let own = manifest.system.xen.value;
    manifest.system.xen.value = release;
    (own != release).then_some(own)
}

/// The board named by `[system] board`: a built-in name, or a path relative to the manifest.
fn board_source(
    m: &Manifest,
    mf: &SourceFile,
    dir: &Path,
) -> Result<(SourceFile, PathBuf), PipelineError> {
    let name = &m.system.board.value;
    if let Some(text) = builtin_board(name) {
        return Ok((
            SourceFile::new(format!("<built-in board {name}>"), text),
            dir.to_path_buf(),
        ));
    }
    let looks_like_path = name.contains('/') || name.ends_with(".toml") || dir.join(name).is_file();
    let path = dir.join(name);
    if looks_like_path && let Ok(bytes) = std::fs::read(&path) {
        // A board file that is not text (often the board's DTB given in its place) is named for
        // what it is, at the manifest's `board = ...`, not reported as missing.
        let what = format!("board file `{name}`");
        let text = firmware_config::manifest::toml_text(bytes, &what, pvh_boot::identify::identify)
            .map_err(|(_, d)| PipelineError::Diagnostics {
                diags: Diagnostics(vec![d.at(m.system.board.span.clone(), "not a TOML board file").help(
                    "a board file is TOML (docs/boards.md); the board's DTB is named inside it, in `[dtb] file = ...`",
                )]),
                manifest: mf.clone(),
                board: None,
            })?;
        let board_dir = path
            .parent()
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        return Ok((SourceFile::new(path.display().to_string(), text), board_dir));
    }
    let mut d = Diagnostic::error("E0201", format!("no board named `{name}`")).at(
        m.system.board.span.clone(),
        if looks_like_path {
            "no such board file"
        } else {
            "not a built-in board"
        },
    );
    d = match suggest_builtin(name) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d.help(format!(
            "built-in boards: {}; or give a path to a board file",
            firmware_config::board::BUILTIN_BOARDS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    Err(PipelineError::Diagnostics {
        diags: Diagnostics(vec![d]),
        manifest: mf.clone(),
        board: None,
    })
}

/// The QEMU command-line arguments that select the board's machine. They live in `qemu_launch`
/// with the boot command lines, so the dumped DTB is exactly the one QEMU boots.
pub use qemu_launch::machine_args as qemu_machine_args;

/// Obtains the board's DTB bytes (cached), using no lock file.
pub fn board_dtb(
    board: &Board,
    board_dir: &Path,
    opts: &Options,
) -> Result<Option<Vec<u8>>, PipelineError> {
    let mut lock = LockSession::open(Path::new(""), LockPolicy::Off)?;
    board_dtb_in(board, board_dir, opts, &mut lock)
}

/// [`board_dtb`], a DTB from a Debian kernel package pinned by (and recorded in) `lock`.
fn board_dtb_in(
    board: &Board,
    board_dir: &Path,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<Option<Vec<u8>>, PipelineError> {
    match &board.dtb {
        DtbSource::None => Ok(None),
        DtbSource::File(f) => {
            let p = board_dir.join(f);
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| PipelineError::other(format!("cannot read DTB {}: {e}", p.display())))
        }
        DtbSource::QemuDump => {
            let q = board
                .qemu
                .as_ref()
                .ok_or_else(|| PipelineError::other("board has no [qemu] table"))?;
            let args = qemu_machine_args(q);
            // `seedless`: entries written since the seeds are dropped at dump time (older
            // entries, with seeds, are not read).
            let key = hex(&Sha256::digest(
                format!("{} {} seedless", q.binary, args.join(" ")).as_bytes(),
            ))[..16]
                .to_string();
            let dir = opts.cache_dir.join("dtb");
            let out = dir.join(format!("{}-{key}.dtb", board.name));
            if let Ok(bytes) = std::fs::read(&out) {
                return Ok(Some(bytes));
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| PipelineError::other(format!("creating {}: {e}", dir.display())))?;
            let tmp = dir.join(format!("{}-{key}.dtb.tmp", board.name));
            let mut margs = args.clone();
            margs[1] = format!("{},dumpdtb={}", q.machine, tmp.display());
            let result = Command::new(&q.binary)
                .args(&margs)
                .args(["-nographic", "-nodefaults"])
                .output();
            match result {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(PipelineError::other(format!(
                        "board `{}` reads its device tree from QEMU, but `{}` is not installed\n  help: apt-get install {}",
                        board.name, q.binary, q.package
                    )))
                }
                Err(e) => Err(PipelineError::other(format!("running {}: {e}", q.binary))),
                Ok(o) if !tmp.exists() => Err(PipelineError::other(format!(
                    "{} did not dump a DTB: {}",
                    q.binary,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))),
                Ok(_) => {
                    // Cached without QEMU's per-run seeds, so every later read is the board.
                    let io = |e: std::io::Error| PipelineError::other(e.to_string());
                    let bytes = without_dump_seeds(&std::fs::read(&tmp).map_err(io)?)?;
                    std::fs::write(&tmp, &bytes).map_err(io)?;
                    std::fs::rename(&tmp, &out).map_err(io)?;
                    Ok(Some(bytes))
                }
            }
        }
        DtbSource::Debian { package, path } => {
            if !package.starts_with("linux-image") {
                return Err(PipelineError::other(format!(
                    "board DTBs come from a linux-image package, not `{package}`"
                )));
            }
            let key = lock_key(&format!("dtb:{path}"), board.arch, None);
            let fetcher = opts.fetcher();
            let (kernel, suite) =
                kernel_for(&key, board.arch, &fetcher, opts, lock).map_err(|e| {
                    PipelineError::other(format!("fetching the DTB of board `{}`: {e}", board.name))
                })?;
            let dir = kernel.dtbs_dir.as_ref().ok_or_else(|| {
                PipelineError::other(format!("{} ships no DTBs", kernel.package.name))
            })?;
            let p = dir.join(path);
            let bytes = std::fs::read(&p)
                .map_err(|e| PipelineError::other(format!("reading {}: {e}", p.display())))?;
            lock.record(
                LockedSource {
                    source: key.0,
                    architecture: key.1,
                    xen: None,
                    sha256: hex(&Sha256::digest(&bytes)),
                    recipe: None,
                    packages: vec![LockedPackage::binary(&kernel.package, &suite)],
                },
                &p,
            )
            .map_err(PipelineError::other)?;
            Ok(Some(bytes))
        }
    }
}

/// A QEMU-dumped DTB without the random seeds QEMU puts in `/chosen` at every start
/// (`kaslr-seed`, `rng-seed`: `create_randomness()` in hw/arm/virt.c, from
/// `qemu_guest_getrandom`). They describe one QEMU run, not the board: kept, they would make every
/// bundle differ from the same manifest's next build on a fresh cache, and hand each boot of a
/// bundle the same "random" seed. Firmware that boots the bundle adds its own.
fn without_dump_seeds(dtb: &[u8]) -> Result<Vec<u8>, PipelineError> {
    let mut tree = device_tree::DeviceTree::from_dtb(dtb)
        .map_err(|e| PipelineError::other(format!("the QEMU-dumped DTB: {e}")))?;
    let mut changed = false;
    if let Some(chosen) = tree.root.child_mut("chosen") {
        for seed in ["kaslr-seed", "rng-seed"] {
            changed |= chosen.remove_prop(seed).is_some();
        }
    }
    Ok(if changed { tree.to_dtb() } else { dtb.to_vec() })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns a manifest source string into a local file: a path relative to the manifest, `debian:kernel`
/// (the board architecture's Debian kernel), `builtin:probe` (the probe-guest initramfs) or
/// `builtin:xen-static-memory` (Debian's Xen of the manifest's `xen` series, built with static memory).
/// Uses no lock file; [`load`] resolves through the manifest's lock.
pub fn resolve_source(
    source: &str,
    manifest_dir: &Path,
    arch: Arch,
    xen: &str,
    opts: &Options,
) -> Result<PathBuf, String> {
    let mut lock = LockSession::open(Path::new(""), LockPolicy::Off).map_err(|e| e.to_string())?;
    resolve_in(source, manifest_dir, arch, xen, opts, &mut lock).map(|r| r.path)
}

/// A resolved source: the file, and (for `debian:`/`builtin:` sources) the lock entry it makes
/// once the file's digest is known.
struct Resolved {
    path: PathBuf,
    entry: Option<(LockKey, Vec<LockedPackage>, Option<String>)>,
}

/// The lock key of a source on `arch` (with the Xen release for sources that depend on it).
fn lock_key(source: &str, arch: Arch, xen: Option<&str>) -> LockKey {
    (
        source.to_owned(),
        arch.debian().to_owned(),
        xen.map(str::to_owned),
    )
}

/// The message of a fetch that a lock pinned, with what to do when the pinned version is gone.
fn fetch_message(e: &debian_fetch::FetchError, lock: &LockSession) -> String {
    match e {
        debian_fetch::FetchError::PinnedVersionGone { .. } => format!(
            "{e}; it is pinned by {}: run `domforge update {}` to lock the version Debian has now \
             (review and commit the changed lock)",
            lock.path().display(),
            lock.manifest()
        ),
        _ => e.to_string(),
    }
}

/// Under `domforge update`, refreshes `(suite, arch)`'s index once per run before resolving.
fn refresh_for_update(
    lock: &mut LockSession,
    fetcher: &debian_fetch::Fetcher,
    opts: &Options,
    suite: &str,
    arch: Arch,
) -> Result<(), String> {
    if !opts.offline && lock.needs_refresh(suite, arch.debian()) {
        fetcher
            .refresh_index(suite, arch)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The Debian kernel for `arch`: the lock's pin (of `key`'s entry, or any entry sharing the
/// kernel), else the newest of [`debian_fetch::DEFAULT_SUITE`]. Returns the suite too.
fn kernel_for(
    key: &LockKey,
    arch: Arch,
    fetcher: &debian_fetch::Fetcher,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<(debian_fetch::KernelFiles, String), String> {
    match lock.package_pin(key, "linux-image-") {
        Some(pin) => fetcher
            .linux_kernel_pinned(&pin)
            .map(|k| (k, pin.suite.clone()))
            .map_err(|e| fetch_message(&e, lock)),
        None => {
            lock.may_resolve(key)?;
            let suite = debian_fetch::DEFAULT_SUITE;
            refresh_for_update(lock, fetcher, opts, suite, arch)?;
            fetcher
                .linux_kernel_in(arch, suite)
                .map(|k| (k, suite.to_owned()))
                .map_err(|e| e.to_string())
        }
    }
}

fn resolve_in(
    source: &str,
    manifest_dir: &Path,
    arch: Arch,
    xen: &str,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<Resolved, String> {
    match source.split_once(':') {
        Some(("debian", which @ ("xen" | "xen-efi"))) => {
            let key = lock_key(source, arch, Some(xen));
            let files = xen_files(&key, arch, xen, opts, lock)?;
            let path = if which == "xen" {
                files.image
            } else {
                files.efi.ok_or_else(|| {
                    format!(
                        "`{} {}` ships no EFI binary (boot/xen-{xen}-{}.efi), which UEFI firmware \
                         would start",
                        files.package.name,
                        files.package.version,
                        arch.debian()
                    )
                })?
            };
            let packages = vec![LockedPackage::binary(&files.package, &files.suite)];
            Ok(Resolved {
                path,
                entry: Some((key, packages, None)),
            })
        }
        Some(("debian", "kernel")) => {
            let key = lock_key(source, arch, None);
            let (k, suite) = kernel_for(&key, arch, &opts.fetcher(), opts, lock)?;
            let packages = vec![LockedPackage::binary(&k.package, &suite)];
            Ok(Resolved {
                path: k.image,
                entry: Some((key, packages, None)),
            })
        }
        Some(("debian", other)) => Err(format!(
            "unknown Debian source `{other}`; `debian:kernel` and `debian:xen` are supported"
        )),
        Some(("builtin", "probe")) => {
            let key = lock_key(source, arch, None);
            let recipe = probe_recipe(arch);
            match lock.pinned(&key) {
                // A satisfied pin: the probe built from the pinned inputs by this recipe (the
                // script and module list of this domforge) is in the cache under its digest;
                // nothing is fetched or built.
                Some(entry) => {
                    let path = probe_path(opts, arch, &entry.sha256);
                    if entry.recipe.as_deref() == Some(recipe.as_str()) && path.is_file() {
                        return Ok(Resolved {
                            path,
                            entry: Some((key, entry.packages.clone(), Some(recipe))),
                        });
                    }
                }
                None => lock.may_resolve(&key)?,
            }
            let (path, packages) = build_probe_in(arch, opts, &key, lock)?;
            Ok(Resolved {
                path,
                entry: Some((key, packages, Some(recipe))),
            })
        }
        // Debian's Xen source built with CONFIG_STATIC_MEMORY (for `xen,static-mem` +
        // `direct-map` driver domains); see debian_fetch::xen_build.
        Some(("builtin", "xen-static-memory")) => match arch {
            Arch::Arm64 => xen_static_memory(xen, opts, lock),
            _ => Err("`builtin:xen-static-memory` is an arm64 hypervisor: Xen's \
                      CONFIG_STATIC_MEMORY exists only on ARM"
                .to_string()),
        },
        Some(("builtin", other)) => Err(format!(
            "unknown built-in `{other}`; `builtin:probe` and `builtin:xen-static-memory` are supported"
        )),
        _ => {
            let p = manifest_dir.join(source);
            if p.is_file() {
                Ok(Resolved {
                    path: p,
                    entry: None,
                })
            } else {
                Err(format!("no file at {}", p.display()))
            }
        }
    }
}

/// Debian's hypervisor package of release `xen`: the lock's pin of `key`, else the suite that
/// carries the release.
fn xen_files(
    key: &LockKey,
    arch: Arch,
    xen: &str,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<debian_fetch::XenFiles, String> {
    let fetcher = opts.fetcher();
    match lock.package_pin(key, &format!("xen-hypervisor-{xen}-")) {
        Some(pin) => fetcher
            .xen_hypervisor_pinned(xen, &pin)
            .map_err(|e| fetch_message(&e, lock)),
        None => {
            lock.may_resolve(key)?;
            let suite = debian_fetch::suite_for_xen(xen).ok_or_else(|| {
                debian_fetch::FetchError::UnknownXenVersion(xen.to_owned()).to_string()
            })?;
            refresh_for_update(lock, &fetcher, opts, suite, arch)?;
            fetcher
                .xen_hypervisor_files(arch, xen, suite)
                .map_err(|e| e.to_string())
        }
    }
}

/// `builtin:xen-static-memory`: a cached build (the lock's source version when pinned), or —
/// only when [`Options::build_builtins`] — a build now. `check` and `plan` never compile; they
/// say how to build it instead.
fn xen_static_memory(
    xen: &str,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<Resolved, String> {
    use debian_fetch::xen_build::{XenBuildConfig, XenBuilder};
    let key = lock_key("builtin:xen-static-memory", Arch::Arm64, Some(xen));
    let config = XenBuildConfig::static_memory(xen);
    let builder = XenBuilder::new(&opts.cache_dir)
        .with_offline(opts.offline)
        .with_quiet(opts.quiet);
    let pinned = lock
        .pinned(&key)
        .and_then(|e| e.packages.first())
        .map(|p| p.version.clone());
    if pinned.is_none() {
        lock.may_resolve(&key)?;
    }
    let built = match builder.cached_build(&config, pinned.as_deref()) {
        Some(b) => b,
        None if !opts.build_builtins => {
            return Err(format!(
                "it is Xen {xen} compiled from Debian's source with CONFIG_STATIC_MEMORY, and no \
                 build{} is in the cache yet; `check` and `plan` never compile. Build it once \
                 with `domforge fetch {}` (or `domforge build`), which compiles the hypervisor \
                 (several minutes) and caches it",
                pinned
                    .as_deref()
                    .map(|v| format!(" of the locked source version {v}"))
                    .unwrap_or_default(),
                lock.manifest()
            ));
        }
        None => builder.build(&config).map_err(|e| e.to_string())?,
    };
    let dsc = built
        .source_files
        .iter()
        .find(|(_, name)| name.ends_with(".dsc"))
        .map(|(sha, _)| sha.clone())
        .unwrap_or_default();
    let packages = vec![LockedPackage {
        name: "xen".to_owned(),
        version: built.source_version.clone(),
        suite: debian_fetch::suite_for_xen(xen)
            .unwrap_or_default()
            .to_owned(),
        architecture: "source".to_owned(),
        sha256: dsc,
        files: built
            .source_files
            .iter()
            .map(|(sha, name)| format!("{sha} {name}"))
            .collect(),
    }];
    Ok(Resolved {
        path: built.image,
        entry: Some((key, packages, Some(built.key))),
    })
}

/// The kernel modules the probe image carries for `arch`.
fn probe_modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Arm64 => probe::ARM64_MODULES,
        Arch::X86_64 => probe::AMD64_XEN_FRONTEND_MODULES,
    }
}

/// What the probe image is made by besides its packages: `/init`'s script and the kernel modules it
/// carries, so a domforge with another probe does not take a cached image of the old one.
fn probe_recipe(arch: Arch) -> String {
    let modules = probe_modules(arch);
    let mut h = Sha256::new();
    h.update(probe::INIT_SCRIPT.as_bytes());
    h.update(modules.join(",").as_bytes());
    let digest = hex(&h.finalize());
    format!("probe-v{}-{}", probe::FORMAT_VERSION, &digest[..16])
}

/// Where the probe initramfs with digest `sha256` is cached.
fn probe_path(opts: &Options, arch: Arch, sha256: &str) -> PathBuf {
    opts.cache_dir.join("probe").join(format!(
        "probe-{}-{}.cpio.gz",
        arch.as_str(),
        sha256.get(..12).unwrap_or(sha256)
    ))
}

/// Builds (and caches) the probe initramfs for `arch` from Debian's busybox-static.
pub fn build_probe(arch: Arch, opts: &Options) -> Result<PathBuf, String> {
    let mut lock = LockSession::open(Path::new(""), LockPolicy::Off).map_err(|e| e.to_string())?;
    let key = lock_key("builtin:probe", arch, None);
    build_probe_in(arch, opts, &key, &mut lock).map(|(p, _)| p)
}

/// [`build_probe`] from the lock's pinned busybox and kernel (or the newest); returns the
/// inputs for the lock.
fn build_probe_in(
    arch: Arch,
    opts: &Options,
    key: &LockKey,
    lock: &mut LockSession,
) -> Result<(PathBuf, Vec<LockedPackage>), String> {
    let fetcher = opts.fetcher();
    let (package, busybox) = match lock.package_pin(key, "busybox-static") {
        Some(pin) => fetcher
            .busybox_static_pinned(&pin)
            .map(|(p, b)| (LockedPackage::binary(&p, &pin.suite), b))
            .map_err(|e| fetch_message(&e, lock))?,
        None => {
            let suite = debian_fetch::DEFAULT_SUITE;
            refresh_for_update(lock, &fetcher, opts, suite, arch)?;
            fetcher
                .busybox_static_package(arch, suite)
                .map(|(p, b)| (LockedPackage::binary(&p, suite), b))
                .map_err(|e| e.to_string())?
        }
    };
    let mut inputs = vec![package];
    let mut image = probe::ProbeImage::from_busybox_file(&busybox).map_err(|e| e.to_string())?;
    // Debian's arm64 kernel builds virtio-mmio and virtio-blk as modules; the probe loads them to
    // reach a passed-through virtio disk. They come from the same package as `debian:kernel`.
    // On amd64 the PV frontends (xen-blkfront, xen-netfront) are modules of the same package.
    let wanted = probe_modules(arch);
    {
        let (kernel, suite) = kernel_for(key, arch, &fetcher, opts, lock)?;
        inputs.push(LockedPackage::binary(&kernel.package, &suite));
        let modules = initramfs::kmod::resolve_modules(&kernel.modules_dir, wanted)
            .map_err(|e| e.to_string())?;
        image = image.with_modules(&modules).map_err(|e| e.to_string())?;
    }
    let bytes = image.to_cpio_gz().map_err(|e| e.to_string())?;
    let dir = opts.cache_dir.join("probe");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = probe_path(opts, arch, &hex(&Sha256::digest(&bytes)));
    if !path.exists() {
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
    }
    Ok((path, inputs))
}

/// The hypervisor the manifest boots: `[system] hypervisor`, else Debian's package for `xen`.
pub fn xen_source(m: &Manifest) -> String {
    m.system
        .hypervisor
        .as_ref()
        .map_or_else(|| "debian:xen".to_string(), |h| h.value.clone())
}

/// Reads a file and says what it is (using no lock file).
pub fn examine(
    source: &str,
    manifest_dir: &Path,
    arch: Arch,
    xen: &str,
    opts: &Options,
) -> Result<ArtifactFacts, String> {
    let mut lock = LockSession::open(Path::new(""), LockPolicy::Off).map_err(|e| e.to_string())?;
    examine_in(source, manifest_dir, arch, xen, opts, &mut lock)
}

/// [`examine`] through `lock`: the file is hashed once, and that digest is both the fact
/// validation uses and what is checked against (and recorded in) the lock.
fn examine_in(
    source: &str,
    manifest_dir: &Path,
    arch: Arch,
    xen: &str,
    opts: &Options,
    lock: &mut LockSession,
) -> Result<ArtifactFacts, String> {
    let resolved = resolve_in(source, manifest_dir, arch, xen, opts, lock)?;
    let facts = facts::examine_file(&opts.cache_dir, &resolved.path)?;
    if let Some(((source, architecture, xen), packages, recipe)) = resolved.entry {
        lock.record(
            LockedSource {
                source,
                architecture,
                xen,
                sha256: facts.sha256.clone(),
                recipe,
                packages,
            },
            &resolved.path,
        )?;
    }
    Ok(facts)
}

/// What a boot file is, from its contents.
pub fn classify(bytes: &[u8]) -> ImageFormat {
    // A header is no proof of a whole file: hold every format to the sizes its header promises.
    if let Err(e) = pvh_boot::identify::check_complete(bytes) {
        return ImageFormat::Damaged {
            what: e.format.to_string(),
            reason: e.reason,
        };
    }
    if bytes.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]) {
        return ImageFormat::DeviceTree;
    }
    if bytes.starts_with(b"070701") || bytes.starts_with(b"070702") {
        return ImageFormat::Initramfs;
    }
    match pvh_boot::inspect::inspect_kernel(bytes) {
        Ok(r) => {
            use pvh_boot::inspect::ImageFormat as F;
            match r.format {
                // Xen decompresses gzip only (xen/common/device-tree/kernel.c); anything else is not
                // a bootable dom0less kernel.
                F::Arm64Image if r.compression == Some(pvh_boot::kernel::Compression::Gzip) => {
                    ImageFormat::Arm64ImageGzip
                }
                F::Arm64Image if r.compression.is_some() => ImageFormat::Unknown(format!(
                    "a {:?}-compressed arm64 Image (Xen decompresses gzip only)",
                    r.compression.unwrap_or(pvh_boot::kernel::Compression::Gzip)
                )),
                F::Arm64Image => ImageFormat::Arm64Image,
                F::BzImage => ImageFormat::BzImage {
                    pvh_entry: r.pvh_entry,
                },
                F::Elf64 | F::Elf32 => ImageFormat::Elf {
                    machine: r.arch.to_string(),
                    pvh_entry: r.pvh_entry,
                },
            }
        }
        Err(e) => {
            // Compressed archives that are not kernels are initramfs images in practice.
            let compressed = bytes.starts_with(&[0x1f, 0x8b])
                || bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
                || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                || bytes.starts_with(&[0x02, 0x21, 0x4c, 0x18]);
            if compressed {
                ImageFormat::Initramfs
            } else if let Some(what) = pvh_boot::identify::identify(bytes) {
                // Name what it is (a .deb, a zip, a uImage...), as `inspect` does.
                ImageFormat::Unknown(what.to_string())
            } else {
                ImageFormat::Unknown(format!("not a recognised image ({e})"))
            }
        }
    }
}
