//! Real data stores for the tests: a PostgreSQL and a Redis server started as
//! throwaway processes on free loopback ports, each with its own data directory,
//! stopped and deleted when the test drops them. Never a system service.
//! `scripts/setup` installs the Debian packages that provide the binaries.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// initdb plus a first start takes ~2 s here; generous for a loaded CI machine.
const SERVICE_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A free loopback port. Neither server can bind port 0 and report it, so the
/// port is picked by binding 0 here and handed over; another process taking it
/// in between would make the server fail to start, loudly.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `child` until a stderr/stdout line contains `ready`, keeping the output.
fn wait_ready(child: &mut Child, ready: &'static str, what: &str) -> std::sync::Arc<std::sync::Mutex<String>> {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    for stream in [
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let (tx, log) = (tx.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if line.contains(ready) {
                    let _ = tx.send(());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    if rx.recv_timeout(SERVICE_STARTUP_TIMEOUT).is_err() {
        let _ = child.kill();
        panic!("{what} did not start:\n{}", log.lock().unwrap());
    }
    log
}

/// Where Debian's postgresql package puts its server binaries (the newest version).
fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup (it installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop().expect("no initdb under /usr/lib/postgresql/*/bin")
}

/// PostgreSQL refuses to run as root; as root, the tests run it as the package's
/// `postgres` user.
fn as_postgres_user(program: &Path) -> Command {
    if unsafe { libc_geteuid() } == 0 {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub struct Postgres {
    child: Child,
    pub port: u16,
    pub user: &'static str,
    pub password: &'static str,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A fresh cluster with password (SCRAM-SHA-256) authentication over TCP.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let bin = postgres_bin_dir();
        let root = unsafe { libc_geteuid() } == 0;
        let (user, password) = ("wsgi", "sandbox-secret");
        std::fs::write(dir.path().join("pw"), password).unwrap();
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the PostgreSQL test directory failed");
        }
        let data = dir.path().join("data");
        let output = as_postgres_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                user,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", dir.path().join("pw").display()))
            .output()
            .expect("running initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let mut child = as_postgres_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting postgres");
        wait_ready(&mut child, "database system is ready to accept connections", "postgres");
        Postgres {
            child,
            port,
            user,
            password,
            _dir: dir,
        }
    }

    /// The server arguments that grant an app this database.
    pub fn grant_args(&self) -> Vec<String> {
        vec![
            "--allow-connect".into(),
            format!("127.0.0.1:{}", self.port),
            "--env".into(),
            "PGHOST=127.0.0.1".into(),
            "--env".into(),
            format!("PGPORT={}", self.port),
            "--env".into(),
            format!("PGUSER={}", self.user),
            "--env".into(),
            format!("PGPASSWORD={}", self.password),
            "--env".into(),
            "PGDATABASE=postgres".into(),
        ]
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data directory is thrown away anyway.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-server is not installed: run scripts/setup (it installs Debian's redis-server)");
        wait_ready(&mut child, "Ready to accept connections", "redis-server");
        Redis { child, port, _dir: dir }
    }

    pub fn grant_args(&self) -> Vec<String> {
        vec![
            "--allow-connect".into(),
            format!("127.0.0.1:{}", self.port),
            "--env".into(),
            format!("REDIS_URL=redis://127.0.0.1:{}/0", self.port),
        ]
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
