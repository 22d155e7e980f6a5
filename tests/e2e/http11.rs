//! HTTP/1.1 framing: keep-alive, pipelining, HTTP/1.0, oversized heads, and
//! Transfer-Encoding values that must never reach the app.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::support::client::{curl, parse_response, raw_exchange};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

fn exchange(server: &Server, request: &[u8]) -> String {
    String::from_utf8_lossy(&raw_exchange(server.addr, request, Duration::from_secs(10))).into_owned()
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&python_fixtures(), &[]);
    let text = exchange(
        &server,
        b"GET /stream?n=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /stream?n=2 HTTP/1.1\r\nHost: h\r\n\r\nGET /stream?n=3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    // The n-th response on the wire is /stream?n=n's: it has n chunks, the
    // last of them "chunk {n-1}".
    let responses: Vec<&str> = text.split("HTTP/1.1 200 OK").skip(1).collect();
    assert_eq!(responses.len(), 3, "{text}");
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(
            response.matches("chunk ").count(),
            i + 1,
            "response {}: {response}",
            i + 1
        );
        assert!(
            response.contains(&format!("chunk {i}\n")),
            "response {}: {response}",
            i + 1
        );
    }
}

#[test]
fn http10_gets_a_complete_response_and_the_connection_closes() {
    let server = Server::start(&python_fixtures(), &[]);
    let text = exchange(&server, b"GET /stream?n=2 HTTP/1.0\r\n\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "HTTP/1.0 has no chunked coding: {head}"
    );
    assert_eq!(body, "chunk 0\nchunk 1\n");
}

#[test]
fn request_line_over_64_kib_gets_414() {
    let server = Server::start(&python_fixtures(), &[]);
    let path = format!("/hello/{}", "a".repeat(70 * 1024));
    let text = exchange(&server, format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    assert!(text.starts_with("HTTP/1.1 414 "), "{}", &text[..text.len().min(200)]);
    // Just under the limit is served.
    let path = format!("/hello/{}", "a".repeat(60 * 1024));
    let text = exchange(
        &server,
        format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{}", &text[..text.len().min(200)]);
}

#[test]
fn too_many_or_too_large_headers_get_431() {
    let server = Server::start(&python_fixtures(), &[]);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let text = exchange(
        &server,
        format!("GET /hello HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes(),
    );
    assert!(text.starts_with("HTTP/1.1 431 "), "{}", &text[..text.len().min(200)]);
    let big = format!("X-Big: {}\r\n", "b".repeat(200 * 1024));
    let text = exchange(
        &server,
        format!("GET /hello HTTP/1.1\r\nHost: h\r\n{big}\r\n").as_bytes(),
    );
    assert!(text.starts_with("HTTP/1.1 431 "), "{}", &text[..text.len().min(200)]);
}

fn ok_count(server: &Server) -> u64 {
    let counts: serde_json::Value = serde_json::from_slice(&curl(&[&server.url("/close_counter/count")]).body).unwrap();
    counts["ok"].as_u64().unwrap()
}

#[test]
fn transfer_encoding_other_than_plain_chunked_never_reaches_the_app() {
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    for (te, extra, expected) in [
        ("gzip, chunked", "", 501),
        ("chunked, chunked", "", 400),
        // No chunked at the end: hyper cannot frame the body and refuses it itself.
        ("gzip", "", 400),
    ] {
        let text = exchange(
            &server,
            format!("POST /close_counter?mode=ok HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n{extra}\r\n5\r\nhello\r\n0\r\n\r\n").as_bytes(),
        );
        let response = parse_response(text.as_bytes()).unwrap_or_else(|| panic!("{te}: {text:?}"));
        assert_eq!(response.status, expected, "Transfer-Encoding: {te} {extra}: {text}");
        assert_eq!(response.header("connection"), Some("close"), "{te}");
    }
    // Two Transfer-Encoding headers saying chunked each.
    let text = exchange(
        &server,
        b"POST /close_counter?mode=ok HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(ok_count(&server), 0, "a refused request reached the app");
    // Plain chunked is fine.
    let text = exchange(
        &server,
        b"POST /close_counter?mode=ok HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(ok_count(&server), 1);
}

#[test]
fn chunked_with_content_length_is_framed_by_chunked_and_the_connection_closes() {
    // RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, and the
    // server must close the connection afterwards (hyper does both), so the bytes
    // after the chunked body can never be read as a smuggled second request.
    let server = Server::start(&python_fixtures(), &[]);
    let text = exchange(
        &server,
        b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let response = parse_response(text.as_bytes()).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(info["body_length"], 5, "{text}");
    assert_eq!(info["content_length"], serde_json::Value::Null, "{text}");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        !text.contains("Hello from the sandbox"),
        "the smuggled request was served: {text}"
    );
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let server = Server::start(&python_fixtures(), &[]);
    let text = exchange(&server, b"GET /hello HTTP/1.1\nHost: h\nConnection: close\n\n");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("Hello from the sandbox!"));
}

#[test]
fn malformed_request_line_gets_400() {
    let server = Server::start(&python_fixtures(), &[]);
    let text = exchange(&server, b"GARBAGE\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 400 "), "{text:?}");
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_whole_response() {
    // What `printf 'GET / HTTP/1.1\r\n...' | nc host port` does: send, then shut
    // down the sending side while waiting for the answer.
    let server = Server::start(&python_fixtures(), &[]);
    for request in [
        &b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET /stream?n=3 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /hello HTTP/1.0\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .expect("the server closes once it has answered");
        let text = String::from_utf8_lossy(&raw);
        let response = parse_response(&raw).unwrap_or_else(|| panic!("no response: {text:?}"));
        assert_eq!(response.status, 200, "{text}");
        let body = response.text();
        let expected = if request.starts_with(b"GET /hello") {
            "Hello from the sandbox!"
        } else if request.starts_with(b"GET /stream") {
            "chunk 2\n"
        } else {
            "\"body_length\": 5"
        };
        assert!(body.contains(expected), "{text}");
    }
}

fn counter_value(server: &Server) -> String {
    curl(&["-H", "Connection: close", &server.url("/global_counter")]).text()
}

#[test]
fn a_malformed_chunked_body_gets_400_and_ends_the_connection() {
    // One instance, so /global_counter counts every call the app gets.
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    for (what, body) in [
        ("a chunk size that is not hex", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        ("a negative chunk size", b"-1\r\nhello\r\n0\r\n\r\n"),
        ("no CRLF after the chunk data", b"5\r\nhelloXX0\r\n\r\n"),
        (
            "a chunk size that overflows",
            b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        let mut request = b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        // A second request on the same connection: it must never reach the app.
        request.extend_from_slice(b"GET /global_counter HTTP/1.1\r\nHost: h\r\n\r\n");
        let text = exchange(&server, &request);
        let response = parse_response(text.as_bytes()).unwrap_or_else(|| panic!("{what}: {text:?}"));
        assert_eq!(response.status, 400, "{what}: {text}");
        assert_eq!(response.header("connection"), Some("close"), "{what}: {text}");
        assert!(
            !text.contains(" 200 OK"),
            "the request behind it was answered: {what}: {text}"
        );
        assert!(response.text().contains("not valid chunked encoding"), "{what}: {text}");
    }
    assert_eq!(
        counter_value(&server),
        "1",
        "a request after a malformed body reached the app"
    );
}

#[test]
fn http11_requests_without_one_valid_host_get_400_and_never_reach_the_app() {
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    for (what, headers, message) in [
        ("no Host", "", "must have a Host header"),
        ("two Hosts", "Host: a\r\nHost: a\r\n", "only one Host header"),
        ("two different Hosts", "Host: a\r\nHost: b\r\n", "only one Host header"),
        ("a space in Host", "Host: a b\r\n", "not a valid host"),
        ("userinfo in Host", "Host: user@a\r\n", "not a valid host"),
        ("a non-numeric port", "Host: a:http\r\n", "not a valid host"),
        ("a path in Host", "Host: a/b\r\n", "not a valid host"),
        ("an unclosed IPv6 literal", "Host: [::1\r\n", "not a valid host"),
    ] {
        let text = exchange(
            &server,
            format!("GET /global_counter HTTP/1.1\r\n{headers}\r\nGET /global_counter HTTP/1.1\r\nHost: h\r\n\r\n")
                .as_bytes(),
        );
        let response = parse_response(text.as_bytes()).unwrap_or_else(|| panic!("{what}: {text:?}"));
        assert_eq!(response.status, 400, "{what}: {text}");
        assert!(response.text().contains(message), "{what}: {text}");
        assert_eq!(response.header("connection"), Some("close"), "{what}: {text}");
        assert!(
            !text.contains(" 200 OK"),
            "the request behind it was answered: {what}: {text}"
        );
    }
    assert_eq!(counter_value(&server), "1", "a refused request reached the app");
}

#[test]
fn hosts_that_are_allowed_reach_the_app_and_absolute_form_names_the_host() {
    let server = Server::start(&python_fixtures(), &[]);
    // HTTP/1.0 has no Host requirement.
    let text = exchange(&server, b"GET /hello HTTP/1.0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    for host in ["example.com:8080", "[::1]:80", "127.0.0.1", ""] {
        let text = exchange(
            &server,
            format!("GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(text.starts_with("HTTP/1.1 200 OK"), "Host: {host}: {text}");
    }
    // RFC 9112 section 3.2.2: the target's authority is the host; the app sees it
    // as HTTP_HOST, not the Host header it replaces.
    let text = exchange(
        &server,
        b"GET http://Target.example:8081/environ?x=1 HTTP/1.1\r\nHost: header.example\r\nConnection: close\r\n\r\n",
    );
    let response = parse_response(text.as_bytes()).unwrap();
    assert_eq!(response.status, 200, "{text}");
    let environ: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(environ["HTTP_HOST"]["value"], "Target.example:8081", "{text}");
    assert_eq!(environ["PATH_INFO"]["value"], "/environ", "{text}");
    assert_eq!(environ["QUERY_STRING"]["value"], "x=1", "{text}");
}
