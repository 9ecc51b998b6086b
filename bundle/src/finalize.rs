//! Finalize: the last part of planning. Afterwards every address, size and generated file is decided
//! and every rule that could refuse the system has run.
//!
//! `firmware_config::plan` places what it can know from the manifest, the board and the examined
//! files. Some things only exist once generated: passthrough fragments (their size), dom0's
//! initramfs when domforge-init builds domains (it carries domforge-init, the boot blob and those
//! domains' files, so its size is known only after composing it), and the host DTB (whose size
//! must fit its slot). The boot targets have limits of their own (QEMU's `-initrd` splits at
//! commas). [`finalize`] does all of that and reports every refusal as a [`FinalizeError`] naming
//! what it concerns ([`Blame`]); `check` and `plan` run it, so `build` never refuses a system that
//! `check` passed.

use device_tree::from_plan::{self, DomainFragment, FromPlanError};
use firmware_config::board::Arch;
use firmware_config::manifest::Builder;
use firmware_config::plan::{ModuleKind, SystemPlan};
use firmware_config::validate::CheckInput;

use crate::init::InitLocator;
use crate::source::ArtifactSource;

/// What a finalize error is about, so the caller can point into the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blame {
    /// The system as a whole (`[system]`).
    System,
    /// The board (its file or built-in description).
    Board,
    /// `[dom0]`.
    Dom0,
    /// `[dom0] cmdline` (or `[dom0]` when the command line is the default).
    Dom0Cmdline,
    /// The `[[domain]]` with this name.
    Domain(String),
    /// The plan's module `id`, made from the manifest's `source` string (a `kernel`, `ramdisk` or
    /// `hypervisor` value, or `generated`).
    Module { id: String, source: String },
    /// The `[[shared_memory]]` table(s).
    SharedMemory,
}

/// A rule the final plan breaks, with a code documented in `docs/manifest.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FinalizeError {
    pub code: &'static str,
    pub blame: Blame,
    pub message: String,
    pub help: Option<String>,
}

impl Blame {
    pub fn module(m: &firmware_config::plan::ModulePlan) -> Self {
        Blame::Module {
            id: m.id.clone(),
            source: m.source.clone(),
        }
    }
}

impl FinalizeError {
    pub fn new(code: &'static str, blame: Blame, message: impl Into<String>) -> Self {
        Self {
            code,
            blame,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// What finalize needs beyond the plan.
pub struct Inputs<'a> {
    /// The manifest, board, inventory and examined files the plan was made from.
    pub check: CheckInput<'a>,
    /// The board's DTB (ARM).
    pub board_dtb: Option<&'a [u8]>,
    /// The bytes of every examined file.
    pub files: &'a dyn ArtifactSource,
    /// Where `domforge-init` comes from.
    pub init: &'a InitLocator,
    /// Firmware files the board's boot partition needs ([`crate::targets::rpi::firmware_for`]),
    /// by their name on the card, fetched by the caller.
    pub firmware: &'a [(String, Vec<u8>)],
    /// Debian's GRUB files for the grub target, by their path on the ESP
    /// ([`crate::targets::grub`]), fetched by the caller; empty when the board has no `grub`.
    pub grub: &'a [(String, Vec<u8>)],
    /// Debian's xenstored for dom0, fetched by the caller when the system has PV devices.
    pub xenstored: Option<&'a crate::dom0::XenstoredFiles>,
}

impl Inputs<'_> {
    /// The examined size of the first plan module of `kind` (0 when there is none or it was not
    /// examined: its own rule reports that).
    pub(crate) fn module_size(&self, plan: &SystemPlan, kind: ModuleKind) -> u64 {
        plan.modules
            .iter()
            .find(|m| m.kind == kind)
            .and_then(|m| self.files.facts(&m.source).ok())
            .map_or(0, |f| f.size)
    }
}

/// A plan with everything decided: what `assemble` turns into a bundle without refusing anything.
#[derive(Debug, Clone)]
pub struct FinalPlan {
    /// The plan, with dom0's generated initramfs placed when there is one.
    pub plan: SystemPlan,
    /// Each driver domain's partial device tree.
    pub fragments: Vec<DomainFragment>,
    /// The boot blob, when domforge-init builds domains.
    pub boot_blob: Option<Vec<u8>>,
    /// dom0's generated initramfs (domforge-init as `/init`), when there is one.
    pub dom0_initramfs: Option<GeneratedInitramfs>,
    /// The host DTB's load address for boot loaders that load it themselves (U-Boot).
    pub dtb_addr: Option<u64>,
    /// Things a person should know that do not stop the build.
    pub notes: Vec<String>,
}

/// dom0's generated initramfs as finalize leaves it.
#[derive(Debug, Clone)]
pub enum GeneratedInitramfs {
    /// The archive: the plan was finalized with the bundle's files (`build`).
    Composed(Vec<u8>),
    /// Only its length: a sizes-only finalize (`check`, `plan`,
    /// [`crate::ArtifactSource::sizes_only`]), which composes nothing.
    Counted(u64),
}

impl GeneratedInitramfs {
    /// The archive's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Composed(b) => b.len() as u64,
            Self::Counted(n) => *n,
        }
    }

    /// Whether the archive is empty (never, for a composed one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The archive, if it was composed.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Composed(b) => Some(b),
            Self::Counted(_) => None,
        }
    }
}

impl FinalPlan {
    /// The bytes of dom0's generated initramfs, for assembling: refused when there is none or the
    /// plan was finalized for sizes only.
    pub(crate) fn dom0_initramfs_bytes(&self) -> Result<Vec<u8>, crate::AssembleError> {
        self.dom0_initramfs
            .as_ref()
            .and_then(GeneratedInitramfs::bytes)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                crate::AssembleError::Other(
                    "dom0's initramfs was not composed: the plan was finalized for sizes only \
                     (check/plan); finalize it with the bundle's files (`Loaded::finalize`) to \
                     assemble it"
                        .into(),
                )
            })
    }
}

/// Finalizes `plan` (see the module docs). Every error found comes back, not only the first.
pub fn finalize(inputs: &Inputs<'_>, plan: SystemPlan) -> Result<FinalPlan, Vec<FinalizeError>> {
    let pv = pv_devices_unbuilt(&plan);
    if !pv.is_empty() {
        return Err(pv);
    }
    match plan.arch {
        Arch::Arm64 => crate::arm::finalize(inputs, plan),
        Arch::X86_64 => crate::x86::finalize(inputs, plan),
    }
}

/// E0417: what bundles cannot serve yet (issue 19's next step), refused here so `check` says so
/// before `build`: a dom0less domain (`builder = "xen"`) as a PV backend. Xen builds it before dom0
/// runs, so nothing can give it the generated initramfs whose domforge-init does a driver domain's
/// hotplug work. A dom0less *frontend* (with `enhanced`, E0265) is served: domforge-init gives it its
/// store page and introduces it once dom0's xenstored runs, as `init-dom0less` does
/// (`domctl::builder::late_store`). Domains domforge-init builds get a store ring as they are built.
fn pv_devices_unbuilt(plan: &SystemPlan) -> Vec<FinalizeError> {
    let mut errors = Vec::new();
    for d in plan.domains.iter().filter(|d| d.builder == Builder::Xen) {
        let serves = plan.domains.iter().any(|f| {
            f.pv_disks.iter().any(|x| x.backend == d.name)
                || f.pv_nics.iter().any(|x| x.backend == d.name)
        });
        if serves {
            errors.push(unbuilt(
                &d.name,
                format!(
                    "dom0less domain `{}` serves PV devices, but a driver domain needs the initramfs domforge generates, which a domain Xen builds at boot cannot get",
                    d.name
                ),
            ));
        }
    }
    errors
}

fn unbuilt(domain: &str, message: String) -> FinalizeError {
    FinalizeError::new("E0417", Blame::Domain(domain.to_string()), message).help(
        "use `builder = \"init\"` for the driver domain (domforge-init builds it from dom0 and boots it into domforge's serving initramfs)",
    )
}

/// The blame of a fragment-generation error: the domain it names, else the system.
pub(crate) fn fragment_error(e: FromPlanError) -> FinalizeError {
    let blame = match &e {
        FromPlanError::Passthrough { domain, .. } => Blame::Domain(domain.clone()),
        _ => Blame::System,
    };
    FinalizeError::new("E0401", blame, e.to_string())
}

/// The passthrough fragments of `plan`, generated from the board DTB.
pub(crate) fn fragments(
    board_dtb: &[u8],
    plan: &SystemPlan,
) -> Result<Vec<DomainFragment>, FinalizeError> {
    let tree = device_tree::DeviceTree::from_dtb(board_dtb)
        .map_err(|e| fragment_error(FromPlanError::BoardDtb(e)))?;
    from_plan::passthrough_fragments(&tree, plan).map_err(fragment_error)
}
