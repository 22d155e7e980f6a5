//! The HTTP/1.1 edge under attack: a corpus of malformed and request-smuggling
//! requests, each sent over a raw socket with a second, harmless request pipelined
//! behind it. For every case the test checks the status RFC 9110/9112 asks for and
//! that the request behind it never reached the server (so a front proxy that
//! framed the bytes differently cannot have smuggled it to the app).
//!
//! Where each case comes from (the `source` column):
//! - "RFC 9112 x.y" / "RFC 9110 x.y": the section that says what to do;
//! - "gunicorn <file>": gunicorn's invalid-request corpus, tests/requests/invalid/<file>;
//! - "http-garden #n": server bug n in the HTTP Garden's TROPHIES.md (differential
//!   fuzzing of HTTP implementations, narfindustries/http-garden).
//!
//! Where hyper answers differently from what the RFC prefers and the answer is
//! still safe (the request is refused and the connection closed), the case pins
//! what hyper does and says so in `note`.

use std::time::Duration;

use crate::support::client::{CurlResponse, parse_response, raw_exchange};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

struct Case {
    name: &'static str,
    source: &'static str,
    request: &'static [u8],
    /// The status the client must get.
    status: u16,
    /// Why the status is not the one the RFC prefers, when it is not.
    note: &'static str,
}

const fn case(name: &'static str, source: &'static str, request: &'static [u8], status: u16) -> Case {
    Case {
        name,
        source,
        request,
        status,
        note: "",
    }
}

const fn pinned(
    name: &'static str,
    source: &'static str,
    request: &'static [u8],
    status: u16,
    note: &'static str,
) -> Case {
    Case {
        name,
        source,
        request,
        status,
        note,
    }
}

/// Every request here is refused (or, where the RFC allows serving it, served and
/// the connection closed): nothing sent after it on the connection may be read.
const REFUSED: &[Case] = &[
    // --- Content-Length ---------------------------------------------------------
    case("CL list of different values", "RFC 9110 8.6", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab", 400),
    case("CL with a plus sign", "RFC 9110 8.6; http-garden #10", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400),
    case("two different CLs", "RFC 9112 6.3; gunicorn 021.http; http-garden #23", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 2\r\n\r\nxyz", 400),
    case("two different CLs, smaller first", "http-garden #33", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\nZ", 400),
    case("CL -0", "gunicorn 022.http", b"POST /read_all HTTP/1.0\r\nContent-Length: -0\r\n\r\n", 400),
    case("CL negative", "http-garden #26", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: -48\r\n\r\n", 400),
    case("CL with an underscore", "gunicorn 023.http; http-garden #10", b"POST /read_all HTTP/1.0\r\nContent-Length: 0_1\r\n\r\n", 400),
    case("CL with two numbers", "gunicorn prefix_04.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 3 1\r\n\r\nxyz", 400),
    case("CL with a trailing letter", "http-garden #29", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 1Z\r\n\r\nZ", 400),
    case("CL in hex", "RFC 9110 8.6", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    case("CL empty", "http-garden #16, #38", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400),
    case("CL beyond 64 bits", "RFC 9110 8.6", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    case("space before the colon", "RFC 9112 5.1; gunicorn 020.http; http-garden #3", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\nxyz", 400),
    case("whitespace before the first header", "RFC 9112 2.2; http-garden #4", b"POST /read_all HTTP/1.1\r\n\tContent-Length: 1\r\nHost: h\r\n\r\nX", 400),
    case("obs-text at the end of a header name", "http-garden #20", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length\x85: 10\r\n\r\n0123456789", 400),
    case("header without a colon", "RFC 9112 5.1; http-garden #28", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length 10\r\n\r\n0123456789", 400),
    case("header name split over two lines", "http-garden #37", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-\r\nEncoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    // --- Transfer-Encoding ------------------------------------------------------
    pinned("TE chunked and CL", "RFC 9112 6.1, 6.3; gunicorn chunked_02.http",
        b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nTransfer-Encoding: \tchunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 200,
        "RFC 9112 6.1 lets a server reject this or frame it by Transfer-Encoding and close the connection; hyper does the latter"),
    pinned("TE ,chunked (empty list element) and CL", "RFC 9110 5.6.1; http-garden #21",
        b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 200,
        "empty list elements are ignored (RFC 9110 5.6.1), so this is chunked plus CL: framed by chunked, then closed"),
    case("TE xchunked", "RFC 9112 6.3", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    case("TE chunked twice in one header", "RFC 9112 6.1; gunicorn chunked_03.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    case("TE chunked in two headers", "http-garden #11; gunicorn chunked_04.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n", 400),
    case("TE identity, chunked", "RFC 9112 6.1 (identity is no coding); gunicorn chunked_03.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    case("TE gzip, chunked", "RFC 9112 6.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    case("TE chunked not last", "RFC 9112 6.3; gunicorn chunked_06.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    case("TE with a vertical tab", "gunicorn chunked_whitespace.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    case("TE with non-breaking spaces", "http-garden #12", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \xa0chunked\xa0\r\n\r\n0\r\n\r\n", 400),
    case("TE in HTTP/1.0", "RFC 9112 6.1; gunicorn chunked_05.http", b"POST /read_all HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    // --- chunk sizes and chunk framing -----------------------------------------
    case("chunk size 0x5", "RFC 9112 7.1; http-garden #25", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk size -1", "RFC 9112 7.1; http-garden #25", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk size +5", "RFC 9112 7.1; http-garden #25", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk size with an underscore", "gunicorn chunked_01.http; http-garden #1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n", 400),
    case("chunk size 0_2e", "http-garden #22", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0_2e\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    case("chunk size that overflows 64 bits", "RFC 9112 7.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    case("empty chunk size", "gunicorn chunked_13.http; http-garden #17", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk extension without a size", "gunicorn chunked_12.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n ;foo=bar\r\nhello\r\n0\r\n\r\n", 400),
    case("bare CR in a chunk extension", "RFC 9112 2.2; gunicorn chunked_14.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=val\rue\r\nhello\r\n0\r\n\r\n", 400),
    case("chunk line ended by CR CR", "http-garden #31", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n", 400),
    case("no CRLF after the chunk data", "RFC 9112 7.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
    case("chunk size not hex", "RFC 9112 7.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    // --- field syntax: obs-fold, CR, NUL, control bytes ------------------------
    case("obs-fold", "RFC 9112 5.2; gunicorn obs_fold_01.http", b"GET /hello HTTP/1.1\r\nLong: one\r\n two\r\nHost: h\r\n\r\n", 400),
    case("obs-fold of an empty value", "RFC 9112 5.2; gunicorn 013.http", b"GET /hello HTTP/1.1\r\nHost: h\r\nAccept:\r\n */*\r\n\r\n", 400),
    case("bare CR in a header value", "RFC 9112 2.2; http-garden #34", b"GET /hello HTTP/1.1\r\nHost: h\r\nHeader: va\rlue\r\n\r\n", 400),
    case("bare CR between fields", "RFC 9112 2.2; http-garden #13", b"GET /hello HTTP/1.1\r\nHost: h\r\nVisible: :/\rSmuggled: :)\r\n\r\n", 400),
    case("NUL in a header value", "RFC 9110 5.5; http-garden #2, #35", b"GET /hello HTTP/1.1\r\nHost: h\r\nTest: test\x00THESE BYTES GET DROPPED\r\n\r\n", 400),
    case("control byte in a header value", "RFC 9110 5.5", b"GET /hello HTTP/1.1\r\nHost: h\r\nTest: a\x01b\r\n\r\n", 400),
    case("DEL in a header value", "RFC 9110 5.5", b"GET /hello HTTP/1.1\r\nHost: h\r\nTest: a\x7fb\r\n\r\n", 400),
    case("NUL and controls in a header name", "RFC 9110 5.1; http-garden #14", b"GET /hello HTTP/1.1\r\nHost: h\r\n\x00\x01\x02: whatever\r\n\r\n", 400),
    case("separators in a header name", "RFC 9110 5.1; http-garden #14", b"GET /hello HTTP/1.1\r\nHost: h\r\n(),/;<=>?@[]{}: whatever\r\n\r\n", 400),
    case("non-ASCII in a header name", "gunicorn nonascii_03.http; http-garden #8", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length\xc3\x9f: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    case("empty header name", "RFC 9110 5.1; http-garden #18, #27", b"GET /hello HTTP/1.1\r\n: ignored\r\nHost: h\r\n\r\n", 400),
    case("bare LF inside a field smuggling a request line", "gunicorn invalid_field_value_01.http", b"GET /hello HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 26\r\nGET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    // --- request line ------------------------------------------------------------
    pinned("HTTP/1.2", "RFC 9110 6.2", b"GET /hello HTTP/1.2\r\nHost: h\r\n\r\n", 400,
        "RFC 9110 6.2 would answer a higher minor version as HTTP/1.1; hyper refuses it"),
    pinned("HTTP/2.0 on an HTTP/1 connection", "RFC 9110 15.6.6", b"GET /hello HTTP/2.0\r\nHost: h\r\n\r\n", 400,
        "RFC 9110 15.6.6 suggests 505 for an unsupported major version; hyper answers 400"),
    case("lower-case http/1.1", "RFC 9112 2.3", b"GET /hello http/1.1\r\nHost: h\r\n\r\n", 400),
    case("version HTTP/111", "RFC 9112 2.3; gunicorn 018.http", b"GET /hello HTTP/111\r\nHost: h\r\n\r\n", 400),
    case("version with a huge major", "gunicorn prefix_06.http; http-garden #24", b"GET /hello HTTP/4294967295.255\r\nHost: h\r\n\r\n", 400),
    case("version HTTP/1.32", "RFC 9112 2.3; http-garden #5", b"GET /hello HTTP/1.32\r\nHost: h\r\n\r\n", 400),
    case("version split by CRs", "http-garden #15", b"GET /hello HTTP/\r\r1.1\r\nHost: h\r\n\r\n", 400),
    case("HTTP/0.9 request line", "RFC 9112 2.3", b"GET /hello\r\n\r\n", 400),
    case("two spaces before the target", "RFC 9112 3", b"GET  /hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("two spaces before the version", "RFC 9112 3", b"GET /hello  HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("space after the version", "RFC 9112 3", b"GET /hello HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    case("LF between target and version", "RFC 9112 3; http-garden #9", b"GET /hello\nHTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("space inside the target", "RFC 9112 3.2", b"GET /hel lo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("NUL in the target", "RFC 9112 3.2", b"GET /hel\x00lo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("control byte in the target", "RFC 9112 3.2", b"GET /hel\x01lo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("DEL in the target", "RFC 9112 3.2", b"GET /hel\x7flo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("NUL in the method", "gunicorn prefix_01.http", b"GET\x00PROXY /hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("non-ASCII in the method", "gunicorn nonascii_01.http", b"GET\xc3\x9f /hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("colon in the method", "RFC 9110 9.1; gunicorn prefix_05.http, 003b.http", b"GET: /hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("separators in the method", "RFC 9110 9.1; http-garden #6", b"G=\":<>(e),[T];?\" /hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("NUL method and dotted version", "http-garden #40", b"\x00 / HTTP/............0596.7407.\r\n\r\n", 400),
    case("target that is no URI form", "RFC 9112 3.2; http-garden #7", b"GET ! HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("authority-form outside CONNECT", "RFC 9112 3.2.3", b"GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("asterisk-form outside OPTIONS", "RFC 9112 3.2.4", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("absolute-form with userinfo", "RFC 9110 4.2.4", b"GET http://user@h/hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    case("absolute-form with another scheme", "RFC 9112 3.2.2", b"GET ftp://h/hello HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    // --- Host ----------------------------------------------------------------------
    case("HTTP/1.1 without Host", "RFC 9112 3.2; gunicorn 010.http", b"GET /hello HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    case("two Host headers", "RFC 9112 3.2; gunicorn 042.http", b"GET /hello HTTP/1.1\r\nHost: localhost\r\nHost: evil.example.com\r\n\r\n", 400),
    case("Host with a space", "RFC 9112 3.2", b"GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    case("Host with userinfo", "RFC 9112 3.2; RFC 9110 7.2", b"GET /hello HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),
    case("Host with a bad port", "RFC 9112 3.2; RFC 9110 7.2", b"GET /hello HTTP/1.1\r\nHost: h:8o\r\n\r\n", 400),
    case("two Content-Types", "RFC 9110 5.3; gunicorn 041.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\n{}", 400),
];

/// Unusual but unambiguous requests that must be served, with the connection kept
/// open: what the app sees is checked, and the request behind it is answered too.
const SERVED: &[(&str, &str, &[u8], &str)] = &[
    ("CL with leading zeros", "RFC 9110 8.6; http-garden #32", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello", "\"body_length\": 5"),
    ("the same CL twice", "RFC 9110 8.6", b"POST /read_all HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "\"body_length\": 5"),
    ("chunk size with leading zeros", "RFC 9112 7.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n", "\"body_length\": 5"),
    // hyper skips extensions up to the CRLF without checking their grammar; every
    // parser ends the chunk line at that CRLF, so nothing can be smuggled in one.
    ("chunk extension that is not a token (pinned: RFC 9112 7.1.1 makes it invalid)", "RFC 9112 7.1.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n", "\"body_length\": 5"),
    ("chunk extensions", "RFC 9112 7.1.1", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0\r\n\r\n", "\"body_length\": 5"),
    ("trailer field that looks like a request line", "RFC 9112 7.1.2; http-garden #39", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX:POST / HTTP/1.1\r\n\r\n", "\"body_length\": 0"),
    ("underscored TE beside a real one", "gunicorn chunked_07.http", b"POST /read_all HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "\"body_length\": 11"),
    ("empty lines before the request line", "RFC 9112 2.2", b"\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\n\r\n", "Hello from the sandbox!"),
    ("HTTP/1.0 without Host", "RFC 9112 3.2", b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "Hello from the sandbox!"),
    ("absolute-form target", "RFC 9112 3.2.2", b"GET http://h/hello HTTP/1.1\r\nHost: other\r\n\r\n", "Hello from the sandbox!"),
    ("empty Host", "RFC 9112 3.2", b"GET /hello HTTP/1.1\r\nHost:\r\n\r\n", "Hello from the sandbox!"),
];

/// How many responses `text` holds: status lines ("HTTP/1.x NNN "), wherever the
/// previous body ended.
fn status_lines(text: &str) -> usize {
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| {
            let rest = text.as_bytes()[i + 7..].iter().take(6).copied().collect::<Vec<u8>>();
            rest.len() == 6 && rest[1] == b' ' && rest[2..5].iter().all(u8::is_ascii_digit) && rest[5] == b' '
        })
        .count()
}

fn follow_up(marker: &str) -> Vec<u8> {
    format!("GET /hello?{marker} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()
}

fn exchange(server: &Server, request: &[u8]) -> String {
    String::from_utf8_lossy(&raw_exchange(server.addr, request, Duration::from_secs(10))).into_owned()
}

#[test]
fn malformed_and_smuggling_requests_are_refused_and_nothing_behind_them_is_read() {
    let server = Server::start(&python_fixtures(), &[]);
    let mut failures = Vec::new();
    for (i, case) in REFUSED.iter().enumerate() {
        let marker = format!("after-refused-{i}");
        let mut request = case.request.to_vec();
        request.extend_from_slice(&follow_up(&marker));
        let text = exchange(&server, &request);
        let status = parse_response(text.as_bytes()).map(|r| r.status);
        let responses = status_lines(&text);
        if status != Some(case.status) || responses != 1 {
            failures.push(format!(
                "{} [{}]: wanted one {} response{}, got {status:?} in {responses} responses: {text:?}",
                case.name,
                case.source,
                case.status,
                if case.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", case.note)
                },
            ));
        }
    }
    // Any follow-up that reached the server is in the access log; one request on a
    // fresh connection is logged after all of them.
    crate::support::client::curl(&[&server.url("/hello?sentinel")]);
    assert!(
        server.wait_for_log("sentinel", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    for (i, case) in REFUSED.iter().enumerate() {
        if server.log().contains(&format!("after-refused-{i} ")) {
            failures.push(format!(
                "{} [{}]: the request behind it was served",
                case.name, case.source
            ));
        }
    }
    let passed = REFUSED.len() - failures.len();
    assert!(
        failures.is_empty(),
        "{passed}/{} cases passed:\n{}",
        REFUSED.len(),
        failures.join("\n")
    );
}

#[test]
fn unusual_but_valid_requests_are_served_and_the_connection_stays_usable() {
    let server = Server::start(&python_fixtures(), &[]);
    let mut failures = Vec::new();
    for (i, (name, source, request, expected)) in SERVED.iter().enumerate() {
        let marker = format!("after-served-{i}");
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(&follow_up(&marker));
        bytes.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let text = exchange(&server, &bytes);
        let first = parse_response(text.as_bytes());
        // All three answered: the case, the request behind it, and the closing one.
        // The parsed body runs on into the pipelined answers, so it is cut to its
        // Content-Length before looking for what the case expects.
        let own_body = |r: &CurlResponse| {
            let length: usize = r.header("content-length")?.parse().ok()?;
            Some(String::from_utf8_lossy(r.body.get(..length)?).into_owned())
        };
        let ok = first
            .as_ref()
            .is_some_and(|r| r.status == 200 && own_body(r).is_some_and(|body| body.contains(expected)))
            && text.matches(" 200 OK\r\n").count() == 3
            && server.wait_for_log(&format!("after-served-{i} "), Duration::from_secs(5));
        if !ok {
            failures.push(format!("{name} [{source}]: {text:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}/{} cases passed:\n{}",
        SERVED.len() - failures.len(),
        SERVED.len(),
        failures.join("\n")
    );
}
