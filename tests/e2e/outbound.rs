//! Outbound HTTP(S) for apps (`--allow-http ORIGIN`, `--ca-file PEM`): the host does
//! the TLS for granted https origins, so urllib.request and requests work in the
//! sandbox; any other origin, a redirect to one, and an untrusted certificate fail
//! with a clear error, quickly.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::client::curl;
use crate::support::components::{aot_cache_dir, python_component, repo_root, wsgi_wasm_bin};
use crate::support::https::HttpsServer;
use crate::support::server::Server;

/// tests/fixtures/build/outbound, with `requests` installed from its requirements.
fn outbound_app() -> std::path::PathBuf {
    let dir = repo_root().join("tests/fixtures/build/outbound");
    let requirements = dir.join("requirements.txt");
    let cache = aot_cache_dir();
    python_component(
        "outbound",
        "app:app",
        &[&dir],
        &[
            "-r",
            requirements.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    )
}

fn fetch(server: &Server, client: &str, url: &str) -> String {
    let query = format!("/?client={client}&url={}", percent(url));
    curl(&[&server.url(&query)]).text()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_granted_https_origin_is_fetched_through_urllib_and_requests() {
    let https = HttpsServer::start();
    let origin = format!("https://localhost:{}", https.port);
    let server = Server::start(
        &outbound_app(),
        &["--allow-http", &origin, "--ca-file", https.ca_file.to_str().unwrap()],
    );
    for client in ["urllib", "requests"] {
        assert_eq!(
            fetch(&server, client, &format!("{origin}/hello")),
            "200 hello over TLS",
            "{client}"
        );
    }
    // Several requests in a row: connections of one request never leak into the next.
    for _ in 0..3 {
        assert_eq!(
            fetch(&server, "requests", &format!("{origin}/json")),
            "200 {\"ok\": true}"
        );
    }

    // Latency: 20 fetches (a new TLS connection each) in the sandbox, against the
    // machine's python3 doing the same natively. Printed for the report.
    let n = 20;
    let sandboxed = curl(&[&server.url(&format!(
        "/?client=urllib&n={n}&url={}",
        percent(&format!("{origin}/hello"))
    ))])
    .text();
    assert!(sandboxed.starts_with("200 hello over TLS ("), "{sandboxed}");
    let native = Command::new("python3")
        .args([
            "-c",
            "import ssl,sys,time,urllib.request as u\n\
             c=ssl.create_default_context(cafile=sys.argv[1]); n=int(sys.argv[3]); t=time.perf_counter()\n\
             for _ in range(n): u.urlopen(sys.argv[2], context=c).read()\n\
             print(f'{(time.perf_counter()-t)/n*1000:.2f} ms per fetch')",
            https.ca_file.to_str().unwrap(),
            &format!("{origin}/hello"),
            &n.to_string(),
        ])
        .output()
        .unwrap();
    assert!(native.status.success(), "{}", String::from_utf8_lossy(&native.stderr));
    eprintln!(
        "outbound latency, {n} HTTPS fetches with urllib: sandbox {sandboxed:?}, native python3 {:?}",
        String::from_utf8_lossy(&native.stdout).trim()
    );
}

#[test]
fn ungranted_origins_and_redirects_to_them_are_refused_naming_the_option() {
    let https = HttpsServer::start();
    let other = HttpsServer::start();
    let origin = format!("https://localhost:{}", https.port);
    let server = Server::start(
        &outbound_app(),
        &["--allow-http", &origin, "--ca-file", https.ca_file.to_str().unwrap()],
    );
    let same_server_by_ip = format!("https://127.0.0.1:{}", https.port);
    let other_port = format!("https://localhost:{}", other.port);
    for client in ["urllib", "requests"] {
        // The same server under another origin (its IP): TCP may reach it, TLS may not.
        let refused = fetch(&server, client, &format!("{same_server_by_ip}/hello"));
        assert!(
            refused.starts_with("error: ")
                && refused.contains(&format!(
                    "not granted: {same_server_by_ip} is not an origin this app may call; the server must allow it \
                     with --allow-http {same_server_by_ip}"
                )),
            "{client}: {refused}"
        );
        // Another port: refused by the sandbox before any packet leaves.
        let refused = fetch(&server, client, &format!("{other_port}/hello"));
        assert!(
            refused.starts_with("error: ")
                && refused.contains(&format!("--allow-http https://127.0.0.1:{}", other.port)),
            "{client}: {refused}"
        );
        // A granted origin redirecting to ungranted ones.
        for target in [&same_server_by_ip, &other_port] {
            let redirect = format!("{origin}/redirect?to={}", percent(&format!("{target}/hello")));
            let refused = fetch(&server, client, &redirect);
            assert!(
                refused.starts_with("error: ") && refused.contains("--allow-http"),
                "{client} redirect to {target}: {refused}"
            );
        }
        // A redirect within the granted origin is followed.
        let redirect = format!("{origin}/redirect?to={}", percent(&format!("{origin}/hello")));
        assert_eq!(fetch(&server, client, &redirect), "200 hello over TLS", "{client}");
    }
    assert!(
        server.wait_for_log(
            &format!(
                "denied: TLS connection to {same_server_by_ip} refused: not granted (allow it with --allow-http \
                 {same_server_by_ip})"
            ),
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
}

#[test]
fn a_private_ca_is_not_trusted_without_ca_file() {
    let https = HttpsServer::start();
    let origin = format!("https://localhost:{}", https.port);
    let server = Server::start(&outbound_app(), &["--allow-http", &origin]);
    for client in ["urllib", "requests"] {
        let started = Instant::now();
        let refused = fetch(&server, client, &format!("{origin}/hello"));
        assert!(
            refused.starts_with("error: ") && refused.contains("CERTIFICATE_VERIFY_FAILED"),
            "{client}: {refused}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }
}

fn serve_refuses(args: &[&str]) -> String {
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(outbound_app())
        .args(["--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(aot_cache_dir())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("Serving HTTP"), "{stderr}");
    stderr
}

#[test]
fn bad_origins_and_ca_files_fail_at_start_with_one_clear_line() {
    for bad in [
        "ftp://example.com",
        "example.com",
        "https://example.com/api",
        "https://example.com:0",
    ] {
        let stderr = serve_refuses(&["--allow-http", bad]);
        assert!(
            stderr.contains("--allow-http")
                && stderr.contains("should be an origin, http://HOST[:PORT] or https://HOST[:PORT]"),
            "{bad}: {stderr}"
        );
    }
    let stderr = serve_refuses(&["--allow-http", "https://no-such-host.invalid"]);
    assert!(
        stderr.contains("--allow-http https://no-such-host.invalid:443: the name does not resolve"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let stderr = serve_refuses(&["--allow-http", "https://localhost", "--ca-file", "/no/such/ca.pem"]);
    assert!(stderr.contains("--ca-file /no/such/ca.pem"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let stderr = serve_refuses(&[
        "--allow-http",
        "https://localhost",
        "--ca-file",
        empty.path().to_str().unwrap(),
    ]);
    assert!(stderr.contains("no PEM certificate in it"), "{stderr}");
    // Per app, through the same parser.
    let output = Command::new(wsgi_wasm_bin())
        .arg("serve")
        .arg(format!("{},allow-http=gopher://x", outbound_app().display()))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert!(
        stderr.contains("allow-http=gopher://x") && stderr.contains("should be an origin"),
        "{stderr}"
    );
}
