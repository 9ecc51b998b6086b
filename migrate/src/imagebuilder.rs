//! ImageBuilder (`scripts/uboot-script-gen`'s `config`, README "scripts/uboot-script-gen"): import a
//! config as a manifest, export a manifest as a config.
//!
//! ImageBuilder has no variable for several manifest keys (domain names, `on_crash`,
//! `force_without_iommu`, shared memory...). Export writes those as `DOMFORGE_*` variables, which
//! bash and ImageBuilder ignore and import reads back, so import → export → import keeps the system;
//! the export report lists each of them, because the U-Boot script ImageBuilder generates does not
//! do what they say.

use crate::bash::{self, BashData, BashValue};
use crate::draft::*;
use crate::error::{ImportError, SyntaxError};
use crate::report::Report;
use crate::{Imported, InputFile, Paths};
use firmware_config::board::{Arch, BUILTIN_BOARDS, Board, DtbSource, HardwareInventory};
use firmware_config::manifest::{Builder, Console, Enhanced, Manifest, Role};
use firmware_config::units::{MIB, parse_size};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Reads the config as data.
pub fn read_config(file: &InputFile) -> Result<BashData, SyntaxError> {
    bash::parse(&file.name, &file.text)
}

/// Which board an imported config runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardChoice {
    /// `[system] board`: a built-in name or the derived board file's name.
    pub name: String,
    /// The derived board file's text, when no built-in board matched.
    pub derived: Option<String>,
    /// Why this board (for the report).
    pub why: String,
}

/// The board for `data`: `explicit` when given, else `DOMFORGE_SYSTEM_BOARD` (written by export),
/// else a built-in board whose Debian DTB has `DEVICE_TREE`'s file name, else a board file derived
/// from `DEVICE_TREE` and `MEMORY_START`/`MEMORY_END`.
pub fn choose_board(
    file: &InputFile,
    data: &BashData,
    explicit: Option<&str>,
    system_name: &str,
    paths: &Paths,
) -> Result<BoardChoice, ImportError> {
    if let Some(b) = explicit {
        return Ok(BoardChoice {
            name: b.into(),
            derived: None,
            why: "given with --board".into(),
        });
    }
    if let Some(b) = data.get("DOMFORGE_SYSTEM_BOARD") {
        return Ok(BoardChoice {
            name: b.into(),
            derived: None,
            why: "DOMFORGE_SYSTEM_BOARD (written by domforge export)".into(),
        });
    }
    let dtb = data
        .get("DEVICE_TREE")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ImportError::Input(format!(
                "{}: no DEVICE_TREE, and no --board: domforge needs the board's device tree",
                file.name
            ))
        })?;
    let dtb_file = dtb.rsplit('/').next().unwrap_or(dtb);
    for (name, text) in BUILTIN_BOARDS {
        if let Ok(b) = Board::parse(text)
            && let DtbSource::Debian { path, .. } = &b.dtb
            && path.rsplit('/').next() == Some(dtb_file)
        {
            return Ok(BoardChoice {
                name: (*name).into(),
                derived: None,
                why: format!("DEVICE_TREE `{dtb_file}` is the DTB of built-in board `{name}`"),
            });
        }
    }
    let (start, end) = memory_window(file, data)?;
    let board_name = format!("{system_name}-board");
    let cmd = data.get("XEN_CMD").unwrap_or("");
    let uart = cmd
        .split_whitespace()
        .find_map(|t| t.strip_prefix("dtuart="));
    let linux = (0..64)
        .filter_map(|i| data.get_index("DOMU_CMD", i))
        .chain(data.get("DOM0_CMD"))
        .flat_map(|c| c.split_whitespace())
        .filter_map(|t| t.strip_prefix("console="))
        .map(|c| c.split(',').next().unwrap_or(c))
        .find(|c| *c != "hvc0")
        .unwrap_or("ttyAMA0");
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Derived by `domforge import imagebuilder` from {}: the hardware comes from",
        file.name
    );
    let _ = writeln!(
        t,
        "# DEVICE_TREE, the boot-module window from MEMORY_START/MEMORY_END."
    );
    let _ = writeln!(
        t,
        "# RAM banks are read from the DTB's /memory; if firmware fills that at boot, add"
    );
    let _ = writeln!(
        t,
        "# [memory] banks = [{{ base = \"...\", size = \"...\" }}].\n"
    );
    let _ = writeln!(
        t,
        "[board]\nname = {}\narch = \"arm64\"",
        toml_str(&board_name)
    );
    let _ = writeln!(
        t,
        "description = {}",
        toml_str(&format!("derived from ImageBuilder config {}", file.name))
    );
    let _ = writeln!(
        t,
        "boot = \"u-boot\"\n\n[dtb]\nfile = {}\n",
        toml_str(&paths.rebase(dtb))
    );
    let _ = writeln!(t, "[console]\nxen = \"dtuart\"");
    if let Some(u) = uart {
        let _ = writeln!(t, "uart = {}", toml_str(u));
    }
    let _ = writeln!(t, "linux = {}\n", toml_str(linux));
    let _ = writeln!(
        t,
        "[memory]\n# What Xen keeps for itself (heap, frame table); ImageBuilder does not say.\nxen = \"256M\"\n"
    );
    let _ = writeln!(
        t,
        "[load]\n# ImageBuilder loads everything between MEMORY_START and MEMORY_END."
    );
    let _ = writeln!(
        t,
        "modules = {{ base = \"{start:#x}\", size = \"{:#x}\" }}",
        end - start
    );
    Ok(BoardChoice {
        name: format!("{board_name}.toml"),
        derived: Some(t),
        why: format!(
            "no built-in board has DEVICE_TREE `{dtb_file}`: board file derived from DEVICE_TREE and MEMORY_START/END"
        ),
    })
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn memory_window(file: &InputFile, data: &BashData) -> Result<(u64, u64), ImportError> {
    let get = |k: &str| -> Result<u64, ImportError> {
        let v = data.get(k).ok_or_else(|| {
            ImportError::Input(format!(
                "{}: {k} is not set (ImageBuilder needs it)",
                file.name
            ))
        })?;
        parse_size(v).map_err(|e| {
            ImportError::Input(format!(
                "{}:{}: {k}=\"{v}\": {e}",
                file.name,
                data.line_of(k, None)
            ))
        })
    };
    let (s, e) = (get("MEMORY_START")?, get("MEMORY_END")?);
    if e <= s {
        return Err(ImportError::Input(format!(
            "{}: MEMORY_END is not above MEMORY_START",
            file.name
        )));
    }
    Ok((s, e))
}

/// Variables that only steer U-Boot script or disk-image generation: domforge has its own.
const BOOT_FLOW: &[&str] = &[
    "LOAD_CMD",
    "BOOT_CMD",
    "UBOOT_SOURCE",
    "UBOOT_SCRIPT",
    "APPEND_EXTRA_CMDS",
    "FDTEDIT",
    "FIT",
    "FIT_ENC_KEY_DIR",
    "FIT_ENC_UB_DTB",
    "EFI",
    "BITSTREAM",
    "NUM_BOOT_AUX_FILE",
    "BOOT_AUX_FILE",
    "GPT",
    "PASSTHROUGH_DTS_REPO",
    "LOPPER_PATH",
    "LOPPER_CMD",
];

/// Options of an ImageBuilder import.
#[derive(Debug, Clone, Default)]
pub struct ImageBuilderOptions {
    pub system_name: Option<String>,
    pub paths: Paths,
    /// Per domain index, the `xen,path`s read from its `DOMU_PASSTHROUGH_DTB` (or why it could not
    /// be read); see [`crate::files::xen_paths`].
    pub passthrough_dtb_paths: std::collections::BTreeMap<u64, Result<Vec<String>, String>>,
}

/// The config's system name: `--name`, else `DOMFORGE_SYSTEM_NAME`, else `imported-imagebuilder`.
pub fn system_name(data: &BashData, opts: &ImageBuilderOptions) -> String {
    opts.system_name
        .clone()
        .or_else(|| data.get("DOMFORGE_SYSTEM_NAME").map(str::to_string))
        .unwrap_or_else(|| "imported-imagebuilder".into())
}

/// Imports a read config for `board` (`inventory`, when the caller could read the board's DTB,
/// turns CPUPOOL's CPU node names into CPU indices).
pub fn import(
    file: &InputFile,
    data: &BashData,
    choice: &BoardChoice,
    board: &Board,
    inventory: Option<&HardwareInventory>,
    opts: &ImageBuilderOptions,
) -> Result<Imported, ImportError> {
    if board.arch != Arch::Arm64 {
        return Err(ImportError::Input(
            "ImageBuilder configs describe ARM64 dom0less systems; the board is not arm64".into(),
        ));
    }
    let f = file.name.as_str();
    let mut r = Report::default();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let line = |k: &str, i: Option<u64>| data.line_of(k, i);
    let mut m = DraftManifest {
        system: DraftSystem {
            name: system_name(data, opts),
            board: choice.name.clone(),
            ..DraftSystem::default()
        },
        ..DraftManifest::default()
    };
    r.note(
        f,
        0,
        "board",
        format!("[system] board = \"{}\": {}", choice.name, choice.why),
    );
    for k in ["DOMFORGE_SYSTEM_NAME", "DOMFORGE_SYSTEM_BOARD"] {
        if data.vars.contains_key(k) {
            used.insert(k.into());
            r.mapped(
                f,
                line(k, None),
                k,
                format!(
                    "[system] {}",
                    k.trim_start_matches("DOMFORGE_SYSTEM_").to_lowercase()
                ),
            );
        }
    }
    if choice.derived.is_none()
        && let (Some(w), Ok((start, end))) = (board.module_window, memory_window(file, data))
        && (w.base, w.base.saturating_add(w.size)) != (start, end)
    {
        r.note(
            f,
            line("MEMORY_START", None),
            "MEMORY_START/MEMORY_END",
            format!(
                "board `{}` places boot modules in {:#x}-{:#x}, not the config's {start:#x}-{end:#x}; domforge uses the board's",
                board.name,
                w.base,
                w.base.saturating_add(w.size)
            ),
        );
    }
    for k in ["DEVICE_TREE", "MEMORY_START", "MEMORY_END"] {
        if data.vars.contains_key(k) {
            used.insert(k.into());
            let what = if choice.derived.is_some() {
                "the derived board file"
            } else {
                "the board"
            };
            r.mapped(
                f,
                line(k, None),
                k,
                format!(
                    "{what} ({})",
                    if k == "DEVICE_TREE" {
                        "its device tree"
                    } else {
                        "its boot-module window"
                    }
                ),
            );
        }
    }
    if let Some(x) = data.get("XEN") {
        used.insert("XEN".into());
        if x != "debian:xen" {
            m.system.hypervisor = Some(opts.paths.rebase(x));
            r.mapped(
                f,
                line("XEN", None),
                "XEN",
                format!("[system] hypervisor = \"{}\"", opts.paths.rebase(x)),
            );
        } else {
            r.mapped(
                f,
                line("XEN", None),
                "XEN",
                "Debian's Xen (the default hypervisor)",
            );
        }
    }
    if let Some(v) = data.get("DOMFORGE_SYSTEM_XEN") {
        used.insert("DOMFORGE_SYSTEM_XEN".into());
        m.system.xen = Some(v.into());
        r.mapped(
            f,
            line("DOMFORGE_SYSTEM_XEN", None),
            "DOMFORGE_SYSTEM_XEN",
            format!("[system] xen = \"{v}\""),
        );
    } else {
        r.note(f, 0, "xen", "ImageBuilder does not say which Xen release XEN is; domforge assumes 4.17 (set [system] xen)");
    }
    // Dom0.
    let has_dom0 = data.get("DOM0_KERNEL").is_some_and(|k| !k.is_empty());
    if has_dom0 {
        let mut d0 = DraftDom0 {
            kernel: opts
                .paths
                .rebase(data.get("DOM0_KERNEL").unwrap_or_default()),
            ..DraftDom0::default()
        };
        used.insert("DOM0_KERNEL".into());
        r.mapped(
            f,
            line("DOM0_KERNEL", None),
            "DOM0_KERNEL",
            format!("[dom0] kernel = \"{}\"", d0.kernel),
        );
        if let Some(v) = data.get("DOM0_RAMDISK") {
            used.insert("DOM0_RAMDISK".into());
            d0.ramdisk = Some(opts.paths.rebase(v));
            r.mapped(
                f,
                line("DOM0_RAMDISK", None),
                "DOM0_RAMDISK",
                "[dom0] ramdisk",
            );
        }
        if let Some(v) = data.get("DOM0_CMD") {
            used.insert("DOM0_CMD".into());
            d0.cmdline = Some(v.into());
            r.mapped(f, line("DOM0_CMD", None), "DOM0_CMD", "[dom0] cmdline");
        }
        let xen_cmd_set = data.get("XEN_CMD").is_some();
        for (k, what) in [("DOM0_MEM", "memory"), ("DOM0_VCPUS", "vcpus")] {
            let Some(v) = data.get(k) else { continue };
            used.insert(k.into());
            if xen_cmd_set {
                r.note(f, line(k, None), k, "ignored, as ImageBuilder ignores it when XEN_CMD is set (dom0_mem= / dom0_max_vcpus= there count)");
                continue;
            }
            let n: u64 = v.trim().parse().map_err(|_| {
                ImportError::Input(format!(
                    "{f}:{}: {k}=\"{v}\" is not a number",
                    line(k, None)
                ))
            })?;
            if what == "memory" {
                d0.memory = Some(size_text(n * MIB));
            } else {
                d0.vcpus = Some(n as u32);
            }
            r.mapped(
                f,
                line(k, None),
                k,
                format!(
                    "[dom0] {what}{}",
                    if what == "memory" {
                        " (ImageBuilder counts MB = MiB)"
                    } else {
                        ""
                    }
                ),
            );
        }
        if !xen_cmd_set && d0.memory.is_none() {
            // README: "DOM0_MEM ... The default is 1024" (when XEN_CMD is not set).
            d0.memory = Some("1024M".into());
            r.note(
                f,
                0,
                "DOM0_MEM",
                "not set: [dom0] memory = \"1024M\", ImageBuilder's default",
            );
        }
        if !xen_cmd_set {
            r.note(f, 0, "XEN_CMD", "not set: ImageBuilder would use its default Xen command line; domforge writes the board's console options and dom0's sizing");
        }
        m.dom0 = Some(d0);
    }
    // XEN_CMD: the console comes from the board, dom0 sizing from [dom0]; the rest is kept.
    if let Some(cmd) = data.get("XEN_CMD") {
        used.insert("XEN_CMD".into());
        let l = line("XEN_CMD", None);
        let board_tokens: BTreeSet<&str> = board.xen_cmdline.split_whitespace().collect();
        let mut keep = Vec::new();
        for t in cmd.split_whitespace() {
            let (opt, val) = t.split_once('=').unwrap_or((t, ""));
            match opt {
                "console" | "dtuart" => r.note(
                    f,
                    l,
                    "XEN_CMD",
                    format!(
                        "`{t}` left out: domforge writes the board's console options ({})",
                        board.xen_console
                    ),
                ),
                "dom0_mem" | "dom0_max_vcpus" if m.dom0.is_some() => {
                    let d0 = m.dom0.as_mut().expect("checked");
                    if opt == "dom0_mem" {
                        let bytes = parse_size(val).map_err(|e| {
                            ImportError::Input(format!("{f}:{l}: XEN_CMD `{t}`: {e}"))
                        })?;
                        d0.memory = Some(size_text(bytes));
                        r.mapped(
                            f,
                            l,
                            "XEN_CMD",
                            format!("`{t}` → [dom0] memory = \"{}\"", size_text(bytes)),
                        );
                    } else {
                        let n = val.parse().map_err(|_| {
                            ImportError::Input(format!("{f}:{l}: XEN_CMD `{t}` is not a number"))
                        })?;
                        d0.vcpus = Some(n);
                        r.mapped(f, l, "XEN_CMD", format!("`{t}` → [dom0] vcpus = {n}"));
                    }
                }
                _ if board_tokens.contains(t) => r.note(
                    f,
                    l,
                    "XEN_CMD",
                    format!("`{t}` left out: board `{}` adds it", board.name),
                ),
                _ => keep.push(t),
            }
        }
        if !keep.is_empty() {
            m.system.xen_cmdline = Some(keep.join(" "));
            r.mapped(
                f,
                l,
                "XEN_CMD",
                format!("[system] xen_cmdline = \"{}\"", keep.join(" ")),
            );
        }
    }
    // Cpupools: CPUPOOL[i]="cpu@1,cpu@2 scheduler".
    let num = |k: &str| -> Result<u64, ImportError> {
        match data.get(k) {
            None => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| {
                ImportError::Input(format!(
                    "{f}:{}: {k}=\"{v}\" is not a number",
                    line(k, None)
                ))
            }),
        }
    };
    let n_pools = num("NUM_CPUPOOLS")?;
    used.insert("NUM_CPUPOOLS".into());
    for i in 0..n_pools {
        let Some(v) = data.get_index("CPUPOOL", i) else {
            return Err(ImportError::Input(format!(
                "{f}: NUM_CPUPOOLS={n_pools} but CPUPOOL[{i}] is not set"
            )));
        };
        let mut words = v.split_whitespace();
        let cpus_text = words.next().unwrap_or("");
        let sched = words.next();
        let mut cpus = Vec::new();
        for c in cpus_text.split(',').filter(|c| !c.is_empty()) {
            let by_inventory = inventory.and_then(|inv| {
                inv.cpus
                    .iter()
                    .position(|n| n.path.rsplit('/').next() == Some(c))
            });
            let idx = match by_inventory {
                Some(i) => i as u32,
                None => {
                    let unit = c
                        .strip_prefix("cpu@")
                        .and_then(|u| u32::from_str_radix(u, 16).ok())
                        .ok_or_else(|| {
                            ImportError::Input(format!(
                                "{f}:{}: CPUPOOL[{i}]: `{c}` is not a CPU node name (cpu@N)",
                                line("CPUPOOL", Some(i))
                            ))
                        })?;
                    r.note(f, line("CPUPOOL", Some(i)), &format!("CPUPOOL[{i}]"), format!("`{c}` taken as CPU {unit} (the board's DT was not read); check with `domforge inspect --board`"));
                    unit
                }
            };
            cpus.push(idx);
        }
        let pool_name = data
            .get_index("DOMFORGE_CPUPOOL_NAME", i)
            .map_or(format!("pool{i}"), str::to_string);
        m.cpupools.push(DraftCpupool {
            name: pool_name.clone(),
            cpus,
            scheduler: sched.map(str::to_string),
        });
        r.mapped(
            f,
            line("CPUPOOL", Some(i)),
            &format!("CPUPOOL[{i}]"),
            format!("[[cpupool]] `{pool_name}`"),
        );
    }
    if n_pools > 0 {
        used.insert("CPUPOOL".into());
        used.insert("DOMFORGE_CPUPOOL_NAME".into());
    }
    // Domains.
    let n = num("NUM_DOMUS")?;
    used.insert("NUM_DOMUS".into());
    if data.vars.contains_key("NUM_DOMUS") {
        r.mapped(
            f,
            line("NUM_DOMUS", None),
            "NUM_DOMUS",
            format!("{n} [[domain]] tables"),
        );
    }
    if data.vars.contains_key("NUM_CPUPOOLS") {
        r.mapped(
            f,
            line("NUM_CPUPOOLS", None),
            "NUM_CPUPOOLS",
            format!("{n_pools} [[cpupool]] tables"),
        );
    }
    let mut any_static = false;
    for i in 0..n {
        let idx = |k: &str| data.get_index(k, i);
        let key = |k: &str| format!("{k}[{i}]");
        let l = |k: &str| line(k, Some(i));
        let name = match idx("DOMFORGE_DOMU_NAME") {
            Some(n) => n.to_string(),
            None => format!("domu{i}"),
        };
        let dn = format!("domain `{name}`");
        let kernel = idx("DOMU_KERNEL").ok_or_else(|| {
            ImportError::Input(format!(
                "{f}: NUM_DOMUS={n} but DOMU_KERNEL[{i}] is not set"
            ))
        })?;
        let mut d = DraftDomain {
            name: name.clone(),
            kind: "arm64".into(),
            vcpus: 1,
            kernel: opts.paths.rebase(kernel),
            ..DraftDomain::default()
        };
        r.mapped(
            f,
            l("DOMU_KERNEL"),
            &key("DOMU_KERNEL"),
            format!("{dn} kernel"),
        );
        if idx("DOMFORGE_DOMU_NAME").is_some() {
            r.mapped(
                f,
                l("DOMFORGE_DOMU_NAME"),
                &key("DOMFORGE_DOMU_NAME"),
                format!("{dn} name"),
            );
        } else {
            r.note(
                f,
                0,
                &format!("domain {i}"),
                format!("ImageBuilder domains have no names: named `{name}`"),
            );
        }
        if let Some(v) = idx("DOMU_RAMDISK") {
            d.ramdisk = Some(opts.paths.rebase(v));
            r.mapped(
                f,
                l("DOMU_RAMDISK"),
                &key("DOMU_RAMDISK"),
                format!("{dn} ramdisk"),
            );
        }
        if let Some(v) = idx("DOMU_CMD") {
            d.cmdline = Some(v.into());
            r.mapped(f, l("DOMU_CMD"), &key("DOMU_CMD"), format!("{dn} cmdline"));
        }
        let mem_mb = match idx("DOMU_MEM") {
            Some(v) => {
                let mb: u64 = v.trim().parse().map_err(|_| {
                    ImportError::Input(format!(
                        "{f}:{}: DOMU_MEM[{i}]=\"{v}\" is not a number of MB",
                        l("DOMU_MEM")
                    ))
                })?;
                r.mapped(
                    f,
                    l("DOMU_MEM"),
                    &key("DOMU_MEM"),
                    format!("{dn} memory = \"{mb}M\" (ImageBuilder counts MB = MiB)"),
                );
                mb
            }
            None => 512,
        };
        d.memory = size_text(mem_mb * MIB);
        if let Some(v) = idx("DOMU_VCPUS") {
            d.vcpus = v.trim().parse().map_err(|_| {
                ImportError::Input(format!(
                    "{f}:{}: DOMU_VCPUS[{i}]=\"{v}\" is not a number",
                    l("DOMU_VCPUS")
                ))
            })?;
            r.mapped(
                f,
                l("DOMU_VCPUS"),
                &key("DOMU_VCPUS"),
                format!("{dn} vcpus = {}", d.vcpus),
            );
        }
        if let Some(v) = idx("DOMU_PASSTHROUGH_PATHS") {
            d.passthrough = v.split_whitespace().map(str::to_string).collect();
            r.mapped(f, l("DOMU_PASSTHROUGH_PATHS"), &key("DOMU_PASSTHROUGH_PATHS"), format!("{dn} passthrough = {:?} (domforge writes the partial device tree from the board's DT)", d.passthrough));
        }
        if idx("DOMU_PASSTHROUGH_DTB").is_some() {
            let (k, at) = (key("DOMU_PASSTHROUGH_DTB"), l("DOMU_PASSTHROUGH_DTB"));
            match (d.passthrough.is_empty(), opts.passthrough_dtb_paths.get(&i)) {
                (false, _) => r.note(f, at, &k, "not needed: domforge writes the partial device tree for DOMU_PASSTHROUGH_PATHS itself"),
                (true, Some(Ok(paths))) if !paths.is_empty() => {
                    d.passthrough = paths.clone();
                    r.mapped(f, at, &k, format!("{dn} passthrough = {paths:?}: the `xen,path` of each /passthrough node in this DTB; domforge writes its own partial device tree for them from the board's DT"));
                }
                (true, Some(Ok(_))) => r.unsupported(f, at, &k, "this DTB has no /passthrough node with a `xen,path`: nothing to pass through"),
                (true, Some(Err(e))) => r.unsupported(f, at, &k, format!("{e}; list the devices (each node's `xen,path`) in DOMU_PASSTHROUGH_PATHS")),
                (true, None) => r.unsupported(f, at, &k, "domforge writes each domain's partial device tree itself from the board's DT: list the devices (the `xen,path` of each node in this DTB) in DOMU_PASSTHROUGH_PATHS"),
            }
        }
        if let Some(v) = idx("DOMU_STATIC_MEM") {
            let words: Vec<&str> = v.split_whitespace().collect();
            if words.is_empty() || !words.len().is_multiple_of(2) {
                return Err(ImportError::Input(format!(
                    "{f}:{}: DOMU_STATIC_MEM[{i}] is \"base size ...\" pairs",
                    l("DOMU_STATIC_MEM")
                )));
            }
            let mut total = 0;
            for pair in words.chunks(2) {
                let base = parse_size(pair[0]).map_err(|e| {
                    ImportError::Input(format!("{f}:{}: {e}", l("DOMU_STATIC_MEM")))
                })?;
                let size = parse_size(pair[1]).map_err(|e| {
                    ImportError::Input(format!("{f}:{}: {e}", l("DOMU_STATIC_MEM")))
                })?;
                total += size;
                d.static_memory.push(DraftRange {
                    base: address_text(base),
                    size: size_text(size),
                });
            }
            // ImageBuilder makes the domain's memory the static total (README, DOMU_STATIC_MEM).
            d.memory = size_text(total);
            d.direct_map = Some(true);
            any_static = true;
            r.mapped(
                f,
                l("DOMU_STATIC_MEM"),
                &key("DOMU_STATIC_MEM"),
                format!(
                    "{dn} static_memory, memory = \"{}\" (their total, as ImageBuilder sets it)",
                    d.memory
                ),
            );
        }
        if let Some(v) = idx("DOMU_DIRECT_MAP") {
            let on = v.trim() == "1";
            if d.static_memory.is_empty() {
                r.note(
                    f,
                    l("DOMU_DIRECT_MAP"),
                    &key("DOMU_DIRECT_MAP"),
                    "ignored, as ImageBuilder ignores it without DOMU_STATIC_MEM",
                );
            } else {
                d.direct_map = Some(on);
                r.mapped(
                    f,
                    l("DOMU_DIRECT_MAP"),
                    &key("DOMU_DIRECT_MAP"),
                    format!("{dn} direct_map = {on}"),
                );
            }
        } else if !d.static_memory.is_empty() {
            r.note(
                f,
                l("DOMU_STATIC_MEM"),
                &key("DOMU_DIRECT_MAP"),
                format!(
                    "not set: ImageBuilder's default 1 (direct-mapped) kept, {dn} direct_map = true"
                ),
            );
        }
        if let Some(v) = idx("DOMU_ENHANCED") {
            let e = match v.trim() {
                "0" => "disabled",
                "1" => "enabled",
                other => other,
            };
            d.enhanced = Some(e.into());
            r.mapped(
                f,
                l("DOMU_ENHANCED"),
                &key("DOMU_ENHANCED"),
                format!("{dn} enhanced = \"{e}\""),
            );
        }
        if let Some(v) = idx("DOMU_CPUPOOL") {
            let id: u64 = v.trim().parse().map_err(|_| {
                ImportError::Input(format!(
                    "{f}:{}: DOMU_CPUPOOL[{i}] is a cpupool number",
                    l("DOMU_CPUPOOL")
                ))
            })?;
            let pool = data
                .get_index("DOMFORGE_CPUPOOL_NAME", id)
                .map_or(format!("pool{id}"), str::to_string);
            r.mapped(
                f,
                l("DOMU_CPUPOOL"),
                &key("DOMU_CPUPOOL"),
                format!("{dn} cpupool = \"{pool}\""),
            );
            d.cpupool = Some(pool);
        }
        if let Some(v) = idx("DOMU_COLORS") {
            d.llc_colors = Some(v.into());
            r.mapped(
                f,
                l("DOMU_COLORS"),
                &key("DOMU_COLORS"),
                format!("{dn} llc_colors = \"{v}\""),
            );
        }
        if let Some(v) = idx("DOMU_CAPS") {
            d.roles = caps_roles(v).ok_or_else(|| ImportError::Input(format!("{f}:{}: DOMU_CAPS[{i}]=\"{v}\": expected control|hardware|xenstore, dom0, none or a number", l("DOMU_CAPS"))))?;
            r.mapped(
                f,
                l("DOMU_CAPS"),
                &key("DOMU_CAPS"),
                format!("{dn} roles = {:?}", d.roles),
            );
        }
        if idx("DOMU_DRIVER_DOMAIN").is_some_and(|v| v.trim() == "1") {
            if !d.roles.iter().any(|r| r == "driver") {
                d.roles.push("driver".into());
            }
            r.mapped(
                f,
                l("DOMU_DRIVER_DOMAIN"),
                &key("DOMU_DRIVER_DOMAIN"),
                format!("{dn} roles gets \"driver\""),
            );
        }
        if idx("DOMU_NOBOOT").is_some() {
            r.unsupported(f, l("DOMU_NOBOOT"), &key("DOMU_NOBOOT"), format!("domforge builds every domain of the manifest at boot; {dn} was kept, remove it to leave it out"));
        }
        if idx("DOMU_ROOTFS").is_some() {
            r.unsupported(
                f,
                l("DOMU_ROOTFS"),
                &key("DOMU_ROOTFS"),
                "a disk_image partition; domforge makes no disk images (use the ramdisk)",
            );
        }
        // DOMFORGE_DOMU_<KEY>[i]: manifest keys ImageBuilder has no variable for, as TOML values.
        for (var, _) in data
            .vars
            .iter()
            .filter(|(k, _)| k.starts_with("DOMFORGE_DOMU_") && *k != "DOMFORGE_DOMU_NAME")
        {
            if let Some(text) = idx(var) {
                let k = var.trim_start_matches("DOMFORGE_DOMU_").to_lowercase();
                let v = toml_value(f, l(var), var, text)?;
                r.mapped(f, l(var), &key(var), format!("{dn} {k} = {v}"));
                d.extra.insert(k, v);
            }
        }
        if m.domains.iter().any(|o| o.name == d.name) {
            return Err(ImportError::Input(format!(
                "{f}: two domains are named `{}`",
                d.name
            )));
        }
        m.domains.push(d);
    }
    for k in [
        "DOMU_KERNEL",
        "DOMU_RAMDISK",
        "DOMU_CMD",
        "DOMU_MEM",
        "DOMU_VCPUS",
        "DOMU_PASSTHROUGH_PATHS",
        "DOMU_PASSTHROUGH_DTB",
        "DOMU_STATIC_MEM",
        "DOMU_DIRECT_MAP",
        "DOMU_ENHANCED",
        "DOMU_CPUPOOL",
        "DOMU_COLORS",
        "DOMU_CAPS",
        "DOMU_DRIVER_DOMAIN",
        "DOMU_NOBOOT",
        "DOMU_ROOTFS",
        "DOMFORGE_DOMU_NAME",
    ] {
        used.insert(k.into());
    }
    // System-level DOMFORGE_SYSTEM_<KEY> and DOMFORGE_SHARED_MEMORY[i].
    for (var, _) in data
        .vars
        .iter()
        .filter(|(k, _)| k.starts_with("DOMFORGE_SYSTEM_"))
    {
        if used.contains(var) {
            continue;
        }
        used.insert(var.clone());
        let k = var.trim_start_matches("DOMFORGE_SYSTEM_").to_lowercase();
        let v = toml_value(f, line(var, None), var, data.get(var).unwrap_or_default())?;
        r.mapped(f, line(var, None), var, format!("[system] {k} = {v}"));
        m.system.extra.insert(k, v);
    }
    if let Some(BashValue::Array(a)) = data.vars.get("DOMFORGE_SHARED_MEMORY") {
        used.insert("DOMFORGE_SHARED_MEMORY".into());
        for (i, text) in a {
            let var = format!("DOMFORGE_SHARED_MEMORY[{i}]");
            match toml_value(f, line("DOMFORGE_SHARED_MEMORY", Some(*i)), &var, text)? {
                toml::Value::Table(t) => m.shared_memory.push(t),
                _ => {
                    return Err(ImportError::Input(format!(
                        "{f}: {var} is a TOML inline table"
                    )));
                }
            }
            r.mapped(
                f,
                line("DOMFORGE_SHARED_MEMORY", Some(*i)),
                &var,
                "[[shared_memory]]",
            );
        }
    }
    // Features the hypervisor must have for what the config uses.
    if !m.system.extra.contains_key("xen_features") {
        if any_static {
            m.system.xen_features.push("static-memory".into());
        }
        if n_pools > 0 {
            m.system.xen_features.push("boot-cpupools".into());
        }
        if !m.system.xen_features.is_empty() {
            r.note(f, 0, "xen_features", format!("[system] xen_features = {:?}: the config uses them, so XEN is taken to be built with them (Debian's Xen is not)", m.system.xen_features));
        }
    }
    // Everything else, in file order, once.
    let mut seen = BTreeSet::new();
    for a in &data.assignments {
        if !seen.insert((a.name.clone(), a.index)) {
            continue;
        }
        let key = match a.index {
            Some(i) => format!("{}[{i}]", a.name),
            None => a.name.clone(),
        };
        let beyond = if a.name == "CPUPOOL" { n_pools } else { n };
        if let Some(i) = a.index
            && (a.name.starts_with("DOMU_")
                || a.name.starts_with("DOMFORGE_DOMU_")
                || a.name == "CPUPOOL")
            && i >= beyond
        {
            let count = if a.name == "CPUPOOL" {
                "NUM_CPUPOOLS"
            } else {
                "NUM_DOMUS"
            };
            r.unsupported(
                f,
                a.line,
                &key,
                format!("index {i} is beyond {count}={beyond}; ImageBuilder ignores it too"),
            );
            continue;
        }
        if used.contains(&a.name) {
            continue;
        }
        let why = match a.name.as_str() {
            k if BOOT_FLOW.contains(&k) => "U-Boot script and image generation: `domforge build` writes its own boot script and files".to_string(),
            "NUM_DT_OVERLAY" | "DT_OVERLAY" => "host DT overlays are not applied; describe the board as its DTB is at boot".into(),
            "XEN_PASSTHROUGH_PATHS" => "devices hidden from all domains: not a manifest setting (devices no domain owns stay with Xen)".into(),
            "XEN_COLORS" | "DOM0_COLORS" => "Xen's and dom0's LLC colours are not manifest settings; pass Xen's in [system] xen_cmdline".into(),
            "LINUX" | "LINUX_CMD" | "LINUX_RAMDISK" => "a Linux boot without Xen; domforge boots Xen systems".into(),
            "DOM0_ROOTFS" => "a disk_image partition; domforge makes no disk images".into(),
            "DOM0_RAMDISK" | "DOM0_CMD" | "DOM0_MEM" | "DOM0_VCPUS" => "no DOM0_KERNEL, so there is no dom0 to apply it to".into(),
            _ if data.referenced.contains(&a.name) => {
                r.note(f, a.line, &key, "a helper variable: its value is used where other assignments refer to it");
                continue;
            }
            _ => "not an ImageBuilder variable domforge knows; nothing was carried over".into(),
        };
        r.unsupported(f, a.line, &key, why);
    }
    for (name, l) in &data.unset_references {
        r.note(
            f,
            *l,
            &format!("${name}"),
            "not set before this line: expands to nothing, as in bash",
        );
    }
    Ok(Imported {
        manifest: m,
        report: r,
        board_file: choice.derived.clone().map(|t| (choice.name.clone(), t)),
    })
}

fn toml_value(f: &str, line: usize, var: &str, text: &str) -> Result<toml::Value, ImportError> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).map_err(|e| {
        ImportError::Input(format!(
            "{f}:{line}: {var}: not a TOML value: {}",
            e.message()
        ))
    })?;
    doc.get("v")
        .cloned()
        .ok_or_else(|| ImportError::Input(format!("{f}:{line}: {var}: empty")))
}

/// DOMU_CAPS: `control|hardware|xenstore`, `dom0` (all three), `none`, or the bit flags 1/2/4.
fn caps_roles(v: &str) -> Option<Vec<String>> {
    let v = v.trim();
    let bits = if let Ok(n) = v.parse::<u32>() {
        n
    } else if let Some(h) = v.strip_prefix("0x") {
        u32::from_str_radix(h, 16).ok()?
    } else {
        let mut b = 0;
        for w in v.split('|') {
            b |= match w.trim() {
                "control" => 1,
                "hardware" => 2,
                "xenstore" => 4,
                "dom0" => 7,
                "none" => 0,
                _ => return None,
            };
        }
        b
    };
    if bits > 7 {
        return None;
    }
    Some(
        [(1, "control"), (2, "hardware"), (4, "xenstore")]
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| n.to_string())
            .collect(),
    )
}

/// Bash single-quoting: the text comes back byte for byte.
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-:,@+=".contains(&c))
    {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A manifest as an ImageBuilder config. `text` is the manifest's TOML (keys ImageBuilder has no
/// variable for are copied from it as `DOMFORGE_*`); `board_name` is `[system] board` as written.
pub fn export(
    manifest_name: &str,
    text: &str,
    m: &Manifest,
    board: &Board,
    inventory: Option<&HardwareInventory>,
) -> Result<(String, Report), ImportError> {
    if board.arch != Arch::Arm64 {
        return Err(ImportError::Input(format!(
            "{manifest_name}: board `{}` is {}; ImageBuilder makes U-Boot scripts for ARM64 dom0less systems only",
            board.name,
            board.arch.as_str()
        )));
    }
    let raw: toml::Table = toml::from_str(text)
        .map_err(|e| ImportError::Input(format!("{manifest_name}: {}", e.message())))?;
    let mut r = Report::default();
    let f = manifest_name;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# ImageBuilder config written by `domforge export imagebuilder {manifest_name}`."
    );
    let _ = writeln!(
        o,
        "# Make the U-Boot script with: bash scripts/uboot-script-gen -c <this file> -d <dir> -t <load>"
    );
    let _ = writeln!(
        o,
        "# DOMFORGE_* variables hold manifest settings ImageBuilder has no variable for: ImageBuilder"
    );
    let _ = writeln!(
        o,
        "# ignores them (the script it makes does not apply them); `domforge import imagebuilder` reads them back.\n"
    );
    let (start, end) = match (
        board.module_window,
        inventory.and_then(|i| i.memory.first()),
    ) {
        (Some(w), _) => (w.base, w.base + w.size),
        (None, Some(bank)) => (bank.base, bank.base + bank.size),
        (None, None) => {
            let b = board.memory_banks.first().ok_or_else(|| {
                ImportError::Input(format!(
                    "board `{}`: no module window or RAM bank known for MEMORY_START/END",
                    board.name
                ))
            })?;
            (b.base, b.base + b.size)
        }
    };
    let _ = writeln!(o, "MEMORY_START=\"{start:#x}\"\nMEMORY_END=\"{end:#x}\"");
    let dtb = match &board.dtb {
        DtbSource::File(p) => p.clone(),
        DtbSource::Debian { path, .. } => path.rsplit('/').next().unwrap_or(path).to_string(),
        DtbSource::QemuDump | DtbSource::None => format!("{}.dtb", board.name),
    };
    if matches!(board.dtb, DtbSource::QemuDump | DtbSource::Debian { .. }) {
        r.note(
            f,
            0,
            "DEVICE_TREE",
            format!(
                "\"{dtb}\": the board's DTB (`domforge build` writes the host DTB it boots with)"
            ),
        );
    }
    let _ = writeln!(o, "DEVICE_TREE={}", sh(&dtb));
    let xen = m
        .system
        .hypervisor
        .as_ref()
        .map_or("debian:xen".to_string(), |h| h.value.clone());
    let _ = writeln!(o, "XEN={}", sh(&xen));
    // Xen's command line as domforge's plan writes it (firmware_config::plan::xen_cmdline).
    let mut cmd = vec![format!("console={}", board.xen_console)];
    if board.xen_console == "dtuart"
        && let Some(u) = board
            .console_uart
            .clone()
            .or_else(|| inventory.and_then(|i| i.stdout_path.clone()))
    {
        cmd.push(format!("dtuart={u}"));
    }
    if !board.xen_cmdline.is_empty() {
        cmd.push(board.xen_cmdline.clone());
    }
    if let Some(d0) = &m.dom0 {
        let mem = d0.memory.as_ref().map_or(512 * MIB, |x| x.value);
        let vcpus = d0.vcpus.as_ref().map_or(1, |x| x.value);
        cmd.push(format!("dom0_mem={}M dom0_max_vcpus={vcpus}", mem / MIB));
    }
    if let Some(x) = &m.system.xen_cmdline
        && !x.value.trim().is_empty()
    {
        cmd.push(x.value.trim().to_string());
    }
    let _ = writeln!(o, "XEN_CMD={}", sh(&cmd.join(" ")));
    let _ = writeln!(o, "DOMFORGE_SYSTEM_NAME={}", sh(&m.system.name.value));
    let _ = writeln!(o, "DOMFORGE_SYSTEM_BOARD={}", sh(&m.system.board.value));
    let _ = writeln!(
        o,
        "DOMFORGE_SYSTEM_XEN={}",
        sh(&m.system.xen.value.to_string())
    );
    if let Some(sys) = raw.get("system").and_then(|s| s.as_table()) {
        for (k, v) in sys {
            if matches!(
                k.as_str(),
                "name" | "board" | "xen" | "hypervisor" | "xen_cmdline" | "dom0"
            ) {
                continue;
            }
            let var = format!("DOMFORGE_SYSTEM_{}", k.to_uppercase());
            let _ = writeln!(o, "{var}={}", sh(&v.to_string()));
            r.note(
                f,
                0,
                &format!("system.{k}"),
                format!("no ImageBuilder variable: written as {var}"),
            );
        }
    }
    if let Some(d0) = &m.dom0 {
        let _ = writeln!(o, "\nDOM0_KERNEL={}", sh(&d0.kernel.value));
        if let Some(x) = &d0.ramdisk {
            let _ = writeln!(o, "DOM0_RAMDISK={}", sh(&x.value));
        }
        if let Some(x) = &d0.cmdline {
            let _ = writeln!(o, "DOM0_CMD={}", sh(&x.value));
        }
        let _ = writeln!(
            o,
            "DOM0_MEM={}",
            d0.memory.as_ref().map_or(512 * MIB, |x| x.value) / MIB
        );
        let _ = writeln!(o, "DOM0_VCPUS={}", d0.vcpus.as_ref().map_or(1, |x| x.value));
    }
    // Cpupools, by index; CPUPOOL names CPU nodes.
    let pool_index = |name: &str| m.cpupools.iter().position(|p| p.name.value == name);
    if !m.cpupools.is_empty() {
        let _ = writeln!(o, "\nNUM_CPUPOOLS={}", m.cpupools.len());
        for (i, p) in m.cpupools.iter().enumerate() {
            let names: Vec<String> = p
                .cpus
                .value
                .iter()
                .map(|c| {
                    inventory
                        .and_then(|inv| inv.cpus.get(c.value as usize))
                        .map_or(format!("cpu@{:x}", c.value), |n| {
                            n.path.rsplit('/').next().unwrap_or(&n.path).to_string()
                        })
                })
                .collect();
            let sched = p
                .scheduler
                .as_ref()
                .map_or(String::new(), |s| format!(" {}", s.value));
            let _ = writeln!(
                o,
                "CPUPOOL[{i}]={}",
                sh(&format!("{}{sched}", names.join(",")))
            );
            if p.name.value != format!("pool{i}") {
                let _ = writeln!(o, "DOMFORGE_CPUPOOL_NAME[{i}]={}", sh(&p.name.value));
                r.note(f, 0, &format!("cpupool {}", p.name.value), format!("ImageBuilder pools are numbered: `{}` is CPUPOOL[{i}], its name kept in DOMFORGE_CPUPOOL_NAME[{i}]", p.name.value));
            }
        }
    }
    let raw_domains: Vec<&toml::Table> = raw
        .get("domain")
        .and_then(|d| d.as_array())
        .map_or(Vec::new(), |a| {
            a.iter().filter_map(|t| t.as_table()).collect()
        });
    let mut exported = 0usize;
    let mut body = String::new();
    for (d, raw_d) in m.domains.iter().zip(raw_domains) {
        let name = &d.name.value;
        if d.builder() == Builder::Init {
            r.unsupported(f, 0, &format!("domain {name}"), "built by domforge-init from dom0; ImageBuilder boots dom0less domains only, so it was left out");
            continue;
        }
        let i = exported;
        exported += 1;
        let _ = writeln!(body, "\nDOMFORGE_DOMU_NAME[{i}]={}", sh(name));
        let _ = writeln!(body, "DOMU_KERNEL[{i}]={}", sh(&d.kernel.value));
        if let Some(x) = &d.ramdisk {
            let _ = writeln!(body, "DOMU_RAMDISK[{i}]={}", sh(&x.value));
        }
        if let Some(x) = &d.cmdline {
            let _ = writeln!(body, "DOMU_CMD[{i}]={}", sh(&x.value));
        }
        if d.static_memory.is_empty() {
            let mb = d.memory.value.div_ceil(MIB);
            if !d.memory.value.is_multiple_of(MIB) {
                r.unsupported(
                    f,
                    0,
                    &format!("domain {name} memory"),
                    format!(
                        "DOMU_MEM counts MB: {} bytes rounded up to {mb} MB",
                        d.memory.value
                    ),
                );
            }
            let _ = writeln!(body, "DOMU_MEM[{i}]={mb}");
        } else {
            let pairs: Vec<String> = d
                .static_memory
                .iter()
                .map(|s| format!("{:#x} {:#x}", s.value.base, s.value.size))
                .collect();
            let _ = writeln!(body, "DOMU_STATIC_MEM[{i}]={}", sh(&pairs.join(" ")));
            let _ = writeln!(body, "DOMU_DIRECT_MAP[{i}]={}", u8::from(d.direct_map()));
        }
        let _ = writeln!(body, "DOMU_VCPUS[{i}]={}", d.vcpus.value);
        if !d.passthrough.is_empty() {
            let paths: Vec<&str> = d.passthrough.iter().map(|p| p.value.as_str()).collect();
            let _ = writeln!(body, "DOMU_PASSTHROUGH_PATHS[{i}]={}", sh(&paths.join(" ")));
            r.note(f, 0, &format!("domain {name} passthrough"), "DOMU_PASSTHROUGH_PATHS needs PASSTHROUGH_DTS_REPO or LOPPER_PATH for ImageBuilder to make the partial DT; `domforge build` writes one you can give as DOMU_PASSTHROUGH_DTB instead");
        }
        match d.enhanced.as_ref().map(|e| e.value) {
            Some(Enhanced::Enabled) => {
                let _ = writeln!(body, "DOMU_ENHANCED[{i}]=1");
            }
            Some(Enhanced::Disabled) => {
                let _ = writeln!(body, "DOMU_ENHANCED[{i}]=0");
            }
            _ => {}
        }
        if let Some(p) = &d.cpupool
            && let Some(pi) = pool_index(&p.value)
        {
            let _ = writeln!(body, "DOMU_CPUPOOL[{i}]={pi}");
        }
        if let Some(c) = &d.llc_colors {
            let _ = writeln!(body, "DOMU_COLORS[{i}]={}", sh(&c.value));
        }
        let caps: Vec<&str> = [
            (Role::Control, "control"),
            (Role::Hardware, "hardware"),
            (Role::Xenstore, "xenstore"),
        ]
        .iter()
        .filter(|(role, _)| d.has_role(*role))
        .map(|(_, n)| *n)
        .collect();
        if !caps.is_empty() {
            let _ = writeln!(body, "DOMU_CAPS[{i}]={}", sh(&caps.join("|")));
        }
        if d.has_role(Role::Driver) {
            let _ = writeln!(body, "DOMU_DRIVER_DOMAIN[{i}]=1");
        }
        // Keys with no ImageBuilder variable, copied as TOML values.
        const MAPPED: &[&str] = &[
            "name",
            "kind",
            "kernel",
            "ramdisk",
            "cmdline",
            "extra",
            "memory",
            "vcpus",
            "passthrough",
            "dtdev",
            "static_memory",
            "direct_map",
            "cpupool",
            "llc_colors",
        ];
        for (k, v) in raw_d {
            if MAPPED.contains(&k.as_str()) {
                continue;
            }
            if k == "enhanced"
                && matches!(
                    d.enhanced.as_ref().map(|e| e.value),
                    Some(Enhanced::Enabled | Enhanced::Disabled)
                )
            {
                continue;
            }
            if k == "roles" && d.roles.iter().all(|r| r.value != Role::App) {
                continue;
            }
            if k == "console"
                && d.console
                    .as_ref()
                    .is_some_and(|c| c.value == Console::Vpl011)
            {
                continue;
            }
            let var = format!("DOMFORGE_DOMU_{}", k.to_uppercase());
            let _ = writeln!(body, "{var}[{i}]={}", sh(&v.to_string()));
            r.note(
                f,
                0,
                &format!("domain {name} {k}"),
                format!(
                    "no ImageBuilder variable: written as {var}[{i}], which ImageBuilder ignores"
                ),
            );
        }
    }
    let _ = writeln!(o, "\nNUM_DOMUS={exported}{body}");
    if let Some(shm) = raw.get("shared_memory").and_then(|s| s.as_array()) {
        for (i, t) in shm.iter().enumerate() {
            let _ = writeln!(o, "DOMFORGE_SHARED_MEMORY[{i}]={}", sh(&t.to_string()));
            r.note(f, 0, &format!("shared_memory {i}"), "no ImageBuilder variable: written as DOMFORGE_SHARED_MEMORY, which ImageBuilder ignores");
        }
    }
    let sources: Vec<&str> = m
        .domains
        .iter()
        .flat_map(|d| {
            std::iter::once(d.kernel.value.as_str())
                .chain(d.ramdisk.iter().map(|x| x.value.as_str()))
        })
        .chain(m.dom0.iter().flat_map(|d| {
            std::iter::once(d.kernel.value.as_str())
                .chain(d.ramdisk.iter().map(|x| x.value.as_str()))
        }))
        .chain(std::iter::once(xen.as_str()))
        .filter(|s| s.starts_with("debian:") || s.starts_with("builtin:"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !sources.is_empty() {
        r.note(f, 0, "sources", format!("{sources:?} are domforge sources, not files: ImageBuilder needs files there (`domforge build -o DIR` writes them)"));
    }
    Ok((o, r))
}
