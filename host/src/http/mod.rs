//! The HTTP/1.1 and HTTP/2 front end (plain or TLS): accept loop, per-connection
//! limits, routing by host and path, static files, the access log and graceful
//! shutdown. It speaks to apps only through the WSGI protocol layer
//! (`crate::wsgi`), never to the runtime directly.

pub mod access_log;
pub mod admin;
mod connection;
pub mod forwarded;
mod h2_limits;
pub mod host;
pub mod router;
mod service;
pub mod static_files;
pub mod tls;

pub use service::{Limits, Listener, Listening, Routes, Server};
