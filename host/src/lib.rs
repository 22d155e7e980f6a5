//! wsgi-wasm: a WSGI (PEP 3333) server whose applications run in WebAssembly
//! sandboxes. The binary's commands live in `commands/`; this library holds the
//! parts they share so the runtime and end-to-end tests can use them too.

// The command line's modules name this library by its crate name (`wsgi_wasm::http`),
// as they did when they were part of the binary.
extern crate self as wsgi_wasm;

/// The `wsgi-wasm` commands (serve, build, compile). In the library rather than the
/// binary so the fuzz targets (host/fuzz) run the same option and config parsers as
/// `serve`; `commands::serve::fuzzing` is the part they use. Not a stable API.
#[doc(hidden)]
pub mod commands;
pub mod http;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod units;
pub mod wsgi;
