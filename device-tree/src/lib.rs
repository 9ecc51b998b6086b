//! Flattened device trees for domforge.
//!
//! What this crate does, in the order data flows:
//! - [`DeviceTree`]: read any FDT blob ([`DeviceTree::from_dtb`]), look nodes up by path, edit
//!   properties and nodes, write a blob ([`DeviceTree::to_dtb`]) and print DTS that `dtc` accepts
//!   ([`DeviceTree::to_dts`]).
//! - [`inventory::read_inventory`]: turn a board DTB into `firmware_config::board::HardwareInventory`
//!   (CPUs, RAM, reservations, GIC, devices with `reg` translated through every `ranges`, decoded
//!   interrupts — 1:1 forwarders such as the i.MX GPC resolved to the GIC —, the phandle dependencies
//!   of each device's whole subtree, IOMMUs Xen drives, DMA masters, the console).
//! - [`passthrough::fragment`]: generate the partial device tree Xen's dom0less builder reads for a
//!   driver domain (`/passthrough` with `xen,reg`, `xen,path`, interrupts re-encoded for the guest
//!   GIC, every phandle re-linked, `dma-ranges`), from host paths; plus the host-DT fix-ups Xen needs
//!   to route forwarded interrupts. The same rules back validation through the inventory, and
//!   `tests/check_build.rs` checks that what `check` accepts, the generator writes.
//! - [`dom0less::apply_chosen`]: write the Xen `/chosen` content (bootargs, dom0 modules, one
//!   `xen,domain` node per domain) into the host DTB and mark passed-through host nodes.
//! - [`guest::guest_dt`]: the device tree of a toolstack-built ARM guest, laid out like libxl.
//!
//! # Why our own FDT reader and writer
//! The design card names the `fdt` crate, but cargo-fuzz made `fdt` 0.1.5 panic within a minute
//! (`/work/shared/notes/crates.md`), and the board DTB comes from firmware we do not control.
//! `dtoolkit` 0.4.1 is fuzz-clean but **rejects real vendor blobs**: its validator refuses property
//! names longer than 31 characters, and Debian's `zynqmp-zcu102-rev1.0.dtb` (Linux 6.1) has
//! `snps,quirk-frame-length-adjustment` (34 characters; Linux and dtc accept it) — a reader that cannot
//! open the ZCU102 tree cannot do this job. `vm-fdt` only writes. So the crate owns a small reader
//! (every offset and length checked, nesting bounded by [`tree::MAX_DEPTH`], typed [`DtError`]s, fuzzed by
//! `fuzz/fuzz_targets/from_dtb.rs`), a writer of the libfdt layout (version 17) and a DTS printer;
//! together about 600 lines, and no dependency whose API moves under us.

pub mod dom0less;
mod dts;
#[cfg(feature = "plan")]
pub mod from_plan;
pub mod guest;
pub mod inventory;
pub mod passthrough;
pub mod resolve;
pub mod tree;
pub mod uefi;

pub use tree::{DeviceTree, MemReservation, Node, Property, value};

/// What can go wrong reading or editing a device tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtError {
    #[error("device tree blob truncated: {what} at offset {offset:#x} runs past the end")]
    Truncated { what: &'static str, offset: usize },
    #[error("not a device tree blob: magic {0:#010x}, expected 0xd00dfeed")]
    BadMagic(u32),
    #[error(
        "unsupported device tree blob version {version} (last compatible {last_comp}); versions 16 and 17 are read"
    )]
    UnsupportedVersion { version: u32, last_comp: u32 },
    #[error("malformed device tree header: {0}")]
    BadHeader(String),
    #[error("malformed device tree structure: unexpected token {token:#x} at offset {offset:#x}")]
    BadToken { token: u32, offset: usize },
    #[error("malformed device tree: invalid node or property name at offset {offset:#x}")]
    BadName { offset: usize },
    #[error("device tree nests deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("no node {0} in the device tree")]
    NodeNotFound(String),
    #[error("{path}: property `{property}`: {reason}")]
    BadProperty {
        path: String,
        property: String,
        reason: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}
