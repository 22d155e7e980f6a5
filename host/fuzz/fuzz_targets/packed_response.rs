//! The packed response a (hostile) guest may return from `call`: whatever the
//! string, the host splits it or refuses it without panicking, and what it splits
//! packs back to the same fields. Any head without a NUL and any body round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgi_wasm::wsgi::response::{ResponseHead, latin1_body};
use wsgi_wasm_rules::packed_response::{MAX_HEADERS, pack, unpack};

fuzz_target!(|input: (String, Vec<(String, String)>, String, String)| {
    let (status, headers, body, raw) = input;
    if let Ok(split) = unpack(&raw) {
        let again = pack(split.status, &split.headers, split.body).expect("split fields hold no NUL");
        assert_eq!(unpack(&again).as_ref(), Ok(&split));
        // What the host then does with it: check the head, convert the body.
        let _ = ResponseHead::from_wsgi(split.status, &split.headers);
        let _ = latin1_body(split.body);
    }
    match pack(&status, &headers, &body) {
        Some(packed) if headers.len() <= MAX_HEADERS => {
            let split = unpack(&packed).expect("a packed response unpacks");
            assert_eq!(split.status, status);
            let sent: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            assert_eq!(split.headers, sent);
            assert_eq!(split.body, body);
        }
        Some(packed) => assert!(unpack(&packed).is_err(), "more than {MAX_HEADERS} headers accepted"),
        None => assert!(
            status.contains('\0') || headers.iter().any(|(n, v)| n.contains('\0') || v.contains('\0')),
            "a head without a NUL was not packed"
        ),
    }
});
