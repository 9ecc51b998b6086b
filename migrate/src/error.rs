//! Errors of the config readers: what is wrong, and where (file, line, column, the text).

use std::ops::Range;

/// A syntax error in an input file, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct SyntaxError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Byte range of the offending text.
    pub span: Range<usize>,
    /// The offending text itself (may be empty at end of input).
    pub text: String,
    pub message: String,
    pub hint: Option<String>,
}

impl SyntaxError {
    pub(crate) fn new(
        file: &str,
        src: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_col(src, span.start);
        let text = src.get(span.clone()).unwrap_or("").to_string();
        Self {
            file: file.to_string(),
            line,
            column,
            span,
            text,
            message: message.into(),
            hint: None,
        }
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Why an import could not produce a manifest at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("{0}")]
    Input(String),
}
