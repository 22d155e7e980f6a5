//! Shared by the runtime and end-to-end tests: building guest components, running
//! the real `wsgi-wasm` binary on port 0, and the HTTP clients that talk to it.
#![allow(dead_code)] // each test binary uses a different part

pub mod apps;
pub mod client;
pub mod components;
pub mod guest_memory;
pub mod https;
pub mod metrics;
pub mod pki;
pub mod server;
pub mod services;
pub mod swap;
