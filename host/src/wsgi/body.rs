//! The response body hyper sends: nothing, one buffer, or a stream of chunks the
//! guest writes, which can end in an abort (the connection is cut, never ended
//! cleanly, so the client can tell the response is incomplete).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a streamed response was cut short; hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
#[error("response aborted: {0}")]
pub struct BodyAborted(pub &'static str);

pub type Chunk = Result<Bytes, BodyAborted>;

pub enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>, Option<BodyAborted>),
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
            ResponseBody::Stream(rx, deferred) => {
                if let Some(abort) = deferred.take() {
                    return Poll::Ready(Some(Err(abort)));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Err(abort))) => {
                        // hyper drops its unflushed write buffer when a body fails, so
                        // the bytes sent just before the abort would never reach the
                        // client. Pending once makes hyper flush them first.
                        *deferred = Some(abort);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    other => other.map(|chunk| chunk.map(|c| c.map(Frame::data))),
                }
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
