//! Outbound HTTPS for guests (`--allow-http https://...`): the host does the TLS.
//!
//! The sandbox's CPython has no OpenSSL. Rather than a TLS stack compiled into
//! every guest, the host lends its own (rustls) through the `tls` interface of
//! guest-sdk/wit/wsgi.wit: the guest asks for a connection to HOST:PORT, the host
//! checks that `https://HOST:PORT` was granted, opens the TCP connection itself to
//! the address the name resolved to at start (the same one the sandbox sees),
//! verifies the server's certificate for HOST against the system's roots plus
//! `--ca-file`, and hands the guest a handle it reads and writes plaintext through.
//! The SDK's `ssl` module wraps that handle in an `SSLSocket`, so http.client,
//! urllib.request and requests work unchanged. What the guest cannot do: reach an
//! ungranted origin, skip or weaken verification (its CA and verify settings are
//! not consulted), or keep a connection past the request that opened it.
//!
//! Waiting for the network happens outside wasm, where epochs do not count, so
//! it costs the request no CPU time; it is bounded by [`OUTBOUND_TIMEOUT`] per
//! operation instead.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use anyhow::Result as LinkResult;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

use super::grants::{HttpOrigin, NetworkPolicy};
use super::imports::latin1_piece;
use super::state::GuestState;
use crate::log;

/// The interface's name as the component imports it.
pub const TLS_INTERFACE: &str = "wsgi-wasm:wsgi/tls@0.3.0";

/// Longest wait for one connect, handshake, read or write. Outbound calls are
/// made while a client waits for the app's answer; an API that has not answered
/// in 30 s has failed for that client (and 30 s is the usual default of HTTP
/// clients and of --cpu-timeout), so the app gets an error it can handle instead.
pub const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes one request may send and receive through the host's TLS, counted
/// over all its connections. Above what an app could hold in its memory (256 MiB
/// by default) it could only be a loop pulling data forever on the host's
/// bandwidth; real API calls move kilobytes.
pub const MAX_OUTBOUND_BYTES_PER_REQUEST: u64 = 256 << 20;
/// TLS connections one request may hold open at once. Each costs the host a
/// socket and rustls's buffers (tens of KiB); an app calling a few APIs needs a
/// few, so more is a leak or a fan-out the operator did not plan for.
pub const MAX_CONNECTIONS_PER_REQUEST: usize = 16;
/// Most plaintext bytes one read returns: what the SDK's socket reads ask for
/// (http.client's buffer is 8 KiB), with room for bigger reads.
pub const MAX_READ: u32 = 64 * 1024;

/// What an app's https grants resolve to, shared by its instances.
pub struct TlsPolicy {
    origins: HashSet<(String, u16)>,
    /// None when the app has no https origin (no roots loaded for nothing).
    connector: Option<TlsConnector>,
}

impl TlsPolicy {
    /// Loads the trusted roots once, at start: the system's (rustls-native-certs,
    /// so the operator's CA store and its updates apply, as they do for curl)
    /// plus every certificate in `ca_file`. A CA file that cannot be read or holds
    /// no certificate is a configuration error.
    pub fn new(origins: &[HttpOrigin], ca_file: Option<&Path>) -> Result<Arc<TlsPolicy>, String> {
        let origins: HashSet<(String, u16)> = origins
            .iter()
            .filter(|o| o.https)
            .map(|o| (o.host.clone(), o.port))
            .collect();
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca-file {}: no PEM certificate in it", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            }
        }
        if origins.is_empty() {
            return Ok(Arc::new(TlsPolicy {
                origins,
                connector: None,
            }));
        }
        // Unreadable system certificates are skipped, as curl and OpenSSL do; the
        // connection then fails on verification, naming the server.
        let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(TlsPolicy {
            origins,
            connector: Some(TlsConnector::from(Arc::new(config))),
        }))
    }

    pub fn is_granted(&self, host: &str, port: u16) -> bool {
        self.origins.contains(&(host.to_owned(), port))
    }
}

/// One guest's open TLS connections and what its request has moved through them.
pub struct TlsConnections {
    policy: Arc<TlsPolicy>,
    open: HashMap<u32, TlsStream<TcpStream>>,
    next_handle: u32,
    bytes: u64,
}

impl TlsConnections {
    pub fn new(policy: Arc<TlsPolicy>) -> TlsConnections {
        TlsConnections {
            policy,
            open: HashMap::new(),
            next_handle: 1,
            bytes: 0,
        }
    }

    /// Closes every connection the request opened: none outlives it.
    pub fn end_request(&mut self) {
        self.open.clear();
        self.bytes = 0;
    }

    /// A verified TLS connection to the granted origin `https://host:port`.
    /// Errors are for the guest; a "not granted" one is also worth a log line,
    /// which the caller writes.
    pub async fn connect(&mut self, network: &NetworkPolicy, host: &str, port: u16) -> Result<u32, ConnectError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let origin = HttpOrigin {
            https: true,
            host: host.clone(),
            port,
        };
        let (Some(connector), true) = (&self.policy.connector, self.policy.is_granted(&host, port)) else {
            return Err(ConnectError::NotGranted(origin.to_string()));
        };
        if self.open.len() >= MAX_CONNECTIONS_PER_REQUEST {
            return Err(ConnectError::Failed(format!(
                "too many TLS connections open in this request (at most {MAX_CONNECTIONS_PER_REQUEST}); close some first"
            )));
        }
        let ip = network
            .lookup(&host)
            .ok_or_else(|| ConnectError::Failed(format!("{origin}: no address for {host}")))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| ConnectError::Failed(format!("{origin}: not a valid server name: {e}")))?;
        let tcp = within(
            OUTBOUND_TIMEOUT,
            "connect",
            TcpStream::connect(SocketAddr::new(ip, port)),
        )
        .await
        .map_err(|e| ConnectError::Failed(format!("{} ({origin})", describe(&e))))?;
        let _ = tcp.set_nodelay(true);
        let stream = within(OUTBOUND_TIMEOUT, "TLS handshake", connector.connect(name, tcp))
            .await
            .map_err(|e| ConnectError::Failed(format!("{} ({origin})", describe(&e))))?;
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.open.insert(handle, stream);
        Ok(handle)
    }

    /// Up to `max` plaintext bytes; empty when the server has closed.
    pub async fn read(&mut self, handle: u32, max: u32) -> Result<Vec<u8>, String> {
        let stream = self.open.get_mut(&handle).ok_or_else(closed)?;
        let mut buf = vec![0; max.clamp(1, MAX_READ) as usize];
        let n = match within(OUTBOUND_TIMEOUT, "read", stream.read(&mut buf)).await {
            Ok(n) => n,
            // A server closing without close_notify: the end of the data, as
            // Python's ssl treats it by default (suppress_ragged_eofs).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(describe(&e)),
        };
        buf.truncate(n);
        self.count(n)?;
        Ok(buf)
    }

    pub async fn write(&mut self, handle: u32, data: &[u8]) -> Result<(), String> {
        self.count(data.len())?;
        let stream = self.open.get_mut(&handle).ok_or_else(closed)?;
        within(OUTBOUND_TIMEOUT, "write", async {
            stream.write_all(data).await?;
            stream.flush().await
        })
        .await
        .map_err(|e| describe(&e))
    }

    pub fn close(&mut self, handle: u32) {
        self.open.remove(&handle);
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.bytes > MAX_OUTBOUND_BYTES_PER_REQUEST {
            return Err(format!(
                "this request moved more than {} MiB through outbound TLS, the limit",
                MAX_OUTBOUND_BYTES_PER_REQUEST >> 20
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum ConnectError {
    /// The origin, as `https://host:port`.
    NotGranted(String),
    Failed(String),
}

fn closed() -> String {
    "the TLS connection is closed".to_owned()
}

async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} timed out after {limit:?}"),
        )),
    }
}

/// The guest's SDK maps these prefixes to Python's exceptions: "certificate
/// verify failed" to SSLCertVerificationError, "timed out" to TimeoutError.
fn describe(error: &std::io::Error) -> String {
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => format!("certificate verify failed: {why:?}"),
        Some(other) => format!("TLS error: {other}"),
        None if error.kind() == std::io::ErrorKind::TimedOut => format!("timed out: {error}"),
        None => error.to_string(),
    }
}

/// Longest host name a guest may pass: a DNS name is at most 253 bytes written out
/// (RFC 1035's 255 on the wire), plus a trailing dot.
const MAX_HOST_NAME_BYTES: usize = 254;

/// Registers the `tls` interface. Like the `server` one (imports.rs), by hand, so
/// written data is read out of guest memory only after its size is checked.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> LinkResult<()> {
    let mut tls = linker.instance(TLS_INTERFACE)?;
    tls.func_wrap_async(
        "connect",
        |mut store: StoreContextMut<'_, GuestState>, (host, port): (WasmStr, u16)| {
            Box::new(async move {
                let host = match host.to_str(&store) {
                    Ok(host) if host.len() <= MAX_HOST_NAME_BYTES => host.into_owned(),
                    _ => return Ok((Err("not a valid host name".to_owned()),)),
                };
                let state = store.data_mut();
                state.note_unrecorded("outbound TLS connections (--allow-http https)");
                let network = state.network.clone();
                match state.tls.connect(&network, &host, port).await {
                    Ok(handle) => Ok((Ok(handle),)),
                    Err(ConnectError::NotGranted(origin)) => {
                        log::app(
                            state.app_name(),
                            "denied",
                            format!("TLS connection to {origin} refused: not granted (allow it with --allow-http {origin})"),
                        );
                        Ok((Err(format!(
                            "not granted: {origin} is not an origin this app may call; the server must allow it with --allow-http {origin}"
                        )),))
                    }
                    Err(ConnectError::Failed(message)) => Ok((Err(message),)),
                }
            })
        },
    )?;
    tls.func_wrap_async(
        "read",
        |mut store: StoreContextMut<'_, GuestState>, (handle, max): (u32, u32)| {
            Box::new(async move { Ok((store.data_mut().tls.read(handle, max).await,)) })
        },
    )?;
    tls.func_wrap_async(
        "write",
        |mut store: StoreContextMut<'_, GuestState>, (handle, data): (u32, WasmStr)| {
            Box::new(async move {
                let data = match latin1_piece(&store, &data) {
                    Ok(data) => data,
                    Err(message) => return Ok((Err(message),)),
                };
                Ok((store.data_mut().tls.write(handle, &data).await,))
            })
        },
    )?;
    tls.func_wrap(
        "close",
        |mut store: StoreContextMut<'_, GuestState>, (handle,): (u32,)| {
            store.data_mut().tls.close(handle);
            Ok(())
        },
    )?;
    Ok(())
}
