//! Disk images for scenarios that pass a virtio-blk device through to a driver domain.
//!
//! The probe guest's `virtio-blk` check (`probe/src/probe_init.sh`, `functional_check`)
//! reads the first 512 bytes of the block device bound to the passed-through transport,
//! turns NULs into newlines and reports the first line as `dev.virtio-blk@<addr>.value =
//! "<vda> <line>"`. A raw image whose first bytes are a marker line therefore proves that a
//! read request went through the device — on QEMU's virtio-mmio that read is a DMA into guest
//! RAM, the thing a non-1:1 guest cannot do without an IOMMU.
//!
//! On QEMU's `virt` machine the virtio-mmio transports (32 of them, `hw/arm/virt.c`
//! `create_virtio_devices`) are in the device tree whether or not a device is plugged into
//! them, so the board DTB dumped without the disk describes the machine booted with it (a test
//! below checks this against `dumpdtb`). The first `virtio-blk-device` takes the transport
//! with the highest address, `/virtio_mmio@a003e00` (SPI 47): QEMU's virtio-mmio bus hands out
//! transports from the last one created.

use std::io::Write;
use std::path::{Path, PathBuf};

use qemu_launch::qemu_opt_value;

/// What a marker line starts with, so a report value can be told from random disk contents.
pub const MARKER_PREFIX: &str = "DOMFORGE-DISK";

/// The probe prints at most 256 characters per value, `"<device name> <marker>"`; keep the
/// marker well inside that.
pub const MAX_MARKER_LEN: usize = 200;

/// A logical block: QEMU's virtio-blk reports the capacity in 512-byte sectors
/// (virtio spec 1.2 §5.2.4, `capacity`), so the image size is a multiple of it.
pub const SECTOR: u64 = 512;

/// Default image size: small, sparse on disk, larger than the one sector the probe reads.
pub const DEFAULT_DISK_SIZE: u64 = 1 << 20;

/// Why a disk image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The marker would not survive the probe's reading of it.
    #[error(
        "disk marker {marker:?} is unusable: {reason} (it must start with {MARKER_PREFIX:?}, \
         be printable ASCII without newlines and at most {MAX_MARKER_LEN} characters)"
    )]
    BadMarker {
        /// The marker given.
        marker: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The size is not a positive multiple of [`SECTOR`] large enough for the marker.
    #[error("disk size {0} is not a non-zero multiple of {SECTOR} bytes")]
    BadSize(u64),
    /// Writing failed.
    #[error("writing disk image {path}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A raw disk image holding a marker line at offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerDisk {
    /// The image file.
    pub path: PathBuf,
    /// The line at offset 0 (without its newline): what the probe must report.
    pub marker: String,
    /// Image size in bytes.
    pub size: u64,
}

impl MarkerDisk {
    /// The marker for a scenario: `DOMFORGE-DISK <name>`.
    pub fn marker_for(name: &str) -> String {
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_MARKER_LEN.saturating_sub(MARKER_PREFIX.len() + 1))
            .collect();
        format!("{MARKER_PREFIX} {clean}")
    }

    /// Writes `path`: `marker`, `\n`, then zeros up to `size` (a sparse file). Replaces an
    /// existing file atomically (written beside it, then renamed).
    pub fn write(path: &Path, marker: &str, size: u64) -> Result<Self, DiskError> {
        check_marker(marker)?;
        let needed = (marker.len() as u64).saturating_add(1);
        if size == 0 || !size.is_multiple_of(SECTOR) || size < needed {
            return Err(DiskError::BadSize(size));
        }
        let io = |source| DiskError::Io {
            path: path.to_owned(),
            source,
        };
        let mut temp = path.as_os_str().to_owned();
        temp.push(format!(".tmp-{}", std::process::id()));
        let temp = PathBuf::from(temp);
        let result = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(marker.as_bytes())?;
            file.write_all(b"\n")?;
            file.set_len(size)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(io(e));
        }
        Ok(Self {
            path: path.to_owned(),
            marker: marker.to_owned(),
            size,
        })
    }

    /// QEMU arguments attaching this image as a virtio-mmio block device:
    /// `-drive if=none,id=<id>,format=raw,file=<path> -device virtio-blk-device,drive=<id>`.
    /// `format=raw` stops QEMU from probing the format (it refuses writes to sector 0 of a
    /// probed raw image); the path is escaped for QEMU's option syntax.
    pub fn qemu_args(&self, id: &str) -> Vec<String> {
        virtio_blk_args(&self.path, id)
    }

    /// The value the probe reports for the device when the read worked: `"<dev> <marker>"`,
    /// e.g. `"vda DOMFORGE-DISK static-mem-virtio-blk"`; `dev` is the block device name.
    pub fn expected_probe_value(&self, dev: &str) -> String {
        format!("{dev} {}", self.marker)
    }
}

/// See [`MarkerDisk::qemu_args`].
pub fn virtio_blk_args(image: &Path, id: &str) -> Vec<String> {
    let id = qemu_opt_value(id);
    vec![
        "-drive".to_string(),
        format!(
            "if=none,id={id},format=raw,file={}",
            qemu_opt_value(&image.display().to_string())
        ),
        "-device".to_string(),
        format!("virtio-blk-device,drive={id}"),
    ]
}

fn check_marker(marker: &str) -> Result<(), DiskError> {
    let bad = |reason| DiskError::BadMarker {
        marker: marker.chars().take(80).collect(),
        reason,
    };
    if !marker.starts_with(MARKER_PREFIX) {
        return Err(bad("wrong prefix"));
    }
    if marker.len() > MAX_MARKER_LEN {
        return Err(bad("too long"));
    }
    // The probe keeps printable ASCII only and ends the line at a newline or NUL.
    if !marker.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(bad("not printable ASCII"));
    }
    if marker.ends_with(' ') {
        return Err(bad("trailing spaces are dropped from report values"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A directory of this test process's own; only files inside it are ever removed.
    fn scratch_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qemu-tests-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn scratch(name: &str) -> PathBuf {
        assert!(!name.is_empty() && !name.contains('/'), "a plain file name");
        scratch_dir().join(name)
    }

    fn in_ci() -> bool {
        std::env::var("CI").as_deref() == Ok("true")
    }

    #[test]
    fn image_reads_back_like_the_probe_reads_it() {
        let path = scratch("marker.img");
        let marker = MarkerDisk::marker_for("static-mem virtio-blk");
        assert_eq!(marker, "DOMFORGE-DISK static-memvirtio-blk");
        let disk = MarkerDisk::write(&path, &marker, DEFAULT_DISK_SIZE).unwrap();
        // The probe's own pipeline (probe_init.sh), run by the system shell and coreutils.
        let out = Command::new("sh")
            .args([
                "-c",
                "head -c 512 \"$1\" | tr '\\0' '\\n' | head -n 1",
                "sh",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), marker);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), DEFAULT_DISK_SIZE);
        assert_eq!(disk.expected_probe_value("vda"), format!("vda {marker}"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn rejects_markers_and_sizes_the_probe_cannot_report() {
        let path = scratch("bad.img");
        for marker in [
            "hello",
            "DOMFORGE-DISK a\nb",
            "DOMFORGE-DISK é",
            "DOMFORGE-DISK x ",
        ] {
            assert!(
                matches!(
                    MarkerDisk::write(&path, marker, SECTOR),
                    Err(DiskError::BadMarker { .. })
                ),
                "{marker:?}"
            );
        }
        let long = format!("{MARKER_PREFIX} {}", "x".repeat(MAX_MARKER_LEN));
        assert!(MarkerDisk::write(&path, &long, SECTOR).is_err());
        for size in [0, 100, 513] {
            assert!(matches!(
                MarkerDisk::write(&path, "DOMFORGE-DISK ok", size),
                Err(DiskError::BadSize(_))
            ));
        }
        assert!(!path.exists(), "nothing is written on error");
    }

    #[test]
    fn qemu_args_escape_commas() {
        let args = virtio_blk_args(Path::new("/tmp/a,b.img"), "d0");
        assert_eq!(
            args,
            [
                "-drive",
                "if=none,id=d0,format=raw,file=/tmp/a,,b.img",
                "-device",
                "virtio-blk-device,drive=d0"
            ]
        );
    }

    /// The board DTB domforge dumps without the disk must describe the machine booted with it:
    /// QEMU's `dumpdtb` with and without the virtio-blk device, compared as DTS by `dtc`
    /// (the independent reference), ignoring `/chosen` `rng-seed` and `kaslr-seed`, which QEMU
    /// randomises on every dump.
    #[test]
    fn attaching_the_disk_does_not_change_the_virt_device_tree() {
        let have = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !(have("qemu-system-aarch64") && have("dtc")) {
            assert!(!in_ci(), "qemu-system-aarch64 and dtc are needed");
            eprintln!("SKIPPED: qemu-system-aarch64 or dtc missing (scripts/setup installs them)");
            return;
        }
        let disk = MarkerDisk::write(&scratch("dtb.img"), "DOMFORGE-DISK dtb", SECTOR).unwrap();
        let dump = |name: &str, extra: &[String]| -> String {
            let dtb = scratch(name);
            let status = Command::new("qemu-system-aarch64")
                .args([
                    "-machine",
                    &format!(
                        "virt,virtualization=on,gic-version=3,dumpdtb={}",
                        qemu_opt_value(&dtb.display().to_string())
                    ),
                    "-cpu",
                    "cortex-a57",
                    "-m",
                    "2G",
                    "-smp",
                    "2",
                    "-nographic",
                ])
                .args(extra)
                .output()
                .unwrap();
            assert!(status.status.success(), "{status:?}");
            let dts = Command::new("dtc")
                .args(["-q", "-I", "dtb", "-O", "dts"])
                .arg(&dtb)
                .output()
                .unwrap();
            assert!(dts.status.success());
            String::from_utf8_lossy(&dts.stdout)
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    !(l.starts_with("rng-seed") || l.starts_with("kaslr-seed"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let without = dump("without.dtb", &[]);
        let with = dump("with.dtb", &disk.qemu_args("d0"));
        assert!(without.contains("virtio_mmio@a003e00"));
        assert_eq!(without, with);
        for name in ["dtb.img", "without.dtb", "with.dtb"] {
            let _ = std::fs::remove_file(scratch(name));
        }
    }
}
