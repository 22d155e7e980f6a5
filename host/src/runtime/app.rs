//! A loaded application: its compiled component, linked once (InstancePre), and
//! the instances that serve its requests.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::{WsgiApp, WsgiAppPre};
use super::cache::{self, Source};
use super::engine::EPOCH_TICK;
use super::grants::{Grants, NetworkPolicy};
use super::state::GuestState;
use crate::environ::Environ;
use crate::http::access_log::Usage;
use crate::http::exchange::{Exchange, Outcome};
use crate::log;

/// How long a guest may keep instances between requests, per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Warm instances are reused for many requests, like WSGI worker processes:
    /// module globals survive between requests.
    Pooled,
    /// Every request gets a fresh instance: nothing survives between requests.
    Request,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub isolation: Isolation,
    /// Linear memory one instance may grow to.
    pub max_memory: usize,
    /// Instances serving at once; more requests wait in the queue.
    pub max_instances: usize,
    /// Requests waiting for an instance before new ones get 503.
    pub max_queue: usize,
    /// CPU time one request may use before it is stopped.
    pub cpu_timeout: Duration,
    /// In pooled mode, an instance is replaced after this many requests.
    pub max_requests_per_instance: u64,
    /// What the sandbox grants beyond nothing: environment variables,
    /// directories, outbound TCP destinations.
    pub grants: Grants,
}

struct Instance {
    store: Store<GuestState>,
    bindings: WsgiApp,
    served: u64,
}

pub struct App {
    name: Arc<str>,
    engine: Engine,
    pre: WsgiAppPre<GuestState>,
    config: AppConfig,
    /// `config.grants.connect`, resolved once at load.
    network: Arc<NetworkPolicy>,
    idle: Mutex<Vec<Instance>>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Spare instances being created in the background (request isolation).
    refilling: AtomicUsize,
}

/// Fresh instances kept ready in request isolation. One hides instantiation
/// from a request's latency whenever the server is not saturated; more would
/// only hold memory, since each still costs the same CPU to create.
pub const SPARE_INSTANCES: usize = 1;

/// A call that has returned. Finish the response with `exchange` first, then
/// drop this: the instance slot (and a retired instance) is released on drop.
pub struct Finished {
    pub exchange: Exchange,
    pub outcome: Outcome,
    pub slot: Slot,
    /// What the guest used; None when no instance ran the call (queue full).
    pub usage: Option<Usage>,
}

/// An instance slot held past the call: dropping it tears down the retired
/// instance (resetting its memory takes a while), then frees the slot.
pub struct Slot {
    app: Option<Arc<App>>,
    _permit: Option<OwnedSemaphorePermit>,
    retired: Option<Instance>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.retired.take());
        if let Some(app) = &self.app {
            app.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub struct PoolStats {
    /// Instance slots in use: serving a request, or tearing a retired instance down.
    pub busy: usize,
    /// Warm instances waiting for a request.
    pub idle: usize,
    /// Requests waiting for a free slot.
    pub queued: usize,
}

/// What loading found, for the startup log.
pub struct LoadReport {
    pub source: Source,
    pub load_time: Duration,
}

impl App {
    /// Reads, compiles (or loads from cache) and links the component. Fails with a
    /// message naming the file and the problem; nothing is served until this passes.
    pub fn load(
        engine: &Engine,
        path: &Path,
        config: AppConfig,
        cache_dir: Option<&Path>,
    ) -> Result<(App, LoadReport)> {
        let started = Instant::now();
        // Before compiling: a grant that cannot work should not cost seconds to find.
        let network = NetworkPolicy::resolve(&config.grants.connect).map_err(anyhow::Error::msg)?;
        let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_is_component(path, &wasm)?;
        let (component, source) = cache::load_or_compile(engine, &wasm, cache_dir)
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        let pre = link(engine, &component).with_context(|| {
            format!(
                "{} does not fit the wsgi-wasm ABI (world wsgi-wasm:wsgi/wsgi-app)",
                path.display()
            )
        })?;
        let name: Arc<str> = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default().into();
        let app = App {
            network,
            name,
            engine: engine.clone(),
            pre,
            slots: Arc::new(Semaphore::new(config.max_instances)),
            config,
            idle: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            refilling: AtomicUsize::new(0),
        };
        Ok((
            app,
            LoadReport {
                source,
                load_time: started.elapsed(),
            },
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the app (its tag in the log); the default is the file's stem.
    pub fn with_name(mut self, name: &str) -> App {
        self.name = name.into();
        self
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The pool as of now, for /metrics.
    pub fn pool_stats(&self) -> PoolStats {
        let busy = self.config.max_instances - self.slots.available_permits();
        PoolStats {
            busy,
            idle: self.idle.lock().unwrap().len(),
            queued: self.waiting.load(Ordering::Acquire).saturating_sub(busy),
        }
    }

    /// Creates one instance now, so a component that fails to start is reported
    /// before the server binds its port, and the first request finds it warm.
    pub async fn warm_up(&self) -> Result<()> {
        let instance = self
            .instantiate()
            .await
            .with_context(|| format!("app {} failed to start", self.name))?;
        // Never called yet, so it is also a valid spare in request isolation.
        self.idle.lock().unwrap().push(instance);
        Ok(())
    }

    /// Runs one WSGI call. The caller finishes the response with the returned
    /// exchange, then drops the result: only then is a retired instance torn down
    /// and its slot freed, so teardown never delays the response.
    pub async fn call(self: &Arc<Self>, environ: Environ, exchange: Exchange) -> Finished {
        // A bounded queue: past it, answering 503 at once beats making clients wait.
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.config.max_queue + self.config.max_instances {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let outcome = Outcome::Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is overloaded; try again later.",
            );
            return Finished {
                exchange,
                outcome,
                slot: Slot {
                    app: None,
                    _permit: None,
                    retired: None,
                },
                usage: None,
            };
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let mut slot = Slot {
            app: Some(self.clone()),
            _permit: Some(permit),
            retired: None,
        };
        let (exchange, outcome, usage) = self.call_in_slot(environ, exchange, &mut slot).await;
        Finished {
            exchange,
            outcome,
            slot,
            usage,
        }
    }

    async fn call_in_slot(
        self: &Arc<Self>,
        environ: Environ,
        exchange: Exchange,
        slot: &mut Slot,
    ) -> (Exchange, Outcome, Option<Usage>) {
        let reused = self.idle.lock().unwrap().pop();
        if self.config.isolation == Isolation::Request {
            // The spare just taken is replaced in the background.
            self.refill_spare();
        }
        let mut instance = match reused {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok(instance) => instance,
                Err(e) => return (exchange, Outcome::Trap(format!("instantiation failed: {e:#}")), None),
            },
        };
        let store = &mut instance.store;
        store.data_mut().exchange = Some(exchange);
        store.data_mut().cpu_ticks = 0;
        store.data_mut().limits.refused_growth = false;
        store.set_epoch_deadline(1);
        let result = instance
            .bindings
            .call_call(&mut *store, &crate::environ::pack(&environ))
            .await;
        let exchange = store
            .data_mut()
            .exchange
            .take()
            .expect("exchange stays in the store during the call");
        instance.served += 1;
        let usage = Usage {
            cpu: EPOCH_TICK * u32::try_from(store.data().cpu_ticks).unwrap_or(u32::MAX),
            peak_memory: store.data().limits.largest_memory,
            hit_memory_limit: store.data().limits.refused_growth,
        };
        let outcome = match result {
            Ok(Ok(())) => Outcome::Completed,
            Ok(Err(message)) => Outcome::AppError(message),
            Err(trap) if matches!(trap.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => Outcome::CpuTimeout(format!(
                "stopped after using its {:?} of CPU time",
                self.config.cpu_timeout
            )),
            Err(trap) => Outcome::Trap(describe_trap(&trap)),
        };
        // Linear memory never shrinks: an instance whose heap grew close to the
        // limit (a burst, fragmentation, a leak) is replaced, which returns the
        // memory and keeps the next request from failing for lack of it.
        let bloated = store.data().limits.largest_memory > self.config.max_memory / 4 * 3;
        if bloated && self.config.isolation == Isolation::Pooled {
            log::app(
                &self.name,
                "recycle",
                format!(
                    "instance grew to {} MiB of {} MiB; replacing it",
                    store.data().limits.largest_memory >> 20,
                    self.config.max_memory >> 20
                ),
            );
        }
        let keep = self.config.isolation == Isolation::Pooled
            && !matches!(outcome, Outcome::Trap(_) | Outcome::CpuTimeout(_))
            && !bloated
            && instance.served < self.config.max_requests_per_instance;
        if keep {
            self.idle.lock().unwrap().push(instance);
        } else {
            slot.retired = Some(instance);
        }
        (exchange, outcome, Some(usage))
    }

    /// In request isolation, keeps SPARE_INSTANCES fresh, never-used instances
    /// ready, created off the request path while the server has time.
    fn refill_spare(self: &Arc<Self>) {
        if self.refilling.fetch_add(1, Ordering::AcqRel) + self.idle.lock().unwrap().len() >= SPARE_INSTANCES {
            self.refilling.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let app = self.clone();
        tokio::spawn(async move {
            match app.instantiate().await {
                Ok(instance) => app.idle.lock().unwrap().push(instance),
                Err(e) => log::app(&app.name, "error", format!("could not prepare a spare instance: {e:#}")),
            }
            app.refilling.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn instantiate(&self) -> Result<Instance> {
        let state = GuestState::new(
            self.name.clone(),
            self.config.max_memory,
            &self.config.grants,
            self.network.clone(),
        )?;
        let budget = (self.config.cpu_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        let mut store = Store::new(&self.engine, state);
        store.data_mut().cpu_budget = budget;
        store.limiter(|state| &mut state.limits);
        // Each tick the guest spends running costs one unit of its CPU budget and
        // yields to the executor, so one busy guest cannot starve other requests.
        // Host work done for it (key derivation) is charged to the same count.
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                return Err(Trap::Interrupt.into());
            }
            // tokio's yield_now puts the task at the back of the run queue; a
            // plain self-wake could be polled again at once, before other requests.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        store.set_epoch_deadline(1);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            bindings,
            served: 0,
        })
    }
}

fn link(engine: &Engine, component: &Component) -> Result<WsgiAppPre<GuestState>> {
    let mut linker = Linker::<GuestState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    super::network::add_to_linker(&mut linker)?;
    super::imports::add_to_linker(&mut linker)?;
    let pre = linker.instantiate_pre(component)?;
    Ok(WsgiAppPre::new(pre)?)
}

/// A clearer message than the parser's for the two common mistakes.
fn check_is_component(path: &Path, wasm: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        bail!(
            "{} is not a WebAssembly file (no \\0asm header); build one with `wsgi-wasm build`",
            path.display()
        );
    }
    // Bytes 6-7 are the "layer": 0 for a core module, 1 for a component.
    if wasm[6..8] == [0, 0] {
        bail!(
            "{} is a core WebAssembly module, not a component; build Python apps with `wsgi-wasm build` and Rust apps for the wasm32-wasip2 target",
            path.display()
        );
    }
    Ok(())
}

fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trapped: {trap}"),
        None => format!("failed: {error:#}"),
    }
}
