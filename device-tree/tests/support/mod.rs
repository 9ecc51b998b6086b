//! Test support: real device trees and the independent tools (`dtc`, `fdtget`) the tests check against.
//!
//! - QEMU virt DTBs are dumped at test time (`qemu-system-aarch64 ... -machine dumpdtb=FILE`).
//! - The Raspberry Pi 4 and ZCU102 DTBs come from Debian's arm64 kernel package, fetched and verified by
//!   `debian_fetch::Fetcher` into `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/` (never committed).
//! - A missing prerequisite skips the test with a printed reason, except in CI (`CI=true`) where it
//!   fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns `None`) outside CI, panics in CI.
pub fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("CI=true and a test prerequisite is missing: {what}");
    }
    eprintln!("SKIPPED: {what}");
    None
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("domforge-dt-tests-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// QEMU virt's DTB for GIC version 2 or 3, with the machine options of qemu-recipes.md.
pub fn qemu_virt_dtb(gic: u8) -> Option<Vec<u8>> {
    let out = scratch(&format!("virt-gic{gic}.dtb"));
    let machine = format!(
        "virt,virtualization=on,gic-version={gic},dumpdtb={}",
        out.display()
    );
    let status = Command::new("qemu-system-aarch64")
        .args([
            "-machine",
            &machine,
            "-cpu",
            "cortex-a57",
            "-m",
            "2G",
            "-smp",
            "2",
            "-nographic",
        ])
        .output();
    match status {
        Ok(o) if o.status.success() => std::fs::read(&out).ok(),
        Ok(o) => missing(&format!(
            "qemu-system-aarch64 dumpdtb failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => missing(&format!(
            "qemu-system-aarch64 not runnable ({e}); apt-get install qemu-system-arm"
        )),
    }
}

static DTBS_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A DTB from Debian's arm64 kernel package, e.g. `broadcom/bcm2711-rpi-4-b.dtb`.
pub fn debian_dtb(rel: &str) -> Option<Vec<u8>> {
    let dir = DTBS_DIR.get_or_init(|| {
        let fetcher = debian_fetch::Fetcher::from_env().map_err(|e| e.to_string())?;
        let k = fetcher
            .linux_kernel(debian_fetch::Arch::Arm64)
            .map_err(|e| e.to_string())?;
        k.dtbs_dir
            .ok_or_else(|| "arm64 kernel package has no DTB directory".to_owned())
    });
    match dir {
        Ok(d) => match std::fs::read(d.join(rel)) {
            Ok(b) => Some(b),
            Err(e) => missing(&format!("{rel} in {}: {e}", d.display())),
        },
        Err(e) => missing(&format!("Debian arm64 kernel package (for {rel}): {e}")),
    }
}

pub fn rpi4() -> Option<Vec<u8>> {
    debian_dtb("broadcom/bcm2711-rpi-4-b.dtb")
}

pub fn zcu102() -> Option<Vec<u8>> {
    debian_dtb("xilinx/zynqmp-zcu102-rev1.0.dtb")
}

fn tool_present(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("-h").output().is_ok()
}

/// Runs `dtc` with `args`, feeding `input` through a file. `Err(stderr)` if dtc rejects it.
pub fn dtc(args: &[&str], input: &[u8], name: &str) -> Result<Vec<u8>, String> {
    assert!(
        tool_present("dtc"),
        "dtc is required by these tests (apt-get install device-tree-compiler)"
    );
    let f = scratch(name);
    std::fs::write(&f, input).map_err(|e| e.to_string())?;
    let o = Command::new("dtc")
        .args(args)
        .arg(&f)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// `dtc -I dtb -O dts`: dtc's own reading of a blob.
pub fn dtc_decompile(dtb: &[u8], name: &str) -> String {
    let out = dtc(&["-q", "-I", "dtb", "-O", "dts"], dtb, name)
        .unwrap_or_else(|e| panic!("dtc rejected the blob {name}: {e}"));
    String::from_utf8(out).expect("dtc prints UTF-8")
}

/// `dtc -I dts -O dtb`.
pub fn dtc_compile(dts: &str, name: &str) -> Result<Vec<u8>, String> {
    dtc(&["-q", "-I", "dts", "-O", "dtb"], dts.as_bytes(), name)
}

/// `fdtget -t <ty> FILE NODE PROP`, the libfdt reading of one property (ty: `x` hex cells, `s`
/// strings, `bx` hex bytes). `None` when fdtget reports the property missing.
pub fn fdtget(dtb: &[u8], node: &str, prop: &str, ty: &str) -> Option<String> {
    let f = scratch(&format!(
        "fdtget-{}.dtb",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::write(&f, dtb).expect("write scratch blob");
    let o = Command::new("fdtget")
        .args(["-t", ty])
        .arg(&f)
        .args([node, prop])
        .output()
        .expect("fdtget is required (apt-get install device-tree-compiler)");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// `fdtget -l`: subnode names.
pub fn fdt_subnodes(dtb: &[u8], node: &str) -> Vec<String> {
    let f = scratch(&format!(
        "fdtls-{}.dtb",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::write(&f, dtb).expect("write scratch blob");
    let o = Command::new("fdtget")
        .arg("-l")
        .arg(&f)
        .arg(node)
        .output()
        .expect("fdtget");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `fdtget -p`: property names.
pub fn fdt_props(dtb: &[u8], node: &str) -> Vec<String> {
    let f = scratch(&format!(
        "fdtp-{}.dtb",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::write(&f, dtb).expect("write scratch blob");
    let o = Command::new("fdtget")
        .arg("-p")
        .arg(&f)
        .arg(node)
        .output()
        .expect("fdtget");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn rock_pi_4b() -> Option<Vec<u8>> {
    debian_dtb("rockchip/rk3399-rock-pi-4b.dtb")
}

pub fn imx8mq_evk() -> Option<Vec<u8>> {
    debian_dtb("freescale/imx8mq-evk.dtb")
}

/// Phandle → node path, read from dtc's decompiled source (`dtc -I dtb -O dts` prints one node header
/// `name {` and one `phandle = <0x..>;` line per node), not from the crate under test.
pub fn dtc_phandle_paths(dtb: &[u8], name: &str) -> std::collections::BTreeMap<u32, String> {
    let dts = dtc_decompile(dtb, name);
    let mut stack: Vec<String> = Vec::new();
    let mut out = std::collections::BTreeMap::new();
    for line in dts.lines().map(str::trim) {
        if let Some(node) = line.strip_suffix(" {") {
            stack.push(node.to_owned());
        } else if line == "};" {
            stack.pop();
        } else if let Some(v) = line
            .strip_prefix("phandle = <")
            .and_then(|v| v.strip_suffix(">;"))
        {
            let h = u32::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex phandle");
            // stack[0] is the root "/".
            let path = if stack.len() <= 1 {
                "/".to_owned()
            } else {
                format!("/{}", stack[1..].join("/"))
            };
            out.insert(h, path);
        }
    }
    out
}

/// `fdtget -t x` cells of a property, parsed.
pub fn fdt_cells(dtb: &[u8], node: &str, prop: &str) -> Option<Vec<u32>> {
    fdtget(dtb, node, prop, "x").map(|s| {
        s.split_whitespace()
            .map(|c| u32::from_str_radix(c, 16).expect("fdtget prints hex cells"))
            .collect()
    })
}

pub fn rzg2m() -> Option<Vec<u8>> {
    debian_dtb("renesas/r8a774a1-hihope-rzg2m-rev2.dtb")
}

/// A `/chosen` module node spec.
pub fn module(
    kind: device_tree::dom0less::ModuleKind,
    addr: u64,
    size: u64,
    bootargs: Option<&str>,
) -> device_tree::dom0less::ModuleSpec {
    device_tree::dom0less::ModuleSpec {
        kind,
        addr,
        size,
        bootargs: bootargs.map(str::to_owned),
    }
}

/// A plain dom0less domain: 128 MiB, one vCPU, vpl011, no modules (tests add theirs with
/// `DomainNodeSpec { modules, ..domain(name) }`).
pub fn domain(name: &str) -> device_tree::dom0less::DomainNodeSpec {
    device_tree::dom0less::DomainNodeSpec {
        node_name: device_tree::dom0less::DomainNodeSpec::default_node_name(name),
        memory_kib: 131_072,
        cpus: 1,
        vpl011: true,
        enhanced: None,
        static_mem: vec![],
        direct_map: false,
        cpupool: None,
        vcpu_affinity: vec![],
        modules: vec![],
        extra: vec![],
    }
}
