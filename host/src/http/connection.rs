//! One client connection: the TLS handshake, which HTTP version it speaks, and the
//! hyper connection that serves it (HTTP/1.1, or HTTP/2 over TLS by ALPN and on
//! plain sockets by the h2c prior-knowledge preface).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::log;
use crate::wsgi::body::ClientProgress;
use crate::wsgi::request_body::MIN_BODY_RATE;

use super::service::{Limits, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS, READ_BUFFER_BYTES};

/// Streams one HTTP/2 connection may have open at once. Each is a request that holds
/// an app instance or a place in the app's --queue, so more buys a client nothing
/// but a bigger share of the server; RFC 9113 section 6.5.2 advises no fewer than
/// 100, and 128 is nginx's default.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Largest decoded header list of one HTTP/2 request: the same bound as the
/// HTTP/1.1 request head, so a request refused on one is refused on the other.
pub const H2_MAX_HEADER_LIST_BYTES: u32 = MAX_REQUEST_HEAD_BYTES as u32;
/// Request body bytes one stream may send before the app reads them. With the
/// connection window below it bounds what a connection's uploads can make the host
/// buffer; 256 KiB keeps uploads fast on links up to ~20 ms x 100 Mbit/s.
pub const H2_STREAM_WINDOW_BYTES: u32 = 256 * 1024;
/// Request body bytes all streams of a connection may have in flight at once: the
/// same 1 MiB as hyper's default, so an HTTP/2 client buffers at most this much
/// here however many streams it opens (an HTTP/1.1 one buffers its read buffer).
pub const H2_CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;
/// Largest frame the client may send: 16 KiB, the protocol's default and minimum
/// (RFC 9113 section 4.2). Bigger frames save little and make each read buffer more.
pub const H2_MAX_FRAME_BYTES: u32 = 16 * 1024;
/// Streams a client may open and reset before the server has accepted them, the
/// "rapid reset" attack (CVE-2023-44487): the h2 crate's default since that fix.
/// Beyond it the connection is closed with ENHANCE_YOUR_CALM.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset because of client errors (malformed requests)
/// before it closes the connection: hyper's default, which bounds the work a
/// client can cause by sending only bad requests on one connection.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// HTTP/2 has no idle request head to time out; a PING every this long, unanswered
/// within H2_PING_TIMEOUT, finds a peer that vanished without closing.
const H2_PING_INTERVAL: Duration = Duration::from_secs(60);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The client preface every HTTP/2 connection starts with (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection builders, configured once. hyper's own rather than hyper-util's
/// auto builder: the protocol is decided here (by ALPN, or by `sniff` within the
/// header timeout), and the auto builder's HTTP/1 side cannot bound the request head
/// (max_header_size).
pub struct Protocols {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub fn new(limits: &Limits) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            // `printf 'GET / ...' | nc` and other one-shot clients shut down their
            // sending side once the request is out; without this hyper takes that EOF
            // for a client gone away and drops the response.
            .half_close(true)
            .header_read_timeout(limits.header_timeout)
            .max_headers(MAX_REQUEST_HEADERS)
            .max_header_size(MAX_REQUEST_HEAD_BYTES)
            .max_buf_size(READ_BUFFER_BYTES);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
            .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
            .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
            .max_frame_size(H2_MAX_FRAME_BYTES)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Protocols { http1: h1, http2: h2 }
    }
}

/// Reads what a plain-socket client sends first, within the header timeout, to tell
/// an HTTP/2 prior-knowledge client (which starts with the preface) from an HTTP/1.1
/// one. hyper's own detection would wait for those bytes without a time limit, so a
/// client that connects and sends nothing would hold its connection slot forever.
/// Returns None when the client sent nothing in time or closed.
pub async fn sniff<IO: AsyncRead + Unpin>(mut io: IO, timeout: Duration) -> Option<(bool, Prefixed<IO>)> {
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let read = async {
        let mut chunk = [0u8; 24];
        while buf.len() < H2_PREFACE.len() {
            let want = H2_PREFACE.len() - buf.len();
            let n = io.read(&mut chunk[..want]).await.ok()?;
            if n == 0 {
                // EOF: a half-closed HTTP/1.1 request shorter than the preface still
                // gets its answer (or its 400) from hyper.
                return (!buf.is_empty()).then_some(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if !H2_PREFACE.starts_with(&buf) {
                break;
            }
        }
        Some(())
    };
    tokio::time::timeout(timeout, read).await.ok()??;
    let is_h2 = buf.as_slice() == H2_PREFACE;
    Some((
        is_h2,
        Prefixed {
            prefix: Bytes::from(buf),
            io,
        },
    ))
}

/// A socket whose first bytes were already read: they are read again first.
pub struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The client a connection log line names: its address, or what it is when it
/// has none (a peer on a Unix socket).
pub fn peer(remote: Option<SocketAddr>) -> String {
    remote.map_or_else(|| "a Unix socket client".to_owned(), |addr| addr.to_string())
}

/// A socket whose writes fail once the client stops taking what they send: a
/// client that takes nothing for `timeout` (the --io-timeout), or takes it slower
/// than MIN_SEND_RATE, is disconnected, whoever produces the bytes (a guest's
/// stream, or a body hyper sends by itself: a static file, a whole small body, an
/// error page). Without it such a client would hold its connection slot for as
/// long as it likes.
///
/// Taking bytes is not this socket becoming writable: the kernel wakes a blocked
/// writer only once half its send buffer (which grows to several MiB) has drained,
/// so a client reading slowly but steadily would look stalled for seconds at a
/// time. While a write is blocked, the kernel's send queue is measured
/// (`stall_check_interval` apart); what it shrank by is what the client took.
pub struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// For the log line when the deadline passes (None: a Unix socket peer).
    remote: Option<SocketAddr>,
    /// The connection's socket, for the size of its send queue.
    socket: RawFd,
    /// Moved on each sign that the client takes bytes; streamed bodies watch it.
    progress: ClientProgress,
    /// Set while a write is blocked.
    stalled: Option<Stall>,
}

/// A blocked write, looked at `stall_check_interval` apart.
struct Stall {
    next_look: Pin<Box<Sleep>>,
    /// When the write blocked.
    began: Instant,
    /// When the client was last seen taking bytes (or the write blocked).
    last_taken: Instant,
    /// Bytes the client took since the write blocked.
    taken: u64,
    /// The send queue's size at the last look.
    queued: Option<usize>,
}

/// Slowest a client may take a response whose writes are blocked on it, on average
/// over the time they are blocked: past --io-timeout, each 500 bytes taken buys one
/// more second. The rule request bodies follow (MIN_BODY_RATE), for the same
/// reason: a client that takes a few bytes just inside every --io-timeout (a tiny
/// receive buffer does it) would otherwise hold its connection, and an app
/// instance streaming to it, for as long as it likes.
const MIN_SEND_RATE: u64 = MIN_BODY_RATE;

impl Stall {
    /// Why the connection should be closed now, if it should.
    fn verdict(&self, timeout: Duration) -> Option<String> {
        if self.last_taken.elapsed() >= timeout {
            return Some(format!("the client did not read for {timeout:?}"));
        }
        let waited = self.began.elapsed();
        let allowed = timeout.saturating_add(Duration::from_secs(self.taken / MIN_SEND_RATE));
        (waited >= allowed).then(|| {
            format!(
                "the client took {} bytes in {waited:.1?}, slower than {MIN_SEND_RATE} bytes/s",
                self.taken
            )
        })
    }
}

impl<IO> WriteDeadline<IO> {
    /// `socket` must be the descriptor of the socket `io` writes to; `io` owns it,
    /// so it stays open as long as this wrapper.
    pub fn new(
        io: IO,
        timeout: Duration,
        remote: Option<SocketAddr>,
        socket: RawFd,
        progress: ClientProgress,
    ) -> WriteDeadline<IO> {
        WriteDeadline {
            io,
            timeout,
            remote,
            socket,
            progress,
            stalled: None,
        }
    }

    /// Passes `result` on, unless the write has now been stalled too long.
    fn check<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            self.progress.advance();
            return result;
        }
        let (timeout, socket) = (self.timeout, self.socket);
        let interval = stall_check_interval(timeout);
        let stall = self.stalled.get_or_insert_with(|| Stall {
            next_look: Box::pin(tokio::time::sleep(interval)),
            began: Instant::now(),
            last_taken: Instant::now(),
            taken: 0,
            queued: unsent_bytes(socket),
        });
        // Looked at several times per timeout, so the progress reaches a streamed
        // body's writer (which waits the same timeout) before it gives up.
        while stall.next_look.as_mut().poll(cx).is_ready() {
            let queued = unsent_bytes(socket);
            if let (Some(before), Some(now)) = (stall.queued, queued)
                && now < before
            {
                self.progress.advance();
                stall.last_taken = Instant::now();
                stall.taken += (before - now) as u64;
            }
            stall.queued = queued;
            if let Some(why) = stall.verdict(timeout) {
                log::server(format_args!("closing the connection from {}: {why}", peer(self.remote)));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
            }
            stall.next_look.as_mut().reset(Instant::now() + interval);
        }
        Poll::Pending
    }
}

/// The shortest pause between two looks for a stall, whatever --io-timeout says: a
/// timer per connection every 10 ms costs nothing worth counting, where a
/// sub-millisecond --io-timeout would otherwise have the check spin.
const MIN_STALL_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// How often a stall bounded by `limit` is looked at: four times per limit, so the
/// close comes at most a quarter late and progress is seen well within the limit.
pub fn stall_check_interval(limit: Duration) -> Duration {
    (limit / 4).max(MIN_STALL_CHECK_INTERVAL)
}

/// Bytes in the socket's send queue: written by us, not yet taken by the client
/// (for TCP, not yet acknowledged). None if the kernel will not say.
fn unsent_bytes(socket: RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) on a socket writes one int to `queued`; the
    // descriptor is open while the WriteDeadline that owns its stream lives.
    let done = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    (done == 0).then_some(queued as usize)
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, data);
        self.check(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A write blocked `waited` ago, whose client took `taken` bytes, the last of
    /// them `quiet` ago.
    fn stall(waited: Duration, taken: u64, quiet: Duration) -> Stall {
        let now = Instant::now();
        Stall {
            next_look: Box::pin(tokio::time::sleep(Duration::ZERO)),
            began: now.checked_sub(waited).unwrap(),
            last_taken: now.checked_sub(quiet).unwrap(),
            taken,
            queued: None,
        }
    }

    #[tokio::test]
    async fn a_blocked_write_is_given_up_when_the_client_stops_or_crawls() {
        let secs = Duration::from_secs;
        // Taking nothing: the timeout.
        assert!(stall(secs(9), 0, secs(9)).verdict(TIMEOUT).is_none());
        let stopped = stall(secs(10), 0, secs(10)).verdict(TIMEOUT).unwrap();
        assert_eq!(stopped, "the client did not read for 10s");
        // Taking 500 bytes/s or more: as long as it keeps on.
        assert!(stall(secs(100), 500 * 91, secs(1)).verdict(TIMEOUT).is_none());
        assert!(stall(secs(100), 10 << 20, secs(1)).verdict(TIMEOUT).is_none());
        // Taking less: each 500 bytes bought a second past the timeout.
        let crawled = stall(secs(100), 500 * 89, secs(1)).verdict(TIMEOUT).unwrap();
        assert!(
            crawled.contains("took 44500 bytes in 100.0s, slower than 500 bytes/s"),
            "{crawled}"
        );
        // A burst buys no quiet time beyond the timeout.
        assert!(stall(secs(20), 1 << 20, secs(10)).verdict(TIMEOUT).is_some());
    }
}
