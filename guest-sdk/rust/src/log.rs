//! `wsgi.errors`: lines for the server log, tagged with the app's name by the host.

use std::io;

use crate::bindings::wsgi_wasm::wsgi::server;

/// Writes one line to the server log (`wsgi.errors`). Embedded newlines are split
/// into separate lines so each log entry stays one line.
pub fn log(message: &str) {
    for line in message.split('\n') {
        server::log(line.strip_suffix('\r').unwrap_or(line));
    }
}

/// A writer for `wsgi.errors`, from [`Environ::errors`](crate::Environ::errors):
/// buffers a line at a time and logs it at each newline, on `flush` and on drop,
/// so `writeln!(environ.errors(), ...)` makes exactly one log line.
#[derive(Default)]
pub struct Errors {
    line: Vec<u8>,
}

/// A line this long is logged even without a newline, so a runaway writer cannot
/// grow the buffer without bound. The host cuts log lines at a similar size.
const MAX_LINE: usize = 16 * 1024;

impl Errors {
    pub fn new() -> Self {
        Errors::default()
    }

    fn emit(&mut self) {
        // Bytes, not text, may be written here; the log shows them as UTF-8 when
        // they are, with replacement characters where they are not.
        server::log(&String::from_utf8_lossy(&self.line));
        self.line.clear();
    }
}

impl io::Write for Errors {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.emit();
        }
        Ok(())
    }
}

impl std::fmt::Write for Errors {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        io::Write::write_all(self, s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}
