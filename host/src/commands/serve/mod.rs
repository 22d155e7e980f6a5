use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::net::{TcpListener, TcpSocket, UnixListener};

use wsgi_wasm::environ::ServerInfo;
use wsgi_wasm::http::forwarded::{self, TrustedPeer, TrustedProxies};
use wsgi_wasm::http::router::{Mount, Router};
use wsgi_wasm::http::static_files::{self, StaticMount};
use wsgi_wasm::http::tls::Tls;
use wsgi_wasm::http::{Limits, Listener, Listening, Server};
use wsgi_wasm::log;
use wsgi_wasm::runtime::cache::{self, Source};
use wsgi_wasm::runtime::engine::{self, EngineSettings};
use wsgi_wasm::runtime::grants::{self, ConnectGrant, DirGrant};
use wsgi_wasm::runtime::{App, AppConfig, Grants, Isolation};
use wsgi_wasm::units::{parse_duration, parse_size};

mod activation;
mod spec;

use activation::Activated;

use spec::AppSpec;

/// Serve WSGI application components over HTTP.
#[derive(Parser)]
pub struct ServeCommand {
    /// The application: a component built by `wsgi-wasm build` (or a Rust guest).
    /// Several apps share one server when mounted at prefixes:
    /// `/shop=shop.wasm /blog=blog.wasm,isolation=request`. Options after the file
    /// (isolation, instances, queue, max-memory, cpu-timeout, max-requests)
    /// override the command-line values for that app; grants (env, dir,
    /// allow-connect) add to the command line's for that app only.
    #[arg(required = true, value_name = "[PREFIX=]APP.wasm[,KEY=VALUE...]", value_parser = spec::parse)]
    apps: Vec<AppSpec>,

    /// Where to listen: HOST:PORT (port 0 picks a free port, printed at startup) or
    /// unix:PATH for a Unix socket; repeatable to listen on several at once
    /// [default: 127.0.0.1:8000, unless a service manager passed sockets (LISTEN_FDS)].
    #[arg(long, short = 'l', value_name = "HOST:PORT|unix:PATH")]
    listen: Vec<String>,

    /// Permissions of --listen unix:PATH sockets, in octal (660: owner and group may
    /// connect) [default: what the process umask gives].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    socket_mode: Option<u32>,

    /// SERVER_NAME for the app [default: the host part of the --listen address
    /// the request came on; "localhost" on a Unix socket].
    #[arg(long)]
    server_name: Option<String>,

    /// Mount point of an app given without a PREFIX=: stripped from PATH_INFO and
    /// given as SCRIPT_NAME.
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

    /// Open client connections at most; beyond it new connections wait in the
    /// kernel's listen backlog until one closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// An environment variable the apps see (os.environ), as KEY=VALUE; repeatable.
    /// Apps see no other variables of the host.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = grants::parse_env)]
    env: Vec<(String, String)>,

    /// A host directory the apps may use, as HOST[:GUEST][:ro|rw] (default GUEST =
    /// HOST, read-only); repeatable. Apps see no other part of the host's filesystem
    /// and can write only under directories granted `rw`.
    #[arg(long = "dir", value_name = "HOST[:GUEST][:ro|rw]", value_parser = grants::parse_dir)]
    dirs: Vec<DirGrant>,

    /// A TCP destination the apps may connect to, as HOST:PORT (an IP address, or a
    /// name resolved once at start); repeatable. Apps may open no other connection,
    /// look up no other name, and never listen or use UDP.
    #[arg(long = "allow-connect", value_name = "HOST:PORT", value_parser = grants::parse_connect)]
    allow_connect: Vec<ConnectGrant>,

    /// Files the host serves itself, without entering a sandbox, as PREFIX=DIR
    /// (e.g. /static=./static); repeatable. GET and HEAD, with Content-Type, ETag,
    /// Last-Modified, 304, Range and precompressed .gz/.br siblings; nothing
    /// outside DIR (symlinks pointing out are refused).
    #[arg(long = "static", value_name = "PREFIX=DIR", value_parser = static_files::parse_mount)]
    statics: Vec<(String, PathBuf)>,

    /// Where compiled components are cached [default: $XDG_CACHE_HOME/wsgi-wasm or ~/.cache/wsgi-wasm].
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// Compile the component at every start instead of caching it.
    #[arg(long)]
    no_cache: bool,

    /// Do not log a line per request.
    #[arg(long)]
    no_access_log: bool,

    // --- TLS, trusted proxies and socket activation on the listeners (issue 12) ---
    /// Serve HTTPS on the TCP listeners with this PEM certificate chain (leaf first);
    /// needs --tls-key. Re-read on SIGHUP: new connections get the new certificate.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Reverse proxies whose X-Forwarded-For/-Proto/-Host or Forwarded headers set
    /// REMOTE_ADDR, wsgi.url_scheme and HTTP_HOST: IP addresses, CIDR networks, or
    /// `unix` for peers on --listen unix: sockets; comma-separated or repeatable
    /// [default: none, the headers are never acted on].
    #[arg(long, value_name = "IP|CIDR|unix", value_delimiter = ',', value_parser = forwarded::parse_peer)]
    forwarded_allow_ips: Vec<TrustedPeer>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// gunicorn's default worker_connections. It stays under the usual open-file limit
/// of 1024 (`ulimit -n`) with room for the server's own files, and an idle
/// connection costs one descriptor and a few KiB, so the limit bounds both. Raise
/// it together with `ulimit -n` for many long-lived clients.
const DEFAULT_MAX_CONNECTIONS: u32 = 1000;

fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} should be octal permissions such as 660")),
    }
}

pub(crate) fn parse_script_name(text: &str) -> Result<String, String> {
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
        let defaults = AppConfig {
            isolation: self.isolation,
            max_memory: usize::try_from(self.max_memory).context("--max-memory is too large")?,
            max_instances: self.instances.unwrap_or(2 * cores).max(1),
            max_queue: self.queue,
            cpu_timeout: self.cpu_timeout,
            max_requests_per_instance: self.max_requests.max(1),
            grants: Grants {
                env: self.env.clone(),
                dirs: self.dirs.clone(),
                connect: self.allow_connect.clone(),
            },
        };
        let mut planned = Vec::new();
        for spec in &self.apps {
            let config = spec.config(&defaults).map_err(anyhow::Error::msg)?;
            let prefix = spec.prefix.clone().unwrap_or_else(|| self.script_name.clone());
            planned.push((spec.file.clone(), prefix, config));
        }
        for (i, (_, prefix, _)) in planned.iter().enumerate() {
            if planned[..i].iter().any(|(_, other, _)| other == prefix) {
                let shown = if prefix.is_empty() { "/" } else { prefix.as_str() };
                bail!("two apps are mounted at {shown}; give each a different PREFIX= (e.g. /shop=shop.wasm)");
            }
        }
        let engine = engine::new_engine(EngineSettings {
            // Every app's serving instances, plus one each being replaced.
            max_instances: u32::try_from(planned.iter().map(|(_, _, c)| c.max_instances + 1).sum::<usize>())
                .context("--instances is too large")?,
            max_memory: planned
                .iter()
                .map(|(_, _, c)| c.max_memory)
                .max()
                .unwrap_or(defaults.max_memory),
        })
        .context("cannot set up the WebAssembly engine")?;
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(cache::default_dir)
        };

        // Everything that can fail because of an app is checked before binding.
        let mut loaded = Vec::new();
        for (file, prefix, config) in planned {
            let engine = engine.clone();
            let cache_dir = cache_dir.clone();
            let path = file.clone();
            let (app, report) =
                tokio::task::spawn_blocking(move || App::load(&engine, &path, config, cache_dir.as_deref())).await??;
            let how = match report.source {
                Source::Cached => "loaded from cache",
                Source::Compiled => "compiled",
            };
            log::server(format!("{} {how} in {:.0?}", file.display(), report.load_time));
            loaded.push((app, prefix));
        }
        let names: Vec<String> = loaded.iter().map(|(app, _)| app.name().to_owned()).collect();
        let mut apps = Vec::new();
        for (app, prefix) in loaded {
            // Two apps from files with the same name are told apart by their prefix.
            let app = if names.iter().filter(|n| n.as_str() == app.name()).count() > 1 {
                let name = format!("{}@{}", app.name(), if prefix.is_empty() { "/" } else { &prefix });
                app.with_name(&name)
            } else {
                app
            };
            app.warm_up().await?;
            apps.push((Arc::new(app), prefix));
        }

        // Read before binding so that a bad certificate fails the start, not the
        // first handshake.
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };

        let activated = activation::take_listeners()?;
        let mut listen = self.listen.clone();
        if listen.is_empty() && activated.is_empty() {
            listen.push(DEFAULT_LISTEN.to_owned());
        }
        let mut bound = Vec::new();
        let mut socket_files = Vec::new();
        for socket in activated {
            // Served like --listen ones; the service manager owns any socket file.
            let (listener, name, port, shown, tls) = match socket {
                Activated::Tcp(listener) => {
                    let listener = TcpListener::from_std(listener)?;
                    let local = listener.local_addr()?;
                    let scheme = if tls.is_some() { "https" } else { "http" };
                    let name = local.ip().to_canonical().to_string();
                    let shown = format!("{scheme}://{local}/");
                    (Listener::Tcp(listener), name, local.port(), shown, tls.clone())
                }
                Activated::Unix(listener) => {
                    let path = listener.local_addr()?.as_pathname().map(|p| p.display().to_string());
                    let shown = format!("unix:{}", path.unwrap_or_default());
                    let listener = UnixListener::from_std(listener)?;
                    (Listener::Unix(listener), "localhost".to_owned(), 80, shown, None)
                }
            };
            bound.push((listener, self.server_name.clone().unwrap_or(name), port, shown, tls));
        }
        for listen in &listen {
            let (listener, name, port, shown, tls) = if let Some(path) = listen.strip_prefix("unix:") {
                let listener = bind_unix(Path::new(path), self.socket_mode)
                    .with_context(|| format!("cannot listen on {listen}"))?;
                socket_files.push(PathBuf::from(path));
                // No host or port: the port is the one an http URL implies.
                (
                    Listener::Unix(listener),
                    "localhost".to_owned(),
                    80,
                    format!("unix:{path}"),
                    None,
                )
            } else {
                let listener = bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let local: SocketAddr = listener.local_addr()?;
                let host = listen.rsplit_once(':').map_or(listen.as_str(), |(h, _)| h);
                let name = host.trim_matches(['[', ']']).to_owned();
                let scheme = if tls.is_some() { "https" } else { "http" };
                let shown = format!("{scheme}://{local}/");
                (Listener::Tcp(listener), name, local.port(), shown, tls.clone())
            };
            bound.push((listener, self.server_name.clone().unwrap_or(name), port, shown, tls));
        }
        for (app, prefix) in &apps {
            let config = app.config();
            log::server(format!(
                "app {} at {}: {:?} isolation, {} instances, {} MiB memory, {:?} CPU per request",
                app.name(),
                if prefix.is_empty() { "/" } else { prefix },
                config.isolation,
                config.max_instances,
                config.max_memory >> 20,
                config.cpu_timeout,
            ));
        }
        let mut listeners = Vec::new();
        let mut serving = Vec::new();
        for (listener, server_name, server_port, shown, tls) in bound {
            let mounts = apps
                .iter()
                .map(|(app, prefix)| Mount {
                    app: app.clone(),
                    info: ServerInfo {
                        server_name: server_name.clone(),
                        server_port,
                        script_name: prefix.clone(),
                        run_once: app.config().isolation == Isolation::Request,
                    },
                })
                .collect();
            let router = Router::new(mounts).map_err(anyhow::Error::msg)?;
            listeners.push(Listening { listener, router, tls });
            serving.push(shown);
        }
        let mut statics = Vec::new();
        for (prefix, dir) in &self.statics {
            statics.push(StaticMount::new(prefix.clone(), dir).map_err(anyhow::Error::msg)?);
        }
        // Longest prefix first, so the most specific mount answers.
        statics.sort_by_key(|m| std::cmp::Reverse(m.prefix().len()));
        let server = Server {
            statics,
            limits: Limits {
                max_body_size: self.max_body_size,
                header_timeout: self.header_timeout,
                io_timeout: self.io_timeout,
                shutdown_grace: self.shutdown_grace,
                max_connections: self.max_connections as usize,
            },
            access_log: !self.no_access_log,
            forwarded: TrustedProxies::new(&self.forwarded_allow_ips),
        };
        // Scripts and tests parse these exact lines for the real port.
        for shown in serving {
            log::line(format!("Serving HTTP on {shown}"));
        }
        if let Some(tls) = tls {
            tokio::spawn(reload_on_sighup(tls));
        }
        let result = server.run(listeners, shutdown_signal()).await;
        for path in socket_files {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

/// A Unix socket at `path`. A socket file left there by a server that did not shut
/// down cleanly is replaced, unless a server still answers on it; any other kind of
/// file is left alone.
fn bind_unix(path: &Path, mode: Option<u32>) -> Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another server is listening on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(listener)
}

/// Connections the kernel completes and holds until the server accepts them: where
/// clients wait while `--max-connections` are open. gunicorn's default backlog;
/// Linux caps it at net.core.somaxconn (4096 since 5.4). Beyond it new clients'
/// connection attempts are dropped and retried by their TCP stacks.
const LISTEN_BACKLOG: u32 = 2048;

async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As std and tokio do: a restarted server can bind its port while the old
        // one's connections are still in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// SIGHUP re-reads --tls-cert and --tls-key (after a renewal). A file that fails to
/// load is logged and the certificate in use stays, so a botched renewal does not
/// take the site down.
async fn reload_on_sighup(tls: Arc<Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => log::server("SIGHUP: TLS certificate reloaded"),
            Err(e) => log::server(format!("SIGHUP: keeping the current TLS certificate: {e:#}")),
        }
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
