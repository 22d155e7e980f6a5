use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use wsgi_wasm::runtime::cache::{self, Source};
use wsgi_wasm::runtime::engine::EngineSettings;
use wsgi_wasm::runtime::{App, AppConfig, Isolation, Runtime};

/// Compile apps ahead of time into the cache `serve` loads from, and check that
/// each fits the wsgi-wasm ABI and starts: a deploy step, so the first `serve`
/// takes milliseconds instead of seconds.
#[derive(Parser)]
pub struct CompileCommand {
    /// Components to compile.
    #[arg(required = true, value_name = "APP.wasm")]
    apps: Vec<PathBuf>,

    /// The cache to fill; give `serve` the same one [default: $XDG_CACHE_HOME/wsgi-wasm or ~/.cache/wsgi-wasm].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Only used to start each app once; the cache key does not depend on it.
const CHECK_MEMORY: usize = 256 << 20;

impl CompileCommand {
    pub fn execute(self) -> Result<()> {
        let cache_dir = self
            .cache_dir
            .or_else(cache::default_dir)
            .context("no cache directory: set HOME or XDG_CACHE_HOME, or pass --cache-dir")?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let host = Runtime::new(
            EngineSettings {
                max_instances: 2,
                max_memory: CHECK_MEMORY,
                keep_resident: 0,
            },
            Some(cache_dir.clone()),
        )
        .context("cannot set up the WebAssembly engine")?;
        for path in &self.apps {
            let config = AppConfig {
                isolation: Isolation::Pooled,
                max_memory: CHECK_MEMORY,
                max_instances: 1,
                max_queue: 0,
                cpu_timeout: Duration::from_secs(30),
                max_requests_per_instance: 1,
                idle_timeout: Duration::from_secs(1),
                grants: Default::default(),
                validate: None,
                record: None,
            };
            let (app, report) = App::load(&host, path, None, config)?;
            runtime.block_on(app.warm_up())?;
            let how = match report.source {
                Source::Cached | Source::Shared => "already compiled",
                Source::Compiled => "compiled",
            };
            eprintln!(
                "{}: {how} in {:.1?}, starts; cached in {}",
                path.display(),
                report.load_time,
                cache_dir.display()
            );
        }
        Ok(())
    }
}
