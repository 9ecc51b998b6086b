//! The JSON Schema (`domforge schema`) checked by an independent validator (the `jsonschema`
//! crate) against the manifests we know the truth about:
//!
//! - every example manifest and every QEMU scenario manifest (all accepted by `domforge check`)
//!   is valid under the schema;
//! - every bad manifest whose expected error is a *schema* error (an unknown key E0002, a value
//!   outside an enumeration E0003, a missing required key E0004, a wrong type E0005, a size that is
//!   not a size E0013, not an address E0014, a name that is not a name E0012) is invalid under it, and every other bad manifest — wrong for reasons only
//!   the whole-system checks can see — is valid, so the schema is neither looser nor stricter than
//!   the parser about what a manifest *is*. The expected codes come from each file's hand-written
//!   `# expect:` line.
#![cfg(feature = "schema")]

use std::path::{Path, PathBuf};

const SCHEMA_ERRORS: &[&str] = &[
    "E0002", "E0003", "E0004", "E0005", "E0012", "E0013", "E0014",
];

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn as_json(text: &str) -> Option<serde_json::Value> {
    let value: toml::Value = toml::from_str(text).ok()?;
    serde_json::to_value(value).ok()
}

fn validator() -> jsonschema::Validator {
    let schema = firmware_config::json_schema::manifest_schema();
    jsonschema::validator_for(&schema).expect("the generated schema is a valid JSON Schema")
}

#[test]
fn every_example_and_scenario_manifest_is_valid() {
    let v = validator();
    let all: Vec<PathBuf> = files("examples")
        .into_iter()
        .chain(files("tests/scenarios"))
        .collect();
    assert!(all.len() >= 6);
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        let json = as_json(&text).unwrap();
        let errors: Vec<String> = v
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn bad_manifests_fail_the_schema_exactly_when_their_error_is_a_schema_error() {
    let v = validator();
    let mut schema_errors = 0;
    let mut wrong = Vec::new();
    for path in files("tests/bad-manifests") {
        let bytes = std::fs::read(&path).unwrap();
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            // Not text at all (E0019): refused before TOML, let alone the schema.
            let first = String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            assert!(
                first.contains("E0019"),
                "{}: not UTF-8 but expects {first}",
                path.display()
            );
            continue;
        };
        let code = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .and_then(|l| l.split_whitespace().next())
            .expect("first line is `# expect: CODE ...`");
        let Some(json) = as_json(&text) else {
            assert!(
                ["E0006", "E0019"].contains(&code),
                "{}: only TOML syntax errors and non-text fail before the schema ({code})",
                path.display()
            );
            continue;
        };
        let valid = v.is_valid(&json);
        if SCHEMA_ERRORS.contains(&code) {
            schema_errors += 1;
            if valid {
                wrong.push(format!("{} ({code}) passes the schema", path.display()));
            }
        } else if !valid {
            let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
            wrong.push(format!(
                "{} ({code}) fails the schema: {errors:?}",
                path.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        schema_errors >= 3,
        "only {schema_errors} schema-error manifests"
    );
}

#[test]
fn aliases_are_keys_too() {
    let v = validator();
    let text = "[system]\nname = \"a\"\nboard = \"b\"\n[[domain]]\nname = \"d\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"k\"\nextra = \"x\"\ndtdev = [\"/a\"]\n";
    assert!(v.is_valid(&as_json(text).unwrap()));
    let bad = text.replace("extra", "extraa");
    assert!(!v.is_valid(&as_json(&bad).unwrap()));
}

#[test]
fn the_name_pattern_agrees_with_the_parser() {
    let v = validator();
    let long = "x".repeat(63);
    let too_long = "x".repeat(64);
    for name in [
        "a",
        "a-b",
        "app-1",
        "1",
        "-a",
        "a-",
        "A",
        "a_b",
        "",
        long.as_str(),
        too_long.as_str(),
        "é",
    ] {
        let text = format!("[system]\nname = {name:?}\nboard = \"b\"\n");
        let parsed = firmware_config::manifest::Manifest::parse(&text).is_ok();
        assert_eq!(
            v.is_valid(&as_json(&text).unwrap()),
            parsed,
            "`{name}`: schema and parser disagree"
        );
    }
}
