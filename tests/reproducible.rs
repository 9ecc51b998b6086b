//! Same manifest + same lock ⇒ the same bundle, byte for byte, from a cache that holds nothing
//! domforge derived (issue 14). Each example is built twice: once with the user's cache, and once
//! with a fresh cache that shares only the downloaded Debian packages and apt indexes (symlinks
//! to `packages/` and `apt/`), so the probe initramfs, the QEMU-dumped board DTB, the file facts
//! and the host-prepared kernels are all made again. Every file of the two bundles must be equal
//! (compared directly, not through the bundle's own SHA256SUMS). Needs domforge-init for the x86
//! example (`scripts/build-init`). This found QEMU's per-run `/chosen` seeds in the dumped board
//! DTB (pipeline's `without_dump_seeds`).

mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TEST: &str = "reproducible";

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("inside").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Builds `example` with `cache` into `out`; `None` when it cannot be built here.
fn build(example: &str, cache: &Path, out: &Path) -> Option<BTreeMap<PathBuf, Vec<u8>>> {
    let mut opts = common::quiet();
    opts.cache_dir = cache.to_path_buf();
    common::build(TEST, &format!("examples/{example}"), &opts, out).map(|b| files(&b.out.dir))
}

/// `prepares`: the example has domforge-init-built domains, whose kernels the fresh cache must
/// have prepared again.
fn same_bundle_from_a_fresh_cache(example: &str, prepares: bool) {
    let user_cache = common::quiet().cache_dir;
    if !user_cache.join("packages").is_dir() {
        test_support::missing(TEST, "no Debian packages in the cache yet");
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(TEST)
        .join(example);
    let _ = std::fs::remove_dir_all(&tmp);
    let fresh = tmp.join("cache");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    for shared in ["packages", "apt"] {
        if user_cache.join(shared).exists() {
            std::os::unix::fs::symlink(user_cache.join(shared), fresh.join(shared))
                .expect("symlink");
        }
    }
    let Some(first) = build(example, &user_cache, &tmp.join("a")) else {
        return;
    };
    let Some(second) = build(example, &fresh, &tmp.join("b")) else {
        return;
    };
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>(),
        "{example}: the same files"
    );
    for (path, bytes) in &first {
        assert!(
            second[path] == *bytes,
            "{example}: {} differs between the two builds",
            path.display()
        );
    }
    assert_eq!(
        fresh.join("prepared").is_dir(),
        prepares,
        "{example}: kernels prepared in the fresh cache"
    );
}

#[test]
fn x86_example_is_byte_identical_from_a_fresh_cache() {
    same_bundle_from_a_fresh_cache("qemu-x86_64.toml", true);
}

#[test]
fn arm_example_is_byte_identical_from_a_fresh_cache() {
    same_bundle_from_a_fresh_cache("qemu-arm64.toml", false);
}

#[test]
fn arm_dom0_example_is_byte_identical_from_a_fresh_cache() {
    same_bundle_from_a_fresh_cache("qemu-arm64-dom0.toml", false);
}
