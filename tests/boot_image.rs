//! The boot disk image (`boot.img`) of every built-in ARM example — QEMU `virt`, Raspberry Pi 4,
//! ZCU102 — read back with tools that share no code with domforge:
//!
//! - `sfdisk --dump` (util-linux): a DOS label with one active type-`c` partition at sector 2048;
//! - `fsck.fat -n` (dosfstools): the FAT32 file system is clean;
//! - `mdir`/`mcopy` (mtools): the partition holds `boot.scr`, the host DTB and every module, each
//!   byte-identical to the bundle's own file (so U-Boot's `load ${prefix}<path>` reads what the host
//!   DTB's `reg` sizes describe);
//! - `mkimage -l` (u-boot-tools) on the `boot.scr` copied *out of the image*: a valid script image;
//! - `sha256sum -c SHA256SUMS` covers `boot.img`;
//! - `fdtget` reads the Pi's `/memory` from the host DTB: the board file's banks.
//!
//! Also the U-Boot rule of finalize (E0408): a board whose module window runs into the top of RAM,
//! where U-Boot relocates itself, is refused at check with the range and the fix, and nothing is
//! written.
//!
//! Prerequisites: `scripts/setup` (fdisk, dosfstools, mtools, u-boot-tools, QEMU for the `virt`
//! DTB dump) and the Debian packages the examples name (cached). Outside CI a missing one skips
//! with the reason; in CI (`CI=true`) it fails.

use pipeline::{Options, PipelineError};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn tools_or_skip() -> bool {
    for t in [
        "sfdisk",
        "fsck.fat",
        "mdir",
        "mcopy",
        "mkimage",
        "sha256sum",
    ] {
        if tool(t).is_none() {
            let why = format!("`{t}` is not installed (scripts/setup installs it)");
            assert!(!test_support::strict(), "prerequisite missing in CI: {why}");
            eprintln!("SKIPPED: {why}");
            return false;
        }
    }
    true
}

fn run(name: &str, args: &[&str], dir: &Path) -> String {
    let t = tool(name).unwrap_or_else(|| panic!("{name} missing"));
    let out = Command::new(&t)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn opts() -> Options {
    let mut o = Options::from_env().unwrap_or_else(|e| panic!("{e}"));
    o.quiet = true;
    o
}

/// Builds `examples/<name>.toml` into a fresh directory; `None` (skip) when an input cannot be
/// had outside CI.
fn build(name: &str, test: &str) -> Option<pipeline::BuildOutput> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml"));
    let loaded = match pipeline::load(&manifest, &opts()) {
        Ok(l) => l,
        Err(PipelineError::Other(msg)) if !test_support::strict() => {
            eprintln!("SKIPPED {name}: {msg}");
            return None;
        }
        Err(e) => panic!("{name}: {e:?}"),
    };
    let (plan, _) = loaded.plan().unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("boot_image/{test}/{name}"));
    let _ = std::fs::remove_dir_all(&out);
    Some(pipeline::build(&loaded, &plan, &out, false).unwrap_or_else(|e| panic!("{name}: {e:?}")))
}

fn check_image(name: &str) {
    if !tools_or_skip() {
        return;
    }
    let Some(built) = build(name, "image") else {
        return;
    };
    let dir = &built.dir;
    let img = dir.join("boot.img");
    let size = std::fs::metadata(&img)
        .unwrap_or_else(|e| panic!("{name}: no boot.img: {e}"))
        .len();
    eprintln!("{name}: boot.img is {size} bytes");

    let dump = run("sfdisk", &["--dump", "boot.img"], dir);
    assert!(dump.contains("label: dos"), "{dump}");
    let parts: Vec<&str> = dump.lines().filter(|l| l.contains(" : start=")).collect();
    assert_eq!(parts.len(), 1, "{dump}");
    let fields: String = parts[0]
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    let sectors = size / 512 - 2048;
    assert_eq!(
        fields,
        format!("start=2048,size={sectors},type=c,bootable"),
        "{dump}"
    );

    // fsck.fat reads a file system, not a disk: give it the partition.
    let part = dir.join("partition.tmp");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&part, &bytes[2048 * 512..]).unwrap();
    let fsck = run("fsck.fat", &["-n", "-v", "partition.tmp"], dir);
    let _ = std::fs::remove_file(&part);
    assert!(fsck.contains("32 bit entries"), "{fsck}");
    for complaint in [
        "Fixing",
        "Deleting",
        "Renamed",
        "Moving",
        "differences",
        "uninitialized",
    ] {
        assert!(!fsck.contains(complaint), "fsck.fat: {complaint}:\n{fsck}");
    }

    // Every file U-Boot loads, byte for byte.
    let at = "boot.img@@1M";
    let listing = run("mdir", &["-/", "-b", "-i", at, "::"], dir);
    let mut expected: Vec<String> = built
        .modules
        .iter()
        .map(|m| m.path.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    expected.extend(["host.dtb".to_string(), "boot.scr".to_string()]);
    let copied = dir.join("copied.tmp");
    for f in &expected {
        assert!(
            listing.lines().any(|l| l == format!("::/{f}")),
            "{name}: {f} is not in boot.img:\n{listing}"
        );
        let _ = std::fs::remove_file(&copied);
        run(
            "mcopy",
            &["-n", "-i", at, &format!("::/{f}"), "copied.tmp"],
            dir,
        );
        assert!(
            std::fs::read(&copied).unwrap() == std::fs::read(dir.join(f)).unwrap(),
            "{name}: {f} in boot.img differs from the bundle's"
        );
        if f == "boot.scr" {
            let l = run("mkimage", &["-l", "copied.tmp"], dir);
            assert!(l.contains("AArch64 Linux Script (uncompressed)"), "{l}");
        }
    }
    let _ = std::fs::remove_file(&copied);
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(sums.lines().any(|l| l.ends_with("  boot.img")), "{sums}");
    run("sha256sum", &["--quiet", "-c", "SHA256SUMS"], dir);
}

#[test]
fn qemu_virt_image_reads_back() {
    check_image("qemu-arm64");
}

#[test]
fn rpi4_image_reads_back() {
    check_image("rpi4");
}

/// The Pi 4's card also carries what its firmware reads before U-Boot: `start4.elf` and
/// `fixup4.dat` (Debian's raspi-firmware), `u-boot.bin` (u-boot-rpi's `rpi_arm64` build, a raw
/// binary the firmware starts at 0x80000; it names its version), the vendor DTB, and a `config.txt` that starts U-Boot in 64-bit
/// mode with the UART on — each read back out of the image with `mcopy`.
#[test]
fn rpi4_card_has_the_firmware_and_config_txt() {
    if !tools_or_skip() {
        return;
    }
    let Some(built) = build("rpi4", "firmware") else {
        return;
    };
    let dir = &built.dir;
    let copied = dir.join("fw.tmp");
    let mut got = std::collections::BTreeMap::new();
    for f in [
        "start4.elf",
        "fixup4.dat",
        "u-boot.bin",
        "config.txt",
        "bcm2711-rpi-4-b.dtb",
    ] {
        let _ = std::fs::remove_file(&copied);
        run(
            "mcopy",
            &["-n", "-i", "boot.img@@1M", &format!("::/{f}"), "fw.tmp"],
            dir,
        );
        let bytes = std::fs::read(&copied).unwrap();
        assert!(!bytes.is_empty(), "{f} is empty");
        got.insert(f, bytes);
    }
    let _ = std::fs::remove_file(&copied);
    assert_eq!(
        &got["start4.elf"][..4],
        b"\x7fELF",
        "start4.elf is the VideoCore ELF"
    );
    assert!(
        got["u-boot.bin"].windows(9).any(|w| w == b"U-Boot 20"),
        "u-boot.bin names no U-Boot version"
    );
    assert_eq!(&got["bcm2711-rpi-4-b.dtb"][..4], &[0xd0, 0x0d, 0xfe, 0xed]);
    let config = String::from_utf8(got["config.txt"].clone()).unwrap();
    for line in ["arm_64bit=1", "kernel=u-boot.bin", "enable_uart=1"] {
        assert!(
            config.lines().any(|l| l == line),
            "config.txt lacks {line}:\n{config}"
        );
    }
}

/// The Pi's vendor DTB leaves `/memory@0` empty for its firmware to fill; the host DTB U-Boot hands
/// Xen must carry the board file's banks instead (read back with `fdtget`, device-tree-compiler).
#[test]
fn rpi4_host_dtb_has_the_board_files_ram() {
    if tool("fdtget").is_none() {
        assert!(!test_support::strict(), "fdtget missing in CI");
        return;
    }
    let Some(built) = build("rpi4", "memory") else {
        return;
    };
    let reg = run(
        "fdtget",
        &["-t", "x", "host.dtb", "/memory@0", "reg"],
        &built.dir,
    );
    assert_eq!(reg.trim(), "0 0 3b400000 0 40000000 bc000000");
}

#[test]
fn zcu102_image_reads_back() {
    check_image("zcu102");
}

/// A board whose module window reaches the top of RAM: the kernel would land where U-Boot
/// relocates itself. `check` refuses it (E0408, naming the module and both ranges), and `build`
/// writes nothing.
#[test]
fn modules_in_u_boots_reserved_top_are_refused_at_check() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot_image/reserved");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let board = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/qemu-virt-arm64.toml"),
    )
    .unwrap()
    .replace("name = \"qemu-virt-arm64\"", "name = \"virt-top\"")
    .replace(
        "modules = { base = \"0x48200000\", size = \"0x37e00000\" }",
        "modules = { base = \"0xbd000000\", size = \"0x3000000\" }",
    );
    assert!(
        board.contains("0xbd000000"),
        "the board file changed: {board}"
    );
    std::fs::write(dir.join("virt-top.toml"), board).unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qemu-arm64.toml"),
    )
    .unwrap()
    .replace("board = \"qemu-virt-arm64\"", "board = \"virt-top.toml\"");
    let manifest = dir.join("top.toml");
    std::fs::write(&manifest, example).unwrap();
    let loaded = match pipeline::load(&manifest, &opts()) {
        Ok(l) => l,
        Err(PipelineError::Other(msg)) if !test_support::strict() => {
            eprintln!("SKIPPED: {msg}");
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    match loaded.check() {
        Err(PipelineError::Diagnostics { diags, .. }) => {
            let e0408: Vec<_> = diags.errors().filter(|d| d.code == "E0408").collect();
            assert!(!e0408.is_empty(), "{diags:?}");
            let m = &e0408[0].message;
            assert!(
                m.contains(
                    "U-Boot reserves at the top of the first RAM bank (0xbc000000-0xc0000000"
                ),
                "{m}"
            );
            assert!(
                e0408[0]
                    .help
                    .as_deref()
                    .is_some_and(|h| h.contains("at or below 0xbc000000")),
                "{:?}",
                e0408[0].help
            );
        }
        other => panic!("expected E0408, got {:?}", other.map(|_| ())),
    }
    let out = dir.join("out");
    let plan = loaded
        .plan()
        .map(|(p, _)| p)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(pipeline::build(&loaded, &plan, &out, false).is_err());
    assert!(!out.exists(), "a refused system wrote {}", out.display());
}
