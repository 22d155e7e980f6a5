//! The admin listener (`--admin-listen`): probes and metrics for an orchestrator
//! and Prometheus, on its own socket so they are never reachable through the
//! public listener (and the apps' own /healthz or /metrics stay theirs).
//!
//! - `/healthz`: 200 while the process runs (liveness).
//! - `/readyz`: 200 once every app is loaded and the server accepts requests; 503
//!   from the moment shutdown starts, so a load balancer stops sending new
//!   requests while the ones in flight drain.
//! - `/metrics`: Prometheus text format.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::log;
use crate::metrics::Metrics;
use crate::wsgi::body::ResponseBody;
use crate::wsgi::exchange::error_response;

/// A probe or scrape is a few hundred bytes; a client that has not sent its
/// request head by then is not a prober.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin requests have tiny heads; nothing legitimate comes near this.
const ADMIN_MAX_HEAD_BYTES: usize = 16 * 1024;

/// What the admin endpoints report, shared with the serving side.
pub struct AdminState {
    ready: AtomicBool,
    pub metrics: Arc<Metrics>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<AdminState> {
        Arc::new(AdminState {
            ready: AtomicBool::new(false),
            metrics,
        })
    }

    /// Ready when serving starts; not ready from the start of shutdown on.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT)
        .max_buf_size(ADMIN_MAX_HEAD_BYTES);
    let builder = Arc::new(builder);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn(format!("admin listener: accept failed: {e}"));
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req)) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer<B>(state: &AdminState, req: &Request<B>) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "The admin endpoints answer GET only.");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        "/metrics" => {
            let mut response = text(StatusCode::OK, state.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            "The admin listener has /healthz, /readyz and /metrics.",
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
