//! What a guest's store holds: its WASI context (granting nothing by default), its
//! resource limits, and the request it is serving, which the ABI imports act on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::engine::EPOCH_TICK;
use super::files::GrantedFiles;
use super::grants::{Grants, NetworkPolicy};
use super::outbound::{TlsConnections, TlsPolicy};
use super::tape::Tape;
use crate::log;
use crate::wsgi::exchange::Exchange;

/// Cap on one host computation for a guest when no CPU budget applies (outside a
/// request): a day is "unbounded" for any real use, and keeps Instant arithmetic
/// from overflowing.
const MAX_HOST_WORK: Duration = Duration::from_secs(24 * 3600);

pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: GuestLimits,
    /// The request being served; None between requests.
    pub exchange: Option<Exchange>,
    /// Epoch ticks this request has run for (its CPU time, in EPOCH_TICKs).
    pub cpu_ticks: u64,
    /// Ticks a request may run for (`--cpu-timeout`).
    pub cpu_budget: u64,
    app: Arc<str>,
    /// Where this guest may connect, and which names it may look up.
    pub network: Arc<NetworkPolicy>,
    /// TLS connections the host holds for this guest (`--allow-http https://`).
    pub tls: TlsConnections,
    /// The granted directories, for files the host sends (`send-file`).
    pub files: Arc<GrantedFiles>,
    /// The taped clocks and random generators, when requests are recorded or
    /// replayed; None otherwise (the host's own, untouched).
    pub tape: Option<Tape>,
    /// `wasi:random/insecure-seed` of this instance, for recordings.
    pub insecure_seed: u128,
}

impl GuestState {
    pub fn new(
        app: Arc<str>,
        max_memory: usize,
        grants: &Grants,
        network: Arc<NetworkPolicy>,
        tls: Arc<TlsPolicy>,
        files: Arc<GrantedFiles>,
        tape: Option<(Tape, u128)>,
    ) -> wasmtime::Result<Self> {
        let mut builder = WasiCtx::builder();
        let mut insecure_seed = 0;
        if let Some((tape, seed)) = &tape {
            tape.install(&mut builder, *seed);
            insecure_seed = *seed;
        }
        let tape = tape.map(|(tape, _)| tape);
        builder
            .stdout(LogStream {
                app: app.clone(),
                stream: "stdout",
            })
            .stderr(LogStream {
                app: app.clone(),
                stream: "stderr",
            })
            .envs(&grants.env);
        for dir in &grants.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder.preopened_dir(&dir.host, &dir.guest, perms)?;
        }
        if !network.is_empty() {
            // TCP only, and only to granted destinations. Name lookups are served by
            // the shadowed ip-name-lookup (runtime::network), which answers granted
            // names and IP literals without ever asking DNS about anything else.
            let policy = network.clone();
            let app = app.clone();
            let tape = tape.clone();
            builder
                .allow_tcp(true)
                .allow_udp(false)
                .allow_ip_name_lookup(true)
                .socket_addr_check(move |addr, use_| {
                    let allowed = socket_use_allowed(&policy, addr, use_);
                    if allowed && let Some(tape) = &tape {
                        tape.note_unrecorded(UNRECORDED_SOCKETS);
                    }
                    if !allowed {
                        log::app(&app, "denied", denial_message(addr, use_));
                    }
                    Box::pin(async move { allowed })
                });
        }
        let wasi = builder.build();
        Ok(GuestState {
            wasi,
            table: ResourceTable::new(),
            limits: GuestLimits {
                inner: StoreLimitsBuilder::new().memory_size(max_memory).build(),
                largest_memory: 0,
                refused_growth: false,
            },
            exchange: None,
            cpu_ticks: 0,
            cpu_budget: u64::MAX,
            app,
            network,
            tls: TlsConnections::new(tls),
            files,
            tape,
            insecure_seed,
        })
    }

    /// Notes, in a recording, a host service whose results it does not hold.
    pub fn note_unrecorded(&self, what: &str) {
        if let Some(tape) = &self.tape {
            tape.note_unrecorded(what);
        }
    }

    pub fn app_name(&self) -> &str {
        &self.app
    }

    /// When host work done for this request (outside wasm, where epochs do not
    /// count) must stop: the CPU time the request has left, from now.
    pub fn cpu_deadline(&self) -> Instant {
        let left = self.cpu_budget.saturating_sub(self.cpu_ticks);
        let left = EPOCH_TICK.saturating_mul(u32::try_from(left).unwrap_or(u32::MAX));
        Instant::now() + left.min(MAX_HOST_WORK)
    }

    /// Counts host work done for the guest as its CPU time.
    pub fn charge_cpu(&mut self, spent: Duration) {
        let ticks = spent.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        self.cpu_ticks = self.cpu_ticks.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
    }
}

/// How a recording names the connections it does not hold the bytes of.
const UNRECORDED_SOCKETS: &str = "outbound connections (--allow-connect, --allow-http)";

/// A connection to a granted destination, and the implicit bind that comes with
/// it; never a listening socket or an explicit bind to an address of its own.
fn socket_use_allowed(policy: &NetworkPolicy, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    match use_ {
        SocketAddrUse::TcpConnect => policy.may_connect(addr),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        _ => false,
    }
}

fn denial_message(addr: SocketAddr, use_: SocketAddrUse) -> String {
    match use_ {
        SocketAddrUse::TcpConnect => {
            format!(
                "connection to {addr} refused: not granted (allow it with --allow-connect {addr}, or --allow-http http(s)://{addr} for HTTP)"
            )
        }
        SocketAddrUse::TcpBind => format!("bind to {addr} refused: apps may only make outbound connections"),
        _ => format!("{use_:?} on {addr} refused: apps may only make outbound TCP connections"),
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// wasmtime's per-store limits, plus a record of how large the guest's biggest
/// linear memory has grown (memories never shrink, so this is what it holds now).
pub struct GuestLimits {
    inner: StoreLimits,
    pub largest_memory: usize,
    /// A growth past --max-memory was refused since the last request started.
    pub refused_growth: bool,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.largest_memory = self.largest_memory.max(desired);
        } else {
            self.refused_growth = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Guest stdout/stderr: complete lines go to the server log tagged with the app.
#[derive(Clone)]
struct LogStream {
    app: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            target: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    target: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        log::app(&self.target.app, self.target.stream, text);
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= log::MAX_LOG_LINE {
                    self.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
