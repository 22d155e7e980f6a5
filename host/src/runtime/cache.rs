//! Compiled components cached on disk: compiling a Python component takes seconds,
//! loading the compiled form takes milliseconds.
//!
//! The key is the component's SHA-256 plus the engine's compatibility hash (wasmtime
//! version, target, every setting that changes generated code), so a changed app or
//! engine configuration never loads stale code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::log;

/// Where compiled components live unless `--cache-dir` says otherwise.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("wsgi-wasm"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".cache/wsgi-wasm"))
}

pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let mut sha = Sha256::new();
    sha.update(wasm);
    sha.update(engine_hash.finish().to_le_bytes());
    sha.update(env!("CARGO_PKG_VERSION").as_bytes());
    let digest = sha.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a component was obtained, for the startup log and the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cached,
    Compiled,
    /// Already loaded by the server for another app using the same file.
    Shared,
}

/// Loads the compiled form from `dir` if present, else compiles and stores it.
/// A cache that cannot be written is not fatal: the server runs, just slower to start.
///
/// The component is always used from its cache file when there is one, even right
/// after compiling it: wasmtime then maps each instance's initial memory from the
/// file (copy-on-write) instead of from an anonymous copy, and a fresh instance
/// faults in fewer, larger pieces (see [`warm_page_cache`]).
pub fn load_or_compile(engine: &Engine, wasm: &[u8], dir: Option<&Path>) -> Result<(Component, Source)> {
    let Some(dir) = dir else {
        return Ok((compile(engine, wasm)?, Source::Compiled));
    };
    let path = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
    if path.exists() {
        warm_page_cache(&path);
        match deserialize(engine, &path) {
            Ok(component) => return Ok((component, Source::Cached)),
            Err(e) => log::server(format!("ignoring unusable cache entry {}: {e}", path.display())),
        }
    }
    let component = compile(engine, wasm)?;
    if let Err(e) = store(&component, dir, &path) {
        log::server(format!(
            "warning: could not cache the compiled component in {}: {e:#}",
            dir.display()
        ));
        return Ok((component, Source::Compiled));
    }
    // Just written, so already in the page cache the way warm_page_cache leaves it.
    match deserialize(engine, &path) {
        Ok(from_file) => Ok((from_file, Source::Compiled)),
        // Written but not readable back (a full disk, say): the compiled one works.
        Err(_) => Ok((component, Source::Compiled)),
    }
}

fn deserialize(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the file was written by `store` below from `Component::serialize`
    // with the same engine settings (they are part of the key), and the cache
    // directory is created private to this user. Wasmtime re-checks the
    // header and compatibility hash before using it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
}

/// Bytes read per call by [`warm_page_cache`]: large enough that 40 MiB of Python
/// component takes ~40 calls, small enough to be a trivial allocation.
const WARM_READ_BYTES: usize = 1 << 20;

/// Reads the file once, front to back, before it is mapped. Sequential reads let
/// the kernel's readahead fill the page cache with large folios; left to the
/// faults of the mapping it gets small ones, and every fresh instance (request
/// isolation) then takes more page faults to map its initial memory. Measured on
/// Linux 6.18 with the hello app, `--isolation request`: ~1,200 us per request
/// with a cold page cache, ~1,040 us after this read (332 -> 286 faults per
/// request). A failed read only loses that gain: wasmtime reports real errors.
fn warm_page_cache(path: &Path) {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let mut buffer = vec![0; WARM_READ_BYTES];
    while let Ok(n) = file.read(&mut buffer) {
        if n == 0 {
            break;
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    Component::from_binary(engine, wasm).map_err(anyhow::Error::from)
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    create_private_dir(dir)?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    // Write then rename, so a concurrent server never loads a half-written file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Anyone who can write the cache can run native code in this process, so the
/// directory is made readable and writable by its owner only.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}
