//! wsgi.input on the host side: pulls the request body from hyper on demand, so
//! nothing is read (and `Expect: 100-continue` is not answered) until the app reads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Most bytes one `read` import call returns, whatever the guest asks for: the
/// copy into guest memory is bounded per call, so a huge `read(n)` cannot make the
/// host buffer a huge body at once.
pub const MAX_READ_CHUNK: usize = 1024 * 1024;

/// Slowest request body taken, on average over the time the app waited for it:
/// past --io-timeout of waiting, each 500 bytes received buys one more second.
/// Without it a client sending a byte just inside every --io-timeout would hold an
/// app instance for as long as it likes. 500 bytes/s is Apache's default minimum
/// (mod_reqtimeout's MinRate): far below the slowest real uplink.
pub const MIN_BODY_RATE: u64 = 500;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("request body exceeds the {0}-byte limit")]
    TooLarge(u64),
    #[error("no request body data for {0:?}: client too slow")]
    TimedOut(Duration),
    #[error("request body slower than {MIN_BODY_RATE} bytes/s ({received} bytes in {waited:?}): client too slow")]
    TooSlow { received: u64, waited: Duration },
    #[error("request body broken off: {0}")]
    Broken(String),
    /// The client's framing was wrong (a bad chunk size, a missing CRLF, ...): the
    /// client's error, answered 400, and hyper stops reading the connection.
    #[error("malformed request body: {0}")]
    Malformed(String),
}

/// Sorts a body error from hyper: its chunked decoder reports bad framing as
/// InvalidInput/InvalidData I/O errors, and a connection closed early as
/// UnexpectedEof (hyper's error kinds for these are not public).
fn classify(error: &hyper::Error) -> ReadError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            )
        {
            return ReadError::Malformed(io.to_string());
        }
        source = e.source();
    }
    ReadError::Broken(error.to_string())
}

/// Where body bytes come from: a client connection, or (for in-process callers
/// such as the runtime tests) bytes already in memory.
enum Source {
    Incoming(Incoming),
    Done,
}

pub struct RequestBody {
    incoming: Source,
    pending: Bytes,
    received: u64,
    max_size: u64,
    timeout: Duration,
    /// Time spent waiting for the client's data (not the app's time between reads).
    waited: Duration,
}

impl RequestBody {
    pub fn new(incoming: Incoming, max_size: u64, timeout: Duration) -> Self {
        RequestBody {
            incoming: Source::Incoming(incoming),
            pending: Bytes::new(),
            received: 0,
            max_size,
            timeout,
            waited: Duration::ZERO,
        }
    }

    /// A body that is already complete, for calling an app without a socket.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let pending: Bytes = bytes.into();
        let received = pending.len() as u64;
        RequestBody {
            incoming: Source::Done,
            pending,
            received,
            max_size: u64::MAX,
            timeout: Duration::MAX,
            waited: Duration::ZERO,
        }
    }

    /// Body bytes received from the client so far (for the metrics).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Up to `max` bytes; empty once the body has ended.
    pub async fn read(&mut self, max: usize) -> Result<Bytes, ReadError> {
        let max = max.min(MAX_READ_CHUNK);
        if max == 0 {
            return Ok(Bytes::new());
        }
        while self.pending.is_empty() {
            let Source::Incoming(incoming) = &mut self.incoming else {
                return Ok(Bytes::new());
            };
            let allowed = self
                .timeout
                .saturating_add(Duration::from_secs(self.received / MIN_BODY_RATE));
            let wait = self.timeout.min(allowed.saturating_sub(self.waited));
            let started = Instant::now();
            let frame = tokio::time::timeout(wait, incoming.frame()).await;
            self.waited += started.elapsed();
            let frame = match frame {
                Err(_) if wait < self.timeout => {
                    return Err(ReadError::TooSlow {
                        received: self.received,
                        waited: self.waited,
                    });
                }
                Err(_) => return Err(ReadError::TimedOut(self.timeout)),
                Ok(None) => {
                    self.incoming = Source::Done;
                    return Ok(Bytes::new());
                }
                Ok(Some(Err(e))) => {
                    self.incoming = Source::Done;
                    return Err(classify(&e));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers carry no body bytes; keep reading.
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                if self.received > self.max_size {
                    self.incoming = Source::Done;
                    return Err(ReadError::TooLarge(self.max_size));
                }
                self.pending = data;
            }
        }
        let n = max.min(self.pending.len());
        Ok(self.pending.split_to(n))
    }
}
