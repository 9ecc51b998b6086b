//! The `domforge` command-line tool: argument parsing (`src/main.rs`) and rendering ([`render`]).
//!
//! Everything else lives in the libraries along the flow (see `docs/architecture.md`):
//! `firmware-config` (parse, validate, plan) → `pipeline` (inputs, finalize with spans) → `bundle`
//! (assemble, write, boot targets) → `qemu-launch` (the QEMU command line) → `qemu-tests` (boot and
//! prove).
pub mod render;
