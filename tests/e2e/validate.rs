//! `serve --validate`: each PEP 3333 rule broken by one route of
//! tests/fixtures/python/pep3333.py is caught and named, strict mode answers 500,
//! warn mode answers what the server would answer without validation, and clean
//! apps pass without a word in the log.

use std::time::Duration;

use crate::support::client::curl;
use crate::support::components::{demo, python_fixtures};
use crate::support::server::Server;

/// Each case of the fixture and the rule it breaks.
const CASES: &[(&str, &str)] = &[
    ("no-content-type", "start_response.content-type"),
    ("status-without-reason", "start_response.status"),
    ("header-name-trailing-dash", "start_response.header-name"),
    ("hop-by-hop-header", "start_response.host"),
    ("bad-exc-info", "start_response.exc-info"),
    ("start-response-twice", "start_response.twice"),
    ("write-str", "write.type"),
    ("yield-str", "result.item-type"),
    ("return-bytes", "result.type"),
    ("no-start-response", "start_response.not-called"),
    ("content-length-mismatch", "response.content-length"),
    ("input-read-without-size", "input.read-size"),
    ("input-close", "input.close"),
    ("errors-write-bytes", "errors.write-type"),
    ("errors-close", "errors.close"),
    ("swallowed", "write.type"),
];

/// The log written for one request: everything up to its access line.
fn request_log(server: &Server, before: usize, path: &str) -> String {
    let access = format!("GET {path} ");
    assert!(
        server.wait_for_log(&access, Duration::from_secs(10)),
        "no access line for {path}:\n{}",
        server.log()
    );
    let log = server.log();
    let end = before + log[before..].find(&access).unwrap();
    log[before..end].to_owned()
}

#[test]
fn each_violation_is_named_failed_in_strict_and_passed_in_warn_mode() {
    let fixtures = python_fixtures();
    let fixtures = fixtures.to_str().unwrap();
    let strict = format!("/strict={fixtures},validate=strict");
    let warn = format!("/warn={fixtures},validate=warn");
    let off = format!("/off={fixtures}");
    let server = Server::start_apps(&[&strict, &warn, &off], &[]);

    let mut served_in_warn_mode = 0;
    for (case, rule) in CASES {
        let named = format!("PEP 3333 violation [{rule}]");
        let unvalidated = curl(&[&server.url(&format!("/off/pep3333/{case}"))]).status;

        let path = format!("/strict/pep3333/{case}");
        let before = server.log().len();
        let response = curl(&[&server.url(&path)]);
        let log = request_log(&server, before, &path);
        assert_eq!(response.status, 500, "{case} under --validate=strict:\n{log}");
        // `[app] pep3333: ...`: the host's verdict, on its own stream.
        assert!(
            log.contains(&format!("pep3333: {named}")),
            "{case}: the rule {rule} is not named:\n{log}"
        );
        assert!(
            log.contains("Traceback (most recent call last)"),
            "{case}: no traceback:\n{log}"
        );
        assert!(!response.text().contains(rule), "the rule leaked into the response");

        let path = format!("/warn/pep3333/{case}");
        let before = server.log().len();
        let response = curl(&[&server.url(&path)]);
        let log = request_log(&server, before, &path);
        assert_eq!(
            response.status, unvalidated,
            "{case} under --validate=warn is answered as without validation:\n{log}"
        );
        assert!(
            log.contains(&named),
            "{case}: the rule {rule} is not named in warn mode:\n{log}"
        );
        assert!(log.contains("--validate=warn"), "{log}");
        if response.status == 200 {
            served_in_warn_mode += 1;
        }
    }
    // The point of warn mode: many of these apps work on this server, they are
    // just not portable; warn mode serves them while strict mode refuses them.
    assert!(
        served_in_warn_mode >= CASES.len() / 2,
        "only {served_in_warn_mode} of {} cases answered 200 in warn mode",
        CASES.len()
    );
}

#[test]
fn clean_apps_pass_validation_silently() {
    let fixtures = python_fixtures();
    let fixtures = format!("{},validate=strict", fixtures.to_str().unwrap());
    let demo = demo();
    let demo = format!("/demo={},validate=strict", demo.to_str().unwrap());
    let server = Server::start_apps(&[&fixtures, &demo], &[]);

    assert_eq!(curl(&[&server.url("/hello")]).text(), "Hello from the sandbox!\n");
    assert_eq!(curl(&[&server.url("/demo/")]).status, 200);
    assert_eq!(
        curl(&[&server.url("/stream?n=3")]).text(),
        "chunk 0\nchunk 1\nchunk 2\n"
    );
    assert_eq!(
        curl(&[&server.url("/write_callable")]).text(),
        "written 1\nwritten 2\niterated 1\niterated 2\n"
    );
    let posted = curl(&["--data-binary", "0123456789", &server.url("/read_all")]);
    assert_eq!(posted.status, 200, "{}", posted.text());
    // The switch is for the SDK only: the app's environ does not have it.
    let environ = curl(&[&server.url("/environ")]);
    assert_eq!(environ.status, 200);
    assert!(!environ.text().contains("wsgi_wasm.validate"), "{}", environ.text());

    assert!(server.wait_for_log("GET /environ ", Duration::from_secs(10)));
    let log = server.log();
    assert!(!log.contains("PEP 3333"), "{log}");
}
