//! What building one PVH guest costs the toolstack itself, against the in-memory fake hypervisor:
//! decompressing Debian's amd64 bzImage (once, as domforge-init caches it) and building + unpausing a
//! 256 MiB, 2-vCPU guest with a ramdisk (layout, populate, e820, loading ~40 MiB of kernel segments,
//! params, HVM context). Xen's own share (populating and scrubbing RAM, foreign-mapping) is measured on
//! a real boot instead: domforge-init prints `DOMFORGE-INIT event=started … build_ms=…` for every guest.
//!
//! `cargo bench -p domctl --bench pvh_build` — needs Debian's amd64 kernel in the domforge cache
//! (`${XDG_CACHE_HOME:-~/.cache}/domforge/packages/amd64/linux-image-*/root/boot/vmlinuz-*`, fetched by
//! the images tests or `domforge build`); without it the bench says so and does nothing.

use domctl::builder::{PvhBuilder, PvhDomainConfig, PvhKernel};
use domctl::fake::FakeXen;
use domctl::{InterfaceVersion, Xen, XenArch};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn cached_kernel() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
        .join("domforge/packages/amd64");
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("linux-image-") && !n.contains("cloud")
        })
        .filter_map(|e| {
            std::fs::read_dir(e.path().join("root/boot"))
                .ok()?
                .filter_map(|f| f.ok())
                .map(|f| f.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                })
        })
        .collect();
    found.sort();
    found.pop()
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let med = v[v.len() / 2];
    println!(
        "{name:<40} median {:>9.1} ms   min {:>9.1} ms   max {:>9.1} ms   (n={})",
        med.as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    );
}

fn main() {
    let Some(path) = cached_kernel() else {
        println!("pvh_build: no Debian amd64 kernel in the domforge cache; nothing measured");
        return;
    };
    let image = std::fs::read(&path).expect("read kernel");
    println!("kernel {} ({} bytes)", path.display(), image.len());
    let mut decompress = Vec::new();
    let mut kernel = None;
    for _ in 0..3 {
        let t = Instant::now();
        kernel = Some(PvhKernel::from_image(&image).expect("PVH kernel"));
        decompress.push(t.elapsed());
    }
    let kernel = kernel.expect("at least one run");
    stats("decompress bzImage (xz) + check ELF", decompress);

    let ramdisk = vec![0x5au8; 2 << 20];
    let mut build = Vec::new();
    for _ in 0..10 {
        let fake = FakeXen::new(XenArch::X86_64, InterfaceVersion::V15);
        let mut xen = Xen::with_version(fake, InterfaceVersion::V15);
        let mut cfg = PvhDomainConfig::new("bench", 2, 256 << 20, "console=hvc0");
        cfg.ramdisk = Some(&ramdisk);
        let t = Instant::now();
        let built = PvhBuilder::new(&mut xen)
            .build(&kernel, &cfg)
            .expect("build");
        build.push(t.elapsed());
        std::hint::black_box(built);
    }
    stats("build + unpause, 256 MiB 2 vCPU (fake Xen)", build);
}
