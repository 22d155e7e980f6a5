//! The one wasmtime Engine a server uses, and the epoch clock that bounds guest CPU.

use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::fault_around::FaultAround;

/// The wasmtime that compiles and runs components (compiled code and the cache
/// depend on it), for `wsgi-wasm --version` and bug reports.
pub const WASMTIME_VERSION: &str = wasmtime_environ::VERSION;

/// The changes our copy of wasmtime carries (host/patches/README.md), for
/// `wsgi-wasm --version`. Naming the constant the patch adds also makes a build
/// against an unpatched wasmtime fail to compile rather than run slower.
pub const WASMTIME_PATCH: &str = wasmtime::WSGI_WASM_PATCH;

/// Granularity of CPU-time accounting and of fairness: a running guest yields at
/// every tick and gives its turn to other requests at least every second one
/// (runtime::turns), and a CPU limit is enforced to within one tick. 10 ms keeps
/// the epoch thread's cost negligible.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Native stack a guest may use. Deep recursion traps (stack overflow) long before
/// this; 1 MiB is twice wasmtime's default, because CPython's interpreter loop uses
/// large frames and its own recursion limit should fire first.
pub const MAX_WASM_STACK: usize = 1024 * 1024;
/// Native stack for the host's own frames beside the guest's on a fiber: the async
/// import calls (hyper, rustls, the filesystem) and wasmtime's trampolines. As much
/// as the guest gets; the whole test suite, outbound TLS included, runs within it.
const HOST_FRAMES_STACK: usize = 1024 * 1024;

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
/// `EngineSettings::keep_resident` for a server whose apps create an instance
/// per request (`--isolation request`): the pages a request wrote stay mapped in
/// its slot, reset by copying from the component's image, so the next instance
/// there takes no copy-on-write fault for each page CPython writes again (~300
/// per Python hello request, ~1.3 us each). A Flask request dirties 2-4 MiB
/// (examples/isolation_cost, request isolation: 1,776 us per call keeping 2 MiB,
/// 1,081 at 4, 1,088 at 8, 1,085 at 16); 16 MiB leaves room for heavier
/// frameworks.
pub const REQUEST_ISOLATION_KEEP_RESIDENT: usize = 16 << 20;
/// The same for function tables, whenever linear memory is kept: CPython's is
/// ~5,700 entries (45 KiB).
const TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// What the engine must be able to host.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Instances alive at once, all apps together (pool slots are preallocated).
    pub max_instances: u32,
    /// Linear memory one instance may grow to.
    pub max_memory: usize,
    /// Written linear memory a freed instance slot keeps mapped for the next
    /// instance in it instead of returning it to the OS (0: keep none). Applies
    /// only where wasmtime can find the written pages (PAGEMAP_SCAN, Linux 6.7+).
    pub keep_resident: usize,
}

/// The engine, and whether its instance slots get the kernel's fault-around (off
/// where slots keep their memory: runtime::fault_around).
pub fn new_engine(settings: EngineSettings) -> Result<(Engine, FaultAround)> {
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
    config.async_stack_size(MAX_WASM_STACK + HOST_FRAMES_STACK);

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
        .max_memory_size(settings.max_memory);
    // Keeping memory resident pays only when wasmtime can tell written pages from
    // the others (PAGEMAP_SCAN, Linux 6.7 and later), and finds all of them (our
    // patch, host/patches): without the scan wasmtime resets the whole kept span
    // by copying, which measured slower than returning it (Python hello, request
    // isolation: 1,228 us per call keeping nothing, 1,522 us keeping 8 MiB). With
    // it, 1,170 -> 375 us, together with the funcref change of the same patch.
    let keeps_memory = settings.keep_resident > 0 && PoolingAllocationConfig::is_pagemap_scan_available();
    if keeps_memory {
        pooling
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(settings.keep_resident)
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let (engine, fault_around) = if keeps_memory {
        // Every slot reserves at least the largest memory an instance may have.
        let min_pool_size = ((slots * MAX_MEMORIES_PER_COMPONENT) as usize).saturating_mul(settings.max_memory);
        FaultAround::off_in_pool_of(min_pool_size, || Ok(Engine::new(&config)?))?
    } else {
        (Engine::new(&config)?, FaultAround::kept())
    };
    start_epoch_clock(&engine);
    Ok((engine, fault_around))
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
