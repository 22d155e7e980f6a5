//! `--static PREFIX=DIR`: files the host answers without entering a sandbox, with
//! the headers and statuses of a production static file server, and nothing from
//! outside DIR.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::client::{curl, curl_with_stdin};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

struct Site {
    dir: tempfile::TempDir,
    outside: tempfile::TempDir,
    server: Server,
}

/// style.css (10 KiB) with .gz and .br siblings, a directory with index.html, and
/// symlinks pointing out of the directory.
fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "host secret").unwrap();
    let css: String = (0..10 * 1024).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::fs::write(dir.path().join("style.css"), &css).unwrap();
    let mut gz = std::process::Command::new("gzip")
        .args(["-c", "-9"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gz.stdin.take().unwrap().write_all(css.as_bytes()).unwrap();
    std::fs::write(dir.path().join("style.css.gz"), gz.wait_with_output().unwrap().stdout).unwrap();
    std::fs::write(
        dir.path().join("style.css.br"),
        b"not really brotli, but the sibling it picks",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("app.js"), dir.path().join("inside-link.js")).unwrap();
    let server = Server::start(
        &python_fixtures(),
        &["--static", &format!("/static={}", dir.path().display())],
    );
    Site { dir, outside, server }
}

#[test]
fn static_files_carry_type_validators_and_answer_conditional_requests() {
    let site = site();
    let url = site.server.url("/static/style.css");
    let full = curl(&[&url]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body.len(), 10 * 1024);
    assert_eq!(full.header("content-type"), Some("text/css"));
    assert_eq!(full.header("content-length"), Some("10240"));
    let etag = full.header("etag").expect("an ETag").to_owned();
    let modified = full.header("last-modified").expect("Last-Modified").to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(
        curl(&[&site.server.url("/static/app.js")]).header("content-type"),
        Some("text/javascript")
    );

    let not_modified = curl(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    let other = curl(&["-H", "If-None-Match: \"something-else\"", &url]);
    assert_eq!(other.status, 200);
    let since = curl(&["-H", &format!("If-Modified-Since: {modified}"), &url]);
    assert_eq!(since.status, 304);
    // If-None-Match decides over If-Modified-Since (RFC 9110 section 13.2.2).
    let both = curl(&[
        "-H",
        "If-None-Match: \"stale\"",
        "-H",
        &format!("If-Modified-Since: {modified}"),
        &url,
    ]);
    assert_eq!(both.status, 200);

    // HEAD: the GET's headers, no body.
    let head = curl(&["-I", &url]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10240"));
    assert!(head.body.is_empty());

    // A directory serves its index.html.
    assert_eq!(curl(&[&site.server.url("/static/docs/")]).text(), "<h1>docs</h1>");
    // Only GET and HEAD.
    let post = curl_with_stdin(&["-X", "POST", "--data-binary", "@-", &url], Some(b"x"));
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // The access log has a line for the host's answers too.
    assert!(site.server.wait_for_log(
        "\"GET /static/style.css HTTP/1.1\" 200 10240",
        std::time::Duration::from_secs(5)
    ));
}

#[test]
fn static_files_serve_ranges_and_precompressed_siblings() {
    let site = site();
    let url = site.server.url("/static/style.css");
    let part = curl(&["-H", "Range: bytes=10-19", &url]);
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "klmnopqrst");
    assert_eq!(part.header("content-range"), Some("bytes 10-19/10240"));
    let beyond = curl(&["-H", "Range: bytes=20000-20010", &url]);
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10240"));

    let gzip = curl(&["-H", "Accept-Encoding: gzip", &url]);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.body, std::fs::read(site.dir.path().join("style.css.gz")).unwrap());
    assert_eq!(gzip.header("vary"), Some("accept-encoding"));
    let br = curl(&["-H", "Accept-Encoding: br", &url]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.text(), "not really brotli, but the sibling it picks");
    let plain = curl(&["-H", "Accept-Encoding: identity", &url]);
    assert_eq!(plain.header("content-encoding"), None);
    // Each coding is its own entity: its own ETag.
    let tags = [gzip.header("etag"), br.header("etag"), plain.header("etag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
}

#[test]
fn static_paths_cannot_leave_the_directory() {
    let site = site();
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/docs%2F..%2F..%2Fetc/passwd",
        "/static/docs%2findex.html",
        "/static/leak.txt",
        "/static/out/secret.txt",
        "/static/nonexistent.css",
    ] {
        let response = curl(&["--path-as-is", &site.server.url(path)]);
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert!(!response.text().contains("host secret"), "{path}");
    }
    // A symlink that stays inside the directory is an ordinary file.
    assert_eq!(
        curl(&[&site.server.url("/static/inside-link.js")]).text(),
        "console.log(1)"
    );
    assert!(site.outside.path().join("secret.txt").exists());
    // Paths beside the mount still go to the app.
    let app = curl(&[&site.server.url("/hello")]);
    assert_eq!(app.status, 200);
    let staticx = curl(&[&site.server.url("/staticx/style.css")]);
    assert_eq!(staticx.status, 404);
    assert!(
        staticx.text().contains("no fixture named 'staticx'"),
        "{}",
        staticx.text()
    );
}

#[test]
fn a_client_that_stops_reading_a_static_file_is_disconnected_after_the_io_timeout() {
    // Far more than the socket buffers hold, so the server's writes stall.
    const FILE_BYTES: u64 = 64 << 20;
    let (server, _dir) = Server::with_big_static_file(FILE_BYTES, &["--io-timeout", "1s", "--max-connections", "1"]);
    let mut lazy = TcpStream::connect(server.addr).unwrap();
    lazy.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    // Never read. The only connection slot is the lazy client's until the server
    // gives up on it; the next client waits for that, not forever.
    let started = Instant::now();
    assert_eq!(curl(&["--max-time", "10", &server.url("/hello")]).status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "served beside the lazy client after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(
        server.wait_for_log("the client did not read for 1s", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // What the lazy client can still read ends short of the file.
    lazy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    lazy.read_to_end(&mut received)
        .expect("the server closed the connection");
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!((received.len() as u64) < FILE_BYTES, "got {} bytes", received.len());
}
