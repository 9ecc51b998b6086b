//! `domforge build`: everything that boots an ARM64 dom0less system, written into one directory.
//!
//! | File | What |
//! |---|---|
//! | `host.dtb` (`host.dts` with `--dts`) | the board DTB plus Xen's `/chosen` (booting.txt) and `xen,passthrough` marks |
//! | `passthrough-<domain>.dtb` (`.dts`) | each driver domain's partial DTB (passthrough.txt) |
//! | `modules/<id>` | Xen and every boot module, byte for byte (or gzip'd, see below) |
//! | `run-qemu.sh` | boots the system in QEMU with no firmware (`-kernel xen -dtb host.dtb -device loader,...`) |
//! | `boot.source` (`boot.scr` when `mkimage` is installed) | the same boot as a U-Boot script |
//! | `SHA256SUMS` | digests of every module and DTB (`sha256sum -c` format), for measured boot |
//! | `disk0.img` | QEMU boards only, when a domain owns a virtio-mmio transport: a raw disk with a marker line |
//! | `build.json` | [`BuildOutput`], machine-readable, paths relative to the directory |
//!
//! **Addresses and sizes.** Every module is loaded at the address the plan gave it
//! (`ModulePlan.load`) and its `reg` size is the exact size of the file written, so what the boot
//! loader copies and what Xen reads are the same bytes. Passthrough fragments are generated here, so
//! the plan only reserved a slot (`DTB_SLOT`); they take the slot's address with their real size.
//!
//! **Compression.** Xen's ARM kernel loader gunzips a gzip'd module itself (`kernel_decompress()` in
//! `xen/arch/arm/kernel.c`, 4.17; "only gzip is supported"), so an uncompressed arm64 `Image` kernel
//! is stored gzip'd when that makes it smaller: fewer bytes for the boot loader to read. The plan sized
//! the slot for the uncompressed file, so the smaller file fits and keeps the plan's address. This is
//! done **only for a kernel used by exactly one domain**: `kernel_decompress()` moves the module to
//! the decompressed copy and returns the compressed range to the heap (`mod->start = ...;
//! fw_unreserved_regions(addr, addr + size, init_domheap_pages, 0)`), so a second domain whose node
//! names the same address would find no module ("Missing kernel boot module?"). Ramdisks are never
//! touched: Xen hands them to the guest as they are.
//!
//! **Determinism.** Nothing depends on the clock, the host or the output directory: files inside the
//! directory refer to each other by relative paths, gzip headers carry mtime 0, `mkimage` runs with
//! `SOURCE_DATE_EPOCH=0`. Building twice, anywhere, gives byte-identical files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use device_tree::from_plan::{self, DomainFragment, FromPlanError, PlacedModule};
use firmware_config::artifacts::{ArtifactFacts, ImageFormat};
use firmware_config::board::{Arch, Region};
use firmware_config::plan::{DTB_SLOT, ModuleKind, ModulePlan, SystemPlan};
use qemu_tests::command::{LoaderModule, QemuInvocation, arm_direct};
use sha2::{Digest, Sha256};

use crate::pipeline::{Loaded, PipelineError, hex};

/// A file the boot loader puts in memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuiltModule {
    /// The plan's module id (`xen`, `kernel-0`, `passthrough-rtc-driver`, ...).
    pub id: String,
    pub kind: ModuleKind,
    /// The file written into the output directory.
    pub path: PathBuf,
    /// Load address (the plan's).
    pub addr: u64,
    /// Exact size of `path` in bytes (the `reg` size in the host DTB).
    pub size: u64,
    /// Hex SHA-256 of `path`.
    pub sha256: String,
    /// Stored gzip'd for Xen to decompress (see the module docs).
    pub gzip: bool,
}

/// What [`build`] wrote. In memory every path is absolute; `build.json` holds the same with paths
/// relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildOutput {
    pub dir: PathBuf,
    pub host_dtb: PathBuf,
    /// Boots the built system in QEMU (absolute paths; spawn from anywhere).
    pub qemu: QemuInvocation,
    /// Xen first, then the modules in plan order.
    pub modules: Vec<BuiltModule>,
    pub plan: SystemPlan,
}

impl BuildOutput {
    /// The result of a build into `dir`: `modules` carry paths relative to `dir` (as written into
    /// build.json and SHA256SUMS) and come back absolute, so callers can use them from anywhere.
    pub(crate) fn in_dir(
        dir: PathBuf,
        host_dtb: PathBuf,
        qemu: QemuInvocation,
        modules: Vec<BuiltModule>,
        plan: &SystemPlan,
    ) -> Self {
        let modules = modules
            .into_iter()
            .map(|mut m| {
                m.path = dir.join(&m.path);
                m
            })
            .collect();
        BuildOutput {
            dir,
            host_dtb,
            qemu,
            modules,
            plan: plan.clone(),
        }
    }
}

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    DeviceTree(#[from] FromPlanError),
    #[error("module `{id}` ({source_name}): {reason}")]
    Module {
        id: String,
        source_name: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
}

impl From<BuildError> for PipelineError {
    fn from(e: BuildError) -> Self {
        PipelineError::Other(e.to_string())
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    std::fs::write(path, bytes).map_err(io(path))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Files and directories a previous build may have left that this build rewrites; removed first so
/// a directory never mixes two builds (e.g. the fragment of a domain that no longer exists).
fn clean(dir: &Path) -> Result<(), BuildError> {
    let modules = dir.join("modules");
    if modules.is_dir() {
        std::fs::remove_dir_all(&modules).map_err(io(&modules))?;
    }
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for e in entries {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = matches!(
            name.as_str(),
            "host.dtb"
                | "host.dts"
                | "run-qemu.sh"
                | "boot.source"
                | "boot.scr"
                | "SHA256SUMS"
                | "build.json"
                | "disk0.img"
                | "boot.blob"
        ) || (name.starts_with("passthrough-")
            && (name.ends_with(".dtb") || name.ends_with(".dts")));
        if ours {
            let p = e.path();
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Refuses what this emitter cannot write yet, with the reason and the alternative.
fn check_supported(loaded: &Loaded, plan: &SystemPlan) -> Result<(), BuildError> {
    if plan.arch != Arch::Arm64 {
        return Err(BuildError::Unsupported(format!(
            "`{}` is an {} system: x86 builds come with domforge-init (upstream Xen has no dom0less on x86); `domforge compile` writes its boot blob",
            plan.name,
            plan.arch.as_str()
        )));
    }
    if plan.domains.iter().any(|d| !from_plan::is_dom0less(d)) {
        if plan.dom0.is_none() {
            return Err(BuildError::Unsupported(
                "domains built by domforge-init need a dom0 to run it; add `dom0 = true` and a [dom0] table".into(),
            ));
        }
        if plan
            .modules
            .iter()
            .any(|m| m.kind == ModuleKind::Dom0Ramdisk)
        {
            return Err(BuildError::Unsupported(
                "a [dom0] ramdisk cannot be combined with domains built by domforge-init: domforge generates dom0's initramfs (domforge-init, the boot blob and those domains' images); remove `ramdisk` from [dom0]".into(),
            ));
        }
    }
    if !plan.shared_memory.is_empty() {
        return Err(BuildError::Unsupported(
            "static shared memory (`[[shared_memory]]`) is not emitted yet; remove it to build"
                .into(),
        ));
    }
    if loaded.board.qemu.is_none() {
        return Err(BuildError::Unsupported(format!(
            "board `{}` has no [qemu] table; `build` boots through QEMU for now (U-Boot-only boards come next)",
            loaded.board.name
        )));
    }
    Ok(())
}

fn plan_load(m: &ModulePlan) -> Result<Region, BuildError> {
    m.load.ok_or_else(|| BuildError::Module {
        id: m.id.clone(),
        source_name: m.source.clone(),
        reason: "the plan gives it no load address".into(),
    })
}

/// What examining a module's source found (path, size, digest, format).
pub(crate) fn facts<'a>(
    loaded: &'a Loaded,
    m: &ModulePlan,
) -> Result<&'a ArtifactFacts, BuildError> {
    let err = |reason: String| BuildError::Module {
        id: m.id.clone(),
        source_name: m.source.clone(),
        reason,
    };
    match loaded.artifacts.get(&m.source) {
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => Err(err(e.clone())),
        None => Err(err("was never examined".into())),
    }
}

/// Reads a module's source file and proves it is the file the plan was made from.
pub(crate) fn read_source(
    loaded: &Loaded,
    m: &ModulePlan,
) -> Result<(Vec<u8>, ImageFormat), BuildError> {
    let err = |reason: String| BuildError::Module {
        id: m.id.clone(),
        source_name: m.source.clone(),
        reason,
    };
    let facts = facts(loaded, m)?;
    let bytes = std::fs::read(&facts.path).map_err(|e| err(format!("{}: {e}", facts.path)))?;
    if sha256_hex(&bytes) != facts.sha256 {
        return Err(err(format!(
            "{} changed since it was examined; run the build again",
            facts.path
        )));
    }
    Ok((bytes, facts.format.clone()))
}

/// gzip with a fixed header (mtime 0, no file name), so the same input gives the same bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// Builds `plan` (made from `loaded`) into `out`. See the module docs for what is written.
pub fn build(
    loaded: &Loaded,
    plan: &SystemPlan,
    out: &Path,
    dts: bool,
) -> Result<BuildOutput, BuildError> {
    if plan.arch == Arch::X86_64 {
        return crate::build_x86::build(loaded, plan, out);
    }
    check_supported(loaded, plan)?;
    let machine = loaded
        .board
        .qemu
        .as_ref()
        .ok_or_else(|| BuildError::Unsupported("the board has no [qemu] table".into()))?;
    let board_dtb = loaded.board_dtb.as_deref().ok_or_else(|| {
        BuildError::Unsupported(format!(
            "board `{}` has no device tree to build on",
            loaded.board.name
        ))
    })?;

    std::fs::create_dir_all(out).map_err(io(out))?;
    let dir = std::fs::canonicalize(out).map_err(io(out))?;
    clean(&dir)?;
    let modules_dir = dir.join("modules");
    std::fs::create_dir_all(&modules_dir).map_err(io(&modules_dir))?;

    let board_tree = device_tree::DeviceTree::from_dtb(board_dtb)
        .map_err(|e| BuildError::DeviceTree(FromPlanError::BoardDtb(e)))?;
    let fragments = from_plan::passthrough_fragments(&board_tree, plan)?;
    // Domains domforge-init builds: dom0's initramfs carries it, the boot blob and their files; the
    // plan gets that initramfs as dom0's ramdisk, placed like every other module.
    let mut plan = plan.clone();
    let dom0_initramfs = dom0_initramfs_for_init(loaded, &mut plan, &fragments, &dir)?;
    let plan = &plan;

    // Modules, in plan order (Xen first). Paths are relative to `dir` until the end.
    let mut modules: Vec<BuiltModule> = Vec::new();
    let mut host_dtb_slot: Option<Region> = None;
    for m in &plan.modules {
        if m.load.is_none()
            && matches!(
                m.kind,
                ModuleKind::Kernel | ModuleKind::Ramdisk | ModuleKind::PassthroughDtb
            )
        {
            // Only domforge-init reads it (from dom0's initramfs): not a boot module.
            continue;
        }
        let (rel, bytes, gzipped) = match m.kind {
            ModuleKind::HostDtb => {
                host_dtb_slot = Some(plan_load(m)?);
                continue;
            }
            ModuleKind::PassthroughDtb => {
                let f: &DomainFragment = fragments
                    .iter()
                    .find(|f| f.module_id == m.id)
                    .ok_or_else(|| BuildError::Module {
                        id: m.id.clone(),
                        source_name: m.source.clone(),
                        reason: "no fragment was generated for it".into(),
                    })?;
                let name = format!("passthrough-{}", f.domain);
                if dts {
                    write(
                        &dir.join(format!("{name}.dts")),
                        f.fragment.tree.to_dts().as_bytes(),
                    )?;
                }
                (
                    PathBuf::from(format!("{name}.dtb")),
                    f.fragment.dtb.clone(),
                    false,
                )
            }
            ModuleKind::Xen => {
                let (bytes, _) = read_source(loaded, m)?;
                (PathBuf::from("modules/xen"), bytes, false)
            }
            ModuleKind::Kernel | ModuleKind::Dom0Kernel => {
                let (bytes, format) = read_source(loaded, m)?;
                let mut out = (PathBuf::from(format!("modules/{}", m.id)), bytes, false);
                if format == ImageFormat::Arm64Image && m.users.len() == 1 {
                    let gz = gzip(&out.1).map_err(|e| BuildError::Module {
                        id: m.id.clone(),
                        source_name: m.source.clone(),
                        reason: format!("gzip: {e}"),
                    })?;
                    if gz.len() < out.1.len() {
                        out = (PathBuf::from(format!("modules/{}.gz", m.id)), gz, true);
                    }
                }
                out
            }
            ModuleKind::Dom0Ramdisk if m.source == GENERATED => (
                PathBuf::from("modules/dom0-initramfs.cpio"),
                dom0_initramfs.clone().unwrap_or_default(),
                false,
            ),

            ModuleKind::Ramdisk | ModuleKind::Dom0Ramdisk => {
                let (bytes, _) = read_source(loaded, m)?;
                (PathBuf::from(format!("modules/{}", m.id)), bytes, false)
            }
        };
        let slot = plan_load(m)?;
        let size = bytes.len() as u64;
        // The plan sized a slot for every module: a generated DTB gets DTB_SLOT, a file its own size.
        let room = match m.kind {
            ModuleKind::PassthroughDtb => DTB_SLOT,
            ModuleKind::Xen => u64::MAX, // placed by the boot loader in the board's Xen window
            _ => m.size.unwrap_or(slot.size),
        };
        if size == 0 || size > room {
            return Err(BuildError::Module {
                id: m.id.clone(),
                source_name: m.source.clone(),
                reason: format!(
                    "{size} bytes do not fit its {room}-byte slot at {:#x}",
                    slot.base
                ),
            });
        }
        write(&dir.join(&rel), &bytes)?;
        modules.push(BuiltModule {
            id: m.id.clone(),
            kind: m.kind,
            path: rel,
            addr: slot.base,
            size,
            sha256: sha256_hex(&bytes),
            gzip: gzipped,
        });
    }

    // The host DTB, with every module's real address and size.
    let placed: Vec<PlacedModule> = modules
        .iter()
        .filter(|m| m.kind != ModuleKind::Xen)
        .map(|m| PlacedModule {
            id: m.id.clone(),
            addr: m.addr,
            size: m.size,
        })
        .collect();
    let host = from_plan::host_dtb(board_dtb, plan, &placed, &fragments)?;
    let host_bytes = host.to_dtb();
    if let Some(slot) = host_dtb_slot
        && host_bytes.len() as u64 > DTB_SLOT
    {
        return Err(BuildError::Unsupported(format!(
            "the host DTB is {} bytes, more than its {DTB_SLOT}-byte slot at {:#x}",
            host_bytes.len(),
            slot.base
        )));
    }
    write(&dir.join("host.dtb"), &host_bytes)?;
    if dts {
        write(&dir.join("host.dts"), host.to_dts().as_bytes())?;
    }

    // QEMU, relative (script, build.json) and absolute (spawn).
    let xen = modules
        .iter()
        .find(|m| m.kind == ModuleKind::Xen)
        .ok_or_else(|| BuildError::Unsupported("the plan has no Xen module".into()))?;
    let loader = |base: &Path| -> Vec<LoaderModule> {
        modules
            .iter()
            .filter(|m| m.kind != ModuleKind::Xen)
            .map(|m| LoaderModule {
                path: base.join(&m.path),
                addr: m.addr,
            })
            .collect()
    };
    let mut qemu_rel = arm_direct(
        machine,
        &xen.path,
        Path::new("host.dtb"),
        &loader(Path::new("")),
    );
    let mut qemu_abs = arm_direct(
        machine,
        &dir.join(&xen.path),
        &dir.join("host.dtb"),
        &loader(&dir),
    );
    // A domain that owns a virtio-mmio transport gets something behind it: a raw disk holding a
    // marker line the probe guest reads back (through the device's DMA). QEMU plugs the first
    // `virtio-blk-device` into the highest transport (`/virtio_mmio@a003e00` on `virt`), and the
    // board DTB is the same with or without it (checked in qemu-tests' disk tests).
    if plan.domains.iter().any(|d| {
        d.devices
            .iter()
            .any(|dev| dev.compatible.iter().any(|c| c == "virtio,mmio"))
    }) {
        let disk = qemu_tests::disk::MarkerDisk::write(
            &dir.join("disk0.img"),
            &qemu_tests::disk::MarkerDisk::marker_for(&plan.name),
            qemu_tests::disk::DEFAULT_DISK_SIZE,
        )
        .map_err(|e| BuildError::Unsupported(format!("writing the virtio-blk disk: {e}")))?;
        qemu_rel.args.extend(qemu_tests::disk::virtio_blk_args(
            Path::new("disk0.img"),
            "d0",
        ));
        qemu_abs.args.extend(disk.qemu_args("d0"));
    }
    let script_path = dir.join("run-qemu.sh");
    write(
        &script_path,
        qemu_rel
            .shell_script(&format!(
                "Boots `{}` (Xen {}, board {}) in QEMU with no firmware. Generated by `domforge build`.\nExtra arguments go to QEMU; quit with Ctrl-A X.",
                plan.name, plan.xen, plan.board
            ))
            .as_bytes(),
    )?;
    set_executable(&script_path)?;

    // U-Boot.
    let dtb_addr = host_dtb_slot.map(|r| r.base).or_else(|| {
        // No slot in the plan (QEMU-direct boards): where QEMU itself puts the DTB, which such boards
        // keep free — the end of the Xen window (hw/arm/boot.c: RAM base + 128 MiB on `virt`).
        loaded.board.xen_load.and_then(|r| r.end())
    });
    let source = uboot_script(plan, &modules, xen, dtb_addr)?;
    write(&dir.join("boot.source"), source.as_bytes())?;
    mkimage(&dir)?;

    // Digests: the DTB and every module, in load order.
    let mut sums = format!("{}  host.dtb\n", sha256_hex(&host_bytes));
    for m in &modules {
        sums.push_str(&format!("{}  {}\n", m.sha256, m.path.display()));
    }
    write(&dir.join("SHA256SUMS"), sums.as_bytes())?;

    let relative = BuildOutput {
        dir: PathBuf::from("."),
        host_dtb: PathBuf::from("host.dtb"),
        qemu: qemu_rel,
        modules: modules.clone(),
        plan: plan.clone(),
    };
    let mut json = serde_json::to_string_pretty(&relative)
        .map_err(|e| BuildError::Tool(format!("encoding build.json: {e}")))?;
    json.push('\n');
    write(&dir.join("build.json"), json.as_bytes())?;

    let host_dtb = dir.join("host.dtb");
    Ok(BuildOutput::in_dir(dir, host_dtb, qemu_abs, modules, plan))
}

/// The `source` of a module domforge writes itself (dom0's generated initramfs).
const GENERATED: &str = "generated";

/// When some domains are built by domforge-init: dom0's initramfs with the static aarch64
/// `domforge-init` as `/init` ([`images::dom0::Dom0Initramfs`], as on x86), the boot blob, the
/// kernels, ramdisks and passthrough fragments of those domains under `/domforge/modules/<id>`, and
/// the Xen drivers of dom0's kernel package. It becomes dom0's ramdisk in `plan`
/// ([`firmware_config::plan::place_generated_dom0_ramdisk`]); `boot.blob` is also written to `dir`
/// for `domforge inspect`. `None` when Xen builds every domain.
fn dom0_initramfs_for_init(
    loaded: &Loaded,
    plan: &mut SystemPlan,
    fragments: &[DomainFragment],
    dir: &Path,
) -> Result<Option<Vec<u8>>, BuildError> {
    let init_built: Vec<String> = plan
        .domains
        .iter()
        .filter(|d| !from_plan::is_dom0less(d))
        .map(|d| d.name.clone())
        .collect();
    if init_built.is_empty() {
        return Ok(None);
    }
    let blob = crate::build_x86::encode_boot_blob(plan)?;
    write(&dir.join("boot.blob"), &blob)?;
    let init_path = crate::build_x86::find_domforge_init(Arch::Arm64)?;
    let init = std::fs::read(&init_path).map_err(io(&init_path))?;
    let mut initramfs = images::dom0::Dom0Initramfs::new_for(images::Arch::Arm64, &init, &blob)
        .map_err(|e| BuildError::Tool(format!("{}: {e}", init_path.display())))?;
    let module_err = |m: &ModulePlan, reason: String| BuildError::Module {
        id: m.id.clone(),
        source_name: m.source.clone(),
        reason,
    };
    for m in &plan.modules {
        if !m.users.iter().any(|u| init_built.contains(u)) {
            continue;
        }
        let bytes = match m.kind {
            ModuleKind::Kernel | ModuleKind::Ramdisk => read_source(loaded, m)?.0,
            ModuleKind::PassthroughDtb => fragments
                .iter()
                .find(|f| f.module_id == m.id)
                .map(|f| f.fragment.dtb.clone())
                .ok_or_else(|| module_err(m, "no fragment was generated for it".into()))?,
            _ => continue,
        };
        initramfs
            .add_module(&m.id, bytes)
            .map_err(|e| module_err(m, e.to_string()))?;
    }
    // Xen drivers for dom0 (privcmd, evtchn) from its kernel's Debian package.
    let dom0_kernel = plan
        .dom0
        .as_ref()
        .and_then(|d0| plan.module(&d0.kernel))
        .and_then(|m| facts(loaded, m).ok())
        .map(|f| PathBuf::from(&f.path));
    crate::build_x86::add_dom0_xen_drivers(&mut initramfs, dom0_kernel.as_deref())?;
    let cpio = initramfs
        .to_cpio()
        .map_err(|e| BuildError::Tool(format!("dom0 initramfs: {e}")))?;
    firmware_config::plan::place_generated_dom0_ramdisk(plan, loaded.input(), cpio.len() as u64)
        .map_err(|d| BuildError::Unsupported(d.message.clone()))?;
    Ok(Some(cpio))
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(io(p))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), BuildError> {
    Ok(())
}

/// The U-Boot script: load every file at its address, point `fdt` at the host DTB, `booti` Xen.
///
/// Files are read from the boot device when the script runs under U-Boot's distro boot (which sets
/// `devtype`, `devnum`, `distro_bootpart` and `prefix`, the directory holding `boot.scr`), otherwise
/// over TFTP (relative to the TFTP root). Nothing else needs editing: sizes are already in the DTB.
fn uboot_script(
    plan: &SystemPlan,
    modules: &[BuiltModule],
    xen: &BuiltModule,
    dtb_addr: Option<u64>,
) -> Result<String, BuildError> {
    let dtb_addr = dtb_addr.ok_or_else(|| {
        BuildError::Unsupported(
            "the board gives no address for the host DTB (no module window slot, no Xen window)"
                .into(),
        )
    })?;
    let mut s = String::new();
    s.push_str(&format!(
        "# U-Boot script for `{}` (Xen {}, board {}), generated by `domforge build`.\n",
        plan.name, plan.xen, plan.board
    ));
    s.push_str("# Compile: mkimage -A arm64 -T script -C none -d boot.source boot.scr\n");
    s.push_str(
        "# Loads from the boot device under distro boot, else over TFTP; every address and size\n# is already in host.dtb.\n",
    );
    let load = |s: &mut String, addr: u64, file: &str| {
        s.push_str(&format!(
            "if test -n \"${{devtype}}\"; then load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {addr:#x} ${{prefix}}{file}; else tftpb {addr:#x} {file}; fi\n"
        ));
    };
    load(&mut s, xen.addr, &xen.path.display().to_string());
    load(&mut s, dtb_addr, "host.dtb");
    for m in modules.iter().filter(|m| m.kind != ModuleKind::Xen) {
        load(&mut s, m.addr, &m.path.display().to_string());
    }
    s.push_str(&format!("fdt addr {dtb_addr:#x}\n"));
    s.push_str(&format!("booti {:#x} - {dtb_addr:#x}\n", xen.addr));
    Ok(s)
}

/// `boot.scr` from `boot.source` when `mkimage` (u-boot-tools) is installed. `SOURCE_DATE_EPOCH=0`
/// fixes the legacy image header's timestamp (u-boot `tools/default_image.c`), so it is reproducible.
fn mkimage(dir: &Path) -> Result<(), BuildError> {
    let result = Command::new("mkimage")
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "0")
        .args([
            "-A",
            "arm64",
            "-T",
            "script",
            "-C",
            "none",
            "-d",
            "boot.source",
            "boot.scr",
        ])
        .output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::Tool(format!("running mkimage: {e}"))),
        Ok(o) if !o.status.success() => Err(BuildError::Tool(format!(
            "mkimage failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Ok(_) => Ok(()),
    }
}

/// The `domforge build` command: load, plan, build, and tell the person what was written.
pub fn run_cli(
    manifest: &Path,
    out: &Path,
    dts: bool,
    opts: &crate::pipeline::Options,
) -> Result<BuildOutput, PipelineError> {
    let loaded = crate::pipeline::load(manifest, opts)?;
    let (plan, warnings) = loaded.plan()?;
    let sources = crate::render::Sources {
        manifest: &loaded.manifest_file,
        board: Some(&loaded.board_file),
    };
    for d in &warnings.0 {
        eprintln!("{}", crate::render::render(d, &sources, false));
    }
    let built = build(&loaded, &plan, out, dts)?;
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
    eprintln!("boot it: {}", built.dir.join("run-qemu.sh").display());
    Ok(built)
}
