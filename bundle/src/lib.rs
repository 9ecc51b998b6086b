//! The boot bundle: everything a board needs to boot a planned system, decided in memory and
//! written by one writer.
//!
//! The flow this crate owns is the end of domforge's path, after `firmware_config::plan`:
//!
//! ```text
//! SystemPlan ──▶ finalize ──▶ FinalPlan ──▶ assemble ──▶ Bundle ──▶ Bundle::write(dir)
//!                (fragments,   (every size     (files with   (clean, stage,
//!                 dom0 initramfs, decided,      roles, load   move into place,
//!                 every rule a  nothing left   plan, digests) SHA256SUMS, build.json)
//!                 build applies) to refuse)
//! ```
//!
//! - [`finalize()`] runs every rule that could refuse the system after planning — passthrough
//!   fragments, dom0's generated initramfs and its slot, every module's slot, the host DTB's slot,
//!   the boot targets' own limits — and returns [`FinalizeError`]s that name the domain or module
//!   they concern ([`Blame`]), so the caller maps them back to manifest spans. `check` and `plan`
//!   run it too: after a passing `check`, building can fail only on I/O.
//! - [`assemble()`] turns a [`FinalPlan`] into a [`Bundle`]: pure and in memory.
//! - [`Bundle::write`] is the only writer (see [`write`](mod@write)).
//! - Boot targets are back ends over one bundle: [`targets::qemu`] (`run-qemu.sh`) and
//!   [`targets::uboot`] (`boot.source` and the `boot.scr` legacy image).
//!
//! This crate never fetches anything and never runs a tool: the files a bundle is made of arrive
//! through an [`ArtifactSource`], and `domforge-init` through an [`init::InitLocator`].
#![allow(clippy::result_large_err)] // errors carry the plan item they concern; cold path.

pub mod arm;
pub mod derived;
pub mod dom0;
pub(crate) mod driver;
pub mod finalize;
pub mod firmware_dtb;
pub mod image;
pub mod init;
pub mod kernel_prep;
pub mod legacy_image;
pub mod source;
pub mod targets;
pub mod write;
pub mod x86;

pub use finalize::{Blame, FinalPlan, FinalizeError, finalize};
pub use source::{ArtifactSource, VerifiedFiles};
pub use write::{BuildOutput, WriteError};

use std::path::PathBuf;

pub use firmware_config::board::BootTarget;
use firmware_config::plan::{ModuleKind, SystemPlan};
use sha2::{Digest, Sha256};

/// What a file in a bundle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A boot module the boot loader puts in memory (Xen, kernels, ramdisks, fragments).
    Module,
    /// The host device tree Xen boots with.
    HostDtb,
    /// DTS text of a DTB in the bundle, for review (`--dts`).
    Source,
    /// The compiled manifest domforge-init reads (also inside dom0's initramfs).
    BootBlob,
    /// A boot target's own file (`run-qemu.sh`, `boot.source`, `boot.scr`).
    Target,
    /// `SHA256SUMS`, `build.json`.
    Index,
    /// A file the board's firmware reads from the boot partition that domforge does not build
    /// (the Raspberry Pi's `start4.elf`, U-Boot itself, `config.txt`).
    Firmware,
    /// The flashable disk image ([`targets::disk`]).
    DiskImage,
}

/// One file of a bundle, path relative to the bundle's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub path: PathBuf,
    pub role: Role,
    pub contents: Contents,
    pub executable: bool,
}

/// What a bundle file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    Bytes(Vec<u8>),
    /// A disk image whose files are, where they are files of the bundle too, written from those
    /// files rather than copied into it ([`image`]); [`Bundle::segments`] gives its bytes.
    Image(image::ImageContents),
}

impl BundleFile {
    /// The file's bytes, if it holds them itself (every file but a disk image).
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.contents {
            Contents::Bytes(b) => Some(b),
            Contents::Image(_) => None,
        }
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        match &self.contents {
            Contents::Bytes(b) => b.len() as u64,
            Contents::Image(i) => i.len(),
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file the boot loader puts in memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuiltModule {
    /// The plan's module id (`xen`, `kernel-0`, `passthrough-rtc-driver`, ...).
    pub id: String,
    pub kind: ModuleKind,
    /// The file in the bundle (relative; absolute in a [`BuildOutput`]).
    pub path: PathBuf,
    /// Load address (the plan's; 0 on x86, where the boot loader places modules).
    pub addr: u64,
    /// Exact size of the file in bytes (the `reg` size in the host DTB).
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Stored gzip'd for Xen to decompress (see [`arm`]).
    pub gzip: bool,
}

/// A boot bundle in memory: its files, the load plan, and how to boot it in QEMU.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub files: Vec<BundleFile>,
    /// Xen first, then the boot modules in plan order.
    pub modules: Vec<BuiltModule>,
    /// The host DTB's path in the bundle (ARM; `None` on x86, which has no device tree).
    pub host_dtb: Option<PathBuf>,
    /// How QEMU boots the bundle by each boot target it has (boards QEMU emulates), in the order
    /// the targets were added; each has its `run-qemu*.sh` ([`targets::qemu::script_name`]).
    pub qemu_boots: Vec<(BootTarget, targets::qemu::QemuBoot)>,
    /// The final plan the bundle was assembled from.
    pub plan: SystemPlan,
    /// Things a person should know that do not stop the build (e.g. a kernel without Xen drivers).
    pub notes: Vec<String>,
}

impl Bundle {
    /// How QEMU boots the bundle by `target`, if the bundle has that target in QEMU.
    pub fn qemu_boot(&self, target: BootTarget) -> Option<&targets::qemu::QemuBoot> {
        self.qemu_boots
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, b)| b)
    }

    /// The file at `path` (relative), if the bundle has one.
    pub fn file(&self, path: &str) -> Option<&BundleFile> {
        self.files
            .iter()
            .find(|f| f.path == std::path::Path::new(path))
    }

    /// The bytes of the file at `path` (relative), or why the bundle has none.
    pub(crate) fn bytes_of(&self, path: &str) -> Result<&[u8], String> {
        let f = self
            .file(path)
            .ok_or_else(|| format!("the bundle has no {path}"))?;
        f.bytes()
            .ok_or_else(|| format!("{path} is a disk image of the bundle, not a file it holds"))
    }

    /// The bytes of `f` (a file of this bundle) in order: its own bytes, or a disk image's
    /// metadata and the bundle files it holds ([`image`]). An error only if an image names a
    /// file the bundle does not have, or is longer (a bundle built wrong, never user input).
    pub fn segments<'a>(&'a self, f: &'a BundleFile) -> Result<Vec<&'a [u8]>, String> {
        match &f.contents {
            Contents::Bytes(b) => Ok(vec![b.as_slice()]),
            Contents::Image(i) => i.segments(self).ok_or_else(|| {
                format!(
                    "{}: a file it holds is missing or shorter",
                    f.path.display()
                )
            }),
        }
    }

    /// The SHA-256 of `bytes` if they are a module file of this bundle (the very bytes, borrowed),
    /// whose digest was recorded when it was added: the disk images need their files' digests
    /// for their identifiers, and a 30 MB kernel is not hashed twice.
    pub(crate) fn known_digest(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        let m = self.modules.iter().find(|m| {
            self.file(&m.path.display().to_string())
                .and_then(BundleFile::bytes)
                .is_some_and(|f| std::ptr::eq(f, bytes))
        })?;
        let mut out = [0u8; 32];
        for (i, pair) in m.sha256.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            *out.get_mut(i)? = u8::from_str_radix(hex, 16).ok()?;
        }
        (m.sha256.len() == 64).then_some(out)
    }

    pub(crate) fn add(&mut self, path: impl Into<PathBuf>, role: Role, bytes: Vec<u8>) {
        self.files.push(BundleFile {
            path: path.into(),
            role,
            contents: Contents::Bytes(bytes),
            executable: false,
        });
    }
}

/// Hex SHA-256, the form `sha256sum` prints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub use arm::AssembleError;

/// Assembles the bundle of a final plan, in memory (see the crate docs). `dts` adds DTS text next
/// to every DTB, for review.
pub fn assemble(
    fin: &FinalPlan,
    inputs: &finalize::Inputs<'_>,
    dts: bool,
) -> Result<Bundle, AssembleError> {
    let board = inputs.check.board;
    let machine = board.qemu.as_ref();
    let mut bundle = match fin.plan.arch {
        firmware_config::board::Arch::Arm64 => arm::assemble(
            fin,
            inputs.files,
            &firmware_dtb::complete(inputs.board_dtb.unwrap_or_default(), board)
                .map_err(AssembleError::Other)?,
            machine,
            inputs.firmware,
            &board.targets,
            dts,
        ),
        firmware_config::board::Arch::X86_64 => {
            let machine = machine.ok_or_else(|| {
                AssembleError::Other(format!("board `{}` has no [qemu] table", board.name))
            })?;
            x86::assemble(fin, inputs, machine)
        }
    }?;
    // The system map (issue 16): who owns each host range, each domain's guest view.
    bundle.add(
        "system.svg",
        Role::Source,
        system_map::render_svg(&fin.plan).into_bytes(),
    );
    Ok(bundle)
}
