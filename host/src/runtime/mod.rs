//! Everything wasmtime: the engine, compiled-component cache, the ABI bindings,
//! guest state and the instances that serve requests.

pub mod app;
pub mod bindings;
pub mod cache;
pub mod capacity;
pub mod components;
pub mod crypto;
pub mod engine;
pub mod files;
pub mod grants;
pub mod guest_memory;
pub mod imports;
pub mod network;
pub mod outbound;
pub mod random;
pub mod state;
pub mod tape;

use std::path::PathBuf;
use std::sync::Arc;

pub use app::{App, AppConfig, Isolation};
pub use grants::Grants;

use capacity::Capacity;
use components::Components;
use engine::EngineSettings;

/// What all apps of a server share: the engine with its instance slots, and the
/// components loaded so far.
pub struct Runtime {
    pub components: Components,
    pub capacity: Arc<Capacity>,
    pub settings: EngineSettings,
}

impl Runtime {
    /// `cache_dir`: where compiled components are kept between runs (None: compile
    /// at every start).
    pub fn new(settings: EngineSettings, cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let engine = engine::new_engine(settings)?;
        Ok(Runtime {
            components: Components::new(engine, cache_dir),
            capacity: Capacity::new(settings.max_instances as usize),
            settings,
        })
    }
}
