//! start_response, write(), the result iterable, close() and Content-Length: what
//! the client sees when the app gets them right and wrong.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::client::{curl, parse_response, raw_exchange};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

fn get(server: &Server, target: &str) -> Vec<u8> {
    raw_exchange(
        server.addr,
        format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
}

/// A 500 with none of the app's response in it: not its status, headers or body.
fn assert_clean_500(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let response = parse_response(raw).unwrap_or_else(|| panic!("no response: {text:?}"));
    assert_eq!(response.status, 500, "{text}");
    assert!(!text.contains("SECRET"), "the app's body leaked: {text}");
    assert!(
        !text.to_ascii_lowercase().contains("x-evil"),
        "the app's header leaked: {text}"
    );
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn status_must_be_three_digits_a_space_and_a_reason() {
    let server = Server::start(&python_fixtures(), &[]);
    for status in [
        "200",
        "200OK",
        "20 OK",
        "2000 OK",
        "abc OK",
        "99 X",
        "101 Switching Protocols",
    ] {
        assert_clean_500(&get(&server, &format!("/invalid_response?status={}", encode(status))));
    }
    let ok = parse_response(&get(&server, "/invalid_response?status=299%20Fine%20Thanks")).unwrap();
    assert_eq!(ok.status, 299);
    assert!(
        ok.text().contains("SECRET"),
        "a valid response is sent as the app made it"
    );
}

#[test]
fn custom_reason_phrase_is_sent_as_written() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = get(&server, "/invalid_response?status=200%20Very%20Fine");
    assert!(
        raw.starts_with(b"HTTP/1.1 200 Very Fine\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn header_with_cr_lf_or_control_characters_is_refused() {
    let server = Server::start(&python_fixtures(), &[]);
    for (name, value) in [
        ("X-Evil", "a\r\nSet-Cookie: pwned=1"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\x00b"),
        // NULs would shift the fields of a packed response (`call`'s result): the
        // SDK must send such a head the slow way, where the host refuses it.
        ("X-Evil", "a\x00X-Injected\x00pwned"),
        ("X-Evil", "a\x1bb"),
        ("X-Evil\r\nX-Injected", "v"),
        ("X Evil", "v"),
        ("X-Evil:", "v"),
    ] {
        let raw = get(
            &server,
            &format!("/invalid_response?name={}&value={}", encode(name), encode(value)),
        );
        assert_clean_500(&raw);
        assert!(!String::from_utf8_lossy(&raw).contains("pwned"));
    }
}

#[test]
fn header_that_is_not_latin1_is_refused() {
    let server = Server::start(&python_fixtures(), &[]);
    assert_clean_500(&get(
        &server,
        &format!("/invalid_response?name=X-Evil&value={}", encode("\u{263a}")),
    ));
    // latin-1 itself is fine, and arrives as those bytes.
    let raw = get(
        &server,
        &format!("/invalid_response?name=X-Latin&value={}", encode("caf\u{e9}")),
    );
    let needle = b"x-latin: caf\xe9\r\n";
    assert!(
        raw.windows(needle.len()).any(|w| w == needle),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn hop_by_hop_headers_are_refused() {
    let server = Server::start(&python_fixtures(), &[]);
    for name in [
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Trailer",
        "Proxy-Authenticate",
        "Proxy-Connection",
    ] {
        let raw = get(&server, &format!("/invalid_response?name={name}&value=x"));
        assert_clean_500(&raw);
    }
}

#[test]
fn start_response_twice_without_exc_info_is_an_error() {
    let server = Server::start(&python_fixtures(), &[]);
    assert_clean_500(&get(&server, "/start_response_twice"));
    assert!(
        server.wait_for_log("headers already set", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn exc_info_before_headers_are_sent_replaces_the_response() {
    let server = Server::start(&python_fixtures(), &[]);
    let response = parse_response(&get(&server, "/exc_info_before_headers")).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.text(), "replacement error page\n");
    assert!(response.header("x-first").is_none(), "the first head must be discarded");
}

#[test]
fn exc_info_after_headers_are_sent_aborts_the_connection() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = get(&server, "/exc_info_after_headers");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("first part\n"), "{text}");
    // Chunked framing without the terminating 0-chunk: a truncated response, not a clean end.
    assert!(!text.ends_with("0\r\n\r\n"), "response ended cleanly: {text:?}");
    assert!(!text.contains("never sent"), "{text}");
    assert!(
        server.wait_for_log("(aborted)", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // curl agrees that the transfer broke.
    let output = std::process::Command::new("curl")
        .args(["-sS", &server.url("/exc_info_after_headers")])
        .output()
        .unwrap();
    assert!(!output.status.success(), "curl saw a complete response");
}

#[test]
fn write_callable_works_mixed_with_an_iterable() {
    let server = Server::start(&python_fixtures(), &[]);
    let response = curl(&[&server.url("/write_callable")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "written 1\nwritten 2\niterated 1\niterated 2\n");
}

fn close_counts(server: &Server) -> serde_json::Value {
    serde_json::from_slice(&curl(&[&server.url("/close_counter/count")]).body).unwrap()
}

#[test]
fn close_is_called_exactly_once_on_success_on_error_and_on_disconnect() {
    // One instance, so the counter (a module global) sees every request.
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);

    assert_eq!(curl(&[&server.url("/close_counter?mode=ok")]).text(), "all good\n");
    assert_eq!(close_counts(&server)["ok"], 1);

    let raw = get(&server, "/close_counter?mode=raise");
    assert!(String::from_utf8_lossy(&raw).contains("about to fail"));
    assert_eq!(close_counts(&server)["raise"], 1);

    // A whole body in one chunk with its Content-Length (as frameworks return
    // theirs), then an empty chunk, from a generator and from a list's iterator
    // (which the SDK answers as one packed response); and the same head with an
    // exception after the first chunk: the client gets the body either way,
    // close() runs once.
    for mode in ["declared", "declared_list"] {
        let declared = curl(&[&server.url(&format!("/close_counter?mode={mode}"))]);
        assert_eq!(declared.status, 200, "{mode}");
        assert_eq!(declared.header("content-length"), Some("9"), "{mode}");
        assert_eq!(declared.text(), "all good\n", "{mode}");
        assert_eq!(close_counts(&server)[mode], 1, "{mode}");
    }
    let raw = String::from_utf8_lossy(&get(&server, "/close_counter?mode=declared_raise")).into_owned();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nabout to fail\n"), "{raw}");
    assert_eq!(close_counts(&server)["declared_raise"], 1);

    // Hang up in the middle of an endless stream.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /close_counter?mode=slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 100_000 {
        got += stream.read(&mut buf).unwrap();
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while close_counts(&server)["slow"] != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = close_counts(&server);
    assert_eq!(
        counts,
        serde_json::json!({
            "ok": 1, "raise": 1, "slow": 1, "declared": 1, "declared_list": 1, "declared_raise": 1,
            "declared_then_work": 0
        })
    );
    assert!(
        server.wait_for_log("client disconnected", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn a_latin1_piece_over_256_kib_is_refused_whatever_its_characters() {
    // wsgi.wit: tls.write takes a latin-1 string of at most 256 KiB of bytes.
    // The app calls the import itself (the SDK never sends more) on a handle
    // that names no connection, and shows the answer.
    let server = Server::start(&python_fixtures(), &[]);
    let limit = 256 * 1024;
    // "x" is one UTF-8 byte, "é" (0xE9 as a byte) two.
    for char in ["x", "%C3%A9"] {
        let at_limit = curl(&[&server.url(&format!("/raw_write?n={limit}&c={char}"))]);
        assert_eq!(at_limit.text(), "refused: the TLS connection is closed", "{char}");
        let over = curl(&[&server.url(&format!("/raw_write?n={}&c={char}", limit + 1))]);
        assert_eq!(
            over.text(),
            "refused: body piece is larger than 262144 bytes; send at most that per call",
            "{char}"
        );
    }
}

#[test]
fn write_memory_sends_only_a_range_inside_the_guests_memory_of_at_most_256_kib() {
    // wsgi.wit: write-memory sends bytes the guest names by address and length
    // in its own memory. The app calls the import itself with the ranges below.
    let server = Server::start(&python_fixtures(), &[]);
    let answer = |case: &str| curl(&[&server.url(&format!("/raw_memory_write?case={case}"))]);
    let inside = answer("inside");
    assert_eq!(
        (inside.status, inside.text()),
        (200, "[inside-the-range]accepted".to_owned())
    );
    let outside = answer("outside").text();
    assert!(
        outside.starts_with("[]refused: memory range 4294967280+64 is outside the guest's memory ("),
        "{outside}"
    );
    assert_eq!(
        answer("over").text(),
        "[]refused: body piece is larger than 262144 bytes; send at most that per call"
    );
    // A refused call breaks nothing: the instance serves the next request.
    assert_eq!(answer("inside").text(), "[inside-the-range]accepted");
}

#[test]
fn content_length_cuts_off_extra_bytes() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = raw_exchange(
        server.addr,
        b"GET /body_longer_than_content_length HTTP/1.1\r\nHost: h\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&raw);
    let (first, second) = text
        .split_once("\r\n\r\n12345")
        .expect("first body is exactly the declared 5 bytes");
    assert!(first.contains("content-length: 5"), "{first}");
    assert!(!text.contains("67890"), "bytes past Content-Length were sent: {text}");
    // The connection stays in sync: the next response follows right after.
    assert!(second.starts_with("HTTP/1.1 200 OK"), "{second:?}");
    assert!(second.contains("Hello from the sandbox!"));
}

#[test]
fn short_body_ends_the_connection_instead_of_hanging() {
    let server = Server::start(&python_fixtures(), &[]);
    let started = Instant::now();
    let raw = raw_exchange(
        server.addr,
        b"GET /body_shorter_than_content_length HTTP/1.1\r\nHost: h\r\n\r\n",
        Duration::from_secs(20),
    );
    assert!(started.elapsed() < Duration::from_secs(10), "client was left waiting");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("content-length: 10"), "{text}");
    assert!(text.ends_with("\r\n\r\n12345"), "{text:?}");
}

#[test]
fn app_that_never_calls_start_response_gives_500() {
    let server = Server::start(&python_fixtures(), &[]);
    assert_clean_500(&get(&server, "/no_start_response"));
}

#[test]
fn app_returning_none_or_str_gives_500() {
    let server = Server::start(&python_fixtures(), &[]);
    assert_clean_500(&get(&server, "/returns_none"));
    assert_clean_500(&get(&server, "/returns_str"));
    assert!(
        server.wait_for_log("must return an iterable of bytes, not str", Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

#[test]
fn head_sends_headers_and_no_body() {
    let server = Server::start(&python_fixtures(), &[]);
    let raw = raw_exchange(
        server.addr,
        b"HEAD /status_code HTTP/1.1\r\nHost: h\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    assert!(
        head.contains("content-length: 20"),
        "HEAD keeps the GET's length: {head}"
    );
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "a HEAD body was sent: {rest:?}");
    let streamed = raw_exchange(
        server.addr,
        b"HEAD /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&streamed);
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    assert!(!text.contains("chunk"), "{text}");
}

#[test]
fn status_204_and_304_send_no_body() {
    let server = Server::start(&python_fixtures(), &[]);
    for code in [204, 304] {
        let raw = raw_exchange(
            server.addr,
            format!("GET /status_code?code={code} HTTP/1.1\r\nHost: h\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {code} ")), "{head}");
        assert!(!text.contains("body for status"), "{text}");
        assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest:?}");
    }
}

#[test]
fn a_whole_declared_body_goes_out_while_the_app_still_works() {
    // PEP 3333: a server must not delay a block while the app produces the next.
    // The app yields its whole declared body, then works for WORK_SECONDS (5 s,
    // tests/fixtures/python/close_counter.py) before its generator ends.
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    assert_eq!(curl(&[&server.url("/close_counter?mode=ok")]).status, 200);
    let started = Instant::now();
    let response = curl(&[&server.url("/close_counter?mode=declared_then_work")]);
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "all good\n");
    assert!(
        took < Duration::from_secs(3),
        "the body waited for the app's work: {took:?}"
    );
    // The work still ends, and close() runs after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while close_counts(&server)["declared_then_work"] != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(close_counts(&server)["declared_then_work"], 1);
}
