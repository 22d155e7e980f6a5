//! One request in flight between hyper and a guest: the host side of the ABI's
//! start-response / write / read imports. The guest task owns it; hyper holds the
//! other ends (a oneshot for the response head, a channel for body chunks).

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body;
use hyper::header::{HeaderValue, SERVER};
use hyper::{Response, StatusCode};
use tokio::sync::oneshot;
use wsgi_wasm_rules::packed_response;

use super::Limit;
use super::environ::SERVER_SOFTWARE;
use super::recording::{RecordedResponse, Transcript};
use super::request_body::{ReadError, RequestBody};
use super::response::{MAX_RESPONSE_HEAD_BYTES, ResponseHead, latin1_body};
use crate::wsgi::body::{self, BodyAborted, ClientProgress, ResponseBody, SendFailed, StreamSender};

/// Longest packed response `call` may return (see wsgi.wit): a head within the
/// head limit (its separators are fewer bytes than the ": " and CRLF the limit
/// counts per header; 16 more cover the header count) and a body of
/// packed_response::MAX_BODY bytes, each up to two bytes of UTF-8. wasmtime copies
/// the string out of guest memory before the host sees it, so this bounds what
/// the host does with it (convert, buffer, send), not that copy, which the
/// instance's memory limit bounds.
pub const MAX_PACKED_RESPONSE: usize = MAX_RESPONSE_HEAD_BYTES + 16 + 2 * packed_response::MAX_BODY;

/// Body chunks queued between the guest and the socket, per streamed response.
/// Small on purpose: when the client reads slowly, the guest's `write` waits
/// instead of the host buffering, at most 16 pieces of up to
/// runtime::imports::MAX_WRITE_PIECE (4 MiB; the kernel's send buffer holds as
/// much again). 16 lets a 1 MiB body written in 64 KiB blocks leave the guest
/// without its call waiting: with 4 the call was suspended and resumed three times
/// per response. Measured with wrk (one core, 1 MiB in 16 blocks, runs
/// alternated): 3,296-5,180 req/s with 4 (median 4,153), 4,436-5,626 with 16
/// (median 5,322). A queue bounded in bytes (a semaphore beside the channel)
/// measured in between, 3,641-4,635, and was not kept.
const STREAM_DEPTH: usize = 16;

/// How the call ended, as the host sees it.
#[derive(Debug)]
pub enum Outcome {
    /// The call returned normally.
    Completed,
    /// The app raised or returned an error (the guest is fine, the request is not).
    AppError(String),
    /// The guest trapped or broke a limit; its instance is discarded.
    Trap(String),
    /// The guest used up its CPU time; its instance is discarded.
    CpuTimeout(String),
    /// The app's queue was full: the call never ran.
    QueueFull,
}

/// What the access log needs once the exchange is over.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub status: StatusCode,
    pub body_bytes: u64,
    /// The response was cut off (client gone, app error after headers, short body).
    pub aborted: bool,
    /// Request body bytes the app read.
    pub body_received: u64,
    /// The limit that stopped the request, as far as the exchange can tell.
    pub limit: Option<Limit>,
}

pub type Reply = oneshot::Sender<Response<ResponseBody>>;

enum State {
    /// Nothing sent yet; `pending` is the head start_response last set.
    Open {
        reply: Reply,
        pending: Option<ResponseHead>,
    },
    /// Headers are out; body chunks go through `tx` (None when the body is discarded
    /// because the request was HEAD or the status has no body).
    Streaming {
        tx: Option<StreamSender>,
        remaining: Option<u64>,
    },
    /// Nothing more will be sent.
    Done,
}

pub struct Exchange {
    state: State,
    body: RequestBody,
    is_head: bool,
    /// How long a body write may wait while the client takes nothing.
    write_timeout: Duration,
    /// The client taking bytes on this connection, which keeps a write waiting.
    progress: ClientProgress,
    status: StatusCode,
    body_bytes: u64,
    aborted: bool,
    /// Why reading the request body failed, if it did: the client's fault, which
    /// the error response should say rather than blame the app.
    read_failure: Option<ReadError>,
    /// What this request sent and got, when it is being recorded (`--record`).
    transcript: Option<Box<Transcript>>,
}

impl Exchange {
    pub fn new(
        body: RequestBody,
        is_head: bool,
        write_timeout: Duration,
        progress: ClientProgress,
    ) -> (Self, oneshot::Receiver<Response<ResponseBody>>) {
        let (reply, rx) = oneshot::channel();
        let exchange = Exchange {
            state: State::Open { reply, pending: None },
            body,
            is_head,
            write_timeout,
            progress,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body_bytes: 0,
            aborted: false,
            read_failure: None,
            transcript: None,
        };
        (exchange, rx)
    }

    /// Records this request: its body as the app reads it and the response.
    pub fn record(&mut self, transcript: Transcript) {
        self.transcript = Some(Box::new(transcript));
    }

    pub fn transcript_mut(&mut self) -> Option<&mut Transcript> {
        self.transcript.as_deref_mut()
    }

    /// Sends the response head (and a whole body), noting it in the transcript.
    fn reply(&mut self, reply: Reply, response: Response<ResponseBody>) {
        if let Some(transcript) = &mut self.transcript {
            transcript.set_head(RecordedResponse::head_of(&response));
            if let ResponseBody::Full(Some(body)) = response.body() {
                transcript.add_response_body(body);
            }
        }
        let _ = reply.send(response);
    }

    pub fn headers_sent(&self) -> bool {
        !matches!(self.state, State::Open { .. })
    }

    /// Whether the headers went out and no more body bytes will: a HEAD request,
    /// a status without a body, all of a Content-Length sent, or a client gone.
    /// Lets a host-side writer stop producing bytes nobody will receive.
    pub fn body_closed(&self) -> bool {
        match &self.state {
            State::Open { .. } => false,
            State::Streaming { tx, remaining } => tx.is_none() || *remaining == Some(0),
            State::Done => true,
        }
    }

    /// PEP 3333 start_response, re-checked on the host. `replace` means the app
    /// passed exc_info: allowed to replace a head that has not been sent.
    pub fn start_response<N: AsRef<str>, V: AsRef<str>>(
        &mut self,
        status: &str,
        headers: &[(N, V)],
        replace: bool,
    ) -> Result<(), String> {
        let State::Open { pending, .. } = &mut self.state else {
            return Err("start_response(): the response headers have already been sent".into());
        };
        if pending.is_some() && !replace {
            return Err("start_response() called again without exc_info: headers already set".into());
        }
        let head = ResponseHead::from_wsgi(status, headers).map_err(|e| e.to_string())?;
        *pending = Some(head);
        Ok(())
    }

    /// A body chunk. The first non-empty one sends the headers.
    pub async fn write(&mut self, data: Bytes) -> Result<(), String> {
        if data.is_empty() {
            return match &self.state {
                State::Open { pending: None, .. } => Err(NOT_STARTED.into()),
                _ => Ok(()),
            };
        }
        if let State::Open { .. } = self.state {
            self.commit_streaming()?;
        }
        self.send(data).await
    }

    /// The app is about to send a body of exactly `len` bytes in pieces (a large
    /// one-item body): announce it as the Content-Length unless the app set one.
    pub fn declare_length(&mut self, len: u64) -> Result<(), String> {
        match &mut self.state {
            State::Open {
                pending: Some(head), ..
            } => {
                if head.content_length.is_none() && head.allows_body() {
                    head.content_length = Some(len);
                    head.headers
                        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                Ok(())
            }
            State::Open { pending: None, .. } => Err(NOT_STARTED.into()),
            _ => Ok(()),
        }
    }

    /// The complete body in one piece (a one-item iterable): lets the host send a
    /// Content-Length instead of chunked encoding, as wsgiref does.
    pub async fn write_body(&mut self, data: Bytes) -> Result<(), String> {
        let State::Open { pending, .. } = &mut self.state else {
            return self.write(data).await;
        };
        let Some(head) = pending.as_ref() else {
            return Err(NOT_STARTED.into());
        };
        let declared = head.content_length;
        if declared.is_some_and(|n| n != data.len() as u64) {
            // The app's Content-Length disagrees with its body: stream, so the
            // length rules (cut off extra, abort when short) apply.
            return self.write(data).await;
        }
        let State::Open { reply, pending } = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!()
        };
        let mut head = pending.expect("checked above");
        let len = data.len() as u64;
        if declared.is_none() && head.allows_body() {
            head.headers
                .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let body = if self.is_head || !head.allows_body() {
            ResponseBody::Empty
        } else {
            self.body_bytes = len;
            ResponseBody::full(data)
        };
        self.status = head.status;
        self.reply(reply, build_response(head, body));
        Ok(())
    }

    /// A whole response the guest packed (see `call` in wsgi.wit), returned from
    /// `call` or passed to `send-response`: checked and sent as `start_response`
    /// then `write_body` would.
    pub async fn respond_packed(&mut self, packed: &str) -> Result<(), String> {
        if packed.len() > MAX_PACKED_RESPONSE {
            return Err(format!(
                "the packed response is {} bytes, over the {MAX_PACKED_RESPONSE} a packed whole response may have; \
                 send a larger body through write-body",
                packed.len()
            ));
        }
        let response = packed_response::unpack(packed)?;
        self.start_response(response.status, &response.headers, false)?;
        self.write_body(latin1_body(response.body)?).await
    }

    pub async fn read(&mut self, max: u32) -> Result<Bytes, ReadError> {
        let result = self.body.read(max as usize).await;
        match &result {
            Ok(bytes) => {
                if let Some(transcript) = &mut self.transcript {
                    transcript.add_request_body(bytes);
                }
            }
            Err(e) => self.read_failure = Some(e.clone()),
        }
        result
    }

    /// Ends the exchange after the guest call; returns what the access log needs.
    pub async fn finish(mut self, outcome: &Outcome) -> Summary {
        match (std::mem::replace(&mut self.state, State::Done), outcome) {
            (
                State::Open {
                    reply,
                    pending: Some(head),
                },
                Outcome::Completed,
            ) => {
                if head.content_length.is_some_and(|n| n > 0) && !self.is_head && head.allows_body() {
                    // Declared a body and sent none: headers, then cut the connection.
                    self.state = State::Open {
                        reply,
                        pending: Some(head),
                    };
                    let _ = self.commit_streaming();
                    self.abort("app sent fewer bytes than its Content-Length").await;
                } else {
                    self.status = head.status;
                    self.reply(reply, build_response(head, ResponseBody::Empty));
                }
            }
            (State::Open { reply, .. }, outcome) => {
                let (status, message) = match (outcome, &self.read_failure) {
                    (Outcome::QueueFull, _) => (StatusCode::SERVICE_UNAVAILABLE, QUEUE_FULL_BODY),
                    (Outcome::CpuTimeout(_), _) => (StatusCode::GATEWAY_TIMEOUT, CPU_TIMEOUT_BODY),
                    // The app failed because the client's body did: say so.
                    (_, Some(ReadError::TimedOut(_) | ReadError::TooSlow { .. })) => {
                        (StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT_BODY)
                    }
                    (_, Some(ReadError::TooLarge(_))) => (StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE_BODY),
                    (_, Some(ReadError::Malformed(_))) => (StatusCode::BAD_REQUEST, MALFORMED_BODY_BODY),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR_BODY),
                };
                self.status = status;
                let mut response = error_response(status, message);
                if matches!(self.read_failure, Some(ReadError::Malformed(_))) {
                    // hyper stops reading after bad framing; tell the client so.
                    response
                        .headers_mut()
                        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                }
                self.body_bytes = response.body().size_hint().exact().unwrap_or(0);
                self.reply(reply, response);
            }
            (State::Streaming { tx, remaining }, Outcome::Completed) => {
                if remaining.is_some_and(|n| n > 0) && !self.aborted {
                    self.state = State::Streaming { tx, remaining };
                    self.abort("app sent fewer bytes than its Content-Length").await;
                } else if let Some(sender) = tx {
                    sender.complete();
                }
            }
            (streaming @ State::Streaming { .. }, _) => {
                self.state = streaming;
                self.abort("app failed after the headers were sent").await;
            }
            (State::Done, _) => {}
        }
        let limit = match (outcome, &self.read_failure) {
            (Outcome::CpuTimeout(_), _) => Some(Limit::Cpu),
            (Outcome::QueueFull, _) => Some(Limit::Queue),
            (_, Some(ReadError::TooLarge(_))) => Some(Limit::BodySize),
            _ => None,
        };
        if let Some(transcript) = self.transcript.take() {
            transcript.finish();
        }
        Summary {
            status: self.status,
            body_bytes: self.body_bytes,
            aborted: self.aborted,
            body_received: self.body.received(),
            limit,
        }
    }

    fn commit_streaming(&mut self) -> Result<(), String> {
        let State::Open { reply, pending } = std::mem::replace(&mut self.state, State::Done) else {
            return Ok(());
        };
        let Some(head) = pending else {
            self.state = State::Open { reply, pending: None };
            return Err(NOT_STARTED.into());
        };
        self.status = head.status;
        let remaining = head.content_length;
        if self.is_head || !head.allows_body() {
            self.reply(reply, build_response(head, ResponseBody::Empty));
            self.state = State::Streaming {
                tx: None,
                remaining: None,
            };
        } else {
            let (tx, body) = body::stream(STREAM_DEPTH);
            self.reply(reply, build_response(head, body));
            self.state = State::Streaming {
                tx: Some(tx),
                remaining,
            };
        }
        Ok(())
    }

    async fn send(&mut self, mut data: Bytes) -> Result<(), String> {
        let State::Streaming { tx, remaining } = &mut self.state else {
            return Ok(());
        };
        let Some(sender) = tx else { return Ok(()) };
        if let Some(left) = remaining {
            // Content-Length is the truth: bytes beyond it are never sent.
            if *left == 0 {
                return Ok(());
            }
            if data.len() as u64 > *left {
                data.truncate(*left as usize);
            }
            *left -= data.len() as u64;
        }
        let len = data.len() as u64;
        // Bytes is a reference count: the copy kept for the transcript is cheap.
        let recorded = self.transcript.is_some().then(|| data.clone());
        match sender.send(Ok(data), self.write_timeout, &self.progress).await {
            Ok(()) => {
                self.body_bytes += len;
                if let (Some(transcript), Some(data)) = (&mut self.transcript, recorded) {
                    transcript.add_response_body(&data);
                }
                Ok(())
            }
            Err(failed) => {
                // Dropping the sender without completing it cuts the response.
                *tx = None;
                self.aborted = true;
                if let Some(transcript) = &mut self.transcript {
                    transcript.set_incomplete();
                }
                Err(match failed {
                    SendFailed::Closed => "client disconnected".into(),
                    SendFailed::Stalled => format!("client did not read the response for {:?}", self.write_timeout),
                })
            }
        }
    }

    async fn abort(&mut self, why: &'static str) {
        self.aborted = true;
        if let Some(transcript) = &mut self.transcript {
            transcript.set_incomplete();
        }
        if let State::Streaming { tx: Some(sender), .. } = &mut self.state {
            let _ = sender
                .send(Err(BodyAborted(why)), self.write_timeout, &self.progress)
                .await;
        }
        self.state = State::Done;
    }
}

const NOT_STARTED: &str = "write() called before start_response()";
const INTERNAL_ERROR_BODY: &str = "The application failed; the server log has the details.";
const CPU_TIMEOUT_BODY: &str = "The application ran out of CPU time for this request.";
const QUEUE_FULL_BODY: &str = "The server is overloaded; try again later.";
const BODY_TIMEOUT_BODY: &str = "The request body did not arrive in time.";
const MALFORMED_BODY_BODY: &str = "The request body is not valid chunked encoding.";
pub const BODY_TOO_LARGE_BODY: &str = "The request body is larger than this server accepts.";

pub fn build_response(head: ResponseHead, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    if head.status.canonical_reason().map(str::as_bytes) != Some(head.reason.as_slice())
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(head.reason)
    {
        response.extensions_mut().insert(reason);
    }
    *response.headers_mut() = head.headers;
    response
        .headers_mut()
        .entry(SERVER)
        .or_insert(HeaderValue::from_static(SERVER_SOFTWARE));
    response
}

/// A plain-text error page. Never contains app output or tracebacks: those go to
/// the server log only.
pub fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = format!("{} {reason}\n\n{message}\n", status.as_u16());
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(SERVER, HeaderValue::from_static(SERVER_SOFTWARE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsgi::response::MAX_RESPONSE_HEADERS;

    #[test]
    fn the_largest_response_an_sdk_packs_fits_the_packed_limit() {
        // As many headers as allowed, filling the head limit (": " and CRLF
        // counted), and a body piece of the SDKs' size whose every byte takes two
        // bytes of UTF-8.
        let value_len = MAX_RESPONSE_HEAD_BYTES / MAX_RESPONSE_HEADERS - 4 - 6 - 1;
        let headers: Vec<(String, String)> = (0..MAX_RESPONSE_HEADERS)
            .map(|i| (format!("X-{i:04}"), "v".repeat(value_len)))
            .collect();
        assert!(ResponseHead::from_wsgi("200 OK", &headers).is_ok());
        let body = "\u{ff}".repeat(packed_response::MAX_BODY);
        let packed = packed_response::pack("200 OK", &headers, &body).unwrap();
        assert!(
            packed.len() <= MAX_PACKED_RESPONSE,
            "{} > {MAX_PACKED_RESPONSE}",
            packed.len()
        );
        assert!(
            packed.len() + 1024 > MAX_PACKED_RESPONSE,
            "the limit is looser than it needs to be"
        );
    }

    #[test]
    fn the_python_sdk_packs_bodies_of_the_same_size() {
        let adapter = include_str!("../../../guest-sdk/python/wsgi_wasm/adapter.py");
        let piece = format!("\nPIECE = {} * 1024\n", packed_response::MAX_BODY / 1024);
        assert!(adapter.contains(&piece), "adapter.py should say {piece:?}");
    }
}
