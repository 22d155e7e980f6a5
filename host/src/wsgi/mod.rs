//! The WSGI protocol between an HTTP request and a guest call (PEP 3333 and the
//! ABI in guest-sdk/wit/wsgi.wit): the environ, the checks on what the app sends
//! to start_response, the exchange that carries the body both ways, and the one
//! mapping from how a call ended to the HTTP status the client sees.
//!
//! The layers point one way: the HTTP front end (`crate::http`) and the runtime
//! (`crate::runtime`) both use this module; it uses neither, and neither uses the
//! other. The serve command joins them: the runtime's apps are handed to the
//! router as [`Application`]s.

pub mod body;
pub mod environ;
pub mod exchange;
pub mod recording;
pub mod request_body;
pub mod response;
pub mod validate;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use environ::Environ;
use exchange::{Exchange, Outcome};

/// Something that answers WSGI calls: a loaded app, as the HTTP layer sees it.
pub trait Application: Send + Sync {
    /// The app's name in the log.
    fn name(&self) -> &str;

    /// Runs one call. The caller finishes the response with the returned
    /// exchange, then drops the result.
    fn handle(self: Arc<Self>, environ: Environ, exchange: Exchange) -> Pin<Box<dyn Future<Output = Finished> + Send>>;
}

/// A call that has returned.
pub struct Finished {
    pub exchange: Exchange,
    pub outcome: Outcome,
    /// What the call held that must outlive the response (the runtime's instance
    /// slot): dropped once the response is finished, so releasing it (tearing down
    /// a retired instance takes a while) never delays the response.
    pub held: Box<dyn Any + Send>,
    /// What the guest used; None when no instance ran the call (queue full).
    pub usage: Option<Usage>,
}

/// What the guest used for one request, when an app ran it: for the access log
/// and the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Guest CPU time, counted in epoch ticks (10 ms each): a request that
    /// returns within its first tick shows 0.
    pub cpu: Duration,
    /// The largest the instance's linear memory has grown (it never shrinks).
    pub peak_memory: usize,
    /// The guest asked to grow past --max-memory during the request.
    pub hit_memory_limit: bool,
}

/// A limit that stopped a request (or refused it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// --cpu-timeout: the guest used up its CPU time.
    Cpu,
    /// --max-memory: the guest asked for more linear memory than it may have.
    Memory,
    /// --max-body-size: the request body was larger than accepted.
    BodySize,
    /// --queue: no instance free and the queue full.
    Queue,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Cpu => "cpu",
            Limit::Memory => "memory",
            Limit::BodySize => "body-size",
            Limit::Queue => "queue",
        }
    }
}
