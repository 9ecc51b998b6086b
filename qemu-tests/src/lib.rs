//! qemu-tests: boot a planned system in QEMU with Xen nested, and check that every domain sees
//! what its manifest promises.
//!
//! - QEMU command lines for a board live in the `qemu-launch` crate (the product's `qemu` boot target).
//! - [`expect`]: per-domain expectations derived from the plan (vCPUs, RAM banks, `/hypervisor`,
//!   devices owned and not owned) and the probe knobs appended to each kernel command line.
//! - [`runner`]: spawns QEMU, watches the console with a deadline, fails fast on fatal lines and
//!   always stops QEMU (guard with `Drop`, Ctrl-C handler, `PR_SET_PDEATHSIG`).
//! - [`console`]: splits the serial stream into per-domain lines.
//! - [`disk`]: raw disk images with a marker line for virtio-blk passthrough scenarios, and the
//!   QEMU arguments that attach them.
//! - [`report`]: judges a boot against the expectations; table, JSON and JUnit output.
//!
//! - [`session`]: `domforge run` and `domforge test` (build a bundle, boot it, judge it).
//!
//! The flow, as `domforge test` runs it: plan → [`expect::apply_probe_cmdlines`] (the overlay) → build the
//! artifacts → [`runner::boot`] → [`report::evaluate`].
pub mod console;
pub mod disk;
pub mod expect;
pub mod report;
pub mod runner;
pub mod session;
