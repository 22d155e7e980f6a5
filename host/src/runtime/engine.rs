//! The one wasmtime Engine a server uses, and the epoch clock that bounds guest CPU.

use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// The wasmtime that compiles and runs components (compiled code and the cache
/// depend on it), for `wsgi-wasm --version` and bug reports.
pub const WASMTIME_VERSION: &str = wasmtime_environ::VERSION;

/// Granularity of CPU-time accounting and of fairness: a running guest yields to
/// other requests at least this often, and a CPU limit is enforced to within one
/// tick. 10 ms keeps the epoch thread's cost negligible.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Native stack a guest may use. Deep recursion traps (stack overflow) long before
/// this; 1 MiB is twice wasmtime's default, because CPython's interpreter loop uses
/// large frames and its own recursion limit should fire first.
pub const MAX_WASM_STACK: usize = 1024 * 1024;

/// Per-component shape limits for the pooling allocator. A componentize-py app is
/// about ten core modules (libc, libpython, the runtime, WASI adapters) linked at
/// instantiation, with one shared linear memory plus a few small ones and large
/// indirect-call tables; these bounds fit that with room to spare.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
const MAX_TABLES_PER_COMPONENT: u32 = 16;
/// Function-table entries: CPython's table holds every function pointer of the
/// interpreter and its extension modules (tens of thousands).
const MAX_TABLE_ELEMENTS: usize = 200_000;
/// Instance metadata (globals, vmctx) of one core instance and one component.
const MAX_CORE_INSTANCE_SIZE: usize = 4 << 20;
const MAX_COMPONENT_INSTANCE_SIZE: usize = 4 << 20;
/// Memory kept mapped in a freed slot instead of being returned to the OS, so the
/// next instance in that slot faults fewer pages in, at the price of resetting it
/// by copying. For a Python hello in request isolation (examples/isolation_cost)
/// 0 measured 1228 us per call, 1 MiB 1268 us, 8 MiB 1522 us, 32 MiB 1935 us:
/// CPython's first touches are spread over its heap, so the copy never pays off.
const KEEP_RESIDENT_BYTES: usize = 0;

/// What the engine must be able to host.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Instances alive at once, all apps together (pool slots are preallocated).
    pub max_instances: u32,
    /// Linear memory one instance may grow to.
    pub max_memory: usize,
}

pub fn new_engine(settings: EngineSettings) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.max_wasm_stack(MAX_WASM_STACK);
    // Fill function tables when an instance is created, not on each entry's first
    // call: CPython calls thousands of distinct table entries in its first
    // request, and one batch costs less than a libcall apiece. A fresh Python hello
    // instance (examples/isolation_cost, request isolation) went from 1228 us to
    // 1070 us per call; pooled calls are unaffected (19-20 us).
    config.table_lazy_init(false);
    // The fiber stack hosts the wasm stack plus host frames of the import calls.
    config.async_stack_size(MAX_WASM_STACK + 1024 * 1024);

    // Preallocated slots with copy-on-write memory images: a fresh instance maps
    // the component's initialised heap instead of copying it.
    let slots = settings.max_instances;
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(slots)
        .total_core_instances(slots * MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * MAX_MEMORIES_PER_COMPONENT)
        .total_tables(slots * MAX_TABLES_PER_COMPONENT)
        .total_stacks(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_core_instance_size(MAX_CORE_INSTANCE_SIZE)
        .max_component_instance_size(MAX_COMPONENT_INSTANCE_SIZE)
        .max_memory_size(settings.max_memory)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let engine = Engine::new(&config)?;
    start_epoch_clock(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every tick, on a thread of its own so the clock
/// keeps running when every tokio worker is busy running guests.
fn start_epoch_clock(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-clock".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch clock thread");
}
