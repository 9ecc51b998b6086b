//! Boot targets: back ends over one [`crate::Bundle`], each adding the files its loader reads.
//!
//! - [`qemu`]: `run-qemu.sh`, QEMU loading everything itself (no firmware).
//! - [`uboot`]: `boot.source` and `boot.scr`, U-Boot loading every file at its planned address.
//! - [`disk`]: `boot.img`, a flashable disk image holding `boot.scr` and everything it loads.
//! - [`uefi`]: `uefi.img`, a GPT disk whose EFI system partition holds Xen's EFI loader, its config
//!   and every module it loads ([`uefi_x86`] on x86_64: `xen.efi` and dom0's files).
//! - [`grub`]: `grub.img`, a GPT disk whose ESP holds Debian's GRUB, its `grub.cfg` and what it
//!   boots by multiboot2 (x86_64).
pub mod disk;
pub mod grub;
pub mod qemu;
pub mod rpi;
pub mod uboot;
pub mod uefi;
pub mod uefi_x86;
