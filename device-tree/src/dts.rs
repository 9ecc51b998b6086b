//! DTS text for people to review, in the syntax `dtc` accepts (`dtc -I dts -O dtb`).
//!
//! Values carry no type in a blob, so the printer guesses like `dtc -O dts` does (dtc's
//! `treesource.c`, `guess_value_type`): NUL-terminated printable strings print as a string list,
//! multiples of four bytes as `<cells>`, anything else as a `[bytes]` array. Phandles print as numbers
//! (no labels): the text compiles back to the same bytes.

use std::fmt::Write;

use crate::tree::{DeviceTree, MAX_DEPTH, Node};

impl DeviceTree {
    /// The tree as DTS source.
    pub fn to_dts(&self) -> String {
        let mut out = String::from("/dts-v1/;\n\n");
        for r in &self.reservations {
            let _ = writeln!(out, "/memreserve/ {:#018x} {:#018x};", r.address, r.size);
        }
        if !self.reservations.is_empty() {
            out.push('\n');
        }
        print_node(&mut out, &self.root, 0);
        out
    }
}

fn print_node(out: &mut String, node: &Node, depth: usize) {
    let indent = "\t".repeat(depth);
    let name = if depth == 0 { "/" } else { node.name.as_str() };
    let _ = writeln!(out, "{indent}{name} {{");
    for p in &node.properties {
        let _ = write!(out, "{indent}\t{}", p.name);
        if !p.value.is_empty() {
            out.push_str(" = ");
            format_value(out, &p.value);
        }
        out.push_str(";\n");
    }
    if depth < MAX_DEPTH {
        for (i, c) in node.children.iter().enumerate() {
            if i > 0 || !node.properties.is_empty() {
                out.push('\n');
            }
            print_node(out, c, depth + 1);
        }
    }
    let _ = writeln!(out, "{indent}}};");
}

fn is_string_list(v: &[u8]) -> bool {
    if v.last() != Some(&0) || v.first() == Some(&0) {
        return false;
    }
    // No empty strings in the middle (two NULs in a row) and only printable ASCII.
    !v.windows(2).any(|w| w[0] == 0 && w[1] == 0)
        && v.iter().all(|b| *b == 0 || (0x20..0x7f).contains(b))
}

fn format_value(out: &mut String, v: &[u8]) {
    if is_string_list(v) {
        let body = v.strip_suffix(&[0]).unwrap_or(v);
        for (i, s) in body.split(|b| *b == 0).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('"');
            for b in s {
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    _ => out.push(char::from(*b)),
                }
            }
            out.push('"');
        }
    } else if v.len().is_multiple_of(4) {
        out.push('<');
        for (i, c) in v.chunks_exact(4).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{:#x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
        out.push('>');
    } else {
        out.push('[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{b:02x}");
        }
        out.push(']');
    }
}
