//! Renders diagnostics for people, the way rustc does:
//!
//! ```text
//! error[E0206]: domain `web` asks for 8 vCPUs; the board has 2 CPUs
//!   --> examples/qemu-arm64.toml:14:9
//!    |
//! 14 | vcpus = 8
//!    |         ^ too many vCPUs
//!    |
//!    = help: ...
//! ```

use firmware_config::diag::{Diagnostic, Label, Severity, SourceFile, SourceId};
use std::fmt::Write;

/// The files a diagnostic may point into.
pub struct Sources<'a> {
    pub manifest: &'a SourceFile,
    pub board: Option<&'a SourceFile>,
}

impl Sources<'_> {
    fn file(&self, id: SourceId) -> Option<&SourceFile> {
        match id {
            SourceId::Manifest => Some(self.manifest),
            SourceId::Board => self.board,
        }
    }
}

pub fn render(d: &Diagnostic, sources: &Sources<'_>, color: bool) -> String {
    let (red, yellow, blue, bold, reset) = if color {
        ("\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    let (kind, kc) = match d.severity {
        Severity::Error => ("error", red),
        Severity::Warning => ("warning", yellow),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{bold}{kc}{kind}[{}]{reset}{bold}: {}{reset}",
        d.code, d.message
    );
    let labels: Vec<&Label> = d.primary.iter().chain(d.secondary.iter()).collect();
    let width = labels
        .iter()
        .filter_map(|l| {
            sources
                .file(l.source)
                .map(|f| f.line_col(l.span.start).0.to_string().len())
        })
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(width);
    for (i, l) in labels.iter().enumerate() {
        let Some(file) = sources.file(l.source) else {
            continue;
        };
        let (line, col) = file.line_col(l.span.start);
        let arrow = if i == 0 { "-->" } else { ":::" };
        let _ = writeln!(out, "{pad}{blue}{arrow}{reset} {}:{line}:{col}", file.name);
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        let text = file.line_text(line);
        let _ = writeln!(out, "{blue}{line:>width$} |{reset} {text}");
        // Underline the span's part on this line (at least one caret).
        let (end_line, end_col) = file.line_col(l.span.end.max(l.span.start));
        let carets = if end_line == line {
            end_col.saturating_sub(col).max(1)
        } else {
            text.chars().count().saturating_sub(col - 1).max(1)
        };
        let mark = if i == 0 { '^' } else { '-' };
        let color_mark = if i == 0 { kc } else { blue };
        let _ = writeln!(
            out,
            "{pad} {blue}|{reset} {}{color_mark}{} {}{reset}",
            " ".repeat(col - 1),
            mark.to_string().repeat(carets),
            l.message
        );
    }
    if d.help.is_some() || !d.notes.is_empty() {
        if !labels.is_empty() {
            let _ = writeln!(out, "{pad} {blue}|{reset}");
        }
        for n in &d.notes {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}note{reset}: {n}");
        }
        if let Some(h) = &d.help {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {h}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let f = SourceFile::new("m.toml", "[system]\nname = \"Bad Name\"\n");
        let d = Diagnostic::error("E0012", "bad")
            .at(16..26, "here")
            .help("try `bad-name`");
        let s = render(
            &d,
            &Sources {
                manifest: &f,
                board: None,
            },
            false,
        );
        assert!(s.contains("--> m.toml:2:8"), "{s}");
        assert!(s.contains("2 | name = \"Bad Name\""), "{s}");
        assert!(s.contains("  |        ^^^^^^^^^^ here"), "{s}");
        assert!(s.contains("= help: try `bad-name`"), "{s}");
    }
}
