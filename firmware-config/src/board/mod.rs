//! Board descriptions: what the hardware is (read from its device tree) and what only a person can say.
#[cfg(feature = "std")]
pub mod file;
pub mod inventory;
#[cfg(feature = "std")]
pub use file::*;
pub use inventory::*;
