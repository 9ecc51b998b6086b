//! The lock file against the real Debian cache: what it records is checked with independent tools
//! (`sha256sum`, `dpkg-deb -f`), a satisfied lock is answered without touching any package index
//! (a private cache that has no apt state at all, and the fetcher's index-access counter), a
//! tampered cache file is refused, `--locked` refuses a missing or incomplete lock, a pinned
//! version that left the archive names the package and the fix, and `update` shows and writes the
//! change.
//!
//! Prerequisite: Debian's `xen-hypervisor-4.17-arm64` and the QEMU virt DTB in the shared cache
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`, filled by any arm64 test or `domforge fetch
//! examples/qemu-arm64.toml`). Without it the tests are skipped with the reason printed, except in
//! CI (`CI=true`), where that is a failure. Every test works offline or in a private cache, so none
//! needs the network.

use pipeline::lock::{LockFile, LockPolicy, lock_path};
use pipeline::{LockError, Options, PipelineError};
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"[system]
name = "lock-test"
board = "qemu-virt-arm64"
xen = "4.17"

[[domain]]
name = "guest"
kind = "arm64"
vcpus = 1
memory = "128M"
kernel = "Image"
"#;

fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "prerequisite missing in CI: {why}"
    );
    eprintln!("SKIPPED: {why}");
}

fn real_cache() -> PathBuf {
    debian_fetch::default_cache_dir().expect("a cache directory")
}

/// The cached unpack of Debian's xen-hypervisor-4.17-arm64, if any.
fn cached_xen_package(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache.join("packages/arm64"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with("xen-hypervisor-4.17-arm64_")
            }) && p.join("fetched").is_file()
        })
}

fn options(cache: &Path, policy: LockPolicy, offline: bool) -> Options {
    Options {
        cache_dir: cache.to_path_buf(),
        offline,
        quiet: true,
        lock: policy,
        ..Options::from_env().expect("options")
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// A manifest directory whose lock was written from the shared cache (offline: it must hold
/// the package already), and the unpacked package it pins.
struct Fixture {
    dir: tempfile::TempDir,
    package: PathBuf,
}

impl Fixture {
    fn new() -> Option<Self> {
        let cache = real_cache();
        let Some(package) = cached_xen_package(&cache) else {
            skip("xen-hypervisor-4.17-arm64 is not in the shared cache");
            return None;
        };
        if !cache.join("dtb").is_dir() {
            skip("no QEMU virt DTB in the shared cache");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.toml"), MANIFEST).unwrap();
        // Not a kernel: validation refuses it later, but loading (and locking) does not care.
        std::fs::write(dir.path().join("Image"), [0u8; 512]).unwrap();
        let opts = options(&cache, LockPolicy::Use, true);
        let loaded = match pipeline::load(&dir.path().join("m.toml"), &opts) {
            Ok(l) => l,
            Err(e) => {
                skip(&format!(
                    "cannot load the fixture from the shared cache: {e}"
                ));
                return None;
            }
        };
        assert!(loaded.lock.written, "a first load writes the lock");
        assert!(
            opts.index_accesses() > 0,
            "resolving without a lock reads the index (the counter must see it)"
        );
        Some(Self { dir, package })
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("m.toml")
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(lock_path(&self.manifest())).unwrap()
    }

    /// A cache holding only what the lock pins: the xen package and the board DTB. It has no
    /// apt state, so any index access would have to create one.
    fn private_cache(&self) -> tempfile::TempDir {
        let cache = tempfile::tempdir().unwrap();
        copy_tree(&real_cache().join("dtb"), &cache.path().join("dtb"));
        copy_tree(
            &self.package,
            &cache
                .path()
                .join("packages/arm64")
                .join(self.package.file_name().unwrap()),
        );
        cache
    }
}

#[test]
fn lock_records_what_independent_tools_see() {
    let Some(fx) = Fixture::new() else { return };
    let lock = LockFile::parse(&fx.lock_text()).expect("the written lock parses");
    assert_eq!(lock.version, 1);
    assert_eq!(lock.sources.len(), 1, "{lock:?}");
    let entry = &lock.sources[0];
    assert_eq!(entry.source, "debian:xen");
    assert_eq!(entry.architecture, "arm64");
    assert_eq!(entry.xen.as_deref(), Some("4.17"));
    let [package] = entry.packages.as_slice() else {
        panic!("one package: {entry:?}")
    };
    let deb = fx.package.join("package.deb");
    let deb = deb.to_str().unwrap();
    assert_eq!(
        package.name,
        tool("dpkg-deb", &["-f", deb, "Package"]).trim()
    );
    assert_eq!(
        package.version,
        tool("dpkg-deb", &["-f", deb, "Version"]).trim()
    );
    assert_eq!(package.architecture, "arm64");
    assert_eq!(package.suite, "bookworm");
    let sha = |path: &str| {
        tool("sha256sum", &[path])
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(package.sha256, sha(deb), "the .deb's digest");
    let binary = fx.package.join("root/boot/xen-4.17-arm64");
    assert_eq!(
        entry.sha256,
        sha(binary.to_str().unwrap()),
        "the extracted hypervisor's digest"
    );
    // No timestamps, no absolute paths: nothing that differs between two machines.
    let text = fx.lock_text();
    assert!(!text.contains(fx.dir.path().to_str().unwrap()), "{text}");
    assert!(!text.contains(real_cache().to_str().unwrap()), "{text}");
}

#[test]
fn satisfied_lock_touches_no_package_index() {
    let Some(fx) = Fixture::new() else { return };
    let before = fx.lock_text();
    let cache = fx.private_cache();
    // Online: nothing forbids apt here, the lock alone must make it unnecessary.
    let opts = options(cache.path(), LockPolicy::Locked, false);
    let loaded = pipeline::load(&fx.manifest(), &opts).expect("a satisfied lock loads");
    assert_eq!(opts.index_accesses(), 0, "no apt run, no apt state opened");
    assert!(
        !cache.path().join("apt").exists(),
        "no apt state was created in the private cache"
    );
    let facts = loaded.artifacts["debian:xen"]
        .as_ref()
        .expect("xen examined");
    assert!(
        facts.path.starts_with(cache.path().to_str().unwrap()),
        "{}",
        facts.path
    );
    assert!(!loaded.lock.written);
    assert!(loaded.lock.changes.is_empty());
    assert_eq!(fx.lock_text(), before, "the lock is not rewritten");
}

#[test]
fn tampered_cache_files_are_refused() {
    let Some(fx) = Fixture::new() else { return };
    let cache = fx.private_cache();
    let unpacked = cache
        .path()
        .join("packages/arm64")
        .join(fx.package.file_name().unwrap());
    let opts = options(cache.path(), LockPolicy::Use, false);

    // The extracted hypervisor changed: its digest differs from the lock's.
    let binary = unpacked.join("root/boot/xen-4.17-arm64");
    let mut bytes = std::fs::read(&binary).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&binary, &bytes).unwrap();
    let loaded = pipeline::load(&fx.manifest(), &opts).expect("load reports per source");
    let why = loaded.artifacts["debian:xen"]
        .as_ref()
        .expect_err("a modified hypervisor is refused");
    assert!(why.contains("was modified"), "{why}");
    assert!(why.contains("xen-4.17-arm64"), "{why}");
    match loaded.check() {
        Err(PipelineError::Diagnostics { diags, .. }) => {
            assert!(
                diags
                    .errors()
                    .any(|d| d.code == "E0216" && d.message.contains("was modified")),
                "{diags:?}"
            );
        }
        other => panic!("check must refuse it: {:?}", other.map(|_| ())),
    }

    // The cache entry claims another .deb than the one the lock pins.
    let meta = unpacked.join("fetched");
    let text = std::fs::read_to_string(&meta).unwrap();
    let sha_line = text.lines().find(|l| l.starts_with("sha256=")).unwrap();
    std::fs::write(
        &meta,
        text.replace(sha_line, &format!("sha256={}", "0".repeat(64))),
    )
    .unwrap();
    let loaded = pipeline::load(&fx.manifest(), &opts).expect("load reports per source");
    let why = loaded.artifacts["debian:xen"].as_ref().unwrap_err();
    assert!(why.contains("but the pin says"), "{why}");
    assert_eq!(opts.index_accesses(), 0, "refused without asking the index");
}

#[test]
fn locked_refuses_a_missing_lock() {
    let Some(fx) = Fixture::new() else { return };
    std::fs::remove_file(lock_path(&fx.manifest())).unwrap();
    let opts = options(&real_cache(), LockPolicy::Locked, true);
    match pipeline::load(&fx.manifest(), &opts) {
        Err(PipelineError::Lock(e @ LockError::Missing { .. })) => {
            let text = e.to_string();
            assert!(text.contains("--locked"), "{text}");
            assert!(text.contains("domforge update"), "{text}");
            assert!(text.contains("m.toml.lock"), "{text}");
            assert!(text.contains("debian:xen (arm64, Xen 4.17)"), "{text}");
        }
        other => panic!(
            "expected the missing-lock error, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(
        !lock_path(&fx.manifest()).exists(),
        "--locked writes nothing"
    );
    assert_eq!(opts.index_accesses(), 0, "nothing resolved under --locked");
}

#[test]
fn locked_refuses_a_source_the_lock_lacks() {
    let Some(fx) = Fixture::new() else { return };
    let before = fx.lock_text();
    std::fs::write(
        fx.manifest(),
        MANIFEST.replace("kernel = \"Image\"", "kernel = \"debian:kernel\""),
    )
    .unwrap();
    let opts = options(&real_cache(), LockPolicy::Locked, true);
    match pipeline::load(&fx.manifest(), &opts) {
        Err(PipelineError::Lock(e @ LockError::Missing { .. })) => {
            let text = e.to_string();
            assert!(text.contains("debian:kernel (arm64)"), "{text}");
            assert!(!text.contains("debian:xen"), "xen is pinned: {text}");
        }
        other => panic!(
            "expected the missing-entry error, got {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(fx.lock_text(), before, "--locked changes nothing");
}

#[test]
fn a_pinned_version_that_left_the_archive_names_package_and_fix() {
    let Some(fx) = Fixture::new() else { return };
    let apt = real_cache().join("apt/bookworm-arm64");
    if !apt.join("lists").is_dir() {
        skip("no bookworm arm64 index in the shared cache");
        return;
    }
    let lock = fx.lock_text();
    let version = LockFile::parse(&lock).unwrap().sources[0].packages[0]
        .version
        .clone();
    let gone = "4.17.0+0-gone";
    std::fs::write(
        lock_path(&fx.manifest()),
        lock.replace(&format!("\"{version}\""), &format!("\"{gone}\"")),
    )
    .unwrap();
    // A private copy of the index, just refreshed (so no refresh is attempted): the pinned
    // version is looked up in it and is not there.
    let cache = fx.private_cache();
    copy_tree(&apt, &cache.path().join("apt/bookworm-arm64"));
    std::fs::write(cache.path().join("apt/bookworm-arm64/updated"), b"").unwrap();
    let opts = options(cache.path(), LockPolicy::Use, false);
    let loaded = pipeline::load(&fx.manifest(), &opts).expect("load reports per source");
    let why = loaded.artifacts["debian:xen"].as_ref().unwrap_err();
    assert!(why.contains("xen-hypervisor-4.17-arm64"), "{why}");
    assert!(why.contains(gone), "{why}");
    assert!(why.contains("no longer in Debian bookworm"), "{why}");
    assert!(why.contains("domforge update"), "{why}");
    assert!(why.contains("m.toml.lock"), "{why}");
}

#[test]
fn update_shows_the_change_and_verify_refuses_it() {
    let Some(fx) = Fixture::new() else { return };
    let current = fx.lock_text();
    let version = LockFile::parse(&current).unwrap().sources[0].packages[0]
        .version
        .clone();
    let stale = current.replace(&format!("\"{version}\""), "\"4.17.0+0-old\"");
    std::fs::write(lock_path(&fx.manifest()), &stale).unwrap();

    // `update --locked`: re-resolving would change the lock, so it refuses and keeps it.
    let opts = options(&real_cache(), LockPolicy::Verify, true);
    match pipeline::load(&fx.manifest(), &opts) {
        Err(PipelineError::Lock(e @ LockError::WouldChange { .. })) => {
            let text = e.to_string();
            assert!(text.contains("4.17.0+0-old ->"), "{text}");
            assert!(text.contains(&version), "{text}");
            assert!(text.contains("domforge update"), "{text}");
        }
        other => panic!(
            "expected the would-change error, got {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(fx.lock_text(), stale);

    // `update`: the change is reported and written, and the result is the lock a fresh
    // resolution writes, byte for byte.
    let opts = options(&real_cache(), LockPolicy::Update, true);
    let loaded = pipeline::load(&fx.manifest(), &opts).expect("update");
    assert!(loaded.lock.written);
    let changes: Vec<String> = loaded
        .lock
        .changes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].starts_with("~ debian:xen (arm64, Xen 4.17)"),
        "{changes:?}"
    );
    assert_eq!(fx.lock_text(), current);
}

/// Issue 12: `check` never compiles. With no build of `builtin:xen-static-memory` cached, the
/// options `check` and `plan` use ([`Options::without_builds`]) give a spanned diagnostic that
/// says how to build it, and neither apt nor the compiler runs (no apt state, no build
/// directory appears in the empty cache).
#[test]
fn check_never_compiles_xen() {
    let real = real_cache();
    if !real.join("dtb").is_dir() {
        skip("no QEMU virt DTB in the shared cache");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("static.toml");
    std::fs::write(
        &manifest,
        MANIFEST.replace(
            "xen = \"4.17\"\n",
            "xen = \"4.17\"\nhypervisor = \"builtin:xen-static-memory\"\n",
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("Image"), [0u8; 512]).unwrap();
    let cache = tempfile::tempdir().unwrap();
    copy_tree(&real.join("dtb"), &cache.path().join("dtb"));
    for policy in [LockPolicy::Use, LockPolicy::Off] {
        let opts = options(cache.path(), policy, false).without_builds();
        let loaded = pipeline::load(&manifest, &opts).expect("load reports per source");
        let why = loaded.artifacts["builtin:xen-static-memory"]
            .as_ref()
            .expect_err("nothing is built");
        assert!(why.contains("never compile"), "{why}");
        assert!(why.contains("domforge fetch"), "{why}");
        assert!(why.contains("static.toml"), "{why}");
        match loaded.check() {
            Err(PipelineError::Diagnostics {
                diags, manifest: m, ..
            }) => {
                let d = diags
                    .errors()
                    .find(|d| d.message.contains("never compile"))
                    .unwrap_or_else(|| panic!("{diags:?}"));
                let span = d.primary.as_ref().expect("spanned").span.clone();
                assert_eq!(&m.text[span], "\"builtin:xen-static-memory\"");
            }
            other => panic!("check must refuse it: {:?}", other.map(|_| ())),
        }
        assert_eq!(opts.index_accesses(), 0);
        assert!(!cache.path().join("xen-build").exists(), "no build started");
        assert!(!cache.path().join("apt").exists(), "no source index read");
    }
    assert!(
        !lock_path(&manifest).exists(),
        "nothing resolved, nothing locked"
    );
}
