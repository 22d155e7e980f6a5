//! Many replicas behind a load balancer: haproxy (a throwaway process on loopback)
//! health-checks two servers' /readyz on their admin ports while a client sends
//! requests without pause; each server is restarted in turn the way a rolling
//! update does it (SIGTERM: readiness 503 and drain; exit; start again on the same
//! ports). No request may fail.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::components::{aot_cache_dir, rust_fixtures, wsgi_wasm_bin};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often haproxy probes /readyz, and how many successes bring a server back.
/// Short so the test is quick; production settings are in README.md.
const CHECK_INTERVAL_MS: u64 = 200;
const RISE: u64 = 2;

struct Replica {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    /// Starts a server; `ports` None picks free ones (port 0), else reuses them.
    fn start(ports: Option<(SocketAddr, SocketAddr)>) -> Replica {
        let (listen, admin) = ports.map_or(("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()), |(l, a)| {
            (l.to_string(), a.to_string())
        });
        let mut child = Command::new(wsgi_wasm_bin())
            .arg("serve")
            .arg(rust_fixtures())
            .args(["--listen", &listen, "--admin-listen", &admin, "--shutdown-grace", "10s"])
            .args(["--no-access-log", "--instances", "2"])
            .arg("--cache-dir")
            .arg(aot_cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wsgi-wasm serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut admin = None;
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = |prefix: &str| -> Option<SocketAddr> {
                    let (_, rest) = line.split_once(prefix)?;
                    rest.split('/').next()?.parse().ok()
                };
                if let Some(a) = addr("Admin on http://") {
                    admin = Some(a);
                }
                if let (Some(listen), Some(admin)) = (addr("Serving HTTP on http://"), admin)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((listen, admin));
                }
            }
        });
        let (listen, admin) = rx.recv_timeout(STARTUP_TIMEOUT).expect("replica did not start");
        Replica { child, listen, admin }
    }

    /// SIGTERM, then waits for the drain to end; returns the exit code.
    fn stop(mut self) -> Option<i32> {
        Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status.code()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends GET /hello through `addr` for `seconds` on 4 keep-alive connections;
/// prints {"ok": n, "failed": n, "errors": {...}}.
const LOAD_SCRIPT: &str = r#"
import http.client, json, sys, threading, time, collections
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
lock = threading.Lock()
counts = collections.Counter()
def worker():
    conn = None
    while time.monotonic() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", "/hello")
            r = conn.getresponse()
            body = r.read()
            key = "ok" if r.status == 200 and body == b"hello from rust" else "status %d" % r.status
        except Exception as e:
            key = "error " + type(e).__name__
            conn = None
        with lock:
            counts[key] += 1
threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"#;

#[test]
fn rolling_restart_behind_haproxy_loses_no_request() {
    let mut replicas = vec![Replica::start(None), Replica::start(None)];
    let dir = tempfile::tempdir().unwrap();
    let front = free_port();
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  server r{i} {} check port {}\n", r.listen, r.admin.port()))
        .collect();
    // Retries (redispatched to the other server) cover the moment between a
    // server closing its listener at SIGTERM and haproxy's next check seeing 503.
    let config = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         \x20 retries 3\n  option redispatch 1\n  retry-on all-retryable-errors\n\
         frontend web\n  bind 127.0.0.1:{front}\n  default_backend apps\n\
         backend apps\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server inter {CHECK_INTERVAL_MS}ms fall 1 rise {RISE}\n{servers}"
    );
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, &config).unwrap();
    let haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting haproxy (scripts/setup installs it)"),
    );
    // Both servers up in haproxy's view before the load starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start:\n{config}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(CHECK_INTERVAL_MS * (RISE + 1)));

    let load_seconds = 14;
    let load = Command::new("python3")
        .args([
            "-c",
            LOAD_SCRIPT,
            "127.0.0.1",
            &front.to_string(),
            &load_seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..replicas.len() {
        let old = replicas.remove(i);
        let ports = (old.listen, old.admin);
        assert_eq!(old.stop(), Some(0), "replica {i} exit status");
        replicas.insert(i, Replica::start(Some(ports)));
        // Back in rotation (RISE good checks), with margin, before the next one goes.
        std::thread::sleep(Duration::from_millis(CHECK_INTERVAL_MS * (RISE + 3)));
    }
    assert!(
        started.elapsed() < Duration::from_secs(load_seconds - 2),
        "the restarts outlasted the load; raise load_seconds"
    );
    let output = load.wait_with_output().unwrap();
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    drop(haproxy);
    eprintln!("rolling restart under load: {counts}");
    let ok = counts["ok"].as_u64().unwrap_or(0);
    assert!(ok > 500, "too few requests to mean anything: {counts}");
    assert_eq!(counts.as_object().unwrap().len(), 1, "failed requests: {counts}");
}
