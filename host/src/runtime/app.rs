//! A loaded application: its compiled component, linked once (InstancePre), and
//! the instances that serve its requests.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::Rng;

use super::Runtime;
use super::bindings::WsgiApp;
use super::cache::Source;
use super::capacity::{Capacity, SlotPermit};
use super::components::Linked;
use super::engine::EPOCH_TICK;
use super::fault_around::FaultAround;
use super::files::GrantedFiles;
use super::grants::{Grants, NetworkPolicy};
use super::outbound::TlsPolicy;
use super::state::GuestState;
use super::tape::Tape;
use super::turns::{self, Turns};
use crate::log;
use crate::wsgi::Usage;
use crate::wsgi::environ::Environ;
use crate::wsgi::exchange::{Exchange, Outcome};
use crate::wsgi::recording::{AppContext, HostValues, RecordSettings, Recorder};
use crate::wsgi::validate::{ValidateMode, pack_for_call};
use crate::wsgi::{Application, Finished};

/// How long a guest may keep instances between requests, per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Warm instances are reused for many requests, like WSGI worker processes:
    /// module globals survive between requests.
    Pooled,
    /// Every request gets a fresh instance: nothing survives between requests.
    Request,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// An instance is replaced after this many requests (in request
    /// isolation, after being rewound for this many).
    pub max_requests_per_instance: u64,
    /// Instances unused this long are dropped, returning their memory.
    pub idle_timeout: Duration,
    /// What the sandbox grants beyond nothing: environment variables,
    /// directories, outbound TCP destinations.
    pub grants: Grants,
    /// `--validate`: PEP 3333 checks on every request, and what a violation does.
    pub validate: Option<ValidateMode>,
    /// `--record DIR`: requests written to files for `wsgi-wasm replay`.
    pub record: Option<RecordSettings>,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Pooled => "pooled",
            Isolation::Request => "request",
        }
    }
}

/// What a call does with the instance's taped clocks and random generators.
enum Taping {
    /// Serving: the request is recorded if the app's recorder samples it.
    Serve,
    /// `wsgi-wasm replay`: a fresh instance is handed these values.
    Replay(HostValues),
}

struct Instance {
    store: Store<GuestState>,
    bindings: WsgiApp,
    /// Request isolation: the store as instantiation left it, which each request
    /// rewinds it to (see `rewind`). None where wasmtime cannot rewind it (the
    /// debug log says why) or in pooled mode: then a fresh instance is made instead.
    fresh: Option<Fresh>,
    served: u64,
    /// When it last finished a request (or was created), for reclaiming.
    idle_since: Instant,
    /// Its share of the server's instance slots, freed with it.
    _slot: SlotPermit,
}

pub struct App {
    name: Arc<str>,
    linked: Arc<Linked>,
    capacity: Arc<Capacity>,
    turns: Arc<Turns>,
    fault_around: Arc<FaultAround>,
    engine: wasmtime::Engine,
    config: AppConfig,
    /// `config.grants.connect`, resolved once at load.
    network: Arc<NetworkPolicy>,
    /// `config.grants.http`'s https origins and the roots to verify them with.
    tls: Arc<TlsPolicy>,
    /// `config.grants.dirs`, opened once at load, for the files the host sends.
    files: Arc<GrantedFiles>,
    idle: Mutex<Vec<Instance>>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Spare instances being created in the background (request isolation).
    refilling: AtomicUsize,
    /// Instances created, and (request isolation) rewound for another request,
    /// since the app was loaded: for /metrics.
    created: AtomicU64,
    rewound: AtomicU64,
    /// `config.record`'s writer; its instances get taped clocks and generators.
    recorder: Option<Arc<Recorder>>,
}

/// What rewinding a request-isolated instance puts back besides the store's
/// wasm state: the memory the limiter saw at instantiation.
struct Fresh {
    state: wasmtime::FreshState,
    memory: usize,
}

/// Fresh instances kept ready in request isolation where instances cannot be
/// rewound (or one was not: it trapped, or it had served --max-requests). One
/// hides instantiation from a request's latency whenever the server is not
/// saturated; more would only hold memory, since each still costs the same CPU
/// to create. Instances that are rewound come back by themselves.
pub const SPARE_INSTANCES: usize = 1;

/// A pooled instance whose linear memory grew past this many quarters of
/// --max-memory is replaced after its request. Memory never shrinks; 3/4 leaves
/// a quarter for the next request's peak, so it does not fail for lack of room
/// an instance with a fresh heap would have.
const RECYCLE_AT_QUARTERS: usize = 3;

/// How many times the first instantiation is tried when sealing a memory image fails
/// with EBUSY. wasmtime builds each core module's initial memory image at the first
/// instantiation, in a sealed memfd; the kernel refuses F_SEAL_WRITE while any of the
/// file's pages still holds a transient extra reference (its per-CPU page batches
/// under load), which CI hit once in about 170 app starts. wasmtime does not keep the
/// failure, so another try builds the image anew; five covers the ~1 s a loaded
/// machine may need, and a real fault still fails the start.
const IMAGE_SEAL_ATTEMPTS: usize = 5;
/// The pause before the next try, multiplied by the attempt number.
const IMAGE_SEAL_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether a failed instantiation is the transient EBUSY of sealing a memory image.
fn is_transient_seal_failure(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.to_string().contains("seals")
            && cause
                .source()
                .and_then(|source| source.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ResourceBusy)
    })
}

/// An instance slot held past the call: dropping it tears down the retired
/// instance (resetting its memory takes a while), then frees the slot.
pub struct Slot {
    app: Option<Arc<App>>,
    _permit: Option<OwnedSemaphorePermit>,
    retired: Option<Instance>,
    /// Request isolation: the instance that served, to be rewound to its fresh
    /// state and made idle again once the response is out.
    to_rewind: Option<Instance>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.retired.take());
        if let (Some(app), Some(instance)) = (&self.app, self.to_rewind.take()) {
            app.rewind(instance);
        }
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
    /// Instances created since the app was loaded.
    pub created: u64,
    /// Request isolation: instances rewound to their fresh state for another
    /// request (instead of creating one) since the app was loaded.
    pub rewound: u64,
}

/// What loading found, for the startup log.
pub struct LoadReport {
    pub source: Source,
    pub load_time: Duration,
}

impl App {
    /// Compiles (or loads from cache, or shares with another app) and links the
    /// component, and registers the app for instance slots. Fails with a message
    /// naming the file and the problem. Blocking: call it off the async workers.
    /// `name` tags the app in the log; the default is the file's stem.
    pub fn load(
        runtime: &Runtime,
        path: &Path,
        name: Option<&str>,
        config: AppConfig,
    ) -> Result<(Arc<App>, LoadReport)> {
        let started = Instant::now();
        // Before compiling: a grant that cannot work should not cost seconds to find.
        for origin in &config.grants.http {
            NetworkPolicy::resolve(&[origin.destination()])
                .map_err(|_| anyhow::anyhow!("--allow-http {origin}: the name does not resolve"))?;
        }
        let network = NetworkPolicy::resolve(&config.grants.tcp_destinations()).map_err(anyhow::Error::msg)?;
        let tls = TlsPolicy::new(&config.grants.http, config.grants.ca_file.as_deref()).map_err(anyhow::Error::msg)?;
        let files = GrantedFiles::open(&config.grants.dirs).context("--dir")?;
        let (linked, source) = runtime.components.load(path)?;
        let name: Arc<str> = match name {
            Some(name) => name.into(),
            None => path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default().into(),
        };
        let recorder = match &config.record {
            Some(settings) => {
                Some(Recorder::new(settings, recording_context(&name, &config)).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        let app = Arc::new(App {
            recorder,
            network,
            tls,
            files,
            name,
            linked,
            capacity: runtime.capacity.clone(),
            turns: runtime.turns.clone(),
            fault_around: runtime.fault_around.clone(),
            engine: runtime.components.engine().clone(),
            slots: Arc::new(Semaphore::new(config.max_instances)),
            config,
            idle: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            refilling: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            rewound: AtomicU64::new(0),
        });
        runtime.capacity.register(&app);
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

    /// The compiled and linked component it runs.
    pub fn linked(&self) -> &Arc<Linked> {
        &self.linked
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
            created: self.created.load(Ordering::Relaxed),
            rewound: self.rewound.load(Ordering::Relaxed),
        }
    }

    /// Creates one instance now, so a component that fails to start is reported
    /// before the server binds its port, and the first request finds it warm.
    pub async fn warm_up(&self) -> Result<()> {
        let mut attempt = 1;
        let instance = loop {
            match self.instantiate().await {
                Ok(instance) => break instance,
                Err(error) if attempt < IMAGE_SEAL_ATTEMPTS && is_transient_seal_failure(&error) => {
                    log::warn(format_args!(
                        "app {}: the kernel refused for a moment to seal a memory image ({error:#}); trying again",
                        self.name
                    ));
                    tokio::time::sleep(IMAGE_SEAL_RETRY_PAUSE * attempt as u32).await;
                    attempt += 1;
                }
                Err(error) => return Err(error.context(format!("app {} failed to start", self.name))),
            }
        };
        // Never called yet, so it is also a valid spare in request isolation.
        self.idle.lock().unwrap().push(instance);
        Ok(())
    }

    /// Runs one WSGI call. The caller finishes the response with the returned
    /// exchange, then drops the result: only then is a retired instance torn down
    /// and its slot freed, so teardown never delays the response.
    pub async fn call(self: &Arc<Self>, environ: Environ, exchange: Exchange) -> Finished {
        // A bounded queue: past it, answering 503 at once beats making clients wait.
        let admitted = self.config.max_queue.saturating_add(self.config.max_instances);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= admitted {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Finished {
                exchange,
                outcome: Outcome::QueueFull,
                held: Box::new(()),
                usage: None,
            };
        }
        // The call computes only while it holds one of the server's turns (see
        // runtime::turns); waiting for a free instance gives it up like any wait.
        let (slot, exchange, outcome, usage) = self
            .turns
            .take(async {
                let mut slot = self.take_slot().await;
                let (exchange, outcome, usage, _) =
                    self.call_in_slot(environ, exchange, &mut slot, Taping::Serve).await;
                (slot, exchange, outcome, usage)
            })
            .await;
        Finished {
            exchange,
            outcome,
            held: Box::new(slot),
            usage,
        }
    }

    /// Runs one recorded call again (`wsgi-wasm replay`): a fresh instance, as
    /// serve would make one, whose clocks and random generators hand back
    /// `values`. Also returns which recorded source ran out, if the app asked for
    /// more than the recording holds.
    pub async fn replay(
        self: &Arc<Self>,
        environ: Environ,
        exchange: Exchange,
        values: HostValues,
    ) -> (Finished, Option<String>) {
        let mut slot = self.take_slot().await;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let (exchange, outcome, usage, shortfall) = self
            .call_in_slot(environ, exchange, &mut slot, Taping::Replay(values))
            .await;
        let finished = Finished {
            exchange,
            outcome,
            held: Box::new(slot),
            usage,
        };
        (finished, shortfall)
    }

    /// Waits for one of the app's instance slots; the slot frees it when dropped.
    async fn take_slot(self: &Arc<Self>) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        Slot {
            app: Some(self.clone()),
            _permit: Some(permit),
            retired: None,
            to_rewind: None,
        }
    }

    async fn call_in_slot(
        self: &Arc<Self>,
        environ: Environ,
        mut exchange: Exchange,
        slot: &mut Slot,
        taping: Taping,
    ) -> (Exchange, Outcome, Option<Usage>, Option<String>) {
        let replaying = matches!(taping, Taping::Replay(_));
        let instance = match &taping {
            Taping::Replay(values) => {
                // Checked when the file was read.
                let seed = values.insecure_seed.parse().unwrap_or_default();
                self.instantiate_with(Some(seed)).await
            }
            Taping::Serve => {
                let reused = self.idle.lock().unwrap().pop();
                let comes_back = reused.as_ref().is_some_and(|instance| instance.fresh.is_some());
                if self.config.isolation == Isolation::Request && !comes_back {
                    // The spare just taken is replaced in the background (an
                    // instance that can be rewound comes back by itself).
                    self.refill_spare();
                }
                match reused {
                    Some(instance) => Ok(instance),
                    None => self.instantiate().await,
                }
            }
        };
        let mut instance = match instance {
            Ok(instance) => instance,
            Err(e) => {
                return (
                    exchange,
                    Outcome::Trap(format!("instantiation failed: {e:#}")),
                    None,
                    None,
                );
            }
        };
        let store = &mut instance.store;
        let tape = store.data().tape.clone();
        let mut recording = false;
        match (taping, &tape) {
            (Taping::Replay(values), Some(tape)) => tape.start_replaying(values),
            (Taping::Serve, Some(tape)) => {
                if let Some(mut transcript) = self.recorder.as_ref().and_then(|r| r.begin(&environ)) {
                    // A rewound instance is as fresh as a new one: no call before.
                    transcript.instance_calls_before = if instance.fresh.is_some() { 0 } else { instance.served };
                    exchange.record(transcript);
                    tape.start_recording();
                    recording = true;
                }
            }
            (_, None) => {}
        }
        store.data_mut().exchange = Some(exchange);
        store.data_mut().cpu_ticks = 0;
        store.data_mut().limits.refused_growth = false;
        store.set_epoch_deadline(1);
        let result = instance
            .bindings
            .call_call(&mut *store, &pack_for_call(&environ, self.config.validate))
            .await;
        let mut exchange = store
            .data_mut()
            .exchange
            .take()
            .expect("exchange stays in the store during the call");
        // A response the guest returned instead of sending it through the imports.
        let result = match result {
            Ok(Ok(packed)) if !packed.is_empty() => Ok(exchange.respond_packed(&packed).await),
            Ok(Ok(_)) => Ok(Ok(())),
            Ok(Err(message)) => Ok(Err(message)),
            Err(trap) => Err(trap),
        };
        let mut shortfall = None;
        if let Some(tape) = &tape {
            if recording
                && let Some(mut values) = tape.take_recording()
                && let Some(transcript) = exchange.transcript_mut()
            {
                values.insecure_seed = store.data().insecure_seed.to_string();
                transcript.host = values;
            }
            if replaying {
                shortfall = tape.take_replay_shortfall();
            }
        }
        store.data_mut().tls.end_request();
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
        let bloated = store.data().limits.largest_memory > self.config.max_memory / 4 * RECYCLE_AT_QUARTERS;
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
        // Serves again unless it trapped or stopped mid-call (its state is then
        // not one to resume from), replayed, or served --max-requests: pooled as
        // it is (unless bloated), request-isolated rewound after the response.
        let reusable = !replaying
            && !matches!(outcome, Outcome::Trap(_) | Outcome::CpuTimeout(_))
            && instance.served < self.config.max_requests_per_instance;
        let keep = reusable && self.config.isolation == Isolation::Pooled && !bloated;
        let rewind = reusable && self.config.isolation == Isolation::Request && instance.fresh.is_some();
        if keep {
            instance.idle_since = Instant::now();
            self.idle.lock().unwrap().push(instance);
        } else if rewind {
            slot.to_rewind = Some(instance);
        } else {
            if instance.fresh.is_some() && !replaying {
                // It would have come back by itself; a spare takes its place.
                self.refill_spare();
            }
            slot.retired = Some(instance);
        }
        (exchange, outcome, Some(usage), shortfall)
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
        // A recorded app's instances get taped clocks and generators, and a seed
        // of their own that recordings can name.
        self.instantiate_with(self.new_tape_seed()).await
    }

    /// The host side of a fresh instance: its WASI context, limits, and (for a
    /// recorded app) taped clocks and generators with a new seed.
    fn new_guest_state(&self, tape_seed: Option<u128>) -> Result<GuestState> {
        let mut state = GuestState::new(
            self.name.clone(),
            self.config.max_memory,
            &self.config.grants,
            self.network.clone(),
            self.tls.clone(),
            self.files.clone(),
            tape_seed.map(|seed| (Tape::default(), seed)),
        )?;
        state.cpu_budget = (self.config.cpu_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        Ok(state)
    }

    /// A seed for a recorded app's taped generators, which recordings can name.
    fn new_tape_seed(&self) -> Option<u128> {
        self.recorder.is_some().then(|| {
            let mut host = wasmtime_wasi::thread_rng();
            (u128::from(host.next_u64()) << 64) | u128::from(host.next_u64())
        })
    }

    /// Request isolation: puts an instance that served a request back as it
    /// was right after instantiation, with a new host state, and makes it idle
    /// again. Its linear memory is reset from the component's image exactly as
    /// freeing its slot would; tables, globals and handle tables are restored
    /// (wasmtime's `Store::rewind`, host/patches/README.md). Nothing the request
    /// left stays reachable. If anything cannot be rewound, the instance is
    /// dropped and a spare takes its place.
    fn rewind(self: &Arc<Self>, mut instance: Instance) {
        let fresh = instance
            .fresh
            .as_ref()
            .expect("only instances with a fresh state are rewound");
        let rewound = instance
            .store
            .rewind(&fresh.state)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let mut state = self.new_guest_state(self.new_tape_seed())?;
                state.limits.largest_memory = fresh.memory;
                *instance.store.data_mut() = state;
                Ok(())
            });
        match rewound {
            Ok(()) => {
                self.rewound.fetch_add(1, Ordering::Relaxed);
                instance.idle_since = Instant::now();
                self.idle.lock().unwrap().push(instance);
            }
            Err(e) => {
                tracing::debug!(target: "wsgi_wasm", app = &*self.name, "instance not rewound, replacing it: {e:#}");
                drop(instance);
                self.refill_spare();
            }
        }
    }

    /// `tape_seed`: taped clocks and generators, with this insecure seed.
    async fn instantiate_with(&self, tape_seed: Option<u128>) -> Result<Instance> {
        let slot = self.capacity.acquire().await;
        let state = self.new_guest_state(tape_seed)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Each tick the guest spends running costs one unit of its CPU budget and
        // yields to the executor; its call gives its turn up at every second such
        // yield (runtime::turns), so one busy guest cannot starve other requests.
        // Host work done for it (key derivation) is charged to the same count.
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                return Err(Trap::Interrupt.into());
            }
            turns::mark_fairness_yield();
            // tokio's yield_now puts the task at the back of the run queue; a
            // plain self-wake could be polled again at once, before other requests.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        store.set_epoch_deadline(1);
        let bindings = self.linked.pre.instantiate_async(&mut store).await?;
        self.created.fetch_add(1, Ordering::Relaxed);
        // Before the guest first reads its memory (runtime::fault_around).
        self.fault_around.cover_new_mappings();
        let fresh = if self.config.isolation == Isolation::Request {
            match store.capture_fresh_state() {
                Ok(state) => Some(Fresh {
                    state,
                    memory: store.data().limits.largest_memory,
                }),
                Err(e) => {
                    tracing::debug!(
                        target: "wsgi_wasm",
                        app = &*self.name,
                        "instances cannot be rewound, each request gets a new one: {e:#}"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Instance {
            store,
            bindings,
            fresh,
            served: 0,
            idle_since: Instant::now(),
            _slot: slot,
        })
    }

    /// When the longest-idle instance became idle, if any is.
    pub(super) fn oldest_idle(&self) -> Option<Instant> {
        self.idle.lock().unwrap().first().map(|i| i.idle_since)
    }

    /// Drops the longest-idle instance if it is still the one idle since `since`
    /// (a request may have taken it meanwhile). True if one was dropped.
    pub(super) fn drop_idle_since(&self, since: Instant) -> bool {
        let dropped = {
            let mut idle = self.idle.lock().unwrap();
            match idle.first() {
                Some(first) if first.idle_since == since => Some(idle.remove(0)),
                _ => None,
            }
        };
        // Torn down outside the lock: resetting an instance's memory takes a while.
        dropped.is_some()
    }

    /// Drops the instances idle since before `cutoff`.
    pub(super) fn drop_idle_before(&self, cutoff: Instant) {
        let expired: Vec<Instance> = {
            let mut idle = self.idle.lock().unwrap();
            // Oldest first: instances are pushed as they become idle.
            let n = idle.iter().take_while(|i| i.idle_since < cutoff).count();
            idle.drain(..n).collect()
        };
        drop(expired);
    }

    /// Instances alive now (idle ones), for the startup log and tests.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

impl Application for App {
    fn name(&self) -> &str {
        &self.name
    }

    fn handle(
        self: Arc<Self>,
        environ: Environ,
        exchange: Exchange,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Finished> + Send>> {
        Box::pin(async move { self.call(environ, exchange).await })
    }
}

/// How this app's recordings describe it.
fn recording_context(name: &str, config: &AppConfig) -> AppContext {
    let grants = &config.grants;
    let unrecorded_grants = (grants.dirs.iter())
        .map(|dir| format!("--dir {}:{}", dir.host.display(), dir.guest))
        .chain(grants.connect.iter().map(|c| format!("--allow-connect {c}")))
        .chain(grants.http.iter().map(|o| format!("--allow-http {o}")))
        .collect();
    AppContext {
        name: name.to_owned(),
        isolation: config.isolation.as_str().to_owned(),
        validate: config.validate.map(|mode| mode.as_str().to_owned()),
        env: grants.env.clone(),
        unrecorded_grants,
    }
}

fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trapped: {trap}"),
        None => format!("failed: {error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the memfd crate's error that wasmtime passes on: its own
    /// message, the io::Error as its source.
    #[derive(Debug)]
    struct SealError(std::io::Error);
    impl std::fmt::Display for SealError {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("cannot add seals to the memfd")
        }
    }
    impl std::error::Error for SealError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_a_busy_seal_is_tried_again() {
        let busy = || std::io::Error::from(std::io::ErrorKind::ResourceBusy);
        let sealing = anyhow::Error::new(SealError(busy())).context("instantiating");
        assert!(is_transient_seal_failure(&sealing));
        let other_seal = anyhow::Error::new(SealError(std::io::Error::from(std::io::ErrorKind::PermissionDenied)));
        assert!(!is_transient_seal_failure(&other_seal));
        assert!(!is_transient_seal_failure(&anyhow::Error::new(busy())));
        assert!(!is_transient_seal_failure(&anyhow::anyhow!("out of memory")));
    }
}
