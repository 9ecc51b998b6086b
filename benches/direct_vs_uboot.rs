//! Issue 17's benchmark: the same bundle (the built-in example, `examples/qemu-arm64.toml`: three
//! dom0less probe guests on QEMU `virt`, Debian's Xen 4.17) booted alternately
//!
//! * **direct**: QEMU loads Xen, the host DTB and every module itself (`run-qemu.sh`), and
//! * **U-Boot**: Debian's `u-boot-qemu` as `-bios`, `boot.img` as a virtio disk; U-Boot's distro
//!   boot (default environment, so its 2 s autoboot countdown included) runs `boot.scr`, which
//!   loads everything from the FAT partition and `booti`s Xen (`run-qemu-uboot.sh`),
//!
//! measuring from QEMU's start to Xen's banner (`Xen version ...`) and to every guest's probe
//! report being complete (all guests ready), and reporting each path's median and the ratio
//! U-Boot / direct. Only boots that pass their probe checks are timed (the times are for systems
//! that really came up); failed ones are listed, and more failures than runs stop the bench.
//!
//! Run: `cargo bench --bench direct_vs_uboot` (`BOOTBENCH_RUNS=N` changes 3 boots per path).
//! Results: a table on stdout and `<target>/boot-bench/results.json`. One QEMU at a time; QEMU is
//! always stopped (`qemu_tests::runner`). Timings on a shared 2-core machine vary by tens of
//! percent between runs; the ratio of medians from one interleaved run is the figure to quote.

use pipeline::Options;
use qemu_tests::session::{self as run, BootPath, RunOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_RUNS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(300);

fn main() {
    if let Err(e) = bench() {
        eprintln!("direct_vs_uboot: {e}");
        std::process::exit(1);
    }
}

fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[derive(Default)]
struct Times {
    banner: Vec<f64>,
    ready: Vec<f64>,
}

fn bench() -> Result<(), String> {
    let runs = std::env::var("BOOTBENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(DEFAULT_RUNS);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qemu-arm64.toml");
    let mut opts = Options::from_env().map_err(|e| e.to_string())?;
    opts.quiet = true;
    let out = target_dir().join("boot-bench");
    let _ = std::fs::remove_dir_all(&out);
    let paths = [("direct", BootPath::Direct), ("U-Boot", BootPath::UBoot)];
    // Both paths boot the same bundle: one directory, built once per path, byte-identical.
    let mut prepared = Vec::new();
    for (name, boot) in paths {
        let ro = RunOptions {
            out_dir: Some(out.join("bundle")),
            deadline: DEADLINE,
            boot,
            ..RunOptions::default()
        };
        let p = run::prepare(&manifest, &opts, &ro, |_| {}).map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "==> {name}: {}",
            p.qemu.program.clone() + " " + &p.qemu.args.join(" ")
        );
        prepared.push((name, ro, p));
    }
    let image = std::fs::metadata(out.join("bundle/boot.img"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut times: Vec<Times> = paths.iter().map(|_| Times::default()).collect();
    let mut failures: Vec<String> = Vec::new();
    // Interleaved until every path has `runs` passing boots. A boot whose probe checks fail is
    // reported and not timed (three guests printing through Xen's console at once occasionally
    // lose a line under TCG: the report then says "N lines, N-1 arrived"); more than `runs`
    // failures in all stop the bench.
    let mut attempt = 0;
    while times.iter().any(|t| t.ready.len() < runs) {
        attempt += 1;
        for (k, (name, ro, p)) in prepared.iter().enumerate() {
            if times[k].ready.len() >= runs {
                continue;
            }
            let (report, log) = p.test(ro, |_| {}).map_err(|e| format!("{name}: {e}"))?;
            if !report.passed {
                let why = report.messages().join("; ");
                eprintln!("{name} boot {attempt}: FAILED, not timed: {why}");
                failures.push(format!("{name} boot {attempt}: {why}"));
                if failures.len() > runs {
                    return Err(format!(
                        "{} failed boots:\n{}\n{}",
                        failures.len(),
                        failures.join("\n"),
                        log.tail(40)
                    ));
                }
                continue;
            }
            let banner = log
                .lines
                .iter()
                .find(|l| l.raw.contains("Xen version "))
                .map(|l| l.at.as_secs_f64())
                .ok_or(format!("{name} boot {attempt}: no Xen banner"))?;
            let ready = report
                .domains
                .iter()
                .filter_map(|d| d.ready_s)
                .fold(0.0, f64::max);
            eprintln!(
                "{name} boot {attempt}: Xen banner {banner:.2} s, all guests ready {ready:.1} s"
            );
            times[k].banner.push(banner);
            times[k].ready.push(ready);
        }
    }
    let (d, u) = (&times[0], &times[1]);
    let (db, dr, ub, ur) = (
        median(&d.banner),
        median(&d.ready),
        median(&u.banner),
        median(&u.ready),
    );
    println!("boot path | Xen banner (median s) | all guests ready (median s)");
    println!("---|---|---");
    println!("direct | {db:.2} | {dr:.1}");
    println!("U-Boot | {ub:.2} | {ur:.1}");
    println!("U-Boot / direct | {:.1}x | {:.2}x", ub / db, ur / dr);
    println!(
        "({runs} passing boots per path, interleaved; {} failed boot(s) not timed; boot.img {image} bytes)",
        failures.len()
    );
    let results = json!({
        "manifest": "examples/qemu-arm64.toml",
        "runs": runs,
        "boot_img_bytes": image,
        "direct": { "banner_s": d.banner, "ready_s": d.ready, "median_banner_s": db, "median_ready_s": dr },
        "uboot": { "banner_s": u.banner, "ready_s": u.ready, "median_banner_s": ub, "median_ready_s": ur },
        "ratio_banner": ub / db,
        "ratio_ready": ur / dr,
        "failed_boots": failures,
    });
    let path = out.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("results: {}", path.display());
    Ok(())
}
