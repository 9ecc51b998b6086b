//! From a finalize error's [`Blame`] back to the manifest text it concerns.
//!
//! Finalize knows plan items (a domain's name, a module's id and source string); the manifest knows
//! where each was written. A module is found by its source string (the `kernel`, `ramdisk` or
//! `hypervisor` value that named it); a passthrough fragment `passthrough-<domain>` and dom0's
//! generated initramfs point at their domain.

use bundle::{Blame, FinalizeError};
use firmware_config::diag::Diagnostic;
use firmware_config::manifest::Manifest;
use std::ops::Range;

/// Where `blame` was written, with a label.
fn span_of(m: &Manifest, blame: &Blame) -> Option<(Range<usize>, String)> {
    let domain = |name: &str| {
        m.domains
            .iter()
            .find(|d| d.name.value == name)
            .map(|d| (d.name.span.clone(), format!("domain `{name}`")))
    };
    match blame {
        Blame::System => Some((m.system.name.span.clone(), "this system".into())),
        Blame::Board => Some((
            m.system.board.span.clone(),
            "the board this system is built for".into(),
        )),
        Blame::Dom0 => m
            .dom0
            .as_ref()
            .map(|d| (d.kernel.span.clone(), "dom0".into())),
        Blame::Dom0Cmdline => m.dom0.as_ref().map(|d| match &d.cmdline {
            Some(c) => (c.span.clone(), "dom0's command line".into()),
            None => (d.kernel.span.clone(), "dom0".into()),
        }),
        Blame::Domain(name) => domain(name),
        Blame::SharedMemory => m
            .shared_memory
            .first()
            .map(|s| (s.id.span.clone(), "shared memory".into())),
        Blame::Module { id, source } => {
            if let Some(d) = id.strip_prefix("passthrough-").and_then(domain) {
                return Some(d);
            }
            source_span(m, source).or_else(|| {
                // dom0's generated initramfs has no source in the manifest.
                (id == "dom0-ramdisk")
                    .then(|| span_of(m, &Blame::Dom0))
                    .flatten()
            })
        }
    }
}

/// The module source spans: every `kernel`, `ramdisk` and `hypervisor` value equal to `source`.
fn source_span(m: &Manifest, source: &str) -> Option<(Range<usize>, String)> {
    let mut keys = Vec::new();
    if let Some(h) = &m.system.hypervisor {
        keys.push((h, "hypervisor"));
    }
    if let Some(d0) = &m.dom0 {
        keys.push((&d0.kernel, "dom0's kernel"));
        keys.extend(d0.ramdisk.iter().map(|r| (r, "dom0's ramdisk")));
    }
    for d in &m.domains {
        keys.push((&d.kernel, "kernel"));
        keys.extend(d.ramdisk.iter().map(|r| (r, "ramdisk")));
        keys.extend(
            d.disks
                .iter()
                .filter_map(|x| x.image.as_ref())
                .map(|i| (i, "disk image")),
        );
    }
    keys.into_iter()
        .find(|(k, _)| k.value == source)
        .map(|(k, what)| (k.span.clone(), format!("this {what}")))
        .or_else(|| {
            // Debian's Xen with no `hypervisor` key: the release the manifest asks for chose it.
            (source == "debian:xen" && m.system.hypervisor.is_none()).then(|| {
                (
                    m.system.xen.span.clone(),
                    "Debian's Xen of this release".into(),
                )
            })
        })
}

/// The diagnostic of a finalize error, at the manifest text it concerns.
pub(crate) fn diagnostic(m: &Manifest, e: &FinalizeError) -> Diagnostic {
    let mut d = Diagnostic::error(e.code, e.message.clone());
    if let Some((span, label)) = span_of(m, &e.blame) {
        d = d.at(span, label);
    }
    if let Some(h) = &e.help {
        d = d.help(h.clone());
    }
    d
}
