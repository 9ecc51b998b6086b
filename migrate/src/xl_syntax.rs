//! xl's configuration syntax, read as data (xl.cfg(5) "Syntax"; libxlu's `libxlu_cfg_l.l` / `_y.y`
//! were read for the grammar, not copied):
//!
//! - a file is a series of `KEY = VALUE` settings, each ended by a newline or `;`; `KEY += VALUE`
//!   appends to an earlier list or string;
//! - a value is a string in single or double quotes, a number (decimal, octal with a leading `0`,
//!   hexadecimal with `0x`), or a list `[ VALUE, VALUE, ... ]` that may span lines and may end with a
//!   comma;
//! - `#` starts a comment that runs to the end of the line.

use crate::error::SyntaxError;
use std::ops::Range;

/// A value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XlValue {
    Str(String),
    Num(i64),
    List(Vec<XlItem>),
}

/// A list element with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlItem {
    pub value: XlValue,
    pub span: Range<usize>,
}

/// One `KEY = VALUE` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlSetting {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: XlValue,
    pub value_span: Range<usize>,
    /// 1-based line of the key.
    pub line: usize,
}

/// Parses a whole xl.cfg file. Later settings of a key replace earlier ones, as in xl; `+=` appends.
pub fn parse(file: &str, src: &str) -> Result<Vec<XlSetting>, SyntaxError> {
    let mut p = Parser {
        file,
        src,
        b: src.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<XlSetting> = Vec::new();
    loop {
        p.skip_blank(true);
        if p.pos >= p.b.len() {
            break;
        }
        let key_start = p.pos;
        while p.pos < p.b.len() && (p.b[p.pos].is_ascii_alphanumeric() || p.b[p.pos] == b'_') {
            p.pos += 1;
        }
        if p.pos == key_start || p.b[key_start].is_ascii_digit() {
            return Err(p
                .err(
                    key_start..p.pos.max(key_start + 1),
                    "expected a setting name",
                )
                .hint("xl settings look like `memory = 256`"));
        }
        let key_span = key_start..p.pos;
        let key = src[key_span.clone()].to_string();
        p.skip_blank(false);
        let append = if p.eat(b"+=") {
            true
        } else if p.eat(b"=") {
            false
        } else {
            return Err(p.err(p.pos..p.pos + 1, format!("expected `=` after `{key}`")));
        };
        p.skip_blank(false);
        let value_start = p.pos;
        let value = p.value()?;
        let value_span = value_start..p.pos;
        p.skip_blank(false);
        if p.pos < p.b.len() && !matches!(p.b[p.pos], b'\n' | b';') {
            return Err(p
                .err(
                    p.pos..p.pos + 1,
                    "expected the end of the line or `;` after a value",
                )
                .hint("a list is written [ \"a\", \"b\" ]; strings need quotes"));
        }
        if p.pos < p.b.len() {
            p.pos += 1;
        }
        let line = crate::error::line_col(src, key_start).0;
        let setting = XlSetting {
            key,
            key_span,
            value,
            value_span,
            line,
        };
        if let Some(prev) = out.iter_mut().find(|s| s.key == setting.key) {
            if append {
                match (&mut prev.value, setting.value) {
                    (XlValue::List(a), XlValue::List(b)) => a.extend(b),
                    (XlValue::Str(a), XlValue::Str(b)) => a.push_str(&b),
                    _ => {
                        return Err(p.err(
                            setting.value_span,
                            format!("`+=` needs the same type as the earlier `{}`", prev.key),
                        ));
                    }
                }
            } else {
                *prev = setting;
            }
        } else {
            out.push(setting);
        }
    }
    Ok(out)
}

struct Parser<'a> {
    file: &'a str,
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> SyntaxError {
        let end = span.end.min(self.b.len());
        SyntaxError::new(self.file, self.src, span.start.min(end)..end, msg)
    }

    fn eat(&mut self, s: &[u8]) -> bool {
        if self.b[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips spaces and comments; newlines (and `;`) too when `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        while self.pos < self.b.len() {
            match self.b[self.pos] {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' | b';' if newlines => self.pos += 1,
                b'#' => {
                    while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Result<XlValue, SyntaxError> {
        match self.b.get(self.pos) {
            Some(b'"' | b'\'') => self.string().map(XlValue::Str),
            Some(b'[') => self.list(),
            Some(c) if c.is_ascii_digit() || *c == b'-' => self.number(),
            _ => Err(self
                .err(
                    self.pos..self.pos + 1,
                    "expected a value: a quoted string, a number or a [list]",
                )
                .hint("xl strings are quoted: kernel = \"/boot/Image\"")),
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let quote = self.b[self.pos];
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(self.err(start..self.pos, "this string is never closed"));
            };
            match c {
                b'\n' => {
                    return Err(self
                        .err(
                            start..self.pos,
                            "a string cannot run past the end of the line",
                        )
                        .hint("close the quote on the same line"));
                }
                _ if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' if quote == b'"' => {
                    let esc = self.b.get(self.pos + 1).copied();
                    let ch = match esc {
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'\\') => '\\',
                        Some(b'"') => '"',
                        Some(b'\'') => '\'',
                        _ => {
                            return Err(
                                self.err(self.pos..self.pos + 2, "unknown escape in a string")
                            );
                        }
                    };
                    out.push(ch);
                    self.pos += 2;
                }
                _ => {
                    // Copy one whole UTF-8 character.
                    let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn number(&mut self) -> Result<XlValue, SyntaxError> {
        let start = self.pos;
        if self.b[self.pos] == b'-' {
            self.pos += 1;
        }
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_alphanumeric() {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text),
        };
        let parsed = if let Some(h) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
            i64::from_str_radix(h, 16)
        } else if digits.len() > 1 && digits.starts_with('0') {
            i64::from_str_radix(&digits[1..], 8)
        } else {
            digits.parse()
        };
        match parsed {
            Ok(v) => Ok(XlValue::Num(if neg { -v } else { v })),
            Err(_) => Err(self
                .err(start..self.pos, format!("`{text}` is not a number"))
                .hint("numbers are decimal, octal (leading 0) or hex (0x); units go in strings")),
        }
    }

    fn list(&mut self) -> Result<XlValue, SyntaxError> {
        let open = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            match self.b.get(self.pos) {
                None => return Err(self.err(open..open + 1, "this list is never closed with `]`")),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(XlValue::List(items));
                }
                _ => {}
            }
            let start = self.pos;
            let value = self.value()?;
            items.push(XlItem {
                value,
                span: start..self.pos,
            });
            self.skip_blank(true);
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return Err(self.err(open..open + 1, "this list is never closed with `]`")),
                Some(_) => {
                    return Err(self.err(self.pos..self.pos + 1, "expected `,` or `]` in a list"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> XlValue {
        parse("t.cfg", src).unwrap().remove(0).value
    }

    #[test]
    fn values_of_every_kind() {
        assert_eq!(one("memory = 256\n"), XlValue::Num(256));
        assert_eq!(one("x = 0x10"), XlValue::Num(16));
        assert_eq!(one("x = 010"), XlValue::Num(8));
        assert_eq!(one("name = 'a b'"), XlValue::Str("a b".into()));
        assert_eq!(
            one(r#"c = "say \"hi\"""#),
            XlValue::Str("say \"hi\"".into())
        );
        let XlValue::List(l) = one("dtdev = [ \"/a\",\n  # comment\n  \"/b\", ]\n") else {
            panic!()
        };
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn semicolons_comments_and_appends() {
        let s = parse("t", "a = 1; b = \"x\" # c\nb += \"y\"\nl=[1]\nl+=[2]\n").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].value, XlValue::Str("xy".into()));
        assert_eq!(s[1].line, 1);
        assert!(matches!(&s[2].value, XlValue::List(v) if v.len() == 2));
    }

    #[test]
    fn errors_point_at_the_text() {
        let e = parse("t.cfg", "name = \"a\"\nmemory = 256M\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
        assert!(e.message.contains("not a number"), "{e}");
        let e = parse("t.cfg", "kernel = /boot/Image\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("quoted"), "{e}");
        let e = parse("t.cfg", "x = [\"a\"\n").unwrap_err();
        assert!(e.message.contains("never closed"));
        let e = parse("t.cfg", "x = \"abc\n").unwrap_err();
        assert!(e.message.contains("end of the line"));
    }
}
