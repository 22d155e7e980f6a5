//! The one wasmtime Engine a server uses, and the epoch clock that bounds guest CPU.

use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Engine, OptLevel};

/// Granularity of CPU-time accounting and of fairness: a running guest yields to
/// other requests at least this often, and a CPU limit is enforced to within one
/// tick. 10 ms keeps the epoch thread's cost negligible.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Native stack a guest may use. Deep recursion traps (stack overflow) long before
/// this; 1 MiB is twice wasmtime's default, because CPython's interpreter loop uses
/// large frames and its own recursion limit should fire first.
pub const MAX_WASM_STACK: usize = 1024 * 1024;

pub fn new_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.max_wasm_stack(MAX_WASM_STACK);
    // The fiber stack hosts the wasm stack plus host frames of the import calls.
    config.async_stack_size(MAX_WASM_STACK + 1024 * 1024);
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
