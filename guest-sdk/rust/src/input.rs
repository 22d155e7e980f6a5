//! `wsgi.input`: the request body, read from the host through the `read` import.

use std::io::{self, BufRead, Read};

use crate::bindings::wsgi_wasm::wsgi::server;

/// Bytes asked of the host per refill. 64 KiB matches the host's body frame size,
/// so one host call usually moves one frame (the Python SDK uses the same number).
pub const READ_CHUNK: usize = 64 * 1024;

/// The request body as a [`Read`] + [`BufRead`] stream, from [`Environ::input`](crate::Environ::input).
///
/// The host ends the stream at the end of the body (Content-Length or the last
/// chunk), so reading to the end is always safe (`wsgi.input_terminated`). A body
/// larger than the server's `--max-body-size` fails with an error; so does a client
/// that stops sending. Small reads are served from a buffer, so `read_line` and
/// byte-at-a-time parsers do not cost a host call each.
#[derive(Default)]
pub struct Input {
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Input {
    pub(crate) fn new() -> Self {
        Input::default()
    }

    /// The rest of the body in one `Vec`.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The next piece of the body straight from the host, at most `max` bytes;
    /// empty at the end.
    fn host_read(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.eof {
            return Ok(Vec::new());
        }
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let data = server::read(max).map_err(|e| io::Error::other(format!("reading the request body failed: {e}")))?;
        if data.is_empty() {
            self.eof = true;
        }
        Ok(data)
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.buffered().is_empty() && out.len() >= READ_CHUNK {
            // A big read gains nothing from the buffer: one copy instead of two.
            let data = self.host_read(out.len())?;
            out[..data.len()].copy_from_slice(&data);
            return Ok(data.len());
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let start = out.len();
        out.extend_from_slice(self.buffered());
        self.buf.clear();
        self.pos = 0;
        loop {
            let data = self.host_read(READ_CHUNK)?;
            if data.is_empty() {
                return Ok(out.len() - start);
            }
            if out.is_empty() {
                // Usually the whole body is one frame: keep the host's Vec as is.
                *out = data;
            } else {
                out.extend_from_slice(&data);
            }
        }
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            self.buf = self.host_read(READ_CHUNK)?;
            self.pos = 0;
        }
        Ok(self.buffered())
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.buf.len());
    }
}
