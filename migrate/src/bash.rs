//! ImageBuilder's config, read as data, never run.
//!
//! ImageBuilder `source`s its config with bash (scripts/common: `source "$CONFIG"`), so a config can
//! hold any bash. Real configs hold variable assignments only, and that is what this reads, with
//! bash's own rules for them (bash(1) "QUOTING", "PARAMETERS", "Arrays", "Parameter Expansion"):
//!
//! - `NAME=value`, `NAME[i]=value`, `NAME=(a b c)`, `NAME+=value`, optionally after `export`;
//!   several on a line, separated by blanks or `;`;
//! - single quotes (literal), double quotes (with `\"`, `\\`, `\$` escapes and expansions), and
//!   backslash escapes outside quotes;
//! - `$NAME`, `${NAME}`, `${NAME[i]}` and `${NAME:-word}` expand to *earlier* assignments, as bash
//!   would when it reads the file top to bottom; an unset name expands to nothing and is recorded;
//! - `#` at the start of a word begins a comment; a backslash before a newline continues the line.
//!
//! Anything that would run code (commands, `$(...)`, backquotes, `$((...))`, conditionals, functions)
//! is refused with its location: a config that needs it is a program, and importing a program's
//! output needs the program run by a person, not guessed at by domforge.

use crate::error::SyntaxError;
use std::collections::BTreeMap;
use std::ops::Range;

/// A variable's value after the whole file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BashValue {
    Scalar(String),
    /// Indexed array (sparse, as in bash).
    Array(BTreeMap<u64, String>),
}

/// One assignment, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub index: Option<u64>,
    /// Values assigned (one, or the elements of `NAME=(...)`).
    pub values: Vec<String>,
    pub line: usize,
    pub span: Range<usize>,
}

/// Everything the config assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BashData {
    pub vars: BTreeMap<String, BashValue>,
    pub assignments: Vec<Assignment>,
    /// `$NAME` references to names unset at that point: (name, line).
    pub unset_references: Vec<(String, usize)>,
    /// Names some value refers to with `$NAME`.
    pub referenced: std::collections::BTreeSet<String>,
}

impl BashData {
    /// A scalar, or element 0 of an array (as `$NAME` gives).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.vars.get(name)? {
            BashValue::Scalar(s) => Some(s),
            BashValue::Array(a) => a.get(&0).map(String::as_str),
        }
    }
    /// `${NAME[i]}`; index 0 of a scalar is the scalar, as in bash.
    pub fn get_index(&self, name: &str, i: u64) -> Option<&str> {
        match self.vars.get(name)? {
            BashValue::Scalar(s) if i == 0 => Some(s),
            BashValue::Scalar(_) => None,
            BashValue::Array(a) => a.get(&i).map(String::as_str),
        }
    }
    /// The line of the last assignment to `name` (with this index, when given).
    pub fn line_of(&self, name: &str, index: Option<u64>) -> usize {
        self.assignments
            .iter()
            .rev()
            .find(|a| {
                a.name == name
                    && (index.is_none()
                        || a.index == index
                        || a.index.is_none() && a.values.len() > 1)
            })
            .map_or(0, |a| a.line)
    }
}

/// Reads `src` (the config named `file`) as assignments.
pub fn parse(file: &str, src: &str) -> Result<BashData, SyntaxError> {
    let mut p = Parser {
        file,
        src,
        b: src.as_bytes(),
        pos: 0,
        data: BashData::default(),
        array_literal_pending: false,
    };
    p.run()?;
    Ok(p.data)
}

const CODE_HINT: &str = "domforge reads ImageBuilder configs as data (assignments only); run the \
                         config through bash yourself and import what it prints with `set -o posix; set`";

struct Parser<'a> {
    file: &'a str,
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    data: BashData,
    /// The value being assigned came from `NAME=(...)` (an array even with one element).
    array_literal_pending: bool,
}

/// Fields of one word being split.
#[derive(Default)]
struct Fields {
    done: Vec<String>,
    cur: String,
    /// The current field exists (it has text, or a quoted part, possibly empty).
    has: bool,
}

impl Fields {
    fn literal(&mut self, t: &str) {
        self.cur.push_str(t);
        self.has = true;
    }
    fn split(&mut self, t: &str) {
        for c in t.chars() {
            if matches!(c, ' ' | '\t' | '\n') {
                if self.has {
                    self.done.push(std::mem::take(&mut self.cur));
                    self.has = false;
                }
            } else {
                self.cur.push(c);
                self.has = true;
            }
        }
    }
    fn finish(mut self) -> Vec<String> {
        if self.has {
            self.done.push(self.cur);
        }
        self.done
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Parser<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> SyntaxError {
        let end = span.end.min(self.b.len());
        SyntaxError::new(self.file, self.src, span.start.min(end)..end, msg)
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn line(&self, at: usize) -> usize {
        crate::error::line_col(self.src, at).0
    }

    /// Skips blanks, line continuations and (when `newlines`) newlines, `;` and comments.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\\' if self.b.get(self.pos + 1) == Some(&b'\n') => self.pos += 2,
                b'\n' | b';' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        while self.peek().is_some_and(is_name) {
            self.pos += 1;
        }
        Some(start..self.pos)
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip(true);
            if self.pos >= self.b.len() {
                return Ok(());
            }
            let stmt = self.pos;
            // `export A=1`, `declare -a A`, `readonly A=1`: the keyword changes nothing for data.
            let word_end = self.b[stmt..]
                .iter()
                .position(|c| matches!(c, b' ' | b'\t' | b'\n' | b';' | b'='))
                .map_or(self.b.len(), |n| stmt + n);
            let word = &self.src[stmt..word_end];
            if matches!(word, "export" | "declare" | "typeset" | "readonly") {
                self.pos = word_end;
                self.skip(false);
                while self.peek() == Some(b'-') {
                    while self
                        .peek()
                        .is_some_and(|c| !matches!(c, b' ' | b'\t' | b'\n' | b';'))
                    {
                        self.pos += 1;
                    }
                    self.skip(false);
                }
            }
            self.statement(stmt)?;
        }
    }

    /// One or more assignments up to the end of the line or `;`.
    fn statement(&mut self, stmt: usize) -> Result<(), SyntaxError> {
        loop {
            let start = self.pos;
            let Some(name_span) = self.name() else {
                return Err(self.not_data(start));
            };
            let name = self.src[name_span.clone()].to_string();
            let index = if self.peek() == Some(b'[') {
                let open = self.pos;
                self.pos += 1;
                let close = self.b[self.pos..]
                    .iter()
                    .position(|&c| c == b']' || c == b'\n')
                    .map(|n| self.pos + n)
                    .filter(|&i| self.b[i] == b']')
                    .ok_or_else(|| self.err(open..open + 1, "`[` without `]`"))?;
                let text = self.src[self.pos..close].trim().to_string();
                self.pos = close + 1;
                Some(self.index_value(&text, open..close + 1)?)
            } else {
                None
            };
            let append = if self.b[self.pos..].starts_with(b"+=") {
                self.pos += 2;
                true
            } else if self.peek() == Some(b'=') {
                self.pos += 1;
                false
            } else {
                // Declarations without a value (`declare -a DOMU_KERNEL`) create nothing we need.
                if stmt != start && matches!(self.peek(), None | Some(b' ' | b'\t' | b'\n' | b';'))
                {
                    self.skip(false);
                    if matches!(self.peek(), None | Some(b'\n' | b';')) {
                        return Ok(());
                    }
                    continue;
                }
                return Err(self.not_data(start));
            };
            let values = if self.peek() == Some(b'(') && index.is_none() {
                self.array()?
            } else {
                vec![self.word()?]
            };
            let line = self.line(start);
            self.assign(&name, index, append, &values);
            self.data.assignments.push(Assignment {
                name,
                index,
                values,
                line,
                span: start..self.pos,
            });
            self.skip(false);
            match self.peek() {
                None | Some(b'\n' | b';' | b'#') => return Ok(()),
                Some(_) => {
                    // Another assignment may follow on the same line; anything else is a command.
                    let here = self.pos;
                    let save = self.pos;
                    let ok =
                        self.name().is_some() && matches!(self.peek(), Some(b'=' | b'[' | b'+'));
                    self.pos = save;
                    if !ok {
                        return Err(self.not_data(here));
                    }
                }
            }
        }
    }

    fn not_data(&self, start: usize) -> SyntaxError {
        let end = self.b[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.b.len(), |n| start + n);
        let text = self.src[start..end].trim_end();
        let what = match text.split_whitespace().next().unwrap_or("") {
            "if" | "then" | "fi" | "for" | "while" | "do" | "done" | "case" | "esac" => {
                "a conditional or loop"
            }
            "function" => "a function",
            _ if text.contains("()") => "a function",
            _ => "a command",
        };
        self.err(
            start..end,
            format!("not an assignment: this line is {what}"),
        )
        .hint(CODE_HINT)
    }

    fn index_value(&mut self, text: &str, span: Range<usize>) -> Result<u64, SyntaxError> {
        let t = text
            .trim_start_matches('$')
            .trim_start_matches('{')
            .trim_end_matches('}');
        if let Ok(n) = t.parse::<u64>() {
            return Ok(n);
        }
        if !t.is_empty() && t.bytes().all(is_name) {
            if let Some(n) = self.data.get(t).and_then(|v| v.trim().parse::<u64>().ok()) {
                return Ok(n);
            }
            return Err(self.err(
                span,
                format!("array index `{text}` is not a number set earlier"),
            ));
        }
        Err(self
            .err(span, format!("array index `{text}` is arithmetic"))
            .hint("write the number: DOMU_KERNEL[1]=..."))
    }

    fn assign(&mut self, name: &str, index: Option<u64>, append: bool, values: &[String]) {
        let entry = self.data.vars.get(name).cloned();
        let new = match (
            index,
            values.len() != 1 || self.array_literal_pending,
            entry,
        ) {
            (Some(i), _, Some(BashValue::Array(mut a))) => {
                let v = a.entry(i).or_default();
                if !append {
                    v.clear();
                }
                v.push_str(&values[0]);
                BashValue::Array(a)
            }
            (Some(i), _, Some(BashValue::Scalar(s))) => {
                let mut a = BTreeMap::new();
                a.insert(0, s);
                let v = a.entry(i).or_default();
                if !append {
                    v.clear();
                }
                v.push_str(&values[0]);
                BashValue::Array(a)
            }
            (Some(i), _, None) => BashValue::Array(BTreeMap::from([(i, values[0].clone())])),
            (None, true, prev) => {
                let mut a = match (append, prev) {
                    (true, Some(BashValue::Array(a))) => a,
                    (true, Some(BashValue::Scalar(s))) => BTreeMap::from([(0, s)]),
                    _ => BTreeMap::new(),
                };
                let first = a.keys().next_back().map_or(0, |k| k + 1);
                for (k, v) in (first..).zip(values) {
                    a.insert(k, v.clone());
                }
                BashValue::Array(a)
            }
            (None, false, Some(BashValue::Array(mut a))) => {
                // `NAME=x` on an array sets element 0, as in bash.
                let v = a.entry(0).or_default();
                if !append {
                    v.clear();
                }
                v.push_str(&values[0]);
                BashValue::Array(a)
            }
            (None, false, Some(BashValue::Scalar(mut s))) if append => {
                s.push_str(&values[0]);
                BashValue::Scalar(s)
            }
            (None, false, _) => BashValue::Scalar(values[0].clone()),
        };
        self.array_literal_pending = false;
        self.data.vars.insert(name.to_string(), new);
    }

    fn array(&mut self) -> Result<Vec<String>, SyntaxError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            self.skip(true);
            match self.peek() {
                None => return Err(self.err(open..open + 1, "`(` without `)`")),
                Some(b')') => {
                    self.pos += 1;
                    self.array_literal_pending = true;
                    return Ok(out);
                }
                _ => out.extend(self.word_fields(true)?.1),
            }
        }
    }

    /// One shell word: quoted and unquoted parts, expanded (an assignment's value: no splitting).
    fn word(&mut self) -> Result<String, SyntaxError> {
        Ok(self.word_fields(false)?.0)
    }

    /// A word and, for array elements, its fields after bash's word splitting: unquoted expansions
    /// split at blanks and vanish when empty; quoted text never splits (bash(1) "Word Splitting").
    /// Unquoted glob characters in an array element are refused: bash would match them against
    /// files in its working directory.
    fn word_fields(&mut self, array: bool) -> Result<(String, Vec<String>), SyntaxError> {
        let mut out = String::new();
        let mut f = Fields::default();
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' => break,
                b')' => break,
                b'\'' => {
                    let open = self.pos;
                    let close = self.b[open + 1..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .ok_or_else(|| {
                            self.err(open..self.b.len(), "this single quote is never closed")
                        })?;
                    let t = &self.src[open + 1..open + 1 + close];
                    out.push_str(t);
                    f.literal(t);
                    self.pos = open + close + 2;
                }
                b'"' => {
                    let before = out.len();
                    self.double_quoted(&mut out)?;
                    f.literal(&out[before..]);
                }
                b'\\' => match self.b.get(self.pos + 1) {
                    Some(b'\n') => self.pos += 2,
                    Some(_) => {
                        let ch = self.src[self.pos + 1..].chars().next().unwrap_or('\\');
                        out.push(ch);
                        f.literal(ch.encode_utf8(&mut [0; 4]));
                        self.pos += 1 + ch.len_utf8();
                    }
                    None => self.pos += 1,
                },
                b'$' => {
                    let mut t = String::new();
                    self.expand(&mut t)?;
                    out.push_str(&t);
                    f.split(&t);
                }
                b'`' => {
                    return Err(self
                        .err(self.pos..self.pos + 1, "command substitution runs code")
                        .hint(CODE_HINT));
                }
                b'(' | b'|' | b'&' | b'<' | b'>' => {
                    return Err(self
                        .err(
                            self.pos..self.pos + 1,
                            format!("`{}` is shell syntax, not data", c as char),
                        )
                        .hint(CODE_HINT));
                }
                b'*' | b'?' | b'[' if array => {
                    return Err(self
                        .err(
                            self.pos..self.pos + 1,
                            format!(
                                "an unquoted `{}` in an array is a file pattern bash expands",
                                c as char
                            ),
                        )
                        .hint("quote the element: \"...\""));
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    f.literal(ch.encode_utf8(&mut [0; 4]));
                    self.pos += ch.len_utf8();
                }
            }
        }
        Ok((out, f.finish()))
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let open = self.pos;
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(open..self.b.len(), "this double quote is never closed"));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => match self.b.get(self.pos + 1) {
                    Some(b'\n') => self.pos += 2,
                    Some(&e @ (b'"' | b'\\' | b'$' | b'`')) => {
                        out.push(e as char);
                        self.pos += 2;
                    }
                    _ => {
                        out.push('\\');
                        self.pos += 1;
                    }
                },
                b'$' => self.expand(out)?,
                b'`' => {
                    return Err(self
                        .err(self.pos..self.pos + 1, "command substitution runs code")
                        .hint(CODE_HINT));
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// `$NAME`, `${NAME}`, `${NAME[i]}`, `${NAME:-word}`; refuses `$(...)` and `$((...))`.
    fn expand(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let dollar = self.pos;
        self.pos += 1;
        match self.peek() {
            Some(b'(') => {
                let what = if self.b.get(self.pos + 1) == Some(&b'(') {
                    "arithmetic expansion `$((...))` is computed by bash"
                } else {
                    "command substitution `$(...)` runs code"
                };
                Err(self.err(dollar..dollar + 2, what).hint(CODE_HINT))
            }
            Some(b'{') => {
                let close = self.b[self.pos..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map(|n| self.pos + n)
                    .ok_or_else(|| self.err(dollar..dollar + 2, "`${` without `}`"))?;
                let inner = self.src[self.pos + 1..close].to_string();
                let span = dollar..close + 1;
                self.pos = close + 1;
                let (reference, default) = match inner.split_once(":-") {
                    Some((r, d)) => (r.to_string(), Some(d.to_string())),
                    None => (inner.clone(), None),
                };
                let (name, index) = match reference.split_once('[') {
                    Some((n, rest)) => {
                        let idx = rest
                            .strip_suffix(']')
                            .ok_or_else(|| self.err(span.clone(), "`[` without `]`"))?;
                        (n.to_string(), Some(self.index_value(idx, span.clone())?))
                    }
                    None => (reference, None),
                };
                if name.is_empty()
                    || !name.bytes().all(is_name)
                    || name.as_bytes()[0].is_ascii_digit()
                {
                    return Err(self
                        .err(
                            span,
                            format!("`${{{inner}}}` is an expansion domforge does not evaluate"),
                        )
                        .hint("only ${NAME}, ${NAME[i]} and ${NAME:-default} are read"));
                }
                self.data.referenced.insert(name.clone());
                let value = match index {
                    Some(i) => self.data.get_index(&name, i),
                    None => self.data.get(&name),
                }
                .map(str::to_string);
                match (value, default) {
                    (Some(v), _) if !v.is_empty() => out.push_str(&v),
                    (_, Some(d)) => out.push_str(&d),
                    (v, None) => {
                        if v.is_none() {
                            self.data.unset_references.push((name, self.line(dollar)));
                        }
                    }
                }
                Ok(())
            }
            Some(c) if is_name_start(c) => {
                let span = self.name().unwrap_or(self.pos..self.pos);
                let name = &self.src[span];
                self.data.referenced.insert(name.to_string());
                match self.data.get(name) {
                    Some(v) => out.push_str(v),
                    None => self
                        .data
                        .unset_references
                        .push((name.to_string(), self.line(dollar))),
                }
                Ok(())
            }
            Some(c)
                if c.is_ascii_digit() || matches!(c, b'@' | b'*' | b'#' | b'?' | b'$' | b'!') =>
            {
                Err(self
                    .err(
                        dollar..self.pos + 1,
                        "positional and special parameters exist only when bash runs",
                    )
                    .hint(CODE_HINT))
            }
            _ => {
                out.push('$');
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_quotes_arrays_and_references() {
        let src = r#"
# comment
MEMORY_START="0x0"
MEMORY_END='0x80000000'   # trailing comment
BASE=zynqmp-dom1
export XEN=xen
DOMU_KERNEL[0]="$BASE/Image-domU"
DOMU_CMD[0]="console=ttyAMA0 \
 root=/dev/ram0"
DOMU_MEM[1]=512; DOMU_VCPUS[1]=2
PATHS=( "/a" /b
  '/c d' )
X=${BASE}-x Y=${DOMU_KERNEL[0]} Z=${NOPE:-dflt}
ESC=a\ b
"#;
        let d = parse("config", src).unwrap();
        assert_eq!(d.get("MEMORY_END"), Some("0x80000000"));
        assert_eq!(d.get("XEN"), Some("xen"));
        assert_eq!(
            d.get_index("DOMU_KERNEL", 0),
            Some("zynqmp-dom1/Image-domU")
        );
        assert_eq!(
            d.get_index("DOMU_CMD", 0),
            Some("console=ttyAMA0  root=/dev/ram0")
        );
        assert_eq!(d.get_index("DOMU_MEM", 1), Some("512"));
        assert_eq!(d.get_index("DOMU_VCPUS", 1), Some("2"));
        let Some(BashValue::Array(a)) = d.vars.get("PATHS") else {
            panic!()
        };
        assert_eq!(
            a.values().cloned().collect::<Vec<_>>(),
            ["/a", "/b", "/c d"]
        );
        assert_eq!(d.get("X"), Some("zynqmp-dom1-x"));
        assert_eq!(d.get("Y"), Some("zynqmp-dom1/Image-domU"));
        assert_eq!(d.get("Z"), Some("dflt"));
        assert_eq!(d.get("ESC"), Some("a b"));
        assert_eq!(d.line_of("DOMU_MEM", Some(1)), 10);
        assert!(d.unset_references.is_empty());
    }

    #[test]
    fn references_see_earlier_assignments_only() {
        let d = parse("c", "A=$B\nB=1\n").unwrap();
        assert_eq!(d.get("A"), Some(""));
        assert_eq!(d.unset_references, [("B".to_string(), 1)]);
    }

    #[test]
    fn code_is_refused_with_its_location() {
        for (src, line, what) in [
            ("A=1\nif [ -n \"$A\" ]; then B=2; fi\n", 2, "conditional"),
            ("A=$(uname -m)\n", 1, "command substitution"),
            ("A=$((1+2))\n", 1, "arithmetic"),
            ("A=`date`\n", 1, "command substitution"),
            ("echo hi\n", 1, "command"),
            ("A=1 make\n", 1, "command"),
            ("A=\"open\n", 1, "never closed"),
        ] {
            let e = parse("config", src).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e}");
            assert!(e.to_string().contains(what), "{src:?}: {e}");
        }
    }
}
