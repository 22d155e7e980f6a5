//! The HTTP/1.1 front end: accept loop, per-connection limits, the request ->
//! guest-call bridge, the access log and graceful shutdown.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod exchange;
pub mod host;
pub mod request_body;
pub mod router;
mod service;
pub mod static_files;

pub use service::{Limits, Listener, Listening, Server};
