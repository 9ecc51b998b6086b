//! What the supervisor does to the world besides Xen and event channels: it writes guests' console
//! lines, tells the operator what happens, emits the machine-readable events tests and benchmarks
//! consume, and reboots the machine when a domain with `on_crash = "reboot-platform"` crashes.
//!
//! A trait so that the supervisor's decisions (restart budgets, what was relayed, which messages)
//! can be asserted in unit tests without a console or a reboot; [`StdHost`] is the real one.

/// The supervisor's side effects outside Xen.
pub trait Host {
    /// One relayed guest console line, already `[name] `-prefixed and defused ([`crate::lines`]).
    fn console_line(&mut self, line: &str);
    /// A message for the operator.
    fn info(&mut self, message: &str);
    /// A machine-readable event ([`crate::log::event`]).
    fn event(&mut self, kind: &str, fields: &[(&str, String)]);
    /// Reboots the whole machine (`on_crash = "reboot-platform"`); may return if that fails.
    fn reboot(&mut self);
}

/// The real host: guest lines on stdout, messages and events on stderr (dom0's console when
/// domforge-init is `/init`, see [`crate::log`]), `reboot(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdHost;

impl Host for StdHost {
    fn console_line(&mut self, line: &str) {
        use std::io::Write;
        // stdout is line-buffered: every line is written whole, never interleaved with another's.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn info(&mut self, message: &str) {
        crate::log::line(format_args!("{message}"));
    }

    fn event(&mut self, kind: &str, fields: &[(&str, String)]) {
        crate::log::event(kind, fields);
    }

    fn reboot(&mut self) {
        // Returns only on failure.
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        self.info(&format!("reboot(2) failed: {e}"));
    }
}

/// A host that records everything, in order, for tests.
#[cfg(test)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingHost {
    pub records: Vec<Record>,
}

/// One recorded side effect.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Console(String),
    Info(String),
    /// The event line exactly as [`crate::log::event`] prints it.
    Event(String),
    Reboot,
}

#[cfg(test)]
impl RecordingHost {
    pub fn console(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Console(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn infos(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Info(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Event(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
impl Host for RecordingHost {
    fn console_line(&mut self, line: &str) {
        self.records.push(Record::Console(line.to_string()));
    }
    fn info(&mut self, message: &str) {
        self.records.push(Record::Info(message.to_string()));
    }
    fn event(&mut self, kind: &str, fields: &[(&str, String)]) {
        self.records
            .push(Record::Event(crate::log::event_line(kind, fields)));
    }
    fn reboot(&mut self) {
        self.records.push(Record::Reboot);
    }
}
