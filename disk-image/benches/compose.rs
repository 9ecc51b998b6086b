//! What an image costs to lay out: [`disk_image::compose`] (metadata only, the files' bytes left
//! where they are) against [`disk_image::build`] (the whole image in memory), for the files of a
//! 64-domain bundle's `boot.img` (Xen, one 40 MB kernel, a ramdisk, the DTB, the script) and a
//! dozen files of 8 MB. Medians of `ITERATIONS` (5) runs; the hashing of the volume ID is left
//! out (the bundle passes the digests it already has). Run: `cargo bench -p disk-image`.

use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A named set of files (path on the image, bytes).
type FileSet = (&'static str, Vec<(String, Vec<u8>)>);

fn main() {
    let iterations = match std::env::var("ITERATIONS").map(|v| v.parse::<usize>()) {
        Ok(Ok(n)) if n > 0 => n,
        _ => 5,
    };
    let sets: Vec<FileSet> = vec![
        (
            "64-domain boot.img",
            vec![
                ("modules/xen".into(), pattern(1 << 20, 1)),
                ("modules/kernel".into(), pattern(40 << 20, 2)),
                ("modules/probe".into(), pattern(2 << 20, 3)),
                ("host.dtb".into(), pattern(64 << 10, 4)),
                ("boot.scr".into(), pattern(16 << 10, 5)),
            ],
        ),
        (
            "12 files of 8 MB",
            (0..12)
                .map(|i| (format!("modules/m{i}"), pattern(8 << 20, i as u8)))
                .collect(),
        ),
    ];
    println!("disk image layout, median of {iterations}");
    println!(
        "{:<22} {:>8} {:>10} {:>10}",
        "files", "MB", "compose", "build"
    );
    let zero = [0u8; 32];
    for (name, files) in &sets {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let opts = disk_image::ImageOptions::default();
        let (mut composed, mut built) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            let t = Instant::now();
            let c = disk_image::compose(&refs, &|_| Some(zero), &opts).expect("compose");
            composed.push(t.elapsed());
            std::hint::black_box(&c);
            drop(c);
            let t = Instant::now();
            let b = disk_image::compose(&refs, &|_| Some(zero), &opts)
                .expect("compose")
                .into_image(&refs);
            built.push(t.elapsed());
            std::hint::black_box(&b);
        }
        let mb = files.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1e6;
        println!(
            "{name:<22} {mb:>8.1} {:>8.1}ms {:>8.1}ms",
            median(composed).as_secs_f64() * 1e3,
            median(built).as_secs_f64() * 1e3
        );
    }
}
