//! Imports of real-world shaped configs, checked against independent references:
//!
//! - the expected manifest values are written by hand from the formats' documentation (xl.cfg(5):
//!   `memory` counts MiB, `cpus = [..]` pins vCPU i, `cmdline` wins over `root`/`extra`, which xl
//!   joins as `root=X extra`; ImageBuilder's README: `DOMU_MEM` counts MB with a 512 default,
//!   `DOM0_MEM` is ignored when `XEN_CMD` is set, `DOMU_STATIC_MEM` pairs set the memory to their
//!   total and `DOMU_DIRECT_MAP` defaults to 1), never taken from the importer's output;
//! - what the importer writes is read back by domforge's own manifest parser and validator
//!   (`firmware_config`), which is the definition of a manifest;
//! - the bash reader is compared with bash itself: every variable the config sets, as bash sets it
//!   after `source`-ing the file;
//! - every key of every input appears in the report (nothing dropped silently).

#[path = "../../firmware-config/fuzz/common/fixtures.rs"]
mod fixtures;

use firmware_config::board::{Board, builtin_board};
use firmware_config::manifest::{Console, Manifest, OnCrash, Role};
use firmware_config::units::MIB;
use firmware_config::validate::{self, CheckInput};
use migrate::imagebuilder::{self, ImageBuilderOptions};
use migrate::report::Outcome;
use migrate::xl::{self, XlOptions};
use migrate::{InputFile, Paths};
use std::path::Path;
use std::process::Command;

fn input(name: &str) -> InputFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name);
    InputFile::new(name, std::fs::read_to_string(&path).unwrap())
}

fn board(name: &str) -> Board {
    Board::parse(builtin_board(name).unwrap()).unwrap()
}

fn parse(toml: &str) -> Manifest {
    Manifest::parse(toml)
        .unwrap_or_else(|d| panic!("the written manifest does not parse: {d:?}\n{toml}"))
}

#[test]
fn xl_pvh_guest_maps_memory_in_mib_cpus_and_cmdline_and_reports_the_rest() {
    let b = board("qemu-x86_64");
    let opts = XlOptions {
        board_name: "qemu-x86_64".into(),
        ..XlOptions::default()
    };
    let out = xl::import(&[input("web.cfg")], &b, &opts).unwrap();
    let text = out.manifest.to_toml("imported");
    let m = parse(&text);
    let d = &m.domains[0];
    assert_eq!(d.name.value, "web-frontend");
    assert_eq!(d.memory.value, 256 * MIB, "xl's memory = 256 is MiB");
    assert_eq!(d.vcpus.value, 2);
    let aff: Vec<Vec<u32>> = d.vcpu_affinity.iter().map(|a| a.value.0.clone()).collect();
    assert_eq!(aff, [vec![0], vec![1]]);
    assert_eq!(
        d.cmdline.as_ref().unwrap().value,
        "root=/dev/ram0 console=hvc0 quiet"
    );
    assert_eq!(d.on_crash(), OnCrash::Restart);
    assert_eq!(d.pci.len(), 1);
    assert_eq!(d.pci[0].value.bus, 3);
    assert!(m.dom0.is_some(), "x86 needs a dom0 for domforge-init");
    for key in ["vif", "disk", "on_reboot"] {
        let item = out
            .report
            .find(key)
            .unwrap_or_else(|| panic!("{key} not in the report"));
        assert!(
            matches!(item.outcome, Outcome::Unsupported(_)),
            "{key}: {item:?}"
        );
    }
    assert!(
        out.report.items.iter().any(|i| i.key == "pci"
            && matches!(&i.outcome, Outcome::Note(t) if t.contains("permissive=1")))
    );
    // The validator says why the PCI device cannot go to a PVH guest (E0219), as the report promised.
    let (xb, inv) = fixtures::qemu_x86_board();
    let arts = fixtures::artifacts_for(&m, xb.arch);
    let diags = validate::check(CheckInput {
        manifest: &m,
        board: &xb,
        inventory: &inv,
        artifacts: &arts,
    });
    let codes: Vec<&str> = diags.errors().map(|d| d.code).collect();
    assert!(codes.contains(&"E0219"), "{codes:?}");
}

#[test]
fn xl_arm_guests_map_dtdev_vuart_and_raw_grants() {
    let b = board("qemu-virt-arm64");
    let opts = XlOptions {
        board_name: "qemu-virt-arm64".into(),
        system_name: Some("from-xl".into()),
        paths: Paths {
            prefix: "/srv/guests".into(),
        },
    };
    let out = xl::import(&[input("rtc.cfg"), input("mmio.cfg")], &b, &opts).unwrap();
    let m = parse(&out.manifest.to_toml(""));
    assert_eq!(m.system.name.value, "from-xl");
    let rtc = m.domain("rtc").unwrap();
    assert_eq!(rtc.memory.value, 128 * MIB);
    assert_eq!(rtc.passthrough[0].value, "/pl031@9010000");
    assert_eq!(rtc.console.as_ref().unwrap().value, Console::Vpl011);
    assert_eq!(
        rtc.cmdline.as_ref().unwrap().value,
        "console=ttyAMA0 domforge.name=rtc",
        "cmdline wins over extra"
    );
    assert_eq!(
        rtc.kernel.value, "/srv/guests/Image",
        "relative paths are rebased"
    );
    let mmio = m.domain("mmio").unwrap();
    assert_eq!(mmio.memory.value, 64 * MIB);
    assert_eq!(mmio.iomem[0].value.first_mfn, 0x9030);
    assert_eq!(mmio.irqs[0].value, 39);
    assert_eq!(
        mmio.builder(),
        firmware_config::manifest::Builder::Init,
        "raw grants need domforge-init"
    );
    assert!(m.dom0.is_some());
    for key in ["device_tree", "uuid"] {
        assert!(
            matches!(
                out.report.find(key).unwrap().outcome,
                Outcome::Unsupported(_)
            ),
            "{key}"
        );
    }
    assert!(matches!(
        out.report.find("extra").unwrap().outcome,
        Outcome::Note(_)
    ));
    // The validator explains what the import could not decide: QEMU's PL031 sits behind no IOMMU.
    let inv = fixtures::qemu_virt_inventory();
    let arts = fixtures::artifacts_for(&m, b.arch);
    let diags = validate::check(CheckInput {
        manifest: &m,
        board: &b,
        inventory: &inv,
        artifacts: &arts,
    });
    let codes: Vec<&str> = diags.errors().map(|d| d.code).collect();
    assert_eq!(codes, ["E0213"], "{diags:?}");
}

#[test]
fn every_xl_setting_is_in_the_report() {
    for name in ["web.cfg", "rtc.cfg", "mmio.cfg"] {
        let f = input(name);
        let settings = migrate::xl_syntax::parse(&f.name, &f.text).unwrap();
        let b = board(if name == "web.cfg" {
            "qemu-x86_64"
        } else {
            "qemu-virt-arm64"
        });
        let out = xl::import(
            std::slice::from_ref(&f),
            &b,
            &XlOptions {
                board_name: "b".into(),
                ..XlOptions::default()
            },
        )
        .unwrap();
        for s in settings {
            assert!(
                out.report
                    .items
                    .iter()
                    .any(|i| i.key == s.key && i.line == s.line),
                "{name}: `{}` (line {}) missing from the report",
                s.key,
                s.line
            );
        }
    }
}

#[test]
fn xl_syntax_errors_name_the_file_line_and_column() {
    let f = InputFile::new("bad.cfg", "name = \"x\"\nmemory = 256M\n");
    let b = board("qemu-virt-arm64");
    let e = xl::import(&[f], &b, &XlOptions::default()).unwrap_err();
    assert_eq!(e.to_string().split(": ").next().unwrap(), "bad.cfg:2:10");
}

/// Every variable bash sets when it sources `file`, as `NAME=value` or `NAME[i]=value`, sorted.
fn bash_reference(file: &InputFile, names: &[String]) -> Option<Vec<String>> {
    let dir = std::env::temp_dir().join(format!("migrate-bash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(&file.name);
    std::fs::write(&path, &file.text).ok()?;
    let script = r#"source "$1"; shift
for n in "$@"; do
  if [[ "$(declare -p "$n" 2>/dev/null)" == "declare -a"* ]]; then
    eval 'for k in "${!'"$n"'[@]}"; do printf "%s[%s]=%s\0" "$n" "$k" "${'"$n"'[$k]}"; done'
  else printf "%s=%s\0" "$n" "${!n}"; fi
done"#;
    let out = Command::new("bash")
        .arg("--norc")
        .arg("--noprofile")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(&path)
        .args(names)
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .ok()?
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    Some(v)
}

#[test]
fn the_bash_reader_agrees_with_bash() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no bash");
        return;
    }
    for name in ["readme-config", "static-config"] {
        let f = input(name);
        let data = imagebuilder::read_config(&f).unwrap();
        let names: Vec<String> = data.vars.keys().cloned().collect();
        let mut ours: Vec<String> = Vec::new();
        for (n, v) in &data.vars {
            match v {
                migrate::bash::BashValue::Scalar(s) => ours.push(format!("{n}={s}")),
                migrate::bash::BashValue::Array(a) => {
                    ours.extend(a.iter().map(|(i, s)| format!("{n}[{i}]={s}")))
                }
            }
        }
        ours.sort();
        assert_eq!(Some(ours), bash_reference(&f, &names), "{name}");
    }
}

#[test]
fn imagebuilder_readme_config_derives_a_board_and_maps_dom0_from_xen_cmd() {
    let f = input("readme-config");
    let data = imagebuilder::read_config(&f).unwrap();
    let opts = ImageBuilderOptions {
        system_name: Some("zynqmp".into()),
        paths: Paths::default(),
        ..Default::default()
    };
    let name = imagebuilder::system_name(&data, &opts);
    let choice = imagebuilder::choose_board(&f, &data, None, &name, &opts.paths).unwrap();
    assert_eq!(choice.name, "zynqmp-board.toml");
    let b = Board::parse(choice.derived.as_ref().unwrap()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        b.module_window.unwrap(),
        firmware_config::board::Region::new(0, 0x8000_0000)
    );
    assert_eq!(
        b.console_uart.as_deref(),
        Some("serial0"),
        "from XEN_CMD dtuart="
    );
    assert_eq!(
        b.dtb,
        firmware_config::board::DtbSource::File("mpsoc.dtb".into())
    );
    let out = imagebuilder::import(&f, &data, &choice, &b, None, &opts).unwrap();
    let m = parse(&out.manifest.to_toml(""));
    let d0 = m.dom0.as_ref().unwrap();
    assert_eq!(
        d0.memory.as_ref().unwrap().value,
        1024 * MIB,
        "dom0_mem=1G from XEN_CMD"
    );
    assert_eq!(d0.kernel.value, "Image-dom0");
    assert_eq!(
        m.system.xen_cmdline.as_ref().unwrap().value,
        "bootscrub=0 vwfi=native sched=null"
    );
    assert_eq!(m.system.hypervisor.as_ref().unwrap().value, "xen");
    let d = &m.domains[0];
    assert_eq!(d.memory.value, 512 * MIB, "DOMU_MEM defaults to 512 MB");
    assert_eq!(
        d.kernel.value, "zynqmp-dom1/Image-domU",
        "$DOMU_DIR expanded"
    );
    assert_eq!(
        d.ramdisk.as_ref().unwrap().value,
        "zynqmp-dom1/domU-ramdisk.cpio"
    );
    let paths: Vec<&str> = d.passthrough.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(paths, ["/axi/ethernet@ff0e0000", "/axi/serial@ff000000"]);
    assert!(
        d.cmdline
            .as_ref()
            .unwrap()
            .value
            .ends_with("clk_ignore_unused rdinit=/sbin/init root=/dev/ram0 init=/bin/sh"),
        "continuation joined"
    );
    assert_eq!(d.llc_colors.as_ref().unwrap().value, "6-14");
    assert_eq!(m.domains[1].memory.value, 512 * MIB);
    assert_eq!(m.domains.len(), 2);
    let unsupported: Vec<&str> = out
        .report
        .unsupported_items()
        .map(|i| i.key.as_str())
        .collect();
    for k in [
        "DOMU_KERNEL[2]",
        "DT_OVERLAY[0]",
        "NUM_DT_OVERLAY",
        "BITSTREAM",
        "LOAD_CMD",
        "UBOOT_SCRIPT",
    ] {
        assert!(
            unsupported.contains(&k),
            "{k} not reported unsupported: {unsupported:?}"
        );
    }
    assert!(
        matches!(
            out.report.find("DOM0_MEM").unwrap().outcome,
            Outcome::Note(_)
        ),
        "ignored as ImageBuilder does with XEN_CMD"
    );
    // Every assignment is in the report.
    for a in &data.assignments {
        let key = a
            .index
            .map_or(a.name.clone(), |i| format!("{}[{i}]", a.name));
        assert!(
            out.report
                .items
                .iter()
                .any(|i| i.key == key || i.key == a.name),
            "{key} missing from the report"
        );
    }
}

#[test]
fn imagebuilder_static_memory_cpupools_and_caps_validate_on_qemu_virt() {
    let f = input("static-config");
    let data = imagebuilder::read_config(&f).unwrap();
    let opts = ImageBuilderOptions::default();
    let choice =
        imagebuilder::choose_board(&f, &data, Some("qemu-virt-arm64"), "x", &opts.paths).unwrap();
    let b = board("qemu-virt-arm64");
    let inv = fixtures::qemu_virt_inventory();
    let out = imagebuilder::import(&f, &data, &choice, &b, Some(&inv), &opts).unwrap();
    let mut m = parse(&out.manifest.to_toml(""));
    let d = &m.domains[0];
    assert_eq!(d.memory.value, 256 * MIB, "the static total (2 x 128 MiB)");
    assert_eq!(d.static_memory.len(), 2);
    assert_eq!(d.static_memory[1].value.base, 0x7000_0000);
    assert!(d.direct_map(), "DOMU_DIRECT_MAP defaults to 1");
    assert_eq!(
        d.enhanced.as_ref().unwrap().value,
        firmware_config::manifest::Enhanced::Disabled
    );
    assert_eq!(d.cpupool.as_ref().unwrap().value, "pool0");
    assert_eq!(
        m.cpupools[0]
            .cpus
            .value
            .iter()
            .map(|c| c.value)
            .collect::<Vec<_>>(),
        [1],
        "cpu@1 is the second CPU of QEMU virt's DT"
    );
    assert_eq!(m.cpupools[0].scheduler.as_ref().unwrap().value, "null");
    let d1 = &m.domains[1];
    assert_eq!(d1.memory.value, 700 * MIB);
    assert!(
        d1.has_role(Role::Hardware) && d1.has_role(Role::Xenstore) && !d1.has_role(Role::Control)
    );
    assert!(
        m.system.xen_cmdline.is_none(),
        "console and the board's bootscrub=0 are left out"
    );
    let features: Vec<&str> = m
        .system
        .xen_features
        .iter()
        .map(|x| x.value.as_str())
        .collect();
    assert_eq!(features, ["static-memory", "boot-cpupools"]);
    // Hardware/xenstore roles need Xen 4.21; with that, the validator accepts the system.
    m.system.xen.value = firmware_config::xen::XenVersion::V4_21;
    let arts = fixtures::artifacts_for(&m, b.arch);
    let diags = validate::check(CheckInput {
        manifest: &m,
        board: &b,
        inventory: &inv,
        artifacts: &arts,
    });
    assert!(!diags.has_errors(), "{diags:?}");
}

#[test]
fn imagebuilder_code_is_refused_with_its_line() {
    let f = InputFile::new(
        "config",
        "NUM_DOMUS=1\nfor i in 0; do DOMU_KERNEL[$i]=Image; done\n",
    );
    let e = imagebuilder::read_config(&f).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("loop"), "{e}");
}

#[test]
fn a_passthrough_dtb_gives_its_xen_paths() {
    // The partial DT ImageBuilder's README passes as DOMU_PASSTHROUGH_DTB, compiled by dtc (the
    // reference DT compiler); its /passthrough nodes name their host devices in `xen,path`
    // (docs/misc/arm/passthrough.txt).
    let dir = std::env::temp_dir().join(format!("migrate-dtb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dts = "/dts-v1/;\n/ {\n #address-cells = <2>;\n #size-cells = <2>;\n passthrough {\n  compatible = \"simple-bus\";\n  ranges;\n  #address-cells = <2>;\n  #size-cells = <2>;\n  rtc@9010000 {\n   compatible = \"arm,pl031\", \"arm,primecell\";\n   reg = <0x0 0x9010000 0x0 0x1000>;\n   interrupts = <0 2 4>;\n   xen,reg = <0x0 0x9010000 0x0 0x1000 0x0 0x9010000>;\n   xen,path = \"/pl031@9010000\";\n  };\n };\n};\n";
    std::fs::write(dir.join("rtc.dts"), dts).unwrap();
    let compiled = Command::new("dtc")
        .args(["-I", "dts", "-O", "dtb", "-o"])
        .arg(dir.join("rtc.dtb"))
        .arg(dir.join("rtc.dts"))
        .status();
    if !compiled.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dtc is missing"
        );
        eprintln!("skipped: no dtc");
        return;
    }
    let config = "MEMORY_START=0x40000000\nMEMORY_END=0xC0000000\nDEVICE_TREE=virt.dtb\nNUM_DOMUS=1\nDOMU_KERNEL[0]=Image\nDOMU_PASSTHROUGH_DTB[0]=rtc.dtb\n";
    std::fs::write(dir.join("config"), config).unwrap();
    let out = migrate::files::import_imagebuilder(
        &dir.join("config"),
        None,
        Some("qemu-virt-arm64"),
        None,
        Some(&dir.join("m.toml")),
        |_, _| None,
    )
    .unwrap();
    let m = parse(&out.manifest.to_toml(""));
    assert_eq!(
        m.domains[0]
            .passthrough
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>(),
        ["/pl031@9010000"]
    );
    assert!(matches!(
        out.report.find("DOMU_PASSTHROUGH_DTB[0]").unwrap().outcome,
        Outcome::Mapped(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_cpus_string_pins_every_vcpu_wherever_vcpus_is_set() {
    let f = InputFile::new(
        "p.cfg",
        "name = \"p\"\ncpus = \"2-3\"\nkernel = \"k\"\nvcpus = 2\n",
    );
    let out = xl::import(
        &[f],
        &board("qemu-x86_64"),
        &XlOptions {
            board_name: "qemu-x86_64".into(),
            ..XlOptions::default()
        },
    )
    .unwrap();
    let m = parse(&out.manifest.to_toml(""));
    let aff: Vec<Vec<u32>> = m.domains[0]
        .vcpu_affinity
        .iter()
        .map(|a| a.value.0.clone())
        .collect();
    assert_eq!(aff, [vec![2, 3], vec![2, 3]]);
    assert_eq!(
        m.domains[0].memory.value,
        32 * MIB,
        "libxl's default when `memory` is absent (libxl_create.c: max_memkb = 32 * 1024)"
    );
}

#[test]
fn dom0_gets_imagebuilders_default_memory_without_xen_cmd() {
    // README: DOM0_MEM "The default is 1024. This is only applicable when XEN_CMD is not specified."
    let f = InputFile::new(
        "config",
        "MEMORY_START=0x40000000\nMEMORY_END=0x80000000\nDEVICE_TREE=virt.dtb\nDOM0_KERNEL=Image\nNUM_DOMUS=0\n",
    );
    let data = imagebuilder::read_config(&f).unwrap();
    let opts = ImageBuilderOptions::default();
    let choice =
        imagebuilder::choose_board(&f, &data, Some("qemu-virt-arm64"), "x", &opts.paths).unwrap();
    let out =
        imagebuilder::import(&f, &data, &choice, &board("qemu-virt-arm64"), None, &opts).unwrap();
    let m = parse(&out.manifest.to_toml(""));
    assert_eq!(m.dom0.unwrap().memory.unwrap().value, 1024 * MIB);
}
