//! What `domforge run` and `domforge test` can observe of a system before they boot it.
//!
//! Both follow each domain on its console: `run` waits until every domain has printed that it is
//! up, `test` until every domain's probe has printed its report. A domain with `console = "none"`
//! prints nothing anywhere, so either command would wait out its whole deadline (180 s for `test`)
//! and then report "no probe report". They refuse such a system up front instead, with the reason
//! and what to change.

use crate::diag::{Diagnostic, Diagnostics};
use crate::manifest::{Console, Manifest};
use std::format;

/// E0252 for every domain whose console the boot can never show (`console = "none"`).
pub fn unobservable_domains(m: &Manifest) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for d in &m.domains {
        let Some(c) = d.console.as_ref().filter(|c| c.value == Console::None) else {
            continue;
        };
        diags.push(
            Diagnostic::error(
                "E0252",
                format!(
                    "domain `{}` has no console, so `domforge test` and `domforge run` can never hear from it",
                    d.name.value
                ),
            )
            .at(c.span.clone(), "this domain prints nothing anywhere")
            .note("both commands follow each domain on its console (the probe prints its report there); without one they would wait for the whole deadline")
            .help("to test or run it, give it a console: `console = \"vpl011\"` (arm64) or `\"hvc\"` (with a dom0); to boot it silent, use `domforge build` and the `run-qemu.sh` it writes"),
        );
    }
    diags
}
