//! The components a server has loaded, shared between apps: a thousand tenants
//! running twenty distinct components compile (or load from the disk cache) and
//! link twenty, and hold each one's code in memory once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, Result, bail};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::{ABI_VERSION, WsgiAppPre};
use super::cache::{self, Source};
use super::state::GuestState;

/// A compiled component linked against the host's imports, ready to instantiate.
pub struct Linked {
    pub pre: WsgiAppPre<GuestState>,
}

/// Identifies one version of a component file without reading it: a deploy
/// replaces the file (new inode or new mtime), so a changed file is loaded anew
/// while a thousand apps naming the same unchanged file share one load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileVersion {
    path: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl FileVersion {
    fn of(path: &Path) -> Result<FileVersion> {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(FileVersion {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        })
    }
}

pub struct Components {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<FileVersion, Weak<Linked>>>,
}

impl Components {
    pub fn new(engine: Engine, cache_dir: Option<PathBuf>) -> Components {
        Components {
            engine,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether `path` still holds the version `app` was loaded from.
    pub fn is_current(&self, path: &Path, app: &super::App) -> bool {
        let Ok(version) = FileVersion::of(path) else {
            return false;
        };
        let loaded = self.loaded.lock().unwrap().get(&version).and_then(Weak::upgrade);
        loaded.is_some_and(|linked| Arc::ptr_eq(&linked, app.linked()))
    }

    /// The component in `path`, linked; shared with every other app using the
    /// same version of the same file. Blocking (reads and maybe compiles): call
    /// it off the async workers.
    pub fn load(&self, path: &Path) -> Result<(Arc<Linked>, Source)> {
        let version = FileVersion::of(path)?;
        if let Some(linked) = self.loaded.lock().unwrap().get(&version).and_then(Weak::upgrade) {
            return Ok((linked, Source::Shared));
        }
        let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_is_component(path, &wasm)?;
        let (component, source) = cache::load_or_compile(&self.engine, &wasm, self.cache_dir.as_deref())
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        let pre = link(&self.engine, &component).with_context(|| {
            format!(
                "{} does not fit the wsgi-wasm ABI (world wsgi-wasm:wsgi/wsgi-app@{}); \
                 a component built by another version of wsgi-wasm must be built again",
                path.display(),
                ABI_VERSION
            )
        })?;
        let linked = Arc::new(Linked { pre });
        let mut loaded = self.loaded.lock().unwrap();
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(version, Arc::downgrade(&linked));
        Ok((linked, source))
    }
}

fn link(engine: &Engine, component: &Component) -> Result<WsgiAppPre<GuestState>> {
    let mut linker = Linker::<GuestState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    super::network::add_to_linker(&mut linker)?;
    super::random::add_to_linker(&mut linker)?;
    super::imports::add_to_linker(&mut linker)?;
    super::outbound::add_to_linker(&mut linker)?;
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
