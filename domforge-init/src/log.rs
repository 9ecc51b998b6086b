//! A tiny logger: `domforge-init: <text>` on stderr. As PID 1 stderr is `/dev/console` (the kernel opens
//! it for init), i.e. dom0's hvc0, which Xen prints on its serial line; guests' console lines go to
//! stdout with their `[name]` prefix, so the two never look alike.
//!
//! Events a test or benchmark consumes are also printed as one machine-readable line each:
//! `DOMFORGE-INIT event=<kind> key=value …` (values without spaces).

use std::fmt::Arguments;
use std::io::Write;

pub fn line(args: Arguments<'_>) {
    write_line(&format!("domforge-init: {args}\n"));
}

/// A machine-readable event line, on stderr.
pub fn event(kind: &str, fields: &[(&str, String)]) {
    write_line(&format!("{}\n", event_line(kind, fields)));
}

/// One `write(2)` per line: stderr is unbuffered, and `writeln!` would write the pieces of a
/// formatted line separately, letting the kernel's console messages land in the middle of one
/// (seen: `domforge-init: [   36.62] xenbr0: …`), which breaks the events tests parse.
fn write_line(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The text of an event line: `DOMFORGE-INIT event=<kind> key=value …`, whitespace in values as `_`.
pub fn event_line(kind: &str, fields: &[(&str, String)]) -> String {
    let mut text = format!("DOMFORGE-INIT event={kind}");
    for (k, v) in fields {
        text.push(' ');
        text.push_str(k);
        text.push('=');
        text.extend(v.chars().map(|c| if c.is_whitespace() { '_' } else { c }));
    }
    text
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::line(format_args!($($t)*)) };
}
