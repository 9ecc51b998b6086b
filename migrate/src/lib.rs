//! # migrate
//!
//! The way into domforge and the way out: configs of the tools people already use, read as data,
//! and manifests written back in those tools' formats.
//!
//! - [`xl`]: xl.cfg(5) files, one per domain, become one manifest ([`xl_syntax`] reads xl's syntax);
//! - [`imagebuilder`]: an ImageBuilder `config` (read by [`bash`] as assignments, never run) becomes a
//!   manifest, plus a board file when no built-in board matches its `DEVICE_TREE`; and a manifest
//!   becomes an ImageBuilder config again.
//!
//! Every import returns a [`report::Report`] in which every key read is either mapped (naming the
//! manifest key it became) or listed as unsupported with the reason; nothing is dropped silently.
//! The crate works on text; [`files`] alone reads the inputs and writes the outputs.

// Errors carry the file, position and offending text for people; they travel the cold path only.
#![allow(clippy::result_large_err)]

pub mod bash;
pub mod draft;
pub mod error;
pub mod files;
pub mod imagebuilder;
pub mod report;
pub mod xl;
pub mod xl_syntax;

pub use error::{ImportError, SyntaxError};

/// An input file: its name (for messages) and its text.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub name: String,
    pub text: String,
}

impl InputFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    pub manifest: draft::DraftManifest,
    pub report: report::Report,
    /// A board file to write next to the manifest: (file name, TOML text).
    pub board_file: Option<(String, String)>,
}

/// How relative paths in an input become paths in the manifest: inputs name files relative to
/// their own directory (xl: the current directory of `xl create`; ImageBuilder: its `-d` root),
/// a manifest relative to its directory.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// Prefix for relative paths; empty when the manifest goes where the inputs are.
    pub prefix: String,
}

impl Paths {
    pub fn rebase(&self, path: &str) -> String {
        if self.prefix.is_empty() || path.starts_with('/') || path.contains(':') {
            // Absolute paths, and domforge sources (`debian:kernel`, `builtin:probe`), stay as written.
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix.trim_end_matches('/'))
        }
    }
}
