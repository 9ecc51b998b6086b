//! The `grub` boot target (x86_64): `grub.img`, a GPT disk with one EFI system partition from
//! which UEFI firmware starts Debian's GRUB at the removable-media path; GRUB reads domforge's
//! `grub.cfg` and boots Xen by multiboot2 with dom0's kernel and initramfs as `module2`s — the
//! way most x86 Xen hosts boot.
//!
//! | ESP file | What |
//! |---|---|
//! | `EFI/BOOT/BOOTX64.EFI` | Debian's prebuilt GRUB, `usr/lib/grub/x86_64-efi/monolithic/grubx64.efi` of `grub-efi-amd64-bin` (the image Debian signs; built by the package's debian/build-efi-images with `-p /EFI/debian`) |
//! | `EFI/debian/grub.cfg` | [`config`]: the menu entry; that image's embedded early config sources `$prefix/grub.cfg` |
//! | `EFI/debian/x86_64-efi/*.mod` | `multiboot2.mod` and its dependency closure from the package's `moddep.lst` ([`module_closure`]): the image has 125 modules built in, not multiboot2, and GRUB `insmod`s from `$prefix/x86_64-efi` |
//! | `boot/xen`, `boot/dom0-kernel`, `boot/dom0-initramfs.cpio` | the bundle's `modules/` files, byte for byte (GRUB's multiboot2 loads Xen's ELF as QEMU's multiboot loader does) |
//!
//! Why Debian's binary and not `grub-mkstandalone`: building a GRUB image needs GRUB's tools on
//! the build host and makes the bundle depend on their version; the packaged image is the one
//! Debian ships (and signs) for every x86 install, it is data domforge copies like Xen, and it
//! boots unchanged on any UEFI PC. BIOS boot (`grub-pc-bin`) needs a core image embedded after the
//! MBR, which only `grub-mkimage`/`grub-install` make; domforge does not offer it.

use firmware_config::board::{Arch, BootTarget};
use firmware_config::plan::{ModuleKind, SystemPlan};

use crate::finalize::Inputs;
use crate::image::Source;
use crate::{Blame, Bundle, FinalizeError, Role};

/// The image's path in the bundle.
pub const IMAGE_PATH: &str = "grub.img";
/// The config's path in the bundle (for review) — the same bytes as on the ESP.
pub const CONFIG_PATH: &str = "grub.cfg";
/// GRUB's prefix as Debian's image embeds it (`-p /EFI/debian`).
pub const PREFIX: &str = "EFI/debian";
/// The package and the files taken from it.
pub const PACKAGE: &str = "grub-efi-amd64-bin";
pub const MODULE_DIR: &str = "usr/lib/grub/x86_64-efi";
pub const IMAGE_IN_PACKAGE: &str = "usr/lib/grub/x86_64-efi/monolithic/grubx64.efi";
/// The module GRUB needs beyond those built into the image.
pub const NEEDED_MODULE: &str = "multiboot2";
/// Where the loader goes on the ESP.
pub const LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
/// The boot files on the ESP, from GRUB's root (the ESP).
pub const XEN: &str = "boot/xen";
pub const DOM0_KERNEL: &str = "boot/dom0-kernel";
pub const DOM0_INITRAMFS: &str = "boot/dom0-initramfs.cpio";

/// The `.mod` files `module` needs, itself first, by `moddep.lst` (`name: dep dep ...` per line,
/// written by grub-mkimage's build as genmoddep.awk): the closure, each once.
pub fn module_closure(moddep: &str, module: &str) -> Result<Vec<String>, String> {
    let deps: std::collections::BTreeMap<&str, Vec<&str>> = moddep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut todo = vec![module];
    while let Some(m) = todo.pop() {
        if out.iter().any(|o| o == m) {
            continue;
        }
        let d = deps
            .get(m)
            .ok_or_else(|| format!("moddep.lst has no module `{m}`"))?;
        out.push(m.to_string());
        todo.extend(d.iter().rev());
    }
    Ok(out)
}

/// One word of a GRUB command line, quoted when GRUB's lexer would change it (variables `$`,
/// quotes, `\`, `;`, `|`, `&`, `<`, `>`, `{`, `}`, `#`, whitespace — GRUB manual "Shell-like
/// scripting"): in single quotes, which keep everything literally; a `'` is written `'\''`.
pub fn grub_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,=:/+@%^~!".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn grub_words(line: &str) -> String {
    line.split_whitespace()
        .map(grub_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The config: serial console, no menu wait, `insmod multiboot2`, one entry booting Xen with the
/// plan's Xen command line and dom0's kernel (its command line after the path: Xen takes a
/// GRUB 2 module string as dom0's command line without skipping a first word,
/// `cmdline_cook()`/`loader_is_grub2()` in xen/arch/x86/setup.c) and initramfs.
pub fn config(plan: &SystemPlan) -> String {
    let dom0 = plan.dom0.as_ref().map_or("", |d| d.cmdline.as_str());
    let with_args = |path: &str, args: &str| {
        let args = grub_words(args);
        if args.is_empty() {
            format!("/{path}")
        } else {
            format!("/{path} {args}")
        }
    };
    format!(
        "# GRUB config for `{}` (Xen {}, board {}), generated by `domforge build`.\n\
         set timeout=0\n\
         set default=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         insmod {NEEDED_MODULE}\n\
         menuentry {} {{\n\
         \x20   multiboot2 {}\n\
         \x20   module2 {}\n\
         \x20   module2 /{DOM0_INITRAMFS}\n\
         }}\n",
        plan.name,
        plan.xen,
        plan.board,
        grub_word(&format!("{} (Xen {})", plan.name, plan.xen)),
        with_args(XEN, &plan.xen_cmdline),
        with_args(DOM0_KERNEL, dom0),
    )
}

fn options() -> disk_image::ImageOptions {
    disk_image::ImageOptions {
        label: "GRUB".into(),
        max_size: disk_image::DEFAULT_MAX_IMAGE,
        table: disk_image::PartitionTable::Gpt,
    }
}

/// Whether an x86 bundle for this board gets the grub target.
fn wanted(inputs: &Inputs<'_>) -> bool {
    inputs.check.board.wants(Arch::X86_64, BootTarget::Grub)
}

/// What the grub target refuses at finalize: no GRUB files from the pipeline (E0416), an ESP over
/// its size (E0412). `initramfs_len`: dom0's generated initramfs.
pub(crate) fn check(
    inputs: &Inputs<'_>,
    plan: &SystemPlan,
    initramfs_len: u64,
) -> Vec<FinalizeError> {
    if !wanted(inputs) {
        return Vec::new();
    }
    if !inputs.grub.iter().any(|(p, _)| p == LOADER) {
        return vec![
            FinalizeError::new(
                "E0416",
                Blame::Board,
                format!("the grub target needs Debian's GRUB ({IMAGE_IN_PACKAGE} of {PACKAGE}), which was not fetched"),
            )
            .help("run the command again with the network reachable, or remove \"grub\" from the board's `targets`"),
        ];
    }
    let mut esp: Vec<(String, u64)> = inputs
        .grub
        .iter()
        .map(|(p, b)| (p.clone(), b.len() as u64))
        .collect();
    esp.push((format!("{PREFIX}/grub.cfg"), 4096));
    esp.push((XEN.into(), inputs.module_size(plan, ModuleKind::Xen)));
    esp.push((
        DOM0_KERNEL.into(),
        inputs.module_size(plan, ModuleKind::Dom0Kernel),
    ));
    esp.push((DOM0_INITRAMFS.into(), initramfs_len));
    let refs: Vec<(&str, u64)> = esp.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    match disk_image::check(&refs, &options()) {
        Ok(_) => Vec::new(),
        Err(e) => vec![
            FinalizeError::new("E0412", Blame::System, format!("the GRUB disk image: {e}"))
                .help("use a smaller dom0 kernel, or smaller guest images in dom0's initramfs"),
        ],
    }
}

/// Adds `grub.img` and `grub.cfg` when the board lists `grub`; returns whether it did. `xen`,
/// `dom0_kernel`, `dom0_initramfs`: the bundle paths of the files GRUB boots.
pub(crate) fn add(
    bundle: &mut Bundle,
    inputs: &Inputs<'_>,
    [xen, dom0_kernel, dom0_initramfs]: [&str; 3],
) -> Result<bool, String> {
    if !wanted(inputs) {
        return Ok(false);
    }
    let cfg = config(&bundle.plan);
    let cfg_path = format!("{PREFIX}/grub.cfg");
    let mut esp: Vec<(String, Source<'_>)> = inputs
        .grub
        .iter()
        .map(|(p, b)| (p.clone(), Source::Bytes(b)))
        .collect();
    esp.push((cfg_path, Source::Bytes(cfg.as_bytes())));
    for (on_esp, path) in [
        (XEN, xen),
        (DOM0_KERNEL, dom0_kernel),
        (DOM0_INITRAMFS, dom0_initramfs),
    ] {
        esp.push((on_esp.into(), Source::Bundle(path.into())));
    }
    crate::image::add(bundle, IMAGE_PATH, &esp, &options())
        .map_err(|e| format!("the GRUB image: {e}"))?;
    bundle.add(CONFIG_PATH, Role::Target, cfg.into_bytes());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_follows_moddep_lst() {
        // The shape of Debian 12's x86_64-efi/moddep.lst (grub 2.06).
        let moddep = "multiboot2: relocator boot net acpi linux video mmap\n\
                      relocator: mmap\nboot:\nnet: priority_queue datetime bufio\n\
                      acpi: extcmd mmap\nlinux: relocator mmap boot video\nvideo:\n\
                      mmap:\npriority_queue:\ndatetime:\nbufio:\nextcmd:\nfat: fshelp\n";
        let c = module_closure(moddep, "multiboot2").unwrap();
        assert_eq!(c[0], "multiboot2");
        let mut sorted = c.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), c.len(), "each once: {c:?}");
        assert_eq!(c.len(), 12, "{c:?}");
        assert!(!c.contains(&"fat".to_string()));
        assert!(module_closure(moddep, "nope").is_err());
    }

    #[test]
    fn words_grubs_lexer_would_change_are_quoted() {
        assert_eq!(grub_word("com1=115200,8n1"), "com1=115200,8n1");
        assert_eq!(grub_word("a$b"), "'a$b'");
        assert_eq!(grub_word("x;y"), "'x;y'");
        assert_eq!(grub_word("it's"), r"'it'\''s'");
        assert_eq!(grub_word("{"), "'{'");
    }
}
