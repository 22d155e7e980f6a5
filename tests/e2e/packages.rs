//! The packages a typical Flask project uses (apps/journal), built from its
//! requirements file and exercised over HTTP the way a user would, and what the
//! build says when the requirements ask for releases the sandbox cannot run.

use std::process::Command;

use crate::support::apps;
use crate::support::client::{CurlResponse, curl};
use crate::support::components::{python_component, repo_root, wsgi_wasm_bin};
use crate::support::server::Server;

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

fn json(response: &CurlResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()))
}

/// The hidden `csrf_token` input Flask-WTF renders into a form.
fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" type=\"hidden\" value=\"";
    let at = html.find(marker).unwrap_or_else(|| panic!("no CSRF token in:\n{html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The `name==version` pins of apps/journal/requirements.txt.
fn pinned_versions() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join("apps/journal/requirements.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, version) = l.split_once("==").unwrap_or_else(|| panic!("not pinned: {l}"));
            (name.to_owned(), serde_json::Value::from(version))
        })
        .collect()
}

fn journal_server(data: &std::path::Path) -> Server {
    Server::start(
        &apps::journal(),
        &[
            "--dir",
            &format!("{}:/data:rw", data.display()),
            "--env",
            "JOURNAL_DB=/data/journal.db",
            "--env",
            &format!("JOURNAL_USER={USER}:{PASSWORD}"),
            "--env",
            "JOURNAL_SECRET=test-secret-of-at-least-32-bytes-long",
        ],
    )
}

#[test]
fn typical_flask_app_gets_the_versions_it_pins_and_each_package_works() {
    let data = tempfile::tempdir().unwrap();
    let server = journal_server(data.path());

    // The build gave exactly what requirements.txt asks for.
    let versions = json(&curl(&[&server.url("/api/versions")]));
    for (name, pinned) in pinned_versions() {
        assert_eq!(versions[&name], pinned, "{name}: {versions}");
    }

    // Flask-Login: a page that needs a login sends the visitor to the login form.
    let jar_dir = tempfile::tempdir().unwrap();
    let jar = jar_dir.path().join("cookies").to_str().unwrap().to_owned();
    let with_jar = |args: &[&str]| {
        let mut all = vec!["-c", jar.as_str(), "-b", jar.as_str()];
        all.extend_from_slice(args);
        curl(&all)
    };
    let gated = with_jar(&[&server.url("/entries/new")]);
    assert_eq!(gated.status, 302);
    assert_eq!(gated.header("location"), Some("/login?next=%2Fentries%2Fnew"));

    // Flask-WTF: a POST without the form's CSRF token is refused.
    let token = csrf_token(&with_jar(&[&server.url("/login")]).text());
    let credentials = format!("name={USER}&password={PASSWORD}");
    let forged = with_jar(&["-d", &credentials, &server.url("/login")]);
    assert_eq!(forged.status, 400);
    assert!(
        forged.text().contains("csrf_token: The CSRF token is missing."),
        "{}",
        forged.text()
    );
    let wrong = with_jar(&[
        "-d",
        &format!("name={USER}&password=x&csrf_token={token}"),
        &server.url("/login"),
    ]);
    assert_eq!(wrong.status, 400);
    assert!(
        wrong.text().contains("password: wrong name or password"),
        "{}",
        wrong.text()
    );
    let login = with_jar(&[
        "-d",
        &format!("{credentials}&csrf_token={token}"),
        &server.url("/login"),
    ]);
    assert_eq!(login.status, 302, "{}", login.text());
    assert_eq!(login.header("location"), Some("/entries/new"));

    // Logged in: the form, a date in words (python-dateutil), a body in Markdown,
    // stored with Flask-SQLAlchemy in the granted directory.
    let form = with_jar(&[&server.url("/entries/new")]);
    assert_eq!(form.status, 200);
    assert!(form.text().contains("signed in as <span id=\"user\">alice</span>"));
    let token = csrf_token(&form.text());
    let post = |when: &str| {
        with_jar(&[
            "--data-urlencode",
            "title=First day",
            "--data-urlencode",
            &format!("when={when}"),
            "--data-urlencode",
            "body=# Arrived\n\nIt was *sunny*.\n\n| day | km |\n|-----|----|\n| Sun | 12 |\n",
            "-d",
            &format!("csrf_token={token}"),
            &server.url("/entries/new"),
        ])
    };
    let unreadable = post("not a date at all");
    assert_eq!(unreadable.status, 400);
    assert!(
        unreadable.text().contains("when: not a date I can read"),
        "{}",
        unreadable.text()
    );
    let saved = post("3 March 2024 5pm");
    assert_eq!(saved.status, 302, "{}", saved.text());
    assert_eq!(saved.header("location"), Some("/entries/1"));
    let page = curl(&[&server.url("/entries/1")]);
    assert_eq!(page.status, 200, "{}", server.log());
    let html = page.text();
    assert!(
        html.contains("<time datetime=\"2024-03-03T17:00:00\">Sunday 03 March 2024, 17:00</time>"),
        "{html}"
    );
    assert!(
        html.contains("<h1>Arrived</h1>\n<p>It was <em>sunny</em>.</p>"),
        "{html}"
    );
    assert!(html.contains("<td>Sun</td>") && html.contains("<th>km</th>"), "{html}");
    assert!(data.path().join("journal.db").is_file());

    // PyJWT: a token for the right password only, verified on each API call.
    let ask = |password: &str| {
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"name": "{USER}", "password": "{password}"}}"#),
            &server.url("/api/token"),
        ])
    };
    assert_eq!(ask("nope").status, 401);
    let issued = ask(PASSWORD);
    assert_eq!(issued.status, 200);
    let jwt = json(&issued)["token"].as_str().unwrap().to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let bearer = format!("Authorization: Bearer {jwt}");
    let listed = curl(&["-H", &bearer, &server.url("/api/entries")]);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(json(&listed)["user"], USER);
    assert_eq!(json(&listed)["entries"][0]["happened"], "2024-03-03T17:00:00");
    // Any change to the token breaks its signature.
    let tampered = format!("Authorization: Bearer {jwt}x");
    let refused = curl(&["-H", &tampered, &server.url("/api/entries")]);
    assert_eq!(refused.status, 401);
    assert_eq!(json(&refused)["error"], "invalid token: Signature verification failed");
    assert_eq!(curl(&[&server.url("/api/entries")]).status, 401);

    // pydantic: what the API is sent is validated, field by field.
    let send = |body: &str| curl(&["-H", &bearer, "-d", body, &server.url("/api/entries")]);
    let invalid = send(r#"{"title": "", "happened": "someday"}"#);
    assert_eq!(invalid.status, 422);
    assert_eq!(
        json(&invalid),
        serde_json::json!({"errors": [
            {"field": "title", "error": "ensure this value has at least 1 characters"},
            {"field": "body", "error": "field required"},
            {"field": "happened", "error": "invalid datetime format"},
        ]})
    );
    let created = send(r#"{"title": "Via the API", "body": "b", "happened": "2024-03-04T05:06:07"}"#);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(json(&created)["id"], 2);
    // Newest first, each with its date.
    let index = curl(&[&server.url("/")]).text();
    let api = index.find("<a href=\"/entries/2\">Via the API</a> (2024-03-04)");
    let form = index.find("<a href=\"/entries/1\">First day</a> (2024-03-03)");
    assert!(api.is_some() && form.is_some() && api < form, "{index}");
}

#[test]
fn typical_app_asking_for_pydantic_2_fails_naming_pydantic_core_and_the_newest_pure_release() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = std::fs::read_to_string(repo_root().join("apps/journal/requirements.txt")).unwrap();
    let pure_pin = pinned_versions()["pydantic"].as_str().unwrap().to_owned();
    let requirements = dir.path().join("requirements.txt");
    std::fs::write(
        &requirements,
        pinned.replace(&format!("pydantic=={pure_pin}"), "pydantic>=2"),
    )
    .unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .args(["build", "app:app", "--no-cache", "-r"])
        .arg(&requirements)
        .arg("-o")
        .arg(dir.path().join("app.wasm"))
        .current_dir(repo_root().join("apps/journal"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "error: pydantic>=2 cannot be installed for the sandbox: every release it allows needs pydantic-core, \
             which has no pure-Python release (pydantic "
        ),
        "{stderr}"
    );
    // The newest release that does run is the one requirements.txt pins.
    assert!(
        stderr.contains(&format!(
            "The newest pydantic that runs in the sandbox is {pure_pin} (pin pydantic=={pure_pin})"
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("app.wasm").exists());
}

/// scripts/compat/compat.py on scripts/compat/short.txt: one package of each outcome.
#[test]
fn compatibility_script_measures_a_short_list_and_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("COMPATIBILITY.md");
    let records = dir.path().join("records.json");
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("scripts/compat/compat.py"))
        .arg("--list")
        .arg(repo_root().join("scripts/compat/short.txt"))
        .arg("--out")
        .arg(&table)
        .arg("--json")
        .arg(&records)
        .arg("--cache-dir")
        .arg(apps::build_cache_dir())
        .env("WSGI_WASM", wsgi_wasm_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let records: serde_json::Value = serde_json::from_slice(&std::fs::read(&records).unwrap()).unwrap();
    let by_name = |name: &str| {
        records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no record for {name}: {records}"))
            .clone()
    };
    // Pure packages install and import, at the newest release; PyJWT imports `ssl`.
    // Werkzeug's newer releases need MarkupSafe, which publishes native wheels and an
    // sdist that builds pure: the build builds it rather than keeping Werkzeug 2.1.
    for name in ["Markdown", "PyJWT", "python-dateutil", "Werkzeug"] {
        let r = by_name(name);
        assert_eq!(r["installs"], true, "{r}");
        assert_eq!(r["import_errors"], serde_json::json!([]), "{r}");
        assert_eq!(r["version"], r["newest"], "{r}");
    }
    // pydantic: a 1.x, with the native dependency that holds 2.x back.
    let pydantic = by_name("pydantic");
    assert_eq!(pydantic["import_errors"], serde_json::json!([]), "{pydantic}");
    assert!(pydantic["version"].as_str().unwrap().starts_with("1."), "{pydantic}");
    assert!(pydantic["newest"].as_str().unwrap().starts_with("2."), "{pydantic}");
    assert!(
        pydantic["why"].as_str().unwrap().contains("needs pydantic-core"),
        "{pydantic}"
    );
    // Native only: the build's own reason.
    for (name, dist) in [("orjson", "orjson"), ("psycopg2-binary", "psycopg2-binary")] {
        let r = by_name(name);
        assert_eq!(r["installs"], false, "{r}");
        assert!(
            r["why"]
                .as_str()
                .unwrap()
                .contains(&format!("{dist} cannot run in the sandbox: it has native code")),
            "{r}"
        );
    }

    let text = std::fs::read_to_string(&table).unwrap();
    assert!(
        text.contains(
            "**Totals: 7 packages; 5 install, 5 import, 1 get an older release than native platforms, 2 do not work.**"
        ),
        "{text}"
    );
    assert!(text.contains("| Markdown | yes | yes | "), "{text}");
    assert!(
        text.contains("| orjson | no | - | - | - | orjson cannot run in the sandbox"),
        "{text}"
    );
    assert!(
        text.contains("| psycopg2-binary | psycopg2-binary | pg8000 (pure Python"),
        "{text}"
    );
    assert!(text.contains("| pydantic-core | pydantic | pin `pydantic<2`"), "{text}");
}

/// The native-extension spike (guest-sdk/python/NATIVE-EXTENSIONS.md): a CPython
/// extension module in Rust, built by stable rustc for wasm32-wasip2 as a wasm shared
/// library, linked into the component by componentize-py and called per request.
#[test]
fn a_rust_extension_module_built_for_wasm32_runs_in_the_sandbox() {
    let fixture = repo_root().join("tests/fixtures/native_ext");
    let target = apps::build_cache_dir().parent().unwrap().join("native-ext-target");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // A position-independent shared library (dylink.0), its CPython symbols
        // left for the component linker to resolve against libpython.
        .env("RUSTFLAGS", NATIVE_EXT_RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building tests/fixtures/native_ext failed");
    let app = tempfile::tempdir().unwrap();
    std::fs::copy(fixture.join("app.py"), app.path().join("app.py")).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/native_ext.wasm"),
        app.path().join("native_ext.cpython-314-wasm32-wasi.so"),
    )
    .unwrap();
    let wasm = python_component("native-ext", "app:app", &[app.path()], &[]);
    let server = Server::start(&wasm, &[]);
    let answer = curl(&[&server.url("/?21")]);
    assert_eq!(
        answer.text(),
        "native_ext.cpython-314-wasm32-wasi.so double(21) = 42",
        "{}",
        server.log()
    );
    // C long is 32 bits on wasm32; the result is widened, so it does not wrap.
    assert_eq!(
        curl(&[&server.url("/?2147483647")]).text(),
        "native_ext.cpython-314-wasm32-wasi.so double(2147483647) = 4294967294"
    );
    // Too big for a C long: the module's OverflowError is an ordinary app error.
    assert_eq!(curl(&[&server.url("/?99999999999")]).status, 500);
    assert!(
        server.wait_for_log("OverflowError", std::time::Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

/// What tests/fixtures/native_ext is built with (see NATIVE-EXTENSIONS.md).
const NATIVE_EXT_RUSTFLAGS: &str = "-C relocation-model=pic -C link-args=-shared -C link-args=--allow-undefined";
