//! The x86_64 boot: Xen through QEMU's multiboot loader, dom0's kernel and initramfs as modules.
//!
//! `qemu-system-x86_64 <machine> -nographic -no-reboot -kernel xen -append "<xen cmdline>"
//! -initrd "<dom0 kernel> <dom0 cmdline>,<dom0 initramfs>"` (QEMU `hw/i386/multiboot.c`): `-kernel`
//! takes Xen's ELF (QEMU's multiboot loader cannot read the gzip'd `xen.gz`), each comma-separated
//! `-initrd` entry is one multiboot module whose string is `<path> <args>`; Xen hands module 0 to dom0
//! as its kernel, takes the rest of that string as dom0's command line, and module 1 as its initrd.
//!
//! QEMU splits `-initrd` at every comma (`multiboot.c`: "initrd_filename = next_initrd … strchr(',')"),
//! with no escape, so neither the paths nor dom0's command line may contain one. Xen's own options
//! (`com1=115200,8n1`) are in `-append`, where commas are fine.

use crate::{QemuInvocation, machine_args};
use firmware_config::board::QemuMachine;
use std::path::Path;

/// Why the command line cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X86CommandError {
    #[error(
        "{what} `{text}` contains a comma, which QEMU's -initrd uses to separate multiboot modules \
         (no escape exists); {hint}"
    )]
    Comma {
        what: &'static str,
        text: String,
        hint: &'static str,
    },
}

fn no_comma(what: &'static str, text: &str, hint: &'static str) -> Result<(), X86CommandError> {
    if text.contains(',') {
        Err(X86CommandError::Comma {
            what,
            text: text.to_string(),
            hint,
        })
    } else {
        Ok(())
    }
}

/// Xen + a PV dom0 by multiboot (see the module docs). Paths are used as given.
pub fn x86_multiboot(
    machine: &QemuMachine,
    xen: &Path,
    xen_cmdline: &str,
    dom0_kernel: &Path,
    dom0_cmdline: &str,
    dom0_initramfs: &Path,
) -> Result<QemuInvocation, X86CommandError> {
    let kernel = dom0_kernel.display().to_string();
    let initramfs = dom0_initramfs.display().to_string();
    no_comma("the dom0 kernel path", &kernel, "use a path without commas")?;
    no_comma(
        "the dom0 initramfs path",
        &initramfs,
        "use a path without commas",
    )?;
    no_comma(
        "dom0's command line",
        dom0_cmdline,
        "write list options another way (e.g. repeat the option)",
    )?;
    let mut args = machine_args(machine);
    args.extend(["-nographic".to_string(), "-no-reboot".to_string()]);
    args.extend([
        "-kernel".to_string(),
        xen.display().to_string(),
        "-append".to_string(),
        xen_cmdline.to_string(),
        "-initrd".to_string(),
    ]);
    let module0 = if dom0_cmdline.trim().is_empty() {
        kernel
    } else {
        format!("{kernel} {}", dom0_cmdline.trim())
    };
    args.push(format!("{module0},{initramfs}"));
    Ok(QemuInvocation {
        program: machine_program(machine),
        args,
    })
}

/// Debian's OVMF as one image (code and a variable store kept in RAM), for `-bios`: nothing to
/// copy or keep writable, and a boot needs no stored variables (package [`OVMF_PACKAGE`]).
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// The Debian package that ships [`OVMF`].
pub const OVMF_PACKAGE: &str = "ovmf";

/// `qemu-system-x86_64 <machine> -nographic -no-reboot -bios OVMF.fd -nic none -drive
/// if=none,id=boot,format=raw,file=<disk> -device virtio-blk-pci,drive=boot`: OVMF finds no boot
/// entry and starts the removable-media path `EFI/BOOT/BOOTX64.EFI` of the disk's ESP (UEFI 2.10
/// §3.5.1.1). `-nic none`: the machine's default NIC would make OVMF try PXE and HTTP boot first
/// (../shared/notes/qemu-recipes.md). Xen's `com1` is the serial port `-nographic` shows.
pub fn x86_uefi(machine: &QemuMachine, firmware: &Path, disk: &Path) -> QemuInvocation {
    let mut args = machine_args(machine);
    args.extend(["-nographic".to_string(), "-no-reboot".to_string()]);
    args.extend(crate::bios(firmware));
    args.extend(["-nic".to_string(), "none".to_string()]);
    args.extend(crate::boot_disk(disk, "virtio-blk-pci"));
    QemuInvocation {
        program: machine_program(machine),
        args,
    }
}

fn machine_program(machine: &QemuMachine) -> String {
    if machine.binary.is_empty() {
        "qemu-system-x86_64".to_string()
    } else {
        machine.binary.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc() -> QemuMachine {
        QemuMachine {
            binary: "qemu-system-x86_64".into(),
            package: "qemu-system-x86".into(),
            machine: "pc".into(),
            cpu: "qemu64,+svm,+npt".into(),
            memory: "4G".into(),
            smp: 2,
            extra: vec![],
        }
    }

    #[test]
    fn the_qemu_recipe_command_line() {
        let q = x86_multiboot(
            &pc(),
            Path::new("modules/xen"),
            "console=com1 com1=115200,8n1 noreboot dom0_mem=512M",
            Path::new("modules/dom0-kernel"),
            "console=hvc0 earlyprintk=xen",
            Path::new("modules/dom0-initramfs.cpio"),
        )
        .unwrap();
        assert_eq!(q.program, "qemu-system-x86_64");
        assert_eq!(
            q.args,
            [
                "-machine",
                "pc",
                "-cpu",
                "qemu64,+svm,+npt",
                "-m",
                "4G",
                "-smp",
                "2",
                "-nographic",
                "-no-reboot",
                "-kernel",
                "modules/xen",
                "-append",
                "console=com1 com1=115200,8n1 noreboot dom0_mem=512M",
                "-initrd",
                "modules/dom0-kernel console=hvc0 earlyprintk=xen,modules/dom0-initramfs.cpio",
            ]
        );
    }

    #[test]
    fn commas_where_qemu_splits_modules_are_refused() {
        let e = x86_multiboot(
            &pc(),
            Path::new("xen"),
            "",
            Path::new("k"),
            "console=hvc0 foo=a,b",
            Path::new("i"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dom0's command line"));
        assert!(
            x86_multiboot(
                &pc(),
                Path::new("x"),
                "",
                Path::new("a,b"),
                "",
                Path::new("i")
            )
            .is_err()
        );
    }
}
