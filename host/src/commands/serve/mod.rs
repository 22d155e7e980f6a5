use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;

use wsgi_wasm::environ::ServerInfo;
use wsgi_wasm::http::{Limits, Server};
use wsgi_wasm::log;
use wsgi_wasm::runtime::cache::{self, Source};
use wsgi_wasm::runtime::engine::{self, EngineSettings};
use wsgi_wasm::runtime::{App, AppConfig, Isolation};
use wsgi_wasm::units::{parse_duration, parse_size};

/// Serve a WSGI application component over HTTP.
#[derive(Parser)]
pub struct ServeCommand {
    /// The application: a component built by `wsgi-wasm build` (or a Rust guest).
    app: PathBuf,

    /// Address to listen on; port 0 picks a free port (printed at startup).
    #[arg(long, short = 'l', default_value = "127.0.0.1:8000")]
    listen: String,

    /// SERVER_NAME for the app [default: the host part of --listen].
    #[arg(long)]
    server_name: Option<String>,

    /// Mount point of the app: stripped from PATH_INFO and given as SCRIPT_NAME.
    #[arg(long, default_value = "", value_parser = parse_script_name)]
    script_name: String,

    /// `pooled`: warm instances reused across requests (module globals persist);
    /// `request`: a fresh instance for every request (nothing persists).
    #[arg(long, value_enum, default_value_t = Isolation::Pooled)]
    isolation: Isolation,

    /// Instances serving requests at once [default: 2 per CPU core].
    #[arg(long)]
    instances: Option<usize>,

    /// Requests that may wait for a free instance; beyond this they get 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,

    /// Memory one instance may use (Python apps need 50-100 MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_memory: u64,

    /// CPU time one request may use before it is stopped with 500.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    cpu_timeout: Duration,

    /// In pooled mode, replace an instance after this many requests (bounds leaks).
    #[arg(long, default_value_t = 10_000)]
    max_requests: u64,

    /// Largest request body accepted (413 above it).
    #[arg(long, default_value = "100MiB", value_parser = parse_size)]
    max_body_size: u64,

    /// Time a client has to send a request head, and idle time allowed between
    /// keep-alive requests.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// Longest wait for request body data or for the client to accept response data.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    io_timeout: Duration,

    /// Time in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    /// Where compiled components are cached [default: $XDG_CACHE_HOME/wsgi-wasm or ~/.cache/wsgi-wasm].
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// Compile the component at every start instead of caching it.
    #[arg(long)]
    no_cache: bool,

    /// Do not log a line per request.
    #[arg(long)]
    no_access_log: bool,
}

fn parse_script_name(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    if !trimmed.is_empty() && !trimmed.starts_with('/') {
        return Err(format!("{text:?} must start with '/' (or be empty for the root)"));
    }
    Ok(trimmed.to_owned())
}

impl ServeCommand {
    pub fn execute(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(self.run())
    }

    async fn run(self) -> Result<()> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_instances = self.instances.unwrap_or(2 * cores).max(1);
        let max_memory = usize::try_from(self.max_memory).context("--max-memory is too large")?;
        let engine = engine::new_engine(EngineSettings {
            // Room for every serving instance plus one being replaced.
            max_instances: u32::try_from(max_instances + 1).context("--instances is too large")?,
            max_memory,
        })
        .context("cannot set up the WebAssembly engine")?;
        let config = AppConfig {
            isolation: self.isolation,
            max_memory,
            max_instances,
            max_queue: self.queue,
            cpu_timeout: self.cpu_timeout,
            max_requests_per_instance: self.max_requests.max(1),
        };
        let cache_dir = if self.no_cache { None } else { self.cache_dir.clone().or_else(cache::default_dir) };

        // Everything that can fail because of the app is checked before binding.
        let app_path = self.app.clone();
        let (app, report) = tokio::task::spawn_blocking({
            let engine = engine.clone();
            move || App::load(&engine, &app_path, config, cache_dir.as_deref())
        })
        .await??;
        let how = match report.source {
            Source::Cached => "loaded from cache",
            Source::Compiled => "compiled",
        };
        log::server(format!("{} {how} in {:.0?}", self.app.display(), report.load_time));
        app.warm_up().await?;

        let listener = TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let local: SocketAddr = listener.local_addr()?;
        let host = self.listen.rsplit_once(':').map_or(self.listen.as_str(), |(h, _)| h);
        let info = ServerInfo {
            server_name: self.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned()),
            server_port: local.port(),
            script_name: self.script_name.clone(),
            run_once: self.isolation == Isolation::Request,
        };
        let server = Server {
            app: Arc::new(app),
            info,
            limits: Limits {
                max_body_size: self.max_body_size,
                header_timeout: self.header_timeout,
                io_timeout: self.io_timeout,
                shutdown_grace: self.shutdown_grace,
            },
            access_log: !self.no_access_log,
        };
        // Scripts and tests parse this exact line for the real port.
        log::line(format!("Serving HTTP on http://{local}/"));
        server.run(listener, shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::server("SIGTERM received"),
        _ = int.recv() => log::server("SIGINT received"),
    }
}
