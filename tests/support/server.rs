//! The real `wsgi-wasm serve` process, on port 0, with its log captured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::components::{aot_cache_dir, wsgi_wasm_bin};

/// Compiling a Python component from scratch takes ~6 s on the slowest machine we
/// run on; the cache makes later starts take milliseconds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(wasm: &Path, args: &[&str]) -> Server {
        Server::start_apps(&[wasm.to_str().unwrap()], args)
    }

    /// A server of the Python fixtures that also serves `/static/big.bin`, a sparse
    /// file of `bytes` zeros (`--static`), for tests of clients that stall; the
    /// directory lives as long as the returned guard.
    pub fn with_big_static_file(bytes: u64, args: &[&str]) -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::File::create(dir.path().join("big.bin"))
            .unwrap()
            .set_len(bytes)
            .unwrap();
        let mount = format!("/static={}", dir.path().display());
        let args: Vec<&str> = ["--static", &mount]
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect();
        (Server::start(&super::components::python_fixtures(), &args), dir)
    }

    /// A server that also listens on the Unix socket `socket` (`--listen
    /// unix:PATH`), returned once its log says it serves there.
    pub fn start_on_unix_socket(wasm: &Path, socket: &Path, args: &[&str]) -> Server {
        let listen = format!("unix:{}", socket.display());
        let args: Vec<&str> = ["--listen", &listen]
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect();
        let server = Server::start(wasm, &args);
        assert!(
            server.wait_for_log(&format!("Serving HTTP on {listen}"), Duration::from_secs(10)),
            "{}",
            server.log()
        );
        server
    }

    /// Several apps in one server: each spec is `[PREFIX=]FILE[,KEY=VALUE...]`.
    pub fn start_apps(specs: &[&str], args: &[&str]) -> Server {
        Server::launch(Command::new(wsgi_wasm_bin()), specs, args)
    }

    /// The server allowed one CPU (`taskset -c 0`, as in a one-CPU container).
    pub fn start_on_one_cpu(wasm: &Path, args: &[&str]) -> Server {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "0"]).arg(wsgi_wasm_bin());
        Server::launch(taskset, &[wasm.to_str().unwrap()], args)
    }

    /// Starts `command` (the binary, or a wrapper that execs it) as `serve`.
    fn launch(mut command: Command, specs: &[&str], args: &[&str]) -> Server {
        let cache = aot_cache_dir();
        command.arg("serve").args(specs).args(["--listen", "127.0.0.1:0"]);
        // The shared test cache, unless the test brings its own.
        if !args.contains(&"--cache-dir") {
            command.arg("--cache-dir").arg(&cache);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wsgi-wasm serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Anywhere in the line: with --log-format json it is a record's message.
                let served = line
                    .split_once("Serving HTTP on http://")
                    .or_else(|| line.split_once("Serving HTTP on https://"))
                    .map(|(_, rest)| rest);
                if let Some(rest) = served {
                    let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (log lines are written asynchronously).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The admin listener's address, from its "Admin on" line (printed before
    /// the line `start` waits for).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.log();
        let (_, rest) = log.split_once("Admin on http://").expect("no Admin on line in the log");
        rest.split('/').next().unwrap().parse().unwrap()
    }

    /// Sends a signal without waiting for the process to exit.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal and waits for the process to exit; returns its exit code.
    pub fn signal_and_wait(self, signal: &str, timeout: Duration) -> Option<i32> {
        self.signal(signal);
        self.wait_for_exit(timeout)
    }

    /// Waits for the process to exit; returns its exit code (None: still running
    /// after `timeout`).
    pub fn wait_for_exit(mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
