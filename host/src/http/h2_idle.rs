//! Closing idle HTTP/2 connections. An HTTP/1.1 connection waiting for its next
//! request is closed after the header timeout (hyper's header_read_timeout); an
//! HTTP/2 connection with no open stream is the same thing, but hyper has no such
//! rule for it, and a client that answers the server's PINGs would otherwise keep
//! its connection (and its --max-connections slot) for as long as it likes. So
//! each connection counts its open streams, and once none has been open for the
//! same header timeout it is shut down gracefully: GOAWAY, then close.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::http2;
use hyper::service::HttpService;
use tokio::sync::Notify;

/// The streams of one connection that have a request in the server or a response
/// body still being sent.
#[derive(Default)]
pub struct Streams {
    open: AtomicUsize,
    changed: Notify,
}

/// One open stream: held from the request's arrival until its response body is
/// dropped (sent, or reset by the client).
pub struct OpenStream(Arc<Streams>);

impl Streams {
    pub fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        OpenStream(self.clone())
    }

    /// Resolves once no stream has been open for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the count is read, so a change in between wakes us.
            changed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => return,
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Serves one HTTP/2 connection until it ends, shutting it down gracefully when
/// `shutdown` resolves or when `streams` has had none open for `idle`. Streams
/// still open at that point finish (GOAWAY names the last one accepted).
pub async fn serve<IO, S, B, E>(
    builder: &http2::Builder<E>,
    io: IO,
    service: S,
    streams: Arc<Streams>,
    idle: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B> + Clone,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::pin!(shutdown);
    let idle = streams.idle_for(idle);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = &mut shutdown, if !closing => {}
            _ = &mut idle, if !closing => {}
        }
        closing = true;
        connection.as_mut().graceful_shutdown();
    }
}
