//! The server log on stderr: access lines, app output (stdout, stderr and
//! wsgi.errors, tagged with the app's name) and server events.
//!
//! Lines go through one writer thread so request handlers never block on a slow
//! terminal or pipe, and so lines from concurrent requests never interleave.

use std::io::{BufWriter, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

/// Lines queued for the writer. Large enough to absorb bursts at tens of thousands
/// of requests per second; bounded so a flood of guest output cannot grow host
/// memory without limit. When it is full, lines are dropped (and counted) rather
/// than making request handlers wait on the terminal.
const LOG_QUEUE_LINES: usize = 64 * 1024;
/// Longest line kept; a guest printing a megabyte without a newline is cut here.
pub const MAX_LOG_LINE: usize = 16 * 1024;

enum Message {
    Line(String),
    Flush(SyncSender<()>),
}

static SENDER: OnceLock<SyncSender<Message>> = OnceLock::new();
/// Lines dropped because the queue was full, reported by the writer when it catches up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn sender() -> &'static SyncSender<Message> {
    SENDER.get_or_init(|| {
        let (tx, rx) = sync_channel(LOG_QUEUE_LINES);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer(rx))
            .expect("spawning the log writer thread");
        tx
    })
}

fn writer(rx: Receiver<Message>) {
    let mut out = BufWriter::new(std::io::stderr());
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{} {dropped} log lines dropped: logging could not keep up",
                timestamp()
            );
        }
        let _ = out.flush();
    }
}

fn emit(mut line: String) {
    if line.len() > MAX_LOG_LINE {
        let mut cut = MAX_LOG_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" [line truncated]");
    }
    if let Err(TrySendError::Full(_)) = sender().try_send(Message::Line(line)) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A server event: startup, shutdown, errors not tied to one request.
pub fn server(message: impl std::fmt::Display) {
    emit(format!("{} {message}", timestamp()));
}

/// A line the guest wrote (stdout, stderr or wsgi.errors).
pub fn app(app: &str, stream: &str, message: impl std::fmt::Display) {
    emit(format!("{} [{app}] {stream}: {message}", timestamp()));
}

pub fn access(line: impl std::fmt::Display) {
    emit(format!("{} {line}", timestamp()));
}

/// Waits until every line logged so far is written (before exit).
pub fn flush() {
    let (tx, rx) = sync_channel(1);
    if sender().send(Message::Flush(tx)).is_ok() {
        let _ = rx.recv();
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A line exactly as given, no timestamp: for output other programs parse.
pub fn line(message: impl Into<String>) {
    emit(message.into());
}
