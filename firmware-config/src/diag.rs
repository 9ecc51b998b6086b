//! Diagnostics that point into the files a person wrote.
//!
//! Every manifest or board error carries the file, a byte span and a message, plus optional secondary
//! labels (e.g. "first claimed here") and a hint. The CLI renders them rustc-style; tests read
//! [`Diagnostic::line`] to check that an error names the right line.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// Which source file a span points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum SourceId {
    Manifest,
    Board,
}

/// A named source text, so spans can be turned into `file:line:column`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end clamp to it.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// The full text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        self.text
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A labelled span.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    pub source: SourceId,
    pub span: Range<usize>,
    pub message: String,
}

/// One problem found in a manifest or board file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `E0301`; documented in `docs/manifest.md`.
    pub code: &'static str,
    pub message: String,
    /// Where the problem is; `None` only for whole-system facts with no single place to point at.
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    /// Points the diagnostic at a span of the manifest.
    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            source: SourceId::Manifest,
            span,
            message: label.into(),
        });
        self
    }

    /// Points the diagnostic at a span of the board file.
    pub fn at_board(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            source: SourceId::Board,
            span,
            message: label.into(),
        });
        self
    }

    /// Adds a secondary label in the manifest ("first used here").
    pub fn also(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.secondary.push(Label {
            source: SourceId::Manifest,
            span,
            message: label.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The one "did you mean" of every name reference (keys, values, domain, pool, board, device
    /// names): adds the hint when [`did_you_mean`] finds a close candidate, else `fallback` if any.
    #[cfg(feature = "std")]
    pub fn suggest<'a>(
        self,
        given: &str,
        candidates: impl IntoIterator<Item = &'a str>,
        fallback: Option<&str>,
    ) -> Self {
        match (did_you_mean(given, candidates), fallback) {
            (Some(s), _) => self.help(alloc::format!("did you mean `{s}`?")),
            (None, Some(f)) => self.help(f),
            (None, None) => self,
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// 1-based line of the primary label in `file` (the file its `source` names).
    pub fn line(&self, file: &SourceFile) -> Option<usize> {
        self.primary.as_ref().map(|l| file.line_col(l.span.start).0)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{kind}[{}]: {}", self.code, self.message)
    }
}

/// The result of a checking pass: errors stop the pipeline, warnings travel with the result.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

/// "Did you mean" for a misspelt name: the closest candidate by Jaro-Winkler similarity (as cargo
/// does), or failing that one within a small edit distance that counts swapped letters as one edit
/// (`tow` → `two`).
#[cfg(feature = "std")]
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: alloc::vec::Vec<&'a str> = candidates.into_iter().collect();
    let by_similarity = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(given, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c);
    by_similarity.or_else(|| {
        let limit = (given.chars().count() / 3).max(1);
        candidates
            .iter()
            .map(|c| (strsim::osa_distance(given, c), *c))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = SourceFile::new("m.toml", "a = 1\nname = \"é-x\"\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // 'x' follows the two-byte 'é' and '-': column counts characters, not bytes.
        let x = f.text.find('x').unwrap();
        assert_eq!(f.line_col(x), (2, 11));
        assert_eq!(f.line_text(2), "name = \"é-x\"");
        assert_eq!(f.line_col(10_000), (3, 1));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("memroy", ["memory", "vcpus", "kernel"]),
            Some("memory")
        );
        assert_eq!(did_you_mean("zzz", ["memory", "vcpus"]), None);
        assert_eq!(did_you_mean("tow", ["app", "two"]), Some("two"));
    }
}
