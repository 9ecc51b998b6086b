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

use domforge::pipeline::{self, Options, PipelineError};
use firmware_config::diag::{Diagnostic, SourceId};
use std::path::Path;

struct Expect {
    code: String,
    line: usize,
    text: String,
}

fn expectation(text: &str) -> Expect {
    let first = text.lines().next().expect("non-empty file");
    let rest = first
        .strip_prefix("# expect: ")
        .expect("first line is `# expect: CODE line N \"text\"`");
    let mut parts = rest.splitn(3, ' ');
    let code = parts.next().unwrap().to_string();
    assert_eq!(parts.next(), Some("line"));
    let tail = parts.next().unwrap();
    let (line, quoted) = tail.split_once(' ').unwrap();
    Expect {
        code,
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
            Err(PipelineError::Other(msg)) => {
                failures.push(format!("{name}: failed outside validation: {msg}"));
                continue;
            }
            Err(PipelineError::Diagnostics {
                diags, manifest, ..
            }) => (diags, manifest),
        };
        let (diags, manifest) = diags;
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
        assert_eq!(primary.source, SourceId::Manifest, "{name}");
        let line = manifest.line_col(primary.span.start).0;
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
