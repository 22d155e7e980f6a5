//! The framework example apps (apps/<framework>), built with `wsgi-wasm build -r
//! requirements.txt` the way their READMEs say. Each is built once per change of
//! its files; installed requirements are cached by content under the test cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::components::{aot_cache_dir, python_component, repo_root};

pub fn flask() -> PathBuf {
    framework("flask", "app:app", &[])
}

pub fn bottle() -> PathBuf {
    framework("bottle", "app:app", &[])
}

pub fn falcon() -> PathBuf {
    framework("falcon", "app:app", &[])
}

pub fn pyramid() -> PathBuf {
    framework("pyramid", "app:app", &[])
}

/// apps/notes-db: notes in PostgreSQL (pg8000), Redis (redis-py) or SQLite.
pub fn notes_db() -> PathBuf {
    framework("notes-db", "app:app", &[])
}

/// apps/journal: the packages a typical Flask project uses (Flask-SQLAlchemy,
/// Flask-Login, Flask-WTF, Markdown, python-dateutil, PyJWT, pydantic).
pub fn journal() -> PathBuf {
    framework("journal", "app:app", &[])
}

pub fn django() -> PathBuf {
    framework("django", "mysite.wsgi:application", &["--locales", "en"])
}

/// tests/fixtures/build/lazy_import, with `extra` build arguments (`--preload ...`).
pub fn lazy_import(extra: &[&str]) -> PathBuf {
    let dir = repo_root().join("tests/fixtures/build/lazy_import");
    let name = if extra.is_empty() {
        "lazy-import".to_owned()
    } else {
        "lazy-import-preloaded".to_owned()
    };
    python_component(&name, "app:app", &[&dir], extra)
}

/// tests/fixtures/build/uses_venv, built with `--venv tests/fixtures/build/venv`.
pub fn uses_venv() -> PathBuf {
    let fixtures = repo_root().join("tests/fixtures/build");
    let venv = fixtures.join("venv");
    let dir = fixtures.join("uses_venv");
    let name = format!("uses-venv-{}", tree_digest(&venv));
    python_component(&name, "app:app", &[&dir], &["--venv", venv.to_str().unwrap()])
}

/// Where `wsgi-wasm build --cache-dir` keeps installed requirements for the tests.
pub fn build_cache_dir() -> PathBuf {
    aot_cache_dir()
}

fn framework(name: &str, target: &str, extra: &[&str]) -> PathBuf {
    let dir = repo_root().join("apps").join(name);
    let requirements = dir.join("requirements.txt");
    let cache = build_cache_dir();
    let mut args = vec![
        "-r",
        requirements.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // python_component keys on .py/.txt/.html files; templates (.tpl) and static
    // files count too, so the whole tree's digest goes into the name.
    let name = format!("{name}-{}", tree_digest(&dir));
    python_component(&name, target, &[&dir], &args)
}

/// A native virtualenv (the machine's python3) with `requirements` installed, for
/// what an operator runs natively beside the sandbox (Django's `manage.py migrate`).
/// Built once per content of the requirements file; returns the venv's python.
pub fn native_venv(requirements: &Path) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(std::fs::read(requirements).unwrap());
    let digest: String = hash.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let root = aot_cache_dir().parent().unwrap().join("test-venvs");
    std::fs::create_dir_all(&root).unwrap();
    let venv = root.join(digest);
    let python = venv.join("bin/python");
    let lock = std::fs::File::create(root.join("venv.lock")).unwrap();
    lock.lock().unwrap();
    if !venv.join("ready").exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python3 -m venv failed");
        let output = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pip install failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(venv.join("ready"), "").unwrap();
    }
    python
}

fn tree_digest(dir: &Path) -> String {
    fn walk(hash: &mut Sha256, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "__pycache__" || name.starts_with('.') || name.ends_with(".wasm") {
                continue;
            }
            hash.update(name.as_bytes());
            if path.is_dir() {
                walk(hash, &path);
            } else {
                hash.update(std::fs::read(&path).unwrap());
            }
        }
    }
    let mut hash = Sha256::new();
    walk(&mut hash, dir);
    hash.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect()
}
