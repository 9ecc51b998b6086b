//! What the host tool (`domforge`) and the boot-time toolstack (`domforge-init`) share, `no_std`,
//! as Hubris shares one schema between its build tool and the target: whatever one side writes, the
//! other reads with the same definitions.
//!
//! - [`blob`]: the boot blob (the compiled manifest) and its framing.
//! - [`units`]: sizes and their human form.
//! - [`xen`]: the Xen releases domforge speaks.
//! - [`arch`]: the host architecture of a board and its control domain.
//! - [`layout`]: where things are in dom0's generated initramfs.
#![no_std]

#[cfg(test)]
extern crate std;

extern crate alloc;

pub mod arch;
pub mod blob;
pub mod layout;
pub mod units;
pub mod xen;
