//! `wsgi-wasm replay FILE APP.wasm`: runs a request recorded by `serve --record`
//! again, offline, and compares the response with the recorded one.

mod diff;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use http_body_util::BodyExt;

use super::serve::options::{DEFAULT_CPU_TIMEOUT, DEFAULT_MAX_MEMORY};
use wsgi_wasm::log;
use wsgi_wasm::runtime::cache;
use wsgi_wasm::runtime::engine::EngineSettings;
use wsgi_wasm::runtime::{App, AppConfig, Grants, Isolation, Runtime};
use wsgi_wasm::wsgi::body::ClientProgress;
use wsgi_wasm::wsgi::exchange::{Exchange, Outcome};
use wsgi_wasm::wsgi::recording::{RecordedResponse, Recording};
use wsgi_wasm::wsgi::request_body::RequestBody;
use wsgi_wasm::wsgi::validate::ValidateMode;

/// The exit status when the replayed response differs from the recorded one.
pub const EXIT_DIFFERS: i32 = 1;
/// The exit status when the replay could not run (an unreadable recording, an app
/// that does not load, or an app that asked for more clock readings or random
/// bytes than were recorded). Like diff(1): 0 same, 1 different, 2 trouble.
pub const EXIT_FAILED: i32 = 2;

/// Run a request recorded by `serve --record DIR` again, offline, and print the
/// response (status line, headers, a blank line, the body) on stdout.
///
/// The app gets the recorded environ, request body, clock readings and random
/// bytes, in order. If its response differs from the recorded one, a unified
/// diff (recorded -> replayed) goes to stderr. Replay is exact for a request that
/// depends only on those; see README.md ("Record and replay") for what is not
/// recorded.
#[derive(Parser)]
#[command(
    after_help = "Exit status: 0 the response is the recorded one; 1 it differs (the diff is on \
stderr); 2 the replay could not run: an unreadable or invalid recording, an app that does not load, or an \
app that asked for more clock readings or random bytes than were recorded (named on stderr)."
)]
pub struct ReplayCommand {
    /// A recording written by `serve --record DIR`.
    #[arg(value_name = "FILE")]
    recording: PathBuf,

    /// The app to run it against: the recorded build, or a new one to see what changed.
    #[arg(value_name = "APP.wasm")]
    app: PathBuf,

    /// Where compiled components are cached, as for `serve`.
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// Compile the app afresh instead of using the cache.
    #[arg(long)]
    no_cache: bool,
}

impl ReplayCommand {
    /// Runs the replay; returns the process's exit status.
    pub fn execute(self) -> i32 {
        match self.run() {
            Ok(status) => status,
            Err(e) => {
                log::flush();
                eprintln!("error: {e:#}");
                EXIT_FAILED
            }
        }
    }

    fn run(self) -> Result<i32> {
        let recording = Recording::read(&self.recording).map_err(anyhow::Error::msg)?;
        for warning in warnings(&recording) {
            eprintln!("warning: {warning}");
        }
        let validate = match &recording.context.validate {
            Some(mode) => Some(
                ValidateMode::from_str(mode, false)
                    .map_err(|_| anyhow::anyhow!("the recording's validate mode {mode:?} is unknown"))?,
            ),
            None => None,
        };
        let max_memory = usize::try_from(DEFAULT_MAX_MEMORY)?;
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(cache::default_dir)
        };
        let host = Runtime::new(
            EngineSettings {
                // The instance that proves the app starts, and the replay's own.
                max_instances: 2,
                max_memory,
                keep_resident: 0,
            },
            cache_dir,
        )
        .context("cannot set up the WebAssembly engine")?;
        let config = AppConfig {
            // A fresh instance: nothing left by other requests.
            isolation: Isolation::Request,
            max_memory,
            max_instances: 1,
            max_queue: 1,
            cpu_timeout: DEFAULT_CPU_TIMEOUT,
            max_requests_per_instance: 1,
            idle_timeout: Duration::from_secs(60),
            // Only the environment: the replay must not touch the files and
            // services the recorded request used (their results are not recorded).
            grants: Grants {
                env: recording.context.env.clone(),
                ..Grants::default()
            },
            validate,
            record: None,
        };
        let (app, _) = App::load(&host, &self.app, Some(&recording.context.name), config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let (replayed, shortfall) = runtime.block_on(replay(app, &recording))?;

        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&render(&replayed))?;
        stdout.flush()?;
        log::flush();
        if let Some(source) = shortfall {
            bail!(
                "the app asked for more of {source} than was recorded: it no longer makes the calls it made \
                 when recorded (a changed app, or state a pooled instance carried; see the diff, if any)"
            );
        }
        if replayed == recording.response {
            return Ok(0);
        }
        let old = diff::lines(&recording.response);
        let new = diff::lines(&replayed);
        let mut text = diff::unified(
            &old,
            &new,
            &format!("recorded ({})", self.recording.display()),
            &format!("replayed ({})", self.app.display()),
        );
        if old == new {
            text.push_str("(the responses differ in bytes the lines do not show)\n");
        }
        eprint!("{text}");
        Ok(EXIT_DIFFERS)
    }
}

/// What makes this replay inexact, said before it runs.
fn warnings(recording: &Recording) -> Vec<String> {
    let mut warnings = Vec::new();
    // A fresh instance is what served the request if it was the instance's first.
    let earlier = recording.instance_calls_before;
    if recording.context.isolation != Isolation::Request.as_str() && earlier > 0 {
        warnings.push(format!(
            "recorded in {} isolation, after {earlier} earlier request(s) in the same instance: what they left \
             in it (module globals, caches, first-use setup) is not in the recording, and the replay runs in a \
             fresh instance, so it may differ or ask for values that were not recorded",
            recording.context.isolation
        ));
    }
    if !recording.host.unrecorded.is_empty() {
        warnings.push(format!(
            "the request used {}, whose results are not recorded: the replay runs without them and may differ",
            recording.host.unrecorded.join(", ")
        ));
    } else if !recording.context.unrecorded_grants.is_empty() {
        warnings.push(format!(
            "the app had {}, whose files and connections are not recorded: the replay runs without them",
            recording.context.unrecorded_grants.join(", ")
        ));
    }
    warnings
}

/// Runs the recorded request through the app as `serve` would, and collects the
/// response as a client would get it.
async fn replay(app: Arc<App>, recording: &Recording) -> Result<(RecordedResponse, Option<String>)> {
    app.warm_up().await?;
    let method = recording.environ.iter().find(|(k, _)| k == "REQUEST_METHOD");
    let is_head = method.is_some_and(|(_, v)| v == "HEAD");
    let body = RequestBody::from_bytes(recording.request_body.clone());
    let (exchange, reply) = Exchange::new(body, is_head, DEFAULT_CPU_TIMEOUT, ClientProgress::default());
    let environ = recording
        .environ
        .iter()
        .map(|(k, v)| (k.clone().into(), v.clone().into()))
        .collect();
    let values = recording.host.clone();
    let call = tokio::spawn(async move {
        let (finished, shortfall) = app.replay(environ, exchange, values).await;
        match &finished.outcome {
            Outcome::AppError(message) => log::app(app.name(), "error", message),
            Outcome::Trap(message) => log::app(app.name(), "trap", message),
            Outcome::CpuTimeout(message) => log::app(app.name(), "cpu-timeout", message),
            _ => {}
        }
        finished.exchange.finish(&finished.outcome).await;
        drop(finished.held);
        shortfall
    });
    let response = reply.await.context("the call ended without a response")?;
    let mut replayed = RecordedResponse::head_of(&response);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    replayed.body.extend_from_slice(&data);
                }
            }
            Err(_) => {
                replayed.complete = false;
                break;
            }
        }
    }
    let shortfall = call.await.context("the replayed call failed")?;
    Ok((replayed, shortfall))
}

/// The response as printed: status line, headers, blank line, body bytes as sent.
fn render(response: &RecordedResponse) -> Vec<u8> {
    let mut out = format!("{} {}\n", response.status, response.reason).into_bytes();
    for (name, value) in &response.headers {
        // Header values are latin-1: back to the bytes that were sent.
        out.extend(name.bytes());
        out.extend(b": ");
        out.extend(value.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')));
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&response.body);
    out
}
