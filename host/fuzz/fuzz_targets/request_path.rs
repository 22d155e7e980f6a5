//! Request-path decoding (`wsgi::environ::request_path`, the one place a path is
//! decoded for both the router and PATH_INFO), against a reference written from
//! its contract: %XX (two hex digits) becomes that byte, any other '%' stays, and
//! each byte becomes the char with the same number.
#![no_main]

use hyper::Uri;
use libfuzzer_sys::fuzz_target;
use wsgi_wasm::wsgi::environ::request_path;

fn reference(path: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = String::new();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                path.get(i + 1).and_then(|&b| hex(b)),
                path.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push(char::from((hi * 16 + lo) as u8));
            i += 3;
            continue;
        }
        out.push(path[i] as char);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = Uri::from_maybe_shared(data.to_vec()) else {
        return;
    };
    let decoded = request_path(&uri);
    assert_eq!(decoded, reference(uri.path().as_bytes()), "target {uri}");
    assert!(decoded.chars().count() <= uri.path().len());
});
