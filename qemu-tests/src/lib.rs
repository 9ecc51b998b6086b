//! qemu-tests: boot a planned system in QEMU with Xen nested, and check that every domain sees
//! what its manifest promises.
//!
//! - [`command`]: QEMU command lines for a board (`-kernel xen -dtb host.dtb -device loader,…`);
//!   [`command_x86`]: the x86 multiboot line (`-kernel xen -append … -initrd "dom0 args,initramfs"`).
//! - [`expect`]: per-domain expectations derived from the plan (vCPUs, RAM banks, `/hypervisor`,
//!   devices owned and not owned) and the probe knobs appended to each kernel command line.
//! - [`runner`]: spawns QEMU, watches the console with a deadline, fails fast on fatal lines and
//!   always stops QEMU (guard with `Drop`, Ctrl-C handler, `PR_SET_PDEATHSIG`).
//! - [`console`]: splits the serial stream into per-domain lines.
//! - [`disk`]: raw disk images with a marker line for virtio-blk passthrough scenarios, and the
//!   QEMU arguments that attach them.
//! - [`report`]: judges a boot against the expectations; table, JSON and JUnit output.
//!
//! The flow, as `domforge test` runs it: plan → [`expect::apply_probe_cmdlines`] → build the
//! artifacts → [`runner::boot`] → [`report::evaluate`].
pub mod command;
pub mod command_x86;
pub mod console;
pub mod disk;
pub mod expect;
pub mod report;
pub mod runner;
