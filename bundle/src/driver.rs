//! A driver domain's generated initramfs (issue 19), travelling in dom0's as the domain's ramdisk:
//! `initramfs::dom0::DriverInitramfs` with the backend modules of **the driver domain's own**
//! kernel package and the disk images it serves at their targets. Its `/init` (domforge-init) finds
//! the serve marker and does the hotplug work for the domain's backends (`domforge_init::serve`).

use std::path::PathBuf;

use firmware_config::plan::SystemPlan;
use initramfs::dom0::DriverInitramfs;

use crate::dom0::debian_modules_dir;
use crate::finalize::{Blame, FinalizeError, Inputs};

/// The newc archive of driver domain `name`'s initramfs; `init` is the static domforge-init.
pub(crate) fn initramfs(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    name: &str,
    init: &[u8],
    arch: firmware_config::board::Arch,
) -> Result<Vec<u8>, FinalizeError> {
    let blame = || Blame::Domain(name.to_string());
    let failed = |e: initramfs::dom0::Dom0Error| {
        FinalizeError::new(
            "E0407",
            blame(),
            format!("driver domain `{name}`'s initramfs: {e}"),
        )
    };
    let mut image = DriverInitramfs::new_for(arch, init).map_err(failed)?;
    let kernel = plan
        .domain(name)
        .and_then(|d| plan.module(&d.kernel))
        .and_then(|m| inputs.files.facts(&m.source).ok())
        .map(|f| PathBuf::from(&f.path));
    let Some(dir) = kernel.as_deref().and_then(debian_modules_dir) else {
        return Err(FinalizeError::new(
            "E0419",
            blame(),
            format!(
                "driver domain `{name}` serves PV devices, but its kernel is not from a Debian kernel package, whose blkback, netback, loop and bridge modules its generated initramfs loads"
            ),
        )
        .help("use `kernel = \"debian:kernel\"` for the driver domain"));
    };
    image.add_backends(&dir).map_err(failed)?;
    for d in &plan.domains {
        for disk in d.pv_disks.iter().filter(|x| x.backend == name) {
            let Some(source) = &disk.image else { continue };
            let bytes = crate::dom0::served_image(inputs, &d.name, source)?;
            image.add_file(&disk.target, 0o644, bytes).map_err(failed)?;
        }
    }
    image.initramfs().to_cpio().map_err(|e| failed(e.into()))
}
