//! The dom0 initramfs of an x86 system with PV devices (issue 19), read back with independent
//! tools: `cpio` unpacks it, `readelf` reads the ELF files inside.
//! Checks: `usr/sbin/xenstored` leads to Debian's binary of the system's Xen series; the binary's
//! `PT_INTERP` and every `DT_NEEDED` of every ELF in its closure resolve inside the archive along
//! the loader's default path (no `ld.so.cache` there), symlinks included, so xenstored can start;
//! the backend modules are listed for `/init` to load; the dom0-served image is at its target
//! byte for byte; xenstored's state directories exist.

mod common;
use std::path::{Path, PathBuf};

const TEST: &str = "build_x86_pv";

fn text(cmd: &str, args: &[&str], dir: &Path) -> String {
    String::from_utf8(common::tool(cmd, args, dir, None)).expect("UTF-8")
}

/// `path` inside `root`, following symlinks as the kernel would with `root` as `/`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut current = path.trim_start_matches('/').to_string();
    for _ in 0..40 {
        let host = root.join(&current);
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if !meta.is_symlink() {
            return meta.is_file().then_some(host);
        }
        let target = std::fs::read_link(&host).ok()?;
        let target = target.to_string_lossy();
        current = if let Some(abs) = target.strip_prefix('/') {
            abs.to_string()
        } else {
            let parent = Path::new(&current).parent().unwrap_or(Path::new(""));
            normalize(&parent.join(&*target))
        };
    }
    None
}

fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

#[test]
fn pv_dom0_initramfs_runs_xenstored_by_readelf_and_ships_the_disk() {
    if !test_support::need_tools(TEST, &[("cpio", "cpio"), ("readelf", "binutils")]) {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(TEST);
    let _ = std::fs::remove_dir_all(&tmp);
    let scenario = "tests/scenarios/x86-pvh-pv-dom0.toml";
    let Some(common::Built { plan, out, .. }) =
        common::build(TEST, scenario, &common::quiet(), &tmp.join("out"))
    else {
        return;
    };
    assert!(plan.xenstore, "the plan must say dom0 runs xenstore");
    let root = tmp.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cpio = std::fs::read(out.dir.join("modules/dom0-initramfs.cpio")).unwrap();
    common::tool("cpio", &["-idm", "--quiet"], &root, Some(&cpio));

    let series = plan.xen.to_string();
    let link = std::fs::read_link(root.join("usr/sbin/xenstored")).expect("usr/sbin/xenstored");
    assert_eq!(
        link.to_string_lossy(),
        format!("/usr/lib/xen-{series}/bin/xenstored")
    );
    let binary = resolve(&root, "usr/sbin/xenstored").expect("xenstored resolves");

    // The loader and every library, as readelf sees them, found along ld.so's default path.
    let dirs = [
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "lib",
        "usr/lib",
    ];
    let program = text("readelf", &["-lW", &binary.display().to_string()], &root);
    let interp = test_support::readelf_bracketed(&program, "Requesting program interpreter");
    assert_eq!(interp.len(), 1, "{program}");
    assert!(
        resolve(&root, &interp[0]).is_some(),
        "the interpreter {} is not in dom0's initramfs",
        interp[0]
    );
    let mut queue = vec![binary.clone()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(elf) = queue.pop() {
        if !seen.insert(elf.clone()) {
            continue;
        }
        let dynamic = text("readelf", &["-dW", &elf.display().to_string()], &root);
        for soname in test_support::readelf_bracketed(&dynamic, "(NEEDED)") {
            let found = dirs
                .iter()
                .find_map(|d| resolve(&root, &format!("{d}/{soname}")))
                .unwrap_or_else(|| {
                    panic!(
                        "{soname}, needed by {}, is not in dom0's initramfs",
                        elf.display()
                    )
                });
            queue.push(found);
        }
    }
    let libc = seen
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == "libc.so.6"));
    assert!(libc && seen.len() >= 5, "closure: {seen:?}");

    // The backends are loaded by /init.
    let modules = std::fs::read_to_string(root.join("etc/domforge/modules")).unwrap();
    for m in ["loop.ko", "bridge.ko", "xen-blkback.ko", "xen-netback.ko"] {
        assert!(
            modules
                .lines()
                .any(|l| l.ends_with(&format!("/{m}")) || l.ends_with(&format!("/{m}.xz"))),
            "{m} missing from {modules}"
        );
    }
    for dir in ["run/xenstored", "var/lib/xenstored"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    let image =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/pv-disk.img"))
            .unwrap();
    assert_eq!(std::fs::read(root.join("srv/app.img")).unwrap(), image);
    let _ = std::fs::remove_dir_all(&tmp);
}
