//! PEP 3333's `start_response` and `write`, over the host's imports.

use std::io;

use crate::bindings::wsgi_wasm::wsgi::server;
use crate::check;
use crate::error::{Error, Result};
use wsgi_wasm_rules::packed_response;

/// Largest body [`respond`](Responder::respond) packs into `call`'s result, and
/// only an ASCII one: a packed body crosses as text, which costs two passes over
/// it (the component model's UTF-8 check and copy, the host's latin-1 read), and
/// a binary body a conversion to text on top. `write-body` copies the bytes once,
/// for one host call. Measured in-process (examples/isolation_cost, pooled, the
/// body prepared once): packing ASCII saves ~0.2 us up to 512 bytes and costs
/// more from 1 KiB (4.2 us packed, 4.0 by `write-body`; 16 KiB: 8.7 and 4.2).
/// By `write-body`, 64 KiB take 4.7 us and 256 KiB 6.2, where packing every
/// body up to 256 KiB, as the SDK used to, took 102 and 404 us (ASCII), 191 and
/// 756 us (binary).
const PACK_ASCII_BODY: usize = 512;

/// The response side of one call: what WSGI gives the app as `start_response` and
/// the `write` callable it returns.
///
/// The order is PEP 3333's: [`start_response`](Responder::start_response) first
/// (status and headers; nothing is sent yet), then the body, either streamed with
/// [`write`](Responder::write) (the headers go out with the first non-empty chunk;
/// the body is chunked unless you set Content-Length) or given whole to
/// [`write_body`](Responder::write_body) (the host sets Content-Length; the fastest
/// way). Until the first byte of body is sent, the head may still be replaced with
/// [`replace_response`](Responder::replace_response), e.g. by an error page.
pub struct Responder {
    started: bool,
    headers_sent: bool,
    finished: bool,
    /// A whole response [`respond`](Responder::respond) packed for `call` to
    /// return (empty: the response went through the host's imports).
    packed: String,
}

impl Responder {
    pub(crate) fn new() -> Self {
        Responder {
            started: false,
            headers_sent: false,
            finished: false,
            packed: String::new(),
        }
    }

    /// Sets the status (`"200 OK"`) and headers of the response. Calling it twice
    /// is an error ("headers already set"); see
    /// [`replace_response`](Responder::replace_response). Hop-by-hop headers
    /// (Connection, Transfer-Encoding...) are refused: the server owns the
    /// connection. Returns a [`Writer`] for the body.
    ///
    /// ```no_run
    /// # fn app(response: &mut wsgi_wasm_guest::Responder) -> wsgi_wasm_guest::Result<()> {
    /// let mut body = response.start_response("200 OK", [("Content-Type", "text/plain")])?;
    /// body.write(b"hello\n")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start_response<I, K, V>(&mut self, status: &str, headers: I) -> Result<Writer<'_>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        if self.started {
            return Err(Error::msg(
                "start_response() called again without exc_info: headers already set",
            ));
        }
        self.send_head(status, headers, false)?;
        Ok(Writer { responder: self })
    }

    /// `start_response` with `exc_info`: replaces the status and headers set
    /// before, as long as no body has been sent (typically with an error page after
    /// something failed half-way). Once the headers are out it is too late: this
    /// returns an error, and returning that error from the app makes the host cut
    /// the connection so the client sees the response is broken.
    pub fn replace_response<I, K, V>(&mut self, status: &str, headers: I) -> Result<Writer<'_>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        if self.headers_sent {
            return Err(Error::msg(
                "the response headers were already sent; the response cannot be replaced",
            ));
        }
        self.send_head(status, headers, true)?;
        Ok(Writer { responder: self })
    }

    /// The whole response in one go: `start_response` then `write_body`, and
    /// the fastest way to answer: a small ASCII body (at most 512 bytes) goes
    /// back to the host with the head as the call's result, without a host call;
    /// any other crosses with one `write-body` call.
    pub fn respond<I, K, V>(&mut self, status: &str, headers: I, body: &[u8]) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let packable = body.len() <= PACK_ASCII_BODY && body.is_ascii();
        if self.started || !packable {
            self.start_response(status, headers)?;
            return self.write_body(body);
        }
        let headers = checked_head(status, headers)?;
        // ASCII bytes are their own latin-1 text.
        let text = std::str::from_utf8(body).expect("ASCII is UTF-8");
        // The checks refuse a NUL in the head, so it always packs.
        self.packed =
            packed_response::pack(status, &headers, text).ok_or_else(|| Error::msg("response head holds a NUL"))?;
        // The response is complete: nothing may replace it now.
        self.started = true;
        self.finished = true;
        self.headers_sent = true;
        Ok(())
    }

    /// A chunk of the body. The first non-empty chunk sends the headers. Fails
    /// when the client has gone away (return the error: there is no one to answer).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.check_writable("write()")?;
        if data.is_empty() {
            // Nothing to send and the head stays replaceable: no host call needed.
            return Ok(());
        }
        self.headers_sent = true;
        server::write(data).map_err(Error::msg)
    }

    /// The complete body in one piece: the host sends it with a Content-Length
    /// (instead of chunked encoding) unless the app set its own. Ends the response:
    /// writing after it is an error. After [`write`](Responder::write) has started
    /// streaming, it is one more chunk and the last.
    pub fn write_body(&mut self, data: &[u8]) -> Result<()> {
        self.check_writable("write_body()")?;
        self.finished = true;
        if !data.is_empty() {
            self.headers_sent = true;
        }
        server::write_body(data).map_err(Error::msg)
    }

    /// Whether `start_response` has been called.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the headers have gone to the client (a body byte was written).
    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    fn send_head<I, K, V>(&mut self, status: &str, headers: I, replace: bool) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let headers = checked_head(status, headers)?;
        server::start_response(status, &headers, replace).map_err(Error::msg)?;
        self.started = true;
        Ok(())
    }

    fn check_writable(&self, what: &str) -> Result<()> {
        if !self.started {
            return Err(Error::msg(format!("{what} called before start_response()")));
        }
        if self.finished {
            return Err(Error::msg(format!(
                "{what} called after write_body() ended the response"
            )));
        }
        Ok(())
    }

    /// Called after the app returned `Ok`: PEP 3333 requires a start_response.
    /// The packed response for `call` to return, if [`respond`](Responder::respond)
    /// made one.
    pub(crate) fn finish(self) -> Result<String> {
        if !self.started {
            return Err(Error::msg("the application returned without calling start_response()"));
        }
        Ok(self.packed)
    }
}

/// The status and headers, checked as the host will check them, so the app gets
/// the error where it set them.
fn checked_head<I, K, V>(status: &str, headers: I) -> Result<Vec<(String, String)>>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    check::status(status).map_err(Error::msg)?;
    let headers: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    for (name, value) in &headers {
        check::header(name, value).map_err(Error::msg)?;
    }
    Ok(headers)
}

/// The body writer `start_response` returns: PEP 3333's `write` callable, and a
/// [`std::io::Write`] so `write!`, `io::copy` and friends work.
///
/// Each `write` is one host call and one HTTP chunk; wrap it in a
/// [`std::io::BufWriter`] when writing many small pieces.
pub struct Writer<'a> {
    responder: &'a mut Responder,
}

impl Writer<'_> {
    /// A chunk of the body; see [`Responder::write`].
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.responder.write(data)
    }

    /// The complete body, ending the response; see [`Responder::write_body`].
    pub fn write_body(self, data: &[u8]) -> Result<()> {
        self.responder.write_body(data)
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.responder
            .write(buf)
            .map_err(|e| io::Error::other(e.into_message()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Every write already went to the host; it flushes on its own schedule.
        Ok(())
    }
}
