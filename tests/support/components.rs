//! Guest components the tests need, built once and reused while their sources are
//! unchanged (a Python component takes seconds to build).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn wsgi_wasm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wsgi-wasm"))
}

/// Compiled components shared by every test run (keyed by content, so always valid).
pub fn aot_cache_dir() -> PathBuf {
    target_dir().join("test-cache")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The Python fixture apps (tests/fixtures/python), one component routing
/// /<name>/... to <name>.py.
pub fn python_fixtures() -> PathBuf {
    let dir = repo_root().join("tests/fixtures/python");
    python_component("python-fixtures", "fixtures_app:app", &[&dir], &[])
}

/// The seed's demo_app (apps/demo).
pub fn demo() -> PathBuf {
    let dir = repo_root().join("apps/demo");
    python_component("demo", "demo_app:demo_app", &[&dir], &[])
}

/// Builds `target` with `wsgi-wasm build` unless a component from the same sources
/// (app dirs, the Python SDK, the WIT) is already there.
pub fn python_component(name: &str, target: &str, dirs: &[&Path], extra_args: &[&str]) -> PathBuf {
    let root = repo_root();
    let mut hash = Sha256::new();
    hash.update(target.as_bytes());
    for arg in extra_args {
        hash.update(arg.as_bytes());
    }
    for dir in dirs.iter().copied().chain([
        root.join("guest-sdk/python").as_path(),
        root.join("guest-sdk/wit").as_path(),
    ]) {
        hash_tree(&mut hash, dir);
    }
    let digest: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let out_dir = target_dir().join("test-components");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}-{digest}.wasm"));

    // Test binaries and tests run in parallel: one builds, the others wait.
    let lock = File::create(out_dir.join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    if !out.exists() {
        let tmp = out.with_extension("wasm.partial");
        let mut cmd = Command::new(wsgi_wasm_bin());
        cmd.arg("build").arg(target).arg("-o").arg(&tmp).current_dir(dirs[0]);
        for dir in dirs {
            cmd.arg("-p").arg(dir);
        }
        cmd.args(extra_args);
        let output = cmd.output().expect("running wsgi-wasm build");
        assert!(
            output.status.success(),
            "wsgi-wasm build {target} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

fn hash_tree(hash: &mut Sha256, dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "__pycache__" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            hash_tree(hash, &path);
        } else if !name.ends_with(".pyc") {
            // Every file counts: templates, static files and data are bundled too.
            hash.update(name.as_bytes());
            hash.update(std::fs::read(&path).unwrap());
        }
    }
}

/// The Rust fixture guest (tests/fixtures/rust), built for wasm32-wasip2.
pub fn rust_fixtures() -> PathBuf {
    rust_component("fixtures-rust", "fixtures_rust")
}

pub fn rust_component(package: &str, artifact: &str) -> PathBuf {
    let lock = File::create(target_dir().join(format!("{package}.lock"))).unwrap();
    lock.lock().unwrap();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", package])
        .current_dir(repo_root())
        .status()
        .expect("running cargo build for a Rust guest");
    assert!(status.success(), "building the {package} guest failed");
    target_dir().join(format!("wasm32-wasip2/release/{artifact}.wasm"))
}
