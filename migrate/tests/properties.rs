//! Properties of the readers on generated input:
//!
//! - neither reader panics on any text, and every error points inside the text;
//! - on generated assignment-only configs (quotes, escapes, continuations, comments, references,
//!   arrays), the bash reader gives exactly what bash itself sets after `source`-ing the file.

use migrate::bash::{self, BashValue};
use migrate::xl_syntax;
use proptest::prelude::*;
use std::process::Command;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic(text in "[ -~\n\t]{0,200}") {
        if let Err(e) = bash::parse("c", &text) {
            prop_assert!(e.span.end <= text.len() && e.line >= 1);
        }
        if let Err(e) = xl_syntax::parse("c", &text) {
            prop_assert!(e.span.end <= text.len() && e.line >= 1);
        }
    }

    #[test]
    fn readers_never_panic_on_their_own_alphabet(parts in proptest::collection::vec(
        prop_oneof![
            Just("A="), Just("B[1]="), Just("(x y)"), Just("\""), Just("'"), Just("$A"), Just("${B[1]}"),
            Just("\\"), Just("\n"), Just(" "), Just("#"), Just("["), Just("]"), Just(","), Just("= "),
            Just("0x1f"), Just("ü"), Just("${"), Just("$("), Just(";"),
        ], 0..40)) {
        let text: String = parts.concat();
        let _ = bash::parse("c", &text);
        let _ = xl_syntax::parse("c", &text);
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._-]{1,6}",
        "[a-z $\"#]{0,6}".prop_map(|s| format!("'{s}'")),
        "[a-z ']{0,6}".prop_map(|s| format!("\"{s}\"")),
        Just("\"a\\\"b\\$c\\\\d\"".to_string()),
        Just("\\ ".to_string()),
        Just("$A".to_string()),
        Just("${B}".to_string()),
        Just("\"x${ARR[1]}y\"".to_string()),
        Just("${NOPE:-dflt}".to_string()),
        Just("\"line\\\ncontinued\"".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..4).prop_map(|v| v.concat())
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        (prop_oneof![Just("A"), Just("B"), Just("C")], value())
            .prop_map(|(n, v)| format!("{n}={v}")),
        (0u8..4, value()).prop_map(|(i, v)| format!("ARR[{i}]={v}")),
        proptest::collection::vec(value(), 0..4).prop_map(|v| format!("ARR=( {} )", v.join(" "))),
        value().prop_map(|v| format!("C+={v}")),
        Just("# a comment".to_string()),
    ]
}

fn bash_values(text: &str) -> Option<Vec<String>> {
    let script = r#"eval "$1"
for n in A B C ARR NOPE; do
  if [[ "$(declare -p "$n" 2>/dev/null)" == "declare -a"* ]]; then
    eval 'for k in "${!'"$n"'[@]}"; do printf "%s[%s]=%s\0" "$n" "$k" "${'"$n"'[$k]}"; done'
  elif [[ -v $n ]]; then printf "%s=%s\0" "$n" "${!n}"; fi
done"#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script, "bash", text])
        .output()
        .ok()?;
    out.status.success().then(|| {
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn assignments_read_as_bash_reads_them(lines in proptest::collection::vec(statement(), 1..6)) {
        let text = lines.join("\n") + "\n";
        let ours = bash::parse("c", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let Some(reference) = bash_values(&text) else { return Ok(()); };
        let mut mine: Vec<String> = Vec::new();
        for (n, v) in &ours.vars {
            match v {
                BashValue::Scalar(s) => mine.push(format!("{n}={s}")),
                BashValue::Array(a) => mine.extend(a.iter().map(|(i, s)| format!("{n}[{i}]={s}"))),
            }
        }
        mine.sort();
        prop_assert_eq!(mine, reference, "{}", text);
    }
}
