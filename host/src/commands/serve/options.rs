//! Per-app options, defined once. The `serve` flags (`--isolation request`), an app
//! argument's `,key=value` list (`shop.wasm,isolation=request`) and a config file's
//! app table (`isolation = "request"`) all parse into [`AppOptions`], so adding an
//! option is one field here. Layers are stacked with [`AppOptions::over`] and the
//! result becomes the runtime's [`AppConfig`] in [`AppOptions::to_config`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser};
use serde::{Deserialize, Deserializer};

use wsgi_wasm::http::Limits;
use wsgi_wasm::http::access_log::AccessLogFormat;
use wsgi_wasm::http::forwarded::{self, TrustedPeer};
use wsgi_wasm::http::static_files;
use wsgi_wasm::log::{self, LogFormat, LogSettings};
use wsgi_wasm::runtime::engine::EPOCH_TICK;
use wsgi_wasm::runtime::grants::{self, ConnectGrant, DirGrant, HttpOrigin};
use wsgi_wasm::runtime::{AppConfig, Grants, Isolation};
use wsgi_wasm::units::{parse_duration, parse_size};
use wsgi_wasm::wsgi::recording::{RecordOnly, RecordSettings};
use wsgi_wasm::wsgi::validate::ValidateMode;

/// Requests that may wait for a free instance; one second of a busy app's requests
/// at a thousand a second, beyond which waiting is worse than a quick 503.
pub const DEFAULT_QUEUE: usize = 1024;
/// Default instances per CPU core: one computing (each worker thread runs one guest
/// at a time, runtime::turns) and one more that may meanwhile wait for a request
/// body or a socket, at the memory cost of one more heap per core.
pub const DEFAULT_INSTANCES_PER_CORE: usize = 2;
/// Python apps need 50-100 MiB; this leaves room for a large request or cache.
pub const DEFAULT_MAX_MEMORY: u64 = 256 << 20;
/// Long enough for any page a person waits for, short enough that a runaway loop
/// frees its instance within a minute.
pub const DEFAULT_CPU_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds what a slow leak in a pooled app can accumulate, while costing one
/// instantiation (~1 ms) per ten thousand requests.
pub const DEFAULT_MAX_REQUESTS: u64 = 10_000;
/// An idle instance holds its linear memory (tens of MiB for Python). A new one
/// costs about a millisecond of CPU, so after a minute without requests giving the
/// memory back is worth more than keeping it warm: with many tenants only the busy
/// ones hold memory.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one app may use and how it is run. Every field is optional so that layers
/// (built-in defaults < config file top level < command line < the app's own
/// options) can be stacked; grants add up across layers instead of replacing.
#[derive(Args, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AppOptions {
    /// `pooled`: warm instances reused across requests (module globals persist);
    /// `request`: a fresh instance for every request (nothing persists)
    /// [default: pooled].
    #[arg(long, value_enum)]
    pub isolation: Option<Isolation>,

    /// Instances serving requests at once [default: 2 per CPU core].
    #[arg(long)]
    pub instances: Option<usize>,

    /// Requests that may wait for a free instance; beyond this they get 503
    /// [default: 1024].
    #[arg(long)]
    pub queue: Option<usize>,

    /// Memory one instance may use (Python apps need 50-100 MiB) [default: 256MiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size")]
    pub max_memory: Option<u64>,

    /// CPU time one request may use before it is stopped (504) [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub cpu_timeout: Option<Duration>,

    /// Replace an instance after this many requests (bounds leaks); in request
    /// isolation, after this many rewinds [default: 10000].
    #[arg(long)]
    pub max_requests: Option<u64>,

    /// Instances unused this long are dropped and their memory returned; the next
    /// request creates one (about a millisecond) [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,

    /// An environment variable the app sees (os.environ), as KEY=VALUE; repeatable.
    /// Apps see no other variables of the host. In a config file: a table,
    /// `env = { KEY = "value" }`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = grants::parse_env)]
    #[serde(default, deserialize_with = "env_table")]
    pub env: Vec<(String, String)>,

    /// A host directory the app may use, as HOST[:GUEST][:ro|rw] (default GUEST =
    /// HOST, read-only); repeatable. Apps see no other part of the host's filesystem
    /// and can write only under directories granted `rw`. In a config file: `dirs`,
    /// a list, relative paths from the file's directory.
    #[arg(long = "dir", value_name = "HOST[:GUEST][:ro|rw]", value_parser = grants::parse_dir)]
    #[serde(default, rename = "dirs", alias = "dir", deserialize_with = "parsed_list")]
    pub dirs: Vec<DirGrant>,

    /// A TCP destination the app may connect to, as HOST:PORT (an IP address, or a
    /// name resolved once at start); repeatable. Apps may open no other connection,
    /// look up no other name, and never listen or use UDP.
    #[arg(long = "allow-connect", value_name = "HOST:PORT", value_parser = grants::parse_connect)]
    #[serde(default, deserialize_with = "parsed_list")]
    pub allow_connect: Vec<ConnectGrant>,

    /// An origin the app may call over HTTP(S), as http://HOST[:PORT] or
    /// https://HOST[:PORT]; repeatable. For https the host does the TLS and
    /// verifies the server's certificate; the app may not reach any other origin.
    #[arg(long = "allow-http", value_name = "ORIGIN", value_parser = grants::parse_http_origin)]
    #[serde(default, deserialize_with = "parsed_list")]
    pub allow_http: Vec<HttpOrigin>,

    /// Extra CA certificates (PEM) trusted for --allow-http https origins, besides
    /// the system's roots: for services with a private CA.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    // --- Validation (issue 15) ---
    /// Check every request against PEP 3333 on both sides (the environ, the
    /// start_response arguments, write(), the iterable, wsgi.input, wsgi.errors).
    /// `strict` (the default when given without a value) answers a violation with
    /// 500; `warn` logs it and lets the response through. Off unless given.
    #[arg(long, value_enum, value_name = "strict|warn", num_args = 0..=1, require_equals = true, default_missing_value = "strict")]
    pub validate: Option<ValidateMode>,

    // --- Record and replay (issue 15) ---
    /// Write requests to files in DIR (created private, 0700) for `wsgi-wasm
    /// replay`: the environ, the request body, the clock readings and random bytes
    /// the app got, and the response. Recordings may hold secrets (cookies,
    /// Authorization headers, bodies); each file is 0600. Off unless given.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// With --record: `errors` writes only requests answered 5xx [default: all].
    #[arg(long, value_enum, value_name = "all|errors")]
    pub record_only: Option<RecordOnly>,

    /// With --record: record one request in N (taken in turn, before
    /// --record-only looks at the status) [default: 1, every request].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub record_sample: Option<u64>,
}

impl AppOptions {
    /// `self` with `more` stacked on top: `more`'s values win, grants add up.
    pub fn over(&self, more: &AppOptions) -> AppOptions {
        AppOptions {
            isolation: more.isolation.or(self.isolation),
            instances: more.instances.or(self.instances),
            queue: more.queue.or(self.queue),
            max_memory: more.max_memory.or(self.max_memory),
            cpu_timeout: more.cpu_timeout.or(self.cpu_timeout),
            max_requests: more.max_requests.or(self.max_requests),
            idle_timeout: more.idle_timeout.or(self.idle_timeout),
            env: [&self.env[..], &more.env].concat(),
            dirs: [&self.dirs[..], &more.dirs].concat(),
            allow_connect: [&self.allow_connect[..], &more.allow_connect].concat(),
            allow_http: [&self.allow_http[..], &more.allow_http].concat(),
            ca_file: more.ca_file.clone().or_else(|| self.ca_file.clone()),
            validate: more.validate.or(self.validate),
            record: more.record.clone().or_else(|| self.record.clone()),
            record_only: more.record_only.or(self.record_only),
            record_sample: more.record_sample.or(self.record_sample),
        }
    }

    /// The runtime's form, with the built-in defaults for what no layer set.
    pub fn to_config(&self) -> Result<AppConfig, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_memory = self.max_memory.unwrap_or(DEFAULT_MAX_MEMORY);
        if self.record.is_none() && (self.record_only.is_some() || self.record_sample.is_some()) {
            return Err("record-only and record-sample choose what --record writes: give --record DIR too".into());
        }
        // Counts the flags' parsers would take as 0 mean nothing here; said at
        // start, whichever layer (flag, app argument, config file) gave them.
        refuse_zero_counts(&[
            ("instances", self.instances.map(|n| n as u64)),
            ("max-requests", self.max_requests),
            ("record-sample", self.record_sample),
        ])?;
        let cpu_timeout = self.cpu_timeout.unwrap_or(DEFAULT_CPU_TIMEOUT);
        if cpu_timeout < EPOCH_TICK {
            // CPU time is counted in ticks: a shorter budget could not be kept.
            return Err(format!(
                "cpu-timeout must be at least {EPOCH_TICK:?}, the tick CPU time is counted in"
            ));
        }
        Ok(AppConfig {
            isolation: self.isolation.unwrap_or(Isolation::Pooled),
            max_memory: usize::try_from(max_memory).map_err(|_| format!("max-memory {max_memory} is too large"))?,
            max_instances: self.instances.unwrap_or(DEFAULT_INSTANCES_PER_CORE * cores),
            max_queue: self.queue.unwrap_or(DEFAULT_QUEUE),
            cpu_timeout,
            max_requests_per_instance: self.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS),
            idle_timeout: self.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            grants: Grants {
                env: self.env.clone(),
                dirs: self.dirs.clone(),
                connect: self.allow_connect.clone(),
                http: self.allow_http.clone(),
                ca_file: self.ca_file.clone(),
            },
            validate: self.validate,
            record: self.record.as_ref().map(|dir| RecordSettings {
                dir: dir.clone(),
                only: self.record_only.unwrap_or(RecordOnly::All),
                sample: self.record_sample.unwrap_or(1),
            }),
        })
    }

    /// The keys an app argument's `,key=value` list may use: the flags' names.
    pub fn keys() -> Vec<String> {
        KeyValueArgs::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    /// Parses `key=value` pairs with the flags' own parsers, so each value means
    /// exactly what the flag of the same name means.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<AppOptions, String> {
        let keys = AppOptions::keys();
        let mut argv = vec!["app".to_owned()];
        for (key, value) in pairs {
            if !keys.contains(key) {
                return Err(format!("unknown option {key:?} (keys: {})", keys.join(", ")));
            }
            argv.push(format!("--{key}={value}"));
        }
        KeyValueArgs::try_parse_from(argv)
            .map(|parsed| parsed.options)
            .map_err(|e| clap_message(&e))
    }
}

/// Listen here when no `--listen` (or `listen` key) is given: loopback only, so a
/// server started to try something is not reachable from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// As wsgiref and gunicorn: a body larger than any form upload a small app expects
/// but small enough that a client cannot make a request cost gigabytes.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 100 << 20;
/// Time a client has to send a request head: slowloris clients cannot pin
/// connections, and slow mobile links still get through.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait on a client's body data or acceptance of response data.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Below the 30 s an orchestrator gives (Kubernetes' default grace period), so
/// requests in flight finish before the process is killed.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// gunicorn's default worker_connections. It stays under the usual open-file limit
/// of 1024 (`ulimit -n`) with room for the server's own files, and an idle
/// connection costs one descriptor and a few KiB, so the limit bounds both. Raise
/// it together with `ulimit -n` for many long-lived clients.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1000;

/// Options of the server as a whole (not of one app): flags, or top-level keys of a
/// config file with the same names. The command line wins over the file.
#[derive(Args, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerOptions {
    /// Where to listen: HOST:PORT (port 0 picks a free port, printed at startup) or
    /// unix:PATH for a Unix socket; repeatable to listen on several at once
    /// [default: 127.0.0.1:8000, unless a service manager passed sockets (LISTEN_FDS)].
    #[arg(long, short = 'l', value_name = "HOST:PORT|unix:PATH")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen: Vec<String>,

    /// Permissions of --listen unix:PATH sockets, in octal (660: owner and group may
    /// connect) [default: what the process umask gives].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    #[serde(default, deserialize_with = "octal")]
    pub socket_mode: Option<u32>,

    /// SERVER_NAME for the apps [default: the host part of the --listen address
    /// the request came on; "localhost" on a Unix socket].
    #[arg(long)]
    pub server_name: Option<String>,

    /// Largest request body accepted (413 above it) [default: 100MiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size")]
    pub max_body_size: Option<u64>,

    /// Time a client has to send a request head, and idle time allowed between
    /// keep-alive requests [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub header_timeout: Option<Duration>,

    /// Longest wait for request body data or for the client to accept response data
    /// [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub io_timeout: Option<Duration>,

    /// Time in-flight requests get to finish after SIGTERM or SIGINT [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,

    /// Open client connections at most; beyond it new connections wait in the
    /// kernel's listen backlog until one closes [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Instances alive at once over all apps (each holds a slot of preallocated
    /// address space); when they are all taken, the least recently used idle
    /// instance of any app is dropped to make room [default: the sum of the apps'
    /// instances, plus one each, at start; at least 64 so tenants added by a reload
    /// have room, at most 256].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub total_instances: Option<u32>,

    /// Memory an instance slot keeps mapped after its instance ends, reset to the
    /// app's initial state by copying, so the next instance there starts without
    /// a page fault per page it writes (Linux 6.7 and later; elsewhere slots keep
    /// nothing). Makes `--isolation request` ~3x cheaper; costs up to this much
    /// memory per slot in use [default: 16MiB when an app uses request isolation,
    /// otherwise 0].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size")]
    pub keep_resident: Option<u64>,

    /// Files the host serves itself, without entering a sandbox, as PREFIX=DIR
    /// (e.g. /static=./static); repeatable. GET and HEAD, with Content-Type, ETag,
    /// Last-Modified, 304, Range and precompressed .gz/.br siblings; nothing
    /// outside DIR (symlinks pointing out are refused).
    #[arg(long = "static", value_name = "PREFIX=DIR", value_parser = static_files::parse_mount)]
    #[serde(default, rename = "static", deserialize_with = "static_mounts")]
    pub statics: Vec<(String, PathBuf)>,

    /// Where compiled components are cached [default: $XDG_CACHE_HOME/wsgi-wasm or ~/.cache/wsgi-wasm].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start instead of caching it.
    #[arg(long)]
    #[serde(default)]
    pub no_cache: bool,

    /// Do not log a line per request.
    #[arg(long)]
    #[serde(default)]
    pub no_access_log: bool,

    // --- Logging and the admin listener (issue 13) ---
    /// Which records are logged, RUST_LOG-style: `info`, `warn,access=info` (only
    /// warnings and the access log), `info,app=off`, `debug` (wasmtime's own
    /// records too). Targets: access, app, wsgi_wasm, wasmtime, cranelift
    /// [default: info].
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// `text`: one line per record; `json`: one JSON object per record [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// The access log's lines: `common` (NCSA), `combined` (NCSA combined, then
    /// app, time, guest CPU, peak memory, the limit hit and "(aborted)"), `json`
    /// [default: combined].
    #[arg(long, value_enum)]
    pub access_log_format: Option<AccessLogFormat>,

    /// Serve /healthz, /readyz and /metrics (Prometheus) on this HOST:PORT, apart
    /// from the public listeners [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_listen: Option<String>,

    // --- TLS, trusted proxies (issue 12) ---
    /// Serve HTTPS on the TCP listeners with this PEM certificate chain (leaf first);
    /// needs --tls-key. Re-read on SIGHUP: new connections get the new certificate.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Reverse proxies whose X-Forwarded-For/-Proto/-Host or Forwarded headers set
    /// REMOTE_ADDR, wsgi.url_scheme and HTTP_HOST: IP addresses, CIDR networks, or
    /// `unix` for peers on --listen unix: sockets; comma-separated or repeatable
    /// [default: none, the headers are never acted on].
    #[arg(long, value_name = "IP|CIDR|unix", value_delimiter = ',', value_parser = forwarded::parse_peer)]
    #[serde(default, deserialize_with = "parsed_list")]
    pub forwarded_allow_ips: Vec<TrustedPeer>,
}

/// The first of these counts that was given as 0, refused by its option's name.
fn refuse_zero_counts(counts: &[(&str, Option<u64>)]) -> Result<(), String> {
    match counts.iter().find(|(_, value)| *value == Some(0)) {
        Some((name, _)) => Err(format!("{name} must be at least 1")),
        None => Ok(()),
    }
}

/// A list the command line gives replaces the file's.
fn pick<T: Clone>(file: &[T], command_line: &[T]) -> Vec<T> {
    if command_line.is_empty() { file } else { command_line }.to_vec()
}

impl ServerOptions {
    /// `self` (a config file's) with `more` (the command line's) on top.
    pub fn over(&self, more: &ServerOptions) -> ServerOptions {
        ServerOptions {
            listen: pick(&self.listen, &more.listen),
            socket_mode: more.socket_mode.or(self.socket_mode),
            server_name: more.server_name.clone().or_else(|| self.server_name.clone()),
            max_body_size: more.max_body_size.or(self.max_body_size),
            header_timeout: more.header_timeout.or(self.header_timeout),
            io_timeout: more.io_timeout.or(self.io_timeout),
            shutdown_grace: more.shutdown_grace.or(self.shutdown_grace),
            max_connections: more.max_connections.or(self.max_connections),
            total_instances: more.total_instances.or(self.total_instances),
            keep_resident: more.keep_resident.or(self.keep_resident),
            statics: pick(&self.statics, &more.statics),
            cache_dir: more.cache_dir.clone().or_else(|| self.cache_dir.clone()),
            no_cache: self.no_cache || more.no_cache,
            no_access_log: self.no_access_log || more.no_access_log,
            log_level: more.log_level.clone().or_else(|| self.log_level.clone()),
            log_format: more.log_format.or(self.log_format),
            access_log_format: more.access_log_format.or(self.access_log_format),
            admin_listen: more.admin_listen.clone().or_else(|| self.admin_listen.clone()),
            tls_cert: more.tls_cert.clone().or_else(|| self.tls_cert.clone()),
            tls_key: more.tls_key.clone().or_else(|| self.tls_key.clone()),
            forwarded_allow_ips: pick(&self.forwarded_allow_ips, &more.forwarded_allow_ips),
        }
    }

    /// Where to listen: the given addresses, or the default unless a service
    /// manager passed sockets in (`activated`).
    pub fn listen(&self, activated: bool) -> Vec<String> {
        if self.listen.is_empty() && !activated {
            vec![DEFAULT_LISTEN.to_owned()]
        } else {
            self.listen.clone()
        }
    }

    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            filter: self.log_level.clone().unwrap_or_else(|| log::DEFAULT_FILTER.to_owned()),
            format: self.log_format.unwrap_or(LogFormat::Text),
        }
    }

    /// Refuses what the flags' parsers refuse when a config file gave it: a count
    /// of 0 (a server that never accepts, an engine without a slot) or a timeout of
    /// 0 (every client timed out at once) is a mistake, not a setting.
    pub fn check(&self) -> Result<(), String> {
        refuse_zero_counts(&[
            ("max-connections", self.max_connections.map(u64::from)),
            ("total-instances", self.total_instances.map(u64::from)),
        ])?;
        let timeouts = [("header-timeout", self.header_timeout), ("io-timeout", self.io_timeout)];
        if let Some((name, _)) = timeouts.iter().find(|(_, value)| value.is_some_and(|t| t.is_zero())) {
            return Err(format!("{name} must be more than 0"));
        }
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_body_size: self.max_body_size.unwrap_or(DEFAULT_MAX_BODY_SIZE),
            header_timeout: self.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
            io_timeout: self.io_timeout.unwrap_or(DEFAULT_IO_TIMEOUT),
            shutdown_grace: self.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            max_connections: self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS) as usize,
        }
    }
}

pub fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} should be octal permissions such as 660")),
    }
}

/// `"660"` (octal, as on the command line).
fn octal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    parse_mode(&String::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `listen = "127.0.0.1:8000"` or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `static = { "/static" = "./static" }`.
fn static_mounts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, PathBuf)>, D::Error> {
    BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(prefix, dir)| static_files::parse_mount(&format!("{prefix}={dir}")).map_err(serde::de::Error::custom))
        .collect()
}

/// The `,key=value` list as an argument list for the flags' parser.
#[derive(Parser)]
#[command(no_binary_name = false, disable_help_flag = true, disable_version_flag = true)]
struct KeyValueArgs {
    #[command(flatten)]
    options: AppOptions,
}

/// clap's first line without its "error: " prefix or usage block.
fn clap_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// A size as a string ("128MiB") or a number of bytes.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(Some(n)),
        Size::Text(text) => parse_size(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

/// `env = { KEY = "value" }`, each checked as the flag checks `KEY=VALUE`.
fn env_table<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let table = BTreeMap::<String, String>::deserialize(d)?;
    table
        .into_iter()
        .map(|(key, value)| grants::parse_env(&format!("{key}={value}")).map_err(serde::de::Error::custom))
        .collect()
}

/// A list of grant strings, each parsed as the flag of the same name parses it.
fn parsed_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_use_the_flags_parsers() {
        let options = AppOptions::from_pairs(&[
            ("isolation".into(), "request".into()),
            ("max-memory".into(), "64MiB".into()),
            ("env".into(), "MODE=a=b".into()),
            ("allow-connect".into(), "127.0.0.1:5432".into()),
        ])
        .unwrap();
        assert_eq!(options.isolation, Some(Isolation::Request));
        assert_eq!(options.max_memory, Some(64 << 20));
        assert_eq!(options.env, [("MODE".to_owned(), "a=b".to_owned())]);
        assert_eq!(options.allow_connect[0].port, 5432);
        let err = AppOptions::from_pairs(&[("colour".into(), "blue".into())]).unwrap_err();
        assert!(
            err.contains("unknown option \"colour\"") && err.contains("max-memory"),
            "{err}"
        );
        let err = AppOptions::from_pairs(&[("allow-connect".into(), "127.0.0.1:99999".into())]).unwrap_err();
        assert!(err.contains("1-65535"), "{err}");
        let err = AppOptions::from_pairs(&[("max-memory".into(), "lots".into())]).unwrap_err();
        assert!(err.contains("lots") && err.contains("--max-memory"), "{err}");
        for count in ["instances", "max-requests"] {
            let zero = AppOptions::from_pairs(&[(count.into(), "0".into())]).unwrap();
            assert_eq!(zero.to_config().unwrap_err(), format!("{count} must be at least 1"));
        }
        for (timeout, ok) in [("0s", false), ("5ms", false), ("10ms", true), ("2s", true)] {
            let options = AppOptions::from_pairs(&[("cpu-timeout".into(), timeout.into())]).unwrap();
            match options.to_config() {
                Ok(config) => assert!(ok, "{timeout} taken as {:?}", config.cpu_timeout),
                Err(e) => assert!(
                    !ok && e == "cpu-timeout must be at least 10ms, the tick CPU time is counted in",
                    "{timeout}: {e}"
                ),
            }
        }
    }

    #[test]
    fn server_options_a_file_gives_are_held_to_the_flags_rules() {
        let check = |text: &str| toml::from_str::<ServerOptions>(text).unwrap().check();
        assert_eq!(
            check("max-connections = 0").unwrap_err(),
            "max-connections must be at least 1"
        );
        assert_eq!(
            check("total-instances = 0").unwrap_err(),
            "total-instances must be at least 1"
        );
        assert_eq!(
            check(r#"io-timeout = "0s""#).unwrap_err(),
            "io-timeout must be more than 0"
        );
        assert_eq!(
            check(r#"header-timeout = "0ms""#).unwrap_err(),
            "header-timeout must be more than 0"
        );
        assert_eq!(
            check("max-connections = 1\ntotal-instances = 8\nio-timeout = \"1s\"\nshutdown-grace = \"0s\""),
            Ok(())
        );
    }

    #[test]
    fn layers_override_values_and_add_grants() {
        let global = AppOptions {
            isolation: Some(Isolation::Request),
            instances: Some(3),
            env: vec![("GLOBAL".into(), "1".into())],
            ..Default::default()
        };
        let app = AppOptions {
            instances: Some(5),
            env: vec![("MODE".into(), "x".into())],
            ..Default::default()
        };
        let config = global.over(&app).to_config().unwrap();
        assert_eq!(config.isolation, Isolation::Request);
        assert_eq!(config.max_instances, 5);
        assert_eq!(config.grants.env.len(), 2);
        assert_eq!(config.max_queue, DEFAULT_QUEUE);
        assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn a_config_table_parses_into_the_same_struct() {
        let options: AppOptions = toml::from_str(
            r#"
            isolation = "request"
            max-memory = "128MiB"
            cpu-timeout = "2s"
            env = { STRIPE_KEY = "sk_test" }
            allow-connect = ["127.0.0.1:5432"]
            "#,
        )
        .unwrap();
        assert_eq!(options.isolation, Some(Isolation::Request));
        assert_eq!(options.max_memory, Some(128 << 20));
        assert_eq!(options.cpu_timeout, Some(Duration::from_secs(2)));
        assert_eq!(options.env, [("STRIPE_KEY".to_owned(), "sk_test".to_owned())]);
        let err = toml::from_str::<AppOptions>("colour = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn validate_is_strict_unless_told_warn() {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            options: AppOptions,
        }
        let parse = |argv: &[&str]| Flags::try_parse_from([&["serve"], argv].concat()).map(|f| f.options.validate);
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["--validate"]).unwrap(), Some(ValidateMode::Strict));
        assert_eq!(parse(&["--validate=warn"]).unwrap(), Some(ValidateMode::Warn));
        assert!(parse(&["--validate=maybe"]).is_err());
        let pairs = AppOptions::from_pairs(&[("validate".into(), "warn".into())]).unwrap();
        assert_eq!(pairs.to_config().unwrap().validate, Some(ValidateMode::Warn));
        let table: AppOptions = toml::from_str(r#"validate = "strict""#).unwrap();
        assert_eq!(table.validate, Some(ValidateMode::Strict));
    }

    #[test]
    fn record_options_parse_alike_everywhere_and_stack() {
        let pairs = AppOptions::from_pairs(&[
            ("record".into(), "/tmp/rec".into()),
            ("record-only".into(), "errors".into()),
            ("record-sample".into(), "10".into()),
        ])
        .unwrap();
        let expected = Some(RecordSettings {
            dir: "/tmp/rec".into(),
            only: RecordOnly::Errors,
            sample: 10,
        });
        assert_eq!(pairs.to_config().unwrap().record, expected);
        let table: AppOptions =
            toml::from_str("record = \"/tmp/rec\"\nrecord-only = \"errors\"\nrecord-sample = 10").unwrap();
        assert_eq!(table.to_config().unwrap().record, expected);
        assert!(AppOptions::from_pairs(&[("record-sample".into(), "0".into())]).is_err());
        let zero: AppOptions = toml::from_str("record = \"/tmp/rec\"\nrecord-sample = 0").unwrap();
        assert_eq!(zero.to_config().unwrap_err(), "record-sample must be at least 1");
        // Only the directory given: every request.
        let dir_only = AppOptions::from_pairs(&[("record".into(), "d".into())]).unwrap();
        let settings = dir_only.to_config().unwrap().record.unwrap();
        assert_eq!((settings.only, settings.sample), (RecordOnly::All, 1));
        // What to record, without where: a mistake, said at start.
        let stacked =
            AppOptions::default().over(&AppOptions::from_pairs(&[("record-only".into(), "errors".into())]).unwrap());
        assert!(stacked.to_config().unwrap_err().contains("give --record DIR"));
    }
}
