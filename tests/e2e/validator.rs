//! wsgiref.validate.validator wrapped around fixture apps inside the guest, with
//! WSGIWarning made an error: any slip by the server (environ, input, start_response
//! plumbing) or the adapter becomes a 500 and fails these tests.

use serde_json::Value;

use crate::support::client::{curl, curl_with_stdin, python_request};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

fn info(response: &crate::support::client::CurlResponse) -> Value {
    assert_eq!(response.status, 200, "validator failed: {}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn validator_passes_for_every_method_with_and_without_bodies() {
    let server = Server::start(&python_fixtures(), &[]);
    let url = server.url("/validate/read_all/x?a=1&b=%20");
    for method in ["GET", "DELETE"] {
        let response = curl(&["-X", method, &url]);
        assert_eq!(info(&response)["method"], method);
    }
    for method in ["POST", "PUT"] {
        for size in [0usize, 10, 3_000_000] {
            let body = vec![b'z'; size];
            let response = python_request(&url, method, &body, &[("Content-Type", "application/octet-stream")]);
            let got = info(&response);
            assert_eq!(got["method"], method);
            assert_eq!(got["body_length"], size);
        }
    }
    let head = curl(&["-I", &url]);
    assert_eq!(head.status, 200, "HEAD under the validator");
    assert!(head.body.is_empty());
    let log = server.log();
    assert!(!log.contains("AssertionError") && !log.contains("WSGIWarning"), "{log}");
}

#[test]
fn validator_passes_for_chunked_request_bodies() {
    let server = Server::start(&python_fixtures(), &[]);
    let body = vec![7u8; 500_000];
    let response = curl_with_stdin(
        &[
            "--data-binary",
            "@-",
            "-H",
            "Transfer-Encoding: chunked",
            &server.url("/validate/read_all"),
        ],
        Some(&body),
    );
    let got = info(&response);
    assert_eq!(got["body_length"], 500_000);
    assert_eq!(got["input_terminated"], true);
}

#[test]
fn validator_passes_for_unicode_and_percent_encoded_paths_and_queries() {
    let server = Server::start(&python_fixtures(), &[]);
    for (target, path_info, query) in [
        ("/validate/read_all/caf%C3%A9", "/validate/read_all/caf\u{c3}\u{a9}", ""),
        ("/validate/read_all/%E5%2Fx", "/validate/read_all/\u{e5}/x", ""),
        (
            "/validate/read_all/a%20b?q=%E2%98%BA&x",
            "/validate/read_all/a b",
            "q=%E2%98%BA&x",
        ),
    ] {
        let got = info(&curl(&[&server.url(target)]));
        assert_eq!(got["path_info"], path_info);
        assert_eq!(got["query_string"], query);
    }
}

#[test]
fn validator_passes_for_streaming_write_callable_and_sized_responses() {
    let server = Server::start(&python_fixtures(), &[]);
    assert_eq!(
        curl(&[&server.url("/validate/stream?n=3")]).text(),
        "chunk 0\nchunk 1\nchunk 2\n"
    );
    assert_eq!(
        curl(&[&server.url("/validate/write_callable")]).text(),
        "written 1\nwritten 2\niterated 1\niterated 2\n"
    );
    assert_eq!(
        curl(&[&server.url("/validate/hello")]).text(),
        "Hello from the sandbox!\n"
    );
    assert_eq!(curl(&[&server.url("/validate/status_code?code=404")]).status, 404);
}
