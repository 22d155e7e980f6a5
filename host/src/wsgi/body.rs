//! The response body hyper sends: nothing, one buffer, or a stream of chunks the
//! guest writes, which can end in an abort (the connection is cut, never ended
//! cleanly, so the client can tell the response is incomplete).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a streamed response was cut short; hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
#[error("response aborted: {0}")]
pub struct BodyAborted(pub &'static str);

pub type Chunk = Result<Bytes, BodyAborted>;

/// Why a stream whose sender went away without `complete` is cut.
const NOT_COMPLETED: BodyAborted = BodyAborted("the response stream ended before the app finished it");

/// How far the client has got taking its connection's response bytes. The
/// connection moves it whenever the socket takes bytes (hyper's write goes
/// through, or the kernel's send queue shrank while a write waited); a streamed
/// body's writer keeps waiting for room while it moves. Shared by the streams of an
/// HTTP/2 connection, whose own window stalls `http::h2_limits` bounds.
#[derive(Clone, Default)]
pub struct ClientProgress(Arc<AtomicU64>);

impl ClientProgress {
    /// The client took bytes.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn mark(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why `StreamSender::send` gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum SendFailed {
    /// The body was dropped: the client went away or the connection was closed.
    Closed,
    /// No room for the chunk, and the client took nothing, for the stall limit.
    Stalled,
}

/// The host's end of a streamed body. The body ends cleanly only after
/// `complete`: dropped without it (a write that timed out, an abort that could not
/// be queued, a task that was cancelled) the body ends as an abort, so a response
/// cut short never reaches the client looking whole.
pub struct StreamSender {
    tx: mpsc::Sender<Chunk>,
    completed: Arc<AtomicBool>,
}

impl StreamSender {
    /// Queues `chunk`, waiting for room as long as the client keeps taking bytes:
    /// it gives up once `stall_limit` passes with no room and no `progress`. The
    /// room frees only when hyper takes a whole chunk (up to 256 KiB), and hyper is
    /// woken only when the kernel's send buffer is half empty, so a client reading
    /// slowly but steadily could otherwise be taken for one that stopped.
    pub async fn send(&self, chunk: Chunk, stall_limit: Duration, progress: &ClientProgress) -> Result<(), SendFailed> {
        loop {
            let seen = progress.mark();
            // `reserve` is cancel-safe, so the chunk is not lost when the wait times out.
            match tokio::time::timeout(stall_limit, self.tx.reserve()).await {
                Ok(Ok(room)) => {
                    room.send(chunk);
                    return Ok(());
                }
                Ok(Err(_)) => return Err(SendFailed::Closed),
                Err(_) if progress.mark() != seen => continue,
                Err(_) => return Err(SendFailed::Stalled),
            }
        }
    }

    /// The body is whole: once the queued chunks are out, it ends cleanly.
    pub fn complete(self) {
        // Release, before the sender drops: the receiver sees the channel closed
        // only after this store.
        self.completed.store(true, Ordering::Release);
    }
}

/// The receiving end of a streamed body, polled by hyper.
pub struct StreamReceiver {
    rx: mpsc::Receiver<Chunk>,
    completed: Arc<AtomicBool>,
    /// An abort seen but not yet reported (see `poll_frame`).
    deferred: Option<BodyAborted>,
}

/// A streamed body with room for `depth` chunks between the guest and the socket.
pub fn stream(depth: usize) -> (StreamSender, ResponseBody) {
    let (tx, rx) = mpsc::channel(depth);
    let completed = Arc::new(AtomicBool::new(false));
    let receiver = StreamReceiver {
        rx,
        completed: completed.clone(),
        deferred: None,
    };
    (StreamSender { tx, completed }, ResponseBody::Stream(receiver))
}

pub enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Stream(StreamReceiver),
    /// A body the host produces itself (a static file read from disk).
    Boxed(UnsyncBoxBody<Bytes, BodyAborted>),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            ResponseBody::Empty
        } else {
            ResponseBody::Full(Some(bytes))
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(stream) => {
                if let Some(abort) = stream.deferred.take() {
                    return Poll::Ready(Some(Err(abort)));
                }
                let abort = match stream.rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Poll::Ready(None) if stream.completed.load(Ordering::Acquire) => return Poll::Ready(None),
                    Poll::Ready(None) => NOT_COMPLETED,
                    Poll::Ready(Some(Err(abort))) => abort,
                };
                // hyper drops its unflushed write buffer when a body fails, so the
                // bytes sent just before the abort would never reach the client.
                // Pending once makes hyper flush them first.
                stream.deferred = Some(abort);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            ResponseBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Stream(..) => false,
            ResponseBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream(..) => SizeHint::default(),
            ResponseBody::Boxed(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A stall limit no passing test reaches.
    const WAIT: Duration = Duration::from_secs(10);

    /// Every frame of `body` until it ends or fails.
    async fn drain(mut body: ResponseBody) -> (Vec<Bytes>, Option<BodyAborted>) {
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => data.push(frame.into_data().unwrap()),
                Err(abort) => return (data, Some(abort)),
            }
        }
        (data, None)
    }

    #[tokio::test]
    async fn a_completed_stream_ends_cleanly_after_its_chunks() {
        let (sender, body) = stream(4);
        sender
            .send(Ok(Bytes::from_static(b"one")), WAIT, &ClientProgress::default())
            .await
            .unwrap();
        sender
            .send(Ok(Bytes::from_static(b"two")), WAIT, &ClientProgress::default())
            .await
            .unwrap();
        sender.complete();
        let (data, abort) = drain(body).await;
        assert_eq!(data, [&b"one"[..], &b"two"[..]]);
        assert!(abort.is_none());
    }

    #[tokio::test]
    async fn a_sender_dropped_without_completing_cuts_the_body_after_its_chunks() {
        let (sender, body) = stream(4);
        sender
            .send(Ok(Bytes::from_static(b"one")), WAIT, &ClientProgress::default())
            .await
            .unwrap();
        drop(sender);
        let (data, abort) = drain(body).await;
        assert_eq!(data, [&b"one"[..]]);
        assert_eq!(abort.unwrap().0, NOT_COMPLETED.0);
    }

    #[tokio::test]
    async fn an_abort_is_reported_after_the_chunks_before_it() {
        let (sender, body) = stream(4);
        sender
            .send(Ok(Bytes::from_static(b"one")), WAIT, &ClientProgress::default())
            .await
            .unwrap();
        sender
            .send(Err(BodyAborted("app failed")), WAIT, &ClientProgress::default())
            .await
            .unwrap();
        sender.complete();
        let (data, abort) = drain(body).await;
        assert_eq!(data, [&b"one"[..]]);
        assert_eq!(abort.unwrap().0, "app failed");
    }

    #[tokio::test]
    async fn a_full_stream_waits_while_the_client_makes_progress_and_not_after() {
        let stall_limit = Duration::from_millis(100);
        let (sender, body) = stream(1);
        let progress = ClientProgress::default();
        sender
            .send(Ok(Bytes::from_static(b"one")), stall_limit, &progress)
            .await
            .unwrap();
        // The stream is full and nobody takes a chunk, but the client takes bytes
        // every 40 ms for 600 ms: the second chunk waits for room all that time.
        let client = {
            let progress = progress.clone();
            tokio::spawn(async move {
                for _ in 0..15 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    progress.advance();
                }
            })
        };
        let started = std::time::Instant::now();
        let stalled = sender
            .send(Ok(Bytes::from_static(b"two")), stall_limit, &progress)
            .await;
        client.await.unwrap();
        assert_eq!(stalled, Err(SendFailed::Stalled));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(600),
            "gave up after {waited:?} while the client took bytes"
        );
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        drop(body);
        assert_eq!(
            sender
                .send(Ok(Bytes::from_static(b"three")), stall_limit, &progress)
                .await,
            Err(SendFailed::Closed)
        );
    }
}
