use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::access_log::{self, AccessLogFormat, Limit, Record};
use super::connection::{self, Protocols, WriteDeadline};
use super::forwarded::TrustedProxies;
use super::h2_limits::{self, Ended, Watched};
use super::host;
use super::router::Router;
use super::static_files::StaticMount;
use super::tls::Tls;
use crate::log;
use crate::metrics::Metrics;
use crate::wsgi::body::{ClientProgress, ResponseBody};
use crate::wsgi::environ::{self, RequestHead, ServerInfo};
use crate::wsgi::exchange::{BODY_TOO_LARGE_BODY, Exchange, Outcome, Summary, error_response};
use crate::wsgi::request_body::RequestBody;
use crate::wsgi::validate;
use crate::wsgi::{Finished, Usage};
use arc_swap::ArcSwap;

/// Limits on what clients may send and how long they may take. Each has a CLI
/// option; the defaults are in main.rs next to the option.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body; bigger ones get 413 before the app runs (when the
    /// length is declared) or an error from wsgi.input (when chunked).
    pub max_body_size: u64,
    /// Time to receive a complete request head, and to wait for the next request on
    /// an idle keep-alive connection: slowloris clients cannot pin connections.
    pub header_timeout: Duration,
    /// Longest wait for request body data, or for the client to take response data.
    pub io_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Open client connections; at the limit the server stops accepting and new
    /// connections wait in the kernel's listen backlog, so a flood costs neither
    /// file descriptors nor memory here.
    pub max_connections: usize,
}

/// Request headers accepted; more gives 431. Browsers send about 20; 100 is
/// hyper's default and what most servers allow.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Largest request head (request line + headers). Must exceed the 64 KiB request
/// target limit below so that a long URI is answered 414, as wsgiref does, and
/// not 431.
pub const MAX_REQUEST_HEAD_BYTES: usize = 128 * 1024;
/// At most one "connection limit reached" line per this interval and listener: a
/// server held at the limit by a flood would otherwise log at the rate the flood's
/// connections come and go.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Read buffer per connection; a head that does not fit is refused with 431.
pub(super) const READ_BUFFER_BYTES: usize = 2 * MAX_REQUEST_HEAD_BYTES;

/// The routing table all listeners share, swapped whole when a reload deploys new
/// apps: a request routes on one consistent table, and requests in flight keep
/// the apps they started on.
pub type Routes = Arc<ArcSwap<Router>>;

pub struct Server {
    pub routes: Routes,
    /// `--static` mounts, answered by the host before any app is routed to.
    pub statics: Vec<StaticMount>,
    pub limits: Limits,
    pub access_log: bool,
    pub access_log_format: AccessLogFormat,
    /// Per-app counters for the admin listener's /metrics, when it is on.
    pub metrics: Option<Arc<Metrics>>,
    /// Peers whose X-Forwarded-* / Forwarded headers are believed.
    pub forwarded: TrustedProxies,
}

/// A socket the server accepts connections on.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// One listener and what the environ says about it (SERVER_NAME, SERVER_PORT).
pub struct Listening {
    pub listener: Listener,
    pub info: ServerInfo,
    /// TLS for a TCP listener (--tls-cert); Unix sockets are always plain.
    pub tls: Option<Arc<Tls>>,
}

struct Shared {
    server: Server,
    /// Open client connections, over all listeners (--max-connections).
    slots: Arc<Semaphore>,
    /// Taken when shutdown starts; connections accepted after that are dropped.
    graceful: Mutex<Option<GracefulShutdown>>,
    protocols: Protocols,
}

impl Server {
    /// Serves until `shutdown` resolves, then stops accepting and gives in-flight
    /// requests the grace period to finish.
    pub async fn run(self, listeners: Vec<Listening>, shutdown: impl Future<Output = ()>) -> Result<()> {
        let protocols = Protocols::new(&self.limits);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(self.limits.max_connections)),
            server: self,
            graceful: Mutex::new(Some(GracefulShutdown::new())),
            protocols,
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // The accept loops run here, on the thread that runs the server future, not
        // as tasks on the worker threads: those run the guests, and a busy guest
        // must not delay accepting (connections would pile up in the backlog).
        let accepting = futures::future::join_all(listeners.into_iter().map(|Listening { listener, info, tls }| {
            shared
                .clone()
                .accept_loop(listener, Arc::new(info), tls, stopped.clone())
        }));
        let stopping = async {
            shutdown.await;
            let _ = stop.send(true);
        };
        // Both end once shutdown starts and every listener is dropped.
        tokio::join!(accepting, stopping);
        let graceful = shared.graceful.lock().unwrap().take().expect("shutdown starts once");
        let grace = shared.server.limits.shutdown_grace;
        log::server(format!("shutting down: waiting up to {grace:?} for requests in flight"));
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => log::server("all connections closed"),
            Err(_) => log::server("grace period over: closing the remaining connections"),
        }
        Ok(())
    }
}

impl Shared {
    async fn accept_loop(
        self: Arc<Self>,
        listener: Listener,
        info: Arc<ServerInfo>,
        tls: Option<Arc<Tls>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_logged: Option<Instant> = None;
        loop {
            let slot = match self.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if last_logged.is_none_or(|at| at.elapsed() >= LIMIT_LOG_INTERVAL) {
                        last_logged = Some(Instant::now());
                        log::server(format!(
                            "{} connections open (--max-connections): new ones wait until one closes",
                            self.server.limits.max_connections
                        ));
                    }
                    tokio::select! {
                        slot = self.slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                        _ = stop.wait_for(|stop| *stop) => break,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            match accepted {
                Ok(stream) => {
                    if let Accepted::Tcp(tcp, _) = &stream {
                        let _ = tcp.set_nodelay(true);
                    }
                    self.serve_connection(stream, info.clone(), tls.clone(), slot, stop.clone());
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn(format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn serve_connection(
        self: &Arc<Self>,
        stream: Accepted,
        info: Arc<ServerInfo>,
        tls: Option<Arc<Tls>>,
        slot: OwnedSemaphorePermit,
        stop: watch::Receiver<bool>,
    ) {
        let Some(watcher) = self.graceful.lock().unwrap().as_ref().map(GracefulShutdown::watcher) else {
            return;
        };
        let shared = self.clone();
        let header_timeout = self.server.limits.header_timeout;
        tokio::spawn(async move {
            let socket = match &stream {
                Accepted::Tcp(stream, _) => stream.as_raw_fd(),
                Accepted::Unix(stream) => stream.as_raw_fd(),
            };
            match (stream, tls) {
                (Accepted::Tcp(stream, remote), Some(tls)) => {
                    // The handshake is part of the request head: a client gets the
                    // same time for it, and one that stalls is dropped.
                    let accepted = tokio::time::timeout(header_timeout, tls.acceptor().accept(stream)).await;
                    let Ok(Ok(stream)) = accepted else { return };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    shared
                        .drive(stream, socket, h2, Some(remote), true, info, watcher, stop)
                        .await;
                }
                (Accepted::Tcp(stream, remote), None) => {
                    if let Some((h2, stream)) = connection::sniff(stream, header_timeout).await {
                        shared
                            .drive(stream, socket, h2, Some(remote), false, info, watcher, stop)
                            .await;
                    }
                }
                (Accepted::Unix(stream), _) => {
                    if let Some((h2, stream)) = connection::sniff(stream, header_timeout).await {
                        shared.drive(stream, socket, h2, None, false, info, watcher, stop).await;
                    }
                }
            }
            drop(slot);
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive<IO>(
        self: Arc<Self>,
        io: IO,
        socket: RawFd,
        h2: bool,
        remote: Option<SocketAddr>,
        https: bool,
        info: Arc<ServerInfo>,
        watcher: hyper_util::server::graceful::Watcher,
        mut stop: watch::Receiver<bool>,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.clone();
        let progress = ClientProgress::default();
        let timeout = self.server.limits.io_timeout;
        let io = TokioIo::new(WriteDeadline::new(io, timeout, remote, socket, progress.clone()));
        // Client errors (resets, bad requests, timeouts) end only this connection.
        if h2 {
            let streams = Arc::new(h2_limits::Streams::default());
            let open = streams.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                let info = info.clone();
                let stream = open.open();
                let progress = progress.clone();
                async move {
                    let response = shared.handle(req, &info, remote, https, progress).await;
                    // The stream stays open until its body is sent or dropped.
                    Ok::<_, Infallible>(response.map(|body| Watched::new(body, stream)))
                }
            });
            // Held, not watched (the idle rule needs the connection itself): shutdown
            // still waits for this connection, and `stop` tells it to close.
            let _counted = watcher;
            let shutdown = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let limits = &self.server.limits;
            let (idle, stall_limit) = (limits.header_timeout, limits.io_timeout);
            let ended =
                h2_limits::serve(&self.protocols.http2, io, service, streams, idle, stall_limit, shutdown).await;
            if let Ended::Stalled = ended {
                log::server(format!(
                    "closing the HTTP/2 connection from {}: a response waited {stall_limit:?} for the client to open its flow-control window",
                    connection::peer(remote)
                ));
            }
        } else {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                let info = info.clone();
                let progress = progress.clone();
                async move { Ok::<_, Infallible>(shared.handle(req, &info, remote, https, progress).await) }
            });
            let _ = watcher.watch(self.protocols.http1.serve_connection(io, service)).await;
        }
    }
}

enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(listener) => listener.accept().await.map(|(s, remote)| Accepted::Tcp(s, remote)),
            Listener::Unix(listener) => listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

impl Shared {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        info: &ServerInfo,
        remote: Option<SocketAddr>,
        https: bool,
        progress: ClientProgress,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let server = &self.server;
        let (mut parts, incoming) = req.into_parts();
        // Only kept when it will be logged or counted: it costs an allocation per request.
        let line = (server.access_log || server.metrics.is_some()).then(|| RequestLine {
            method: parts.method.clone(),
            // An HTTP/2 request's URI holds :scheme and :authority; log what an
            // HTTP/1.1 request line would have.
            target: match (parts.version, parts.uri.path_and_query()) {
                (hyper::Version::HTTP_2, Some(path)) => path.to_string(),
                _ => parts.uri.to_string(),
            },
            version: parts.version,
            referer: parts.headers.get(hyper::header::REFERER).cloned(),
            user_agent: parts.headers.get(hyper::header::USER_AGENT).cloned(),
        });

        // Before the Host rules and the router, so that they see the host a trusted
        // proxy forwarded.
        let client = server.forwarded.apply(environ::Client::peer(remote, https), &mut parts);
        let (host, refusal) = match host::request_host(&parts) {
            Ok(host) => (host, refuse_early(&parts, &server.limits)),
            Err(e) => (None, Some((StatusCode::BAD_REQUEST, e.message()))),
        };
        if let Some((status, message)) = refusal {
            // Counted against the app the path leads to, though it never ran.
            let path = environ::request_path(&parts.uri);
            let app = server
                .routes
                .load()
                .route(host.as_deref(), &path)
                .map(|m| m.app.clone());
            let app = app.as_ref().map(|a| a.name());
            let mut response = self.answer_directly(remote, line.as_ref(), status, message, started, app);
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return response;
        }
        if let Some((files, rest)) = server
            .statics
            .iter()
            .find_map(|m| Some((m, m.strip(parts.uri.path())?)))
        {
            let response = files.serve(&parts, rest).await;
            if let Some(line) = &line {
                let body_bytes = response
                    .headers()
                    .get(hyper::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .filter(|_| parts.method != Method::HEAD)
                    .unwrap_or(0);
                let summary = Summary {
                    status: response.status(),
                    body_bytes,
                    aborted: false,
                    body_received: 0,
                    limit: None,
                };
                self.log_access(remote, line, summary, started, None, None);
            }
            return response;
        }
        let path = environ::request_path(&parts.uri);
        let router = server.routes.load_full();
        let Some(mount) = router.route(host.as_deref(), &path) else {
            let message = "No application is mounted at this host and path.";
            return self.answer_directly(remote, line.as_ref(), StatusCode::NOT_FOUND, message, started, None);
        };
        let app = mount.app.clone();
        // The app builds its URLs from HTTP_HOST: make it name the host the target did.
        if let Some(value) = host::absolute_form_host(&parts.uri) {
            parts.headers.insert(hyper::header::HOST, value);
        }
        let head = RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            path: &path,
            version: parts.version,
            headers: &parts.headers,
        };
        let environ = environ::build(&head, info, &mount.point, &client);
        let body = RequestBody::new(incoming, server.limits.max_body_size, server.limits.io_timeout);
        let (exchange, reply) = Exchange::new(body, parts.method == Method::HEAD, server.limits.io_timeout, progress);

        // The app runs in a task of its own, which hands the response back through
        // `reply` and goes on to stream the body, finish and log. Measured
        // alternatives (wrk, one core): running its first poll inline here served
        // the Python hello 5-11% more requests but demo_app ~10% fewer and the
        // 1 MiB stream 10-15% fewer (responses sent one by one woke the client
        // more often); yielding before each in-memory response also won hello
        // 6-8% but raised demo_app's p99 under load by 15%.
        let this = self.clone();
        tokio::spawn(async move {
            let Finished {
                exchange,
                outcome,
                held,
                usage,
            } = app.clone().handle(environ, exchange).await;
            match &outcome {
                Outcome::AppError(message) => {
                    // A --validate violation gets its own stream, so it can be filtered on.
                    let stream = if validate::violated_rule(message).is_some() {
                        "pep3333"
                    } else {
                        "error"
                    };
                    log::app(app.name(), stream, message)
                }
                Outcome::Trap(message) => log::app(app.name(), "trap", message),
                Outcome::CpuTimeout(message) => log::app(app.name(), "cpu-timeout", message),
                _ => {}
            }
            let summary = exchange.finish(&outcome).await;
            if let Some(line) = &line {
                let trapped = matches!(outcome, Outcome::Trap(_));
                this.log_access(remote, line, summary, started, Some((app.name(), trapped)), usage);
            }
            drop(held);
        });
        reply.await.unwrap_or_else(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The request was lost; the server log has the details.",
            )
        })
    }

    /// An error page from the host itself, without running an app.
    fn answer_directly(
        &self,
        remote: Option<SocketAddr>,
        line: Option<&RequestLine>,
        status: StatusCode,
        message: &str,
        started: Instant,
        app: Option<&str>,
    ) -> Response<ResponseBody> {
        let response = error_response(status, message);
        if let Some(line) = line {
            let body_bytes = hyper::body::Body::size_hint(response.body()).exact().unwrap_or(0);
            self.log_access(
                remote,
                line,
                Summary {
                    status,
                    body_bytes,
                    aborted: false,
                    body_received: 0,
                    limit: (status == StatusCode::PAYLOAD_TOO_LARGE).then_some(Limit::BodySize),
                },
                started,
                app.map(|name| (name, false)),
                None,
            );
        }
        response
    }

    /// The access line and the metrics of a finished request. `app` is the app
    /// that ran it and whether its guest trapped.
    fn log_access(
        &self,
        remote: Option<SocketAddr>,
        line: &RequestLine,
        summary: Summary,
        started: Instant,
        app: Option<(&str, bool)>,
        usage: Option<Usage>,
    ) {
        let limit = summary
            .limit
            .or_else(|| usage.filter(|u| u.hit_memory_limit).map(|_| Limit::Memory));
        let record = Record {
            client: remote.map(|r| r.ip()),
            method: &line.method,
            target: &line.target,
            version: line.version,
            status: summary.status.as_u16(),
            body_bytes: summary.body_bytes,
            referer: line.referer.as_ref().map(|v| v.as_bytes()),
            user_agent: line.user_agent.as_ref().map(|v| v.as_bytes()),
            duration: started.elapsed(),
            app: app.map(|(name, _)| name),
            usage,
            aborted: summary.aborted,
            limit,
        };
        if let Some(metrics) = &self.server.metrics {
            metrics.observe(&record, summary.body_received, app.is_some_and(|(_, trapped)| trapped));
        }
        if self.server.access_log {
            log::access(access_log::format(
                self.server.access_log_format,
                &record,
                std::time::SystemTime::now(),
            ));
        }
    }
}

struct RequestLine {
    method: Method,
    target: String,
    version: hyper::Version,
    referer: Option<hyper::header::HeaderValue>,
    user_agent: Option<hyper::header::HeaderValue>,
}

/// Requests answered without running the app at all: what it cannot be given
/// safely or what is over a limit. The connection is closed after these, since
/// the rest of what the client sent cannot be trusted to frame the next request.
fn refuse_early(parts: &hyper::http::request::Parts, limits: &Limits) -> Option<(StatusCode, &'static str)> {
    if let Some(refusal) = check_transfer_encoding(parts) {
        return Some(refusal);
    }
    // The asterisk-form target means "the server itself" and only OPTIONS may ask
    // about that (RFC 9112 section 3.2.4).
    if parts.uri.path() == "*" && parts.method != Method::OPTIONS {
        return Some((StatusCode::BAD_REQUEST, "Only OPTIONS may use the * target."));
    }
    // A singleton field sent twice: the app would see both joined by a comma,
    // while a proxy in front may have acted on either one.
    if parts
        .headers
        .get_all(hyper::header::CONTENT_TYPE)
        .iter()
        .nth(1)
        .is_some()
    {
        return Some((
            StatusCode::BAD_REQUEST,
            "A request may have only one Content-Type header.",
        ));
    }
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_size) {
        return Some((StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE_BODY));
    }
    None
}

/// Only a plain `Transfer-Encoding: chunked` is accepted. Anything else either asks
/// for a coding the app would receive undecoded (`gzip, chunked`: 501) or is
/// ambiguous about where the body ends, the stuff of request smuggling (repeated
/// `chunked`, chunked alongside Content-Length, chunked in HTTP/1.0: 400).
fn check_transfer_encoding(parts: &hyper::http::request::Parts) -> Option<(StatusCode, &'static str)> {
    use hyper::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let mut codings = Vec::new();
    for value in parts.headers.get_all(TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Some((StatusCode::BAD_REQUEST, "The Transfer-Encoding header is malformed."));
        };
        // Empty list elements (`,chunked`) do not count (RFC 9110 section 5.6.1).
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty()),
        );
    }
    if codings.is_empty() {
        return None;
    }
    if codings.iter().any(|c| c != "chunked") {
        return Some((
            StatusCode::NOT_IMPLEMENTED,
            "Only the chunked transfer coding is supported.",
        ));
    }
    if codings.len() > 1 {
        return Some((
            StatusCode::BAD_REQUEST,
            "Transfer-Encoding names chunked more than once.",
        ));
    }
    if parts.headers.contains_key(CONTENT_LENGTH) {
        return Some((
            StatusCode::BAD_REQUEST,
            "A request may not have both Transfer-Encoding and Content-Length.",
        ));
    }
    if parts.version == hyper::Version::HTTP_10 {
        return Some((StatusCode::BAD_REQUEST, "HTTP/1.0 has no chunked transfer coding."));
    }
    None
}
