//! What an operator sees: log formats and filters, access-log formats with the
//! per-request figures, the admin listener's probes and metrics.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::client::curl;
use crate::support::components::{aot_cache_dir, python_fixtures, rust_fixtures, wsgi_wasm_bin};
use crate::support::metrics::sample;
use crate::support::server::Server;

const LOG_WAIT: Duration = Duration::from_secs(10);

/// The app's name in the log and the metrics: its file's stem.
fn python_app_name() -> String {
    python_fixtures().file_stem().unwrap().to_string_lossy().into_owned()
}

fn access_line(server: &Server, needle: &str) -> String {
    assert!(
        server.wait_for_log(needle, LOG_WAIT),
        "no {needle:?} in:\n{}",
        server.log()
    );
    server.log().lines().find(|l| l.contains(needle)).unwrap().to_owned()
}

#[test]
fn access_log_common_is_exactly_ncsa() {
    let server = Server::start(&rust_fixtures(), &["--access-log-format", "common"]);
    curl(&["-A", "agent/1", &server.url("/hello?x=1")]);
    let line = access_line(&server, "GET /hello?x=1");
    // 127.0.0.1 - - [02/Dec/2026:05:11:46 +0000] "GET /hello?x=1 HTTP/1.1" 200 15
    let (head, rest) = line.split_once(" [").unwrap();
    assert_eq!(head, "127.0.0.1 - -", "{line}");
    let (date, rest) = rest.split_once("] ").unwrap();
    assert_eq!(date.len(), "02/Dec/2026:05:11:46 +0000".len(), "{line}");
    assert!(date.ends_with(" +0000"), "{line}");
    assert_eq!(rest, "\"GET /hello?x=1 HTTP/1.1\" 200 15", "{line}");
}

#[test]
fn access_log_combined_has_referer_agent_and_guest_figures() {
    let server = Server::start(&rust_fixtures(), &["--cpu-timeout", "1s", "--instances", "1"]);
    curl(&[
        "-A",
        "agent \"q\"/1",
        "-e",
        "http://ref.example/",
        &server.url("/hello"),
    ]);
    let line = access_line(&server, "GET /hello HTTP/1.1");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(
            "\"GET /hello HTTP/1.1\" 200 15 \"http://ref.example/\" \"agent \\\"q\\\"/1\" app=fixtures_rust time="
        ),
        "{line}"
    );
    let mem: u64 = figure(&line, "mem=", "KiB");
    assert!(mem > 0, "peak memory of the instance: {line}");
    assert!(!line.contains("limit=") && !line.contains("(aborted)"), "{line}");

    // Stopped by the CPU limit: about 1 s of guest CPU, and which limit.
    assert_eq!(curl(&[&server.url("/loop")]).status, 504);
    let line = access_line(&server, "GET /loop HTTP/1.1");
    let cpu: u64 = figure(&line, "cpu=", "ms");
    assert!((900..=1500).contains(&cpu), "{line}");
    assert!(line.contains(" limit=cpu"), "{line}");
}

fn figure(line: &str, key: &str, unit: &str) -> u64 {
    let (_, rest) = line.split_once(key).unwrap_or_else(|| panic!("no {key} in {line}"));
    rest.split(' ').next().unwrap().trim_end_matches(unit).parse().unwrap()
}

#[test]
fn access_log_json_has_every_field() {
    let server = Server::start(
        &rust_fixtures(),
        &["--access-log-format", "json", "--max-body-size", "10"],
    );
    curl(&["-A", "agent/1", &server.url("/hello")]);
    curl(&["--data-binary", "01234567890123456789", &server.url("/echo")]);
    let hello: serde_json::Value = serde_json::from_str(&access_line(&server, "\"/hello\"")).unwrap();
    assert_eq!(hello["client"], "127.0.0.1");
    assert_eq!(hello["method"], "GET");
    assert_eq!(hello["target"], "/hello");
    assert_eq!(hello["protocol"], "HTTP/1.1");
    assert_eq!(hello["status"], 200);
    assert_eq!(hello["bytes"], 15);
    assert_eq!(hello["user_agent"], "agent/1");
    assert_eq!(hello["referer"], serde_json::Value::Null);
    assert_eq!(hello["app"], "fixtures_rust");
    assert!(hello["duration_ms"].as_f64().unwrap() > 0.0, "{hello}");
    assert!(hello["cpu_ms"].is_u64(), "{hello}");
    assert!(hello["peak_memory_bytes"].as_u64().unwrap() > 0, "{hello}");
    assert_eq!(hello["limit"], serde_json::Value::Null);
    assert_eq!(hello["aborted"], false);
    assert!(hello["time"].as_str().unwrap().ends_with('Z'), "{hello}");
    let echo: serde_json::Value = serde_json::from_str(&access_line(&server, "\"/echo\"")).unwrap();
    assert_eq!(echo["status"], 413);
    assert_eq!(echo["limit"], "body-size");
}

#[test]
fn log_format_json_gives_one_object_per_line() {
    let server = Server::start(&python_fixtures(), &["--log-format", "json"]);
    curl(&[&server.url("/raise_error")]);
    assert!(
        server.wait_for_log("\"target\":\"access\"", LOG_WAIT),
        "{}",
        server.log()
    );
    let records: Vec<serde_json::Value> = server
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let app_error = records
        .iter()
        .find(|r| r["target"] == "app" && r["stream"] == "error")
        .unwrap_or_else(|| panic!("no app error record: {records:?}"));
    assert_eq!(app_error["app"], python_app_name().as_str());
    assert_eq!(app_error["level"], "WARN");
    assert!(
        records
            .iter()
            .any(|r| r["message"].as_str().unwrap().starts_with("Serving HTTP on http://"))
    );
}

#[test]
fn log_level_filters_by_target() {
    // Warnings only, but the access log kept: the app's error is a warning, the
    // startup events are not.
    let server = Server::start(&python_fixtures(), &["--log-level", "warn,access=info"]);
    curl(&[&server.url("/raise_error")]);
    curl(&[&server.url("/hello")]);
    access_line(&server, "\"GET /hello HTTP/1.1\" 200");
    let log = server.log();
    assert!(log.contains(&format!("[{}] error:", python_app_name())), "{log}");
    // The app's startup line ("app NAME (PATH compiled|loaded from cache ...") is info.
    assert!(!log.contains(&format!("app {} (", python_app_name())), "{log}");
    assert!(log.contains("Serving HTTP on"), "{log}");

    let quiet = Server::start(&python_fixtures(), &["--log-level", "info,access=off"]);
    curl(&[&quiet.url("/hello")]);
    curl(&[&quiet.url("/raise_error")]);
    let error = format!("[{}] error:", python_app_name());
    assert!(quiet.wait_for_log(&error, LOG_WAIT), "{}", quiet.log());
    assert!(!quiet.log().contains("HTTP/1.1\""), "{}", quiet.log());
    // At info the startup line is there, so its absence above is the filter's doing.
    assert!(
        quiet.log().contains(&format!("app {} (", python_app_name())),
        "{}",
        quiet.log()
    );
}

#[test]
fn wasmtime_records_show_at_debug() {
    let server = Server::start(&rust_fixtures(), &["--log-level", "info,wasmtime=debug,cranelift=off"]);
    curl(&[&server.url("/hello")]);
    assert!(server.log().contains("DEBUG wasmtime"), "{}", server.log());
}

#[test]
fn bad_log_filter_is_refused_clearly() {
    let output = Command::new(wsgi_wasm_bin())
        .args(["serve", "x.wasm", "--log-level", "info,access=loud"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a valid log filter"), "{stderr}");
}

/// stderr is a pipe nobody reads: the log writer blocks on it, requests must not.
#[test]
fn requests_are_answered_while_stderr_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let mut child = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(rust_fixtures())
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stderr = child.stderr.take();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stream = loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            break stream;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Each access line is ~150 bytes: 3000 fill a 64 KiB pipe several times over.
    let request = format!("GET /hello?{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(100));
    let started = Instant::now();
    for i in 0..3000 {
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = [0u8; 256];
        let n = stream
            .read(&mut response)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(response[..n].starts_with(b"HTTP/1.1 200"), "request {i}");
    }
    let took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(took < Duration::from_secs(60), "3000 requests took {took:?}");
}

// --- the admin listener ---

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = curl(&[&format!("http://{addr}{path}")]);
    (r.status, r.text())
}

#[test]
fn admin_probes_answer_on_their_own_port_only() {
    let server = Server::start(&rust_fixtures(), &["--admin-listen", "127.0.0.1:0"]);
    let admin = server.admin_addr();
    assert_ne!(admin, server.addr);
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    let (status, metrics) = get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE wsgi_wasm_requests_total counter"), "{metrics}");
    assert!(metrics.contains("process_resident_memory_bytes "), "{metrics}");
    assert_eq!(get(admin, "/nope").0, 404);
    // The admin port runs no app; the public one has no admin endpoints.
    assert_eq!(get(admin, "/hello").0, 404);
    let (status, body) = get(server.addr, "/metrics");
    assert_eq!(status, 404);
    assert!(body.starts_with("no fixture behaviour"), "{body}");
    assert_eq!(get(server.addr, "/readyz").0, 404);
    assert_eq!(curl(&["-X", "POST", &format!("http://{admin}/readyz")]).status, 405);
}

#[test]
fn readiness_turns_503_at_sigterm_while_in_flight_requests_finish() {
    let server = Server::start(
        &python_fixtures(),
        &["--admin-listen", "127.0.0.1:0", "--shutdown-grace", "10s"],
    );
    let admin = server.admin_addr();
    assert_eq!(get(admin, "/readyz").0, 200);
    let url = server.url("/sleep?s=3");
    let slow = std::thread::spawn(move || curl(&[&url]));
    // Wait until the request is in the app (busy instance in the metrics).
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = format!("wsgi_wasm_instances{{app=\"{}\",state=\"busy\"}} 1", python_app_name());
    while !get(admin, "/metrics").1.contains(&busy) {
        assert!(Instant::now() < deadline, "the slow request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal("TERM");
    let signalled = Instant::now();
    let mut status = 200;
    while status == 200 && signalled.elapsed() < Duration::from_secs(2) {
        status = get(admin, "/readyz").0;
    }
    assert_eq!(status, 503, "readiness after SIGTERM");
    assert!(!slow.is_finished(), "the slow request ended before readiness flipped");
    // Still alive and still answering probes during the drain.
    assert_eq!(get(admin, "/healthz").0, 200);
    let response = slow.join().unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "slept\n"));
    let code = server.signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(code, Some(0));
}

#[test]
fn metrics_count_each_outcome() {
    let server = Server::start(
        &rust_fixtures(),
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--instances",
            "1",
            "--queue",
            "0",
            "--cpu-timeout",
            "1s",
            "--max-memory",
            "64MiB",
        ],
    );
    let admin = server.admin_addr();
    let app = "app=\"fixtures_rust\"";
    let before = get(admin, "/metrics").1;
    assert_eq!(
        sample(&before, &format!("wsgi_wasm_requests_total{{{app},class=\"2xx\"}}")),
        0.0
    );

    assert_eq!(curl(&[&server.url("/hello")]).status, 200);
    assert_eq!(curl(&["--data-binary", "abcdef", &server.url("/echo")]).status, 200);
    assert_eq!(curl(&[&server.url("/nothing-here")]).status, 404);
    assert_eq!(curl(&[&server.url("/trap")]).status, 500);
    assert_eq!(curl(&[&server.url("/alloc?mib=200")]).status, 500);
    // The one instance is busy with /loop for 1 s: a second request finds no
    // instance and no queue room.
    let url = server.url("/loop");
    let looping = std::thread::spawn(move || curl(&[&url]).status);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(admin, "/metrics")
        .1
        .contains(&format!("wsgi_wasm_instances{{{app},state=\"busy\"}} 1"))
    {
        assert!(Instant::now() < deadline, "/loop never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(curl(&[&server.url("/hello")]).status, 503);
    assert_eq!(looping.join().unwrap(), 504);

    let m = get(admin, "/metrics").1;
    let s = |series: &str| sample(&m, series);
    assert_eq!(s(&format!("wsgi_wasm_requests_total{{{app},class=\"2xx\"}}")), 2.0);
    assert_eq!(s(&format!("wsgi_wasm_requests_total{{{app},class=\"4xx\"}}")), 1.0);
    assert_eq!(s(&format!("wsgi_wasm_requests_total{{{app},class=\"5xx\"}}")), 4.0);
    assert_eq!(s(&format!("wsgi_wasm_traps_total{{{app}}}")), 2.0);
    assert_eq!(s(&format!("wsgi_wasm_limit_hits_total{{{app},limit=\"cpu\"}}")), 1.0);
    assert_eq!(s(&format!("wsgi_wasm_limit_hits_total{{{app},limit=\"queue\"}}")), 1.0);
    assert_eq!(s(&format!("wsgi_wasm_limit_hits_total{{{app},limit=\"memory\"}}")), 1.0);
    assert_eq!(s(&format!("wsgi_wasm_request_duration_seconds_count{{{app}}}")), 7.0);
    // The /loop request alone took over a second.
    assert!(s(&format!("wsgi_wasm_request_duration_seconds_sum{{{app}}}")) >= 1.0);
    assert_eq!(
        s(&format!(
            "wsgi_wasm_request_duration_seconds_bucket{{{app},le=\"+Inf\"}}"
        )),
        7.0
    );
    assert!(
        s(&format!(
            "wsgi_wasm_request_duration_seconds_bucket{{{app},le=\"0.5\"}}"
        )) >= 5.0
    );
    assert!(s(&format!("wsgi_wasm_guest_cpu_seconds_total{{{app}}}")) >= 0.9);
    assert_eq!(s(&format!("wsgi_wasm_request_body_bytes_total{{{app}}}")), 6.0);
    assert!(s(&format!("wsgi_wasm_response_body_bytes_total{{{app}}}")) >= 15.0 + 6.0);
    assert_eq!(s(&format!("wsgi_wasm_queue_depth{{{app}}}")), 0.0);
    assert!(s("process_resident_memory_bytes") > 0.0);
    assert!(s("process_open_fds") > 0.0);
}
