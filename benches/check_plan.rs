//! Issue 14's "instant commands" target: `check` and `plan` of every example, warm, with a
//! satisfied lock, ≤ 50 ms.
//!
//! Each example is copied into a scratch directory (so no lock is written into `examples/`),
//! loaded once with the lock policy `use` to write `<manifest>.lock` (this first run may download
//! into the shared cache, `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`), and then measured with
//! `--locked` semantics, the way CI runs it:
//! - **library**: `pipeline::load` + `Loaded::check` (check) and `load` + `Loaded::final_plan`
//!   (plan) in this process, `ITERATIONS` times each; the median and the minimum are reported;
//! - **cli**: the release `domforge --locked -q check|plan MANIFEST` as a new process (what an
//!   editor hook or pre-commit runs), median of `ITERATIONS`.
//!
//! Every measured run must leave the fetchers' index-access counter at zero: a satisfied lock
//! reads no package index. A run that touches one, or a figure over the target, is flagged in the
//! table (the bench reports, it does not fail on speed). Run: `cargo bench --bench check_plan`
//! (`CHECKPLAN_ITERATIONS=N` changes 15). Results: a table on stdout and
//! `<target>/check-plan-bench/results.json`.

use pipeline::{LockPolicy, Options};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: Duration = Duration::from_millis(50);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn options(policy: LockPolicy) -> Options {
    Options {
        quiet: true,
        lock: policy,
        ..Options::from_env().expect("a cache directory")
    }
    .without_builds()
}

struct Row {
    name: String,
    check: Vec<Duration>,
    plan: Vec<Duration>,
    cli_check: Vec<Duration>,
    cli_plan: Vec<Duration>,
    /// `pipeline::load` alone (resolve + examine), to split check's time.
    load: Vec<Duration>,
    index_accesses: u64,
    error: Option<String>,
}

fn measure(example: &Path, scratch: &Path, iterations: usize) -> Row {
    let name = example.file_name().unwrap().to_string_lossy().into_owned();
    let manifest = scratch.join(&name);
    std::fs::copy(example, &manifest).expect("copy example");
    let mut row = Row {
        name,
        check: Vec::new(),
        plan: Vec::new(),
        cli_check: Vec::new(),
        cli_plan: Vec::new(),
        load: Vec::new(),
        index_accesses: 0,
        error: None,
    };
    // Warm-up: resolve (perhaps download) and write the lock.
    if let Err(e) = pipeline::load(&manifest, &options(LockPolicy::Use)).and_then(|l| l.check()) {
        row.error = Some(format!("warm-up: {e}"));
        return row;
    }
    let opts = options(LockPolicy::Locked);
    for _ in 0..iterations {
        let t = Instant::now();
        let r = pipeline::load(&manifest, &opts).and_then(|l| {
            row.load.push(t.elapsed());
            l.check()
        });
        row.check.push(t.elapsed());
        if let Err(e) = r {
            row.error = Some(format!("check: {e}"));
            return row;
        }
        let t = Instant::now();
        let r = pipeline::load(&manifest, &opts).and_then(|l| l.final_plan());
        row.plan.push(t.elapsed());
        if let Err(e) = r {
            row.error = Some(format!("plan: {e}"));
            return row;
        }
    }
    row.index_accesses = opts.index_accesses();
    let exe = env!("CARGO_BIN_EXE_domforge");
    for _ in 0..iterations {
        for cmd in ["check", "plan"] {
            let t = Instant::now();
            let status = Command::new(exe)
                .args(["--locked", "-q", cmd])
                .arg(&manifest)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            let elapsed = t.elapsed();
            if cmd == "check" {
                row.cli_check.push(elapsed);
            } else {
                row.cli_plan.push(elapsed);
            }
            if !status.is_ok_and(|s| s.success()) {
                row.error = Some(format!("`domforge --locked {cmd}` failed"));
                return row;
            }
        }
    }
    row
}

fn main() {
    let iterations: usize = std::env::var("CHECKPLAN_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15);
    let scratch = std::env::temp_dir().join(format!("domforge-check-plan-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let rows: Vec<Row> = examples()
        .iter()
        .map(|e| measure(e, &scratch, iterations))
        .collect();
    let _ = std::fs::remove_dir_all(&scratch);

    println!(
        "check/plan warm with a satisfied lock, {iterations} iterations, target ≤ {} ms",
        TARGET.as_millis()
    );
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>12} {:>7}  verdict",
        "example", "load med", "check med", "plan med", "cli check", "cli plan", "index"
    );
    let mut json_rows = Vec::new();
    for r in &rows {
        if let Some(e) = &r.error {
            println!("{:<24} ERROR {e}", r.name);
            json_rows.push(json!({ "example": r.name, "error": e }));
            continue;
        }
        let (c, p) = (median(r.check.clone()), median(r.plan.clone()));
        let (cc, cp) = (median(r.cli_check.clone()), median(r.cli_plan.clone()));
        let worst = c.max(p).max(cc).max(cp);
        let verdict = if r.index_accesses > 0 {
            "TOUCHED AN INDEX"
        } else if worst <= TARGET {
            "ok"
        } else {
            "OVER TARGET"
        };
        println!(
            "{:<24} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>7}  {verdict}",
            r.name,
            ms(median(r.load.clone())),
            ms(c),
            ms(p),
            ms(cc),
            ms(cp),
            r.index_accesses
        );
        json_rows.push(json!({
            "example": r.name,
            "load_median_ms": ms(median(r.load.clone())),
            "check_median_ms": ms(c),
            "check_min_ms": ms(*r.check.iter().min().unwrap()),
            "plan_median_ms": ms(p),
            "plan_min_ms": ms(*r.plan.iter().min().unwrap()),
            "cli_check_median_ms": ms(cc),
            "cli_plan_median_ms": ms(cp),
            "index_accesses": r.index_accesses,
            "verdict": verdict,
        }));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/check-plan-bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let text = serde_json::to_string_pretty(&json!({
            "iterations": iterations,
            "target_ms": ms(TARGET),
            "examples": json_rows,
        }))
        .unwrap_or_default();
        let _ = std::fs::write(out.join("results.json"), text);
    }
}
