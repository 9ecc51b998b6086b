//! Board descriptions: what the hardware is (read from its device tree) and what only a person can say.
pub mod inventory;
pub use inventory::*;
