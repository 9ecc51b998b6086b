//! `cargo bench -p pvh-boot`: time to turn Debian's kernels (from the test cache,
//! `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/debian/*.unpacked/boot/vmlinuz-*`) into a
//! vmlinux, and to build a 1 GiB guest from it. Run the `debian_kernel` tests first to fill
//! the cache.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn cached_kernels() -> Vec<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("domforge/debian");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path().join("boot"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with("vmlinuz-") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("n > 0"))
}

fn main() {
    let kernels = cached_kernels();
    if kernels.is_empty() {
        println!(
            "no cached Debian kernels; run `cargo test -p pvh-boot --test debian_kernel` first"
        );
        return;
    }
    for path in kernels {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let (t, vmlinux) = best_of(3, || {
            pvh_boot::kernel::pvh_elf_bytes(&bytes).map(|v| v.into_owned())
        });
        let Ok(vmlinux) = vmlinux else {
            println!("{}: {:?}", path.display(), vmlinux.err());
            continue;
        };
        let comp = pvh_boot::inspect::inspect_kernel(&bytes)
            .ok()
            .and_then(|r| r.compression);
        println!(
            "{}: {} -> {} bytes ({:?}) in {:.1?} ({:.0} MB/s out)",
            path.file_name().unwrap_or_default().to_string_lossy(),
            bytes.len(),
            vmlinux.len(),
            comp,
            t,
            vmlinux.len() as f64 / t.as_secs_f64() / 1e6
        );
        let Ok(elf) = pvh_boot::kernel::ElfKernel::parse(&vmlinux) else {
            continue;
        };
        let rd = vec![0x5au8; 16 << 20];
        let req = pvh_boot::layout::LayoutRequest {
            memory_bytes: 1 << 30,
            vcpus: 4,
            cmdline: "console=hvc0",
            ramdisk: Some(&rd),
        };
        let Ok((_, layout)) = pvh_boot::plan(&elf, &req) else {
            continue;
        };
        let (t, r) = best_of(3, || {
            let mut mem = pvh_boot::memory::VecGuestMemory::new(&layout.populate);
            pvh_boot::build_from_elf(&elf, &req, &mut mem).map(|_| ())
        });
        println!("  build 1 GiB guest (16 MiB ramdisk) into VecGuestMemory: {t:.1?} ({r:?})");
    }
}
