//! Everything wasmtime: the engine, compiled-component cache, the ABI bindings,
//! guest state and the instances that serve requests.

pub mod app;
pub mod bindings;
pub mod cache;
pub mod capacity;
pub mod components;
pub mod crypto;
pub mod engine;
pub mod fault_around;
pub mod files;
pub mod grants;
pub mod guest_memory;
pub mod imports;
pub mod network;
pub mod outbound;
pub mod random;
pub mod state;
pub mod tape;
pub mod turns;

use std::path::PathBuf;
use std::sync::Arc;

pub use app::{App, AppConfig, Isolation};
pub use grants::Grants;

use capacity::Capacity;
use components::Components;
use engine::EngineSettings;
use fault_around::FaultAround;
use turns::Turns;

/// What all apps of a server share: the engine with its instance slots (and
/// whether they get the kernel's fault-around), the components loaded so far, and
/// the turns at running guest code.
pub struct Runtime {
    pub components: Components,
    pub capacity: Arc<Capacity>,
    pub turns: Arc<Turns>,
    pub fault_around: Arc<FaultAround>,
    pub settings: EngineSettings,
}

impl Runtime {
    /// `cache_dir`: where compiled components are kept between runs (None: compile
    /// at every start).
    pub fn new(settings: EngineSettings, cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let (engine, fault_around) = engine::new_engine(settings)?;
        Ok(Runtime {
            components: Components::new(engine, cache_dir),
            capacity: Capacity::new(settings.max_instances as usize),
            turns: Turns::for_current_runtime(),
            fault_around: Arc::new(fault_around),
            settings,
        })
    }
}
