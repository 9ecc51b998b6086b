//! ARM64 bundles: everything that boots a dom0less system.
//!
//! | File | What |
//! |---|---|
//! | `host.dtb` (`host.dts` with `--dts`) | the board DTB plus Xen's `/chosen` (booting.txt) and `xen,passthrough` marks |
//! | `passthrough-<domain>.dtb` (`.dts`) | each driver domain's partial DTB (passthrough.txt) |
//! | `modules/<id>` | Xen and every boot module, byte for byte (or gzip'd, see below) |
//! | `boot.blob` | the compiled manifest, when domforge-init builds domains (also inside dom0's initramfs) |
//! | `run-qemu.sh` | [`crate::targets::qemu`]: boots the system in QEMU with no firmware (boards QEMU emulates) |
//! | `boot.source`, `boot.scr` | [`crate::targets::uboot`]: the same boot as a U-Boot script |
//! | `boot.img` | [`crate::targets::disk`]: a flashable disk image (MBR + FAT32) with `boot.scr` and every file it loads |
//! | `SHA256SUMS`, `build.json` | [`crate::write`]: digests of every file; the bundle, machine-readable |
//!
//! **Addresses and sizes.** Every module is loaded at the address the plan gave it
//! (`ModulePlan.load`) and its `reg` size is the exact size of the file written, so what the boot
//! loader copies and what Xen reads are the same bytes. Passthrough fragments are generated at
//! finalize, so the plan only reserved a slot (`DTB_SLOT`); they take the slot's address with their
//! real size.
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
//! **Determinism.** Nothing depends on the clock, the host or the output directory: files refer to
//! each other by relative paths, gzip headers carry mtime 0, the `boot.scr` header time is 0.
//! Building twice, anywhere, gives byte-identical files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use device_tree::from_plan::{self, PlacedModule};
use firmware_config::artifacts::ImageFormat;
use firmware_config::plan::{DTB_SLOT, ModuleKind, ModulePlan, SystemPlan};

use crate::finalize::{Blame, FinalPlan, FinalizeError, Inputs, fragment_error, fragments};
use crate::{BuiltModule, Bundle, Role, sha256_hex};

/// Why assembling stopped: only a source that changed or vanished since it was examined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("module `{id}` ({source_name}): {reason}")]
    Module {
        id: String,
        source_name: String,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
}

fn unsupported(blame: Blame, message: impl Into<String>) -> FinalizeError {
    FinalizeError::new("E0405", blame, message)
}

/// What this emitter cannot write, with the reason and the alternative.
fn check_supported(inputs: &Inputs<'_>, plan: &SystemPlan) -> Vec<FinalizeError> {
    let mut errors = Vec::new();
    if plan.domains.iter().any(|d| !from_plan::is_dom0less(d)) {
        if plan.dom0.is_none() {
            errors.push(
                unsupported(
                    Blame::System,
                    "domains built by domforge-init need a dom0 to run it",
                )
                .help("add `dom0 = true` to [system] and a [dom0] table"),
            );
        } else if let Some(m) = plan
            .modules
            .iter()
            .find(|m| m.kind == ModuleKind::Dom0Ramdisk)
        {
            errors.push(unsupported(
                Blame::module(m),
                "a [dom0] ramdisk cannot be combined with domains built by domforge-init: domforge generates dom0's initramfs (domforge-init, the boot blob and those domains' images)",
            ).help("remove `ramdisk` from [dom0]"));
        }
    }
    if !plan.shared_memory.is_empty() {
        errors.push(
            unsupported(
                Blame::SharedMemory,
                "static shared memory (`[[shared_memory]]`) is not emitted yet",
            )
            .help("remove the [[shared_memory]] tables to build"),
        );
    }
    if inputs.board_dtb.is_none() {
        errors.push(unsupported(
            Blame::Board,
            format!(
                "board `{}` has no device tree to build on",
                inputs.check.board.name
            ),
        ));
    }
    errors
}

/// The room a module has at its planned address.
fn room(m: &ModulePlan) -> u64 {
    match m.kind {
        ModuleKind::PassthroughDtb => DTB_SLOT,
        ModuleKind::Xen => u64::MAX, // placed by the boot loader in the board's Xen window
        _ => m.size.or(m.load.map(|l| l.size)).unwrap_or(u64::MAX),
    }
}

/// Boot modules the boot loader loads (domforge-init's files travel inside dom0's initramfs).
fn is_boot_module(m: &ModulePlan) -> bool {
    m.load.is_some()
        || !matches!(
            m.kind,
            ModuleKind::Kernel | ModuleKind::Ramdisk | ModuleKind::PassthroughDtb
        )
}

/// Finalizes an ARM64 plan: fragments, dom0's initramfs, every slot, the host DTB's slot.
pub(crate) fn finalize(
    inputs: &Inputs<'_>,
    mut plan: SystemPlan,
) -> Result<FinalPlan, Vec<FinalizeError>> {
    let errors = check_supported(inputs, &plan);
    if !errors.is_empty() {
        return Err(errors);
    }
    let board_dtb = crate::firmware_dtb::complete(
        inputs.board_dtb.unwrap_or_default(),
        inputs.check.board,
    )
    .map_err(|e| {
        vec![FinalizeError::new(
            "E0410",
            Blame::Board,
            format!(
                "the board file's RAM banks or reserved ranges cannot be written into its DTB: {e}"
            ),
        )]
    })?;
    let board_dtb: &[u8] = &board_dtb;
    let fragments = fragments(board_dtb, &plan).map_err(|e| vec![e])?;
    let init_built: Vec<String> = plan
        .domains
        .iter()
        .filter(|d| !from_plan::is_dom0less(d))
        .map(|d| d.name.clone())
        .collect();
    let (mut boot_blob, mut dom0_initramfs, mut notes) = (None, None, Vec::new());
    if !init_built.is_empty() {
        let c =
            crate::dom0::compose(inputs, &plan, &init_built, &fragments).map_err(|e| vec![e])?;
        firmware_config::plan::place_generated_dom0_ramdisk(&mut plan, inputs.check, c.cpio.len())
            .map_err(|d| {
                let mut e = FinalizeError::new(d.code, Blame::Dom0, d.message.clone());
                e.help = d.help.clone();
                vec![e]
            })?;
        boot_blob = Some(c.blob);
        dom0_initramfs = Some(c.cpio);
        notes = c.notes;
    }
    let size_of = |m: &ModulePlan| -> u64 {
        match m.kind {
            ModuleKind::PassthroughDtb => fragments
                .iter()
                .find(|f| f.module_id == m.id)
                .map_or(0, |f| f.fragment.dtb.len() as u64),
            _ => m.size.unwrap_or(0),
        }
    };
    let mut errors = Vec::new();
    for m in plan.modules.iter().filter(|m| is_boot_module(m)) {
        if m.kind == ModuleKind::HostDtb {
            continue;
        }
        let size = size_of(m);
        if m.load.is_none() {
            errors.push(FinalizeError::new(
                "E0402",
                Blame::module(m),
                format!(
                    "module `{}` ({}) has no load address in the plan",
                    m.id, m.source
                ),
            ));
        } else if size == 0 || size > room(m) {
            errors.push(FinalizeError::new(
                "E0402",
                Blame::module(m),
                format!(
                    "module `{}` ({}): {size} bytes do not fit its {}-byte slot at {:#x}",
                    m.id,
                    m.source,
                    room(m),
                    m.load.map_or(0, |l| l.base)
                ),
            ));
        }
    }
    let host_dtb_slot = plan
        .modules
        .iter()
        .find(|m| m.kind == ModuleKind::HostDtb)
        .and_then(|m| m.load);
    // The host DTB's length does not depend on the sizes in its `reg`s (fixed-width cells), so
    // the planned sizes give the length the built one will have.
    let placed: Vec<PlacedModule> = plan
        .modules
        .iter()
        .filter(|m| is_boot_module(m) && !matches!(m.kind, ModuleKind::Xen | ModuleKind::HostDtb))
        .filter_map(|m| {
            m.load.map(|l| PlacedModule {
                id: m.id.clone(),
                addr: l.base,
                size: size_of(m).max(1),
            })
        })
        .collect();
    let mut host_dtb_len = DTB_SLOT;
    match from_plan::host_dtb(board_dtb, &plan, &placed, &fragments) {
        Err(e) => errors.push(fragment_error(e)),
        Ok(host) => {
            let len = host.to_dtb().len() as u64;
            host_dtb_len = len;
            if let Some(slot) = host_dtb_slot
                && len > DTB_SLOT
            {
                errors.push(
                    FinalizeError::new(
                        "E0403",
                        Blame::Board,
                        format!(
                            "the host DTB is {len} bytes, more than its {DTB_SLOT}-byte slot at {:#x}",
                            slot.base
                        ),
                    )
                    .help("pass fewer devices through, or use a board DTB without unused nodes"),
                );
            }
        }
    }
    let dtb_addr = host_dtb_slot.map(|r| r.base).or_else(|| {
        // No slot in the plan (QEMU-direct boards): where QEMU itself puts the DTB, which such boards
        // keep free — the end of the Xen window (hw/arm/boot.c: RAM base + 128 MiB on `virt`).
        inputs.check.board.xen_load.and_then(|r| r.end())
    });
    if dtb_addr.is_none() {
        errors.push(FinalizeError::new(
            "E0403",
            Blame::Board,
            "the board gives no address for the host DTB (no module window slot, no Xen window)",
        ).help("give the board a `module_window` or a `xen_load` window"));
    }
    errors.extend(uboot_rules(inputs, &plan, dtb_addr, host_dtb_len, &size_of));
    let sized: Vec<(&ModulePlan, u64)> = plan
        .modules
        .iter()
        .filter(|m| is_boot_module(m))
        .map(|m| (m, size_of(m)))
        .collect();
    errors.extend(crate::targets::uefi::check(
        inputs,
        &plan,
        &sized,
        host_dtb_len,
    ));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FinalPlan {
        plan,
        fragments,
        boot_blob,
        dom0_initramfs,
        dtb_addr,
        notes,
    })
}

/// The rules of the boot targets every ARM bundle carries: U-Boot's reserved memory
/// ([`crate::targets::uboot::check_reserved`]) and the disk image's size limit
/// ([`crate::targets::disk`]).
fn uboot_rules(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    dtb_addr: Option<u64>,
    dtb_len: u64,
    size_of: &dyn Fn(&ModulePlan) -> u64,
) -> Vec<FinalizeError> {
    use crate::targets::uboot::{Placed, check_reserved};
    let mut placed: Vec<Placed> = plan
        .modules
        .iter()
        .filter(|m| is_boot_module(m) && m.kind != ModuleKind::HostDtb)
        .filter_map(|m| {
            m.load.map(|l| Placed {
                blame: Blame::module(m),
                what: format!("module `{}` ({})", m.id, m.source),
                base: l.base,
                size: size_of(m).max(1),
            })
        })
        .collect();
    if let Some(addr) = dtb_addr {
        placed.push(Placed {
            blame: Blame::Board,
            what: "the host DTB".into(),
            base: addr,
            size: dtb_len,
        });
    }
    let xen = plan.modules.iter().find(|m| m.kind == ModuleKind::Xen);
    let xen_image = xen.and_then(|m| inputs.files.read(&m.source).ok());
    let xen_at = xen.and_then(|m| m.load).map_or(0, |l| l.base);
    let mut errors = check_reserved(
        &inputs.check.inventory.memory,
        xen_image.as_deref().map(|b| (b, xen_at)),
        &placed,
    );
    let sizes: Vec<u64> = placed.iter().map(|p| p.size).collect();
    if let Err(e) = crate::targets::disk::check_size(&sizes) {
        errors.push(e);
    }
    errors
}

/// gzip with a fixed header (mtime 0, no file name), so the same input gives the same bytes.
pub(crate) fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// The file a module becomes.
struct ModuleFile {
    path: PathBuf,
    bytes: Vec<u8>,
    gzip: bool,
    /// The bytes' SHA-256 when it is already known: a source's bytes are the ones its examined
    /// digest describes ([`crate::ArtifactSource::read`]), so they are not hashed again.
    sha256: Option<String>,
}

impl ModuleFile {
    fn new(path: impl Into<PathBuf>, bytes: Vec<u8>, gzip: bool) -> Self {
        Self {
            path: path.into(),
            bytes,
            gzip,
            sha256: None,
        }
    }
}

/// The file a module becomes: its path in the bundle, bytes, and whether they are gzip'd.
fn module_file(
    fin: &FinalPlan,
    files: &dyn crate::ArtifactSource,
    m: &ModulePlan,
) -> Result<ModuleFile, AssembleError> {
    let err = |reason: String| AssembleError::Module {
        id: m.id.clone(),
        source_name: m.source.clone(),
        reason,
    };
    let read = |m: &ModulePlan| -> Result<ModuleFile, AssembleError> {
        let bytes = files.read(&m.source).map_err(err)?;
        let sha256 = files.facts(&m.source).ok().map(|f| f.sha256.clone());
        let path = match m.kind {
            ModuleKind::Xen => PathBuf::from("modules/xen"),
            _ => PathBuf::from(format!("modules/{}", m.id)),
        };
        Ok(ModuleFile {
            sha256,
            ..ModuleFile::new(path, bytes, false)
        })
    };
    Ok(match m.kind {
        ModuleKind::PassthroughDtb => {
            let f = fin
                .fragments
                .iter()
                .find(|f| f.module_id == m.id)
                .ok_or_else(|| err("no fragment was generated for it".into()))?;
            let name = format!("passthrough-{}.dtb", f.domain);
            ModuleFile::new(name, f.fragment.dtb.clone(), false)
        }
        ModuleKind::Xen => read(m)?,
        ModuleKind::Kernel | ModuleKind::Dom0Kernel => {
            let facts = files.facts(&m.source).map_err(err)?;
            if facts.format == ImageFormat::Arm64Image && m.users.len() == 1 {
                // Compressed once and cached by the source (a 30 MB Image takes seconds).
                let gz = files.gzipped(&m.source).map_err(err)?;
                if (gz.len() as u64) < facts.size {
                    return Ok(ModuleFile::new(format!("modules/{}.gz", m.id), gz, true));
                }
            }
            read(m)?
        }
        ModuleKind::Dom0Ramdisk if fin.dom0_initramfs.is_some() => ModuleFile::new(
            "modules/dom0-initramfs.cpio",
            fin.dom0_initramfs_bytes()?,
            false,
        ),
        ModuleKind::Ramdisk | ModuleKind::Dom0Ramdisk => read(m)?,
        ModuleKind::HostDtb => return Err(err("the host DTB is not a file module".into())),
    })
}

/// Assembles an ARM64 bundle from a final plan (see the module docs).
pub(crate) fn assemble(
    fin: &FinalPlan,
    files: &dyn crate::ArtifactSource,
    board_dtb: &[u8],
    machine: Option<&firmware_config::board::QemuMachine>,
    firmware: &[(String, Vec<u8>)],
    targets: &[crate::BootTarget],
    dts: bool,
) -> Result<Bundle, AssembleError> {
    let plan = &fin.plan;
    let mut bundle = Bundle {
        files: Vec::new(),
        modules: Vec::new(),
        host_dtb: Some(PathBuf::from("host.dtb")),
        qemu_boots: Vec::new(),
        plan: plan.clone(),
        notes: fin.notes.clone(),
    };
    for m in plan
        .modules
        .iter()
        .filter(|m| is_boot_module(m) && m.kind != ModuleKind::HostDtb)
    {
        let ModuleFile {
            path,
            bytes,
            gzip,
            sha256,
        } = module_file(fin, files, m)?;
        let addr = m.load.map_or(0, |l| l.base);
        bundle.modules.push(BuiltModule {
            id: m.id.clone(),
            kind: m.kind,
            path: path.clone(),
            addr,
            size: bytes.len() as u64,
            sha256: sha256.unwrap_or_else(|| sha256_hex(&bytes)),
            gzip,
        });
        if dts
            && m.kind == ModuleKind::PassthroughDtb
            && let Some(f) = fin.fragments.iter().find(|f| f.module_id == m.id)
        {
            bundle.add(
                path.with_extension("dts"),
                Role::Source,
                f.fragment.tree.to_dts().into_bytes(),
            );
        }
        bundle.add(path, Role::Module, bytes);
    }
    // The host DTB, with every module's real address and size.
    let placed: Vec<PlacedModule> = bundle
        .modules
        .iter()
        .filter(|m| m.kind != ModuleKind::Xen)
        .map(|m| PlacedModule {
            id: m.id.clone(),
            addr: m.addr,
            size: m.size,
        })
        .collect();
    let host = from_plan::host_dtb(board_dtb, plan, &placed, &fin.fragments)
        .map_err(|e| AssembleError::Other(e.to_string()))?;
    bundle.add("host.dtb", Role::HostDtb, host.to_dtb());
    if dts {
        bundle.add("host.dts", Role::Source, host.to_dts().into_bytes());
    }
    if let Some(blob) = &fin.boot_blob {
        bundle.add("boot.blob", Role::BootBlob, blob.clone());
    }
    if let Some(machine) = machine {
        crate::targets::qemu::add_arm(&mut bundle, machine, Path::new("host.dtb"))
            .map_err(AssembleError::Other)?;
    }
    crate::targets::uboot::add(&mut bundle, fin.dtb_addr.unwrap_or_default())
        .map_err(AssembleError::Other)?;
    if !firmware.is_empty() {
        crate::targets::rpi::add(&mut bundle, firmware, board_dtb).map_err(AssembleError::Other)?;
    }
    crate::targets::disk::add(&mut bundle).map_err(AssembleError::Other)?;
    if let Some(machine) = machine {
        crate::targets::qemu::add_arm_uboot(&mut bundle, machine).map_err(AssembleError::Other)?;
    }
    if targets.contains(&crate::BootTarget::Uefi) {
        crate::targets::uefi::add(&mut bundle, &host).map_err(AssembleError::Other)?;
        if let Some(machine) = machine {
            crate::targets::qemu::add_arm_uefi(&mut bundle, machine)
                .map_err(AssembleError::Other)?;
        }
    }
    Ok(bundle)
}
