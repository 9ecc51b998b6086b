//! The x86 dom0 initramfs with Debian's real amd64 kernel modules, read back with GNU `cpio` (an
//! independent newc reader) and the modules' own `.modinfo` `depends=` lists checked against the
//! load order. Outside CI a missing download skips with the reason; with `CI=true` it fails.

use std::process::{Command, Stdio};

use debian_fetch::{Arch, Fetcher, default_cache_dir};
use initramfs::dom0::{DOM0_XEN_MODULES, Dom0Initramfs};
use initramfs::kmod::module_depends;

/// A 64-byte x86-64 ELF header with one PT_LOAD (a stand-in for the static domforge-init).
fn static_elf() -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    f[64..68].copy_from_slice(&1u32.to_le_bytes());
    f
}

#[test]
fn dom0_initramfs_with_debian_xen_drivers_lists_with_gnu_cpio() {
    let fetcher = Fetcher::new(default_cache_dir().expect("a cache directory"));
    let kernel = match fetcher.linux_kernel(Arch::X86_64) {
        Ok(k) => k,
        Err(e) if !test_support::strict() => {
            eprintln!("SKIPPED: Debian amd64 kernel not available: {e}");
            return;
        }
        Err(e) => panic!("Debian amd64 kernel: {e}"),
    };
    let mut d = Dom0Initramfs::new(&static_elf(), b"DFBC\x01\x00\x00\x00").unwrap();
    d.add_module("kernel-0", b"pretend bzImage".to_vec())
        .unwrap();
    let set = d.add_xen_drivers(&kernel.modules_dir).unwrap();

    // Every requested driver is there (Debian 6.1 builds them all as modules), and each module's
    // `depends=` (read from its own .modinfo) is loaded before it.
    let names: Vec<&str> = set.load_order.iter().map(|m| m.name.as_str()).collect();
    for want in DOM0_XEN_MODULES {
        let canon = want.replace('-', "_");
        assert!(
            names.contains(&canon.as_str()) || set.builtin.contains(&canon),
            "{want} missing from {names:?}"
        );
    }
    for (i, m) in set.load_order.iter().enumerate() {
        let deps = module_depends(&std::fs::read(&m.host_path).unwrap()).unwrap();
        for dep in deps {
            let at = names.iter().position(|n| *n == dep.replace('-', "_"));
            assert!(
                at.is_some_and(|a| a < i) || set.builtin.contains(&dep),
                "{} needs {dep} first",
                m.name
            );
        }
    }

    let cpio = d.to_cpio().unwrap();
    let mut child = match Command::new("cpio")
        .args(["-t", "-v", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if !test_support::strict() => {
            eprintln!("SKIPPED: GNU cpio not installed: {e}");
            return;
        }
        Err(e) => panic!("cpio: {e}"),
    };
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&cpio).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in\n{listing}"))
            .to_string()
    };
    assert!(line("init").starts_with("-rwxr-xr-x"));
    assert!(line("dev/console").starts_with("crw"));
    assert!(line("domforge/boot.blob").starts_with("-rw-r--r--"));
    assert!(line("domforge/modules/kernel-0").starts_with("-rw-r--r--"));
    for m in &set.load_order {
        line(&format!("lib/modules/{}/{}", set.release, m.relative_path));
    }
    // The load order file names the same modules, in order.
    let order = String::from_utf8(match d.initramfs().get("etc/domforge/modules") {
        Some(initramfs::cpio::EntryKind::File(b)) => b.clone(),
        other => panic!("{other:?}"),
    })
    .unwrap();
    let listed: Vec<&str> = order.lines().collect();
    assert_eq!(listed.len(), set.load_order.len());
    for (l, m) in listed.iter().zip(&set.load_order) {
        assert!(l.ends_with(&m.relative_path), "{l} vs {}", m.relative_path);
    }
}

/// `modules.order` (the fast lookup) and the walk over `kernel/` (the authority) find the same
/// modules in the same load order, for dom0's Xen drivers and a few with dependencies.
#[test]
fn modules_order_lookup_agrees_with_the_walk() {
    use initramfs::kmod::{ModuleLookup, resolve_modules_with};
    let fetcher = Fetcher::new(default_cache_dir().expect("a cache directory"));
    let kernel = match fetcher.linux_kernel(Arch::X86_64) {
        Ok(k) => k,
        Err(e) if !test_support::strict() => {
            eprintln!("SKIPPED: Debian amd64 kernel not available: {e}");
            return;
        }
        Err(e) => panic!("Debian amd64 kernel: {e}"),
    };
    assert!(
        kernel.modules_dir.join("modules.order").is_file(),
        "Debian ships modules.order"
    );
    let mut names: Vec<&str> = DOM0_XEN_MODULES.to_vec();
    names.extend(["virtio_blk", "xfs", "ext4"]);
    let fast = resolve_modules_with(&kernel.modules_dir, &names, ModuleLookup::ModulesOrder)
        .expect("modules.order lookup");
    let walked =
        resolve_modules_with(&kernel.modules_dir, &names, ModuleLookup::Walk).expect("walk");
    assert_eq!(fast, walked);
    assert!(fast.load_order.len() > names.len() - 3, "{fast:?}");
}
