//! One file per command, as wasmtime's CLI does.

pub mod build;
pub mod compile;
pub mod replay;
pub mod serve;
