//! The server log on stderr, on `tracing`: access lines (target `access`), app
//! output (target `app`, with the app's name and the stream: stdout, stderr,
//! wsgi.errors, or the host's verdict: error, trap, cpu-timeout...) and server
//! events (target `wsgi_wasm`). Wasmtime's and Cranelift's own records (the `log`
//! crate) are bridged in and show up when the filter lets them through
//! (`RUST_LOG=wasmtime=debug`).
//!
//! Lines go through tracing-appender's non-blocking writer: one thread writes to
//! stderr, so request handlers never block on a slow terminal or pipe and lines
//! from concurrent requests never interleave. Its queue is bounded and lossy;
//! dropped lines are counted and reported once the writer catches up.
//!
//! The functions here (`server`, `app`, `access`, `line`, `flush`) are the facade
//! the rest of the crate logs through; they work before `init` (with the default
//! settings) so library users and tests need no setup.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines queued for the writer. Large enough to absorb bursts at tens of thousands
/// of requests per second; bounded so a flood of guest output cannot grow host
/// memory without limit. When it is full, lines are dropped (and counted) rather
/// than making request handlers wait on the terminal.
const LOG_QUEUE_LINES: usize = 64 * 1024;
/// Longest message kept; a guest printing a megabyte without a newline is cut here.
pub const MAX_LOG_LINE: usize = 16 * 1024;
/// Longest record the writer passes on, whatever produced it: a cut message plus
/// the record's other fields, with room for JSON escaping (up to 6 bytes a byte
/// for control characters) so the facade's own records are never cut twice.
const MAX_RECORD_BYTES: usize = 8 * MAX_LOG_LINE;

/// Which filter applies when neither `--log-level` nor RUST_LOG says: every
/// server, app and access record, nothing from the libraries below info.
pub const DEFAULT_FILTER: &str = "info";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record (access lines as the access format says).
    Text,
    /// One JSON object per record: timestamp, level, target, message and fields.
    Json,
}

pub struct LogSettings {
    /// A RUST_LOG-style filter: `info`, `warn,access=info`, `wasmtime=debug`...
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            filter: std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned()),
            format: LogFormat::Text,
        }
    }
}

static INITIALISED: OnceLock<()> = OnceLock::new();
/// Dropping it makes the writer thread write out what is queued (`flush`).
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
/// The writer, for `line`s, which no filter may hide.
static RAW: OnceLock<(NonBlocking, LogFormat)> = OnceLock::new();
/// Dropped lines already reported, so each report gives the new ones.
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Installs the logger. Call once, before anything logs; a second call (or one
/// after the facade already set up the defaults) fails.
pub fn init(settings: &LogSettings) -> Result<()> {
    let filter = EnvFilter::try_new(&settings.filter).with_context(|| {
        format!(
            "{:?} is not a valid log filter (e.g. info, warn,access=info)",
            settings.filter
        )
    })?;
    let mut result = Err(anyhow::anyhow!("the logger is already set up"));
    INITIALISED.get_or_init(|| result = install(filter, settings.format));
    result
}

fn install(filter: EnvFilter, format: LogFormat) -> Result<()> {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(StderrSink {
            out: BufWriter::new(std::io::stderr()),
            format,
        });
    let _ = DROPPED.set(writer.error_counter());
    let _ = RAW.set((writer.clone(), format));
    *GUARD.lock().unwrap() = Some(guard);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.event_format(TextFormat).finish().try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .try_init(),
    };
    installed.context("cannot install the logger")
}

fn ensure_init() {
    if INITIALISED.get().is_none() {
        // A filter from RUST_LOG that does not parse falls back to the default.
        let _ = init(&LogSettings::default()).or_else(|_| {
            init(&LogSettings {
                filter: DEFAULT_FILTER.to_owned(),
                format: LogFormat::Text,
            })
        });
    }
}

/// Lines dropped so far because the writer could not keep up (for /metrics).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

fn bounded(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_LOG_LINE {
        return message.into();
    }
    let mut cut = MAX_LOG_LINE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [line truncated]", &message[..cut]).into()
}

/// A server event: startup, shutdown, errors not tied to one request.
pub fn server(message: impl std::fmt::Display) {
    ensure_init();
    tracing::info!(target: "wsgi_wasm", "{}", bounded(&message.to_string()));
}

/// A server event that needs an operator's attention (accept failures...).
pub fn warn(message: impl std::fmt::Display) {
    ensure_init();
    tracing::warn!(target: "wsgi_wasm", "{}", bounded(&message.to_string()));
}

/// A line the guest wrote (stdout, stderr or wsgi.errors), or the host's verdict on
/// a call (error, trap, cpu-timeout, denied, recycle: logged as warnings).
pub fn app(app: &str, stream: &str, message: impl std::fmt::Display) {
    ensure_init();
    let message = message.to_string();
    let message = bounded(&message);
    if matches!(stream, "stdout" | "stderr" | "wsgi.errors") {
        tracing::info!(target: "app", app, stream, "{message}");
    } else {
        tracing::warn!(target: "app", app, stream, "{message}");
    }
}

/// One access-log line, already in the access log's format.
pub fn access(line: impl std::fmt::Display) {
    ensure_init();
    tracing::info!(target: "access", "{}", bounded(&line.to_string()));
}

/// Waits until every line logged so far is written (before exit). Nothing logged
/// after this is written.
pub fn flush() {
    // Dropping the guard makes the writer write what is queued, then stop.
    let guard = GUARD.lock().unwrap().take();
    drop(guard);
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A line other programs parse, such as "Serving HTTP on ...": written whatever
/// the filter, exactly as given in the text format (no timestamp), as a record
/// with this message in the JSON format.
pub fn line(message: impl Into<String>) {
    ensure_init();
    let message = message.into();
    let Some((writer, format)) = RAW.get() else { return };
    let record = match format {
        LogFormat::Text => format!("{}\n", bounded(&message)),
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({
                "timestamp": timestamp(),
                "level": "INFO",
                "target": "wsgi_wasm",
                "message": bounded(&message),
            })
        ),
    };
    let _ = writer.clone().write_all(record.as_bytes());
}

/// The text format. Access lines are written as they are (an
/// access line carries its own date); app output is `[app] stream: message`, the
/// server's own events a plain message; anything else (wasmtime, warnings) names
/// its level and target.
struct TextFormat;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        // Records bridged from the `log` crate (wasmtime, cranelift) carry their
        // real target in fields; normalising gives it back.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Fields {
            message,
            app,
            stream,
            others,
        } = fields;
        match meta.target() {
            "access" => writeln!(writer, "{message}"),
            "app" => writeln!(
                writer,
                "{} [{}] {}: {message}",
                timestamp(),
                app.unwrap_or_default(),
                stream.unwrap_or_default()
            ),
            "wsgi_wasm" if *meta.level() == Level::INFO => writeln!(writer, "{} {message}", timestamp()),
            target => writeln!(writer, "{} {} {target}: {message}{others}", timestamp(), meta.level()),
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    app: Option<String>,
    stream: Option<String>,
    others: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "app" => self.app = Some(value.to_owned()),
            "stream" => self.stream = Some(value.to_owned()),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name().starts_with("log.") {
            // The bridged record's metadata, already used by normalising.
        } else if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.others, " {}={value:?}", field.name());
        }
    }
}

/// The writer thread's end: stderr, each record cut to MAX_RECORD_BYTES, and a
/// report of dropped lines whenever a batch has been written.
struct StderrSink {
    out: BufWriter<std::io::Stderr>,
    format: LogFormat,
}

impl Write for StderrSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > MAX_RECORD_BYTES {
            self.out.write_all(&buf[..MAX_RECORD_BYTES])?;
            self.out.write_all(b" [record truncated]\n")?;
        } else {
            self.out.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let dropped = dropped_lines();
        let new = dropped - REPORTED.swap(dropped, Ordering::Relaxed);
        if new > 0 {
            let message = format!("{new} log lines dropped: logging could not keep up");
            match self.format {
                LogFormat::Text => writeln!(self.out, "{} WARN wsgi_wasm: {message}", timestamp())?,
                LogFormat::Json => writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({
                        "timestamp": timestamp(),
                        "level": "WARN",
                        "target": "wsgi_wasm",
                        "message": message,
                        "dropped": new,
                    })
                )?,
            }
        }
        self.out.flush()
    }
}
