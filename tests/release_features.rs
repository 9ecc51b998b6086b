//! One manifest, several Xen releases: release-dependent dom0less properties are refused for a
//! release that lacks them and emitted for one that has them.
//!
//! The reference is Xen's own binding documentation, not domforge's output: the release that first
//! documents each property in `docs/misc/arm/device-tree/booting.txt` (diffed at every RELEASE tag,
//! `shared/notes/xen-landscape.md` §1.3: `max_grant_frames`/`max_maptrack_frames` 4.18,
//! `llc-colors` 4.20), the property names and encodings from the same file (u32 cells; a string
//! for `llc-colors`), read back from the built host DTB with `fdtget` (device-tree-compiler), and
//! `XEN_DOMCTL_INTERFACE_VERSION` from `xen/include/public/domctl.h` at RELEASE-4.17.0 (0x15) and
//! RELEASE-4.20.0 (0x17), §8.2.
//!
//! The release comes from the manifest's `[system] xen` or from `--xen` / [`Options::xen_override`],
//! which re-targets the parsed manifest; both paths are exercised.
//!
//! Prerequisites: QEMU (the board DTB is QEMU's `dumpdtb`), `fdtget`, and Debian's Xen 4.17
//! (bookworm) and 4.20 (trixie) arm64 packages plus the arm64 kernel and busybox (cached under
//! `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`). Missing ones skip with the reason printed,
//! except in CI (`CI=true`), where that is a failure.

use firmware_config::diag::Diagnostic;
use firmware_config::xen::XenVersion;
use pipeline::{self, Loaded, Options, PipelineError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `XEN_DOMCTL_INTERFACE_VERSION` at RELEASE-4.17.0 and RELEASE-4.20.0
/// (`xen/include/public/domctl.h`), typed from the header, not from domforge's table.
const DOMCTL_INTERFACE_4_17: u64 = 0x15;
const DOMCTL_INTERFACE_4_20: u64 = 0x17;

/// `Some(reason)` when a prerequisite is missing outside CI; panics in CI.
fn missing_prerequisite() -> Option<String> {
    for (tool, package) in [
        ("fdtget", "device-tree-compiler"),
        ("qemu-system-aarch64", "qemu-system-arm"),
    ] {
        let present = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty());
        if !present {
            let why = format!("`{tool}` is not installed (apt-get install {package})");
            assert!(
                !test_support::strict(),
                "CI must have every prerequisite: {why}"
            );
            return Some(why);
        }
    }
    None
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// A scratch directory holding one manifest.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str, manifest: &str) -> (Self, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "domforge-release-features-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let file = dir.join("system.toml");
        std::fs::write(&file, manifest).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        (Self(dir), file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A two-domain dom0less system on QEMU virt whose `app` domain carries `extra` lines.
fn manifest(xen: &str, extra: &str) -> String {
    format!(
        r#"[system]
name = "release-features"
board = "qemu-virt-arm64"
xen = "{xen}"

[[domain]]
name = "app"
kind = "arm64"
vcpus = 1
memory = "128M"
kernel = "debian:kernel"
ramdisk = "builtin:probe"
cmdline = "console=ttyAMA0"
{extra}

[[domain]]
name = "other"
kind = "arm64"
vcpus = 1
memory = "128M"
kernel = "debian:kernel"
ramdisk = "builtin:probe"
cmdline = "console=ttyAMA0"
"#
    )
}

fn options(xen_override: Option<XenVersion>) -> Options {
    Options {
        quiet: true,
        xen_override,
        ..Options::from_env().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Loads (downloading what is not cached). A download failure skips outside CI.
fn load(test: &str, file: &Path, xen_override: Option<XenVersion>) -> Option<Loaded> {
    match pipeline::load(file, &options(xen_override)) {
        Ok(l) => Some(l),
        Err(PipelineError::Other(msg)) if !test_support::strict() => {
            skip(test, &format!("could not load the test system: {msg}"));
            None
        }
        Err(e) => panic!("{test}: loading {}: {e}", file.display()),
    }
}

/// Everything a refusal must say: code E0218, the release that has the property and the one the
/// system targets, pointing at the offending text.
fn assert_refused(
    err: PipelineError,
    needs: &str,
    targets: &str,
    offending_text: &str,
) -> Vec<Diagnostic> {
    let PipelineError::Diagnostics {
        diags, manifest, ..
    } = err
    else {
        panic!("expected diagnostics, got: {err}");
    };
    let e0218: Vec<Diagnostic> = diags
        .0
        .iter()
        .filter(|d| d.code == "E0218")
        .cloned()
        .collect();
    assert!(!e0218.is_empty(), "no E0218 among {:?}", diags.0);
    for d in &e0218 {
        assert!(
            d.message.contains(&format!(
                "needs Xen {needs} or later; this system targets Xen {targets}"
            )),
            "{}",
            d.message
        );
        let label = d.primary.as_ref().unwrap_or_else(|| panic!("{d:?}"));
        let text = manifest.text.get(label.span.clone()).unwrap_or("");
        assert!(
            offending_text.contains(text) && !text.is_empty(),
            "E0218 points at `{text}`, expected part of `{offending_text}`"
        );
    }
    // Nothing else is wrong with the manifest: the release is the only reason it is refused.
    assert!(diags.errors().all(|d| d.code == "E0218"), "{:?}", diags.0);
    e0218
}

/// Builds the plan of `loaded` into a scratch directory and returns the host DTB path.
fn build_host_dtb(loaded: &Loaded, dir: &Path) -> PathBuf {
    let (plan, _warnings) = loaded.plan().unwrap_or_else(|e| panic!("plan: {e}"));
    let out = dir.join("out");
    let built =
        pipeline::build(loaded, &plan, &out, false).unwrap_or_else(|e| panic!("build: {e}"));
    built.dir.join("host.dtb")
}

fn fdtget(dtb: &Path, ty: &str, node: &str, prop: &str) -> Result<String, String> {
    let o = Command::new("fdtget")
        .args(["-t", ty])
        .arg(dtb)
        .args([node, prop])
        .output()
        .map_err(|e| format!("fdtget: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

const GRANT_LIMITS: &str = "max_grant_frames = 48\nmax_maptrack_frames = 512";

/// `max_grant_frames` / `max_maptrack_frames` (booting.txt, 4.18): refused for 4.17 with E0218
/// naming 4.18, accepted for 4.20 and emitted as u32 properties of the domain node.
#[test]
fn grant_limits_refused_for_4_17_emitted_for_4_20() {
    let test = "grant limits";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    let (scratch, file) = Scratch::new("grants", &manifest("4.17", GRANT_LIMITS));
    let Some(on_417) = load(test, &file, None) else {
        return;
    };
    assert_eq!(on_417.manifest.system.xen.value, XenVersion::V4_17);
    let refused = assert_refused(
        on_417
            .check()
            .expect_err("grant limits must be refused on 4.17"),
        "4.18",
        "4.17",
        GRANT_LIMITS,
    );
    assert_eq!(refused.len(), 2, "one per grant limit: {refused:?}");

    // The same file, re-targeted at 4.20 (what `domforge test --xen 4.20` does).
    let Some(on_420) = load(test, &file, Some(XenVersion::V4_20)) else {
        return;
    };
    assert_eq!(on_420.manifest.system.xen.value, XenVersion::V4_20);
    assert_eq!(on_420.xen_retargeted_from, Some(XenVersion::V4_17));
    on_420
        .check()
        .unwrap_or_else(|e| panic!("grant limits must be accepted on 4.20: {e}"));
    // `debian:xen` followed the release: trixie's 4.20 package, not bookworm's 4.17.
    let xen = on_420
        .artifacts
        .get("debian:xen")
        .and_then(|a| a.as_ref().ok())
        .unwrap_or_else(|| panic!("debian:xen not examined: {:?}", on_420.artifacts));
    assert!(
        xen.path.contains("xen-hypervisor-4.20-arm64"),
        "4.20 must boot Debian's 4.20 package, got {}",
        xen.path
    );
    let dtb = build_host_dtb(&on_420, &scratch.0);
    assert_eq!(
        fdtget(&dtb, "u", "/chosen/app", "max_grant_frames").as_deref(),
        Ok("48")
    );
    assert_eq!(
        fdtget(&dtb, "u", "/chosen/app", "max_maptrack_frames").as_deref(),
        Ok("512")
    );
    // Only the domain that asked carries them (Xen's defaults apply to the other).
    assert!(fdtget(&dtb, "u", "/chosen/other", "max_grant_frames").is_err());
}

const LLC: &str = "llc_colors = \"0-3,7\"";

/// `llc-colors` (booting.txt, 4.20): refused for 4.17 naming 4.20, emitted for 4.20 as the
/// string Xen parses (`parse_color_config()`: a comma-separated list of ranges).
#[test]
fn llc_colors_refused_for_4_17_emitted_for_4_20() {
    let test = "llc colours";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    // This time the file says 4.20 and the override goes the other way.
    let (scratch, file) = Scratch::new("llc", &manifest("4.20", LLC));
    let Some(on_417) = load(test, &file, Some(XenVersion::V4_17)) else {
        return;
    };
    assert_eq!(on_417.xen_retargeted_from, Some(XenVersion::V4_20));
    let refused = assert_refused(
        on_417
            .check()
            .expect_err("llc_colors must be refused on 4.17"),
        "4.20",
        "4.17",
        LLC,
    );
    // The refusal says the release came from the override, not from the file.
    assert!(
        refused.iter().all(|d| d
            .notes
            .iter()
            .any(|n| n.contains("targets Xen 4.17 (`--xen`)") && n.contains("xen = \"4.20\""))),
        "{refused:?}"
    );

    let Some(on_420) = load(test, &file, None) else {
        return;
    };
    assert_eq!(on_420.xen_retargeted_from, None);
    let dtb = build_host_dtb(&on_420, &scratch.0);
    assert_eq!(
        fdtget(&dtb, "s", "/chosen/app", "llc-colors").as_deref(),
        Ok("0-3,7")
    );
}

/// `domforge plan --json` and the plan table say which release and domctl interface the plan
/// targets: one file that says 4.17, one that says 4.20.
#[test]
fn plan_shows_the_target_release() {
    let test = "plan shows the release";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    for (xen, interface) in [
        ("4.17", DOMCTL_INTERFACE_4_17),
        ("4.20", DOMCTL_INTERFACE_4_20),
    ] {
        let (_scratch, file) = Scratch::new(&format!("plan-{xen}"), &manifest(xen, ""));
        let out = Command::new(env!("CARGO_BIN_EXE_domforge"))
            .args(["--quiet", "plan", "--json"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!test_support::strict(), "`domforge plan` failed: {err}");
            return skip(test, &format!("`domforge plan` failed: {err}"));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}"));
        let (major, minor) = xen.split_once('.').unwrap_or_else(|| panic!("{xen}"));
        assert_eq!(
            json["xen"],
            serde_json::json!({ "major": major.parse::<u64>().unwrap_or(0), "minor": minor.parse::<u64>().unwrap_or(0) }),
            "{json:#}"
        );
        assert_eq!(json["domctl_interface"], serde_json::json!(interface));

        let table = Command::new(env!("CARGO_BIN_EXE_domforge"))
            .args(["--quiet", "plan"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(
            text.lines().next().is_some_and(
                |l| l.contains(&format!("Xen {xen} (domctl interface {interface:#x})"))
            ),
            "{text}"
        );
    }
}

/// `domforge test --xen` re-targets before validation: the file that asks for `llc_colors`
/// (and says 4.20) is refused for 4.17 with E0218 before anything is built or booted; a release
/// domforge does not know is refused by the argument parser.
#[test]
fn cli_xen_flag_retargets_before_validation() {
    let test = "--xen on the command line";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    let (scratch, file) = Scratch::new("cli", &manifest("4.20", LLC));
    let out_dir = scratch.0.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_domforge"))
        .args(["--quiet", "test", "--xen", "4.17", "--output"])
        .arg(&out_dir)
        .arg(&file)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("E0218")
        && !test_support::strict()
        && err.contains("error:")
        && !err.contains("error[")
    {
        return skip(test, &format!("could not load the test system: {err}"));
    }
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("error[E0218]") && err.contains("needs Xen 4.20 or later"),
        "{err}"
    );
    assert!(err.contains("targets Xen 4.17 (`--xen`)"), "{err}");
    assert!(!out_dir.exists(), "a refused manifest was built");

    for bad in ["4.16", "5", "4.x"] {
        let out = Command::new(env!("CARGO_BIN_EXE_domforge"))
            .args(["test", "--xen", bad])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.status.code(),
            Some(2),
            "clap usage error for --xen {bad}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--xen")
                && (err.contains("not supported") || err.contains("not a Xen release")),
            "{err}"
        );
    }
}
