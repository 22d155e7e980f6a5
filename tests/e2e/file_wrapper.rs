//! `wsgi.file_wrapper`: a file returned through it streams in bounded blocks, so a
//! file far larger than the instance's memory limit is served whole, with a
//! Content-Length when it is a regular file, and the instance survives.

use sha2::{Digest, Sha256};

use crate::support::client::curl;
use crate::support::components::python_fixtures;
use crate::support::server::Server;

const FILE_SIZE: usize = 100 << 20;

/// 100 MiB that no compression or dedup could shortcut: each MiB differs.
fn write_big_file(path: &std::path::Path) -> String {
    let mut data = Vec::with_capacity(FILE_SIZE);
    let mut block = [0u8; 32];
    let mut counter: u64 = 0;
    while data.len() < FILE_SIZE {
        block = Sha256::new()
            .chain_update(block)
            .chain_update(counter.to_le_bytes())
            .finalize()
            .into();
        data.extend_from_slice(&block);
        counter += 1;
    }
    std::fs::write(path, &data).unwrap();
    Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_100_mib_file_streams_through_file_wrapper_within_a_64_mib_instance() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_big_file(&dir.path().join("big.bin"));
    // 64 MiB holds the Python fixtures with a margin; buffering the file could not fit.
    let server = Server::start(
        &python_fixtures(),
        &[
            "--dir",
            &format!("{}:/data", dir.path().display()),
            "--max-memory",
            "64MiB",
            "--instances",
            "1",
        ],
    );
    let response = curl(&[&server.url("/file_wrapper/big.bin")]);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.header("content-length"), Some(FILE_SIZE.to_string().as_str()));
    assert_eq!(response.body.len(), FILE_SIZE);
    assert_eq!(sha256_hex(&response.body), digest);

    // A file-like object without a size: streamed chunked, same bytes.
    let response = curl(&[&server.url("/file_wrapper/big.bin?pipe=1")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(sha256_hex(&response.body), digest);

    // The same instance answers on: never killed, never replaced for its size.
    assert_eq!(curl(&[&server.url("/hello")]).status, 200);
    let log = server.log();
    assert!(!log.contains("trap") && !log.contains("recycle"), "{log}");
}
