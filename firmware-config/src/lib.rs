//! # firmware-config
//!
//! The types at the root of domforge: the manifest a person writes, the board it runs on, the checks
//! that decide whether the whole system can work, the plan that says where everything goes, and the
//! compact boot blob that a boot-time binary decodes.
//!
//! The crate is `no_std` at its core ([`blob`], the boot-time view of the system, decodes without an
//! allocator); the `std` feature adds the TOML front end with source spans, board files, validation
//! and planning. It performs no I/O: file contents come in as strings and bytes, and facts the crate
//! cannot compute itself (a kernel's format, a board DTB's contents) come in as plain data.
#![no_std]
// Diagnostics are rich (spans, labels, hints) and travel on the cold path only; boxing them would buy
// nothing measurable and make every rule harder to read.
#![allow(clippy::result_large_err)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod artifacts;
pub use schema::blob;
pub mod board;
#[cfg(feature = "std")]
pub mod budget;
pub mod diag;
pub mod guest_map;
#[cfg(feature = "std")]
pub mod manifest;
#[cfg(feature = "std")]
pub mod observe;
#[cfg(feature = "std")]
pub mod plan;
pub mod pools;
#[cfg(feature = "std")]
pub mod pv_plan;
pub use schema::units;
#[cfg(feature = "schema")]
pub mod json_schema;
#[cfg(feature = "std")]
#[doc(hidden)]
pub mod testing;
#[cfg(feature = "std")]
pub mod validate;
pub use schema::xen;
pub mod xen_drivers;
