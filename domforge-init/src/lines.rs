//! Console bytes → `[name] line` lines. Several guests share one console (dom0's, which Xen prints on
//! its serial line), so every line carries its domain's name, and lines are only written whole.

/// Longest line kept before it is cut (a guest that never sends a newline cannot grow memory).
pub const MAX_LINE: usize = 4096;

/// Assembles one guest's console output into prefixed lines.
#[derive(Debug, Clone)]
pub struct LineRelay {
    prefix: String,
    partial: Vec<u8>,
}

impl LineRelay {
    pub fn new(name: &str) -> Self {
        Self {
            prefix: format!("[{name}] "),
            partial: Vec::new(),
        }
    }

    /// Feeds bytes; returns the complete lines (without the newline, `\r` dropped, control characters
    /// other than tab shown as `?` so a guest cannot drive the operator's terminal).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            match b {
                b'\n' => lines.push(self.take()),
                b'\r' => {}
                _ => {
                    self.partial.push(b);
                    if self.partial.len() >= MAX_LINE {
                        lines.push(self.take());
                    }
                }
            }
        }
        lines
    }

    /// The unterminated rest, if any (when the guest goes away).
    pub fn flush(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let text: String = String::from_utf8_lossy(&self.partial)
            .chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        self.partial.clear();
        format!("{}{}", self.prefix, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_and_split_only_at_newlines() {
        let mut r = LineRelay::new("web");
        assert!(r.push(b"DOMFORGE-PROBE web be").is_empty());
        assert_eq!(
            r.push(b"gin=1\r\nnext\n"),
            vec!["[web] DOMFORGE-PROBE web begin=1", "[web] next"]
        );
        assert_eq!(r.push(b"tail"), Vec::<String>::new());
        assert_eq!(r.flush().as_deref(), Some("[web] tail"));
        assert_eq!(r.flush(), None);
    }

    #[test]
    fn escape_sequences_and_endless_lines_are_defused() {
        let mut r = LineRelay::new("x");
        assert_eq!(r.push(b"\x1b[2Jhi\n"), vec!["[x] ?[2Jhi"]);
        let long = vec![b'a'; MAX_LINE * 2 + 3];
        let lines = r.push(&long);
        assert_eq!(lines.len(), 2);
        assert_eq!(r.flush().unwrap().len(), "[x] ".len() + 3);
    }
}
