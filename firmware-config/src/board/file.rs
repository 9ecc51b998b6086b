//! Board files (`boards/*.toml`): what only a person can say about a board.
//!
//! Everything the board's device tree already says (CPUs, RAM banks, reserved memory, the interrupt
//! controller, devices and their IOMMU wiring, the console UART) is read from the DTB by the
//! `device-tree` crate into a [`HardwareInventory`]; the board file names where that DTB comes from and
//! adds the rest: architecture, boot method, Xen's console driver, where the boot loader may put Xen and
//! the boot modules, how much memory Xen keeps for itself, and how to start the board in QEMU.
//! Values the DTB cannot carry (RAM that firmware fills in at boot, as on the Raspberry Pi) may be given
//! here, and are refused when the DTB has them too, so nothing is typed twice.

use super::inventory::{
    CpuNode, HardwareInventory, InterruptController, InterruptControllerKind, Region,
};
use crate::diag::{Diagnostic, did_you_mean};
use crate::manifest::raw::Quantity;
use crate::units::{MIB, parse_size};
use serde::Deserialize;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;
use toml::Spanned;

pub use schema::arch::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMethod {
    /// QEMU loads Xen with `-kernel`, the DTB with `-dtb` and each module with `-device loader`.
    QemuDirect,
    /// U-Boot loads everything from a `boot.scr`.
    UBoot,
    /// A multiboot2 loader (GRUB, or QEMU's multiboot loader on x86).
    Multiboot2,
}

/// A way the board's firmware can boot a bundle: each is a back end of the bundle (`run-qemu*.sh`
/// and the files its loader reads). A board lists the ones its firmware can do (`[board] targets`);
/// its `boot` method names the default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BootTarget {
    /// QEMU's own loader, no firmware (`-kernel`/`-device loader` on ARM, multiboot on x86).
    QemuDirect,
    /// U-Boot runs `boot.scr` from the boot disk image (ARM).
    UBoot,
    /// UEFI firmware starts Xen's own EFI loader (`xen.efi` as the removable-media
    /// `EFI/BOOT/BOOT<arch>.EFI`), which reads its config and loads every module itself.
    Uefi,
    /// GRUB loads Xen by multiboot2 and dom0 by `module2` (x86).
    Grub,
}

impl BootTarget {
    pub const ALL: [BootTarget; 4] = [Self::QemuDirect, Self::UBoot, Self::Uefi, Self::Grub];

    /// The name used in board files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::QemuDirect => "qemu-direct",
            Self::UBoot => "u-boot",
            Self::Uefi => "uefi",
            Self::Grub => "grub",
        }
    }

    /// The architectures a target exists on: U-Boot is domforge's ARM path (x86 boards boot from
    /// UEFI or GRUB).
    pub fn exists_on(self, arch: Arch) -> bool {
        !(self == Self::UBoot && arch == Arch::X86_64)
    }
}

impl core::fmt::Display for BootTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl BootMethod {
    /// The boot target a board with this method boots by default. On x86 `multiboot2` is QEMU's
    /// multiboot loader on a board QEMU emulates, GRUB otherwise.
    pub fn default_target(self, has_qemu: bool) -> BootTarget {
        match self {
            Self::QemuDirect => BootTarget::QemuDirect,
            Self::UBoot => BootTarget::UBoot,
            Self::Multiboot2 if has_qemu => BootTarget::QemuDirect,
            Self::Multiboot2 => BootTarget::Grub,
        }
    }
}

/// Where a board's DTB comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum DtbSource {
    /// QEMU's own tree: `-machine <machine>,dumpdtb=FILE` with the board's `[qemu]` settings.
    QemuDump,
    /// A file, relative to the board file.
    File(String),
    /// A file inside a Debian package (path relative to `usr/lib/linux-image-*/`).
    Debian { package: String, path: String },
    /// No device tree (x86): the hardware is described by `[hardware]`.
    None,
}

/// How to start the board in QEMU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuMachine {
    pub binary: String,
    pub machine: String,
    pub cpu: String,
    pub memory: String,
    pub smp: u32,
    /// Extra arguments appended verbatim.
    #[serde(default)]
    pub extra: Vec<String>,
    /// The Debian package that provides `binary`, named in errors when it is missing.
    pub package: String,
}

/// A parsed board file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Board {
    pub name: String,
    pub arch: Arch,
    pub description: String,
    pub boot: BootMethod,
    /// The boot targets the board's firmware can do (`[board] targets`; default: only `boot`'s),
    /// the default target ([`BootMethod::default_target`]) first.
    pub targets: Vec<BootTarget>,
    pub dtb: DtbSource,
    /// Device-tree path of the UART Xen uses; `None` means the DTB's `stdout-path`.
    pub console_uart: Option<String>,
    /// Xen's `console=` driver: `dtuart` on ARM, `com1` on x86.
    pub xen_console: String,
    /// Extra Xen options the board always needs (e.g. `sync_console` while bringing up).
    pub xen_cmdline: String,
    /// The guest console device Linux should use for its kernel messages (`ttyAMA0`, `hvc0`, ...).
    pub linux_console: String,
    /// RAM banks when the DTB does not carry them.
    pub memory_banks: Vec<Region>,
    /// Where the board file lists them (`[memory] banks`), for errors about them.
    #[serde(skip)]
    pub memory_banks_span: Option<core::ops::Range<usize>>,
    /// The board file's `[dtb]` table, for errors about what the DTB holds.
    #[serde(skip)]
    pub dtb_span: Option<core::ops::Range<usize>>,
    /// Regions firmware keeps that the DTB does not mark.
    pub extra_reserved: Vec<Region>,
    /// Memory Xen keeps for itself (heap, frame table, structures); added to the domains' total.
    pub xen_memory: u64,
    /// Where boot modules may be placed by the boot loader (physical window).
    pub module_window: Option<Region>,
    /// Where the boot loader puts Xen itself; modules stay clear of it.
    pub xen_load: Option<Region>,
    pub qemu: Option<QemuMachine>,
    /// Hardware of boards without a device tree.
    pub hardware: Option<StaticHardware>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticHardware {
    pub cpus: u32,
    pub memory: Vec<Region>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoardFile {
    board: Spanned<RawBoard>,
    dtb: Option<Spanned<RawDtb>>,
    console: Option<Spanned<RawConsole>>,
    memory: Option<Spanned<RawMemory>>,
    load: Option<Spanned<RawLoad>>,
    qemu: Option<Spanned<QemuMachine>>,
    hardware: Option<Spanned<RawHardware>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: Spanned<String>,
    arch: Spanned<Arch>,
    description: String,
    boot: Spanned<BootMethod>,
    targets: Option<Spanned<Vec<Spanned<BootTarget>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDtb {
    #[serde(default)]
    qemu_dump: bool,
    file: Option<String>,
    debian_package: Option<String>,
    debian_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    uart: Option<String>,
    xen: String,
    #[serde(default)]
    xen_cmdline: String,
    linux: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    base: Spanned<Quantity>,
    size: Spanned<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    #[serde(default)]
    banks: Vec<Spanned<RawRegion>>,
    #[serde(default)]
    reserved: Vec<Spanned<RawRegion>>,
    xen: Spanned<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    xen: Option<Spanned<RawRegion>>,
    modules: Option<Spanned<RawRegion>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    cpus: u32,
}

/// Built-in boards, compiled into the binary from `boards/`.
pub const BUILTIN_BOARDS: &[(&str, &str)] = &[
    (
        "qemu-virt-arm64",
        include_str!("../../../boards/qemu-virt-arm64.toml"),
    ),
    (
        "qemu-virt-arm64-gicv2",
        include_str!("../../../boards/qemu-virt-arm64-gicv2.toml"),
    ),
    (
        "qemu-x86_64",
        include_str!("../../../boards/qemu-x86_64.toml"),
    ),
    ("rpi4", include_str!("../../../boards/rpi4.toml")),
    ("zcu102", include_str!("../../../boards/zcu102.toml")),
    (
        "rock-pi-4b",
        include_str!("../../../boards/rock-pi-4b.toml"),
    ),
    ("rzg2m", include_str!("../../../boards/rzg2m.toml")),
    ("am625-sk", include_str!("../../../boards/am625-sk.toml")),
];

pub fn builtin_board(name: &str) -> Option<&'static str> {
    BUILTIN_BOARDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// The closest built-in board name, for "did you mean".
pub fn suggest_builtin(name: &str) -> Option<&'static str> {
    did_you_mean(name, BUILTIN_BOARDS.iter().map(|(n, _)| *n))
}

fn region(raw: &Spanned<RawRegion>, what: &str) -> Result<Region, Diagnostic> {
    let r = raw.get_ref();
    let parse = |q: &Spanned<Quantity>| {
        parse_size(&q.get_ref().0).map_err(|e| {
            Diagnostic::error("E0101", format!("invalid {what}: {e}")).at_board(q.span(), "here")
        })
    };
    let region = Region::new(parse(&r.base)?, parse(&r.size)?);
    if region.end().is_none() {
        return Err(
            Diagnostic::error("E0101", format!("{what} wraps the address space"))
                .at_board(raw.span(), "here"),
        );
    }
    Ok(region)
}

/// The board's boot targets, default first: `targets` as listed (each once, each existing on the
/// board's architecture, the default among them), or only the default.
fn boot_targets(
    b: &RawBoard,
    arch: Arch,
    has_qemu: bool,
    errors: &mut Vec<Diagnostic>,
) -> Vec<BootTarget> {
    let default = b.boot.get_ref().default_target(has_qemu);
    let Some(listed) = &b.targets else {
        return std::vec![default];
    };
    let mut targets = std::vec![default];
    let mut seen_default = false;
    for (i, t) in listed.get_ref().iter().enumerate() {
        let target = *t.get_ref();
        if listed.get_ref()[..i].iter().any(|u| *u.get_ref() == target) {
            errors.push(
                Diagnostic::error("E0113", format!("boot target `{target}` is listed twice"))
                    .at_board(t.span(), "listed again here")
                    .help("list each boot target once"),
            );
        } else if !target.exists_on(arch) {
            errors.push(
                Diagnostic::error(
                    "E0114",
                    format!(
                        "boot target `{target}` does not exist on {} boards",
                        arch.as_str()
                    ),
                )
                .at_board(t.span(), "not a target of this architecture")
                .help("x86 boards boot through `qemu-direct`, `uefi` or `grub`"),
            );
        } else if target == default {
            seen_default = true;
        } else {
            targets.push(target);
        }
    }
    if !seen_default {
        errors.push(
            Diagnostic::error(
                "E0112",
                format!("the board boots by `{default}` (its `boot` method), which `targets` does not list"),
            )
            .at_board(listed.span(), "the board's boot targets")
            .help(format!("add \"{default}\" to `targets`, or change `boot`")),
        );
    }
    targets
}

impl Board {
    /// Whether the board's firmware can boot `target`.
    pub fn supports(&self, target: BootTarget) -> bool {
        self.targets.contains(&target)
    }

    /// Whether a bundle for this board gets `target`'s files in their `arch` form: the board is
    /// that architecture and its firmware boots the target. One question for the pipeline (which
    /// fetches the target's files), finalize (which checks them) and the bundle (which writes them).
    pub fn wants(&self, arch: Arch, target: BootTarget) -> bool {
        self.arch == arch && self.supports(target)
    }

    /// Parses a board file. Errors point into the board file ([`crate::diag::SourceId::Board`]).
    pub fn parse(text: &str) -> Result<Board, Vec<Diagnostic>> {
        let raw: RawBoardFile = toml::from_str(text).map_err(|e| {
            let mut d = crate::manifest::board_toml_error(&e, text);
            if let Some(p) = d.primary.as_mut() {
                p.source = crate::diag::SourceId::Board;
            }
            std::vec![d]
        })?;
        let mut errors = Vec::new();
        let b = raw.board.get_ref();
        let arch = *b.arch.get_ref();
        // A [dtb] table that names no valid source is reported once (E0102), not again as a
        // missing device tree (E0104/E0105).
        let has_dtb_table = raw.dtb.is_some();
        let dtb = match raw.dtb.as_ref().map(|d| (d.get_ref(), d.span())) {
            None => DtbSource::None,
            Some((d, span)) => match (d.qemu_dump, &d.file, &d.debian_package, &d.debian_path) {
                (true, None, None, None) => DtbSource::QemuDump,
                (false, Some(f), None, None) => DtbSource::File(f.clone()),
                (false, None, Some(p), Some(path)) => DtbSource::Debian {
                    package: p.clone(),
                    path: path.clone(),
                },
                _ => {
                    errors.push(
                        Diagnostic::error("E0102", "a board's [dtb] names exactly one source")
                            .at_board(span, "here")
                            .help("use `qemu_dump = true`, `file = \"...\"`, or `debian_package` + `debian_path`"),
                    );
                    DtbSource::None
                }
            },
        };
        if dtb == DtbSource::QemuDump && raw.qemu.is_none() {
            errors.push(
                Diagnostic::error(
                    "E0103",
                    "`qemu_dump = true` needs a [qemu] table to know the machine",
                )
                .at_board(raw.board.span(), "this board"),
            );
        }
        let hardware = raw.hardware.as_ref().map(|h| StaticHardware {
            cpus: h.get_ref().cpus,
            memory: Vec::new(),
        });
        if arch == Arch::Arm64 && matches!(dtb, DtbSource::None) && !has_dtb_table {
            errors.push(
                Diagnostic::error("E0104", "an arm64 board needs a device tree")
                    .at_board(raw.board.span(), "no [dtb] table")
                    .help("Xen on ARM boots from a DTB; add a [dtb] table"),
            );
        }
        // On arm64 the missing DTB is the fault (E0104): [hardware] would not replace it.
        if matches!(dtb, DtbSource::None)
            && hardware.is_none()
            && !has_dtb_table
            && arch != Arch::Arm64
        {
            errors.push(
                Diagnostic::error(
                    "E0105",
                    "a board without a device tree must describe its [hardware]",
                )
                .at_board(raw.board.span(), "this board"),
            );
        }
        let (console_uart, xen_console, xen_cmdline, linux_console) = match &raw.console {
            Some(c) => {
                let c = c.get_ref();
                (
                    c.uart.clone(),
                    c.xen.clone(),
                    c.xen_cmdline.clone(),
                    c.linux.clone(),
                )
            }
            None => {
                errors.push(
                    Diagnostic::error("E0106", "a board needs a [console] table")
                        .at_board(raw.board.span(), "this board"),
                );
                (None, String::new(), String::new(), String::new())
            }
        };
        let mut memory_banks = Vec::new();
        let mut memory_banks_span = None;
        let mut extra_reserved = Vec::new();
        let mut xen_memory = 128 * MIB;
        match &raw.memory {
            Some(m) => {
                let m = m.get_ref();
                memory_banks_span = m.banks.first().map(|b| b.span());
                for r in &m.banks {
                    match region(r, "memory bank") {
                        Ok(reg) => memory_banks.push(reg),
                        Err(e) => errors.push(e),
                    }
                }
                for r in &m.reserved {
                    match region(r, "reserved region") {
                        Ok(reg) => extra_reserved.push(reg),
                        Err(e) => errors.push(e),
                    }
                }
                match parse_size(&m.xen.get_ref().0) {
                    Ok(v) => xen_memory = v,
                    Err(e) => errors.push(
                        Diagnostic::error("E0101", format!("invalid memory.xen: {e}"))
                            .at_board(m.xen.span(), "here"),
                    ),
                }
            }
            None => errors.push(
                Diagnostic::error(
                    "E0107",
                    "a board needs a [memory] table (at least `xen`, the memory Xen keeps)",
                )
                .at_board(raw.board.span(), "this board"),
            ),
        }
        let targets = boot_targets(b, arch, raw.qemu.is_some(), &mut errors);
        let load = raw.load.as_ref().map(|l| l.get_ref());
        let mut module_window = None;
        let mut xen_load = None;
        if let Some(l) = load {
            if let Some(m) = &l.modules {
                match region(m, "module window") {
                    Ok(r) => module_window = Some(r),
                    Err(e) => errors.push(e),
                }
            }
            if let Some(x) = &l.xen {
                match region(x, "Xen load region") {
                    Ok(r) => xen_load = Some(r),
                    Err(e) => errors.push(e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let hardware = hardware.map(|mut h| {
            h.memory = memory_banks.clone();
            h
        });
        Ok(Board {
            name: b.name.get_ref().clone(),
            arch,
            description: b.description.clone(),
            boot: *b.boot.get_ref(),
            targets,
            dtb,
            console_uart,
            xen_console,
            xen_cmdline,
            linux_console,
            memory_banks,
            memory_banks_span,
            dtb_span: raw.dtb.as_ref().map(|d| d.span()),
            extra_reserved,
            xen_memory,
            module_window,
            xen_load,
            qemu: raw.qemu.map(|q| q.into_inner()),
            hardware,
        })
    }

    /// Combines what the DTB says with what the board file adds into one inventory.
    ///
    /// RAM banks given in the board file are used only when the DTB has none (firmware fills them at
    /// boot); giving them in both places is refused so the two cannot drift apart.
    pub fn resolve_inventory(
        &self,
        from_dtb: Option<HardwareInventory>,
    ) -> Result<HardwareInventory, Diagnostic> {
        let mut inv = match (from_dtb, &self.hardware) {
            (Some(inv), _) => inv,
            (None, Some(hw)) => HardwareInventory {
                model: self.description.clone(),
                compatible: Vec::new(),
                cpus: (0..hw.cpus)
                    .map(|i| CpuNode {
                        path: format!("cpu{i}"),
                        hw_id: u64::from(i),
                        phandle: None,
                    })
                    .collect(),
                memory: hw.memory.clone(),
                interrupt_controller: Some(InterruptController {
                    path: "apic".to_string(),
                    kind: InterruptControllerKind::Apic,
                    compatible: Vec::new(),
                    regions: Vec::new(),
                }),
                ..HardwareInventory::default()
            },
            (None, None) => {
                return Err(Diagnostic::error(
                    "E0108",
                    format!("board `{}` has a device tree, but none was read", self.name),
                ));
            }
        };
        if !self.memory_banks.is_empty() && self.hardware.is_none() {
            if !inv.memory.is_empty() {
                let mut d = Diagnostic::error(
                    "E0109",
                    format!(
                        "board `{}` lists RAM banks, but its device tree has them too",
                        self.name
                    ),
                );
                if let Some(span) = &self.memory_banks_span {
                    d = d.at_board(span.clone(), "banks listed here");
                }
                return Err(d.help(
                    "remove [memory] banks from the board file: what the DTB says is read from it",
                ));
            }
            inv.memory = self.memory_banks.clone();
        }
        inv.memory.sort();
        for r in &self.extra_reserved {
            inv.reserved.push(super::ReservedRegion {
                name: "board file".to_string(),
                region: *r,
                no_map: true,
            });
        }
        if inv.memory.is_empty() {
            let mut d = Diagnostic::error("E0110", format!("board `{}` has no RAM banks", self.name))
                .help("the DTB's /memory is empty (firmware fills it at boot): list [memory] banks in the board file");
            if let Some(span) = &self.dtb_span {
                d = d.at_board(span.clone(), "this device tree's /memory is empty");
            }
            return Err(d);
        }
        if inv.cpus.is_empty() {
            let mut d = Diagnostic::error(
                "E0111",
                format!("board `{}` has no CPUs in its device tree", self.name),
            )
            .help("use the board's real device tree: Xen needs its /cpus nodes");
            if let Some(span) = &self.dtb_span {
                d = d.at_board(span.clone(), "this device tree has no /cpus/cpu@N nodes");
            }
            return Err(d);
        }
        Ok(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_board_parses() {
        for (name, text) in BUILTIN_BOARDS {
            let b = Board::parse(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(&b.name, name, "file name and [board] name agree");
        }
    }

    #[test]
    fn board_banks_only_when_the_dtb_has_none() {
        let b = Board::parse(builtin_board("rpi4").unwrap()).unwrap();
        let mut dtb = HardwareInventory {
            cpus: std::vec![CpuNode {
                path: "/cpus/cpu@0".into(),
                hw_id: 0,
                phandle: None
            }],
            ..Default::default()
        };
        let inv = b.resolve_inventory(Some(dtb.clone())).unwrap();
        assert_eq!(inv.memory, b.memory_banks);
        dtb.memory.push(Region::new(0, 1 << 30));
        let err = b.resolve_inventory(Some(dtb)).unwrap_err();
        assert_eq!(err.code, "E0109");
    }

    #[test]
    fn unknown_board_keys_point_into_the_board_file() {
        let text = builtin_board("qemu-virt-arm64")
            .unwrap()
            .replace("[console]", "[console]\nbaud = 1");
        let errs = Board::parse(&text).unwrap_err();
        assert_eq!(errs[0].code, "E0002");
        assert_eq!(
            errs[0].primary.as_ref().unwrap().source,
            crate::diag::SourceId::Board
        );
    }

    #[test]
    fn boot_targets_default_first_and_checked() {
        let arm = builtin_board("qemu-virt-arm64").unwrap();
        let b = Board::parse(arm).unwrap();
        assert_eq!(
            b.targets,
            [BootTarget::QemuDirect, BootTarget::UBoot, BootTarget::Uefi]
        );
        let x86 = Board::parse(builtin_board("qemu-x86_64").unwrap()).unwrap();
        assert_eq!(x86.targets[0], BootTarget::QemuDirect);
        assert!(x86.supports(BootTarget::Grub) && !x86.supports(BootTarget::UBoot));
        let rzg2m = Board::parse(builtin_board("rzg2m").unwrap()).unwrap();
        assert_eq!(rzg2m.targets, [BootTarget::UBoot]);
        let with = |targets: &str| {
            let text = arm.replace(
                "targets = [\"qemu-direct\", \"u-boot\", \"uefi\"]",
                &format!("targets = {targets}"),
            );
            Board::parse(&text).unwrap_err()
        };
        let errs = with("[\"u-boot\"]");
        assert_eq!(errs[0].code, "E0112");
        let errs = with("[\"qemu-direct\", \"uefi\", \"uefi\"]");
        assert_eq!(errs[0].code, "E0113");
        let errs = with("[\"qemu-direct\", \"uefii\"]");
        assert_eq!(errs[0].code, "E0003");
        assert!(format!("{errs:?}").contains("uefi"), "{errs:?}");
        let x86 = builtin_board("qemu-x86_64")
            .unwrap()
            .replace("\"grub\"]", "\"grub\", \"u-boot\"]");
        assert_eq!(Board::parse(&x86).unwrap_err()[0].code, "E0114");
    }
}
