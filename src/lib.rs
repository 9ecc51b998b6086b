//! The `domforge` command-line tool, as a library so tests can drive it without a subprocess.
#![allow(clippy::result_large_err)] // PipelineError carries diagnostics with their sources; cold path.
//!
//! The binary (`src/main.rs`) is thin: argument parsing and output. [`pipeline`] gathers what the
//! libraries need (files, DTBs, artifact facts); [`render`] shows diagnostics to people.
pub mod build;
pub mod build_x86;
pub mod pipeline;
pub mod render;
pub mod run;
