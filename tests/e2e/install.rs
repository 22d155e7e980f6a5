//! The binary as installed (by pip from the wheel, or by cargo install): what it says
//! it is, and where it looks for the tools `build` runs. tests/wheel/run checks the
//! real wheel in a fresh virtualenv.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::components::{repo_root, wsgi_wasm_bin};

/// The version Cargo.lock resolved for `name` (the lock is the build's truth).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    let entry = lock
        .split("[[package]]")
        .find(|p| p.contains(&format!("\nname = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("{name} not in Cargo.lock"));
    let line = entry.lines().find(|l| l.starts_with("version = ")).unwrap();
    line.trim_start_matches("version = ").trim_matches('"').to_owned()
}

/// The componentize-py version the wheel depends on.
fn componentize_py_pin() -> String {
    let pyproject = std::fs::read_to_string(repo_root().join("host/pyproject.toml")).unwrap();
    let pin = pyproject
        .split("\"componentize-py==")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("componentize-py pin in host/pyproject.toml");
    pin.to_owned()
}

/// The changes host/patches/wasmtime-VERSION.patch names (the value of the
/// `WSGI_WASM_PATCH` constant it adds to wasmtime).
fn wasmtime_patch_names(wasmtime: &str) -> String {
    let patch = repo_root().join(format!("host/patches/wasmtime-{wasmtime}.patch"));
    let text = std::fs::read_to_string(&patch).unwrap_or_else(|e| panic!("{}: {e}", patch.display()));
    text.split("+pub const WSGI_WASM_PATCH: &str = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("WSGI_WASM_PATCH in the wasmtime patch")
        .to_owned()
}

#[test]
fn version_names_the_release_the_componentize_py_it_expects_and_the_patched_wasmtime() {
    let output = Command::new(wsgi_wasm_bin()).arg("--version").output().unwrap();
    assert!(output.status.success());
    let pin = componentize_py_pin();
    let wasmtime = locked_version("wasmtime");
    let patch = wasmtime_patch_names(&wasmtime);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "wsgi-wasm {} (componentize-py {pin}, wasmtime {wasmtime} patched: {patch})\n",
            locked_version("wsgi-wasm"),
        )
    );
}

/// A `componentize-py` that says it is `version`, and when asked to build records
/// which copy ran and fails, so the build stops there.
fn fake_componentize_py(path: &Path, label: &str, version: &str, record: &Path) {
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'componentize-py {version}'; exit 0; fi\n\
         echo {label} > '{}'\nexit 3\n",
        record.display()
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn build_runs_the_componentize_py_installed_beside_it_before_the_one_on_path() {
    // The layout pip makes: bin/wsgi-wasm and bin/componentize-py, venv not activated,
    // and another componentize-py (some other version) earlier on PATH.
    let venv = tempfile::tempdir().unwrap();
    let bin = venv.path().join("bin");
    let elsewhere = venv.path().join("elsewhere");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(wsgi_wasm_bin(), bin.join("wsgi-wasm")).unwrap();
    let record = venv.path().join("ran");
    fake_componentize_py(&bin.join("componentize-py"), "beside", &componentize_py_pin(), &record);
    fake_componentize_py(&elsewhere.join("componentize-py"), "on-path", "0.0.1", &record);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("app.py"),
        "def app(environ, start_response):\n    return []\n",
    )
    .unwrap();

    let output = Command::new(bin.join("wsgi-wasm"))
        .args(["build", "app:app"])
        .current_dir(app.path())
        .env(
            "PATH",
            std::env::join_paths([&elsewhere, Path::new("/usr/bin"), Path::new("/bin")]).unwrap(),
        )
        .env_remove("VIRTUAL_ENV")
        .env_remove("WSGI_WASM_COMPONENTIZE_PY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "beside\n", "{stderr}");
    assert!(stderr.contains("componentize-py failed"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn build_warns_when_componentize_py_is_not_the_version_it_expects() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("componentize-py");
    let record = dir.path().join("ran");
    fake_componentize_py(&fake, "other", "0.0.1", &record);
    std::fs::write(
        dir.path().join("app.py"),
        "def app(environ, start_response):\n    return []\n",
    )
    .unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .args(["build", "app:app", "--componentize-py"])
        .arg(&fake)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "warning: {} is componentize-py 0.0.1, but this wsgi-wasm is made for {pin} \
         (pip install componentize-py=={pin})",
        fake.display(),
        pin = componentize_py_pin()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // A warning, not a refusal: the build goes on with it.
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "other\n", "{stderr}");
}
