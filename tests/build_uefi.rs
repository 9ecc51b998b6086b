//! The `uefi` target's image read back with independent tools (issue 18): `sfdisk --json` for the
//! GPT, mtools (`mdir`, `mcopy -i uefi.img@@1M`) for the ESP, `fdtget` for the host DTB on it.
//! Checks: one EFI system partition at 1 MiB; `EFI/BOOT/BOOTAA64.EFI` is the bundle's Xen byte for
//! byte and a PE image for arm64; `BOOTAA64.cfg` gives Xen the plan's command line (`options=`) and
//! the DTB beside it (`dtb=`) and names no kernel; every `/chosen` module node of that DTB names a
//! file on the ESP by `xen,uefi-binary`, has no `reg`, and that file is the module's bytes; the
//! kernel the three domUs share is on the ESP once. Scenario 1 (no domforge-init needed).

mod common;
use std::path::Path;

const TEST: &str = "build_uefi";

fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    common::tool(cmd, args, Path::new("."), None)
}

fn text(cmd: &str, args: &[&str]) -> String {
    String::from_utf8(run(cmd, args)).expect("UTF-8")
}

#[test]
fn uefi_image_read_back_with_sfdisk_mtools_and_fdtget() {
    if !test_support::need_tools(
        TEST,
        &[
            ("sfdisk", "fdisk"),
            ("mcopy", "mtools"),
            ("fdtget", "device-tree-compiler"),
        ],
    ) {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_uefi");
    let _ = std::fs::remove_dir_all(&tmp);
    let scenario = "tests/scenarios/1-three-domus-gicv3.toml";
    let Some(common::Built { plan, out, .. }) =
        common::build(TEST, scenario, &common::quiet(), &tmp.join("out"))
    else {
        return;
    };
    let image = out.dir.join("uefi.img");
    let img = format!("{}@@1M", image.display());

    // The GPT: one EFI system partition (type C12A7328-...) at sector 2048.
    let table: serde_json::Value =
        serde_json::from_slice(&run("sfdisk", &["--json", &image.display().to_string()]))
            .expect("sfdisk json");
    let table = &table["partitiontable"];
    assert_eq!(table["label"], "gpt");
    let parts = table["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");

    let get = |name: &str| -> Vec<u8> {
        run(
            "mcopy",
            &["-n", "-i", &img, &format!("::EFI/BOOT/{name}"), "-"],
        )
    };

    // Xen's EFI loader is the bundle's Xen, a PE image for arm64 (IMAGE_FILE_MACHINE_ARM64).
    let efi = get("BOOTAA64.EFI");
    let xen = std::fs::read(out.dir.join("modules/xen")).expect("xen");
    assert_eq!(efi, xen, "BOOTAA64.EFI is the bundle's Xen");
    let pe = u32::from_le_bytes(efi[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&efi[..2], b"MZ");
    assert_eq!(&efi[pe..pe + 6], b"PE\0\0\x64\xaa");

    // The config: the plan's Xen command line, the DTB beside it, no kernel= line.
    let cfg = String::from_utf8(get("BOOTAA64.cfg")).expect("cfg text");
    let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.contains(&"[global]") && lines.contains(&"default=xen"));
    assert!(lines.contains(&"[xen]"), "{cfg}");
    assert_eq!(
        lines.iter().find_map(|l| l.strip_prefix("options=")),
        Some(plan.xen_cmdline.as_str()),
        "{cfg}"
    );
    assert_eq!(
        lines.iter().find_map(|l| l.strip_prefix("dtb=")),
        Some("host.dtb")
    );
    assert!(!lines.iter().any(|l| l.starts_with("kernel=")), "{cfg}");

    // The DTB on the ESP: each /chosen module node names its file, with no reg.
    let dtb = tmp.join("esp-host.dtb");
    std::fs::write(&dtb, get("host.dtb")).expect("write dtb");
    let dtb = dtb.display().to_string();
    let listing = text("mdir", &["-b", "-i", &img, "::EFI/BOOT"]);
    let on_esp: Vec<String> = listing
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(str::to_string)
        .collect();
    let mut named = Vec::new();
    for domain in text("fdtget", &["-l", &dtb, "/chosen"]).split_whitespace() {
        let node = format!("/chosen/{domain}");
        for module in text("fdtget", &["-l", &dtb, &node]).split_whitespace() {
            let path = format!("{node}/{module}");
            let props = text("fdtget", &["-p", &dtb, &path]);
            if !text("fdtget", &["-t", "s", &dtb, &path, "compatible"]).contains("multiboot,module")
            {
                continue;
            }
            assert!(
                !props.lines().any(|p| p == "reg"),
                "{path} keeps a reg: {props}"
            );
            let file = text("fdtget", &["-t", "s", &dtb, &path, "xen,uefi-binary"])
                .trim()
                .to_string();
            assert!(
                on_esp.contains(&file),
                "{path} names {file}, not on the ESP: {listing}"
            );
            let module = out
                .modules
                .iter()
                .find(|m| m.path.file_name().is_some_and(|n| n == file.as_str()))
                .unwrap_or_else(|| panic!("{file} is no module of the bundle"));
            assert_eq!(get(&file), std::fs::read(&module.path).expect("module"));
            named.push(file);
        }
    }
    assert_eq!(
        named.len(),
        6,
        "three domUs, a kernel and a ramdisk each: {named:?}"
    );
    named.sort();
    named.dedup();
    // One kernel and one ramdisk for the three domUs: loaded once each.
    assert_eq!(named.len(), 2, "{named:?}");
    let files = on_esp.iter().filter(|f| !f.is_empty()).count();
    assert_eq!(
        files, 5,
        "BOOTAA64.EFI, BOOTAA64.cfg, host.dtb and the two modules: {listing}"
    );
}

/// x86_64 (the example, board qemu-x86_64): `EFI/BOOT/BOOTX64.EFI` is Debian's `xen.efi` (the
/// package's `boot/xen-<ver>-amd64.efi`, a PE32+ for x86-64 by `objdump -f`, not the multiboot
/// ELF the other targets boot); `BOOTX64.cfg` gives Xen the plan's command line (`options=`),
/// dom0's kernel with the plan's dom0 command line (`kernel=`) and its initramfs (`ramdisk=`),
/// and those two files on the ESP are the bundle's. Needs domforge-init (`scripts/build-init`).
#[test]
fn x86_uefi_image_read_back_with_sfdisk_mtools_and_objdump() {
    if !test_support::need_tools(
        TEST,
        &[
            ("sfdisk", "fdisk"),
            ("mcopy", "mtools"),
            ("objdump", "binutils"),
        ],
    ) {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_uefi_x86");
    let _ = std::fs::remove_dir_all(&tmp);
    let Some(common::Built { loaded, plan, out }) = common::build(
        TEST,
        "examples/qemu-x86_64.toml",
        &common::quiet(),
        &tmp.join("out"),
    ) else {
        return;
    };
    let image = out.dir.join("uefi.img");
    let img = format!("{}@@1M", image.display());
    let table: serde_json::Value =
        serde_json::from_slice(&run("sfdisk", &["--json", &image.display().to_string()]))
            .expect("sfdisk json");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(table["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    let get = |name: &str| -> Vec<u8> {
        run(
            "mcopy",
            &["-n", "-i", &img, &format!("::EFI/BOOT/{name}"), "-"],
        )
    };

    // BOOTX64.EFI: the package's xen.efi, an EFI application for x86-64.
    let efi = get("BOOTX64.EFI");
    let facts = loaded.artifacts["debian:xen-efi"]
        .as_ref()
        .expect("xen.efi examined");
    assert!(facts.path.ends_with(".efi"), "{}", facts.path);
    assert_eq!(efi, std::fs::read(&facts.path).expect("xen.efi"));
    let efi_copy = tmp.join("BOOTX64.EFI");
    std::fs::write(&efi_copy, &efi).expect("write");
    let f = text("objdump", &["-f", &efi_copy.display().to_string()]);
    assert!(f.contains("file format pei-x86-64"), "{f}");
    assert_ne!(
        efi,
        std::fs::read(out.dir.join("modules/xen")).expect("xen"),
        "the ESP carries xen.efi, not the multiboot ELF"
    );

    // The config: the same Xen and dom0 command lines as the multiboot target.
    let cfg = String::from_utf8(get("BOOTX64.cfg")).expect("cfg text");
    let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        lines.contains(&"[global]") && lines.contains(&"default=xen") && lines.contains(&"[xen]")
    );
    let value = |key: &str| lines.iter().find_map(|l| l.strip_prefix(key));
    assert_eq!(value("options="), Some(plan.xen_cmdline.as_str()), "{cfg}");
    let dom0 = plan.dom0.as_ref().expect("dom0");
    assert_eq!(
        value("kernel="),
        Some(format!("dom0-kernel {}", dom0.cmdline.trim()).as_str()),
        "{cfg}"
    );
    assert_eq!(value("ramdisk="), Some("dom0-initramfs.cpio"), "{cfg}");
    assert_eq!(value("dtb="), None, "x86 has no device tree: {cfg}");
    assert_eq!(
        std::fs::read(out.dir.join("BOOTX64.cfg")).expect("cfg in the bundle"),
        cfg.as_bytes()
    );
    assert_eq!(
        get("dom0-kernel"),
        std::fs::read(out.dir.join("modules/dom0-kernel")).expect("kernel")
    );
    assert_eq!(
        get("dom0-initramfs.cpio"),
        std::fs::read(out.dir.join("modules/dom0-initramfs.cpio")).expect("initramfs")
    );
    let listing = text("mdir", &["-b", "-i", &img, "::EFI/BOOT"]);
    assert_eq!(
        listing.lines().filter(|l| !l.is_empty()).count(),
        4,
        "{listing}"
    );
    // SHA256SUMS covers the image.
    let sums = std::fs::read_to_string(out.dir.join("SHA256SUMS")).expect("sums");
    assert!(sums.lines().any(|l| l.ends_with(" uefi.img")), "{sums}");
}

/// The grub target (x86 example): `grub.img` read back with sfdisk and mtools. `EFI/BOOT/BOOTX64.EFI`
/// is Debian's prebuilt GRUB (the package's monolithic grubx64.efi, a PE32+ for x86-64 by
/// `objdump -f`); `EFI/debian/grub.cfg` passes `grub-script-check` (GRUB's own parser) and boots
/// the bundle's Xen by multiboot2 with the plan's Xen command line, then dom0's kernel with the
/// plan's dom0 command line and its initramfs; `multiboot2.mod` is in `$prefix/x86_64-efi`; the
/// three boot files are the bundle's modules byte for byte.
#[test]
fn grub_image_read_back_with_sfdisk_mtools_and_grub_script_check() {
    if !test_support::need_tools(
        TEST,
        &[
            ("sfdisk", "fdisk"),
            ("mcopy", "mtools"),
            ("objdump", "binutils"),
            ("grub-script-check", "grub-common"),
        ],
    ) {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_grub_x86");
    let _ = std::fs::remove_dir_all(&tmp);
    let Some(common::Built { plan, out, .. }) = common::build(
        TEST,
        "examples/qemu-x86_64.toml",
        &common::quiet(),
        &tmp.join("out"),
    ) else {
        return;
    };
    let image = out.dir.join("grub.img");
    let img = format!("{}@@1M", image.display());
    let table: serde_json::Value =
        serde_json::from_slice(&run("sfdisk", &["--json", &image.display().to_string()]))
            .expect("sfdisk json");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    let get =
        |path: &str| -> Vec<u8> { run("mcopy", &["-n", "-i", &img, &format!("::{path}"), "-"]) };

    let loader = tmp.join("BOOTX64.EFI");
    std::fs::write(&loader, get("EFI/BOOT/BOOTX64.EFI")).expect("write");
    let f = text("objdump", &["-f", &loader.display().to_string()]);
    assert!(f.contains("file format pei-x86-64"), "{f}");
    let listing = text("mdir", &["-/", "-b", "-i", &img, "::"]);
    assert!(
        listing.contains("::/EFI/debian/x86_64-efi/multiboot2.mod"),
        "{listing}"
    );

    let cfg = get("EFI/debian/grub.cfg");
    let cfg_file = tmp.join("grub.cfg");
    std::fs::write(&cfg_file, &cfg).expect("write");
    run("grub-script-check", &[&cfg_file.display().to_string()]);
    let cfg = String::from_utf8(cfg).expect("text");
    assert_eq!(
        std::fs::read_to_string(out.dir.join("grub.cfg")).expect("grub.cfg in the bundle"),
        cfg
    );
    let command = |name: &str| -> Vec<String> {
        cfg.lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(command("insmod"), ["multiboot2"]);
    let dom0 = plan.dom0.as_ref().expect("dom0");
    assert_eq!(
        command("multiboot2"),
        [format!("/boot/xen {}", plan.xen_cmdline)],
        "{cfg}"
    );
    assert_eq!(
        command("module2"),
        [
            format!("/boot/dom0-kernel {}", dom0.cmdline.trim()),
            "/boot/dom0-initramfs.cpio".to_string()
        ],
        "{cfg}"
    );
    for (on_esp, in_bundle) in [
        ("boot/xen", "modules/xen"),
        ("boot/dom0-kernel", "modules/dom0-kernel"),
        ("boot/dom0-initramfs.cpio", "modules/dom0-initramfs.cpio"),
    ] {
        assert_eq!(
            get(on_esp),
            std::fs::read(out.dir.join(in_bundle)).expect("module"),
            "{on_esp}"
        );
    }
}
