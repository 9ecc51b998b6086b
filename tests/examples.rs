//! Every manifest in `examples/` must work: it validates without errors, it plans, and the plan keeps
//! the promises `docs/manifest.md` makes about it.
//!
//! The test runs the real pipeline (board DTBs from QEMU `dumpdtb` and Debian's kernel package, kernel
//! and ramdisk facts from the image parsers), so it shares the download cache under
//! `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/` with the rest of the suite.
//!
//! What it checks, and against what:
//! - one `DomainPlan` per `[[domain]]`, with the vCPUs and memory *as written in the file*: the
//!   expectations are read from the example text by a line scanner in this file and converted with
//!   the binary units `docs/manifest.md` documents, not taken from the manifest parser;
//! - boot modules with a load address lie inside one RAM bank of the plan, clear of reserved memory,
//!   and no two overlap (the boot loader would overwrite one with the other);
//! - planning is deterministic: a second plan, and a plan from a second load, serialise to the same
//!   JSON byte for byte;
//! - every built-in board has at least one example;
//! - for every ARM domain that owns devices, the `device-tree` crate (its own DT reader and resolver)
//!   builds the passthrough fragment from the board's DTB and agrees with the plan on MMIO mappings and
//!   interrupts, so an example that plans can also be emitted.
//!
//! Prerequisites (QEMU for `dumpdtb`, the Debian packages) are fetched first. When one is missing the
//! test is skipped with the reason printed, except in CI (`CI=true`), where that is a failure.

use firmware_config::board::{BUILTIN_BOARDS, Board, Region, builtin_board};
use firmware_config::diag::Diagnostics;
use firmware_config::manifest::{Console, DomainKind, Manifest};
use firmware_config::plan::SystemPlan;
use pipeline::{self, Loaded, Options, PipelineError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One example, loaded and planned.
struct Example {
    path: PathBuf,
    text: String,
    loaded: Loaded,
    plan: SystemPlan,
}

enum Setup {
    Ready(Vec<Example>),
    /// A prerequisite (tool or download) is missing; the reason is printed.
    Skipped(String),
    /// An example does not validate or plan, or something else went wrong: a test failure.
    Broken(String),
}

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn options() -> Options {
    Options {
        quiet: true,
        ..Options::from_env().expect("a cache directory")
    }
}

fn render(diags: &Diagnostics) -> String {
    diags
        .0
        .iter()
        .map(|d| format!("{:?} {} {}", d.severity, d.code, d.message))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Fetches what the examples need (board DTBs, Xen, kernels, probe). A failure here is a missing
/// prerequisite, not a bug in an example.
fn prerequisites(files: &[PathBuf], opts: &Options) -> Result<(), String> {
    let mut done = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        // A manifest that does not parse is reported by the real run below, not as a prerequisite.
        let Ok(m) = Manifest::parse(&text) else {
            continue;
        };
        let Some(board_text) = builtin_board(&m.system.board.value) else {
            continue;
        };
        let Ok(board) = Board::parse(board_text) else {
            continue;
        };
        if done.insert(("dtb".to_string(), board.name.clone())) {
            let dir = file.parent().unwrap_or(Path::new("."));
            pipeline::board_dtb(&board, dir, opts).map_err(|e| match e {
                PipelineError::Diagnostics { .. } => format!("the DTB of board `{}`", board.name),
                other => format!("the DTB of board `{}`: {other}", board.name),
            })?;
        }
        let xen = m.system.xen.value.to_string();
        let mut sources = vec![pipeline::xen_source(&m)];
        if let Some(d0) = &m.dom0 {
            sources.push(d0.kernel.value.clone());
            sources.extend(d0.ramdisk.iter().map(|r| r.value.clone()));
        }
        for d in &m.domains {
            sources.push(d.kernel.value.clone());
            sources.extend(d.ramdisk.iter().map(|r| r.value.clone()));
        }
        for s in sources {
            // Files next to the manifest are part of the example, not prerequisites.
            if !s.starts_with("debian:") && !s.starts_with("builtin:") {
                continue;
            }
            if done.insert((format!("{:?} {xen}", board.arch), s.clone())) {
                let dir = file.parent().unwrap_or(Path::new("."));
                pipeline::resolve_source(&s, dir, board.arch, &xen, opts)
                    .map_err(|e| format!("`{s}` for {}: {e}", board.arch.as_str()))?;
            }
        }
    }
    Ok(())
}

fn load_and_plan(file: &Path, opts: &Options) -> Result<(Loaded, SystemPlan), String> {
    let name = file.display();
    let loaded = pipeline::load(file, opts).map_err(|e| describe(&name.to_string(), e))?;
    let warnings = loaded.check().map_err(|e| describe(&name.to_string(), e))?;
    if warnings.has_errors() {
        return Err(format!("{name}: errors: {}", render(&warnings)));
    }
    let (plan, _) = loaded.plan().map_err(|e| describe(&name.to_string(), e))?;
    Ok((loaded, plan))
}

fn describe(name: &str, e: PipelineError) -> String {
    match e {
        PipelineError::Diagnostics { diags, .. } => {
            format!("{name} does not validate:\n  {}", render(&diags))
        }
        other => format!("{name}: {other}"),
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let files = example_files();
        let opts = options();
        if let Err(why) = prerequisites(&files, &opts) {
            return Setup::Skipped(why);
        }
        let mut examples = Vec::new();
        let mut failures = Vec::new();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            match load_and_plan(&file, &opts) {
                Ok((loaded, plan)) => examples.push(Example {
                    path: file,
                    text,
                    loaded,
                    plan,
                }),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Setup::Ready(examples)
        } else {
            Setup::Broken(failures.join("\n"))
        }
    })
}

/// The loaded examples, or `None` when the test is skipped (outside CI only).
fn examples() -> Option<&'static [Example]> {
    match setup() {
        Setup::Ready(v) => Some(v),
        Setup::Skipped(why) if !test_support::strict() => {
            eprintln!("SKIPPED: a prerequisite is missing: {why}");
            None
        }
        Setup::Skipped(why) => panic!("CI=true and a prerequisite is missing: {why}"),
        Setup::Broken(why) => panic!("{why}"),
    }
}

fn name_of(e: &Example) -> String {
    e.path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Sizes as `docs/manifest.md` defines them, written independently of `firmware_config::units`:
/// binary units K, M, G, T (optionally with `iB`/`B`), `0x` hexadecimal, bare numbers are bytes.
fn doc_size(text: &str) -> u64 {
    let t = text.trim().trim_matches('"');
    if let Some(hex) = t.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).expect("hex size");
    }
    let t = t.trim_end_matches('B').trim_end_matches('i');
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    digits.parse::<u64>().expect("decimal size") << shift
}

/// `(name, vcpus, memory bytes)` of every `[[domain]]` table, read line by line from the text as a
/// person wrote it (the examples use one `key = value` per line).
fn written_domains(text: &str) -> Vec<(String, u32, u64)> {
    let mut out = Vec::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    let mut flush = |t: Option<BTreeMap<String, String>>| {
        if let Some(t) = t {
            let name = t
                .get("name")
                .expect("a domain name")
                .trim_matches('"')
                .to_string();
            let vcpus = t.get("vcpus").map_or(1, |v| v.parse().expect("vcpus"));
            let memory = doc_size(t.get("memory").expect("domain memory"));
            out.push((name, vcpus, memory));
        }
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            flush(current.take());
            if line == "[[domain]]" {
                current = Some(BTreeMap::new());
            }
        } else if let (Some(t), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            t.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    flush(current);
    out
}

#[test]
fn every_example_validates_and_plans() {
    let Some(examples) = examples() else { return };
    assert!(!examples.is_empty(), "examples/ holds no manifests");
    for e in examples {
        // Loading already refused errors; warnings are allowed but must be warnings.
        let warnings = e.loaded.check().expect("validates");
        assert!(
            warnings.errors().next().is_none(),
            "{}: {}",
            name_of(e),
            render(&warnings)
        );
        assert_eq!(e.plan.name, e.loaded.manifest.system.name.value);
        assert_eq!(e.plan.board, e.loaded.manifest.system.board.value);
    }
}

#[test]
fn plan_has_each_written_domain_with_its_vcpus_and_memory() {
    let Some(examples) = examples() else { return };
    for e in examples {
        let written = written_domains(&e.text);
        assert!(!written.is_empty(), "{} has no [[domain]]", name_of(e));
        assert_eq!(
            e.plan.domains.len(),
            written.len(),
            "{}: one DomainPlan per [[domain]]",
            name_of(e)
        );
        for (name, vcpus, memory) in &written {
            let d = e
                .plan
                .domain(name)
                .unwrap_or_else(|| panic!("{}: no plan for domain `{name}`", name_of(e)));
            assert_eq!(d.vcpus, *vcpus, "{}: vCPUs of `{name}`", name_of(e));
            assert_eq!(d.memory, *memory, "{}: memory of `{name}`", name_of(e));
            let ram: u64 = d.guest_ram.iter().map(|r| r.size).sum();
            assert_eq!(ram, *memory, "{}: guest RAM banks of `{name}`", name_of(e));
        }
        let mut indices: Vec<usize> = e.plan.domains.iter().map(|d| d.boot_index).collect();
        indices.sort_unstable();
        assert_eq!(
            indices,
            (0..written.len()).collect::<Vec<_>>(),
            "{}: boot order",
            name_of(e)
        );
    }
}

#[test]
fn boot_modules_lie_in_ram_and_do_not_overlap() {
    let Some(examples) = examples() else { return };
    for e in examples {
        let placed: Vec<(&str, Region)> = e
            .plan
            .modules
            .iter()
            .filter_map(|m| m.load.map(|l| (m.id.as_str(), l)))
            .collect();
        for (id, r) in &placed {
            assert!(r.size > 0, "{}: module {id} is empty", name_of(e));
            assert!(
                e.plan.ram.iter().any(|bank| bank.contains(r)),
                "{}: module {id} at {r:x?} is not inside one RAM bank of {:x?}",
                name_of(e),
                e.plan.ram
            );
            for res in &e.plan.reserved {
                assert!(
                    !res.overlaps(r),
                    "{}: module {id} at {r:x?} overlaps reserved {res:x?}",
                    name_of(e)
                );
            }
        }
        for (i, (a, ra)) in placed.iter().enumerate() {
            for (b, rb) in &placed[i + 1..] {
                assert!(
                    !ra.overlaps(rb),
                    "{}: modules {a} {ra:x?} and {b} {rb:x?} overlap",
                    name_of(e)
                );
            }
        }
        for m in &e.plan.modules {
            let (Some(load), Some(size)) = (m.load, m.size) else {
                continue;
            };
            if m.id != "xen" {
                // Files are loaded whole, at 2 MiB boundaries (block mappings, as ImageBuilder).
                assert_eq!(load.size, size, "{}: {} load size", name_of(e), m.id);
                assert_eq!(
                    load.base % (2 << 20),
                    0,
                    "{}: {} alignment",
                    name_of(e),
                    m.id
                );
            }
        }
        // On ARM the loader needs an address for every file it loads.
        if e.loaded.board.arch == firmware_config::board::Arch::Arm64 {
            for m in &e.plan.modules {
                assert!(m.load.is_some(), "{}: {} has no address", name_of(e), m.id);
            }
        }
    }
}

#[test]
fn planning_is_byte_for_byte_deterministic() {
    let Some(examples) = examples() else { return };
    let opts = options();
    for e in examples {
        let first = serde_json::to_string(&e.plan).expect("plan serialises");
        let (again, _) = e.loaded.plan().expect("plans twice");
        let second = serde_json::to_string(&again).expect("plan serialises");
        assert_eq!(first, second, "{}: same load, two plans", name_of(e));
        let (_, reloaded) = load_and_plan(&e.path, &opts).expect("loads twice");
        let third = serde_json::to_string(&reloaded).expect("plan serialises");
        assert_eq!(first, third, "{}: two loads, two plans", name_of(e));
    }
}

#[test]
fn every_builtin_board_has_an_example() {
    let Some(examples) = examples() else { return };
    let covered: BTreeSet<&str> = examples.iter().map(|e| e.plan.board.as_str()).collect();
    let missing: Vec<&str> = BUILTIN_BOARDS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !covered.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "built-in boards without an example in examples/: {missing:?}"
    );
}

#[test]
fn passthrough_fragments_agree_with_the_plan() {
    use device_tree::passthrough::{FragmentOptions, PassthroughRequest, fragment};
    let Some(examples) = examples() else { return };
    let mut checked = 0;
    for e in examples {
        let Some(dtb) = &e.loaded.board_dtb else {
            continue;
        };
        let host = device_tree::DeviceTree::from_dtb(dtb).expect("board DTB parses");
        for d in &e.plan.domains {
            if d.kind != DomainKind::Arm64 || d.devices.is_empty() {
                continue;
            }
            let requests: Vec<PassthroughRequest> = d
                .devices
                .iter()
                .map(|dev| PassthroughRequest {
                    path: dev.path.clone(),
                    guest_base: dev.mappings.first().map(|m| m.guest),
                    guest_pages: Vec::new(),
                    force_without_iommu: dev.forced,
                })
                .collect();
            let opts = FragmentOptions {
                drop_dependencies: d.drop_device_dependencies,
                guest_ram: d.guest_ram.clone(),
                vpl011: d.console == Console::Vpl011,
                gic_v3: None,
            };
            let frag = fragment(&host, &requests, &opts).unwrap_or_else(|err| {
                panic!(
                    "{}: domain `{}` plans, but its passthrough DT cannot be built: {err}",
                    name_of(e),
                    d.name
                )
            });
            let from_dt: BTreeSet<(u64, u64, u64)> = frag
                .owned_regions
                .iter()
                .map(|o| (o.host.base, o.host.size, o.guest_base))
                .collect();
            let from_plan: BTreeSet<(u64, u64, u64)> = d
                .devices
                .iter()
                .flat_map(|dev| dev.mappings.iter().map(|m| (m.host, m.size, m.guest)))
                .collect();
            assert_eq!(from_dt, from_plan, "{}: MMIO of `{}`", name_of(e), d.name);
            let dt_irqs: BTreeSet<u32> = frag.irqs.iter().copied().collect();
            let plan_irqs: BTreeSet<u32> = d
                .devices
                .iter()
                .flat_map(|dev| dev.irqs.iter().copied())
                .collect();
            assert_eq!(
                dt_irqs,
                plan_irqs,
                "{}: interrupts of `{}`",
                name_of(e),
                d.name
            );
            assert!(
                frag.shared_pages.is_empty(),
                "{}: `{}` would share MMIO pages with other devices: {:?}",
                name_of(e),
                d.name,
                frag.shared_pages
            );
            checked += 1;
        }
        // The emission path itself (the plan's exact per-range guest addresses, the plan's GIC) must
        // build every fragment too, and agree with the plan (it checks MMIO and SPIs itself).
        let frags = device_tree::from_plan::passthrough_fragments(&host, &e.plan)
            .unwrap_or_else(|err| panic!("{}: {err}", name_of(e)));
        for f in &frags {
            for fix in &f.fragment.host_fixups {
                let mut t = host.clone();
                fix.apply(&mut t)
                    .unwrap_or_else(|err| panic!("{}: host fix-up: {err}", name_of(e)));
            }
        }
    }
    assert!(checked > 0, "no example passes a device through");
}

#[test]
fn the_written_domain_scanner_reads_what_it_should() {
    // The scanner above is the reference for the vCPU/memory check; check it on a known text.
    let text = "[system]\nname = \"x\"\n[[domain]]\nname = \"a\" # c\nmemory = \"256M\"\n\
                [[domain]]\nname = \"b\"\nvcpus = 2\nmemory = \"1G\"\n[[cpupool]]\nname = \"p\"\n";
    assert_eq!(
        written_domains(text),
        vec![("a".into(), 1, 256 << 20), ("b".into(), 2, 1 << 30)]
    );
    assert_eq!(doc_size("\"0x1000\""), 4096);
    assert_eq!(doc_size("4096"), 4096);
    assert_eq!(doc_size("\"64KiB\""), 65536);
}

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

#[test]
fn docs_show_every_example_verbatim() {
    // docs/manifest.md promises one complete example per board, shown as its file's text.
    let doc = repo_file("docs/manifest.md");
    for file in example_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            doc.contains(&format!("`examples/{name}`")),
            "docs/manifest.md does not name examples/{name}"
        );
        assert!(
            doc.contains(&format!("```toml\n{text}```")),
            "docs/manifest.md does not show the current text of examples/{name}; copy it in"
        );
    }
}

/// Diagnostic codes (`"E0123"`, `"W0201"`) written as string literals in `text`.
fn codes_in(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    for i in 0..b.len().saturating_sub(6) {
        let w = &b[i..i + 7];
        if w[0] == b'"'
            && (w[1] == b'E' || w[1] == b'W')
            && w[2] == b'0'
            && w[3..6].iter().all(u8::is_ascii_digit)
            && w[6] == b'"'
        {
            out.insert(String::from_utf8_lossy(&w[1..6]).into_owned());
        }
    }
    out
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn docs_list_every_diagnostic_code_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "firmware-config/src",
        "src",
        "device-tree/src",
        "pipeline/src",
        "bundle/src",
    ] {
        rust_sources(&root.join(dir), &mut files);
    }
    let mut in_code = BTreeSet::new();
    for f in &files {
        in_code.extend(codes_in(&std::fs::read_to_string(f).unwrap()));
    }
    assert!(in_code.len() > 50, "found only {in_code:?}");
    let doc = repo_file("docs/manifest.md");
    let in_doc: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| {
            c.len() == 5
                && (c.starts_with("E0") || c.starts_with("W0"))
                && c[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect();
    let undocumented: Vec<&String> = in_code.difference(&in_doc).collect();
    let stale: Vec<&String> = in_doc.difference(&in_code).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from the table in docs/manifest.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/manifest.md documents codes the code never emits: {stale:?}"
    );
}
