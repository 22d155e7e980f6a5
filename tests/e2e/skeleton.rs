//! The walking skeleton: the demo app, bodies in and out, streaming, startup errors.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::support::client::{CurlResponse, curl, curl_with_stdin, python_request, raw_exchange};
use crate::support::components::{demo, python_fixtures, rust_fixtures, wsgi_wasm_bin};
use crate::support::server::Server;

#[test]
fn demo_app_prints_hello_world_and_the_sorted_environ() {
    let server = Server::start(&demo(), &[]);
    let response = curl(&[&server.url("/xyz?abc")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = response.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Hello world!"));
    assert_eq!(lines.next(), Some(""));
    let items: Vec<&str> = lines.collect();
    assert!(items.contains(&"PATH_INFO = '/xyz'"), "{text}");
    assert!(items.contains(&"QUERY_STRING = 'abc'"), "{text}");
    assert!(items.contains(&"REQUEST_METHOD = 'GET'"), "{text}");
    assert!(items.contains(&"GATEWAY_INTERFACE = 'CGI/1.1'"), "{text}");
    assert!(
        items.contains(&format!("SERVER_PORT = '{}'", server.addr.port()).as_str()),
        "{text}"
    );
    assert!(items.contains(&"wsgi.version = (1, 0)"), "{text}");
    let keys: Vec<&str> = items.iter().map(|l| l.split(" = ").next().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "demo_app prints the environ sorted");
    // A one-item body goes out with a Content-Length, as wsgiref sends it.
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
}

/// `size` bytes cycling through every byte value, POSTed to /echo with curl;
/// checks the answer is 200 with the request's Content-Type.
fn echo_through_curl(server: &Server, size: usize) -> (Vec<u8>, CurlResponse) {
    echo_through_curl_via(server, size, "")
}

/// `size` bytes cycling through every byte value.
fn every_byte_value(size: usize) -> Vec<u8> {
    (0..=255u8).cycle().take(size).collect()
}

/// `echo_through_curl` with /echo's query, which picks how the app sends the body.
fn echo_through_curl_via(server: &Server, size: usize, via: &str) -> (Vec<u8>, CurlResponse) {
    let body = every_byte_value(size);
    let response = echo_body_through_curl(server, &body, via);
    (body, response)
}

/// POSTs `body` to /echo?`via` and checks the status and Content-Type come back.
fn echo_body_through_curl(server: &Server, body: &[u8], via: &str) -> CurlResponse {
    let response = curl_with_stdin(
        &[
            "--data-binary",
            "@-",
            "-H",
            "Content-Type: application/x-test",
            &server.url(&format!("/echo?{via}")),
        ],
        Some(body),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/x-test"));
    response
}

#[test]
fn post_body_is_echoed_byte_exact_through_curl() {
    let server = Server::start(&python_fixtures(), &[]);
    let (body, response) = echo_through_curl(&server, 300_000);
    assert_eq!(response.body.len(), body.len());
    assert!(response.body == body, "echoed body differs");
}

#[test]
fn post_body_is_echoed_byte_exact_through_python_http_client() {
    let server = Server::start(&python_fixtures(), &[]);
    let body: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let response = python_request(
        &server.url("/echo"),
        "POST",
        &body,
        &[("Content-Type", "application/octet-stream")],
    );
    assert_eq!(response.status, 200);
    assert!(
        response.body == body,
        "echoed body differs ({} bytes back)",
        response.body.len()
    );
}

#[test]
fn a_python_app_echoes_every_byte_value_however_it_sends_the_body() {
    // The SDK sends body bytes from where they lie in the guest's memory, in
    // pieces of at most 256 KiB, except a whole body of at most 1 KiB (these
    // are not ASCII), which goes back packed as text: sizes around both limits,
    // through each path.
    let server = Server::start(&python_fixtures(), &[]);
    for via in ["", "write", "blocks"] {
        for size in [1, 255, 1_024, 1_025, 262_144, 262_145, 700_001] {
            let (body, response) = echo_through_curl_via(&server, size, via);
            assert!(
                response.body == body,
                "/echo?{via}, {size} bytes: echoed body differs ({} bytes back)",
                response.body.len()
            );
        }
    }
}

#[test]
fn a_rust_guest_echoes_every_byte_value_in_both_response_paths() {
    // `respond` returns an ASCII body of at most 512 bytes packed with the
    // call's result, and sends any other through `write-body`: ASCII around the
    // limit, then bodies of every byte value, small and over 256 KiB.
    let server = Server::start(&rust_fixtures(), &[]);
    let ascii = |size: usize| -> Vec<u8> { (b' '..=b'~').cycle().take(size).collect() };
    for body in [
        ascii(0),
        ascii(512),
        ascii(513),
        every_byte_value(1),
        every_byte_value(1_000),
        every_byte_value(262_145),
    ] {
        let response = echo_body_through_curl(&server, &body, "");
        let size = body.len();
        assert_eq!(response.header("content-length"), Some(size.to_string().as_str()));
        assert!(response.body == body, "{size} bytes: echoed body differs");
    }
}

#[test]
fn empty_post_body_echoes_empty() {
    let server = Server::start(&python_fixtures(), &[]);
    let response = curl(&["-X", "POST", &server.url("/echo")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("0"));
    assert!(response.body.is_empty());
}

#[test]
fn generator_body_streams_as_chunks() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = raw_exchange(
        server.addr,
        b"GET /stream/?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    // Each generator item is its own chunk on the wire, then the last-chunk marker.
    assert_eq!(body, "8\r\nchunk 0\n\r\n8\r\nchunk 1\n\r\n8\r\nchunk 2\n\r\n0\r\n\r\n");

    let many = curl(&[&server.url("/stream/?n=2000")]);
    let expected: String = (0..2000).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(many.text(), expected);
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = raw_exchange(
        server.addr,
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.matches("Hello from the sandbox!").count(), 2, "{text}");
}

#[test]
fn one_access_log_line_per_request() {
    let server = Server::start(&python_fixtures(), &[]);
    curl(&[&server.url("/hello?x=1")]);
    curl(&["-X", "POST", "--data-binary", "abc", &server.url("/echo")]);
    assert!(
        server.wait_for_log("\"POST /echo HTTP/1.1\" 200 3 ", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    assert_eq!(log.matches("\"GET /hello?x=1 HTTP/1.1\" 200 24 ").count(), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("127.0.0.1 - - [") && l.contains("\"GET /hello?x=1 HTTP/1.1\" 200 24 \"-\" \"curl/")),
        "{log}"
    );
}

/// Starts `serve` on a port that is already taken: the command must fail on the
/// app, so it cannot have tried to bind first.
fn serve_fails_before_binding(app: &std::path::Path) -> String {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(wsgi_wasm_bin())
        .args(["serve"])
        .arg(app)
        .args(["--listen", &addr, "--no-cache"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
    assert!(!stderr.contains("Serving HTTP"), "{stderr}");
    assert!(!stderr.contains("listen"), "failed on the port, not the app: {stderr}");
    stderr
}

#[test]
fn missing_app_file_fails_with_one_line_before_binding() {
    let stderr = serve_fails_before_binding(std::path::Path::new("/nonexistent/app.wasm"));
    assert!(
        stderr.starts_with("error: cannot read /nonexistent/app.wasm: "),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn non_component_files_fail_with_one_line_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello, I am not wasm").unwrap();
    let stderr = serve_fails_before_binding(&text);
    assert!(stderr.contains("notes.wasm is not a WebAssembly file"), "{stderr}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let stderr = serve_fails_before_binding(&core);
    assert!(
        stderr.contains("core.wasm is a core WebAssembly module, not a component"),
        "{stderr}"
    );

    // A component, but not one implementing the WSGI world.
    let other = dir.path().join("empty-component.wasm");
    std::fs::write(&other, b"\0asm\x0d\0\x01\0").unwrap();
    let stderr = serve_fails_before_binding(&other);
    assert!(
        stderr.contains("empty-component.wasm does not fit the wsgi-wasm ABI"),
        "{stderr}"
    );

    // A component built for an older ABI: it imports the server interface at
    // version 0.1.0, with one function in it (`log: func(message: string)`).
    let name = b"wsgi-wasm:wsgi/server@0.1.0";
    let mut old = b"\0asm\x0d\0\x01\0".to_vec();
    // Type section: one instance type declaring a func type, then exporting it.
    old.extend([0x07, 25, 1, 0x42, 2]);
    old.extend([0x01, 0x40, 1, 7]); // a type: a func of one param, "message"...
    old.extend(b"message");
    old.extend([0x73, 0x01, 0x00]); // ... a string, and no result
    old.extend([0x04, 0x00, 3]); // an export named "log"...
    old.extend(b"log");
    old.extend([0x01, 0]); // ... of that func type
    // Import section: the interface, as an instance of that type.
    old.extend([0x0a, 32, 1, 0x00, name.len() as u8]);
    old.extend(name);
    old.extend([0x05, 0]);
    let built_before = dir.path().join("built-before.wasm");
    std::fs::write(&built_before, old).unwrap();
    let stderr = serve_fails_before_binding(&built_before);
    assert!(
        stderr.contains("built-before.wasm does not fit the wsgi-wasm ABI (world wsgi-wasm:wsgi/wsgi-app@0.3.0)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a component built by another version of wsgi-wasm must be built again"),
        "{stderr}"
    );
    assert!(stderr.contains("wsgi-wasm:wsgi/server@0.1.0"), "{stderr}");
}

#[test]
fn compile_fills_the_cache_so_serve_starts_without_compiling() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .arg("compile")
        .arg(demo())
        .args(["--cache-dir", cache_dir])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(": compiled in ") && stderr.contains("starts; cached in"),
        "{stderr}"
    );
    // Serve with other limits: the compiled code does not depend on them.
    let server = Server::start(
        &demo(),
        &["--cache-dir", cache_dir, "--max-memory", "64MiB", "--instances", "3"],
    );
    assert!(server.log().contains("loaded from cache"), "{}", server.log());
    assert_eq!(curl(&[&server.url("/")]).status, 200);
}

/// The server maps a component from its cache file (also right after compiling it,
/// see runtime/cache.rs), so a broken or unwritable cache must cost only time.
#[test]
fn a_garbled_cache_entry_is_recompiled_and_replaced() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let first = Server::start(&rust_fixtures(), &["--cache-dir", cache_dir]);
    assert_eq!(curl(&[&first.url("/hello")]).text(), "hello from rust");
    drop(first);
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"not a compiled component").unwrap();

    let second = Server::start(&rust_fixtures(), &["--cache-dir", cache_dir]);
    assert_eq!(curl(&[&second.url("/hello")]).text(), "hello from rust");
    assert!(
        second.log().contains("ignoring unusable cache entry"),
        "{}",
        second.log()
    );
    drop(second);

    let third = Server::start(&rust_fixtures(), &["--cache-dir", cache_dir]);
    assert_eq!(curl(&[&third.url("/hello")]).text(), "hello from rust");
    assert!(third.log().contains("loaded from cache"), "{}", third.log());
}

#[test]
fn an_unwritable_cache_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the cache directory should be: nothing can be stored under it.
    let not_a_dir = dir.path().join("cache");
    std::fs::write(&not_a_dir, b"").unwrap();
    let server = Server::start(&rust_fixtures(), &["--cache-dir", not_a_dir.to_str().unwrap()]);
    assert_eq!(curl(&[&server.url("/hello")]).text(), "hello from rust");
    assert!(
        server.log().contains("could not cache the compiled component"),
        "{}",
        server.log()
    );
}

#[test]
fn compile_rejects_what_serve_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .arg("compile")
        .arg(&core)
        .args(["--cache-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is a core WebAssembly module, not a component"),
        "{stderr}"
    );
}
