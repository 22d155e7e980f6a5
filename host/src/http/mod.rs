//! The HTTP/1.1 and HTTP/2 front end (plain or TLS): accept loop, per-connection limits, the request ->
//! guest-call bridge, the access log and graceful shutdown.

pub mod body;
mod connection;
pub mod exchange;
pub mod forwarded;
pub mod host;
pub mod request_body;
pub mod router;
mod service;
pub mod static_files;
pub mod tls;

pub use service::{Limits, Listener, Listening, Server};
