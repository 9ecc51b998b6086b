//! `check` refuses everything `build` would: the rules finalize applies after planning (fragments,
//! module slots, the QEMU target's limits) come back as diagnostics that point into the manifest.
//!
//! Each case starts from a real example (board DTB from QEMU's `dumpdtb`, Debian's kernel), breaks
//! one thing in the plan the way only finalize can see, and asserts the code, the line the
//! diagnostic points at (found by searching the manifest text, not from the tool) and the message.
//! The manifest-level case (a comma in x86 dom0's command line) is in `tests/bad-manifests/`.

use firmware_config::diag::{Diagnostic, SourceId};
use firmware_config::plan::ModuleKind;
use pipeline::{Loaded, Options, PipelineError};
use std::path::Path;

fn load(example: &str) -> Option<Loaded> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(example);
    let mut opts = Options::from_env().expect("options");
    opts.quiet = true;
    match pipeline::load(&file, &opts) {
        Ok(l) => Some(l),
        Err(e) if !strict() => {
            eprintln!("SKIPPED: {example} cannot be loaded here: {e}");
            None
        }
        Err(e) => panic!("{example}: {e}"),
    }
}

fn strict() -> bool {
    test_support::strict()
}

/// The one error of a failed finalize and the 1-based line it points at.
fn one_error(
    loaded: &Loaded,
    result: Result<pipeline::FinalPlan, PipelineError>,
) -> (Diagnostic, usize) {
    let Err(PipelineError::Diagnostics {
        diags, manifest, ..
    }) = result
    else {
        panic!("finalize passed or failed outside the manifest");
    };
    let errors: Vec<&Diagnostic> = diags.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let d = errors[0].clone();
    let label = d.primary.as_ref().expect("a location");
    assert_eq!(label.source, SourceId::Manifest);
    let _ = loaded;
    (d.clone(), manifest.line_col(label.span.start).0)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the manifest"))
        + 1
}

#[test]
fn a_fragment_finalize_cannot_generate_points_at_its_domain() {
    let Some(loaded) = load("qemu-arm64.toml") else {
        return;
    };
    let (mut plan, _) = loaded.plan().expect("plan");
    let d = plan
        .domains
        .iter_mut()
        .find(|d| !d.devices.is_empty())
        .expect("the example has a driver domain");
    let name = d.name.clone();
    d.devices[0].path = "/no-such-device@0".into();
    let (diag, line) = one_error(&loaded, loaded.finalize(plan));
    assert_eq!(diag.code, "E0401");
    assert!(
        diag.message.contains(&format!("domain `{name}`")),
        "{}",
        diag.message
    );
    assert!(
        diag.message.contains("/no-such-device@0"),
        "{}",
        diag.message
    );
    assert_eq!(
        line,
        line_of(&loaded.manifest_file.text, &format!("name = \"{name}\""))
    );
}

#[test]
fn a_module_that_does_not_fit_its_slot_points_at_the_file_that_named_it() {
    let Some(loaded) = load("qemu-arm64.toml") else {
        return;
    };
    let (mut plan, _) = loaded.plan().expect("plan");
    let m = plan
        .modules
        .iter_mut()
        .find(|m| m.kind == ModuleKind::Ramdisk && m.load.is_some())
        .expect("a ramdisk boot module");
    let source = m.source.clone();
    m.size = Some(0);
    let (diag, line) = one_error(&loaded, loaded.finalize(plan));
    assert_eq!(diag.code, "E0402");
    assert!(
        diag.message.contains("0 bytes do not fit"),
        "{}",
        diag.message
    );
    assert_eq!(
        line,
        line_of(&loaded.manifest_file.text, &format!("\"{source}\""))
    );
}

#[test]
fn check_runs_finalize() {
    // `check` is validation + plan + finalize: the example passes all three.
    let Some(loaded) = load("qemu-arm64.toml") else {
        return;
    };
    loaded.check().expect("the example passes check");
    let (fin, _) = loaded.final_plan().expect("final plan");
    assert!(
        !fin.fragments.is_empty(),
        "a driver domain gets its fragment at finalize"
    );
}

/// The bundle of an example, assembled in memory (not written).
fn assembled(loaded: &Loaded) -> bundle::Bundle {
    let (plan, _) = loaded.plan().expect("plan");
    let fin = loaded.finalize(plan).expect("finalize");
    let files = bundle::VerifiedFiles(&loaded.artifacts, Some(&loaded.cache_dir));
    bundle::assemble(&fin, &loaded.bundle_inputs(&files, &loaded.init), false).expect("assemble")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("finalize")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The example's bundle written into the scratch directory `name`: the bundle, the directory and
/// the `SHA256SUMS` written.
fn written(name: &str) -> Option<(bundle::Bundle, std::path::PathBuf, Vec<u8>)> {
    let loaded = load("qemu-arm64.toml")?;
    let d = scratch(name);
    let good = assembled(&loaded);
    good.write(&d).expect("first write");
    let sums = std::fs::read(d.join("SHA256SUMS")).expect("SHA256SUMS");
    Some((good, d, sums))
}

/// Gives the file `path` of `b` the bytes `bytes`.
fn replace_file(b: &mut bundle::Bundle, path: &str, bytes: &[u8]) {
    let f = b
        .files
        .iter_mut()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("{path}"));
    f.contents = bundle::Contents::Bytes(bytes.to_vec());
}

#[test]
fn a_failed_write_leaves_the_previous_bundle_as_it_was() {
    let Some((good, d, before)) = written("failed-write") else {
        return;
    };
    let dtb = std::fs::read(d.join("host.dtb")).expect("host.dtb");
    // A file the file system refuses (a NUL in its name), staged after every real file.
    let mut bad = good.clone();
    // A file no disk image holds (an image holding a changed file would be refused as
    // inconsistent before anything is staged, which is not what this test is about).
    replace_file(&mut bad, "system.svg", b"changed");
    bad.files.push(bundle::BundleFile {
        path: "bad\0name".into(),
        role: bundle::Role::Target,
        contents: bundle::Contents::Bytes(Vec::new()),
        executable: false,
    });
    assert!(matches!(bad.write(&d), Err(bundle::WriteError::Io { .. })));
    assert_eq!(
        std::fs::read(d.join("SHA256SUMS")).expect("SHA256SUMS"),
        before
    );
    assert_eq!(std::fs::read(d.join("host.dtb")).expect("host.dtb"), dtb);
    let out = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&d)
        .output()
        .expect("sha256sum");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(&d)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn a_disk_image_whose_file_shrank_is_refused_before_anything_is_written() {
    let Some((good, d, before)) = written("image-inconsistent") else {
        return;
    };
    // boot.img holds modules/xen by reference (bundle::image): it is written from that file.
    assert!(good.file("boot.img").is_some_and(|f| f.bytes().is_none()));
    let mut bad = good.clone();
    replace_file(&mut bad, "modules/xen", b"short");
    let e = bad.write(&d).expect_err("an image longer than its file");
    assert!(matches!(e, bundle::WriteError::Image(_)), "{e}");
    assert!(e.to_string().contains("boot.img"), "{e}");
    assert_eq!(
        std::fs::read(d.join("SHA256SUMS")).expect("SHA256SUMS"),
        before
    );
}

#[test]
fn a_rebuild_removes_the_old_bundles_files_and_keeps_the_users() {
    let Some(loaded) = load("qemu-arm64.toml") else {
        return;
    };
    let d = scratch("rebuild");
    let mut old = assembled(&loaded);
    old.files.push(bundle::BundleFile {
        path: "passthrough-gone.dtb".into(),
        role: bundle::Role::Module,
        contents: bundle::Contents::Bytes(b"x".to_vec()),
        executable: false,
    });
    old.write(&d).expect("old write");
    std::fs::write(d.join("notes-of-mine.txt"), b"mine").expect("user file");
    assembled(&loaded).write(&d).expect("rebuild");
    assert!(!d.join("passthrough-gone.dtb").exists());
    assert_eq!(
        std::fs::read(d.join("notes-of-mine.txt")).expect("user file"),
        b"mine"
    );
}

/// The uefi target's rules run at check time on a board that lists `uefi` (qemu-virt-arm64): the
/// error with `code` among those finalize returns after `change`.
fn uefi_error(
    code: &str,
    change: impl FnOnce(&mut firmware_config::plan::SystemPlan),
) -> Option<Diagnostic> {
    let loaded = load("qemu-arm64.toml")?;
    let (mut plan, _) = loaded.plan().expect("plan");
    change(&mut plan);
    let Err(PipelineError::Diagnostics { diags, .. }) = loaded.finalize(plan) else {
        panic!("finalize passed or failed outside the manifest");
    };
    let found = diags.errors().find(|d| d.code == code).cloned();
    Some(found.unwrap_or_else(|| panic!("no {code} among {diags:?}")))
}

#[test]
fn uefi_refuses_a_module_name_fat_and_xen_cannot_share() {
    let Some(d) = uefi_error("E0411", |plan| {
        let m = plan
            .modules
            .iter_mut()
            .find(|m| m.kind == ModuleKind::Ramdisk && m.load.is_some())
            .expect("a ramdisk boot module");
        m.id = "ramdisk 0".into();
    }) else {
        return;
    };
    assert!(d.message.contains("`ramdisk 0`"), "{}", d.message);
    assert!(d.primary.is_some(), "points at the ramdisk's source");
}

#[test]
fn uefi_refuses_more_modules_than_xens_efi_loader_loads() {
    let Some(d) = uefi_error("E0413", |plan| {
        let m = plan
            .modules
            .iter()
            .find(|m| m.kind == ModuleKind::Ramdisk && m.load.is_some())
            .expect("a ramdisk boot module")
            .clone();
        // 30 more files than the example has (MAX_UEFI_MODULES = 30 in efi-boot.h).
        for i in 0..30 {
            let mut extra = m.clone();
            extra.id = format!("extra-{i}");
            plan.modules.push(extra);
        }
    }) else {
        return;
    };
    assert!(d.message.contains("at most 30"), "{}", d.message);
}

#[test]
fn uefi_refuses_a_xen_that_is_no_efi_application() {
    let Some(d) = uefi_error("E0415", |plan| {
        let xen = plan
            .modules
            .iter_mut()
            .find(|m| m.kind == ModuleKind::Xen)
            .expect("Xen");
        // A source the examined files do not hold reads as no bytes: no MZ/PE header.
        xen.source = "builtin:no-such-xen".into();
    }) else {
        return;
    };
    assert!(
        d.message.contains("not an arm64 EFI application"),
        "{}",
        d.message
    );
}

/// The x86 uefi target (qemu-x86_64 lists `uefi`) with Xen's EFI binary replaced by `efi`: the
/// E0415 finalize returns, or `None` where the example cannot be finalized here (no
/// domforge-init built).
fn x86_uefi_error(
    efi: Result<firmware_config::artifacts::ArtifactFacts, String>,
) -> Option<Diagnostic> {
    let mut loaded = load("qemu-x86_64.toml")?;
    loaded.artifacts.insert("debian:xen-efi".into(), efi);
    let (plan, _) = loaded.plan().expect("plan");
    let Err(PipelineError::Diagnostics { diags, .. }) = loaded.finalize(plan) else {
        panic!("finalize passed or failed outside the manifest");
    };
    if let Some(d) = diags.errors().find(|d| d.code == "E0406")
        && !strict()
    {
        eprintln!("SKIPPED: {}", d.message);
        return None;
    }
    let found = diags.errors().find(|d| d.code == "E0415").cloned();
    Some(found.unwrap_or_else(|| panic!("no E0415 among {diags:?}")))
}

#[test]
fn x86_uefi_refuses_a_xen_package_without_an_efi_binary() {
    let Some(d) = x86_uefi_error(Err(
        "`xen-hypervisor-4.17-amd64 4.17.7` ships no EFI binary (boot/xen-4.17-amd64.efi)".into(),
    )) else {
        return;
    };
    assert!(
        d.message.contains("needs Xen's EFI binary"),
        "{}",
        d.message
    );
    assert!(d.message.contains("ships no EFI binary"), "{}", d.message);
    // No `hypervisor` key: the diagnostic points at the `xen` release that chose Debian's Xen.
    let loaded = load("qemu-x86_64.toml").expect("loaded above");
    let label = d.primary.as_ref().expect("a location");
    assert_eq!(
        loaded.manifest_file.line_col(label.span.start).0,
        line_of(&loaded.manifest_file.text, "xen = ")
    );
}

#[test]
fn x86_uefi_refuses_an_efi_binary_that_is_no_x86_efi_application() {
    let Some(loaded) = load("qemu-x86_64.toml") else {
        return;
    };
    // The multiboot ELF where xen.efi should be: no MZ/PE header.
    let elf = loaded.artifacts["debian:xen"].clone();
    let Some(d) = x86_uefi_error(elf) else {
        return;
    };
    assert!(
        d.message.contains("not an x86-64 EFI application"),
        "{}",
        d.message
    );
}

/// `check` and `plan` finalize from sizes only (dom0's initramfs is counted, not composed, and no
/// kernel is read); the plan they show must be the one `build` makes from the verified bytes, and
/// the counted length the length of the archive `build` writes. Needs domforge-init.
#[test]
fn sizes_only_finalize_plans_what_build_builds() {
    for example in [
        "qemu-x86_64.toml",
        "../tests/scenarios/7-mixed-builders-arm.toml",
    ] {
        let Some(loaded) = load(example) else {
            continue;
        };
        let (counted, _) = loaded.final_plan().expect("final plan");
        let counted_cpio = counted.dom0_initramfs.as_ref().expect("counted");
        assert!(
            counted_cpio.bytes().is_none(),
            "{example}: nothing composed"
        );
        let (plan, _) = loaded.plan().expect("plan");
        let built = loaded.finalize(plan).expect("finalize");
        let cpio = built
            .dom0_initramfs
            .as_ref()
            .and_then(|c| c.bytes())
            .expect("composed for build");
        assert_eq!(counted_cpio.len(), cpio.len() as u64, "{example}");
        assert_eq!(
            serde_json::to_string(&counted.plan).unwrap(),
            serde_json::to_string(&built.plan).unwrap(),
            "{example}: the plans differ"
        );
        // A sizes-only plan cannot be assembled by mistake.
        let files = bundle::VerifiedFiles(&loaded.artifacts, Some(&loaded.cache_dir));
        let inputs = loaded.bundle_inputs(&files, &loaded.init);
        assert!(
            bundle::assemble(&counted, &inputs, false).is_err(),
            "{example}"
        );
    }
}

/// The error `code` of a finalize that must fail in the manifest; `None` (after saying so) when no
/// domforge-init is built here and the run is not strict (E0406 comes first then).
fn refused_with(
    result: Result<pipeline::FinalPlan, PipelineError>,
    code: &str,
) -> Option<Diagnostic> {
    let Err(PipelineError::Diagnostics { diags, .. }) = result else {
        panic!("finalize passed or failed outside the manifest");
    };
    if let Some(d) = diags.errors().find(|d| d.code == "E0406")
        && !strict()
    {
        eprintln!("SKIPPED: {}", d.message);
        return None;
    }
    let found = diags.errors().find(|d| d.code == code).cloned();
    Some(found.unwrap_or_else(|| panic!("no {code} among {diags:?}")))
}

/// A system with PV devices whose dom0 must run xenstored, but whose xenstored was not fetched
/// (Debian unreachable after the lock was read): finalize refuses it with E0418 at `[system]`
/// instead of a bundle whose frontends wait forever.
#[test]
fn pv_devices_without_a_fetched_xenstored_are_refused() {
    let Some(mut loaded) = load("qemu-x86_64.toml") else {
        return;
    };
    loaded.xenstored = None;
    let (mut plan, _) = loaded.plan().expect("plan");
    plan.xenstore = true;
    plan.domains[0]
        .pv_disks
        .push(firmware_config::plan::PvDiskPlan {
            vdev: "xvda".into(),
            devid: 51712,
            backend: "dom0".into(),
            target: "/dev/vdb".into(),
            access: firmware_config::manifest::DiskAccess::Ro,
            devtype: firmware_config::manifest::DiskDevtype::Disk,
            image: None,
        });
    let Some(d) = refused_with(loaded.finalize(plan), "E0418") else {
        return;
    };
    assert!(d.message.contains("xenstored"), "{}", d.message);
}

/// E0419: a driver domain's generated initramfs loads blkback/netback from its kernel's Debian
/// package; a kernel that comes from elsewhere (here Debian's own image copied out of its package,
/// so nothing else changes) is refused at the driver domain, before any build.
#[test]
fn a_driver_domain_kernel_outside_a_debian_package_is_refused() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/x86-pvh-driver-domains.toml");
    let mut opts = Options::from_env().expect("options");
    opts.quiet = true;
    let mut loaded = match pipeline::load(&file, &opts) {
        Ok(l) => l,
        Err(e) if !strict() => {
            eprintln!("SKIPPED: the driver-domain scenario cannot be loaded here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("finalize-e0419");
    std::fs::create_dir_all(&dir).unwrap();
    let copied = dir.join("bzImage");
    let facts = loaded
        .artifacts
        .get_mut("debian:kernel")
        .and_then(|r| r.as_mut().ok())
        .expect("debian:kernel examined");
    std::fs::copy(&facts.path, &copied).unwrap();
    facts.path = copied.display().to_string();
    let (plan, _) = loaded.plan().expect("plan");
    let Some(d) = refused_with(loaded.finalize(plan), "E0419") else {
        return;
    };
    assert!(
        d.message.contains("driver domain `storage`") || d.message.contains("driver domain `net`"),
        "{}",
        d.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}
