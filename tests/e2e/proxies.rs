//! Reverse proxies (--forwarded-allow-ips) and sockets passed by a service manager
//! (LISTEN_FDS), over raw sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::client::environ_of;
use crate::support::client::{curl, parse_response, raw_exchange};
use crate::support::components::{aot_cache_dir, python_fixtures, wsgi_wasm_bin};
use crate::support::server::Server;

const FORWARDED_REQUEST: &[u8] = b"GET /environ HTTP/1.1\r\nHost: backend:8000\r\n\
    X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
    X-Forwarded-Host: shop.example\r\nConnection: close\r\n\r\n";

fn environ_over_tcp(addr: SocketAddr, request: &[u8]) -> serde_json::Value {
    let raw = raw_exchange(addr, request, Duration::from_secs(20));
    let response = parse_response(&raw).expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    environ_of(&response.body)
}

#[test]
fn a_trusted_proxy_sets_the_client_scheme_and_host() {
    let server = Server::start(&python_fixtures(), &["--forwarded-allow-ips", "10.0.0.0/8,127.0.0.1"]);
    let environ = environ_over_tcp(server.addr, FORWARDED_REQUEST);
    assert_eq!(environ["REMOTE_ADDR"], "203.0.113.9", "{environ}");
    assert!(
        environ.get("REMOTE_PORT").is_none(),
        "a forwarded client has no known port"
    );
    assert_eq!(environ["wsgi.url_scheme"], "https");
    assert_eq!(environ["HTTPS"], "on");
    assert_eq!(environ["HTTP_HOST"], "shop.example");

    // RFC 7239 Forwarded, which wins over X-Forwarded-*.
    let request = b"GET /environ HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 192.0.2.1\r\n\
        Forwarded: for=\"[2001:db8::7]:4711\";proto=https;host=blog.example\r\nConnection: close\r\n\r\n";
    let environ = environ_over_tcp(server.addr, request);
    assert_eq!(environ["REMOTE_ADDR"], "2001:db8::7", "{environ}");
    assert_eq!(environ["REMOTE_PORT"], "4711");
    assert_eq!(environ["wsgi.url_scheme"], "https");
    assert_eq!(environ["HTTP_HOST"], "blog.example");
}

#[test]
fn an_untrusted_peer_cannot_forge_the_client() {
    // The test's own connections come from 127.0.0.1, outside the trusted network.
    let server = Server::start(&python_fixtures(), &["--forwarded-allow-ips", "10.0.0.0/8"]);
    let environ = environ_over_tcp(server.addr, FORWARDED_REQUEST);
    assert_eq!(environ["REMOTE_ADDR"], "127.0.0.1", "{environ}");
    assert_ne!(environ["REMOTE_PORT"], "");
    assert_eq!(environ["wsgi.url_scheme"], "http");
    assert!(environ.get("HTTPS").is_none());
    assert_eq!(environ["HTTP_HOST"], "backend:8000");
    // The headers still reach the app as what they are: claims.
    assert_eq!(environ["HTTP_X_FORWARDED_FOR"], "6.6.6.6, 203.0.113.9");

    // Without the option nothing is trusted, not even loopback.
    let server = Server::start(&python_fixtures(), &[]);
    let environ = environ_over_tcp(server.addr, FORWARDED_REQUEST);
    assert_eq!(environ["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(environ["HTTP_HOST"], "backend:8000");
}

#[test]
fn unix_socket_peers_are_trusted_only_when_listed() {
    let dir = tempfile::tempdir().unwrap();
    for (trust, expected) in [("unix", "203.0.113.9"), ("127.0.0.1", "")] {
        let socket = dir.path().join(format!("{trust}.sock"));
        // Held to the end of the loop: dropping it stops the server.
        let _server = Server::start_on_unix_socket(&python_fixtures(), &socket, &["--forwarded-allow-ips", trust]);
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.write_all(FORWARDED_REQUEST).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let environ = environ_of(&parse_response(&raw).unwrap().body);
        assert_eq!(environ["REMOTE_ADDR"], expected, "trusting {trust}: {environ}");
    }
}

#[test]
fn a_bad_forwarded_allow_ips_entry_fails_the_start() {
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(python_fixtures())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--forwarded-allow-ips",
            "10.0.0.0/8,proxy.example",
        ])
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"proxy.example\" is not an IP address"), "{stderr}");
}

/// Binds a socket, puts it at descriptor 3 and execs the server with LISTEN_FDS=1 and
/// LISTEN_PID set to its own pid, as systemd does for a socket-activated service.
#[test]
fn a_socket_passed_by_the_service_manager_is_served() {
    let helper = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
# Python opens sockets close-on-exec; the server must inherit this one.
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let mut child = Command::new("python3")
        .args(["-c", helper])
        .arg(wsgi_wasm_bin())
        .arg("serve")
        .arg(python_fixtures())
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u16 = port.trim().parse().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("Serving HTTP on") {
            break;
        }
    }
    let response = curl(&[&format!("http://127.0.0.1:{port}/environ")]);
    assert_eq!(response.status, 200);
    assert_eq!(environ_of(&response.body)["SERVER_PORT"], port.to_string());
    // And it is a full listener: raw HTTP/1.1 and h2c both.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).unwrap().status, 200);
    let response = curl(&["--http2-prior-knowledge", &format!("http://127.0.0.1:{port}/hello")]);
    assert_eq!(response.status, 200);
    let _ = child.kill();
    let _ = child.wait();
    // Only the passed socket: no default 127.0.0.1:8000 beside it (the whole
    // log, read to the end: a second listener would be announced after the first).
    log.extend(stderr.map(|line| line.unwrap() + "\n"));
    let serving: Vec<&str> = log.lines().filter(|l| l.starts_with("Serving HTTP on")).collect();
    assert_eq!(serving, [format!("Serving HTTP on http://127.0.0.1:{port}/")], "{log}");
}
