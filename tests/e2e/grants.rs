//! Doors in the walls: what `--allow-connect` and `--dir ...:rw` grant, and that
//! they grant nothing more. Each grant is tested from both sides: the granted use
//! works against a real server or directory, and its neighbours (another port,
//! another host, another name, outside the directory) are refused with a message
//! naming the option.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::apps::notes_db;
use crate::support::client::curl;
use crate::support::components::{aot_cache_dir, python_fixtures, wsgi_wasm_bin};
use crate::support::server::Server;
use crate::support::services::{Postgres, Redis};

/// A line server on a free loopback port: answers each line it reads with
/// `echo:<line>` and counts the connections it accepted.
struct LineServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl LineServer {
    fn start() -> LineServer {
        LineServer::start_at("127.0.0.1:0")
    }

    fn start_at(address: &str) -> LineServer {
        let listener = TcpListener::bind(address).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        let _ = stream.write_all(format!("echo:{}\n", line.trim_end()).as_bytes());
                        line.clear();
                    }
                });
            }
        });
        LineServer { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn granted_report(server: &Server, query: &str) -> Value {
    let response = curl(&[&server.url(&format!("/granted?{query}"))]);
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

fn field(report: &Value, key: &str) -> String {
    report[key].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_granted_destination_is_reachable_and_its_neighbours_are_not() {
    let granted = LineServer::start();
    let other_port = LineServer::start();
    let server = Server::start(
        &python_fixtures(),
        &["--allow-connect", &format!("127.0.0.1:{}", granted.port)],
    );

    let report = granted_report(&server, &format!("connect=127.0.0.1:{}&send=hi", granted.port));
    assert_eq!(field(&report, "connect"), "ok: echo:hi", "{report}");
    assert_eq!(granted.accepted(), 1);

    // Another port on the same host: refused in the sandbox, never reaches it.
    let other = format!("127.0.0.1:{}", other_port.port);
    let report = granted_report(&server, &format!("connect={other}&send=hi"));
    let refused = field(&report, "connect");
    assert!(
        refused.starts_with("denied: PermissionError: [Errno ")
            && refused.ends_with(&format!(
                "connection to {other} refused: wsgi-wasm: not granted to this app; the server must allow it \
                 with --allow-http https://{other} (or http://) for HTTP(S), or --allow-connect {other} for other TCP"
            )),
        "{report}"
    );
    // Another host on the granted port: 127.0.0.2 is loopback too, and a line
    // server listens there, so the connection would be accepted if allowed.
    let other_host = LineServer::start_at(&format!("127.0.0.2:{}", granted.port));
    let report = granted_report(&server, &format!("connect=127.0.0.2:{}", granted.port));
    assert!(
        field(&report, "connect").starts_with("denied: PermissionError: ")
            && field(&report, "connect").contains("connection to 127.0.0.2:"),
        "{report}"
    );
    assert_eq!(other_port.accepted(), 0, "an ungranted destination was reached");
    assert_eq!(
        other_host.accepted(),
        0,
        "an ungranted host was reached on the granted port"
    );
    assert_eq!(granted.accepted(), 1);
    // The operator's log says which option would allow it.
    assert!(
        server.wait_for_log(
            &format!(
                "denied: connection to {other} refused: not granted (allow it with --allow-connect {other}, \
                 or --allow-http http(s)://{other} for HTTP)"
            ),
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );

    // No name was granted: even "localhost" does not resolve, and no listening.
    let report = granted_report(&server, "resolve=localhost&listen=0");
    let resolve = field(&report, "resolve");
    assert!(
        resolve.starts_with("denied: gaierror: ")
            && resolve.contains("cannot resolve 'localhost': wsgi-wasm: not granted to this app; the server must allow it with --allow-http https://localhost:80 (or http://) for HTTP(S), or --allow-connect localhost:80 for other TCP"),
        "{report}"
    );
    assert!(field(&report, "listen").starts_with("denied: "), "{report}");
    // The server's output is read by another thread: wait for the line, as above.
    assert!(
        server.wait_for_log(
            "name lookup of \"localhost\" refused: not granted",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
}

#[test]
fn a_granted_name_resolves_to_its_address_and_no_other_name_resolves() {
    let granted = LineServer::start();
    let server = Server::start(
        &python_fixtures(),
        &["--allow-connect", &format!("localhost:{}", granted.port)],
    );
    let report = granted_report(&server, "resolve=localhost");
    assert_eq!(field(&report, "resolve"), "ok: ['127.0.0.1']", "{report}");
    let report = granted_report(&server, &format!("connect=localhost:{}&send=by-name", granted.port));
    assert_eq!(field(&report, "connect"), "ok: echo:by-name", "{report}");
    for name in ["example.com", "ip6-localhost", "localhost.localdomain"] {
        let report = granted_report(&server, &format!("resolve={name}"));
        assert!(
            field(&report, "resolve").starts_with("denied: gaierror: "),
            "{name} resolved: {report}"
        );
    }
}

/// `serve` with `args` must exit at once with one line on stderr, before binding.
fn serve_refuses(args: &[&str]) -> String {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(python_fixtures())
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("Serving HTTP"), "{stderr}");
    assert!(
        !stderr.contains("cannot listen"),
        "failed on the port, not the grant: {stderr}"
    );
    stderr
}

#[test]
fn bad_grants_fail_at_start_naming_the_option_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.sqlite3");
    std::fs::write(&file, "").unwrap();

    let stderr = serve_refuses(&["--allow-connect", "127.0.0.1:0"]);
    assert!(
        stderr.contains("--allow-connect") && stderr.contains("port must be 1-65535"),
        "{stderr}"
    );
    let stderr = serve_refuses(&["--allow-connect", "127.0.0.1:65536"]);
    assert!(stderr.contains("port must be 1-65535"), "{stderr}");
    let stderr = serve_refuses(&["--allow-connect", "db.internal"]);
    assert!(stderr.contains("should be HOST:PORT"), "{stderr}");
    let stderr = serve_refuses(&["--allow-connect", "no-such-host.invalid:5432"]);
    assert!(
        stderr.contains("--allow-connect no-such-host.invalid:5432: the name does not resolve"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let stderr = serve_refuses(&["--dir", "/no/such/dir:/data:rw"]);
    assert!(
        stderr.contains("--dir") && stderr.contains("/no/such/dir") && stderr.contains("create it first"),
        "{stderr}"
    );
    let stderr = serve_refuses(&["--dir", &format!("{}:/data:rw", file.display())]);
    assert!(stderr.contains("not a directory"), "{stderr}");
    // The same checks apply to a grant given per app.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(format!("{},allow-connect=127.0.0.1:99999", python_fixtures().display()))
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr.contains("allow-connect=127.0.0.1:99999") && stderr.contains("1-65535"),
        "{stderr}"
    );
}

#[test]
fn a_read_write_directory_is_writable_and_nothing_outside_it_is() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "host secret").unwrap();
    let data = tempfile::tempdir().unwrap();
    let readonly = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), data.path().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path(), data.path().join("escape-dir")).unwrap();
    let server = Server::start(
        &python_fixtures(),
        &[
            "--dir",
            &format!("{}:/data:rw", data.path().display()),
            "--dir",
            &format!("{}:/ro", readonly.path().display()),
        ],
    );

    let report = granted_report(&server, "write=/data/note.txt");
    assert_eq!(field(&report, "write"), "ok: 20", "{report}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("note.txt")).unwrap(),
        "written by the guest"
    );
    let report = granted_report(&server, "read=/data/note.txt&list=/data");
    assert_eq!(field(&report, "read"), "ok: written by the guest", "{report}");
    assert_eq!(
        field(&report, "list"),
        "ok: ['escape', 'escape-dir', 'note.txt']",
        "{report}"
    );

    // Read-only stays read-only.
    let report = granted_report(&server, "write=/ro/note.txt");
    assert!(field(&report, "write").starts_with("denied: "), "{report}");
    assert!(!readonly.path().join("note.txt").exists());

    // Climbing out by `..` or through symlinks that point outside fails, for
    // reading and for writing.
    for path in ["/data/../etc/passwd", "/data/escape", "/data/escape-dir/secret.txt"] {
        let report = granted_report(&server, &format!("read={path}&write={path}"));
        assert!(field(&report, "read").starts_with("denied: "), "{path}: {report}");
        assert!(field(&report, "write").starts_with("denied: "), "{path}: {report}");
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "host secret",
        "a write escaped the granted directory"
    );
    let report = granted_report(&server, "write=/elsewhere.txt");
    assert!(field(&report, "write").starts_with("denied: "), "{report}");
}

/// `writers` threads each POST `rows` rows to the SQLite fixture; returns the
/// status counts.
fn concurrent_sqlite_writes(server: &Server, db: &str, writers: usize, rows: usize) -> Value {
    let script = r#"
import http.client, json, sys, threading, collections
host, port, db, writers, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
counts = collections.Counter()
lock = threading.Lock()
def writer(w):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    for r in range(rows):
        conn.request("POST", f"/sqlite_writer?db={db}&writer={w}&row={r}", body=b"")
        resp = conn.getresponse()
        body = resp.read()
        with lock:
            counts[str(resp.status)] += 1
            if resp.status != 200:
                counts["error: " + body.decode(errors="replace")[:200]] += 1
threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .args([db, &writers.to_string(), &rows.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn sqlite_concurrent_writers_keep_every_row(isolation: &str) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &python_fixtures(),
        &[
            "--dir",
            &format!("{}:/data:rw", data.path().display()),
            "--instances",
            "4",
            "--isolation",
            isolation,
        ],
    );
    let (writers, rows) = (8, 25);
    let counts = concurrent_sqlite_writes(&server, "/data/writes.db", writers, rows);
    assert_eq!(counts, serde_json::json!({"200": writers * rows}), "{counts}");
    let check = curl(&[&server.url("/sqlite_writer?db=/data/writes.db&check")]);
    assert_eq!(
        check.text(),
        format!("integrity=ok rows={0} distinct={0} journal=delete", writers * rows),
        "{}",
        server.log()
    );
    // The file is an ordinary SQLite database on the host, complete.
    let native = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); \
             print(d.execute('PRAGMA integrity_check').fetchone()[0], d.execute('SELECT count(*) FROM writes').fetchone()[0])",
        ])
        .arg(data.path().join("writes.db"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&native.stdout).trim(),
        format!("ok {}", writers * rows)
    );
}

#[test]
fn sqlite_with_concurrent_writers_from_pooled_instances_loses_nothing() {
    sqlite_concurrent_writers_keep_every_row("pooled");
}

#[test]
fn sqlite_with_concurrent_writers_under_request_isolation_loses_nothing() {
    sqlite_concurrent_writers_keep_every_row("request");
}

fn notes(server: &Server, store: &str) -> Vec<String> {
    let response = curl(&[&server.url(&format!("/{store}/notes"))]);
    assert_eq!(response.status, 200, "{}\n{}", response.text(), server.log());
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    body["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

fn add_note(server: &Server, store: &str, text: &str) {
    let response = curl(&[&server.url(&format!("/{store}/notes")), "--data-binary", text]);
    assert_eq!(response.status, 201, "{}\n{}", response.text(), server.log());
}

#[test]
fn postgres_and_redis_are_read_and_written_through_granted_destinations() {
    let postgres = Postgres::start();
    let redis = Redis::start();
    let mut args = postgres.grant_args();
    args.extend(redis.grant_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server_args = args.clone();
    server_args.extend(["--instances", "2"]);
    let server = Server::start(&notes_db(), &server_args);

    for store in ["pg", "redis"] {
        add_note(&server, store, "first, from the sandbox");
        add_note(&server, store, "second: ünïcode ✓");
        // Several requests land on both instances: each sees every note.
        for _ in 0..4 {
            assert_eq!(notes(&server, store), ["first, from the sandbox", "second: ünïcode ✓"]);
        }
        let ping: Value = serde_json::from_slice(&curl(&[&server.url(&format!("/{store}/ping?n=20"))]).body).unwrap();
        assert_eq!(ping["ok"], true, "{ping}");
    }

    // The rows are really in the servers, seen by their own native clients.
    let psql = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &postgres.port.to_string(),
            "-U",
            postgres.user,
            "-d",
            "postgres",
        ])
        .args(["-At", "-c", "SELECT text FROM notes ORDER BY id"])
        .env("PGPASSWORD", postgres.password)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout),
        "first, from the sandbox\nsecond: ünïcode ✓\n",
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let cli = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "LRANGE", "notes", "0", "-1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout),
        "first, from the sandbox\nsecond: ünïcode ✓\n"
    );

    // A restart of the server keeps nothing itself: the data comes back from the stores.
    drop(server);
    let server = Server::start(&notes_db(), &server_args);
    assert_eq!(notes(&server, "pg").len(), 2);
    assert_eq!(notes(&server, "redis").len(), 2);
}

#[test]
fn the_same_app_without_the_grant_cannot_reach_the_database() {
    let postgres = Postgres::start();
    let redis = Redis::start();
    // The configuration is there, the grants are not (one store is granted on
    // another port, to show a grant is for exactly one destination).
    let server = Server::start(
        &notes_db(),
        &[
            "--env",
            &format!("PGPORT={}", postgres.port),
            "--env",
            "PGHOST=127.0.0.1",
            "--env",
            &format!("REDIS_URL=redis://127.0.0.1:{}/0", redis.port),
            "--allow-connect",
            &format!("127.0.0.1:{}", redis.port + 1),
        ],
    );
    for store in ["pg", "redis"] {
        let response = curl(&[&server.url(&format!("/{store}/notes"))]);
        assert_eq!(response.status, 503, "{}", response.text());
        let port = if store == "pg" { postgres.port } else { redis.port };
        assert!(
            response.text().contains(&format!("--allow-connect 127.0.0.1:{port}")),
            "{}",
            response.text()
        );
    }
    // A name lookup through the driver is refused the same way.
    let server = Server::start(&notes_db(), &["--env", "PGHOST=db.example.com"]);
    let response = curl(&[&server.url("/pg/notes")]);
    assert_eq!(response.status, 503);
    assert!(
        response.text().contains("cannot resolve 'db.example.com'"),
        "{}",
        response.text()
    );
}
