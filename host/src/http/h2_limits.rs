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
//! queued data, stays open for good. So each response body hands hyper its data in
//! frame-sized pieces and notes when it handed one over: hyper comes back for the
//! next once that piece had window to be sent, so a piece left waiting longer than
//! --io-timeout means the client stopped taking data, and the whole connection is
//! closed (a client that withholds the window is broken or hostile; its streams end
//! cut, never looking whole). The last piece of a body can still wait in hyper's
//! buffers after the body ended; such a connection soon has no stream open here,
//! goes idle, and is closed if it has not finished --io-timeout after being asked.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::http2;
use hyper::service::HttpService;
use tokio::sync::Notify;

use super::connection;

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
        let interval = connection::stall_check_interval(limit);
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
/// it handed hyper a piece of data: hyper polls again once that piece had window
/// to be sent, so a long wait for the next poll is a stalled stream. A body with
/// nothing ready (a guest still working) is not waiting on the client.
pub struct Watched<B> {
    body: B,
    stream: OpenStream,
    /// What is left of a data frame larger than WATCHED_SLICE_BYTES.
    rest: Bytes,
}

/// Data is handed to hyper in pieces of at most this much, HTTP/2's default frame
/// size (RFC 9113 section 4.2). hyper asks for the next piece once the last has
/// window, so a slow client that keeps taking data restarts the stall clock every
/// 16 KiB: it is cut below 16 KiB per --io-timeout, not below a whole 256 KiB block
/// per --io-timeout (4.4 KB/s with the default 60 s).
const WATCHED_SLICE_BYTES: usize = 16 * 1024;

impl<B> Watched<B> {
    pub fn new(body: B, stream: OpenStream) -> Watched<B> {
        Watched {
            body,
            stream,
            rest: Bytes::new(),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let mut waiting = this.stream.streams.waiting.lock().unwrap();
        waiting.remove(&this.stream.id);
        if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    // Trailers need no window: nothing to wait for.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(WATCHED_SLICE_BYTES));
        waiting.insert(this.stream.id, Instant::now());
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let (inner, rest) = (self.body.size_hint(), self.rest.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
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
    // Set once the connection went idle and was asked to close: a response whose
    // last bytes still wait in hyper's buffers for window (its body, and so its
    // stream here, already ended) keeps it open, so it gets `stall_limit` more.
    let lingering = tokio::time::sleep(Duration::MAX);
    tokio::pin!(lingering);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return Ended::Closed,
            _ = &mut stalled => return Ended::Stalled,
            _ = &mut lingering, if closing => return Ended::Stalled,
            _ = &mut shutdown, if !closing => {}
            _ = &mut idle, if !closing => {
                lingering.as_mut().reset(tokio::time::Instant::now() + stall_limit);
            }
        }
        closing = true;
        connection.as_mut().graceful_shutdown();
    }
}
