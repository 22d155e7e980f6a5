//! wsgi-wasm: a WSGI (PEP 3333) server whose applications run in WebAssembly
//! sandboxes. The binary's commands live in `commands/`; this library holds the
//! parts they share so the runtime and end-to-end tests can use them too.

pub mod http;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod units;
pub mod wsgi;
