//! `serve --record DIR` and `wsgi-wasm replay`: a request that uses the clocks,
//! random numbers and its body is recorded and replayed byte-identical (twice);
//! a changed app shows the difference; files are private; `--record-only errors`
//! keeps only 5xx; recordings over the size bound are not written; a garbled
//! recording is refused with a clear error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::client::{CurlResponse, curl, curl_with_stdin};
use crate::support::components::{aot_cache_dir, python_component, repo_root, wsgi_wasm_bin};
use crate::support::server::Server;

fn record_app() -> PathBuf {
    let dir = repo_root().join("tests/fixtures/python");
    python_component("record-app", "record_app:app", &[&dir], &[])
}

fn record_changed() -> PathBuf {
    let dir = repo_root().join("tests/fixtures/python");
    python_component("record-changed", "record_changed:app", &[&dir], &[])
}

fn replay(recording: &Path, app: &Path) -> Output {
    Command::new(wsgi_wasm_bin())
        .arg("replay")
        .arg(recording)
        .arg(app)
        .arg("--cache-dir")
        .arg(aot_cache_dir())
        .output()
        .expect("running wsgi-wasm replay")
}

/// The recordings in `dir`, oldest first, once `count` are there (they are
/// written off the request path, just after the response).
fn recordings(dir: &Path, count: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        if files.len() >= count || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What replay prints for a response: status line, headers, blank line, body.
fn printed(response: &CurlResponse, reason: &str) -> Vec<u8> {
    let mut out = format!("{} {reason}\n", response.status).into_bytes();
    for (name, value) in &response.headers {
        if name.eq_ignore_ascii_case("date") {
            continue; // added by hyper as it sends, not part of the app's response
        }
        out.extend(format!("{}: {value}\n", name.to_ascii_lowercase()).bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(&response.body);
    out
}

#[test]
fn a_recorded_request_replays_byte_identical_and_a_changed_app_shows_the_difference() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("recordings");
    let spec = format!("{},isolation=request", app.display());
    let server = Server::start_apps(&[&spec], &["--record", record.to_str().unwrap()]);
    let response = curl_with_stdin(
        &[
            &server.url("/"),
            "--data-binary",
            "@-",
            "-H",
            "Content-Type: text/plain",
        ],
        Some(b"hello from the body"),
    );
    assert_eq!(response.status, 200);
    let body = response.text();
    for line in [
        "time: ",
        "random: ",
        "urandom: ",
        "uuid4: ",
        "body: hello from the body",
        "elapsed: ",
    ] {
        assert!(body.contains(line), "{body}");
    }

    let files = recordings(&record, 1);
    assert_eq!(files.len(), 1, "one request, one recording: {files:?}");
    let file = &files[0];
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(file), 0o600, "recordings may hold secrets");
    assert_eq!(mode(&record), 0o700);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(json["app"]["isolation"], "request");
    assert!(!json["host"]["wall_clock"].as_array().unwrap().is_empty(), "{json}");
    // The recording holds the generator's draws, eight bytes each, in the order the
    // guest got them: the 2,496 bytes CPython seeds `random` with when the instance
    // starts, then os.urandom(8) as one whole draw, printed as recorded, then
    // uuid4's 16 bytes. Nothing more: a recording is not four times as large.
    let secure = base64::engine::general_purpose::STANDARD
        .decode(json["host"]["secure_random"].as_str().unwrap())
        .unwrap();
    let urandom = body.lines().find_map(|l| l.strip_prefix("urandom: ")).unwrap();
    let drawn: Vec<String> = secure
        .chunks(8)
        .map(|draw| draw.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(secure.len(), 2_496 + 8 + 16, "{drawn:?}");
    assert_eq!(drawn[2_496 / 8], urandom, "{drawn:?}");

    let expected = printed(&response, "OK");
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let output = replay(file, &app);
        assert_eq!(
            output.status.code(),
            Some(0),
            "replay differs or failed:\n{}",
            text(&output.stderr)
        );
        assert_eq!(
            text(&output.stdout),
            text(&expected),
            "the replay is not the recorded response:\n{}",
            text(&output.stderr)
        );
        assert!(
            !text(&output.stderr).contains("warning"),
            "a request-isolation recording replays without warnings:\n{}",
            text(&output.stderr)
        );
        outputs.push(output.stdout);
    }
    assert_eq!(outputs[0], outputs[1]);

    let output = replay(file, &record_changed());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a changed response exits 1:\n{stderr}");
    assert!(
        stderr.contains("--- recorded (") && stderr.contains("+++ replayed ("),
        "{stderr}"
    );
    let random = body.lines().find(|l| l.starts_with("random: ")).unwrap();
    assert!(stderr.contains(&format!("\n-{random}\n")), "{stderr}");
    assert!(
        stderr.contains(&format!("\n+{}\n", random.replace("random: ", "RANDOM: "))),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n body: hello from the body\n"),
        "context lines: {stderr}"
    );
    assert!(
        text(&output.stdout).contains("RANDOM: "),
        "stdout has the replayed response"
    );
}

/// In request isolation the instance that served a request is rewound for the
/// next (see the security model): each later request is as fresh as the first,
/// so its recording says no call came before and replays exactly.
#[test]
fn request_isolation_recordings_of_later_requests_replay_exactly_too() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("recordings");
    let spec = format!("{},isolation=request", app.display());
    let server = Server::start_apps(&[&spec], &["--record", record.to_str().unwrap(), "--instances", "1"]);
    let responses: Vec<_> = (0..3).map(|_| curl(&[&server.url("/")])).collect();
    let files = recordings(&record, 3);
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(json["instance_calls_before"], 0, "{}", file.display());
        let output = replay(file, &app);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "replay differs or failed:\n{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        let replayed = text(&output.stdout);
        assert!(
            responses.iter().any(|r| text(&printed(r, "OK")) == replayed),
            "the replay is none of the recorded responses:\n{replayed}"
        );
    }
}

#[test]
fn pooled_recordings_replay_exactly_only_as_an_instances_first_request() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{},instances=1", app.display());
    let server = Server::start_apps(&[&spec], &["--record", dir.path().to_str().unwrap()]);
    let first = curl(&[&server.url("/")]);
    assert_eq!(curl(&[&server.url("/")]).status, 200);
    let files = recordings(dir.path(), 2);
    assert_eq!(files.len(), 2);

    // The instance's first request: a fresh instance is what served it.
    let output = replay(&files[0], &app);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), text(&printed(&first, "OK")));
    assert!(!text(&output.stderr).contains("warning"), "{}", text(&output.stderr));

    // The second may depend on what the first left behind: said before replaying.
    let output = replay(&files[1], &app);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: recorded in pooled isolation, after 1 earlier request(s) in the same instance"),
        "{stderr}"
    );
}

#[test]
fn record_only_errors_keeps_only_5xx_responses() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{},isolation=request", app.display());
    let server = Server::start_apps(
        &[&spec],
        &["--record", dir.path().to_str().unwrap(), "--record-only", "errors"],
    );
    for _ in 0..3 {
        assert_eq!(curl(&[&server.url("/")]).status, 200);
    }
    assert_eq!(curl(&[&server.url("/error")]).status, 503);
    assert_eq!(curl(&[&server.url("/")]).status, 200);
    let files = recordings(dir.path(), 1);
    // The 200s would have been written by now too (each is written as its response ends).
    std::thread::sleep(Duration::from_millis(500));
    let files_later = recordings(dir.path(), 1);
    assert_eq!(files, files_later);
    assert_eq!(files.len(), 1, "{files:?}\n{}", server.log());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(json["response"]["status"], 503);
    let output = replay(&files[0], &app);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn record_sample_keeps_one_request_in_n() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &app,
        &["--record", dir.path().to_str().unwrap(), "--record-sample", "3"],
    );
    for _ in 0..6 {
        assert_eq!(curl(&[&server.url("/")]).status, 200);
    }
    let files = recordings(dir.path(), 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(recordings(dir.path(), 2).len(), 2, "{}", server.log());
    assert_eq!(files.len(), 2);
}

#[test]
fn a_recording_over_the_size_bound_is_not_written() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&app, &["--record", dir.path().to_str().unwrap()]);
    // 9 MiB of response body: over the 8 MiB bound (MAX_RECORDING_BYTES).
    let big = curl(&[&server.url("/big?size=9437184")]);
    assert_eq!(
        (big.status, big.body.len()),
        (200, 9437184),
        "the response itself is whole"
    );
    assert!(
        server.wait_for_log(
            "not recorded: its recording would be over 8 MiB",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    assert_eq!(curl(&[&server.url("/big?size=1000")]).status, 200);
    let files = recordings(dir.path(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(recordings(dir.path(), 1).len(), 1, "only the small one: {files:?}");
}

#[test]
fn garbled_recordings_get_a_clear_error_and_no_panic() {
    let app = record_app();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&app, &["--record", dir.path().to_str().unwrap()]);
    assert_eq!(curl(&[&server.url("/")]).status, 200);
    let good = std::fs::read_to_string(&recordings(dir.path(), 1)[0]).unwrap();
    drop(server);

    let bad = tempfile::tempdir().unwrap();
    let with_format = |n: u32| {
        let recorded = "\"format\": 2";
        assert!(good.contains(recorded), "{good}");
        good.replacen(recorded, &format!("\"format\": {n}"), 1)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("binary", "\u{0}\u{1}garbage".to_owned(), "is not a wsgi-wasm recording"),
        ("cut", good[..good.len() / 2].to_owned(), "is not a"),
        (
            "newer",
            with_format(3),
            "is recording format 3; this wsgi-wasm reads format 2",
        ),
        (
            "older",
            with_format(1),
            "is recording format 1, made by an earlier wsgi-wasm; this one reads format 2: record the request again",
        ),
        (
            "bad-base64",
            good.replacen("\"request_body\": \"", "\"request_body\": \"*", 1),
            "not a valid recording",
        ),
        (
            "bad-seed",
            good.replacen("\"insecure_seed\": \"", "\"insecure_seed\": \"x", 1),
            "insecure_seed",
        ),
        ("missing", String::new(), "cannot read"),
    ];
    for (name, content, expect) in cases {
        let path = bad.path().join(format!("{name}.json"));
        if name != "missing" {
            std::fs::write(&path, content).unwrap();
        }
        let output = replay(&path, &app);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expect),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }

    // Fewer random bytes than the app asks for: the source that ran out is named.
    let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
    json["host"]["secure_random"] = "".into();
    let path = bad.path().join("short.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let output = replay(&path, &app);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("asked for more of the secure random bytes (the recording has 0)"),
        "{stderr}"
    );
}
