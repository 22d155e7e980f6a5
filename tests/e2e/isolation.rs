//! Isolation: what one request, one instance or one hostile app can and cannot
//! reach (other requests, later requests, the host).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::client::{curl, load};
use crate::support::components::{python_fixtures, repo_root, rust_fixtures, wsgi_wasm_bin};
use crate::support::guest_memory::guest_memory_kib;
use crate::support::metrics::sample;
use crate::support::server::Server;
use crate::support::swap::{Swap, page_out_guest_memory};

/// The bodies of `n` GETs of `path`, one after the other.
fn bodies(server: &Server, path: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| curl(&[&server.url(path)]).text()).collect()
}

#[test]
fn request_isolation_forgets_module_globals_between_requests() {
    let server = Server::start(&python_fixtures(), &["--isolation", "request"]);
    assert_eq!(bodies(&server, "/global_counter", 4), ["1", "1", "1", "1"]);
    let env: Value = serde_json::from_slice(&curl(&[&server.url("/environ")]).body).unwrap();
    assert_eq!(env["wsgi.run_once"]["value"], true);
}

/// A request that dirties hundreds of pages apart from each other (more disjoint
/// regions than one dirty-page scan reports) leaves none of them to the next
/// fresh instance; in a pooled instance the same writes are seen, so the check
/// can tell.
#[test]
fn request_isolation_resets_every_page_a_request_wrote() {
    // Slots keep the pages they wrote (the default with request isolation), and
    // slots that give them back.
    for keep in ["16MiB", "0"] {
        let fresh = Server::start(
            &python_fixtures(),
            &["--isolation", "request", "--instances", "1", "--keep-resident", keep],
        );
        assert_eq!(
            bodies(&fresh, "/scattered_writes", 4),
            vec!["0 of 512 already written"; 4],
            "--keep-resident {keep}"
        );
    }
    let pooled = Server::start(&python_fixtures(), &["--isolation", "pooled", "--instances", "1"]);
    assert_eq!(
        bodies(&pooled, "/scattered_writes", 2),
        ["0 of 512 already written", "512 of 512 already written"]
    );
}

/// The value of `series` in the admin listener's /metrics, once it reaches
/// `expected` (an instance is rewound after its response is out, so the last
/// request's rewind may still be running when the client has its answer).
fn metric_reaches(server: &Server, series: &str, expected: f64) -> f64 {
    let url = format!("http://{}/metrics", server.admin_addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = sample(&curl(&[&url]).text(), series);
        if value == expected || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Request isolation puts the instance that served a request back as
/// instantiation left it (wasmtime's `Store::rewind`, our patch) instead of
/// creating one per request: one instance serves every request, and each still
/// sees a fresh module. An instance that stopped mid-call (here at the CPU
/// limit) is not rewound but replaced.
#[test]
fn request_isolation_rewinds_its_instance_instead_of_creating_one_per_request() {
    let server = Server::start(
        &python_fixtures(),
        &[
            "--isolation",
            "request",
            "--instances",
            "1",
            "--cpu-timeout",
            "1s",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let app = python_fixtures().file_stem().unwrap().to_string_lossy().into_owned();
    let created = format!("wsgi_wasm_instances_created_total{{app=\"{app}\"}}");
    let rewound = format!("wsgi_wasm_instances_rewound_total{{app=\"{app}\"}}");
    assert_eq!(bodies(&server, "/global_counter", 20), vec!["1"; 20]);
    assert_eq!(metric_reaches(&server, &rewound, 20.0), 20.0);
    assert_eq!(
        metric_reaches(&server, &created, 1.0),
        1.0,
        "the instance made at start served them all"
    );

    assert_eq!(curl(&[&server.url("/cpu_loop")]).status, 504);
    assert_eq!(
        metric_reaches(&server, &created, 2.0),
        2.0,
        "the stopped instance was replaced"
    );
    assert_eq!(bodies(&server, "/global_counter", 3), vec!["1"; 3]);
    assert_eq!(metric_reaches(&server, &rewound, 23.0), 23.0);
    assert_eq!(
        metric_reaches(&server, &created, 2.0),
        2.0,
        "and its replacement is rewound in turn"
    );
}

/// A slot maps only the image pages its requests touch: the kernel's fault-around,
/// which maps a read page's neighbours too (up to a large folio), is off in slots
/// that keep their memory (runtime::fault_around), so each reset walks only those
/// pages. With fault-around on, the 10 requests below touched 13% of what their
/// slot had mapped (4,048 of 31,584 KiB); with it off, all of it.
#[test]
fn request_isolation_slots_map_only_the_memory_requests_touch() {
    /// Requests before the measure: every page any request touches is mapped.
    const WARM: usize = 20;
    /// Requests measured: what they touch (read or write) is "Referenced".
    const MEASURED: usize = 10;
    let server = Server::start(&python_fixtures(), &["--isolation", "request", "--instances", "1"]);
    bodies(&server, "/global_counter", WARM);
    // Clears every page's accessed bit: from here, smaps' `Referenced` is what
    // the next requests touch (Documentation/filesystems/proc.rst).
    std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "1").unwrap();
    assert_eq!(bodies(&server, "/global_counter", MEASURED), vec!["1"; MEASURED]);
    let mapped = guest_memory_kib(server.pid(), "Rss");
    let touched = guest_memory_kib(server.pid(), "Referenced");
    assert!(mapped > 0, "no guest memory image is mapped: {}", server.log());
    assert!(
        touched * 100 >= mapped * 80,
        "{MEASURED} requests touched {touched} KiB of the {mapped} KiB their slot maps"
    );
}

/// A page the request wrote that the kernel swapped out before the request ended
/// is reset too: the dirty-page scan finds it though it is not in memory
/// (host/patches/README.md, pagemap-scan-swapped). Without that, the written
/// page escapes the reset and a later request in the same memory slot reads it.
/// Adds a swap file when the machine has no swap, so it needs root.
#[test]
fn request_isolation_resets_pages_swapped_out_during_the_request() {
    /// How long the first request stays open after its writes: time enough to
    /// page its memory out, so the swapped pages are there when it ends.
    const HOLD_SECONDS: u64 = 5;
    /// Later requests, each in the memory the first request used: the pool has
    /// one slot (`--total-instances 1`).
    const LATER_REQUESTS: usize = 2;
    let _swap = Swap::on();
    let server = Server::start(
        &python_fixtures(),
        &[
            "--isolation",
            "request",
            "--instances",
            "1",
            "--total-instances",
            "1",
            "--keep-resident",
            "16MiB",
        ],
    );
    let first = {
        let url = server.url(&format!("/scattered_writes?hold={HOLD_SECONDS}"));
        std::thread::spawn(move || curl(&[&url]).text())
    };
    assert!(
        server.wait_for_log("scattered writes done", Duration::from_secs(30)),
        "the first request never wrote its pages: {}",
        server.log()
    );
    // The 512 pages written are 2 MiB: at least that much of the guest's
    // memory must now be in swap, while the request is still running.
    let swapped_kib = page_out_guest_memory(server.pid());
    assert!(
        !first.is_finished(),
        "the first request ended before its pages were swapped out"
    );
    assert!(
        swapped_kib >= 2048,
        "only {swapped_kib} KiB of guest memory swapped out"
    );
    assert_eq!(first.join().unwrap(), "0 of 512 already written");
    assert_eq!(
        bodies(&server, "/scattered_writes", LATER_REQUESTS),
        vec!["0 of 512 already written"; LATER_REQUESTS]
    );
}

/// `build --warm-up PATH` GETs each path eight times (warmup.APP_WARM_UP_RUNS) at
/// build time, so CPython has specialized the app's own code before the snapshot;
/// what those requests leave (here a module counter) is in every fresh instance.
#[test]
fn warm_up_requests_run_at_build_time_and_their_state_starts_every_instance() {
    let dir = repo_root().join("tests/fixtures/python");
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("counter.wasm");
    let build = Command::new(wsgi_wasm_bin())
        .args([
            "build",
            "global_counter:app",
            "--warm-up",
            "/",
            "--warm-up",
            "/again?q=1",
            "-o",
        ])
        .arg(&wasm)
        .arg("-p")
        .arg(&dir)
        .current_dir(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{report}");
    assert!(report.contains("warm-up GET /: 200 OK"), "{report}");
    assert!(report.contains("warm-up GET /again?q=1: 200 OK"), "{report}");

    // 8 runs of each path, then this request.
    let fresh = Server::start(&wasm, &["--isolation", "request"]);
    assert_eq!(bodies(&fresh, "/", 3), ["17", "17", "17"]);
    let pooled = Server::start(&wasm, &["--isolation", "pooled", "--instances", "1"]);
    assert_eq!(bodies(&pooled, "/", 3), ["17", "18", "19"]);
}

#[test]
fn pooled_isolation_keeps_module_globals_like_a_worker_process() {
    let server = Server::start(&python_fixtures(), &["--isolation", "pooled", "--instances", "1"]);
    assert_eq!(bodies(&server, "/global_counter", 4), ["1", "2", "3", "4"]);
}

#[test]
fn pooled_instances_are_recycled_after_max_requests() {
    let server = Server::start(&python_fixtures(), &["--instances", "1", "--max-requests", "3"]);
    assert_eq!(
        bodies(&server, "/global_counter", 7),
        ["1", "2", "3", "1", "2", "3", "1"]
    );
}

#[test]
fn sandbox_grants_no_files_no_environment_and_no_sockets() {
    let server = Server::start(&python_fixtures(), &[]);
    // A real listener, so a connection the sandbox let through would succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = curl(&[&server.url(&format!("/sandbox_probe?port={port}"))]);
    let report: Value = serde_json::from_slice(&probe.body).unwrap();
    let get = |k: &str| report[k].as_str().unwrap().to_owned();
    assert!(
        get("open_etc_passwd").starts_with("denied: FileNotFoundError"),
        "{report}"
    );
    assert!(get("write_tmp").starts_with("denied: "), "{report}");
    assert!(get("socket_connect").starts_with("denied: PermissionError"), "{report}");
    assert!(
        listener.accept().is_err(),
        "the sandbox's connection reached the listener"
    );
    assert!(get("getenv_path").starts_with("denied: KeyError"), "{report}");
    assert_eq!(get("environ"), "ok: {}", "the app sees no environment variables");
    // "/" holds only the app's own bundled modules, nothing of the host's.
    let listing = get("list_root");
    assert!(listing.starts_with("ok: "), "{report}");
    for host_dir in ["etc", "home", "root", "proc", "usr", "tmp", "work"] {
        assert!(
            !listing.contains(&format!("'{host_dir}'")),
            "host directory visible: {listing}"
        );
    }
}

#[test]
fn faults_fail_only_their_own_request_while_healthy_traffic_flows() {
    let server = Server::start(&rust_fixtures(), &["--instances", "4"]);
    let counts = load(server.addr, &[("/panic", 400), ("/trap", 400), ("/hello", 1000)], 4);
    assert_eq!(counts["/panic"]["500"], 400, "{counts}");
    assert_eq!(counts["/trap"]["500"], 400, "{counts}");
    assert_eq!(
        counts["/hello"],
        serde_json::json!({"200": 1000}),
        "healthy requests failed: {counts}"
    );
    assert!(server.wait_for_log(
        "[fixtures_rust] trap: trapped: wasm trap: wasm `unreachable` instruction executed",
        Duration::from_secs(5)
    ));
}

#[test]
fn python_exceptions_fail_only_their_own_request_while_healthy_traffic_flows() {
    let server = Server::start(&python_fixtures(), &["--instances", "2"]);
    let counts = load(server.addr, &[("/raise_error", 200), ("/hello", 400)], 4);
    assert_eq!(counts["/raise_error"], serde_json::json!({"500": 200}), "{counts}");
    assert_eq!(counts["/hello"], serde_json::json!({"200": 400}), "{counts}");
    assert!(server.log().contains("error: RuntimeError: this fixture always fails"));
}

#[test]
fn excess_requests_wait_in_a_bounded_queue_then_get_503() {
    let server = Server::start(&python_fixtures(), &["--instances", "1", "--queue", "1"]);
    let url = server.url("/sleep?s=2");
    let started = Instant::now();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || curl(&[&url]).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // One running, one queued: a third is refused at once.
    let refused = curl(&[&server.url("/hello")]);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(started.elapsed() < Duration::from_secs(2), "503 was not immediate");
    let statuses: Vec<u16> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200], "the queued request is served after the first");
}

fn spec(prefix: &str, wasm: &std::path::Path, options: &str) -> String {
    format!("{prefix}={}{options}", wasm.display())
}

#[test]
fn apps_mounted_at_prefixes_each_get_their_prefix_as_script_name() {
    let (py, rs) = (python_fixtures(), rust_fixtures());
    let server = Server::start_apps(&[&spec("/py", &py, ""), &spec("/rs", &rs, "")], &[]);
    let env: Value = serde_json::from_slice(&curl(&[&server.url("/py/environ/x")]).body).unwrap();
    assert_eq!(env["SCRIPT_NAME"]["value"], "/py");
    assert_eq!(env["PATH_INFO"]["value"], "/environ/x");
    assert_eq!(curl(&[&server.url("/rs/hello")]).text(), "hello from rust");
    let nowhere = curl(&[&server.url("/elsewhere")]);
    assert_eq!(nowhere.status, 404);
    assert!(
        nowhere
            .text()
            .contains("No application is mounted at this host and path")
    );
    // Prefixes match whole path segments.
    assert_eq!(curl(&[&server.url("/pyx/hello")]).status, 404);
}

#[test]
fn faults_in_one_app_leave_other_apps_and_healthy_requests_alone() {
    let (py, rs) = (python_fixtures(), rust_fixtures());
    let server = Server::start_apps(
        &[&spec("/py", &py, ",instances=2"), &spec("/rs", &rs, ",instances=4")],
        &[],
    );
    let counts = load(
        server.addr,
        &[
            ("/rs/trap", 500),
            ("/rs/panic", 500),
            ("/rs/hello", 500),
            ("/py/hello", 500),
        ],
        4,
    );
    assert_eq!(counts["/rs/trap"], serde_json::json!({"500": 500}), "{counts}");
    assert_eq!(counts["/rs/panic"], serde_json::json!({"500": 500}), "{counts}");
    assert_eq!(
        counts["/rs/hello"],
        serde_json::json!({"200": 500}),
        "same-app healthy requests failed: {counts}"
    );
    assert_eq!(
        counts["/py/hello"],
        serde_json::json!({"200": 500}),
        "other-app healthy requests failed: {counts}"
    );
}

#[test]
fn isolation_mode_is_selectable_per_app() {
    let py = python_fixtures();
    let server = Server::start_apps(
        &[
            &spec("/pooled", &py, ",instances=1"),
            &spec("/fresh", &py, ",isolation=request"),
        ],
        &[],
    );
    let pooled: Vec<String> = (0..3)
        .map(|_| curl(&[&server.url("/pooled/global_counter")]).text())
        .collect();
    let fresh: Vec<String> = (0..3)
        .map(|_| curl(&[&server.url("/fresh/global_counter")]).text())
        .collect();
    assert_eq!(pooled, ["1", "2", "3"]);
    assert_eq!(fresh, ["1", "1", "1"]);
    assert!(server.log().contains("app python-fixtures"), "{}", server.log());
}

#[test]
fn two_apps_at_the_same_prefix_fail_before_binding() {
    let py = python_fixtures();
    let output = std::process::Command::new(crate::support::components::wsgi_wasm_bin())
        .arg("serve")
        .arg(spec("/a", &py, ""))
        .arg(spec("/a/", &py, ""))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("two apps are mounted at /a"), "{stderr}");
    assert!(!stderr.contains("Serving HTTP"), "{stderr}");
}

#[test]
fn granted_environment_variables_and_read_only_directories_are_all_the_app_gets() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("hello.txt"), "granted data").unwrap();
    let dir_arg = format!("{}:/data", granted.path().display());
    let server = Server::start(
        &python_fixtures(),
        &["--env", "GREETING=hello", "--env", "EMPTY=", "--dir", &dir_arg],
    );
    let get = |query: &str| -> Value {
        serde_json::from_slice(&curl(&[&server.url(&format!("/granted?{query}"))]).body).unwrap()
    };

    let report = get("read=/data/hello.txt&list=/data");
    assert_eq!(
        report["environ"],
        serde_json::json!({"GREETING": "hello", "EMPTY": ""}),
        "only granted variables"
    );
    assert_eq!(report["read"], "ok: granted data");
    assert_eq!(report["list"], "ok: ['hello.txt']");

    let report = get("write=/data/new.txt");
    assert!(report["write"].as_str().unwrap().starts_with("denied: "), "{report}");
    assert!(
        !granted.path().join("new.txt").exists(),
        "the guest wrote to a read-only directory"
    );

    let report = get("read=/data/../../etc/passwd");
    assert!(
        report["read"].as_str().unwrap().starts_with("denied: "),
        "escaped the granted directory: {report}"
    );
}

#[test]
fn a_granted_directory_that_does_not_exist_fails_before_binding() {
    let output = std::process::Command::new(crate::support::components::wsgi_wasm_bin())
        .arg("serve")
        .arg(python_fixtures())
        .args(["--dir", "/nonexistent/dir:/data", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/dir: No such file or directory") && stderr.contains("create it first"),
        "{stderr}"
    );
}
