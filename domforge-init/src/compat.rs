//! The manifest's target Xen against the Xen that is actually running, said plainly at boot.
//!
//! A fleet runs whatever Xen its vendor froze, so a compiled manifest may meet another release than
//! the one it was validated for. xl's answer to that is "Permission denied" (a domctl whose
//! `interface_version` differs is refused with `-EACCES`, `xen/common/domctl.c`). domforge-init
//! instead probes the interface the running Xen speaks (`domctl::Xen::open`) and builds with it; what
//! remains is to tell the operator, in words and as a machine-readable event, whether the running
//! release is the one the manifest was checked against.

use domctl::ProbeReport;
use firmware_config::blob::BootConfig;

/// How the running Xen relates to the manifest's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetMatch {
    /// Same domctl interface and (when Xen said it) the same release.
    Exact,
    /// Another release speaking the same domctl interface (e.g. 4.19 vs 4.20, both 0x17).
    SameInterface,
    /// Another domctl interface: domforge-init speaks the running Xen's, but the manifest was
    /// validated for another release's features.
    OtherInterface,
}

/// The verdict and the sentence for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCheck {
    pub matches: TargetMatch,
    pub message: String,
    /// `key=value` fields of the `DOMFORGE-INIT event=xen` line.
    pub fields: Vec<(&'static str, String)>,
}

/// Compares the blob's target (`xen_major.xen_minor`, `domctl_interface`) with the probe of the
/// running hypervisor.
pub fn check(config: &BootConfig, report: &ProbeReport) -> TargetCheck {
    let target = format!("{}.{}", config.xen_major, config.xen_minor);
    let running_interface = report.version.value();
    let running = report
        .release
        .map(|(maj, min)| format!("{maj}.{min}"))
        .unwrap_or_else(|| {
            report
                .version
                .release_family()
                .trim_start_matches("Xen ")
                .into()
        });
    let same_release = report.release.is_none_or(|(maj, min)| {
        u32::from(maj) == u32::from(config.xen_major)
            && u32::from(min) == u32::from(config.xen_minor)
    });
    let matches = if running_interface != config.domctl_interface {
        TargetMatch::OtherInterface
    } else if same_release {
        TargetMatch::Exact
    } else {
        TargetMatch::SameInterface
    };
    let message = match matches {
        TargetMatch::Exact => format!(
            "running Xen {running} (domctl interface 0x{running_interface:02x}), the release the manifest targets"
        ),
        TargetMatch::SameInterface => format!(
            "note: the manifest targets Xen {target}, this is Xen {running}; both speak domctl \
             interface 0x{running_interface:02x}, so the guests are built the same way"
        ),
        TargetMatch::OtherInterface => format!(
            "XEN RELEASE MISMATCH: the manifest was validated for Xen {target} (domctl interface \
             0x{:02x}) but this is Xen {running} (domctl interface 0x{running_interface:02x}). \
             domforge-init speaks the running Xen's interface and goes on, but features were checked \
             against {target}, not {running}: rebuild with `[system] xen = \"{running}\"` (or \
             `domforge build --xen {running}`) so the manifest is validated for this hypervisor",
            config.domctl_interface
        ),
    };
    let fields = vec![
        ("running", running),
        ("interface", format!("0x{running_interface:02x}")),
        ("target", target),
        (
            "target_interface",
            format!("0x{:02x}", config.domctl_interface),
        ),
        (
            "match",
            match matches {
                TargetMatch::Exact => "exact",
                TargetMatch::SameInterface => "same-interface",
                TargetMatch::OtherInterface => "mismatch",
            }
            .to_string(),
        ),
    ];
    TargetCheck {
        matches,
        message,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domctl::InterfaceVersion;

    fn config(minor: u8, interface: u32) -> BootConfig {
        BootConfig {
            system: heapless::String::try_from("t").unwrap(),
            xen_major: 4,
            xen_minor: minor,
            domctl_interface: interface,
            arm_gic: None,
            domains: Vec::new(),
            xenstore: false,
        }
    }

    fn report(v: InterfaceVersion, release: Option<(u16, u16)>) -> ProbeReport {
        ProbeReport {
            version: v,
            release,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn same_release_is_exact() {
        let c = check(
            &config(17, 0x15),
            &report(InterfaceVersion::V15, Some((4, 17))),
        );
        assert_eq!(c.matches, TargetMatch::Exact);
        assert!(c.fields.contains(&("match", "exact".into())));
    }

    #[test]
    fn release_without_version_answer_is_judged_by_interface() {
        let c = check(&config(20, 0x17), &report(InterfaceVersion::V17, None));
        assert_eq!(c.matches, TargetMatch::Exact);
    }

    #[test]
    fn sibling_release_with_same_interface_is_a_note() {
        let c = check(
            &config(19, 0x17),
            &report(InterfaceVersion::V17, Some((4, 20))),
        );
        assert_eq!(c.matches, TargetMatch::SameInterface);
        assert!(c.message.contains("4.19") && c.message.contains("4.20"));
    }

    #[test]
    fn other_interface_names_both_releases_and_the_fix() {
        // A manifest built for 4.20 (0x17) booted on 4.17 (0x15), as in tests/qemu_x86.rs.
        let c = check(
            &config(20, 0x17),
            &report(InterfaceVersion::V15, Some((4, 17))),
        );
        assert_eq!(c.matches, TargetMatch::OtherInterface);
        assert!(c.message.starts_with("XEN RELEASE MISMATCH"));
        assert!(c.message.contains("Xen 4.20 (domctl interface 0x17)"));
        assert!(c.message.contains("Xen 4.17 (domctl interface 0x15)"));
        assert!(c.message.contains("xen = \"4.17\""));
        assert!(c.fields.contains(&("match", "mismatch".into())));
    }
}
