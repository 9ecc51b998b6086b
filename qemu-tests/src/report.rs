//! Judging a boot against the expectations, and showing the result: a table for people,
//! JSON (`--json`) and JUnit XML (`--junit FILE`) for CI.

use crate::expect::{self, Difference, Expectation};
use crate::runner::{BootLog, EndReason};
use std::fmt::Write;
use std::time::Duration;

/// A domain's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Booted and saw what the manifest promises.
    Pass,
    /// Booted, but its view differs from the plan.
    Fail,
    /// Never completed a report (or, without the probe, never printed anything).
    NotUp,
    /// Booted and printed, but runs no probe: nothing more can be checked.
    Booted,
}

impl Outcome {
    /// The word in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotUp => "NOT UP",
            Outcome::Booted => "booted",
        }
    }
    /// Whether this counts as success.
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Pass | Outcome::Booted)
    }
}

/// One domain's verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DomainResult {
    /// Domain name.
    pub name: String,
    /// Result.
    pub outcome: Outcome,
    /// Seconds from QEMU's start to its first console line.
    pub first_output_s: Option<f64>,
    /// Seconds from QEMU's start to its complete report.
    pub ready_s: Option<f64>,
    /// What differs from the plan.
    pub differences: Vec<Difference>,
    /// Why it is not up (deadline, crash, …) when it is not.
    pub problem: Option<String>,
}

impl DomainResult {
    /// One line per difference, each naming the domain: `app-2: ram: expected …, the guest sees …`.
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .problem
            .iter()
            .map(|p| format!("{}: {p}", self.name))
            .collect();
        v.extend(
            self.differences
                .iter()
                .map(|d| format!("{}: {d}", self.name)),
        );
        v
    }
}

/// The verdict on a whole boot.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TestReport {
    /// The system's name.
    pub system: String,
    /// Why the boot ended.
    pub end: EndReason,
    /// Seconds QEMU ran.
    pub elapsed_s: f64,
    /// Per domain, dom0 first then boot order.
    pub domains: Vec<DomainResult>,
    /// Whether every domain passed and nothing else went wrong.
    pub passed: bool,
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)
}

/// Compares what the boot showed with what the plan promised.
pub fn evaluate(system: &str, expectations: &[Expectation], log: &BootLog) -> TestReport {
    let reports = log.reports();
    let mut domains = Vec::new();
    for e in expectations {
        let timing = log.timings.get(&e.name).cloned().unwrap_or_default();
        let (outcome, differences, problem) = if !e.probe {
            if timing.first_output.is_some() && timing.failed.is_none() {
                (Outcome::Booted, Vec::new(), None)
            } else {
                (
                    Outcome::NotUp,
                    Vec::new(),
                    Some(timing.failed.clone().unwrap_or_else(|| {
                        format!(
                            "printed nothing before the boot ended ({})",
                            log.end.describe()
                        )
                    })),
                )
            }
        } else {
            match reports.get(&e.name) {
                Some(r) => {
                    let diffs = expect::check(e, r);
                    let complete = r.check_complete().is_ok();
                    let problem = timing.failed.clone().or_else(|| {
                        (!complete).then(|| {
                            format!(
                                "report incomplete when the boot ended ({})",
                                log.end.describe()
                            )
                        })
                    });
                    let outcome = if !complete {
                        Outcome::NotUp
                    } else if diffs.is_empty() && timing.failed.is_none() {
                        Outcome::Pass
                    } else {
                        Outcome::Fail
                    };
                    (outcome, diffs, problem)
                }
                None => (
                    Outcome::NotUp,
                    Vec::new(),
                    Some(timing.failed.clone().unwrap_or_else(|| {
                        format!(
                            "no probe report{} before the boot ended ({})",
                            if timing.first_output.is_some() {
                                " (it printed console output)"
                            } else {
                                ", no console output"
                            },
                            log.end.describe()
                        )
                    })),
                ),
            }
        };
        domains.push(DomainResult {
            name: e.name.clone(),
            outcome,
            first_output_s: secs(timing.first_output),
            ready_s: secs(timing.up),
            differences,
            problem,
        });
    }
    let end_ok = matches!(log.end, EndReason::AllUp);
    let passed = end_ok && !domains.is_empty() && domains.iter().all(|d| d.outcome.ok());
    TestReport {
        system: system.to_string(),
        end: log.end.clone(),
        elapsed_s: secs(Some(log.elapsed)).unwrap_or(0.0),
        domains,
        passed,
    }
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.1} s"))
}

impl TestReport {
    /// Every failure message, each naming its domain.
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .domains
            .iter()
            .flat_map(DomainResult::messages)
            .collect();
        if !matches!(self.end, EndReason::AllUp) {
            v.push(format!("boot: {}", self.end.describe()));
        }
        v
    }

    /// The table for people: domain, result, time to first output, time to ready; then the
    /// differences.
    pub fn table(&self) -> String {
        let w = self
            .domains
            .iter()
            .map(|d| d.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<w$}  {:<7} {:>13} {:>10}",
            "domain", "result", "first output", "ready"
        );
        for d in &self.domains {
            let _ = writeln!(
                s,
                "{:<w$}  {:<7} {:>13} {:>10}",
                d.name,
                d.outcome.as_str(),
                opt_s(d.first_output_s),
                opt_s(d.ready_s)
            );
        }
        for m in self.messages() {
            let _ = writeln!(s, "  {m}");
        }
        let _ = writeln!(
            s,
            "{}: {} in {:.1} s ({})",
            self.system,
            if self.passed { "PASS" } else { "FAIL" },
            self.elapsed_s,
            self.end.describe()
        );
        s
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// JUnit XML: one `<testsuite>` for the system, one `<testcase>` per domain (the format
    /// Jenkins, GitLab and GitHub reporters read: `testsuite`/`testcase`/`failure`).
    pub fn to_junit(&self) -> String {
        let failures = self.domains.iter().filter(|d| !d.outcome.ok()).count();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.1}\">",
            xml(&self.system),
            self.domains.len(),
            failures,
            usize::from(!matches!(self.end, EndReason::AllUp)),
            self.elapsed_s
        );
        for d in &self.domains {
            let _ = write!(
                s,
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.1}\"",
                xml(&self.system),
                xml(&d.name),
                d.ready_s.or(d.first_output_s).unwrap_or(0.0)
            );
            if d.outcome.ok() {
                s.push_str("/>\n");
            } else {
                let msgs = d.messages();
                let _ = writeln!(
                    s,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    xml(msgs.first().map_or("failed", String::as_str)),
                    xml(&msgs.join("\n"))
                );
            }
        }
        if !matches!(self.end, EndReason::AllUp) {
            let _ = writeln!(
                s,
                "  <system-err>{}</system-err>",
                xml(&self.end.describe())
            );
        }
        s.push_str("</testsuite>\n");
        s
    }
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{DomainMap, classify};
    use crate::runner::DomainTiming;
    use firmware_config::board::Region;
    use firmware_config::units::MIB;
    use std::collections::BTreeMap;

    fn exp(name: &str, mem: u64) -> Expectation {
        Expectation {
            name: name.into(),
            disk_marker: None,
            probe: true,
            vcpus: 1,
            memory: mem * MIB,
            guest_ram: vec![Region::new(0x4000_0000, mem * MIB)],
            hypervisor_node: false,
            owned: vec![],
            denied: vec![],
        }
    }

    fn log() -> BootLog {
        let map = DomainMap::new([(1, "a".into())], None);
        let text = "\
(XEN) DOM1: DOMFORGE-PROBE a begin=1
(XEN) DOM1: DOMFORGE-PROBE a cpus.online=1
(XEN) DOM1: DOMFORGE-PROBE a mem.total_kb=101984
(XEN) DOM1: DOMFORGE-PROBE a mem.ram.0=40000000-47ffffff
(XEN) DOM1: DOMFORGE-PROBE a mem.ram.count=1
(XEN) DOM1: DOMFORGE-PROBE a hypervisor=none
(XEN) DOM1: DOMFORGE-PROBE a end=6";
        let lines = text
            .lines()
            .map(|l| classify(&map, Duration::from_secs(6), l))
            .collect();
        let mut timings = BTreeMap::new();
        timings.insert(
            "a".to_string(),
            DomainTiming {
                first_output: Some(Duration::from_millis(5_040)),
                up: Some(Duration::from_secs(6)),
                failed: None,
            },
        );
        BootLog {
            lines,
            end: EndReason::AllUp,
            elapsed: Duration::from_secs(7),
            timings,
            stderr: String::new(),
        }
    }

    #[test]
    fn pass_and_wrong_memory() {
        let good = evaluate("sys", &[exp("a", 128)], &log());
        assert!(good.passed, "{}", good.table());
        assert_eq!(good.domains[0].first_output_s, Some(5.0));
        let bad = evaluate("sys", &[exp("a", 256)], &log());
        assert!(!bad.passed);
        let msgs = bad.messages();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("a: ram: expected 256 MiB")
                    && m.contains("the guest sees 0x40000000-0x47ffffff (128 MiB)")),
            "{msgs:?}"
        );
        assert!(bad.table().contains("FAIL"));
        // A domain that never reported is named too.
        let missing = evaluate("sys", &[exp("a", 128), exp("b", 128)], &log());
        assert!(!missing.passed);
        assert!(
            missing
                .messages()
                .iter()
                .any(|m| m.starts_with("b: no probe report"))
        );
    }

    #[test]
    fn junit_is_well_formed_xml() {
        let bad = evaluate("sys<&>", &[exp("a", 256)], &log());
        let x = bad.to_junit();
        // Parse with Python's XML parser as an independent check, when python3 is there.
        let dir = std::env::temp_dir().join(format!("qt-junit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("r.xml");
        std::fs::write(&f, &x).unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); print(r.tag, r.get('name'), r.get('failures'), len(r.findall('testcase/failure')))")
            .arg(&f)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            Ok(o) if o.status.success() => {
                assert_eq!(
                    String::from_utf8_lossy(&o.stdout).trim(),
                    "testsuite sys<&> 1 1"
                );
            }
            Ok(o) => panic!(
                "python rejected the XML: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("python3 is needed for this test: {e}"),
        }
        let v = bad.to_json();
        assert_eq!(v["passed"], serde_json::json!(false));
        assert_eq!(v["domains"][0]["outcome"], serde_json::json!("fail"));
    }
}
