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
pub mod request_body;
pub mod response;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
}
