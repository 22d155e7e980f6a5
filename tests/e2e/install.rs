//! The binary as installed (by pip from the wheel, or by cargo install): what it says
//! it is, and where it looks for the tools `build` runs. tests/wheel/run checks the
//! real wheel in a fresh virtualenv.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::components::wsgi_wasm_bin;

/// A `componentize-py` that records which copy ran and fails, so the build stops there.
fn fake_componentize_py(path: &Path, label: &str, record: &Path) {
    std::fs::write(
        path,
        format!("#!/bin/sh\necho {label} > '{}'\nexit 3\n", record.display()),
    )
    .unwrap();
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
    fake_componentize_py(&bin.join("componentize-py"), "beside", &record);
    fake_componentize_py(&elsewhere.join("componentize-py"), "on-path", &record);
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
}
