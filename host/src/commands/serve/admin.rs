//! `--admin-listen`: binds the admin listener and starts serving it; the
//! endpoints themselves are in wsgi_wasm::http::admin.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

use wsgi_wasm::http::admin::{self, AdminState};
use wsgi_wasm::metrics::Metrics;
use wsgi_wasm::runtime::App;

/// The running admin listener; dropping it stops it.
pub struct Admin {
    pub state: Arc<AdminState>,
    /// `http://HOST:PORT/` as bound (port 0 resolved).
    pub shown: String,
    task: JoinHandle<()>,
}

pub async fn start(addr: &str, apps: &[Arc<App>]) -> Result<Admin> {
    let metrics = Arc::new(Metrics::new().context("cannot set up the metrics")?);
    metrics.set_apps(apps.to_vec());
    let listener = super::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --admin-listen {addr}"))?;
    let shown = format!("http://{}/", listener.local_addr()?);
    let state = AdminState::new(metrics);
    let task = tokio::spawn(admin::serve(listener, state.clone()));
    Ok(Admin { state, shown, task })
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
