//! Passthrough rules that mirror what the `device-tree` crate's fragment generator can write, so
//! `check` refuses first what emission would refuse (issue 13, `check` ⇔ `build`):
//!
//! - **E0261**: a passed node with CPU-addressable MMIO below it (a syscon with PHY or clock
//!   sub-blocks, a bus): its `ranges` and the children's `reg` cannot be expressed under the
//!   fragment's `/passthrough` bus, so the fragment generator refuses it (`NestedMmio`).

use std::format;
use std::vec::Vec;

use crate::diag::Diagnostic;
use crate::manifest::DomainKind;

use super::Validator;

impl Validator<'_> {
    /// E0261: a passed device has no node with MMIO of its own below it.
    pub(super) fn passthrough_rules(&mut self) {
        let m = self.m();
        let inv = self.input.inventory;
        for d in m
            .domains
            .iter()
            .filter(|d| d.kind.value == DomainKind::Arm64)
        {
            for p in &d.passthrough {
                let Some(dev) = inv.device(&p.value) else {
                    continue;
                };
                let Some(first) = dev.nested_mmio.first() else {
                    continue;
                };
                let more = dev.nested_mmio.len() - 1;
                let others = if more > 0 {
                    format!(" and {more} more")
                } else {
                    std::string::String::new()
                };
                let shown: Vec<&str> = dev.nested_mmio.iter().take(3).map(|s| s.as_str()).collect();
                self.d.push(
                    Diagnostic::error(
                        "E0261",
                        format!(
                            "`{}` has nodes with MMIO of their own below it (`{first}`{others})",
                            dev.path
                        ),
                    )
                    .at(
                        p.span.clone(),
                        "a passthrough device tree cannot describe them under this node",
                    )
                    .help(format!(
                        "pass the devices inside it instead: {}",
                        shown.join(", ")
                    )),
                );
            }
        }
    }
}
