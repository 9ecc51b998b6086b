//! Splitting the one serial stream of a nested Xen boot into per-domain lines.
//!
//! Everything a booted system says arrives on QEMU's single PL011/COM1, interleaved:
//! - Xen's own messages, prefixed `(XEN) `;
//! - a dom0less domU's `vpl011` output when no dom0 owns the console: Xen prints it as
//!   `(XEN) DOM<domid>: <text>` (4.17: `xen/arch/arm/vpl011.c`, `vpl011_write_data_xen()`, which
//!   also splits lines longer than its buffer into several prefixed lines). On Xen 4.20 the first
//!   domU's lines were seen as plain `(XEN) <text>` (see `shared/notes/qemu-recipes.md`);
//! - x86 guests writing to the 0xE9 debug port: `(d<domid>) <text>`;
//! - dom0's `hvc0`, which Xen passes through unprefixed.
//!
//! Prefixes are therefore only a hint. Probe report lines name their domain themselves
//! (`DOMFORGE-PROBE <name> …`, [`probe`]), so they are attributed by that name whatever
//! the prefix; other lines by the domid in the prefix, mapped to a name through the boot order
//! ([`DomainMap`]).

use probe::{ProbeLine, parse_report_line};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which domid each domain gets, so `DOM<n>` prefixes can be turned into names.
///
/// Xen numbers dom0 0 and the dom0less domUs it builds from `/chosen` 1, 2, … in device-tree
/// node order (4.17 `xen/arch/arm/domain_build.c`, `create_domUs()`: `++max_init_domid` for each
/// `xen,domain` child of `/chosen`), whether or not there is a dom0 — seen on a real boot without
/// dom0: the first domU prints as `DOM1`. domforge writes the nodes in the plan's boot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainMap {
    by_domid: BTreeMap<u32, String>,
    /// Who owns unprefixed lines: dom0 (its `hvc0` goes straight to the serial) when there is one.
    unprefixed: Option<String>,
    /// Domains whose console domforge-init relays through dom0 as `[name] line`.
    relayed: std::collections::BTreeSet<String>,
}

/// The name under which dom0's lines are reported.
pub const DOM0_NAME: &str = "dom0";

impl DomainMap {
    /// The map of a planned system: dom0 (if any) is domid 0, domains follow in boot order from 1.
    pub fn from_plan(plan: &firmware_config::plan::SystemPlan) -> Self {
        let mut map = DomainMap::default();
        if plan.dom0.is_some() {
            map.by_domid.insert(0, DOM0_NAME.to_string());
            map.unprefixed = Some(DOM0_NAME.to_string());
        }
        // Xen gives the domains it builds at boot domids 1, 2, ... in `/chosen` order, i.e. boot
        // order. Domains domforge-init builds get later domids at run time; their lines reach the
        // console through dom0 as `[name] line` and their probe reports carry their names.
        let mut xen_built = plan
            .domains
            .iter()
            .filter(|d| d.builder == firmware_config::manifest::Builder::Xen)
            .collect::<Vec<_>>();
        xen_built.sort_by_key(|d| d.boot_index);
        for (i, d) in xen_built.into_iter().enumerate() {
            if let Some(domid) = u32::try_from(i).ok().and_then(|i| i.checked_add(1)) {
                map.by_domid.insert(domid, d.name.clone());
            }
        }
        map.relayed = plan
            .domains
            .iter()
            .filter(|d| d.builder == firmware_config::manifest::Builder::Init)
            .map(|d| d.name.clone())
            .collect();
        map
    }

    /// A map from explicit `(domid, name)` pairs; `unprefixed` names the owner of raw lines.
    pub fn new(
        domains: impl IntoIterator<Item = (u32, String)>,
        unprefixed: Option<String>,
    ) -> Self {
        Self {
            by_domid: domains.into_iter().collect(),
            unprefixed,
            relayed: Default::default(),
        }
    }

    /// `[name] text` of a domain domforge-init relays: its name and the text.
    pub fn relayed_line<'a>(&self, raw: &'a str) -> Option<(&str, &'a str)> {
        let rest = raw.strip_prefix('[')?;
        let (name, text) = rest.split_once("] ")?;
        self.relayed.get(name).map(|n| (n.as_str(), text))
    }

    /// The name of domain `domid`, or `dom<domid>` for a domid the plan does not know.
    pub fn name_of(&self, domid: u32) -> String {
        self.by_domid
            .get(&domid)
            .cloned()
            .unwrap_or_else(|| format!("dom{domid}"))
    }

    /// The domid of `name`, if the map knows it.
    pub fn domid_of(&self, name: &str) -> Option<u32> {
        self.by_domid
            .iter()
            .find_map(|(id, n)| (n == name).then_some(*id))
    }
}

/// Who said a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum Origin {
    /// Xen itself (`(XEN) ` without a domain prefix).
    Xen,
    /// A domain, by name.
    Domain(String),
    /// Anything else (firmware, QEMU, unprefixed text when there is no dom0).
    Other,
}

impl Origin {
    /// The label shown before the line in `domforge run`.
    pub fn label(&self) -> &str {
        match self {
            Origin::Xen => "xen",
            Origin::Domain(name) => name,
            Origin::Other => "console",
        }
    }
}

/// One line of console output, attributed and timestamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// Time since QEMU was started.
    pub at: Duration,
    /// Who said it.
    pub origin: Origin,
    /// The text without Xen's prefix.
    pub text: String,
    /// The line as it arrived (without the line ending).
    pub raw: String,
    /// The probe report line it carries, if any.
    pub probe: Option<ProbeLine>,
}

/// `(XEN) DOM<n>: rest` or `(d<n>) rest` → `(n, rest)`.
fn domain_prefix(line: &str) -> Option<(u32, &str)> {
    if let Some(rest) = line.strip_prefix("(XEN) DOM") {
        let (id, text) = rest.split_once(':')?;
        let domid = id.parse().ok()?;
        return Some((domid, text.strip_prefix(' ').unwrap_or(text)));
    }
    let rest = line.strip_prefix("(d")?;
    let (id, text) = rest.split_once(')')?;
    let domid = id.parse().ok()?;
    Some((domid, text.strip_prefix(' ').unwrap_or(text)))
}

/// Splits a line where Xen's output was glued onto an unfinished line.
///
/// dom0's `hvc0` text reaches the serial as Linux writes it, not a line at a time, so Xen's own
/// line (including a domU's `(XEN) DOM<n>:` line) can start in the middle of dom0's: seen on a
/// real boot as `DOMFORGE-PROBE dom0 kernel=6.1.0-56-arm64(XEN) DOM1: DOMFORGE-PROBE app-1 …`.
/// Every `(XEN) ` after the start begins a new line.
pub fn split_glued(raw: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = raw;
    while let Some(pos) = rest.get(1..).and_then(|r| r.find("(XEN) ")).map(|p| p + 1) {
        let (head, tail) = rest.split_at(pos);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// Attributes one raw console line (line ending already removed).
pub fn classify(map: &DomainMap, at: Duration, raw: &str) -> ConsoleLine {
    let raw = raw.trim_end_matches(['\r', '\n']);
    let probe = parse_report_line(raw);
    let (origin, text) = if let Some(p) = &probe {
        let start = raw.find(probe::MARKER).unwrap_or(0);
        (
            Origin::Domain(p.name.clone()),
            raw.get(start..).unwrap_or(raw),
        )
    } else if let Some((domid, text)) = domain_prefix(raw) {
        (Origin::Domain(map.name_of(domid)), text)
    } else if let Some(text) = raw.strip_prefix("(XEN) ") {
        (Origin::Xen, text)
    } else if raw == "(XEN)" {
        (Origin::Xen, "")
    } else if let Some((name, text)) = map.relayed_line(raw) {
        // domforge-init's relay (`[name] line` on dom0's console): the guest said it.
        (Origin::Domain(name.to_string()), text)
    } else if let Some(owner) = &map.unprefixed {
        (Origin::Domain(owner.clone()), raw)
    } else {
        (Origin::Other, raw)
    };
    ConsoleLine {
        at,
        origin,
        text: text.to_string(),
        raw: raw.to_string(),
        probe,
    }
}

/// A fatal condition recognised in a console line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fatal {
    /// Xen itself failed: nothing else will happen.
    Xen {
        /// The line that says so.
        line: String,
    },
    /// One domain died.
    Domain {
        /// The domain.
        name: String,
        /// The line that says so.
        line: String,
    },
}

/// Recognises lines after which waiting is pointless.
///
/// Xen: `panic()` prints `Panic on CPU <n>:` (`xen/drivers/char/console.c`), `BUG()` prints
/// `Xen BUG at <file>:<line>` and `ASSERT()` `Assertion '<cond>' failed at` (`xen/common/bug.c`,
/// `xen/arch/arm/traps.c` in 4.17), a fatal hypervisor trap `FATAL TRAP`. A domain: Xen's
/// `__domain_crash()` prints `Domain <id> (vcpu#<n>) crashed on cpu#<m>` or `Domain <id> reported
/// crashed by domain <x>` (`xen/common/domain.c`), and a guest kernel that panics prints
/// `Kernel panic - not syncing` on its own console.
pub fn fatal(map: &DomainMap, line: &ConsoleLine) -> Option<Fatal> {
    let text = line.text.as_str();
    if line.origin == Origin::Xen {
        for pat in ["Panic on CPU", "Xen BUG at", "FATAL TRAP"] {
            if text.contains(pat) {
                return Some(Fatal::Xen {
                    line: line.raw.clone(),
                });
            }
        }
        if text.starts_with("Assertion '") && text.contains("' failed") {
            return Some(Fatal::Xen {
                line: line.raw.clone(),
            });
        }
        if let Some(rest) = text.strip_prefix("Domain ")
            && let Some((id, tail)) = rest.split_once(' ')
            && (tail.starts_with("(vcpu#") && tail.contains("crashed")
                || tail.starts_with("reported crashed"))
            && let Ok(domid) = id.parse::<u32>()
        {
            return Some(Fatal::Domain {
                name: map.name_of(domid),
                line: line.raw.clone(),
            });
        }
    }
    if let Origin::Domain(name) = &line.origin
        && text.contains("Kernel panic - not syncing")
    {
        return Some(Fatal::Domain {
            name: name.clone(),
            line: line.raw.clone(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> DomainMap {
        DomainMap::new([(1, "app-1".into()), (2, "app-2".into())], None)
    }

    // Lines below are copied from a real boot of Debian's Xen 4.17.7 with three probe domUs.
    #[test]
    fn attributes_xen_domain_and_probe_lines() {
        let m = map();
        let t = Duration::from_secs(1);
        let l = classify(
            &m,
            t,
            "(XEN) DOM2: [    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]\r",
        );
        assert_eq!(l.origin, Origin::Domain("app-2".into()));
        assert!(l.text.starts_with("[    0.000000] Booting Linux"));
        assert_eq!(l.probe, None);

        let l = classify(&m, t, "(XEN) Brought up 2 CPUs");
        assert_eq!(l.origin, Origin::Xen);
        assert_eq!(l.text, "Brought up 2 CPUs");

        // A probe line is attributed by its own name, even behind another domain's prefix or none.
        let l = classify(&m, t, "(XEN) DOM1: DOMFORGE-PROBE app-2 cpus.online=1");
        assert_eq!(l.origin, Origin::Domain("app-2".into()));
        assert_eq!(l.text, "DOMFORGE-PROBE app-2 cpus.online=1");
        assert_eq!(l.probe.map(|p| p.key), Some("cpus.online".into()));
        let l = classify(&m, t, "(XEN) DOMFORGE-PROBE app-1 begin=1");
        assert_eq!(l.origin, Origin::Domain("app-1".into()));

        // Unknown domids keep a readable name; x86 debug-port lines are domain lines too.
        let l = classify(&m, t, "(XEN) DOM7: hello");
        assert_eq!(l.origin, Origin::Domain("dom7".into()));
        let l = classify(&m, t, "(d1) early console");
        assert_eq!(l.origin, Origin::Domain("app-1".into()));
        assert_eq!(l.text, "early console");

        // Unprefixed text belongs to dom0 only when there is one.
        assert_eq!(classify(&m, t, "login:").origin, Origin::Other);
        let with_dom0 = DomainMap::new([(0, "dom0".into())], Some("dom0".into()));
        assert_eq!(
            classify(&with_dom0, t, "[    1.0] hvc0").origin,
            Origin::Domain("dom0".into())
        );
        // A Xen line that merely mentions a domain is Xen's.
        assert_eq!(
            classify(&m, t, "(XEN) d2v0: vGICD: unhandled word write").origin,
            Origin::Xen
        );
    }

    #[test]
    fn recognises_fatal_lines() {
        let m = map();
        let t = Duration::ZERO;
        let xen = |s: &str| fatal(&m, &classify(&m, t, s));
        assert!(matches!(
            xen("(XEN) Panic on CPU 0:"),
            Some(Fatal::Xen { .. })
        ));
        assert!(matches!(
            xen("(XEN) Xen BUG at domain_build.c:123"),
            Some(Fatal::Xen { .. })
        ));
        assert!(matches!(
            xen("(XEN) Assertion 'x' failed at common/foo.c:1"),
            Some(Fatal::Xen { .. })
        ));
        assert_eq!(
            xen("(XEN) Domain 2 (vcpu#0) crashed on cpu#1:"),
            Some(Fatal::Domain {
                name: "app-2".into(),
                line: "(XEN) Domain 2 (vcpu#0) crashed on cpu#1:".into()
            })
        );
        assert!(matches!(
            xen("(XEN) DOM1: [    3.1] Kernel panic - not syncing: Attempted to kill init!"),
            Some(Fatal::Domain { name, .. }) if name == "app-1"
        ));
        assert_eq!(xen("(XEN) Brought up 2 CPUs"), None);
        assert_eq!(xen("(XEN) DOM1: Domain 2 crashed (just text)"), None);
    }

    #[test]
    fn splits_xen_lines_glued_onto_dom0_text() {
        let raw = "DOMFORGE-PROBE dom0 kernel=6.1.0-56-arm64(XEN) DOM1: DOMFORGE-PROBE app-1 kernel=6.1.0-56-arm64";
        assert_eq!(
            split_glued(raw),
            [
                "DOMFORGE-PROBE dom0 kernel=6.1.0-56-arm64",
                "(XEN) DOM1: DOMFORGE-PROBE app-1 kernel=6.1.0-56-arm64"
            ]
        );
        assert_eq!(split_glued("(XEN) DOM1: x"), ["(XEN) DOM1: x"]);
        assert_eq!(split_glued(""), [""]);
    }

    #[test]
    fn map_from_boot_order() {
        let m = DomainMap::new([(1, "a".into()), (2, "b".into())], None);
        assert_eq!(m.domid_of("b"), Some(2));
        assert_eq!(m.name_of(1), "a");
    }

    #[test]
    fn relayed_lines_belong_to_their_guest() {
        let mut map = DomainMap::new([(0, DOM0_NAME.to_string())], Some(DOM0_NAME.into()));
        map.relayed.insert("app".into());
        let t = Duration::from_secs(1);
        let l = classify(
            &map,
            t,
            "[app] [    6.8] Kernel panic - not syncing: sysrq triggered crash",
        );
        assert_eq!(l.origin, Origin::Domain("app".into()));
        assert!(l.text.starts_with("[    6.8] Kernel panic"));
        // The guest's panic is the guest's, not dom0's.
        assert_eq!(
            fatal(&map, &l),
            Some(Fatal::Domain {
                name: "app".into(),
                line: l.raw.clone()
            })
        );
        // A name domforge-init does not relay stays dom0's text.
        assert_eq!(
            classify(&map, t, "[other] hello").origin,
            Origin::Domain(DOM0_NAME.into())
        );
        assert_eq!(
            classify(&map, t, "[    0.000000] Booting Linux").origin,
            Origin::Domain(DOM0_NAME.into())
        );
    }
}
