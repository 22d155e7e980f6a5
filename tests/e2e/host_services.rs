//! Services the host lends the sandbox because its CPython lacks them:
//! `hashlib.pbkdf2_hmac` and `hashlib.scrypt` computed by the host, within the
//! request's CPU limit;
//! and an `ssl` module that imports, for packages that merely import it (its TLS,
//! through the host, is tested in outbound.rs).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::client::curl;
use crate::support::components::python_fixtures;
use crate::support::server::Server;

fn native_pbkdf2(hash: &str, password: &str, salt: &str, iterations: u32, dklen: Option<u32>) -> String {
    let dklen = dklen.map_or("None".to_owned(), |n| n.to_string());
    let output = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import hashlib,sys; print(hashlib.pbkdf2_hmac({hash:?}, sys.argv[1].encode(), sys.argv[2].encode(), {iterations}, {dklen}).hex())"
            ),
            password,
            salt,
        ])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn pbkdf2_hmac_in_the_sandbox_matches_native_cpython() {
    let server = Server::start(&python_fixtures(), &[]);
    for (hash, iterations, dklen) in [
        ("sha1", 1, None),
        ("sha1", 4096, Some(25)),
        ("sha224", 10, None),
        ("sha256", 1000, None),
        ("SHA256", 1000, Some(80)),
        ("sha384", 3, Some(7)),
        ("sha512", 1000, None),
    ] {
        let (password, salt) = ("pässword", "sält");
        let mut url = server.url(&format!(
            "/pbkdf2?hash={hash}&password=p%C3%A4ssword&salt=s%C3%A4lt&iterations={iterations}"
        ));
        if let Some(n) = dklen {
            url.push_str(&format!("&dklen={n}"));
        }
        let sandboxed = curl(&[&url]).text();
        assert_eq!(
            sandboxed,
            native_pbkdf2(hash, password, salt, iterations, dklen),
            "{hash} {iterations}"
        );
    }
    // CPython's own errors for bad arguments.
    for (query, error) in [
        ("hash=md4&iterations=1", "error: ValueError: unsupported hash type md4"),
        (
            "hash=sha256&iterations=0",
            "error: ValueError: iteration value must be greater than 0.",
        ),
        (
            "hash=sha256&iterations=1&dklen=0",
            "error: ValueError: key length must be greater than 0.",
        ),
        (
            "hash=sha256&iterations=4294967296",
            "error: OverflowError: iteration value is too great.",
        ),
        (
            "hash=sha256&iterations=1&dklen=5000",
            "error: ValueError: key length must be between 1 and 1024 bytes",
        ),
    ] {
        assert_eq!(
            curl(&[&server.url(&format!("/pbkdf2?{query}"))]).text(),
            error,
            "{query}"
        );
    }
}

fn native_scrypt(query: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys,urllib.parse as u; q=dict(u.parse_qsl(sys.argv[1], keep_blank_values=True)); \
             print(hashlib.scrypt(q['password'].encode(), salt=q['salt'].encode(), n=int(q['n']), \
             r=int(q['r']), p=int(q['p']), dklen=int(q.get('dklen', 64))).hex())",
            query,
        ])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn scrypt_in_the_sandbox_matches_native_cpython_within_the_hosts_bounds() {
    let server = Server::start(&python_fixtures(), &[]);
    for query in [
        "password=p%C3%A4ssword&salt=s%C3%A4lt&n=1024&r=8&p=16",
        // Django's ScryptPasswordHasher defaults.
        "password=secret&salt=salt&n=16384&r=8&p=1",
        "password=&salt=&n=16&r=1&p=1&dklen=10",
    ] {
        let sandboxed = curl(&[&server.url(&format!("/scrypt?{query}"))]).text();
        assert_eq!(sandboxed, native_scrypt(query), "{query}");
        assert!(sandboxed.len() >= 20, "{sandboxed}");
    }
    for (query, error) in [
        ("n=1000&r=8&p=1", "error: ValueError: n must be a power of 2."),
        // 2^16 * 8 * 128 bytes is over Python's default maxmem (32 MiB).
        (
            "n=65536&r=8&p=1",
            "error: ValueError: Invalid parameter combination for n, r, p, maxmem.",
        ),
        // Allowed by a larger maxmem, but more than the host lends one call.
        (
            "n=65536&r=8&p=1&maxmem=1073741824",
            "error: ValueError: n, r and p ask for more than the host lends one call (64 MiB of memory, 256 MiB of work)",
        ),
        (
            "n=16384&r=8&p=64&maxmem=1073741824",
            "error: ValueError: n, r and p ask for more than the host lends one call (64 MiB of memory, 256 MiB of work)",
        ),
    ] {
        assert_eq!(
            curl(&[&server.url(&format!("/scrypt?salt=s&{query}"))]).text(),
            error,
            "{query}"
        );
    }
}

#[test]
fn pbkdf2_hmac_cannot_escape_the_cpu_limit() {
    let server = Server::start(&python_fixtures(), &["--cpu-timeout", "1s", "--instances", "1"]);
    let started = Instant::now();
    let response = curl(&[&server.url("/pbkdf2?hash=sha512&iterations=4294967295")]);
    let took = started.elapsed();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The instance was replaced; the next request is served normally.
    let next = curl(&[&server.url("/pbkdf2?hash=sha256&iterations=1")]);
    assert_eq!(next.status, 200);
    assert_eq!(next.text().len(), 64);
}

#[test]
fn ssl_imports_and_refuses_clearly_to_start_tls() {
    let server = Server::start(&python_fixtures(), &[]);
    let report: serde_json::Value = serde_json::from_slice(&curl(&[&server.url("/ssl_probe")]).body).unwrap();
    assert_eq!(report["module"], "wsgi_wasm.ssl_shim", "{report}");
    assert_eq!(
        report["context"], "SSLContext verify=CERT_REQUIRED check_hostname=True",
        "{report}"
    );
    assert_eq!(
        report["wrap"], "denied: SSLError: cannot start TLS to api.example.com: no connected socket to wrap",
        "{report}"
    );
    // Memory-BIO TLS stays unavailable; client sockets go through the host
    // (tests/e2e/outbound.rs).
    assert_eq!(
        report["wrap_bio"],
        "denied: SSLError: cannot start TLS to api.example.com: TLS is not available inside the wsgi-wasm \
         sandbox: its CPython has no OpenSSL; the host makes client TLS connections for origins granted with \
         --allow-http https://HOST[:PORT]",
        "{report}"
    );
    assert_eq!(report["is_oserror"], true);
    assert_eq!(
        report["constants"],
        serde_json::json!(["PROTOCOL_TLS_CLIENT", "CERT_NONE", "TLSv1_2", true, true, true]),
        "{report}"
    );
    assert_eq!(
        report["exceptions"],
        serde_json::json!([
            "SSLZeroReturnError",
            "SSLWantReadError",
            "SSLEOFError",
            "SSLCertVerificationError"
        ]),
        "{report}"
    );
    // Used for a destination nobody granted: the error says which grant would allow it.
    assert_eq!(
        report["urlopen"],
        "denied: URLError: <urlopen error [Errno -4] cannot resolve 'api.example.com': wsgi-wasm: not granted to \
         this app; the server must allow it with --allow-http https://api.example.com:443 (or http://) for \
         HTTP(S), or --allow-connect api.example.com:443 for other TCP>",
        "{report}"
    );
}
