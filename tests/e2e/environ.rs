//! PEP 3333 / CGI environ rules, checked from inside the guest.

use std::time::Duration;

use serde_json::Value;

use crate::support::client::{curl, raw_exchange};
use crate::support::components::{python_fixtures, rust_fixtures};
use crate::support::server::Server;

/// The body of a 200 answer to `request`, sent as is over a raw socket.
fn body_via_raw(server: &Server, request: &str) -> Vec<u8> {
    let raw = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(10));
    let response = crate::support::client::parse_response(&raw).expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    response.body
}

fn environ_via_raw(server: &Server, request: &str) -> Value {
    serde_json::from_slice(&body_via_raw(server, request)).unwrap()
}

fn value<'a>(env: &'a Value, key: &str) -> &'a Value {
    &env[key]["value"]
}

/// The CGI keys of a plain `GET` with `Host` and `Connection` headers.
const CGI_KEYS: [&str; 13] = [
    "GATEWAY_INTERFACE",
    "HTTP_CONNECTION",
    "HTTP_HOST",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
];
/// The wsgi.* keys the host sends (the flags and the scheme).
const WSGI_KEYS: [&str; 4] = [
    "wsgi.multiprocess",
    "wsgi.multithread",
    "wsgi.run_once",
    "wsgi.url_scheme",
];
/// The wsgi.* keys the Python SDK adds: Python objects, not strings.
const PYTHON_WSGI_KEYS: [&str; 5] = [
    "wsgi.errors",
    "wsgi.file_wrapper",
    "wsgi.input",
    "wsgi.input_terminated",
    "wsgi.version",
];

#[test]
fn environ_key_set_and_types_are_exactly_pep3333() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(&server, "GET /environ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let keys: Vec<&str> = env.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = [CGI_KEYS.as_slice(), &WSGI_KEYS, &PYTHON_WSGI_KEYS].concat();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for (key, entry) in env.as_object().unwrap() {
        if !key.contains('.') {
            assert_eq!(entry["type"], "str", "{key} must be a native string");
        }
    }
    assert_eq!(env["wsgi.version"]["type"], "tuple");
    assert_eq!(value(&env, "wsgi.version"), &serde_json::json!([1, 0]));
    assert_eq!(env["wsgi.input_terminated"]["value"], true);
    // PEP 3333's optional platform file handling: a callable (the wrapper class).
    assert_eq!(env["wsgi.file_wrapper"]["type"], "type");
    assert_eq!(env["wsgi.multithread"]["value"], false);
    assert_eq!(env["wsgi.multiprocess"]["value"], true);
    assert_eq!(env["wsgi.run_once"]["value"], false);
    assert_eq!(value(&env, "wsgi.url_scheme"), "http");
    assert_eq!(value(&env, "GATEWAY_INTERFACE"), "CGI/1.1");
    assert_eq!(value(&env, "SERVER_NAME"), "127.0.0.1");
    assert_eq!(value(&env, "SERVER_PORT"), server.addr.port().to_string().as_str());
    assert_eq!(value(&env, "SCRIPT_NAME"), "");
    assert_eq!(value(&env, "QUERY_STRING"), "");
}

#[test]
fn path_info_is_percent_decoded_then_latin1() {
    let server = Server::start(&python_fixtures(), &[]);
    for (target, expected) in [
        ("/environ/%E5", "/environ/\u{e5}"),
        ("/environ/%C3%A5", "/environ/\u{c3}\u{a5}"),
        ("/environ/a%2Fb", "/environ/a/b"),
        ("/environ/caf%C3%A9%20bar", "/environ/caf\u{c3}\u{a9} bar"),
        // A NUL changes the packed environ's separator (see wsgi.wit).
        ("/environ/a%00b%FF", "/environ/a\u{0}b\u{ff}"),
    ] {
        let env = environ_via_raw(
            &server,
            &format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(value(&env, "PATH_INFO"), expected, "for {target}");
    }
}

#[test]
fn every_entry_survives_a_nul_in_the_path() {
    let server = Server::start(&python_fixtures(), &[]);
    let request = "GET /environ/%00?q=1 HTTP/1.1\r\nHost: h\r\nX-Custom: v\u{e9}\r\nConnection: close\r\n\r\n";
    let env = environ_via_raw(&server, request);
    assert_eq!(value(&env, "PATH_INFO"), "/environ/\u{0}");
    assert_eq!(value(&env, "QUERY_STRING"), "q=1");
    assert_eq!(value(&env, "HTTP_HOST"), "h");
    // The request's bytes are UTF-8 ("\xc3\xa9"): the app sees one char per byte.
    assert_eq!(value(&env, "HTTP_X_CUSTOM"), "v\u{c3}\u{a9}");
    assert_eq!(env["wsgi.multiprocess"]["value"], true);
    assert_eq!(env["wsgi.run_once"]["value"], false);
}

/// The Rust SDK reads the same packed environ: the fixture lists every entry as
/// `KEY=value`, sorted, values as the bytes the client sent.
#[test]
fn a_rust_guest_gets_the_same_cgi_entries() {
    let server = Server::start(&rust_fixtures(), &[]);
    for (target, path) in [
        ("/environ/x", &b"/environ/x"[..]),
        ("/environ/a%00b%FF", b"/environ/a\0b\xff"),
    ] {
        let request = format!("GET {target}?q=1 HTTP/1.1\r\nHost: h\r\nX-Custom: v\r\nConnection: close\r\n\r\n");
        let body = body_via_raw(&server, &request);
        let entries: Vec<(&[u8], &[u8])> = body
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let eq = line.iter().position(|&b| b == b'=').expect("KEY=value");
                (&line[..eq], &line[eq + 1..])
            })
            .collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| std::str::from_utf8(k).unwrap()).collect();
        let mut expected = [CGI_KEYS.as_slice(), &["HTTP_X_CUSTOM"], &WSGI_KEYS].concat();
        expected.sort_unstable();
        assert_eq!(keys, expected, "for {target}");
        let get = |key: &str| entries.iter().find(|(k, _)| *k == key.as_bytes()).unwrap().1;
        assert_eq!(get("PATH_INFO"), path);
        assert_eq!(get("QUERY_STRING"), b"q=1");
        assert_eq!(get("HTTP_X_CUSTOM"), b"v");
        assert_eq!(get("REQUEST_METHOD"), b"GET");
        assert_eq!(get("SERVER_PORT"), server.addr.port().to_string().as_bytes());
        assert_eq!(get("wsgi.multithread"), b"0");
        assert_eq!(get("wsgi.multiprocess"), b"1");
        assert_eq!(get("wsgi.run_once"), b"0");
    }
}

#[test]
fn query_string_is_passed_raw() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(
        &server,
        "GET /environ?a=%20b&c=d+e&%E5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(value(&env, "QUERY_STRING"), "a=%20b&c=d+e&%E5");
}

#[test]
fn script_name_is_the_mount_prefix_and_empty_otherwise() {
    let server = Server::start(&python_fixtures(), &["--script-name", "/mounted"]);
    // The router looks at the first PATH_INFO segment, so the prefix must be gone.
    let env = environ_via_raw(
        &server,
        "GET /mounted/environ/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(value(&env, "SCRIPT_NAME"), "/mounted");
    assert_eq!(value(&env, "PATH_INFO"), "/environ/x");
}

#[test]
fn content_type_and_length_appear_only_without_http_prefix() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(
        &server,
        "POST /environ HTTP/1.1\r\nHost: h\r\nContent-Type: text/x-test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(value(&env, "CONTENT_TYPE"), "text/x-test");
    assert_eq!(value(&env, "CONTENT_LENGTH"), "3");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none());
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none());
}

#[test]
fn repeated_headers_are_joined_with_commas_and_cookies_with_semicolons() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(
        &server,
        "GET /environ HTTP/1.1\r\nHost: h\r\nX-Multi: one\r\nX-Multi: two\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(value(&env, "HTTP_X_MULTI"), "one,two");
    assert_eq!(value(&env, "HTTP_COOKIE"), "a=1; b=2");
}

#[test]
fn header_names_with_underscores_are_dropped() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(
        &server,
        "GET /environ HTTP/1.1\r\nHost: h\r\nX-Auth_User: attacker\r\nConnection: close\r\n\r\n",
    );
    assert!(
        env.get("HTTP_X_AUTH_USER").is_none(),
        "underscored header reached the app: {env}"
    );
    let env = environ_via_raw(
        &server,
        "GET /environ HTTP/1.1\r\nHost: h\r\nX-Auth-User: alice\r\nX-Auth_User: attacker\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(value(&env, "HTTP_X_AUTH_USER"), "alice");
}

#[test]
fn header_values_reach_the_app_byte_exact_as_latin1() {
    let server = Server::start(&python_fixtures(), &[]);
    let request = b"GET /environ HTTP/1.1\r\nHost: h\r\nX-Bytes: a\x85b\xa0c\xffd\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(server.addr, request, Duration::from_secs(10));
    let response = crate::support::client::parse_response(&raw).unwrap();
    let env: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(value(&env, "HTTP_X_BYTES"), "a\u{85}b\u{a0}c\u{ff}d");
}

#[test]
fn http10_request_reports_http10_protocol() {
    let server = Server::start(&python_fixtures(), &[]);
    let env = environ_via_raw(&server, "GET /environ HTTP/1.0\r\n\r\n");
    assert_eq!(value(&env, "SERVER_PROTOCOL"), "HTTP/1.0");
    assert_eq!(value(&env, "REQUEST_METHOD"), "GET");
}

/// One instance serves requests with different contexts (protocol, scheme, mount:
/// what the packed environ sends apart, see wsgi.wit) and an app that changes
/// its environ: each request sees its own values.
#[test]
fn one_instance_gives_each_request_its_own_context() {
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    for version in ["1.1", "1.1", "1.1", "1.0", "1.0", "1.0", "1.1"] {
        let env = environ_via_raw(
            &server,
            &format!("GET /environ HTTP/{version}\r\nHost: h\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(value(&env, "SERVER_PROTOCOL"), format!("HTTP/{version}").as_str());
        assert_eq!(value(&env, "SERVER_NAME"), "127.0.0.1");
        assert_eq!(env["wsgi.multiprocess"]["value"], true);
    }
}

/// One instance serves requests whose header sets and values change from one to
/// the next (the Python SDK starts each environ from a template per context and
/// set of well-known headers): each request sees exactly its own headers and
/// values, nothing left from an earlier request.
#[test]
fn one_instance_gives_each_request_exactly_its_own_headers() {
    let server = Server::start(&python_fixtures(), &["--instances", "1"]);
    // (query, Host, User-Agent, Accept, X-Extra): None leaves the header out.
    type Request<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let requests: [Request; 6] = [
        ("q=1", "h1", Some("ua-1"), Some("a/1"), None),
        ("q=2", "h2", Some("ua-2"), Some("a/2"), None),
        ("", "h3", None, Some("a/3"), None),
        ("q=4", "h4", Some("ua-4"), None, Some("x-4")),
        ("q=5", "h5", None, None, None),
        ("q=6", "h6", Some("ua-6"), Some("a/6"), None),
    ];
    for (query, host, agent, accept, extra) in requests {
        let mut request = format!("GET /environ?{query} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, header) in [("User-Agent", agent), ("Accept", accept), ("X-Extra", extra)] {
            if let Some(v) = header {
                request += &format!("{name}: {v}\r\n");
            }
        }
        request += "Connection: close\r\n\r\n";
        let env = environ_via_raw(&server, &request);
        assert_eq!(value(&env, "QUERY_STRING"), query, "{request}");
        assert_eq!(value(&env, "HTTP_HOST"), host, "{request}");
        for (key, header) in [
            ("HTTP_USER_AGENT", agent),
            ("HTTP_ACCEPT", accept),
            ("HTTP_X_EXTRA", extra),
        ] {
            match header {
                Some(v) => assert_eq!(value(&env, key), v, "{request}"),
                None => assert!(env.get(key).is_none(), "{key} leaked into {request}: {env}"),
            }
        }
    }
}

#[test]
fn curl_sees_the_same_environ_as_raw_clients() {
    let server = Server::start(&python_fixtures(), &[]);
    let response = curl(&["-H", "X-Trace: t1", &server.url("/environ/p?q=1")]);
    let env: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(value(&env, "HTTP_X_TRACE"), "t1");
    assert_eq!(value(&env, "PATH_INFO"), "/environ/p");
    assert_eq!(value(&env, "QUERY_STRING"), "q=1");
    assert_eq!(value(&env, "REMOTE_ADDR"), "127.0.0.1");
}
