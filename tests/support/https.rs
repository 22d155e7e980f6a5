//! A local HTTPS server with its own throwaway CA, for the outbound-TLS tests: the
//! CA and the server's certificate (for localhost and 127.0.0.1) come from
//! support::pki, the server is tests/support/https_server.py under the machine's
//! python3, on a free loopback port. Dropped, it exits and its files go.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::components::repo_root;
use super::pki::Pki;

pub struct HttpsServer {
    pub port: u16,
    /// The CA that signed the server's certificate, as PEM (for --ca-file).
    pub ca_file: PathBuf,
    child: Child,
    _stdin: ChildStdin,
    _pki: Pki,
}

impl HttpsServer {
    pub fn start() -> HttpsServer {
        let pki = Pki::new();
        let (cert, key) = pki.issue("localhost");
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/support/https_server.py"))
            .args([&cert, &key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting python3 https_server.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("https_server.py did not start: {line:?}"));
        HttpsServer {
            port,
            ca_file: pki.path("ca.pem"),
            child,
            _stdin: stdin,
            _pki: pki,
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
