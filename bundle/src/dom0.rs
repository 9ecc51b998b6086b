//! dom0's generated initramfs, for systems whose domains domforge-init builds (every x86 system;
//! ARM systems with `builder = "init"` domains).
//!
//! Its layout is `initramfs::dom0::Dom0Initramfs`: `/init` = the static `domforge-init` for dom0's
//! architecture, `/domforge/boot.blob`, the kernels, ramdisks and passthrough fragments of the
//! domains it builds under `/domforge/modules/<id>` (kernels in the form it loads fastest,
//! [`crate::kernel_prep`]), and the Xen drivers (privcmd, evtchn) of
//! dom0's kernel package.

use std::path::{Path, PathBuf};

use device_tree::from_plan::DomainFragment;
use firmware_config::board::Arch;
use firmware_config::plan::{self, ModuleKind, ModulePlan, SystemPlan};
use initramfs::dom0::Dom0Initramfs;

use crate::finalize::{Blame, FinalizeError, GeneratedInitramfs, Inputs};
use crate::init::init_target;

/// Debian's xenstored with its shared libraries (issue 19), fetched by the caller for a system
/// with PV devices; dom0's initramfs carries them and links [`schema::layout::XENSTORED`] to the
/// binary.
#[derive(Debug, Clone, Default)]
pub struct XenstoredFiles {
    /// Root-relative path of the binary in its package (`usr/lib/xen-4.17/bin/xenstored`).
    pub binary: String,
    /// Regular files (root-relative path, bytes): the binary, the loader, the libraries.
    pub files: Vec<(String, Vec<u8>)>,
    /// Symlinks (root-relative path, target) on the way to them (sonames, `/lib64`).
    pub symlinks: Vec<(String, String)>,
    /// `package version` of each package used, for notes.
    pub packages: Vec<String>,
}

impl XenstoredFiles {
    /// Bytes of the regular files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// The composed initramfs and the boot blob inside it.
pub(crate) struct Composed {
    pub blob: Vec<u8>,
    /// Counted only when the source wants sizes only ([`crate::ArtifactSource::sizes_only`]).
    pub cpio: GeneratedInitramfs,
    pub notes: Vec<String>,
}

/// A writer that only counts: the newc archive's length without its bytes.
#[derive(Default)]
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A module's bytes, or, when only sizes are wanted, zeros of its length: a zeroed allocation is
/// not touched until written, and [`Counter`] never reads it, so no kernel is read for `check`.
fn module_bytes(
    inputs: &Inputs<'_>,
    m: &ModulePlan,
    arch: Arch,
) -> Result<Option<Vec<u8>>, FinalizeError> {
    let files = inputs.files;
    let sized = |len: u64| {
        usize::try_from(len)
            .map(|n| vec![0u8; n])
            .map_err(|_| module_error(m, "too large"))
    };
    Ok(Some(match (m.kind, files.sizes_only()) {
        // Decompressed here once instead of in dom0 at every boot (crate::kernel_prep).
        (ModuleKind::Kernel, false) => files
            .prepared_kernel(&m.source, arch)
            .map_err(|e| module_error(m, e))?,
        (ModuleKind::Kernel, true) => sized(
            files
                .prepared_kernel_len(&m.source, arch)
                .map_err(|e| module_error(m, e))?,
        )?,
        (ModuleKind::Ramdisk, false) => files.read(&m.source).map_err(|e| module_error(m, e))?,
        (ModuleKind::Ramdisk, true) => {
            sized(files.facts(&m.source).map_err(|e| module_error(m, e))?.size)?
        }
        _ => return Ok(None),
    }))
}

/// The boot blob of `plan` (the compiled manifest domforge-init reads), framed.
pub fn encode_boot_blob(plan: &SystemPlan) -> Result<Vec<u8>, FinalizeError> {
    let config = plan::boot_config(plan).map_err(|d| {
        let mut e = FinalizeError::new(d.code, Blame::System, d.message.clone());
        e.help = d.help.clone();
        e
    })?;
    firmware_config::blob::encode(&config).map_err(|e| {
        FinalizeError::new(
            "E0405",
            Blame::System,
            format!("the boot blob cannot be encoded: {e}"),
        )
    })
}

/// `lib/modules/<release>` of a Debian kernel package, from its `boot/vmlinuz-<release>`.
pub fn debian_modules_dir(kernel: &Path) -> Option<PathBuf> {
    let name = kernel.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-")?;
    let root = kernel.parent()?.parent()?;
    let dir = root.join("lib/modules").join(release);
    dir.is_dir().then_some(dir)
}

fn module_error(m: &ModulePlan, reason: impl std::fmt::Display) -> FinalizeError {
    FinalizeError::new(
        "E0402",
        Blame::module(m),
        format!("module `{}` ({}): {reason}", m.id, m.source),
    )
}

/// Composes dom0's initramfs for the domains named in `init_built`.
pub(crate) fn compose(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    init_built: &[String],
    fragments: &[DomainFragment],
) -> Result<Composed, FinalizeError> {
    let blob = encode_boot_blob(plan)?;
    let arch = plan.arch;
    let init_path = inputs.init.find(arch).map_err(|e| {
        FinalizeError::new("E0406", Blame::Dom0, e.to_string()).help(format!(
            "domforge-init builds {} at boot and must be found when the bundle is made",
            init_built.join(", ")
        ))
    })?;
    let init = std::fs::read(&init_path).map_err(|e| {
        FinalizeError::new(
            "E0406",
            Blame::Dom0,
            format!("{}: {e}", init_path.display()),
        )
    })?;
    let mut initramfs = Dom0Initramfs::new_for(arch, &init, &blob).map_err(|e| {
        FinalizeError::new(
            "E0406",
            Blame::Dom0,
            format!("{} (for {}): {e}", init_path.display(), init_target(arch)),
        )
    })?;
    for m in &plan.modules {
        if !m.users.iter().any(|u| init_built.contains(u)) {
            continue;
        }
        let driver = plan::driver_ramdisk_domain(&m.source);
        let bytes = match m.kind {
            ModuleKind::Ramdisk if driver.is_some() => {
                let name = driver.unwrap_or_default();
                crate::driver::initramfs(inputs, plan, name, &init, arch)?
            }
            ModuleKind::PassthroughDtb => fragments
                .iter()
                .find(|f| f.module_id == m.id)
                .map(|f| f.fragment.dtb.clone())
                .ok_or_else(|| module_error(m, "no fragment was generated for it"))?,
            _ => match module_bytes(inputs, m, arch)? {
                Some(b) => b,
                None => continue,
            },
        };
        initramfs
            .add_module(&m.id, bytes)
            .map_err(|e| module_error(m, e))?;
    }
    let mut notes = add_dom0_xen_drivers(inputs, plan, &mut initramfs)?;
    if plan.xenstore {
        notes.extend(add_xenstore(inputs, plan, &mut initramfs)?);
    }
    let failed = |e: initramfs::cpio::CpioError| {
        FinalizeError::new("E0407", Blame::Dom0, format!("dom0's initramfs: {e}"))
    };
    let cpio = if inputs.files.sizes_only() {
        let n = initramfs
            .initramfs()
            .write_cpio(Counter::default())
            .map_err(failed)?;
        GeneratedInitramfs::Counted(n.0)
    } else {
        GeneratedInitramfs::Composed(initramfs.initramfs().to_cpio().map_err(failed)?)
    };
    Ok(Composed { blob, cpio, notes })
}

/// What a dom0 serving PV devices adds (issue 19): Debian's xenstored with its libraries and
/// directories, and the disk images dom0 serves at their targets.
fn add_xenstore(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    initramfs: &mut Dom0Initramfs,
) -> Result<Vec<String>, FinalizeError> {
    let xs = inputs.xenstored.ok_or_else(|| {
        FinalizeError::new(
            "E0418",
            Blame::System,
            "the system has PV devices, so dom0 runs Debian's xenstored, but it was not fetched",
        )
        .help("run again with Debian reachable (the lock pins it as `debian:xenstored`)")
    })?;
    let failed = |e: initramfs::dom0::Dom0Error| {
        FinalizeError::new("E0407", Blame::Dom0, format!("dom0's xenstored: {e}"))
    };
    initramfs.add_xenstored_dirs().map_err(failed)?;
    for (path, bytes) in &xs.files {
        initramfs
            .add_file(path, 0o755, bytes.clone())
            .map_err(failed)?;
    }
    let cpio = |e: initramfs::cpio::CpioError| failed(e.into());
    for (path, target) in &xs.symlinks {
        initramfs
            .initramfs_mut()
            .add_symlink(path, target)
            .map_err(cpio)?;
    }
    initramfs
        .initramfs_mut()
        .add_symlink(schema::layout::XENSTORED, &format!("/{}", xs.binary))
        .map_err(cpio)?;
    for d in &plan.domains {
        for disk in d.pv_disks.iter().filter(|x| x.backend == "dom0") {
            let Some(source) = &disk.image else { continue };
            let bytes = served_image(inputs, &d.name, source)?;
            initramfs
                .add_file(&disk.target, 0o644, bytes)
                .map_err(|e| image_error(&d.name, source, e))?;
        }
    }
    Ok(vec![format!(
        "dom0 runs xenstored ({} bytes with its libraries, from {})",
        xs.total_bytes(),
        xs.packages.join(", ")
    )])
}

/// The bytes of a disk image a backend's generated root ships (`image=` of `domain`'s disk), or,
/// when only sizes are wanted, zeros of its length; the same refusals either way, so `check`
/// rejects what `build` would.
pub(crate) fn served_image(
    inputs: &Inputs<'_>,
    domain: &str,
    source: &str,
) -> Result<Vec<u8>, FinalizeError> {
    if inputs.files.sizes_only() {
        let len = inputs
            .files
            .facts(source)
            .map_err(|e| image_error(domain, source, e))?
            .size;
        let len = usize::try_from(len).map_err(|_| image_error(domain, source, "too large"))?;
        Ok(vec![0u8; len])
    } else {
        inputs
            .files
            .read(source)
            .map_err(|e| image_error(domain, source, e))
    }
}

fn image_error(domain: &str, source: &str, reason: impl std::fmt::Display) -> FinalizeError {
    FinalizeError::new(
        "E0402",
        Blame::Domain(domain.to_string()),
        format!("disk image `{source}` of `{domain}`: {reason}"),
    )
}

/// The Xen drivers dom0 needs for domforge-init (privcmd, evtchn) from its kernel's own Debian
/// package; another kernel must have them built in (a note, not an error).
fn add_dom0_xen_drivers(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    initramfs: &mut Dom0Initramfs,
) -> Result<Vec<String>, FinalizeError> {
    let kernel = plan
        .dom0
        .as_ref()
        .and_then(|d0| plan.module(&d0.kernel))
        .and_then(|m| inputs.files.facts(&m.source).ok())
        .map(|f| PathBuf::from(&f.path));
    match kernel.as_deref().and_then(debian_modules_dir) {
        Some(dir) => {
            // Backends only where dom0 serves something itself (driver domains carry their own).
            let serves = plan.domains.iter().any(|d| {
                d.pv_disks.iter().any(|x| x.backend == "dom0")
                    || d.pv_nics.iter().any(|x| x.backend == "dom0")
            });
            let added = if serves {
                initramfs.add_xen_drivers_and_backends(&dir)
            } else {
                initramfs.add_xen_drivers(&dir)
            };
            added.map_err(|e| {
                FinalizeError::new("E0407", Blame::Dom0, format!("dom0's Xen drivers: {e}"))
            })?;
            Ok(Vec::new())
        }
        None => Ok(vec![
            "dom0's kernel is not from a Debian package with modules; it must have xen-evtchn and \
             xen-privcmd built in"
                .into(),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_modules_dir_follows_the_package_layout() {
        let t = std::env::temp_dir().join(format!("bundle-dom0-{}", std::process::id()));
        let boot = t.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::create_dir_all(t.join("lib/modules/6.1.0-56-amd64")).unwrap();
        let k = boot.join("vmlinuz-6.1.0-56-amd64");
        std::fs::write(&k, b"x").unwrap();
        assert_eq!(
            debian_modules_dir(&k),
            Some(t.join("lib/modules/6.1.0-56-amd64"))
        );
        assert_eq!(debian_modules_dir(&boot.join("bzImage")), None);
        std::fs::remove_dir_all(&t).unwrap();
    }
}
