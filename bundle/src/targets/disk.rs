//! The disk image target: `boot.img`, a flashable image (MBR, one active FAT32 partition at
//! 1 MiB) holding `boot.scr` and every file it loads, at the same paths as in the bundle, so
//! U-Boot's distro boot finds `/boot.scr` on the first bootable partition and its `load` lines
//! (`${prefix}modules/xen`, ...) read the files beside it. Laid out by the [`disk_image`] crate
//! in memory, its files written from the bundle's own ([`crate::image`]); it is a file of the
//! bundle like any other, so `SHA256SUMS` covers it.
//!
//! Write it to an SD card or USB stick with `dd if=boot.img of=/dev/sdX bs=4M conv=fsync`; in
//! QEMU it is the virtio disk of `--boot uboot` ([`crate::targets::qemu::QemuBoot::ArmUboot`]).

use crate::image::Source;
use crate::{Blame, Bundle, FinalizeError, Role};

/// The image's path in the bundle.
pub const IMAGE_PATH: &str = "boot.img";

/// The files of a bundle that go on the boot partition: the modules, the host DTB and the U-Boot
/// script (its source too, for whoever reads the card).
fn partition_files(bundle: &Bundle) -> Vec<(String, Source<'static>)> {
    bundle
        .files
        .iter()
        .filter(|f| {
            matches!(f.role, Role::Module | Role::HostDtb)
                || (f.role == Role::Target
                    && matches!(f.path.to_str(), Some("boot.scr" | "boot.source")))
                || f.role == Role::Firmware
        })
        .map(|f| {
            let path = f.path.display().to_string();
            (path.clone(), Source::Bundle(path))
        })
        .collect()
}

/// Refuses, at finalize, a system whose files would make the image larger than
/// [`disk_image::DEFAULT_MAX_IMAGE`] (`sizes`: every file U-Boot loads).
pub(crate) fn check_size(sizes: &[u64]) -> Result<(), FinalizeError> {
    // boot.scr and boot.source are a few KiB; count 64 KiB for them.
    let all = sizes.iter().copied().chain([64 << 10]);
    let size = disk_image::image_size_for(all);
    if size > disk_image::DEFAULT_MAX_IMAGE {
        return Err(FinalizeError::new(
            "E0409",
            Blame::System,
            format!(
                "the boot disk image would be {size} bytes, over its {}-byte limit ({} bytes of boot files)",
                disk_image::DEFAULT_MAX_IMAGE,
                sizes.iter().sum::<u64>()
            ),
        )
        .help("use smaller (gzip'd) kernels and ramdisks, or fewer domains on one boot partition"));
    }
    Ok(())
}

/// Adds `boot.img` (after the U-Boot target added `boot.scr`).
pub(crate) fn add(bundle: &mut Bundle) -> Result<(), String> {
    let files = partition_files(bundle);
    crate::image::add(
        bundle,
        IMAGE_PATH,
        &files,
        &disk_image::ImageOptions::default(),
    )
    .map_err(|e| format!("the boot disk image: {e}"))
}
