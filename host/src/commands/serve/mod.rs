use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use clap::Parser;
use tokio::net::{TcpListener, TcpSocket, UnixListener};

use wsgi_wasm::http::access_log::AccessLogFormat;
use wsgi_wasm::http::forwarded::TrustedProxies;
use wsgi_wasm::http::static_files::StaticMount;
use wsgi_wasm::http::tls::Tls;
use wsgi_wasm::http::{Listener, Listening, Server};
use wsgi_wasm::log;
use wsgi_wasm::runtime::cache;
use wsgi_wasm::runtime::engine::{EngineSettings, REQUEST_ISOLATION_KEEP_RESIDENT};
use wsgi_wasm::runtime::{Isolation, Runtime};
use wsgi_wasm::wsgi::environ::ServerInfo;

mod activation;
mod admin;
mod config;
mod deploy;
pub(crate) mod options;
mod spec;

/// The parsers `serve` runs on its input, for the fuzz targets (host/fuzz): a
/// `--config` file's text and an `APP.wasm,key=value` argument. Not a stable API.
pub mod fuzzing {
    pub use super::config::parse as parse_config;
    pub use super::spec::parse as parse_app_spec;
}

use activation::Activated;
use deploy::{Deployment, Tenant};
use options::{AppOptions, ServerOptions};
use spec::AppSpec;

/// Serve WSGI application components over HTTP.
///
/// Apps are given as arguments or in a config file (--config). SIGHUP reloads them:
/// components whose file changed are loaded and switched to without dropping a
/// request, and the config file is read again (apps added, removed or changed).
#[derive(Parser)]
pub struct ServeCommand {
    /// The application: a component built by `wsgi-wasm build` (or a Rust guest).
    /// Several apps share one server when mounted at prefixes:
    /// `/shop=shop.wasm /blog=blog.wasm,isolation=request`. Options after the file
    /// (the app options below, named as their flags) override the command-line
    /// values for that app; grants (env, dir, allow-connect) add to the command
    /// line's for that app only.
    #[arg(
        required_unless_present = "config",
        conflicts_with = "config",
        value_name = "[PREFIX=]APP.wasm[,KEY=VALUE...]",
        value_parser = spec::parse
    )]
    apps: Vec<AppSpec>,

    /// A TOML file with the server's options and its apps, each routed by host
    /// and path prefix (see the README). Options given as flags override the file's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Mount point of an app given without a PREFIX=: stripped from PATH_INFO and
    /// given as SCRIPT_NAME.
    #[arg(long, default_value = "", value_parser = parse_script_name)]
    script_name: String,

    #[command(flatten, next_help_heading = "Server options")]
    server: ServerOptions,

    #[command(
        flatten,
        next_help_heading = "App options (also per app: APP.wasm,KEY=VALUE or a config table)"
    )]
    app: AppOptions,
}

/// Instance slots a server preallocates at least, so that apps added by a reload,
/// or a burst on one tenant, find room. A slot costs address space, not memory,
/// until an instance uses it.
const MIN_TOTAL_INSTANCES: u32 = 64;
/// And at most, unless --total-instances asks for more: each slot reserves about
/// 4 GiB of address space per linear memory (eight per component), so 256 slots
/// take ~9 TiB of the 128 TiB a Linux process has, and 256 live Python instances
/// are ~8 GiB of memory. A thousand idle tenants need no slot each: the least
/// recently used idle instance gives its slot up.
const MAX_DEFAULT_TOTAL_INSTANCES: u32 = 256;

pub(crate) fn parse_script_name(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    if !trimmed.is_empty() && !trimmed.starts_with('/') {
        return Err(format!("{text:?} must start with '/' (or be empty for the root)"));
    }
    Ok(trimmed.to_owned())
}

/// Everything `serve` is asked to run: read from the command line and, if given,
/// the config file. Read again on SIGHUP.
struct Plan {
    server: ServerOptions,
    tenants: Vec<Tenant>,
}

impl ServeCommand {
    pub fn execute(self) -> Result<()> {
        // Read first: the config file may say how to log.
        let plan = self.plan().map_err(anyhow::Error::msg)?;
        log::init(&plan.server.log_settings())?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(self.run(plan))
    }

    fn plan(&self) -> Result<Plan, String> {
        let plan = self.read_plan()?;
        plan.server.check().map_err(|e| match &self.config {
            Some(path) => format!("{}: {e}", path.display()),
            None => e,
        })?;
        Ok(plan)
    }

    fn read_plan(&self) -> Result<Plan, String> {
        let Some(path) = &self.config else {
            let tenants = self
                .apps
                .iter()
                .map(|spec| {
                    let prefix = spec.prefix.clone().unwrap_or_else(|| self.script_name.clone());
                    Tenant::new(
                        None,
                        spec.file.clone(),
                        Vec::new(),
                        prefix,
                        &self.app.over(&spec.options),
                        spec.file.display().to_string(),
                    )
                })
                .collect::<Result<Vec<_>, String>>()?;
            return Ok(Plan {
                server: self.server.clone(),
                tenants: deploy::name_apart(tenants),
            });
        };
        let file = config::load(path)?;
        let tenants = file
            .apps
            .iter()
            .map(|entry| {
                // Built-in defaults < the file's top level < the command line < the app's table.
                let options = file.defaults.over(&self.app).over(&entry.options);
                Tenant::new(
                    Some(entry.name.clone()),
                    entry.component.clone(),
                    entry.hosts.clone(),
                    entry.prefix.clone(),
                    &options,
                    entry.location.clone(),
                )
            })
            .collect::<Result<Vec<_>, String>>()?;
        deploy::check_routes(&tenants)?;
        Ok(Plan {
            server: file.server.over(&self.server),
            tenants,
        })
    }

    async fn run(self, plan: Plan) -> Result<()> {
        let Plan { server, tenants } = plan;
        deploy::check_routes(&tenants).map_err(anyhow::Error::msg)?;
        let wanted: u32 = tenants
            .iter()
            .map(|t| {
                u32::try_from(t.config.max_instances)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1)
            })
            .fold(0, u32::saturating_add);
        let settings = EngineSettings {
            max_instances: server
                .total_instances
                .unwrap_or(wanted.clamp(MIN_TOTAL_INSTANCES, MAX_DEFAULT_TOTAL_INSTANCES)),
            // A reload may bring an app with a higher limit than today's apps; the
            // default is the most any app gets without asking.
            max_memory: tenants
                .iter()
                .map(|t| t.config.max_memory)
                .max()
                .unwrap_or_default()
                .max(options::DEFAULT_MAX_MEMORY as usize),
            // Kept memory pays when instances come and go with requests; pooled
            // instances live on, and the memory of one that ends goes back to the OS.
            keep_resident: match server.keep_resident {
                Some(bytes) => usize::try_from(bytes).context("--keep-resident is too large")?,
                None if tenants.iter().any(|t| t.config.isolation == Isolation::Request) => {
                    REQUEST_ISOLATION_KEEP_RESIDENT
                }
                None => 0,
            },
        };
        let cache_dir = if server.no_cache {
            None
        } else {
            server.cache_dir.clone().or_else(cache::default_dir)
        };
        let runtime = Arc::new(Runtime::new(settings, cache_dir).context("cannot set up the WebAssembly engine")?);

        // Everything that can fail because of an app is checked before binding.
        let mut deployment = Deployment::new(runtime.clone());
        let router = deployment.start(tenants).await?;
        let routes = Arc::new(ArcSwap::from_pointee(router));

        // Read before binding so that a bad certificate fails the start, not the
        // first handshake.
        let tls = match (&server.tls_cert, &server.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: give both, or neither"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let activated = activation::take_listeners()?;
        let listen = server.listen(!activated.is_empty());
        let mut bound = Vec::new();
        let mut socket_files = Vec::new();
        for socket in activated {
            // Served like --listen ones; the service manager owns any socket file.
            let (listener, name, port, shown, tls) = match socket {
                Activated::Tcp(listener) => {
                    let listener = TcpListener::from_std(listener)?;
                    let local = listener.local_addr()?;
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
            let info = ServerInfo {
                server_name: server.server_name.clone().unwrap_or(name),
                server_port: port,
            };
            bound.push((Listening { listener, info, tls }, shown));
        }
        for listen in listen {
            let (listener, name, port, shown, tls) = if let Some(path) = listen.strip_prefix("unix:") {
                let listener = bind_unix(Path::new(path), server.socket_mode)
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
                let listener = bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let local: SocketAddr = listener.local_addr()?;
                let host = listen.rsplit_once(':').map_or(listen.as_str(), |(h, _)| h);
                let name = host.trim_matches(['[', ']']).to_owned();
                let shown = format!("{scheme}://{local}/");
                (Listener::Tcp(listener), name, local.port(), shown, tls.clone())
            };
            let info = ServerInfo {
                server_name: server.server_name.clone().unwrap_or(name),
                server_port: port,
            };
            bound.push((Listening { listener, info, tls }, shown));
        }
        let mut statics = Vec::new();
        for (prefix, dir) in &server.statics {
            statics.push(StaticMount::new(prefix.clone(), dir).map_err(anyhow::Error::msg)?);
        }
        // Longest prefix first, so the most specific mount answers.
        statics.sort_by_key(|m| std::cmp::Reverse(m.prefix().len()));
        let admin = match &server.admin_listen {
            Some(addr) => Some(admin::start(addr, &deployment.apps()).await?),
            None => None,
        };
        let metrics = admin.as_ref().map(|a| a.state.metrics.clone());
        let http = Server {
            metrics: metrics.clone(),
            access_log_format: server.access_log_format.unwrap_or(AccessLogFormat::Combined),
            routes: routes.clone(),
            forwarded: TrustedProxies::new(&server.forwarded_allow_ips),
            statics,
            limits: server.limits(),
            access_log: !server.no_access_log,
        };
        let started_with = server;
        let (listeners, serving): (Vec<_>, Vec<_>) = bound.into_iter().unzip();
        // Scripts and tests parse these exact lines for the real port.
        if let Some(admin) = &admin {
            log::line(format!("Admin on {}", admin.shown));
        }
        for shown in serving {
            log::line(format!("Serving HTTP on {shown}"));
        }
        let reloads = tokio::spawn(async move {
            let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                // After a renewal: a file that fails to load is logged and the
                // certificate in use stays, so a botched renewal does not take the
                // site down.
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => log::server("SIGHUP: TLS certificate reloaded"),
                        Err(e) => log::server(format!("SIGHUP: keeping the current TLS certificate: {e:#}")),
                    }
                }
                log::server("SIGHUP received: reloading apps");
                match self.plan() {
                    Ok(plan) => {
                        if plan.server != started_with {
                            log::warn(
                                "SIGHUP: the server options changed (listen, static, limits, \
                                 total-instances, keep-resident, logging...); they take effect at \
                                 the next start, only the apps are reloaded",
                            );
                        }
                        if let Some(router) = deployment.reload(plan.tenants).await {
                            routes.store(Arc::new(router));
                            if let Some(metrics) = &metrics {
                                metrics.set_apps(deployment.apps());
                            }
                        }
                    }
                    Err(e) => log::server(format!("reload refused, nothing changed: {e}")),
                }
            }
        });
        let readiness = admin.as_ref().map(|a| a.state.clone());
        if let Some(state) = &readiness {
            state.set_ready(true);
        }
        let shutdown = async move {
            shutdown_signal().await;
            // Before the drain: a load balancer stops sending while requests finish.
            if let Some(state) = readiness {
                state.set_ready(false);
            }
        };
        let result = http.run(listeners, shutdown).await;
        reloads.abort();
        drop(admin);
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::server("SIGTERM received"),
        _ = int.recv() => log::server("SIGINT received"),
    }
}
