//! Every file in `tests/bad-manifests/` breaks exactly one rule. Its first line says which:
//!
//! ```text
//! # expect: E0206 line 16 "asks for 8 vCPUs"
//! ```
//!
//! The test runs the real pipeline (board DTB from QEMU, kernel facts from the image parsers) and
//! asserts that the manifest fails with exactly that one error, pointing at that line, with that text
//! in its message, label or hint. The expectations were written by hand from the rules in
//! docs/manifest.md, not captured from the tool's output.

use firmware_config::diag::{Diagnostic, SourceId};
use pipeline::{self, Options, PipelineError};
use std::path::Path;

struct Expect {
    code: String,
    /// The error points into the board file the manifest names, not the manifest
    /// (`# expect: E0106 board line 4 "..."`).
    in_board: bool,
    line: usize,
    text: String,
}

fn expectation(text: &str) -> Expect {
    let first = text.lines().next().expect("non-empty file");
    let rest = first
        .strip_prefix("# expect: ")
        .expect("first line is `# expect: CODE line N \"text\"`");
    let (code, rest) = rest.split_once(' ').unwrap();
    let (in_board, rest) = match rest.strip_prefix("board ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let tail = rest
        .strip_prefix("line ")
        .expect("`# expect: CODE [board] line N \"text\"`");
    let code = code.to_string();
    let (line, quoted) = tail.split_once(' ').unwrap();
    Expect {
        code,
        in_board,
        line: line.parse().unwrap(),
        text: quoted.trim_matches('"').to_string(),
    }
}

fn all_text(d: &Diagnostic) -> String {
    let mut s = d.message.clone();
    for l in d.primary.iter().chain(d.secondary.iter()) {
        s.push('\n');
        s.push_str(&l.message);
    }
    if let Some(h) = &d.help {
        s.push('\n');
        s.push_str(h);
    }
    s
}

#[test]
fn each_bad_manifest_fails_with_its_own_precise_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 25,
        "the issue asks for at least 25 broken manifests, found {}",
        files.len()
    );
    let opts = Options {
        quiet: true,
        ..Options::from_env().unwrap()
    };
    let mut failures = Vec::new();
    let mut codes = std::collections::BTreeSet::new();
    for file in &files {
        // Lossy: one fixture (latin1.toml) is deliberately not UTF-8; its first line is ASCII.
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        let want = expectation(&text);
        let result = pipeline::load(file, &opts).and_then(|l| l.check().map(|_| ()));
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let diags = match result {
            Ok(()) => {
                failures.push(format!("{name}: passed validation, expected {}", want.code));
                continue;
            }
            Err(PipelineError::Diagnostics {
                diags,
                manifest,
                board,
            }) => (diags, manifest, board),
            Err(other) => {
                failures.push(format!("{name}: failed outside validation: {other}"));
                continue;
            }
        };
        let (diags, manifest, board) = diags;
        let errors: Vec<&Diagnostic> = diags.errors().collect();
        if errors.len() != 1 {
            let got: Vec<String> = errors
                .iter()
                .map(|d| format!("{} {}", d.code, d.message))
                .collect();
            failures.push(format!(
                "{name}: expected exactly one error ({}), got {}: {got:?}",
                want.code,
                errors.len()
            ));
            continue;
        }
        let d = errors[0];
        codes.insert(d.code);
        if d.code != want.code {
            failures.push(format!(
                "{name}: expected {}, got {} ({})",
                want.code, d.code, d.message
            ));
            continue;
        }
        let primary = d
            .primary
            .as_ref()
            .expect("manifest errors point at the manifest");
        let (source, file) = if want.in_board {
            (
                SourceId::Board,
                board.as_ref().expect("the board file was read"),
            )
        } else {
            (SourceId::Manifest, &manifest)
        };
        assert_eq!(primary.source, source, "{name}");
        let line = file.line_col(primary.span.start).0;
        if line != want.line {
            failures.push(format!(
                "{name}: {} points at line {line}, expected line {}",
                d.code, want.line
            ));
        }
        if !all_text(d).contains(&want.text) {
            failures.push(format!(
                "{name}: {} does not say \"{}\": {}",
                d.code,
                want.text,
                all_text(d)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad manifests misbehaved:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(
        codes.len() >= 25,
        "each manifest should exercise its own rule; distinct codes: {codes:?}"
    );
}

/// Documented codes with no fixture here, and why; each is tested where the reason says.
const NO_FIXTURE: &[(&str, &str)] = &[
    (
        "E0001",
        "a fixture would be a 1 MiB file; firmware-config manifest::tests::a_manifest_over_1_mib_is_e0001",
    ),
    (
        "E0108",
        "internal: a board with a DTB whose DTB was not read; the pipeline always reads it",
    ),
    (
        "E0212",
        "no QEMU virt device uses SPI 32; firmware-config validate::tests::spi_32_collides_with_the_vpl011",
    ),
    (
        "E0239",
        "QEMU virt has no disabled device; validate::tests::disabled_devices_and_unmet_dependencies_are_refused",
    ),
    (
        "E0240",
        "QEMU virt devices depend on no MMIO provider; validate::tests::disabled_devices_and_unmet_dependencies_are_refused",
    ),
    (
        "E0241",
        "no QEMU virt device uses a PPI; validate::diagnostics_tests::rules_the_qemu_boards_cannot_trigger",
    ),
    (
        "E0243",
        "no QEMU virt device is wired through a secondary controller; validate::diagnostics_tests::rules_the_qemu_boards_cannot_trigger",
    ),
    (
        "E0252",
        "not a `check` error: `domforge test`/`run` refuse before booting; tests/cli.rs test_refuses_a_domain_without_a_console_before_booting",
    ),
    (
        "E0301",
        "needs more relocated device MMIO than the 176 MiB guest hole; QEMU virt's devices are a few pages",
    ),
    (
        "E0302",
        "never alone: it follows the E0216 of the file that could not be examined",
    ),
    (
        "E0303",
        "a fixture would be a kernel over 0x37e00000 bytes; validate::diagnostics_tests::rules_the_qemu_boards_cannot_trigger",
    ),
    (
        "E0304",
        "needs a system beyond a boot-blob bound (firmware-config blob limits)",
    ),
    (
        "E0261",
        "QEMU virt has no node with MMIO nodes below it; firmware-config tests/passthrough_diagnostics.rs",
    ),
    (
        "E0401",
        "validation mirrors the fragment generator, so no manifest reaches it; tests/finalize.rs a_fragment_finalize_cannot_generate_points_at_its_domain",
    ),
    (
        "E0402",
        "a file the plan sized cannot outgrow its slot; tests/finalize.rs a_module_that_does_not_fit_its_slot_points_at_the_file_that_named_it",
    ),
    (
        "E0403",
        "a 2 MiB host DTB needs a board DTB of that size; bundle::arm::finalize (the same rule, no fixture board)",
    ),
    (
        "E0406",
        "depends on the machine (no domforge-init built), not the manifest; bundle::init tests",
    ),
    (
        "E0407",
        "a broken Debian kernel package, not a manifest; bundle::dom0",
    ),
    (
        "E0408",
        "needs a board whose modules reach U-Boot's relocation area; tests/boot_image.rs and bundle::targets unit tests",
    ),
    (
        "E0409",
        "a fixture would be a 2 GiB image; bundle unit tests",
    ),
    (
        "E0410",
        "needs a board file whose RAM cannot be written into its DTB; bundle unit tests",
    ),
    (
        "E0112",
        "a board-file error (no manifest fixture reaches it); firmware_config board::file::tests::boot_targets_default_first_and_checked",
    ),
    (
        "E0113",
        "a board-file error; firmware_config board::file::tests::boot_targets_default_first_and_checked",
    ),
    (
        "E0114",
        "a board-file error; firmware_config board::file::tests::boot_targets_default_first_and_checked",
    ),
    (
        "E0411",
        "needs a module name the manifest's own rules already refuse; tests/finalize.rs breaks a planned module id",
    ),
    (
        "E0412",
        "a fixture would be a 2 GiB image; the limit is disk-image's check (h-gpt's tests)",
    ),
    (
        "E0413",
        "needs 31 distinct module files; tests/finalize.rs adds them to a plan",
    ),
    (
        "E0415",
        "needs a Xen without an EFI header that passes every earlier check; tests/finalize.rs",
    ),
    (
        "E0416",
        "needs Debian's GRUB to be missing after load fetched it; bundle targets::grub::tests",
    ),
    (
        "E0418",
        "needs Debian's xenstored to be missing after load fetched it; tests/finalize.rs",
    ),
    (
        "E0419",
        "needs an x86 driver domain whose kernel comes from outside a Debian package, and the fixtures have no x86 kernel; tests/finalize.rs",
    ),
    (
        "W0201",
        "a warning, and these fixtures each fail with one error; validate::diagnostics_tests::rules_the_qemu_boards_cannot_trigger",
    ),
    (
        "W0203",
        "a warning; validate::diagnostics_tests::rules_the_qemu_boards_cannot_trigger",
    ),
];

/// Issue 12 item 7: every code docs/manifest.md lists has a fixture here, or a reason above; no
/// reason is stale (a code with a fixture) and no fixture or reason names an undocumented code.
#[test]
fn every_documented_code_has_a_fixture_or_a_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/manifest.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| {
            c.len() == 5
                && (c.starts_with('E') || c.starts_with('W'))
                && c[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_string)
        .collect();
    assert!(documented.len() >= 80, "{documented:?}");
    let mut fixtures = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(root.join("tests/bad-manifests")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            fixtures.insert(expectation(&text).code);
        }
    }
    let reasons: std::collections::BTreeSet<String> =
        NO_FIXTURE.iter().map(|(c, _)| c.to_string()).collect();
    let missing: Vec<&String> = documented
        .iter()
        .filter(|c| !fixtures.contains(*c) && !reasons.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "documented codes with neither a fixture nor a reason: {missing:?}"
    );
    let stale: Vec<&String> = reasons.intersection(&fixtures).collect();
    assert!(
        stale.is_empty(),
        "codes with a fixture and a reason not to have one: {stale:?}"
    );
    let unknown: Vec<&String> = fixtures
        .union(&reasons)
        .filter(|c| !documented.contains(*c))
        .collect();
    assert!(unknown.is_empty(), "undocumented codes: {unknown:?}");
}

/// The DTBs of the board fixtures are dtc's output for the DTS next to them, so they can be
/// reviewed and rebuilt from source (`dtc -I dts -O dtb -o X.dtb X.dts`).
#[test]
fn fixture_dtbs_are_compiled_from_their_dts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-manifests/boards");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let dts = e.unwrap().path();
        if dts.extension().is_none_or(|x| x != "dts") {
            continue;
        }
        let out = match std::process::Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb"])
            .arg(&dts)
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!("SKIPPED: dtc (device-tree-compiler) is not installed");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read(dts.with_extension("dtb")).unwrap();
        assert_eq!(
            committed,
            out.stdout,
            "{} is not dtc's output",
            dts.display()
        );
        seen += 1;
    }
    assert!(seen >= 2);
}
