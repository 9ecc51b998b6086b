//! The QEMU command lines domforge boots with, as data: the `qemu` boot target of a bundle and the
//! DTB dump that tells domforge what a QEMU board has. Below both the bundle and the test harness, so
//! the product never depends on `qemu-tests`.
//!
//! One function builds the machine arguments of a board ([`machine_args`]); both the DTB dump that
//! tells domforge what hardware the board has (`-machine ...,dumpdtb=`) and the boot itself use it, so
//! the device tree Xen is given always describes the machine QEMU really emulates.
//!
//! [`arm_direct`] boots Xen with no firmware, the way Xen's own CI does for arm64 (QEMU
//! `hw/arm/boot.c`): `-kernel xen` (QEMU enters the arm64 Image at EL2 with `x0` = DTB address), `-dtb`
//! the generated host device tree, and one `-device loader,file=F,addr=A,force-raw=on` per boot module
//! (QEMU `hw/core/generic-loader.c`: `force-raw` copies the file byte for byte at `addr`, instead of
//! interpreting ELF/uImage headers), at the addresses the host DTB's module `reg`s name.

use std::path::{Path, PathBuf};
use std::process::Command;

use firmware_config::board::QemuMachine;

pub mod x86;

/// A program and its arguments: what to spawn, and what to print for a person to run by hand.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QemuInvocation {
    pub program: String,
    pub args: Vec<String>,
}

impl QemuInvocation {
    /// A [`Command`] ready to spawn (stdio is left to the caller).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }

    /// The command line as one shell-quoted line (for logs and for people to paste).
    pub fn shell_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A POSIX `sh` script that runs this invocation from the script's own directory (so relative
    /// paths in the arguments resolve there, wherever the script is called from) and passes its own
    /// arguments on to QEMU (e.g. `-s -S` for gdb). The text depends only on the invocation: no dates,
    /// no host names, so rebuilding gives the same bytes.
    pub fn shell_script(&self, comment: &str) -> String {
        let mut s = String::from("#!/bin/sh\n");
        for line in comment.lines() {
            s.push_str("# ");
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("set -e\ncd \"$(dirname \"$0\")\"\nexec ");
        s.push_str(&shell_quote(&self.program));
        // One option per line: a `-flag` starts a line, its values follow on the same line.
        for a in &self.args {
            if a.starts_with('-') {
                s.push_str(" \\\n    ");
            } else {
                s.push(' ');
            }
            s.push_str(&shell_quote(a));
        }
        s.push_str(" \\\n    \"$@\"\n");
        s
    }
}

/// Quotes `s` for POSIX `sh`: left bare when it holds only characters the shell never interprets,
/// otherwise in single quotes (a single quote inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ',' | '=' | ':' | '+' | '@' | '%')
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Escapes a value for QEMU's `key=value,key=value` option syntax (QEMU `util/qemu-option.c`
/// `get_opt_value`: a literal comma is written as two commas).
pub fn qemu_opt_value(s: &str) -> String {
    s.replace(',', ",,")
}

/// The arguments that select a board's machine: `-machine`, `-cpu`, `-m`, `-smp` and the board's
/// extra options, in that order.
pub fn machine_args(q: &QemuMachine) -> Vec<String> {
    let mut args = vec![
        "-machine".to_string(),
        q.machine.clone(),
        "-cpu".to_string(),
        q.cpu.clone(),
        "-m".to_string(),
        q.memory.clone(),
        "-smp".to_string(),
        q.smp.to_string(),
    ];
    args.extend(q.extra.iter().cloned());
    args
}

/// One boot module for QEMU's generic loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderModule {
    pub path: PathBuf,
    pub addr: u64,
}

/// `qemu-system-aarch64 <machine> -nographic -no-reboot -kernel <xen> -dtb <host.dtb>
/// -device loader,file=F,addr=0x..,force-raw=on ...`: boots Xen without firmware.
///
/// `-no-reboot` turns a guest-requested reset (Xen's panic → reboot) into QEMU exiting, so a failed
/// boot ends the run instead of looping. Paths are used as given (relative paths resolve against the
/// spawning process's working directory).
pub fn arm_direct(
    machine: &QemuMachine,
    xen: &Path,
    host_dtb: &Path,
    modules: &[LoaderModule],
) -> QemuInvocation {
    let mut args = machine_args(machine);
    args.extend(["-nographic".to_string(), "-no-reboot".to_string()]);
    args.extend([
        "-kernel".to_string(),
        xen.display().to_string(),
        "-dtb".to_string(),
        host_dtb.display().to_string(),
    ]);
    for m in modules {
        args.push("-device".to_string());
        args.push(format!(
            "loader,file={},addr={:#x},force-raw=on",
            qemu_opt_value(&m.path.display().to_string()),
            m.addr
        ));
    }
    QemuInvocation {
        program: machine.binary.clone(),
        args,
    }
}

/// `-bios <firmware>`: the firmware QEMU starts instead of a kernel.
pub fn bios(firmware: &Path) -> [String; 2] {
    ["-bios".to_string(), firmware.display().to_string()]
}

/// `disk` as the drive `boot` on a `device` (`virtio-blk-device` on `virt`, `virtio-blk-pci` on a
/// PC), the disk a firmware boots from. `format=raw` so QEMU does not probe it (and refuse writes
/// to sector 0); the path is escaped for QEMU's option syntax.
pub fn boot_disk(disk: &Path, device: &str) -> [String; 4] {
    [
        "-drive".to_string(),
        format!(
            "if=none,id=boot,format=raw,file={}",
            qemu_opt_value(&disk.display().to_string())
        ),
        "-device".to_string(),
        format!("{device},drive=boot"),
    ]
}

/// Debian's U-Boot for QEMU's arm64 `virt` machine (package [`UBOOT_QEMU_PACKAGE`]).
pub const UBOOT_QEMU_ARM64: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// The Debian package that ships [`UBOOT_QEMU_ARM64`].
pub const UBOOT_QEMU_PACKAGE: &str = "u-boot-qemu";

/// `qemu-system-aarch64 <machine> -nographic -no-reboot -bios <u-boot.bin> -drive
/// if=none,id=boot,format=raw,file=<disk> -device virtio-blk-device,drive=boot`: boots through real
/// firmware. QEMU starts U-Boot at EL2 (`virtualization=on`) with its own DTB at the base of RAM;
/// U-Boot's distro boot (`boot_targets`: qfw usb scsi virtio nvme dhcp) reaches the virtio disk and
/// runs `/boot.scr` from its first bootable partition, which loads Xen, the host DTB and every
/// module and `booti`s Xen.
///
/// The disk is `format=raw` so QEMU does not probe it (and refuse writes to sector 0); paths are
/// escaped for QEMU's option syntax.
pub fn arm_uboot(machine: &QemuMachine, firmware: &Path, disk: &Path) -> QemuInvocation {
    let mut args = machine_args(machine);
    args.extend(["-nographic".to_string(), "-no-reboot".to_string()]);
    args.extend(bios(firmware));
    args.extend(boot_disk(disk, "virtio-blk-device"));
    QemuInvocation {
        program: machine.binary.clone(),
        args,
    }
}

/// Debian's EDK2 (AAVMF) for QEMU's arm64 `virt` machine (package [`EDK2_QEMU_ARM64_PACKAGE`]).
pub const EDK2_QEMU_ARM64: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";
/// The Debian package that ships [`EDK2_QEMU_ARM64`].
pub const EDK2_QEMU_ARM64_PACKAGE: &str = "qemu-efi-aarch64";

/// `qemu-system-aarch64 <machine> -nographic -no-reboot -bios <QEMU_EFI.fd> -nic none -drive
/// if=none,id=boot,format=raw,file=<disk> -device virtio-blk-device,drive=boot`: boots through
/// UEFI. EDK2 (ArmVirtQemu) finds no boot entry, so its default boot order tries the removable
/// media path `EFI/BOOT/BOOTAA64.EFI` on the virtio disk's ESP (UEFI 2.10 §3.5.1.1), which is
/// Xen's EFI loader. `-nic none`: without it `virt` gets a virtio-net card, and EDK2 tries PXE and
/// HTTP boot on it (tens of seconds) before or instead of the disk (../shared/notes/qemu-recipes.md).
///
/// `-machine acpi=off`: with firmware loaded and ACPI on (the default), `virt` builds an ACPI GED
/// *instead of* the PL061 GPIO at 0x9030000 (`machvirt_init()` in QEMU hw/arm/virt.c: `if (has_ged
/// && aarch64 && firmware_loaded && virt_is_acpi_enabled(vms)) create_acpi_ged(...) else
/// create_gpio_devices(...)`), so the machine would no longer be the one the board's `dumpdtb`
/// describes: dom0, given the PL061 by the host DTB, took an external abort probing it. EDK2 boots
/// from the device tree alone. (Xen on ARM boots from the DTB anyway.)
pub fn arm_uefi(machine: &QemuMachine, firmware: &Path, disk: &Path) -> QemuInvocation {
    let mut args = machine_args(machine);
    args.extend(["-machine".to_string(), "acpi=off".to_string()]);
    args.extend(["-nographic".to_string(), "-no-reboot".to_string()]);
    args.extend(bios(firmware));
    args.extend(["-nic".to_string(), "none".to_string()]);
    args.extend(boot_disk(disk, "virtio-blk-device"));
    QemuInvocation {
        program: machine.binary.clone(),
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virt() -> QemuMachine {
        QemuMachine {
            binary: "qemu-system-aarch64".into(),
            machine: "virt,virtualization=on,gic-version=3".into(),
            cpu: "cortex-a57".into(),
            memory: "2G".into(),
            smp: 2,
            extra: vec![],
            package: "qemu-system-arm".into(),
        }
    }

    #[test]
    fn direct_boot_line_has_the_loader_devices_in_order() {
        let q = arm_direct(
            &virt(),
            Path::new("modules/xen"),
            Path::new("host.dtb"),
            &[
                LoaderModule {
                    path: "modules/kernel-0".into(),
                    addr: 0x4820_0000,
                },
                LoaderModule {
                    path: "a,b".into(),
                    addr: 0x4a20_0000,
                },
            ],
        );
        assert_eq!(q.program, "qemu-system-aarch64");
        let line = q.args.join(" ");
        assert!(line.starts_with(
            "-machine virt,virtualization=on,gic-version=3 -cpu cortex-a57 -m 2G -smp 2 -nographic -no-reboot -kernel modules/xen -dtb host.dtb"
        ));
        assert!(line.ends_with(
            "-device loader,file=modules/kernel-0,addr=0x48200000,force-raw=on -device loader,file=a,,b,addr=0x4a200000,force-raw=on"
        ));
    }

    #[test]
    fn u_boot_line_boots_the_firmware_with_the_disk() {
        let q = arm_uboot(
            &virt(),
            Path::new(UBOOT_QEMU_ARM64),
            Path::new("out dir/boot,1.img"),
        );
        assert_eq!(
            q.args[8..].join(" "),
            "-nographic -no-reboot -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -drive if=none,id=boot,format=raw,file=out dir/boot,,1.img -device virtio-blk-device,drive=boot"
        );
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        let nasty = [
            "plain",
            "with space",
            "it's",
            "$HOME",
            "a\"b",
            "",
            "x;rm -rf /",
        ];
        let inv = QemuInvocation {
            program: "printf".into(),
            args: std::iter::once("%s\\n".to_string())
                .chain(nasty.iter().map(|s| s.to_string()))
                .collect(),
        };
        let out = Command::new("sh").arg("-c").arg(inv.shell_line()).output();
        let Ok(out) = out else {
            panic!("sh is needed for this test");
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(&lines[..nasty.len()], &nasty[..]);
    }
}
