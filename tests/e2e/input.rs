//! wsgi.input: every read method, the end of the body, chunked bodies, 100-continue.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::client::{curl, curl_with_stdin};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

const BODY: &str = "line1\nline2\nlast";

fn read_with(server: &Server, method: &str, chunked: bool) -> Value {
    let url = server.url(&format!("/input_methods?method={method}&n=4"));
    let mut args = vec!["--data-binary", "@-", "-H", "Content-Type: text/plain"];
    if chunked {
        args.extend(["-H", "Transfer-Encoding: chunked"]);
    }
    args.push(&url);
    let response = curl_with_stdin(&args, Some(BODY.as_bytes()));
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

fn check_all_methods(chunked: bool) {
    let server = Server::start(&python_fixtures(), &[]);
    let cases = [
        ("read", json!([BODY])),
        ("read_n", json!(["line", "1\nli", "ne2\n", "last"])),
        ("readline", json!(["line1\n", "line2\n", "last"])),
        ("readline_n", json!(["line", "1\n", "line", "2\n", "last"])),
        ("readlines", json!(["line1\n", "line2\n", "last"])),
        ("readlines_hint", json!(["line1\n"])),
        ("iterate", json!(["line1\n", "line2\n", "last"])),
    ];
    for (method, expected) in cases {
        let result = read_with(&server, method, chunked);
        assert_eq!(result["pieces"], expected, "{method} (chunked: {chunked})");
        if method != "readlines_hint" {
            assert_eq!(
                result["after_end"],
                json!(["", "", ""]),
                "reading past the end gives b'' ({method})"
            );
        }
    }
}

#[test]
fn every_input_method_reads_the_body_and_past_the_end_gives_empty_bytes() {
    check_all_methods(false);
}

#[test]
fn chunked_request_bodies_read_the_same_and_input_is_terminated() {
    check_all_methods(true);
    let server = Server::start(&python_fixtures(), &[]);
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let response = curl_with_stdin(
        &[
            "--data-binary",
            "@-",
            "-H",
            "Transfer-Encoding: chunked",
            &server.url("/read_all"),
        ],
        Some(&body),
    );
    let info: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(info["body_length"], 1_000_000);
    assert_eq!(
        info["content_length"],
        Value::Null,
        "no CONTENT_LENGTH for a chunked body"
    );
    assert_eq!(info["input_terminated"], true);
}

#[test]
fn empty_body_reads_as_empty() {
    let server = Server::start(&python_fixtures(), &[]);
    let response = curl(&["-X", "POST", &server.url("/input_methods?method=read")]);
    let result: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(result["pieces"], json!([""]));
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn expect_100_continue_is_answered_only_when_the_app_reads() {
    let server = Server::start(&python_fixtures(), &[]);

    // The app reads: the client gets 100 Continue before sending the body.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut stream), "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let mut body = [0u8; 5];
    stream.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"hello");

    // The app does not read: no 100 Continue, straight to the final response.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"POST /ignore_body HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
}
