//! The x86 control domain's initramfs: `domforge-init` as `/init`, the boot blob, the guests' kernels
//! and ramdisks, and the Xen drivers Debian builds as modules. No busybox, no shell, no libc: the
//! only executable is the static `domforge-init`.
//!
//! Layout (the paths `domforge-init` and `firmware_config::plan::initramfs_module_path` agree on):
//!
//! | path | what |
//! |---|---|
//! | `/init` | the static x86_64 `domforge-init` (the kernel runs `/init` of an initramfs) |
//! | `/domforge/boot.blob` | the compiled manifest (`firmware_config::blob`) |
//! | `/domforge/modules/<id>` | a guest kernel or ramdisk, by plan module id |
//! | `/lib/modules/<release>/…` + `/etc/domforge/modules` | `.ko` files in load order ([`crate::kmod`]) |
//! | `/dev/console` | c 5,1, so the kernel can open init's stdio before devtmpfs is mounted |
//! | `/proc`, `/sys`, `/dev`, `/tmp` | mount points |

use crate::cpio::{CpioError, Initramfs};
use crate::kmod::{KmodError, ModuleSet};
use schema::arch::Arch;
use std::path::Path;

/// The Xen drivers a PV dom0 running domforge-init loads (Debian's amd64 6.1 builds them as modules):
/// event channels (`/dev/xen/evtchn`, console events and `VIRQ_DOM_EXC`), privcmd (`/dev/xen/privcmd`
/// and `/dev/xen/hypercall`: domctls, foreign mappings), the grant devices and xenfs, in the order
/// qemu-recipes.md found `xl` needs them.
pub const DOM0_XEN_MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-privcmd",
    "xen-gntdev",
    "xen-gntalloc",
    "xenfs",
];

/// The backends a dom0 serving PV devices loads (issue 19), after [`DOM0_XEN_MODULES`]: `loop`
/// (file-backed disks), `bridge` (vifs; it pulls in `stp` and `llc`), blkback and netback —
/// the set pv-devices.md found `xl` needed in dom0, without the hotplug scripts' tools.
pub const DOM0_BACKEND_MODULES: &[&str] = &["loop", "bridge", "xen-blkback", "xen-netback"];

/// Where the boot blob goes (`schema::layout`, which domforge-init reads too).
pub const BOOT_BLOB_PATH: &str = schema::layout::BOOT_BLOB;
/// Directory of the guests' kernels and ramdisks.
pub const MODULES_DIR: &str = schema::layout::MODULES_DIR;

/// Why the initramfs could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum Dom0Error {
    #[error("the init binary is not usable as /init: {0}")]
    BadInit(&'static str),
    #[error("the boot blob does not start with the domforge magic \"DFBC\"")]
    BadBlob,
    #[error("module id {0:?} is not a plain file name ([A-Za-z0-9_.-], 1-64 characters)")]
    BadModuleId(String),
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error(transparent)]
    Kmod(#[from] KmodError),
}

/// ELF facts checked on the init binary (System V gABI; x86-64 psABI, AArch64 ELF ABI): a static
/// 64-bit little-endian executable for the control domain's architecture.
fn check_static_elf(bytes: &[u8], arch: Arch) -> Result<(), Dom0Error> {
    let get = |r: std::ops::Range<usize>| bytes.get(r).ok_or(Dom0Error::BadInit("truncated ELF"));
    if get(0..4)? != b"\x7fELF" {
        return Err(Dom0Error::BadInit("not an ELF file"));
    }
    // EI_CLASS 2 = ELFCLASS64, EI_DATA 1 = little-endian.
    if get(4..6)? != [2, 1] {
        return Err(Dom0Error::BadInit("not a 64-bit little-endian ELF"));
    }
    let u16_at = |at: usize| -> Result<u16, Dom0Error> {
        let b = get(at..at + 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32, Dom0Error> {
        let b = get(at..at + 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| -> Result<u64, Dom0Error> {
        let b = get(at..at + 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    // e_type 2 ET_EXEC or 3 ET_DYN (static-pie); e_machine 62 EM_X86_64, 183 EM_AARCH64.
    if !matches!(u16_at(16)?, 2 | 3) {
        return Err(Dom0Error::BadInit("not an executable"));
    }
    let (machine, wrong) = match arch {
        Arch::X86_64 => (62, "not an x86-64 executable"),
        Arch::Arm64 => (183, "not an AArch64 executable"),
    };
    if u16_at(18)? != machine {
        return Err(Dom0Error::BadInit(wrong));
    }
    let phoff = usize::try_from(u64_at(32)?).map_err(|_| Dom0Error::BadInit("bad e_phoff"))?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(Dom0Error::BadInit("bad program headers"))?;
        // PT_INTERP 3: a dynamic loader is needed, and the initramfs has none.
        if u32_at(at)? == 3 {
            return Err(Dom0Error::BadInit(
                "dynamically linked (has PT_INTERP); build it for the *-unknown-linux-musl target",
            ));
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), Dom0Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Dom0Error::BadModuleId(id.to_string()))
    }
}

/// The dom0 initramfs under construction.
#[derive(Debug, Clone)]
pub struct Dom0Initramfs {
    initramfs: Initramfs,
}

impl Dom0Initramfs {
    /// `/init` = `init` (a static x86-64 executable) and `/domforge/boot.blob` = `blob`.
    pub fn new(init: &[u8], blob: &[u8]) -> Result<Self, Dom0Error> {
        Self::new_for(Arch::X86_64, init, blob)
    }

    /// As [`new`](Self::new) for a control domain of architecture `arch`.
    pub fn new_for(arch: Arch, init: &[u8], blob: &[u8]) -> Result<Self, Dom0Error> {
        check_static_elf(init, arch)?;
        if !blob.starts_with(b"DFBC") {
            return Err(Dom0Error::BadBlob);
        }
        let mut initramfs = Initramfs::new();
        for dir in ["proc", "sys", "dev", "tmp", "etc", MODULES_DIR] {
            initramfs.add_directory(dir, 0o755)?;
        }
        initramfs.add_directory("tmp", 0o1777)?;
        // `/dev/console` (c 5,1) is always part of an `Initramfs`.
        initramfs.add_file("init", 0o755, init.to_vec())?;
        initramfs.add_file(BOOT_BLOB_PATH, 0o644, blob.to_vec())?;
        Ok(Self { initramfs })
    }

    /// Adds a guest kernel or ramdisk as `/domforge/modules/<id>`.
    pub fn add_module(&mut self, id: &str, bytes: Vec<u8>) -> Result<(), Dom0Error> {
        check_id(id)?;
        self.initramfs
            .add_file(&format!("{MODULES_DIR}/{id}"), 0o644, bytes)?;
        Ok(())
    }

    /// [`add_module`](Self::add_module) from a file.
    pub fn add_module_file(&mut self, id: &str, path: &Path) -> Result<(), Dom0Error> {
        let bytes = std::fs::read(path).map_err(|source| Dom0Error::Read {
            path: path.to_owned(),
            source,
        })?;
        self.add_module(id, bytes)
    }

    /// Adds the `.ko` files of `modules` and their load order.
    pub fn add_kernel_modules(&mut self, modules: &ModuleSet) -> Result<(), Dom0Error> {
        modules.add_to(&mut self.initramfs)?;
        Ok(())
    }

    /// Resolves [`DOM0_XEN_MODULES`] (with dependencies) in a Debian kernel's `lib/modules/<release>`
    /// and adds them; returns what was resolved (built-in ones are listed there, not added).
    pub fn add_xen_drivers(&mut self, modules_dir: &Path) -> Result<ModuleSet, Dom0Error> {
        let set = crate::kmod::resolve_modules(modules_dir, DOM0_XEN_MODULES)?;
        self.add_kernel_modules(&set)?;
        Ok(set)
    }

    /// [`add_xen_drivers`](Self::add_xen_drivers) plus [`DOM0_BACKEND_MODULES`], in one load order.
    pub fn add_xen_drivers_and_backends(
        &mut self,
        modules_dir: &Path,
    ) -> Result<ModuleSet, Dom0Error> {
        let names: Vec<&str> = DOM0_XEN_MODULES
            .iter()
            .chain(DOM0_BACKEND_MODULES)
            .copied()
            .collect();
        let set = crate::kmod::resolve_modules(modules_dir, &names)?;
        self.add_kernel_modules(&set)?;
        Ok(set)
    }

    /// The directories xenstored writes to and `/var/run -> /run` (Debian's xenstored uses
    /// `/var/run/xenstored`).
    pub fn add_xenstored_dirs(&mut self) -> Result<(), Dom0Error> {
        for dir in ["run", "var", "var/lib"]
            .into_iter()
            .chain(schema::layout::XENSTORED_DIRS.iter().copied())
        {
            self.initramfs.add_directory(dir, 0o755)?;
        }
        self.initramfs.add_symlink("var/run", "../run")?;
        Ok(())
    }

    /// A file at `path` (a disk image shipped into dom0 at its target, issue 19).
    pub fn add_file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) -> Result<(), Dom0Error> {
        self.initramfs
            .add_file(path.trim_start_matches('/'), mode, bytes)?;
        Ok(())
    }

    /// The underlying archive, for adders that write into it directly (a library closure).
    pub fn initramfs_mut(&mut self) -> &mut Initramfs {
        &mut self.initramfs
    }

    pub fn initramfs(&self) -> &Initramfs {
        &self.initramfs
    }

    /// The newc archive. Kept uncompressed by default: the guest kernels inside are already
    /// compressed, and gunzip of a large archive under emulation costs seconds of boot.
    pub fn to_cpio(&self) -> Result<Vec<u8>, Dom0Error> {
        Ok(self.initramfs.to_cpio()?)
    }

    pub fn to_cpio_gz(&self) -> Result<Vec<u8>, Dom0Error> {
        Ok(self.initramfs.to_cpio_gz()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::EntryKind;

    /// A 64-byte ELF header + `n` program headers of type `types[i]` (offsets per the gABI).
    fn elf(machine: u16, types: &[u32]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56 * types.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&3u16.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            f[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        f
    }

    #[test]
    fn layout_has_init_blob_modules_and_console() {
        let mut d = Dom0Initramfs::new(&elf(62, &[1, 1]), b"DFBC\x01\x00").unwrap();
        d.add_module("kernel-0", b"bzImage".to_vec()).unwrap();
        let i = d.initramfs();
        assert!(matches!(i.get("init"), Some(EntryKind::File(_))));
        assert!(i.get("domforge/boot.blob").is_some());
        assert!(i.get("domforge/modules/kernel-0").is_some());
        assert!(matches!(
            i.get("dev/console"),
            Some(EntryKind::CharDevice { major: 5, minor: 1 })
        ));
    }

    #[test]
    fn dynamic_foreign_or_broken_init_binaries_are_refused() {
        assert!(matches!(
            Dom0Initramfs::new(&elf(62, &[6, 3, 1]), b"DFBC"),
            Err(Dom0Error::BadInit(m)) if m.contains("PT_INTERP")
        ));
        assert!(Dom0Initramfs::new(&elf(183, &[1]), b"DFBC").is_err()); // EM_AARCH64
        // An ARM control domain takes the AArch64 build and refuses the x86-64 one.
        assert!(Dom0Initramfs::new_for(Arch::Arm64, &elf(183, &[1]), b"DFBC").is_ok());
        assert!(matches!(
            Dom0Initramfs::new_for(Arch::Arm64, &elf(62, &[1]), b"DFBC"),
            Err(Dom0Error::BadInit(m)) if m.contains("AArch64")
        ));
        assert!(Dom0Initramfs::new(b"#!/bin/sh\n", b"DFBC").is_err());
        let mut truncated = elf(62, &[1, 1]);
        truncated.truncate(100);
        assert!(Dom0Initramfs::new(&truncated, b"DFBC").is_err());
        assert!(matches!(
            Dom0Initramfs::new(&elf(62, &[1]), b"{json}"),
            Err(Dom0Error::BadBlob)
        ));
    }

    #[test]
    fn module_ids_cannot_escape_the_directory() {
        let mut d = Dom0Initramfs::new(&elf(62, &[1]), b"DFBC").unwrap();
        for bad in ["../init", "a/b", "", "..", "x y"] {
            assert!(d.add_module(bad, vec![1]).is_err(), "{bad:?}");
        }
    }
}

/// A driver domain's initramfs (issue 19): `/init` = the static `domforge-init`, the marker
/// [`schema::layout::SERVE_MARKER`] that makes it serve the domain's PV backends, the backend
/// modules ([`DOM0_BACKEND_MODULES`]) in load order, and the disk images it serves at their
/// targets. Like dom0's, no shell and no libc.
#[derive(Debug, Clone)]
pub struct DriverInitramfs {
    initramfs: Initramfs,
}

impl DriverInitramfs {
    /// The skeleton around `init`, a static executable for `arch`.
    pub fn new_for(arch: Arch, init: &[u8]) -> Result<Self, Dom0Error> {
        check_static_elf(init, arch)?;
        let mut initramfs = Initramfs::new();
        for dir in ["proc", "sys", "dev", "tmp", "etc", "run"] {
            initramfs.add_directory(dir, 0o755)?;
        }
        initramfs.add_directory("tmp", 0o1777)?;
        initramfs.add_file("init", 0o755, init.to_vec())?;
        initramfs.add_file(
            schema::layout::SERVE_MARKER,
            0o644,
            b"# domforge-init serves this domain's PV backends (generated by domforge)\n".to_vec(),
        )?;
        Ok(Self { initramfs })
    }

    /// Resolves and adds [`DOM0_BACKEND_MODULES`] from a Debian kernel's `lib/modules/<release>`.
    pub fn add_backends(&mut self, modules_dir: &Path) -> Result<ModuleSet, Dom0Error> {
        let set = crate::kmod::resolve_modules(modules_dir, DOM0_BACKEND_MODULES)?;
        set.add_to(&mut self.initramfs)?;
        Ok(set)
    }

    /// A file at `path` (a disk image the domain serves).
    pub fn add_file(&mut self, path: &str, mode: u32, bytes: Vec<u8>) -> Result<(), Dom0Error> {
        self.initramfs
            .add_file(path.trim_start_matches('/'), mode, bytes)?;
        Ok(())
    }

    pub fn initramfs(&self) -> &Initramfs {
        &self.initramfs
    }
}
