//! A raw request head, parsed as hyper parses it (httparse, then http's Method,
//! Uri and header types), through the environ builder. What must hold for any
//! head hyper accepts: every key and value is a native (latin-1) string, so the
//! packed environ splits back into the same pairs; no key appears twice; and
//! SCRIPT_NAME + PATH_INFO is the decoded path.
#![no_main]

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use wsgi_wasm::wsgi::environ::{self, Client, MountPoint, RequestHead, ServerInfo};

/// hyper's default limit on request headers.
const MAX_HEADERS: usize = 100;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(data) else {
        return;
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = Uri::from_maybe_shared(target.as_bytes().to_vec()) else {
        return;
    };
    let mut map = HeaderMap::new();
    for header in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return;
        };
        map.append(name, value);
    }
    let path = environ::request_path(&uri);
    let head = RequestHead {
        method: &method,
        uri: &uri,
        path: &path,
        version: if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 },
        headers: &map,
    };
    let server = ServerInfo {
        server_name: "localhost".into(),
        server_port: 8000,
    };
    for mount in ["", "/app"] {
        let mount = MountPoint {
            script_name: mount.into(),
            run_once: false,
        };
        let env = environ::build(&head, &server, &mount, &Client::default());

        let mut keys: Vec<&str> = env.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "a key twice in {env:?}");

        for (key, value) in &env {
            assert!(
                key.chars().chain(value.chars()).all(|c| (c as u32) < 0x100),
                "not latin-1: {key}={value:?}"
            );
        }
        let mut unpacked = environ::unpack(&environ::pack(&env)).expect("the packed environ unpacks");
        let mut expected: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        unpacked.sort();
        expected.sort();
        assert_eq!(unpacked, expected);

        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_ref()).unwrap();
        if path != "*" {
            assert_eq!(format!("{}{}", get("SCRIPT_NAME"), get("PATH_INFO")), path);
        }
    }
});
