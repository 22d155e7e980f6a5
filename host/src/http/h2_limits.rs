//! Two rules for HTTP/2 connections that hyper does not have.
//!
//! Idle connections. An HTTP/1.1 connection waiting for its next request is closed
//! after the header timeout (hyper's header_read_timeout); an HTTP/2 connection
//! with no open stream is the same thing, but hyper has no such rule for it, and a
//! client that answers the server's PINGs would otherwise keep its connection (and
//! its --max-connections slot) for as long as it likes. So each connection counts
//! its open streams, and once none has been open for the same header timeout it is
//! shut down gracefully: GOAWAY, then close.
//!
//! Stalled streams. A client that reads the socket but never opens its
//! flow-control window (no WINDOW_UPDATE) stops a response without stopping the
//! socket, so the connection's write deadline never fires and the stream, with its
//! queued data, stays open for good. So each stream notes when it handed hyper data
//! that hyper has not come back for; one that waits longer than --io-timeout has
//! the whole connection closed (a client that withholds the window is broken or
//! hostile; the cut streams end as resets, never as whole responses).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::http2;
use hyper::service::HttpService;
use tokio::sync::Notify;

/// The shortest pause between two looks for stalled streams, whatever --io-timeout
/// says: a timer per connection every 10 ms costs nothing worth counting, where a
/// sub-millisecond --io-timeout would otherwise have the check spin.
const MIN_STALL_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The streams of one connection that have a request in the server or a response
/// body still being sent.
#[derive(Default)]
pub struct Streams {
    open: AtomicUsize,
    changed: Notify,
    /// Numbers the streams, for `waiting`.
    next_id: AtomicU64,
    /// Streams whose last frame hyper has not come back for: since when.
    waiting: Mutex<HashMap<u64, Instant>>,
}

/// One open stream: held from the request's arrival until its response body is
/// dropped (sent, or reset by the client).
pub struct OpenStream {
    streams: Arc<Streams>,
    id: u64,
}

impl Streams {
    pub fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        OpenStream {
            streams: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Resolves once a stream has waited `limit` for hyper to take more of its
    /// body (checked four times per limit: the close comes at most a quarter late).
    async fn stalled_for(&self, limit: Duration) {
        let interval = (limit / 4).max(MIN_STALL_CHECK_INTERVAL);
        loop {
            tokio::time::sleep(interval).await;
            let waiting = self.waiting.lock().unwrap();
            if waiting.values().any(|since| since.elapsed() >= limit) {
                return;
            }
        }
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
        self.streams.waiting.lock().unwrap().remove(&self.id);
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        self.streams.changed.notify_waiters();
    }
}

/// A response body that keeps its stream open and notes, for `stalled_for`, when
/// it handed hyper a frame: hyper polls again once the window has room, so a long
/// wait for that next poll is a stalled stream. A body with nothing ready (a guest
/// still working) is not waiting on the client.
pub struct Watched<B> {
    body: B,
    stream: OpenStream,
    /// Whether a frame went out. From then on the body does not say it has ended
    /// before hyper polls it again: otherwise hyper would send the last frame with
    /// END_STREAM and drop the body while the frame still waits for the window,
    /// and the stall would go unseen.
    sent: bool,
}

impl<B> Watched<B> {
    pub fn new(body: B, stream: OpenStream) -> Watched<B> {
        Watched {
            body,
            stream,
            sent: false,
        }
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let mut waiting = this.stream.streams.waiting.lock().unwrap();
        waiting.remove(&this.stream.id);
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = frame {
            waiting.insert(this.stream.id, Instant::now());
            this.sent = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        !self.sent && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How a connection ended.
pub enum Ended {
    /// The client or the server closed it (after GOAWAY, or an error: a
    /// client's error ends only its own connection, so neither is reported).
    Closed,
    /// A stream waited --io-timeout for the client to open its window.
    Stalled,
}

/// Serves one HTTP/2 connection until it ends, shutting it down gracefully when
/// `shutdown` resolves or when `streams` has had none open for `idle`. Streams
/// still open at that point finish (GOAWAY names the last one accepted). A stream
/// stalled for `stall_limit` ends the connection at once.
pub async fn serve<IO, S, B, E>(
    builder: &http2::Builder<E>,
    io: IO,
    service: S,
    streams: Arc<Streams>,
    idle: Duration,
    stall_limit: Duration,
    shutdown: impl Future<Output = ()>,
) -> Ended
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
    let stalled = streams.stalled_for(stall_limit);
    tokio::pin!(stalled);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return Ended::Closed,
            _ = &mut stalled => return Ended::Stalled,
            _ = &mut shutdown, if !closing => {}
            _ = &mut idle, if !closing => {}
        }
        closing = true;
        connection.as_mut().graceful_shutdown();
    }
}
