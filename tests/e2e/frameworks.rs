//! Real web frameworks, unmodified, through `wsgi-wasm build -r requirements.txt`
//! and `wsgi-wasm serve`: Flask, Django, Bottle, Falcon and Pyramid (apps/), plus
//! what the build step promises about lazy imports and native dependencies.

use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::apps;
use crate::support::client::{CurlResponse, curl, python_request, raw_exchange};
use crate::support::components::{repo_root, wsgi_wasm_bin};
use crate::support::server::Server;

fn cookie_jar() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies.txt").to_str().unwrap().to_owned();
    (dir, jar)
}

fn json(response: &CurlResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.text()))
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Logs in to the Django admin through `server`, keeping cookies in `jar`: the
/// login page's HTML and the response to the posted form (a 302 to /admin/ when
/// the account is accepted, the form again when it is not).
fn admin_login(server: &Server, jar: &str, username: &str, password: &str) -> (String, CurlResponse) {
    let login = curl(&["-c", jar, "-b", jar, &server.url("/admin/login/?next=/admin/")]);
    assert_eq!(login.status, 200, "{}", server.log());
    let html = login.text();
    let body = format!(
        "csrfmiddlewaretoken={}&username={username}&password={password}&next=/admin/",
        csrf_token(&html)
    );
    let referer = format!("Referer: {}", server.url("/admin/login/"));
    let posted = curl(&[
        "-c",
        jar,
        "-b",
        jar,
        "-H",
        &referer,
        "--data",
        &body,
        &server.url("/admin/login/"),
    ]);
    (html, posted)
}

/// The `csrfmiddlewaretoken` hidden input of a Django form page.
fn csrf_token(html: &str) -> String {
    let at = html
        .find("name=\"csrfmiddlewaretoken\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF token in:\n{html}"));
    let rest = &html[at + "name=\"csrfmiddlewaretoken\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

// --- Flask -----------------------------------------------------------------

#[test]
fn flask_renders_jinja_templates_and_serves_static_files() {
    let server = Server::start(&apps::flask(), &[]);
    let page = curl(&[&server.url("/")]);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = page.text();
    // templates/index.html extends templates/base.html: both read from the bundle.
    assert!(html.contains("<title>Flask in a sandbox</title>"), "{html}");
    assert!(
        html.contains("<li>ROUTES</li>") && html.contains("<li>SESSIONS</li>"),
        "{html}"
    );
    assert!(html.contains("Escaped: &lt;script&gt;"), "autoescaping: {html}");
    assert!(html.contains("href=\"/static/style.css\""), "{html}");

    let css = curl(&[&server.url("/static/style.css")]);
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        css.text(),
        std::fs::read_to_string(repo_root().join("apps/flask/static/style.css")).unwrap()
    );
    assert!(css.header("etag").is_some() && css.header("last-modified").is_some());

    let hello = curl(&[&server.url("/hello/sandbox")]);
    assert_eq!(hello.text(), "Hello, sandbox!\n");
}

#[test]
fn flask_json_in_and_out_and_error_handlers() {
    let server = Server::start(&apps::flask(), &[]);
    let echo = python_request(
        &server.url("/api/echo"),
        "POST",
        br#"{"b": [1, 2], "a": "\u00e9t\u00e9"}"#,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(echo.status, 200);
    assert_eq!(echo.header("content-type"), Some("application/json"));
    assert_eq!(
        json(&echo),
        serde_json::json!({"keys": ["a", "b"], "received": {"a": "été", "b": [1, 2]}})
    );

    let item = curl(&[&server.url("/api/items/7")]);
    assert_eq!(
        json(&item),
        serde_json::json!({"id": 7, "name": "item 7", "tags": ["a", "b"]})
    );

    // abort(404) goes through the 404 handler, which renders a template.
    let missing = curl(&[&server.url("/api/items/700")]);
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("<h1>Error 404</h1>") && missing.text().contains("no item 700"),
        "{}",
        missing.text()
    );
    let unrouted = curl(&[&server.url("/no/such/page")]);
    assert_eq!(unrouted.status, 404);

    let teapot = curl(&[&server.url("/teapot")]);
    assert_eq!(teapot.status, 418);
    assert_eq!(json(&teapot), serde_json::json!({"error": "teapot", "code": 418}));

    // An exception in a view: Flask's 500 handler answers, Flask logs the traceback
    // to wsgi.errors, and the server log has it with the app's source line.
    let boom = curl(&[&server.url("/boom")]);
    assert_eq!(boom.status, 500);
    assert!(boom.text().contains("<h1>Error 500</h1>"), "{}", boom.text());
    assert!(
        server.wait_for_log("RuntimeError: something broke", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("raise RuntimeError(\"something broke\")"),
        "source lines in tracebacks: {}",
        server.log()
    );
}

#[test]
fn flask_form_post_and_multipart_upload() {
    let server = Server::start(&apps::flask(), &[]);
    let form = curl(&["--data", "name=Ann+Lee&colour=dark%20blue", &server.url("/form")]);
    assert_eq!(form.status, 200);
    assert!(
        form.text().contains("Thanks, Ann Lee! You like dark blue."),
        "{}",
        form.text()
    );

    // Past Werkzeug's 500 KiB threshold the upload spools to a temporary file: with
    // no filesystem in the sandbox, tempfile falls back to memory.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("photo.bin");
    let data: Vec<u8> = (0..800_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let upload = curl(&[
        "-F",
        &format!("file=@{};type=image/png", file.display()),
        "-F",
        "note=holiday",
        &server.url("/upload"),
    ]);
    assert_eq!(upload.status, 200, "{}", upload.text());
    assert_eq!(
        json(&upload),
        serde_json::json!({
            "filename": "photo.bin",
            "content_type": "image/png",
            "size": data.len(),
            "sha256": sha256_hex(&data),
            "note": "holiday",
        })
    );
    let empty = curl(&["-F", "note=x", &server.url("/upload")]);
    assert_eq!(empty.status, 400);
}

#[test]
fn flask_signed_cookie_session_and_redirects() {
    let server = Server::start(&apps::flask(), &[]);
    let (_dir, jar) = cookie_jar();
    let login = curl(&[
        "-c",
        &jar,
        "-b",
        &jar,
        "--data",
        "user=ann",
        &server.url("/session/login"),
    ]);
    assert_eq!(login.status, 302);
    assert_eq!(login.header("location"), Some("/session"));
    let cookie = login.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.starts_with("session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    let view = curl(&["-c", &jar, "-b", &jar, &server.url("/session")]);
    assert_eq!(json(&view), serde_json::json!({"user": "ann", "visits": 1}));
    let visit = curl(&["-c", &jar, "-b", &jar, &server.url("/session/visit")]);
    assert_eq!(json(&visit), serde_json::json!({"visits": 2}));

    // The cookie is signed: a forged one is ignored, not trusted.
    let forged = curl(&[
        "-H",
        "Cookie: session=eyJ1c2VyIjoiYWRtaW4ifQ.forged.signature",
        &server.url("/session"),
    ]);
    assert_eq!(json(&forged), serde_json::json!({"user": null, "visits": 0}));

    let moved = curl(&[&server.url("/old-page")]);
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/hello/redirected"));
    let followed = curl(&[&server.url("/hello/redirected")]);
    assert_eq!(followed.text(), "Hello, redirected!\n");
}

#[test]
fn flask_streamed_response_goes_out_in_chunks() {
    let server = Server::start(&apps::flask(), &[]);
    let raw = raw_exchange(
        server.addr,
        b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    let expected = "line 0 of 3 for /stream\n";
    assert!(
        body.starts_with(&format!("{:x}\r\n{expected}\r\n", expected.len())),
        "one chunk per yield: {body:?}"
    );
    assert!(body.ends_with("0\r\n\r\n"), "{body:?}");
    let many = curl(&[&server.url("/stream?n=500")]);
    let lines: Vec<String> = many.text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 500);
    assert_eq!(lines[499], "line 499 of 500 for /stream");
}

// --- Django ----------------------------------------------------------------

#[test]
fn django_view_renders_a_template_with_a_csrf_protected_form() {
    let server = Server::start(&apps::django(), &[]);
    let page = curl(&[&server.url("/")]);
    assert_eq!(page.status, 200, "{}", server.log());
    let html = page.text();
    assert!(html.contains("<h1>Notes</h1>"), "{html}");
    assert!(html.contains("No notes yet."), "{html}");
    assert!(
        html.contains("<textarea name=\"text\""),
        "the form renders through Django's form renderer: {html}"
    );
    assert!(!csrf_token(&html).is_empty());
    assert!(
        page.header("set-cookie").is_some_and(|c| c.starts_with("csrftoken=")),
        "{:?}",
        page.headers
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    let api = curl(&[&server.url("/api/notes/")]);
    assert_eq!(json(&api), serde_json::json!({"count": 0, "notes": []}));

    let missing = curl(&[&server.url("/no/such/page/")]);
    assert_eq!(missing.status, 404);
}

#[test]
fn django_form_post_with_csrf_writes_to_sqlite_in_memory() {
    // One instance: the in-memory database belongs to the instance (like to a
    // gunicorn worker), so the follow-up requests must reach the same one.
    let server = Server::start(&apps::django(), &["--instances", "1"]);
    let (_dir, jar) = cookie_jar();
    let form = curl(&["-c", &jar, "-b", &jar, &server.url("/")]);
    let token = csrf_token(&form.text());

    let forged = curl(&["--data", "author=Eve&text=no+token", &server.url("/")]);
    assert_eq!(forged.status, 403, "CSRF check: {}", forged.text());

    let body = format!("csrfmiddlewaretoken={token}&author=Ann&text=Hello+from+the+sandbox");
    let created = curl(&["-c", &jar, "-b", &jar, "--data", &body, &server.url("/")]);
    assert_eq!(created.status, 302, "{}\n{}", created.text(), server.log());
    assert_eq!(created.header("location"), Some("/notes/1/"));

    let detail = curl(&[&server.url("/notes/1/")]);
    assert!(detail.text().contains("<h1>Note 1 by Ann</h1>"), "{}", detail.text());
    assert!(detail.text().contains("Hello from the sandbox"), "{}", detail.text());
    let api = curl(&[&server.url("/api/notes/")]);
    assert_eq!(json(&api)["count"], 1);
    let list = curl(&[&server.url("/")]);
    assert!(list.text().contains("<a href=\"/notes/1/\">Ann</a>"), "{}", list.text());
}

/// The README's way: `manage.py migrate` and `createsuperuser` natively against
/// the file, then serve it from a directory granted read-write.
fn migrated_django_database() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let project = repo_root().join("apps/django");
    let python = apps::native_venv(&project.join("requirements.txt"));
    let db = data.path().join("db.sqlite3");
    for args in [
        &["migrate", "--noinput"][..],
        &[
            "createsuperuser",
            "--noinput",
            "--username",
            "ops",
            "--email",
            "ops@example.com",
        ][..],
    ] {
        let output = Command::new(&python)
            .arg("manage.py")
            .args(args)
            .current_dir(&project)
            .env("DJANGO_DB_PATH", &db)
            .env("DJANGO_SUPERUSER_PASSWORD", "ops-password")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "manage.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    data
}

#[test]
fn django_notes_persist_in_sqlite_across_instances_and_restarts() {
    let data = migrated_django_database();
    let args = [
        "--dir",
        &format!("{}:/data:rw", data.path().display()),
        "--env",
        "DJANGO_DB_PATH=/data/db.sqlite3",
        "--instances",
        "3",
    ];
    let server = Server::start(&apps::django(), &args);
    let (_dir, jar) = cookie_jar();
    let form = curl(&["-c", &jar, "-b", &jar, &server.url("/")]);
    assert!(form.text().contains("No notes yet."), "{}", form.text());
    let body = format!(
        "csrfmiddlewaretoken={}&author=Ann&text=Kept+on+disk",
        csrf_token(&form.text())
    );
    let created = curl(&["-c", &jar, "-b", &jar, "--data", &body, &server.url("/")]);
    assert_eq!(created.status, 302, "{}\n{}", created.text(), server.log());
    assert_eq!(created.header("location"), Some("/notes/1/"));

    // Concurrent readers keep all three instances busy: each one sees the note.
    let counts = crate::support::client::load(server.addr, &[("/notes/1/", 30)], 3);
    assert_eq!(counts["/notes/1/"], serde_json::json!({"200": 30}), "{counts}");
    let api = curl(&[&server.url("/api/notes/")]);
    assert_eq!(json(&api)["notes"][0]["text"], "Kept on disk");

    // A restart starts from the file, not from the build's snapshot.
    drop(server);
    let server = Server::start(&apps::django(), &args);
    let api = curl(&[&server.url("/api/notes/")]);
    assert_eq!(json(&api)["count"], 1, "{}", server.log());
    assert_eq!(json(&api)["notes"][0]["author"], "Ann");

    // The superuser made natively is the one the sandboxed admin knows; the
    // build's demo account belongs to the in-memory database only.
    let (_dir, jar) = cookie_jar();
    let (_, ops) = admin_login(&server, &jar, "ops", "ops-password");
    assert_eq!(ops.status, 302, "{}\n{}", ops.text(), server.log());
    assert_eq!(ops.header("location"), Some("/admin/"));
    let (_dir, jar) = cookie_jar();
    let (_, demo) = admin_login(&server, &jar, "admin", "sandbox-demo");
    assert_eq!(
        demo.status, 200,
        "the build's demo account logged in to the file's database"
    );
    assert!(
        demo.text().contains("Please enter the correct username and password"),
        "{}",
        demo.text()
    );
    let native = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT text FROM notes_note').fetchall())",
        ])
        .arg(data.path().join("db.sqlite3"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&native.stdout).trim(), "[('Kept on disk',)]");
    let users = Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT username FROM auth_user').fetchall())"])
        .arg(data.path().join("db.sqlite3"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&users.stdout).trim(), "[('ops',)]");
}

/// The README's way to serve the admin's CSS: `manage.py collectstatic` natively,
/// then the host serves STATIC_ROOT with `--static`, outside the sandbox.
#[test]
fn django_admin_css_is_served_by_the_host_after_collectstatic() {
    let project = repo_root().join("apps/django");
    let python = apps::native_venv(&project.join("requirements.txt"));
    let statics = tempfile::tempdir().unwrap();
    let output = Command::new(&python)
        .args(["manage.py", "collectstatic", "--noinput"])
        .current_dir(&project)
        .env("DJANGO_STATIC_ROOT", statics.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "collectstatic: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = Server::start(
        &apps::django(),
        &["--static", &format!("/static={}", statics.path().display())],
    );
    let login = curl(&[&server.url("/admin/login/")]);
    assert_eq!(login.status, 200, "{}", server.log());
    assert!(
        login.text().contains("href=\"/static/admin/css/base.css\""),
        "{}",
        login.text()
    );
    let css = curl(&[&server.url("/static/admin/css/base.css")]);
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css"));
    assert_eq!(
        css.body,
        std::fs::read(statics.path().join("admin/css/base.css")).unwrap()
    );
    // Logged like any request, by the host's static mount.
    assert!(server.wait_for_log(
        "\"GET /static/admin/css/base.css HTTP/1.1\" 200",
        Duration::from_secs(5)
    ));
}

#[test]
fn django_admin_login_page_renders_and_logs_in() {
    let server = Server::start(&apps::django(), &["--instances", "1"]);
    let redirect = curl(&[&server.url("/admin/")]);
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("/admin/login/?next=/admin/"));

    let (_dir, jar) = cookie_jar();
    // The demo superuser (mysite/wsgi.py), checked with Django's default hasher:
    // PBKDF2-SHA256, 1,000,000 rounds, which the host computes for the sandbox.
    let (html, posted) = admin_login(&server, &jar, "admin", "sandbox-demo");
    assert!(html.contains("<title>Log in | Django site admin</title>"), "{html}");
    assert!(
        html.contains("id=\"id_username\"") && html.contains("id=\"id_password\""),
        "{html}"
    );
    assert_eq!(posted.status, 302, "{}\n{}", posted.text(), server.log());
    assert_eq!(posted.header("location"), Some("/admin/"));
    assert!(server.wait_for_log("\"POST /admin/login/ HTTP/1.1\" 302", Duration::from_secs(5)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"POST /admin/login/ HTTP/1.1\" 302"))
        .unwrap();
    let (_, time) = line.split_once(" time=").unwrap();
    let millis: f64 = time.split("ms").next().unwrap().parse().unwrap();
    eprintln!("django admin login: {millis} ms of server time");
    assert!(millis < 1000.0, "login took {millis} ms of server time: {line}");
    let index = curl(&["-b", &jar, &server.url("/admin/")]);
    assert!(
        index
            .text()
            .contains("<title>Site administration | Django site admin</title>"),
        "{}",
        index.text()
    );
}

// --- Bottle, Falcon, Pyramid -----------------------------------------------

/// What the Bottle and Pyramid examples both do the same way: echo JSON, take a
/// form, count visits in a signed cookie, redirect /old to /hello/redirected.
fn check_echo_form_counter_and_redirect(server: &Server, (counter_path, counter_key): (&str, &str), redirect: u16) {
    let echo = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"x": [1]}"#,
        &server.url("/api/echo"),
    ]);
    assert_eq!(json(&echo), serde_json::json!({"received": {"x": [1]}}));
    let form = curl(&["--data", "name=Ann&colour=blue", &server.url("/form")]);
    assert_eq!(form.text().trim(), "<p>Thanks, Ann! You like blue.</p>");
    let (_dir, jar) = cookie_jar();
    for expected in 1..=2 {
        let counted = json(&curl(&["-c", &jar, "-b", &jar, &server.url(counter_path)]));
        assert_eq!(counted, serde_json::json!({ counter_key: expected }));
    }
    let moved = curl(&[&server.url("/old")]);
    assert_eq!(moved.status, redirect);
    let location = moved.header("location");
    assert!(
        location.is_some_and(|l| l.ends_with("/hello/redirected")),
        "{:?}",
        moved.headers
    );
}

#[test]
fn bottle_app_answers_templates_json_forms_and_cookies() {
    let server = Server::start(&apps::bottle(), &[]);
    let page = curl(&[&server.url("/")]);
    assert_eq!(page.status, 200, "{}", server.log());
    assert!(
        page.text().contains("<h1>Bottle in a sandbox</h1>") && page.text().contains("<li>COOKIES</li>"),
        "{}",
        page.text()
    );
    assert!(page.text().contains("Escaped: &lt;b&gt;"), "{}", page.text());
    assert_eq!(curl(&[&server.url("/hello/bob")]).text(), "Hello, bob!\n");
    assert_eq!(
        json(&curl(&[&server.url("/api/items/7")])),
        serde_json::json!({"id": 7, "name": "item 7"})
    );
    let missing = curl(&[&server.url("/api/items/700")]);
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "not found: no item 700\n")
    );
    check_echo_form_counter_and_redirect(&server, ("/counter", "count"), 301);
}

#[test]
fn falcon_app_answers_media_forms_uploads_and_errors() {
    let server = Server::start(&apps::falcon(), &[]);
    assert_eq!(curl(&[&server.url("/hello/bob")]).text(), "Hello, bob!\n");
    let item = curl(&[&server.url("/api/items/7")]);
    assert_eq!(item.header("content-type"), Some("application/json"));
    assert_eq!(json(&item), serde_json::json!({"id": 7, "name": "item 7"}));
    let missing = curl(&[&server.url("/api/items/700")]);
    assert_eq!(missing.status, 404);
    assert_eq!(
        json(&missing),
        serde_json::json!({"title": "404 Not Found", "description": "no item 700"})
    );
    let echo = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"x": 1}"#,
        &server.url("/api/echo"),
    ]);
    assert_eq!(json(&echo), serde_json::json!({"received": {"x": 1}}));
    let form = curl(&["--data", "name=Ann&colour=blue", &server.url("/form")]);
    assert_eq!(form.text().trim(), "<p>Thanks, Ann! You like blue.</p>");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let upload = curl(&[
        "-F",
        &format!("file=@{}", file.display()),
        "-F",
        "note=hi",
        &server.url("/upload"),
    ]);
    assert_eq!(
        json(&upload),
        serde_json::json!({"filename": "data.bin", "size": data.len(), "sha256": sha256_hex(&data), "note": "hi"})
    );
    let boom = curl(&[&server.url("/boom")]);
    assert_eq!(boom.status, 400);
    assert_eq!(
        json(&boom),
        serde_json::json!({"title": "bad value", "description": "something broke"})
    );
    let moved = curl(&[&server.url("/old")]);
    assert_eq!(
        (moved.status, moved.header("location")),
        (301, Some("/hello/redirected"))
    );
}

#[test]
fn pyramid_app_answers_renderers_forms_and_sessions() {
    let server = Server::start(&apps::pyramid(), &[]);
    assert_eq!(curl(&[&server.url("/hello/bob")]).text(), "Hello, bob!\n");
    let item = curl(&[&server.url("/api/items/7")]);
    assert_eq!(item.status, 200, "{}", server.log());
    assert_eq!(json(&item), serde_json::json!({"id": 7, "name": "item 7"}));
    let missing = curl(&[&server.url("/api/items/700")]);
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "not found: /api/items/700\n")
    );
    check_echo_form_counter_and_redirect(&server, ("/visit", "visits"), 302);
}

// --- The build step --------------------------------------------------------

#[test]
fn lazy_import_failure_names_the_module_and_the_preload_fix() {
    let server = Server::start(&apps::lazy_import(&[]), &[]);
    assert_eq!(curl(&[&server.url("/")]).status, 200);

    let module = curl(&[&server.url("/module")]);
    assert_eq!(module.status, 500);
    assert!(
        server.wait_for_log("No module named 'colorsys'", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server.wait_for_log("--preload colorsys`", Duration::from_secs(5)),
        "{}",
        server.log()
    );

    let codec = curl(&[&server.url("/codec")]);
    assert_eq!(codec.status, 500);
    assert!(
        server.wait_for_log("unknown encoding: cp1140", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server.wait_for_log("--preload encodings.cp1140`", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn preload_brings_lazily_imported_modules_into_the_component() {
    let server = Server::start(
        &apps::lazy_import(&["--preload", "colorsys", "--preload", "encodings.cp1140"]),
        &[],
    );
    let module = curl(&[&server.url("/module")]);
    assert_eq!(module.status, 200, "{}", server.log());
    assert_eq!(json(&module), serde_json::json!({"hls": [0.0, 0.5, 1.0]}));
    let codec = curl(&[&server.url("/codec")]);
    assert_eq!(json(&codec), serde_json::json!({"cp1140": "818283"}));
}

#[test]
fn build_refuses_a_native_only_dependency_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "def app(environ, start_response):\n    return []\n",
    )
    .unwrap();
    let requirements = repo_root().join("tests/fixtures/build/native-requirements.txt");
    let output = Command::new(wsgi_wasm_bin())
        .args(["build", "app:app", "--no-cache", "-o"])
        .arg(dir.path().join("app.wasm"))
        .arg("-r")
        .arg(&requirements)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: ujson cannot run in the sandbox: it has native code"),
        "{stderr}"
    );
    assert!(!dir.path().join("app.wasm").exists());
}

/// `wsgi-wasm build` in tests/fixtures/build/`app_dir` (or an empty app) with `args`.
fn build_app(app_dir: Option<&str>, out: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let fixtures = repo_root().join("tests/fixtures/build");
    let empty = tempfile::tempdir().unwrap();
    let dir = match app_dir {
        Some(name) => fixtures.join(name),
        None => {
            std::fs::write(
                empty.path().join("app.py"),
                "def app(environ, start_response):\n    return []\n",
            )
            .unwrap();
            empty.path().to_owned()
        }
    };
    let output = Command::new(wsgi_wasm_bin())
        .args(["build", "app:app", "-o"])
        .arg(out)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// "pydantic: asked `pydantic`, installed 1.10.27 instead of the newest 2.14.4: ..." -> "1.10.27".
fn installed_version_in_notice(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("pydantic: asked `pydantic`, installed "))
        .unwrap_or_else(|| panic!("no downgrade notice for pydantic:\n{stderr}"));
    let rest = &line[line.find("installed ").unwrap() + "installed ".len()..];
    rest.split(' ').next().unwrap().to_owned()
}

#[test]
fn build_says_when_a_requirement_gets_an_older_release_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let wasm = dir.path().join("app.wasm");
    let args = ["-r", "requirements.txt", "--cache-dir", cache.to_str().unwrap()];
    let (ok, stderr) = build_app(Some("uses_pydantic"), &wasm, &args, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: older releases than native platforms get, because newer ones need native code"),
        "{stderr}"
    );
    let installed = installed_version_in_notice(&stderr);
    assert!(installed.starts_with("1."), "{stderr}");
    assert!(
        stderr.contains(&format!("pin them (pydantic=={installed})")) && stderr.contains("--strict"),
        "{stderr}"
    );
    let line = stderr.lines().find(|l| l.contains("pydantic: asked")).unwrap();
    assert!(
        line.contains("instead of the newest 2.") && line.contains("needs pydantic-core 2."),
        "{line}"
    );
    assert!(line.ends_with("which ships only native wheels"), "{line}");

    // The app got what the notice says.
    let server = Server::start(&wasm, &[]);
    let response = curl(&[&server.url("/")]);
    assert_eq!((response.status, response.text()), (200, installed.clone()));
    drop(server);

    // A warm rebuild repeats the notice from the cache, asking no index: with pip
    // pointed at nothing, any lookup would fail and say so.
    let offline = [("PIP_NO_INDEX", "1"), ("PIP_FIND_LINKS", "")];
    let (ok, warm) = build_app(Some("uses_pydantic"), &wasm, &args, &offline);
    assert!(ok, "{warm}");
    assert!(warm.contains("cached"), "{warm}");
    assert_eq!(installed_version_in_notice(&warm), installed, "{warm}");
    assert!(!warm.contains("cannot tell"), "{warm}");

    // --strict turns the notice into a failure naming the package and the reason,
    // from the cache as well.
    std::fs::remove_file(&wasm).unwrap();
    let strict: Vec<&str> = args.iter().copied().chain(["--strict"]).collect();
    let (ok, failed) = build_app(Some("uses_pydantic"), &wasm, &strict, &offline);
    assert!(!ok, "{failed}");
    assert!(
        failed.contains("error: --strict: the sandbox would get older releases than native platforms get"),
        "{failed}"
    );
    assert!(
        failed.contains("pydantic: asked `pydantic`") && failed.contains("needs pydantic-core 2."),
        "{failed}"
    );
    assert!(!wasm.exists());
}

#[test]
fn build_strict_fails_on_a_cold_install_too() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("app.wasm");
    let (ok, stderr) = build_app(
        Some("uses_pydantic"),
        &wasm,
        &["-r", "requirements.txt", "--no-cache", "--strict"],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("error: --strict:"), "{stderr}");
    assert!(
        stderr.contains("pydantic: asked `pydantic`") && stderr.contains("needs pydantic-core"),
        "{stderr}"
    );
    assert!(!wasm.exists());
}

#[test]
fn build_explains_a_pinned_requirement_whose_dependency_is_native_only() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("app.wasm");
    let requirements = repo_root().join("tests/fixtures/build/pinned-native-requirements.txt");
    let (ok, stderr) = build_app(None, &wasm, &["-r", requirements.to_str().unwrap(), "--no-cache"], &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "error: pydantic==2.10.0 cannot be installed for the sandbox: pydantic needs pydantic-core==2.27.0, \
             and pydantic-core cannot run in the sandbox: it has native code"
        ),
        "{stderr}"
    );
    // The newest pure pydantic is a 1.x; the pin it suggests is that version.
    let at = stderr
        .find("The newest pydantic that runs in the sandbox is ")
        .unwrap_or_else(|| panic!("{stderr}"));
    let rest = &stderr[at + "The newest pydantic that runs in the sandbox is ".len()..];
    let version = rest.split(' ').next().unwrap();
    assert!(version.starts_with("1."), "{stderr}");
    assert!(rest.contains(&format!("(pin pydantic=={version})")), "{stderr}");
    assert!(!wasm.exists());
}

#[test]
fn build_sees_the_venv_it_is_given_and_not_the_active_one() {
    let fixtures = repo_root().join("tests/fixtures/build");
    // As in a shell with the virtualenv activated: componentize-py on its own would
    // add $VIRTUAL_ENV's site-packages to the app's path.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .args(["build", "app:app", "-o"])
        .arg(dir.path().join("app.wasm"))
        .env("VIRTUAL_ENV", fixtures.join("venv"))
        .current_dir(fixtures.join("uses_venv"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the active virtualenv leaked into the build:\n{stderr}"
    );
    assert!(stderr.contains("No module named 'venv_only_dep'"), "{stderr}");

    let server = Server::start(&apps::uses_venv(), &[]);
    let response = curl(&[&server.url("/")]);
    assert_eq!((response.status, response.text().as_str()), (200, "from the venv"));
}

#[test]
fn bundled_files_read_like_files_and_stay_read_only() {
    let server = Server::start(&apps::uses_venv(), &[]);
    let report = json(&curl(&[&server.url("/files")]));
    assert_eq!(report["own_file"], "hello from a file next to app.py\n");
    assert_eq!(report["own_dir"], serde_json::json!(["app.py", "greeting.txt"]));
    assert_eq!(report["is_file"], true);
    assert_eq!(report["package_data"], "package data of venv_only_dep\n");
    assert_eq!(report["version"], "1.2.3");
    let write = report["write"].as_str().unwrap();
    assert!(
        write.starts_with("PermissionError: ") && write.contains("Read-only file system"),
        "{write}"
    );
    // No filesystem, so temporary files live in memory.
    assert_eq!(report["temporary_file"], 1000);
}
