//! What an import did with every key it read: mapped to a manifest key, or not, and why.

use std::fmt;

/// What became of one key of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Carried over; the text says where to (e.g. "domain `web` memory = \"256M\"").
    Mapped(String),
    /// Not carried over; the text says why and what to do instead.
    Unsupported(String),
    /// Carried over with a caveat a person should read.
    Note(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The input file, as the caller named it.
    pub file: String,
    /// 1-based line of the key in that file (0 when the item is about the whole file).
    pub line: usize,
    /// The key as written (`memory`, `DOMU_MEM[1]`).
    pub key: String,
    pub outcome: Outcome,
}

/// Everything an import (or export) has to tell a person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn mapped(&mut self, file: &str, line: usize, key: &str, to: impl Into<String>) {
        self.push(file, line, key, Outcome::Mapped(to.into()));
    }
    pub fn unsupported(&mut self, file: &str, line: usize, key: &str, why: impl Into<String>) {
        self.push(file, line, key, Outcome::Unsupported(why.into()));
    }
    pub fn note(&mut self, file: &str, line: usize, key: &str, what: impl Into<String>) {
        self.push(file, line, key, Outcome::Note(what.into()));
    }
    fn push(&mut self, file: &str, line: usize, key: &str, outcome: Outcome) {
        self.items.push(Item {
            file: file.to_string(),
            line,
            key: key.to_string(),
            outcome,
        });
    }
    /// The keys that were not carried over.
    pub fn unsupported_items(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Unsupported(_)))
    }
    /// The item about `key`, if any (the first one).
    pub fn find(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.key == key)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.items {
            let (tag, text) = match &i.outcome {
                Outcome::Mapped(t) => ("mapped", t),
                Outcome::Unsupported(t) => ("UNSUPPORTED", t),
                Outcome::Note(t) => ("note", t),
            };
            if i.line > 0 {
                writeln!(f, "{}:{}: {}: {tag}: {text}", i.file, i.line, i.key)?;
            } else {
                writeln!(f, "{}: {}: {tag}: {text}", i.file, i.key)?;
            }
        }
        let n = self.unsupported_items().count();
        writeln!(
            f,
            "{} item{}, {n} not carried over",
            self.items.len(),
            if self.items.len() == 1 { "" } else { "s" }
        )
    }
}
