//! TLS on the TCP listeners (`--tls-cert`/`--tls-key`) with rustls, and the
//! certificate reload on SIGHUP.
//!
//! The rustls config is built once; its certificate comes from a resolver that holds
//! the current certificate and key. A reload swaps what the resolver holds, so
//! handshakes after it get the new certificate while connections already open keep
//! the session they negotiated.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, anyhow};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// ALPN protocols offered, preferred first: HTTP/2 when the client can, else HTTP/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap().clone())
    }
}

impl Tls {
    /// Loads the certificate chain and key; fails with a message naming the file and
    /// what is wrong with it (missing, unreadable, no PEM, key not matching).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let certified = load_pair(cert, key)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again. On any error the certificate in use stays, and the error
    /// says why the new one was not taken.
    pub fn reload(&self) -> Result<()> {
        let certified = load_pair(&self.cert, &self.key)?;
        *self.current.0.write().unwrap() = Arc::new(certified);
        Ok(())
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("cannot read the TLS certificate {}: {}", cert.display(), pem_error(e)))?;
    if chain.is_empty() {
        return Err(anyhow!("{} holds no PEM certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("cannot read the TLS key {}: {}", key.display(), pem_error(e)))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        anyhow!(
            "the TLS key {} does not fit the certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

fn pem_error(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}
