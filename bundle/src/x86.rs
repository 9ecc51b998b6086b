//! x86_64 bundles: Xen, dom0's kernel and a generated dom0 initramfs whose `/init` is
//! `domforge-init`, which builds the PVH guests at boot (upstream Xen has no dom0less on x86).
//!
//! | File | What |
//! |---|---|
//! | `modules/xen` | Xen as an ELF (Debian ships `xen.gz`; QEMU's multiboot loader cannot read gzip) |
//! | `modules/dom0-kernel` | dom0's kernel (a PV-capable bzImage, e.g. Debian's) |
//! | `modules/dom0-initramfs.cpio` | [`crate::dom0`]: `/init` = static `domforge-init`, `/domforge/boot.blob`, the guests' kernels and ramdisks, Xen driver modules |
//! | `boot.blob` | the compiled manifest (also inside the initramfs), for `domforge inspect` |
//! | `run-qemu.sh` | [`crate::targets::qemu`]: Xen by multiboot, dom0 and its initramfs as modules |
//! | `uefi.img`, `BOOTX64.cfg`, `run-qemu-uefi.sh` | [`crate::targets::uefi_x86`]: a GPT disk whose ESP starts `xen.efi` (boards listing `uefi`) |
//! | `grub.img`, `grub.cfg`, `run-qemu-grub.sh` | [`crate::targets::grub`]: a GPT disk whose ESP starts Debian's GRUB, which boots Xen by multiboot2 (boards listing `grub`) |
//! | `SHA256SUMS`, `build.json` | digests of every file; the bundle, machine-readable |
//!
//! Boot modules have no fixed address on x86: QEMU's multiboot loader (or GRUB) places them, so
//! [`BuiltModule::addr`] is 0 and the bundle has no host DTB.

use std::path::PathBuf;

use firmware_config::artifacts::ImageFormat;
use firmware_config::board::{BootTarget, QemuMachine};
use firmware_config::manifest::Builder;
use firmware_config::plan::{ModuleKind, SystemPlan};

use crate::arm::AssembleError;
use crate::finalize::{Blame, FinalPlan, FinalizeError, Inputs};
use crate::{BuiltModule, Bundle, Role, sha256_hex};

/// Where each x86 boot module goes in the bundle.
pub const XEN_PATH: &str = "modules/xen";
pub const DOM0_KERNEL_PATH: &str = "modules/dom0-kernel";
pub const DOM0_INITRAMFS_PATH: &str = "modules/dom0-initramfs.cpio";

fn unsupported(blame: Blame, message: impl Into<String>) -> FinalizeError {
    FinalizeError::new("E0405", blame, message)
}

/// What an x86 bundle cannot hold, with the reason and the alternative.
fn check_supported(inputs: &Inputs<'_>, plan: &SystemPlan) -> Vec<FinalizeError> {
    let mut errors = Vec::new();
    if plan.dom0.is_none() {
        errors.push(unsupported(
            Blame::System,
            "an x86 system needs a dom0: it runs domforge-init, which builds the PVH guests (upstream Xen has no dom0less on x86)",
        ).help("add `dom0 = true` to [system] and a [dom0] table"));
    }
    if inputs.check.board.qemu.is_none() {
        errors.push(unsupported(
            Blame::Board,
            format!(
                "board `{}` has no [qemu] table; bundles boot through QEMU for now",
                inputs.check.board.name
            ),
        ));
    }
    for d in plan.domains.iter().filter(|d| d.builder != Builder::Init) {
        errors.push(
            unsupported(
                Blame::Domain(d.name.clone()),
                format!(
                    "domain `{}` is to be built by Xen, which x86 Xen cannot do at boot",
                    d.name
                ),
            )
            .help("let domforge-init build it: builder = \"init\""),
        );
    }
    if let Some(m) = plan
        .modules
        .iter()
        .find(|m| m.kind == ModuleKind::Dom0Ramdisk)
    {
        errors.push(unsupported(
            Blame::module(m),
            "a [dom0] ramdisk is not supported on x86: domforge generates dom0's initramfs (domforge-init, the boot blob and the guests' images)",
        ).help("remove `ramdisk` from [dom0]"));
    }
    for m in plan.modules.iter().filter(|m| m.kind == ModuleKind::Xen) {
        match inputs.files.facts(&m.source).map(|f| &f.format) {
            Ok(ImageFormat::Elf { .. }) => {}
            _ => errors.push(
                FinalizeError::new(
                    "E0402",
                    Blame::module(m),
                    format!(
                        "module `{}` ({}): QEMU's multiboot loader needs Xen as an ELF",
                        m.id, m.source
                    ),
                )
                .help("gunzip xen.gz, or use `debian:xen`, which does"),
            ),
        }
    }
    errors
}

/// The QEMU command line of the bundle, relative to its directory; its errors are the QEMU
/// target's limits (no commas in dom0's `-initrd` entry).
pub(crate) fn qemu_invocation(
    machine: &QemuMachine,
    plan: &SystemPlan,
) -> Result<qemu_launch::QemuInvocation, qemu_launch::x86::X86CommandError> {
    let dom0_cmdline = plan.dom0.as_ref().map_or("", |d| d.cmdline.as_str());
    qemu_launch::x86::x86_multiboot(
        machine,
        XEN_PATH.as_ref(),
        &plan.xen_cmdline,
        DOM0_KERNEL_PATH.as_ref(),
        dom0_cmdline,
        DOM0_INITRAMFS_PATH.as_ref(),
    )
}

/// Finalizes an x86_64 plan: the bundle's limits, the QEMU target's, dom0's initramfs.
pub(crate) fn finalize(
    inputs: &Inputs<'_>,
    plan: SystemPlan,
) -> Result<FinalPlan, Vec<FinalizeError>> {
    let mut errors = check_supported(inputs, &plan);
    if let Some(machine) = &inputs.check.board.qemu
        && let Err(e) = qemu_invocation(machine, &plan)
    {
        errors.push(
            FinalizeError::new("E0404", Blame::Dom0Cmdline, e.to_string())
                .help("write the option without a comma (e.g. one option per word), or move it to `xen_cmdline`"),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let all: Vec<String> = plan.domains.iter().map(|d| d.name.clone()).collect();
    let mut c = crate::dom0::compose(inputs, &plan, &all, &[]).map_err(|e| vec![e])?;
    let mut errors = crate::targets::uefi_x86::check(inputs, &plan, c.cpio.len(), &mut c.notes);
    errors.extend(crate::targets::grub::check(inputs, &plan, c.cpio.len()));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FinalPlan {
        plan,
        fragments: Vec::new(),
        boot_blob: Some(c.blob),
        dom0_initramfs: Some(c.cpio),
        dtb_addr: None,
        notes: c.notes,
    })
}

/// Assembles an x86_64 bundle from a final plan (see the module docs).
pub(crate) fn assemble(
    fin: &FinalPlan,
    inputs: &Inputs<'_>,
    machine: &QemuMachine,
) -> Result<Bundle, AssembleError> {
    let files = inputs.files;
    let plan = &fin.plan;
    let qemu = crate::targets::qemu::QemuBoot::X86 {
        machine: machine.clone(),
        xen_cmdline: plan.xen_cmdline.clone(),
        dom0_cmdline: plan
            .dom0
            .as_ref()
            .map(|d| d.cmdline.clone())
            .unwrap_or_default(),
    };
    let mut bundle = Bundle {
        files: Vec::new(),
        modules: Vec::new(),
        host_dtb: None,
        qemu_boots: Vec::new(),
        plan: plan.clone(),
        notes: fin.notes.clone(),
    };
    let blob = fin.boot_blob.clone().unwrap_or_default();
    bundle.add("boot.blob", Role::BootBlob, blob);
    // `known`: the digest the source was examined with (its bytes are those, `ArtifactSource::read`),
    // so a kernel is not hashed again.
    let record = |b: &mut Bundle,
                  id: &str,
                  kind: ModuleKind,
                  path: &str,
                  bytes: Vec<u8>,
                  known: Option<String>| {
        b.modules.push(BuiltModule {
            id: id.to_string(),
            kind,
            path: PathBuf::from(path),
            addr: 0,
            size: bytes.len() as u64,
            sha256: known.unwrap_or_else(|| sha256_hex(&bytes)),
            gzip: false,
        });
        b.add(path, Role::Module, bytes);
    };
    for m in &plan.modules {
        let path = match m.kind {
            ModuleKind::Xen => XEN_PATH,
            ModuleKind::Dom0Kernel => DOM0_KERNEL_PATH,
            _ => continue,
        };
        let bytes = files
            .read(&m.source)
            .map_err(|reason| AssembleError::Module {
                id: m.id.clone(),
                source_name: m.source.clone(),
                reason,
            })?;
        let known = files.facts(&m.source).ok().map(|f| f.sha256.clone());
        record(&mut bundle, &m.id, m.kind, path, bytes, known);
    }
    record(
        &mut bundle,
        "dom0-initramfs",
        ModuleKind::Dom0Ramdisk,
        DOM0_INITRAMFS_PATH,
        fin.dom0_initramfs_bytes()?,
        None,
    );
    crate::targets::qemu::add_boot(
        &mut bundle,
        crate::BootTarget::QemuDirect,
        qemu,
        &format!(
            "Boots `{}` (Xen {}, board {}) in QEMU: Xen by multiboot, dom0 runs domforge-init, which \
             builds the PVH guests. Generated by `domforge build`.\nExtra arguments go to QEMU; \
             quit with Ctrl-A X.",
            plan.name, plan.xen, plan.board
        ),
    )
    .map_err(AssembleError::Other)?;
    if crate::targets::uefi_x86::add(&mut bundle, inputs, DOM0_KERNEL_PATH, DOM0_INITRAMFS_PATH)
        .map_err(AssembleError::Other)?
    {
        crate::targets::qemu::add_x86_firmware(&mut bundle, machine, BootTarget::Uefi)
            .map_err(AssembleError::Other)?;
    }
    let paths = [XEN_PATH, DOM0_KERNEL_PATH, DOM0_INITRAMFS_PATH];
    if crate::targets::grub::add(&mut bundle, inputs, paths).map_err(AssembleError::Other)? {
        crate::targets::qemu::add_x86_firmware(&mut bundle, machine, BootTarget::Grub)
            .map_err(AssembleError::Other)?;
    }
    Ok(bundle)
}
