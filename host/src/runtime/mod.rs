//! Everything wasmtime: the engine, compiled-component cache, the ABI bindings,
//! guest state and the instances that serve requests.

pub mod app;
pub mod bindings;
pub mod cache;
pub mod crypto;
pub mod engine;
pub mod grants;
pub mod imports;
pub mod network;
pub mod outbound;
pub mod state;

pub use app::{App, AppConfig, Finished, Isolation};
pub use grants::Grants;
