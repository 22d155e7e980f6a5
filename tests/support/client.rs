//! Real HTTP clients: curl, Python's http.client, the h2 crate's client (for
//! HTTP/2 flow control and PINGs), and raw sockets for what well-behaved clients
//! never send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct CurlResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (plus -sS -i) and parses the final response.
pub fn curl(args: &[&str]) -> CurlResponse {
    curl_with_stdin(args, None)
}

pub fn curl_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> CurlResponse {
    let mut child = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running curl");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_response(&output.stdout)
        .unwrap_or_else(|| panic!("unparsable response: {:?}", String::from_utf8_lossy(&output.stdout)))
}

/// Splits "HTTP/1.1 200 OK\r\nheaders\r\n\r\nbody" (skipping 100 Continue heads).
pub fn parse_response(raw: &[u8]) -> Option<CurlResponse> {
    let mut rest = raw;
    loop {
        let end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..end]).ok()?;
        let body = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        if status == 100 {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        return Some(CurlResponse {
            status,
            headers,
            body: body.to_vec(),
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request with Python's http.client: (status, headers, body).
pub fn python_request(url: &str, method: &str, body: &[u8], headers: &[(&str, &str)]) -> CurlResponse {
    let script = r#"
import http.client, sys, json, urllib.parse
url, method, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = sys.stdin.buffer.read()
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
conn.request(method, u.path + ("?" + u.query if u.query else ""), body=body if method not in ("GET", "HEAD") else None, headers=headers)
r = conn.getresponse()
data = r.read()
out = sys.stdout.buffer
out.write(b"HTTP/1.1 %d %s\r\n" % (r.status, r.reason.encode("latin-1")))
for k, v in r.getheaders():
    out.write(k.encode("latin-1") + b": " + v.encode("latin-1") + b"\r\n")
out.write(b"\r\n" + data)
"#;
    let headers_json = format!(
        "{{{}}}",
        headers
            .iter()
            .map(|(k, v)| format!("{k:?}: {v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut child = Command::new("python3")
        .args(["-c", script, url, method, &headers_json])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python3");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_response(&output.stdout).expect("python client output")
}

/// Writes `request` as-is and reads until the server closes or `timeout` passes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// Fires requests from Python threads over keep-alive connections and counts
/// status codes per path: `{"/path": {"200": n, ...}}`. Each `(path, count)` job runs
/// on `connections` connections at once; all jobs run concurrently.
pub fn load(addr: SocketAddr, jobs: &[(&str, usize)], connections: usize) -> serde_json::Value {
    let script = r#"
import http.client, json, sys, threading, collections
host, port, conns, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
counts = collections.defaultdict(collections.Counter)
lock = threading.Lock()
def worker(path, n):
    conn = None
    for _ in range(n):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=60)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            key = str(r.status)
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception as e:
            key = "error: " + type(e).__name__
            conn = None
        with lock:
            counts[path][key] += 1
threads = []
for path, total in jobs:
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    threads += [threading.Thread(target=worker, args=(path, n)) for n in per if n]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"#;
    let jobs_json = serde_json::to_string(&jobs.iter().map(|(p, n)| (p.to_string(), *n)).collect::<Vec<_>>()).unwrap();
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &connections.to_string(),
            &jobs_json,
        ])
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "load script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Resident memory of a process, now and at its peak, in MiB (from /proc).
pub fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The environ an app saw: {"KEY": value} for plain values.
pub fn environ_of(body: &[u8]) -> serde_json::Value {
    let described: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut plain = serde_json::Map::new();
    for (key, entry) in described.as_object().unwrap() {
        if let Some(value) = entry.get("value") {
            plain.insert(key.clone(), value.clone());
        }
    }
    serde_json::Value::Object(plain)
}

/// Runs an async test body on a runtime of its own (the tests are sync).
pub fn block_on<F: std::future::Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body)
}

/// GET `path` over a new HTTP/2 prior-knowledge (h2c) connection, on the current
/// runtime: the response once its head is in. Its body's flow-control window is
/// given back only when the caller releases capacity.
pub async fn h2c_get(addr: SocketAddr, path: &str) -> hyper::Response<h2::RecvStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{addr}{path}")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    response.await.unwrap()
}
