//! `domforge import xl`: xl.cfg files (one per domain, xl.cfg(5)) become one manifest.
//!
//! Every setting lands in the report: mapped (with the manifest key it became), or unsupported with
//! the reason and the domforge way to get the same effect, where there is one.

use crate::draft::{DraftDom0, DraftDomain, DraftManifest, DraftSystem, sanitize_name, size_text};
use crate::error::{ImportError, SyntaxError};
use crate::report::Report;
use crate::xl_syntax::{self, XlItem, XlSetting, XlValue};
use crate::{Imported, InputFile, Paths};
use firmware_config::board::{Arch, Board};
use firmware_config::manifest::{parse_cpu_list, parse_iomem, parse_pci};
use firmware_config::units::MIB;

/// Options of an xl import.
#[derive(Debug, Clone, Default)]
pub struct XlOptions {
    /// `[system] board` as the user named it (a built-in board or a board file path).
    pub board_name: String,
    /// `[system] name`; default `imported-xl`.
    pub system_name: Option<String>,
    /// How paths in the configs are rewritten for the manifest's directory.
    pub paths: Paths,
}

/// Reads every file and writes one manifest for `board`.
pub fn import(
    files: &[InputFile],
    board: &Board,
    opts: &XlOptions,
) -> Result<Imported, ImportError> {
    let mut report = Report::default();
    let mut manifest = DraftManifest {
        system: DraftSystem {
            name: opts
                .system_name
                .clone()
                .unwrap_or_else(|| "imported-xl".to_string()),
            board: opts.board_name.clone(),
            ..DraftSystem::default()
        },
        ..DraftManifest::default()
    };
    if files.is_empty() {
        return Err(ImportError::Input("no xl.cfg files given".into()));
    }
    let mut needs_dom0 = board.arch == Arch::X86_64;
    for f in files {
        let settings = xl_syntax::parse(&f.name, &f.text)?;
        let d = domain(f, &settings, board, opts, &mut report)?;
        if d.builder.as_deref() == Some("init") {
            needs_dom0 = true;
        }
        if let Some(other) = manifest.domains.iter().find(|o| o.name == d.name) {
            return Err(ImportError::Input(format!(
                "{}: a second domain named `{}`; domain names are unique in a manifest",
                f.name, other.name
            )));
        }
        manifest.domains.push(d);
    }
    if needs_dom0 {
        // xl itself runs in dom0, so the system being imported had one; domforge needs it on x86
        // (domforge-init runs there) and for domains domforge-init builds.
        manifest.dom0 = Some(DraftDom0 {
            kernel: "debian:kernel".into(),
            ..DraftDom0::default()
        });
        report.note(
            "(all)",
            0,
            "dom0",
            "xl runs in dom0, and domforge needs one here (it runs domforge-init, which builds the \
             guests): [dom0] kernel = \"debian:kernel\" was added; point it at your dom0 kernel",
        );
    }
    Ok(Imported {
        manifest,
        report,
        board_file: None,
    })
}

fn strs(v: &XlValue) -> Option<Vec<String>> {
    match v {
        XlValue::Str(s) => Some(vec![s.clone()]),
        XlValue::List(items) => items
            .iter()
            .map(|i| match &i.value {
                XlValue::Str(s) => Some(s.clone()),
                XlValue::Num(n) => Some(n.to_string()),
                XlValue::List(_) => None,
            })
            .collect(),
        XlValue::Num(n) => Some(vec![n.to_string()]),
    }
}

fn num(v: &XlValue) -> Option<i64> {
    match v {
        XlValue::Num(n) => Some(*n),
        XlValue::Str(s) => s.trim().parse().ok(),
        XlValue::List(_) => None,
    }
}

fn bad(f: &InputFile, s: &XlSetting, msg: impl Into<String>) -> ImportError {
    ImportError::Syntax(SyntaxError::new(
        &f.name,
        &f.text,
        s.value_span.clone(),
        msg,
    ))
}

fn item_err(f: &InputFile, i: &XlItem, msg: impl Into<String>) -> ImportError {
    ImportError::Syntax(SyntaxError::new(&f.name, &f.text, i.span.clone(), msg))
}

/// Keys xl knows that have no domforge equivalent, with the reason.
fn unsupported_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "vif" => {
            "domforge sets up no network backend (netback, bridge) at boot; pass a NIC through with `passthrough`, or connect domains with [[shared_memory]]"
        }
        "disk" => {
            "domforge sets up no block backend at boot; put the root filesystem in the `ramdisk`, or pass a storage controller through"
        }
        "on_poweroff" | "on_reboot" | "on_watchdog" | "on_soft_reset" => {
            "the manifest has no such policy; only `on_crash` is configurable (destroy or restart)"
        }
        "maxmem" => {
            "domforge gives each domain fixed memory (no ballooning); `memory` is what it gets"
        }
        "maxvcpus" => "no vCPU hot-plug at boot; `vcpus` is what the domain gets",
        "cpus_soft" => "soft affinity is not offered at boot; only hard affinity (`vcpu_affinity`)",
        "device_tree" => {
            "domforge writes each domain's partial device tree itself from the board's DT; list the devices by path (`dtdev` / `passthrough`)"
        }
        "bootloader" | "bootloader_args" => {
            "domforge boots kernels directly (kernel/ramdisk), not through a boot loader"
        }
        "builder" => "an old spelling of `type`; set `type`",
        "vnc" | "vncdisplay" | "vnclisten" | "vncpasswd" | "sdl" | "vfb" | "vkb" | "spice"
        | "serial" | "usb" | "usbdevice" | "soundhw" | "vga" | "videoram" | "stdvga" | "boot" => {
            "an HVM device-model setting; domforge builds no HVM guests and runs no QEMU device model"
        }
        "uuid" => "domforge does not set domain UUIDs",
        "seclabel" | "init_seclabel" | "device_model_stub_domain_seclabel" => {
            "XSM/FLASK labels are not set by domforge"
        }
        "gic_version" => {
            "guests get the board's GIC generation (the plan's `gic`); it is not chosen per domain"
        }
        "nr_spis" => "domforge sizes each guest's virtual SPIs from the interrupts it owns",
        "passthrough" => {
            "Xen sets up the IOMMU for a domain that is given devices; no switch is needed"
        }
        "pool" => "handled with `cpupool`",
        "channel" | "vdispl" | "vsnd" | "p9" | "pvcalls" | "vtpm" | "virtio" | "usbctrl"
        | "usbdev" => "a PV device with a backend in dom0; domforge starts no such backend",
        "localtime"
        | "rtc_timeoffset"
        | "timer_mode"
        | "hpet"
        | "acpi"
        | "apic"
        | "pae"
        | "viridian"
        | "nestedhvm"
        | "hap"
        | "shadow"
        | "tsc_mode"
        | "e820_host"
        | "xen_platform_pci"
        | "firmware"
        | "bios"
        | "device_model_version"
        | "device_model_override" => {
            "an HVM/PV x86 platform setting with no PVH equivalent in domforge"
        }
        "driver_domain" => "handled with `roles`",
        _ => return None,
    })
}

fn domain(
    f: &InputFile,
    settings: &[XlSetting],
    board: &Board,
    opts: &XlOptions,
    report: &mut Report,
) -> Result<DraftDomain, ImportError> {
    let get = |k: &str| settings.iter().find(|s| s.key == k);
    let file_stem = f
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&f.name)
        .trim_end_matches(".cfg")
        .to_string();
    let raw_name = match get("name") {
        Some(s) => match &s.value {
            XlValue::Str(n) => n.clone(),
            _ => return Err(bad(f, s, "`name` is a string")),
        },
        None => file_stem.clone(),
    };
    let name = sanitize_name(&raw_name).ok_or_else(|| {
        ImportError::Input(format!("{}: no usable domain name in `{raw_name}`", f.name))
    })?;
    let mut d = DraftDomain {
        name: name.clone(),
        kind: match board.arch {
            Arch::Arm64 => "arm64".into(),
            Arch::X86_64 => "pvh".into(),
        },
        vcpus: 1,
        ..DraftDomain::default()
    };
    let dn = format!("domain `{name}`");
    match get("name") {
        Some(s) if raw_name == name => report.mapped(&f.name, s.line, "name", format!("{dn} name")),
        Some(s) => report.note(
            &f.name,
            s.line,
            "name",
            format!("`{raw_name}` is not a valid domforge name (lowercase letters, digits, '-'): renamed `{name}`"),
        ),
        None => report.note(&f.name, 0, "name", format!("no `name`: named `{name}` after the file")),
    }
    // Memory: xl counts MiB (xl.cfg(5) `memory=MBYTES`). Unset, libxl gives 32 MiB
    // (libxl_create.c, libxl__domain_build_info_setdefault: `max_memkb = 32 * 1024`).
    match get("memory") {
        Some(s) => {
            let mib = num(&s.value)
                .filter(|m| *m > 0)
                .ok_or_else(|| bad(f, s, "`memory` is a positive number of MiB"))?;
            d.memory = size_text(mib as u64 * MIB);
            report.mapped(
                &f.name,
                s.line,
                "memory",
                format!("{dn} memory = \"{}\" (xl counts MiB)", d.memory),
            );
        }
        None => {
            d.memory = "32M".into();
            report.note(
                &f.name,
                0,
                "memory",
                format!("not set: {dn} memory = \"32M\", libxl's default"),
            );
        }
    }
    let mut cmdline_parts: Vec<String> = Vec::new();
    let has_cmdline = get("cmdline").is_some();
    // `cpus = "LIST"` pins every vCPU, however many `vcpus` (anywhere in the file) makes.
    if let Some(n) = get("vcpus")
        .and_then(|s| num(&s.value))
        .filter(|n| *n > 0 && *n <= 4096)
    {
        d.vcpus = n as u32;
    }
    let mut iomem_or_irqs = false;
    for s in settings {
        let k = s.key.as_str();
        let line = s.line;
        match k {
            "name" | "memory" => {}
            "type" => {
                let t = match &s.value {
                    XlValue::Str(t) => t.as_str(),
                    _ => return Err(bad(f, s, "`type` is a string: \"pv\", \"pvh\" or \"hvm\"")),
                };
                match (t, board.arch) {
                    ("pvh", Arch::X86_64) => report.mapped(&f.name, line, k, format!("{dn} kind = \"pvh\"")),
                    (_, Arch::Arm64) => report.mapped(&f.name, line, k, format!("{dn} kind = \"arm64\" (ARM guests have one type; xl ignores `type` there)")),
                    ("pv", _) => report.unsupported(&f.name, line, k, format!("{dn} was a PV guest; domforge builds PVH guests on x86 (kind = \"pvh\" was written): the kernel needs CONFIG_PVH=y")),
                    ("hvm", _) => report.unsupported(&f.name, line, k, format!("{dn} was an HVM guest; domforge builds PVH guests only (no device model): kind = \"pvh\" was written, and the kernel needs CONFIG_PVH=y")),
                    _ => return Err(bad(f, s, format!("`{t}` is not an xl guest type (pv, pvh, hvm)"))),
                }
            }
            "vcpus" => {
                let n = num(&s.value).filter(|n| *n > 0 && *n <= 4096).ok_or_else(|| bad(f, s, "`vcpus` is a positive number"))?;
                d.vcpus = n as u32;
                report.mapped(&f.name, line, k, format!("{dn} vcpus = {n}"));
            }
            "cpus" => match &s.value {
                XlValue::Str(c) if c.trim() == "all" => report.mapped(&f.name, line, k, "\"all\" is domforge's default (no pinning)"),
                XlValue::Str(c) if c.contains('^') || c.contains("node") || c.contains("socket") => report.unsupported(&f.name, line, k, format!("`{c}`: exclusions (^) and node/socket selections are xl's; write plain CPU numbers and ranges in `vcpu_affinity`")),
                XlValue::Str(c) => {
                    parse_cpu_list(c).map_err(|e| bad(f, s, format!("`cpus`: {e}")))?;
                    // One string pins every vCPU to that set (xl.cfg(5) `cpus="CPULIST"`).
                    d.vcpu_affinity = vec![c.trim().to_string(); d.vcpus.max(1) as usize];
                    report.mapped(&f.name, line, k, format!("{dn} vcpu_affinity: every vCPU on \"{c}\" (Xen 4.21 reads per-vCPU affinity at boot)"));
                }
                XlValue::List(items) => {
                    for i in items {
                        let XlValue::Str(c) = &i.value else {
                            return Err(item_err(f, i, "each `cpus` entry is a quoted cpu list"));
                        };
                        parse_cpu_list(c).map_err(|e| item_err(f, i, format!("`cpus`: {e}")))?;
                        d.vcpu_affinity.push(c.trim().to_string());
                    }
                    report.mapped(&f.name, line, k, format!("{dn} vcpu_affinity (entry i pins vCPU i; Xen 4.21)"));
                }
                XlValue::Num(n) => {
                    d.vcpu_affinity = vec![n.to_string(); d.vcpus.max(1) as usize];
                    report.mapped(&f.name, line, k, format!("{dn} vcpu_affinity: every vCPU on CPU {n} (Xen 4.21)"));
                }
            },
            "kernel" | "ramdisk" => {
                let XlValue::Str(p) = &s.value else { return Err(bad(f, s, format!("`{k}` is a quoted path"))) };
                let p = opts.paths.rebase(p);
                report.mapped(&f.name, line, k, format!("{dn} {k} = \"{p}\""));
                if k == "kernel" {
                    d.kernel = p;
                } else {
                    d.ramdisk = Some(p);
                }
            }
            "cmdline" => {
                let XlValue::Str(c) = &s.value else { return Err(bad(f, s, "`cmdline` is a string")) };
                d.cmdline = Some(c.clone());
                report.mapped(&f.name, line, k, format!("{dn} cmdline"));
            }
            "root" | "extra" if has_cmdline => report.note(&f.name, line, k, "ignored, as xl ignores it when `cmdline` is set"),
            "root" => {
                let XlValue::Str(c) = &s.value else { return Err(bad(f, s, "`root` is a string")) };
                cmdline_parts.insert(0, format!("root={c}"));
                report.mapped(&f.name, line, k, format!("{dn} cmdline gets \"root={c}\" first, as xl builds it"));
            }
            "extra" => {
                let XlValue::Str(c) = &s.value else { return Err(bad(f, s, "`extra` is a string")) };
                cmdline_parts.push(c.clone());
                report.mapped(&f.name, line, k, format!("{dn} cmdline"));
            }
            "dtdev" => {
                let paths = strs(&s.value).ok_or_else(|| bad(f, s, "`dtdev` is a list of device-tree paths"))?;
                if board.arch != Arch::Arm64 {
                    report.unsupported(&f.name, line, k, "device-tree passthrough exists on ARM only");
                    continue;
                }
                report.mapped(&f.name, line, k, format!("{dn} passthrough = {paths:?} (domforge writes the partial device tree and routes the interrupts)"));
                d.passthrough = paths;
            }
            "iomem" => {
                let grants = strs(&s.value).ok_or_else(|| bad(f, s, "`iomem` is a list of \"START,PAGES[@GFN]\""))?;
                for g in &grants {
                    parse_iomem(g).map_err(|e| bad(f, s, format!("`iomem` \"{g}\": {e}")))?;
                }
                iomem_or_irqs = true;
                report.mapped(&f.name, line, k, format!("{dn} iomem = {grants:?} (same syntax)"));
                d.iomem = grants;
            }
            "irqs" => {
                let XlValue::List(items) = &s.value else { return Err(bad(f, s, "`irqs` is a list of numbers")) };
                for i in items {
                    let n = num(&i.value).filter(|n| (0..=1020).contains(n)).ok_or_else(|| item_err(f, i, "an interrupt number"))?;
                    d.irqs.push(n as u32);
                }
                iomem_or_irqs = true;
                report.mapped(&f.name, line, k, format!("{dn} irqs = {:?}", d.irqs));
            }
            "pci" => {
                let devs = strs(&s.value).ok_or_else(|| bad(f, s, "`pci` is a list of \"BDF[,options]\""))?;
                for dev in devs {
                    let (bdf, options) = dev.split_once(',').map_or((dev.as_str(), None), |(a, b)| (a, Some(b)));
                    // xl-pci-configuration(5): `[DDDD:]BB:DD.F[@VSLOT]`, options after a comma.
                    let bdf = bdf.split('@').next().unwrap_or(bdf).trim();
                    if parse_pci(bdf).is_none() {
                        return Err(bad(f, s, format!("`{bdf}` is not a PCI address")));
                    }
                    d.pci.push(bdf.to_string());
                    if let Some(o) = options {
                        report.note(&f.name, line, k, format!("options `{o}` of {bdf} dropped: domforge takes the address only"));
                    }
                }
                report.mapped(&f.name, line, k, format!("{dn} pci = {:?}; `domforge check` refuses it with the reason (Xen gives PCI devices to neither PVH nor dom0less guests)", d.pci));
            }
            "on_crash" => {
                let XlValue::Str(a) = &s.value else { return Err(bad(f, s, "`on_crash` is a string")) };
                match a.as_str() {
                    "destroy" | "restart" => {
                        d.on_crash = Some(a.clone());
                        report.mapped(&f.name, line, k, format!("{dn} on_crash = \"{a}\""));
                    }
                    other => report.unsupported(&f.name, line, k, format!("`{other}`: domforge-init destroys or restarts a crashed domain; coredumps, preserve, rename and soft reset are xl's")),
                }
            }
            "vuart" => match &s.value {
                XlValue::Str(v) if v == "sbsa_uart" => {
                    d.console = Some("vpl011".into());
                    report.mapped(&f.name, line, k, format!("{dn} console = \"vpl011\""));
                }
                _ => report.unsupported(&f.name, line, k, "only \"sbsa_uart\" exists (console = \"vpl011\")"),
            },
            "pool" => {
                let XlValue::Str(p) = &s.value else { return Err(bad(f, s, "`pool` is a string")) };
                if p == "Pool-0" {
                    report.mapped(&f.name, line, k, "Pool-0 is the default");
                } else {
                    let pn = sanitize_name(p).unwrap_or_else(|| "pool".into());
                    d.cpupool = Some(pn.clone());
                    report.note(&f.name, line, k, format!("{dn} cpupool = \"{pn}\"; xl pools are made by `xl cpupool-create`, so add a [[cpupool]] named `{pn}` with its CPUs (`domforge check` says so until then)"));
                }
            }
            "driver_domain" => {
                if num(&s.value).unwrap_or(0) != 0 {
                    d.roles = vec!["driver".into()];
                    report.mapped(&f.name, line, k, format!("{dn} roles = [\"driver\"]"));
                } else {
                    report.mapped(&f.name, line, k, "0 is the default");
                }
            }
            "max_grant_frames" | "max_maptrack_frames" => {
                let n = num(&s.value).filter(|n| *n >= 0 && *n <= u32::MAX as i64).ok_or_else(|| bad(f, s, "a number"))? as u32;
                if k == "max_grant_frames" {
                    d.max_grant_frames = Some(n);
                } else {
                    d.max_maptrack_frames = Some(n);
                }
                report.mapped(&f.name, line, k, format!("{dn} {k} = {n}"));
            }
            "shadow_memory" => {
                let mib = num(&s.value).filter(|n| *n > 0).ok_or_else(|| bad(f, s, "MiB"))?;
                d.p2m_pool = Some(size_text(mib as u64 * MIB));
                report.mapped(&f.name, line, k, format!("{dn} p2m_pool = \"{}\"", size_text(mib as u64 * MIB)));
            }
            "sve" => {
                let bits = match &s.value {
                    XlValue::Str(h) if h == "hw" => 0,
                    v => num(v).filter(|n| *n >= 0).ok_or_else(|| bad(f, s, "`sve` is a vector length in bits or \"hw\""))? as u32,
                };
                d.sve = Some(bits);
                report.mapped(&f.name, line, k, format!("{dn} sve = {bits}"));
            }
            "llc_colors" => {
                let parts = strs(&s.value).ok_or_else(|| bad(f, s, "`llc_colors` is a list of colour ranges"))?;
                let joined = parts.join(",");
                report.mapped(&f.name, line, k, format!("{dn} llc_colors = \"{joined}\""));
                d.llc_colors = Some(joined);
            }
            _ => match unsupported_reason(k) {
                Some(why) => report.unsupported(&f.name, line, k, why),
                None => report.unsupported(&f.name, line, k, "not an xl.cfg(5) key domforge knows; nothing was carried over"),
            },
        }
    }
    if !cmdline_parts.is_empty() {
        d.cmdline = Some(cmdline_parts.join(" "));
    }
    if d.kernel.is_empty() {
        return Err(ImportError::Input(format!(
            "{}: no `kernel`; domforge boots every domain from a kernel image (bootloaders such as pygrub are not used)",
            f.name
        )));
    }
    if d.vcpu_affinity.len() > d.vcpus as usize {
        d.vcpu_affinity.truncate(d.vcpus as usize);
    }
    if iomem_or_irqs && board.arch == Arch::Arm64 {
        // Xen's dom0less builder takes no raw iomem/irq grants (E0247); domforge-init does.
        d.builder = Some("init".into());
        report.note(&f.name, 0, "iomem/irqs", format!("{dn} builder = \"init\": raw iomem/irqs grants are made by domforge-init from dom0 (as xl did); Xen's dom0less builder cannot make them"));
    }
    Ok(d)
}
