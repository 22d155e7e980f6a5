//! Listeners: Unix sockets (`--listen unix:PATH`) and several `--listen` at once.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::client::environ_of;
use crate::support::client::{curl, parse_response};
use crate::support::components::{aot_cache_dir, python_fixtures, wsgi_wasm_bin};
use crate::support::server::Server;

fn curl_unix(socket: &Path, path: &str) -> crate::support::client::CurlResponse {
    curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        &format!("http://localhost{path}"),
    ])
}

#[test]
fn a_unix_socket_serves_curl_and_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    // A socket file left behind by a server that was killed is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = Server::start_on_unix_socket(&python_fixtures(), &socket, &["--socket-mode", "600"]);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let response = curl_unix(&socket, "/environ?x=1");
    assert_eq!(response.status, 200, "{}", response.text());
    let environ = environ_of(&response.body);
    assert_eq!(environ["SERVER_NAME"], "localhost");
    assert_eq!(environ["SERVER_PORT"], "80");
    assert_eq!(environ["HTTP_HOST"], "localhost");
    assert_eq!(environ["QUERY_STRING"], "x=1");
    // A Unix-socket peer has no address or port.
    assert_eq!(environ["REMOTE_ADDR"], "");
    assert!(environ.get("REMOTE_PORT").is_none(), "{environ}");
    assert!(
        server.wait_for_log("\"GET /environ?x=1 HTTP/1.1\" 200", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.starts_with("- - - [") && l.contains("\"GET /environ?x=1 HTTP/1.1\" 200")),
        "{}",
        server.log()
    );
    // The TCP listener the test harness adds keeps working beside it.
    assert_eq!(curl(&[&server.url("/hello")]).status, 200);

    assert_eq!(server.signal_and_wait("TERM", Duration::from_secs(15)), Some(0));
    assert!(!socket.exists(), "the socket file outlived the server");
}

#[test]
fn a_unix_socket_path_that_is_taken_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(python_fixtures())
        .args(["--listen", &format!("unix:{}", file.display())])
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn several_listeners_serve_at_once_and_each_names_its_own_port() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    // The harness listens on 127.0.0.1:0; two more here.
    let server = Server::start_on_unix_socket(&python_fixtures(), &socket, &["--listen", "127.0.0.1:0"]);
    let ports: Vec<SocketAddr> = server
        .log()
        .lines()
        .filter_map(|l| l.split_once("Serving HTTP on http://"))
        .map(|(_, rest)| rest.trim_end_matches('/').parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 2, "{}", server.log());
    assert_ne!(ports[0], ports[1]);
    for addr in &ports {
        let response = curl(&[&format!("http://{addr}/environ")]);
        assert_eq!(response.status, 200);
        let environ = environ_of(&response.body);
        assert_eq!(environ["SERVER_PORT"], addr.port().to_string(), "{environ}");
        assert_eq!(environ["SERVER_NAME"], "127.0.0.1");
    }
    let response = curl_unix(&socket, "/hello");
    assert_eq!(response.status, 200);
    assert!(response.text().contains("Hello from the sandbox!"));
    // A raw request on the Unix socket goes through the same HTTP edge.
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).unwrap().status, 400, "no Host on HTTP/1.1");
}
