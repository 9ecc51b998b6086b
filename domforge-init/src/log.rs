//! A tiny logger: `domforge-init: <text>` on stderr. As PID 1 stderr is `/dev/console` (the kernel opens
//! it for init), i.e. dom0's hvc0, which Xen prints on its serial line; guests' console lines go to
//! stdout with their `[name]` prefix, so the two never look alike.
//!
//! Events a test or benchmark consumes are also printed as one machine-readable line each:
//! `DOMFORGE-INIT event=<kind> key=value …` (values without spaces).

use std::fmt::Arguments;
use std::io::Write;

pub fn line(args: Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "domforge-init: {args}");
}

/// A machine-readable event line, on stderr.
pub fn event(kind: &str, fields: &[(&str, String)]) {
    let text = event_line(kind, fields);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
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
