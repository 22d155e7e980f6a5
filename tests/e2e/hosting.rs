//! Many tenants in one server: a config file, routing by Host and prefix, each
//! tenant's grants and limits kept apart, a flooded tenant beside a healthy one,
//! live deploys and reloads by SIGHUP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::client::{curl, raw_exchange};
use crate::support::components::{aot_cache_dir, demo, python_fixtures, wsgi_wasm_bin};
use crate::support::server::Server;

/// Long enough for a loaded 2-core machine to compile nothing (components come
/// from the test cache) and reload a few apps.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("hosting.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_config(config: &Path) -> Server {
    Server::start_apps(&[], &["--config", config.to_str().unwrap()])
}

fn get(server: &Server, host: &str, path: &str) -> crate::support::client::CurlResponse {
    curl(&["-H", &format!("Host: {host}"), &server.url(path)])
}

/// The JSON a fixture route answers for `host` and `path`, which must be a 200.
fn get_json(server: &Server, host: &str, path: &str) -> Value {
    let response = get(server, host, path);
    assert_eq!(response.status, 200, "{host}{path}: {}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

/// The env the fixture app reports for a request (the /granted fixture).
fn tenant_env(server: &Server, host: &str, path: &str) -> Value {
    get_json(server, host, path)["environ"].clone()
}

fn toml_path(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn config_routes_by_exact_host_then_wildcard_then_hostless_and_longest_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = toml_path(&python_fixtures());
    let config = write_config(
        dir.path(),
        &format!(
            r#"
max-memory = "128MiB"
instances = 1

[apps.shop]
component = "{fixtures}"
hosts = ["shop.example.com"]
env = {{ TENANT = "shop" }}

[apps.shop-api]
component = "{fixtures}"
hosts = ["shop.example.com"]
prefix = "/api"
env = {{ TENANT = "shop-api" }}

[apps.wild]
component = "{fixtures}"
hosts = ["*.example.com"]
env = {{ TENANT = "wild" }}

[apps.default]
component = "{demo}"
"#,
            demo = toml_path(&demo())
        ),
    );
    let server = start_config(&config);
    assert_eq!(tenant_env(&server, "shop.example.com", "/granted")["TENANT"], "shop");
    // The port in Host is ignored; the longest prefix wins within the host.
    assert_eq!(
        tenant_env(&server, "Shop.Example.com:8080", "/api/granted")["TENANT"],
        "shop-api"
    );
    let environ = get_json(&server, "shop.example.com", "/api/environ");
    assert_eq!(environ["SCRIPT_NAME"]["value"], "/api");
    assert_eq!(environ["PATH_INFO"]["value"], "/environ");
    // "/apiary" is not under "/api": the root app answers it.
    let apiary = get(&server, "shop.example.com", "/apiary");
    assert_eq!(apiary.text(), "no fixture named 'apiary'\n");
    assert_eq!(tenant_env(&server, "a.example.com", "/granted")["TENANT"], "wild");
    assert_eq!(tenant_env(&server, "a.b.example.com", "/granted")["TENANT"], "wild");
    // The wildcard names subdomains only; other hosts go to the hostless app.
    for host in ["example.com", "other.org", "127.0.0.1"] {
        let response = get(&server, host, "/granted");
        assert_eq!(response.status, 200);
        assert!(
            response.text().starts_with("Hello world!"),
            "{host}: {}",
            response.text()
        );
    }
}

#[test]
fn no_matching_app_is_a_404_and_bad_hosts_reach_no_app() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[apps.shop]\ncomponent = \"{}\"\nhosts = [\"shop.example.com\"]\nprefix = \"/shop\"\n",
            toml_path(&python_fixtures())
        ),
    );
    let server = start_config(&config);
    assert_eq!(get(&server, "shop.example.com", "/shop/hello").status, 200);
    for (host, path) in [("other.example.com", "/shop/hello"), ("shop.example.com", "/hello")] {
        let response = get(&server, host, path);
        assert_eq!(response.status, 404, "{host}{path}");
        assert!(
            response
                .text()
                .contains("No application is mounted at this host and path")
        );
    }
    // RFC 9112 section 3.2: no Host, two Hosts, an invalid Host: 400 from the
    // host, never an app's answer.
    for request in [
        "GET /shop/hello HTTP/1.1\r\n\r\n",
        "GET /shop/hello HTTP/1.1\r\nHost: shop.example.com\r\nHost: shop.example.com\r\n\r\n",
        "GET /shop/hello HTTP/1.1\r\nHost: shop.example.com/evil\r\n\r\n",
    ] {
        let raw = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 400 "), "{request:?}: {text}");
        assert!(!text.contains("Hello from the sandbox"), "{request:?}: {text}");
    }
}

/// Runs `serve --config` on a config that must be refused; returns stderr.
fn refused(dir: &Path, text: &str) -> String {
    let config = write_config(dir, text);
    let output = Command::new(wsgi_wasm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(aot_cache_dir())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success(), "config accepted:\n{text}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn config_errors_name_the_file_the_line_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosting.toml").display().to_string();
    let fixtures = toml_path(&python_fixtures());
    let err = refused(
        dir.path(),
        &format!("[apps.a]\ncomponent = \"{fixtures}\"\ncolour = \"blue\"\n"),
    );
    assert!(
        err.contains(&format!("{file}:3: apps.a: unknown key \"colour\"")),
        "{err}"
    );
    assert!(err.contains("max-memory"), "the message lists the valid keys: {err}");

    let err = refused(
        dir.path(),
        &format!("[apps.a]\ncomponent = \"{fixtures}\"\n\ncpu-timeout = 5\n"),
    );
    assert!(err.contains(&format!("{file}:4: apps.a.cpu-timeout:")), "{err}");

    let err = refused(
        dir.path(),
        "max-body-size = \"huge\"\n[apps.a]\ncomponent = \"a.wasm\"\n",
    );
    assert!(
        err.contains(&format!("{file}:1: max-body-size:")) && err.contains("\"huge\""),
        "{err}"
    );

    let err = refused(
        dir.path(),
        &format!(
            "[apps.a]\ncomponent = \"{fixtures}\"\nhosts = [\"x.test\"]\n\n[apps.b]\ncomponent = \"{fixtures}\"\nhosts = [\"x.test\"]\n"
        ),
    );
    assert!(
        err.contains(&format!(
            "{file}:5: two apps are mounted at / for x.test: b and a ({file}:1)"
        )),
        "{err}"
    );

    let err = refused(dir.path(), "[apps.a]\ncomponent = \"missing.wasm\"\n");
    assert!(
        err.contains(&format!("{file}:1")) && err.contains("missing.wasm"),
        "{err}"
    );

    let err = refused(dir.path(), "[apps.a]\ncomponent = \"a.wasm\"\nhosts = \"x.test\"\n");
    assert!(
        err.contains(&format!("{file}:3: apps.a.hosts: expected a list")),
        "{err}"
    );

    let err = refused(
        dir.path(),
        "[apps.a]\ncomponent = \"a.wasm\"\nisolation = \"sometimes\"\n",
    );
    assert!(
        err.contains(&format!("{file}:3: apps.a.isolation:")) && err.contains("pooled"),
        "{err}"
    );

    // What the flags refuse, the file may not give either.
    let err = refused(
        dir.path(),
        &format!("max-connections = 0\n[apps.a]\ncomponent = \"{fixtures}\"\n"),
    );
    assert!(
        err.contains(&format!("{file}: max-connections must be at least 1")),
        "{err}"
    );

    let err = refused(dir.path(), "[apps.a\ncomponent = 1\n");
    assert!(err.contains("hosting.toml") && err.contains("line 1"), "{err}");
}

#[test]
fn tenants_see_only_their_own_variables_files_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    for tenant in ["a", "b"] {
        std::fs::create_dir(dir.path().join(tenant)).unwrap();
        std::fs::write(dir.path().join(tenant).join("secret"), format!("{tenant}'s secret")).unwrap();
        std::fs::write(dir.path().join(tenant).join(format!("{tenant}.txt")), "").unwrap();
    }
    let fixtures = toml_path(&python_fixtures());
    let config = write_config(
        dir.path(),
        &format!(
            r#"
max-memory = "128MiB"
instances = 1

[apps.a]
component = "{fixtures}"
hosts = ["a.test"]
env = {{ A_KEY = "only-a" }}
dirs = ["a:/data"]
cpu-timeout = "3s"

[apps.b]
component = "{fixtures}"
hosts = ["b.test"]
env = {{ B_KEY = "only-b" }}
dirs = ["b:/data"]
cpu-timeout = "500ms"
"#
        ),
    );
    let server = start_config(&config);
    let read = |host: &str, path: &str| get_json(&server, host, &format!("/granted?read={path}&list=/data"));
    let a = read("a.test", "/data/secret");
    assert_eq!(a["read"], "ok: a's secret");
    assert_eq!(a["environ"]["A_KEY"], "only-a");
    assert!(a["environ"].get("B_KEY").is_none(), "{a}");
    let b = read("b.test", "/data/secret");
    assert_eq!(b["read"], "ok: b's secret");
    assert!(b["environ"].get("A_KEY").is_none(), "{b}");
    // Each tenant's /data is its own directory.
    assert_eq!(a["list"], "ok: ['a.txt', 'secret']", "{a}");
    assert_eq!(b["list"], "ok: ['b.txt', 'secret']", "{b}");
    // Relative dirs are from the config file; b cannot name a's directory at all.
    let b = read("b.test", &format!("{}/a/secret", dir.path().display()));
    assert!(b["read"].as_str().unwrap().starts_with("denied:"), "{b}");

    // Each tenant's CPU limit is its own.
    let timed = |host: &str| {
        let started = Instant::now();
        let response = get(&server, host, "/cpu_loop");
        (response.status, started.elapsed())
    };
    let (status, b_time) = timed("b.test");
    assert_eq!(status, 504);
    let (status, a_time) = timed("a.test");
    assert_eq!(status, 504);
    assert!(b_time < Duration::from_millis(2500), "b stopped after {b_time:?}");
    assert!(a_time >= Duration::from_millis(2900), "a stopped after {a_time:?}");
}

/// Latencies in ms of `n` sequential GETs over one keep-alive connection.
fn latencies(server: &Server, host: &str, path: &str, n: usize) -> Vec<f64> {
    let script = r#"
import http.client, json, sys, time
host, port, vhost, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
conn = http.client.HTTPConnection(host, port, timeout=60)
out = []
for _ in range(n):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Host": vhost})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
    out.append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"#;
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            &server.addr.ip().to_string(),
            &server.addr.port().to_string(),
        ])
        .args([host, path, &n.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[(values.len() * 99 / 100).min(values.len() - 1)]
}

#[test]
fn a_flooded_tenant_gets_503s_from_its_own_queue_while_its_neighbour_stays_fast() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = toml_path(&python_fixtures());
    let config = write_config(
        dir.path(),
        &format!(
            r#"
max-memory = "128MiB"

[apps.healthy]
component = "{fixtures}"
hosts = ["healthy.test"]
instances = 2

[apps.flooded]
component = "{fixtures}"
hosts = ["flooded.test"]
instances = 1
queue = 2
"#
        ),
    );
    let server = start_config(&config);
    latencies(&server, "healthy.test", "/hello", 20);
    let before = p99(latencies(&server, "healthy.test", "/hello", 200));

    // 40 clients each asking the flooded tenant for a 2-second request.
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let url = server.url("/sleep?s=2");
            std::thread::spawn(move || curl(&["-H", "Host: flooded.test", &url]).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = p99(latencies(&server, "healthy.test", "/hello", 200));
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    let served = statuses.iter().filter(|&&s| s == 200).count();
    eprintln!(
        "healthy p99 before {before:.2} ms, during the flood {during:.2} ms; flood: {served} served, {refused} refused"
    );
    assert_eq!(refused + served, 40, "{statuses:?}");
    assert!(refused >= 30, "the flooded tenant's own queue refuses: {statuses:?}");
    // Generous: a 2-core machine running the test's own clients too.
    assert!(
        during < (before * 10.0).max(100.0),
        "healthy p99 went from {before:.2} ms to {during:.2} ms"
    );
}

/// Replaces `dest` atomically with `source`'s bytes, as a deploy tool would.
fn deploy_file(source: &Path, dest: &Path) {
    let tmp = dest.with_extension("new");
    std::fs::copy(source, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn ten_live_deploys_under_load_fail_no_request_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let versions = [python_fixtures(), demo()];
    // Compiled ahead, as a deploy step would: each reload then loads from the cache
    // instead of compiling while the other tests load the machine.
    let compiled = Command::new(wsgi_wasm_bin())
        .arg("compile")
        .args(&versions)
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let component = dir.path().join("app.wasm");
    deploy_file(&versions[0], &component);
    let config = write_config(
        dir.path(),
        "max-memory = \"128MiB\"\ninstances = 2\nno-access-log = true\n[apps.site]\ncomponent = \"app.wasm\"\n",
    );
    let server = start_config(&config);

    // Clients keep requesting, on keep-alive connections, through every deploy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (server.addr, stop.clone());
            std::thread::spawn(move || {
                let script = r#"
import http.client, json, sys, collections
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=60)
seen = collections.Counter()
for line in sys.stdin:
    try:
        conn.request("GET", "/hello")
        r = conn.getresponse(); body = r.read()
        seen["%d %s" % (r.status, body[:12].decode("latin-1"))] += 1
    except Exception as e:
        seen["error " + type(e).__name__] += 1
        conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=60)
print(json.dumps(seen))
"#;
                let mut child = Command::new("python3")
                    .args(["-c", script, &addr.ip().to_string(), &addr.port().to_string()])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if stdin.write_all(b"go\n").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(stdin);
                let output = child.wait_with_output().unwrap();
                serde_json::from_slice::<std::collections::HashMap<String, u64>>(&output.stdout).unwrap()
            })
        })
        .collect();

    for deploy in 1..=10 {
        deploy_file(&versions[deploy % 2], &component);
        let log_before = count(&server.log(), "app site deployed");
        server.signal("HUP");
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        while count(&server.log(), "app site deployed") == log_before {
            assert!(Instant::now() < deadline, "deploy {deploy} not done:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The tenth deploy put the fixtures back; now a broken one.
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    deploy_file(&dir.path().join("broken.wasm"), &component);
    server.signal("HUP");
    assert!(
        server.wait_for_log(
            "app site: new version refused, the old one keeps serving",
            RELOAD_TIMEOUT
        ),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut totals = std::collections::HashMap::<String, u64>::new();
    for client in clients {
        for (key, n) in client.join().unwrap() {
            *totals.entry(key).or_default() += n;
        }
    }
    eprintln!("responses during 10 deploys: {totals:?}");
    let failed: u64 = totals
        .iter()
        .filter(|(k, _)| !k.starts_with("200 "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "{totals:?}");
    assert!(totals.get("200 Hello from t").copied().unwrap_or(0) > 0, "{totals:?}");
    assert!(totals.get("200 Hello world!").copied().unwrap_or(0) > 0, "{totals:?}");
    // The old version still answers after the broken deploy.
    assert_eq!(curl(&[&server.url("/hello")]).text(), "Hello from the sandbox!\n");
}

#[test]
fn sighup_adds_and_removes_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = toml_path(&python_fixtures());
    let app = |name: &str| format!("[apps.{name}]\ncomponent = \"{fixtures}\"\nhosts = [\"{name}.test\"]\n");
    let config = write_config(
        dir.path(),
        &format!("max-memory = \"128MiB\"\ninstances = 1\n{}", app("one")),
    );
    let server = start_config(&config);
    assert_eq!(get(&server, "one.test", "/hello").status, 200);
    assert_eq!(get(&server, "two.test", "/hello").status, 404);

    // Rewrites the config, sends SIGHUP and waits for `outcome` in the log.
    let reload = |text: String, outcome: &str| {
        std::fs::write(&config, text).unwrap();
        server.signal("HUP");
        assert!(server.wait_for_log(outcome, RELOAD_TIMEOUT), "{}", server.log());
    };
    reload(
        format!("max-memory = \"128MiB\"\ninstances = 1\n{}", app("two")),
        "reloaded: 1 apps (1 added, 0 changed, 1 removed",
    );
    assert_eq!(get(&server, "two.test", "/hello").status, 200);
    assert_eq!(get(&server, "one.test", "/hello").status, 404);
    assert!(!server.log().contains("server options changed"), "{}", server.log());

    // Server options are read at start only; a reload that finds them changed says so.
    reload(
        format!(
            "max-connections = 5\nmax-memory = \"128MiB\"\ninstances = 1\n{}",
            app("two")
        ),
        "the server options changed",
    );
    assert_eq!(get(&server, "two.test", "/hello").status, 200);

    // A config that no longer parses changes nothing.
    reload(
        "[apps.three]\ncomponent = 3\n".into(),
        "reload refused, nothing changed",
    );
    assert_eq!(get(&server, "two.test", "/hello").status, 200);
}
