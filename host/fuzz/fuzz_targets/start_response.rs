//! start_response's checks on what a (hostile) guest passes: whatever it sends,
//! the host returns an error or a head it can send. An accepted head has a final
//! status (200-999 as hyper's StatusCode allows, never 1xx), headers that are
//! neither hop-by-hop nor over the limits, values that are the app's characters
//! byte for byte, and the one Content-Length it declared.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgi_wasm::wsgi::response::{MAX_RESPONSE_HEAD_BYTES, MAX_RESPONSE_HEADERS, ResponseHead};

fuzz_target!(|input: (String, Vec<(String, String)>)| {
    let (status, headers) = input;
    let Ok(head) = ResponseHead::from_wsgi(&status, &headers) else {
        return;
    };
    assert!(head.status.as_u16() >= 200, "non-final status {status:?} accepted");
    assert!(headers.len() <= MAX_RESPONSE_HEADERS);
    assert!(status.len() + headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() <= MAX_RESPONSE_HEAD_BYTES);
    assert_eq!(head.reason, status[4..].chars().map(|c| c as u8).collect::<Vec<u8>>());
    for (name, value) in head.headers.iter() {
        assert!(
            !wsgi_wasm_rules::is_hop_by_hop(name.as_str()),
            "hop-by-hop {name} accepted"
        );
        let sent = headers.iter().find(|(n, v)| {
            n.eq_ignore_ascii_case(name.as_str()) && v.chars().map(|c| c as u8).eq(value.as_bytes().iter().copied())
        });
        assert!(sent.is_some(), "{name}: {value:?} is not what the app sent");
    }
    let lengths = head.headers.get_all(hyper::header::CONTENT_LENGTH).iter().count();
    assert_eq!(lengths, usize::from(head.content_length.is_some()));
});
