//! The packed response: a whole small response (status, headers and a body of at
//! most one piece) as the string the guest's `call` export returns (see `call`
//! in guest-sdk/wit/wsgi.wit), so the most common response costs no import call.
//!
//! ```text
//! COUNT SEP status SEP name SEP value SEP ... SEP body
//! ```
//!
//! - SEP is NUL. COUNT is the number of headers in decimal; the body is all that
//!   follows the last header's value (it may hold NULs).
//! - The status and the headers hold no NUL (no status line or header field may),
//!   so COUNT fixes where the body starts. A guest must not pack a head holding a
//!   NUL: it sends such a head through `start-response`, whose checks name the
//!   fault. The host checks the head like any other, so a guest that packs one
//!   anyway gets its head refused or shifts its own fields into its own body.
//! - The body is a latin-1 string (each char U+0000..U+00FF is one byte).
//!
//! The Python SDK's packer is `_pack_response` in guest-sdk/python/wsgi_wasm/adapter.py.

/// The separator.
pub const SEPARATOR: char = '\0';

/// Most body bytes a packed response carries (its latin-1 string has as many
/// chars): a larger body goes through `write-body`, which the host copies piece
/// by piece. The Python SDK's PIECE (adapter.py) is the same size.
pub const MAX_BODY: usize = 256 * 1024;

/// Most headers one packed response may declare: far more than any response
/// has, few enough that a bad count is refused before anything is read.
pub const MAX_HEADERS: usize = 1000;

/// A packed response, split but not checked (the host checks the head as it
/// checks `start-response`'s arguments).
#[derive(Debug, PartialEq, Eq)]
pub struct Unpacked<'a> {
    pub status: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    /// The latin-1 body string.
    pub body: &'a str,
}

/// `status`, `headers` and a latin-1 `body` string packed. None when the status
/// or a header holds a NUL, which the format cannot carry.
pub fn pack<N: AsRef<str>, V: AsRef<str>>(status: &str, headers: &[(N, V)], body: &str) -> Option<String> {
    let fields = || std::iter::once(status).chain(headers.iter().flat_map(|(n, v)| [n.as_ref(), v.as_ref()]));
    if fields().any(|field| field.contains(SEPARATOR)) {
        return None;
    }
    let size: usize = fields().map(|field| field.len() + 1).sum();
    let mut packed = String::with_capacity(size + body.len() + 8);
    packed.push_str(&headers.len().to_string());
    for field in fields() {
        packed.push(SEPARATOR);
        packed.push_str(field);
    }
    packed.push(SEPARATOR);
    packed.push_str(body);
    Some(packed)
}

/// The parts of a packed response, or what is wrong with its framing.
pub fn unpack(packed: &str) -> Result<Unpacked<'_>, String> {
    let malformed = |what: &str| format!("malformed packed response: {what}");
    let (count, rest) = packed
        .split_once(SEPARATOR)
        .ok_or_else(|| malformed("no header count"))?;
    let count: usize = match count.parse() {
        Ok(n) if n <= MAX_HEADERS && count.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(malformed("bad header count")),
    };
    let mut fields = rest.splitn(2 * count + 2, SEPARATOR);
    let status = fields.next().ok_or_else(|| malformed("no status"))?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        match (fields.next(), fields.next()) {
            (Some(name), Some(value)) => headers.push((name, value)),
            _ => return Err(malformed("fewer headers than its count")),
        }
    }
    let body = fields.next().ok_or_else(|| malformed("no body"))?;
    Ok(Unpacked { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let headers = [("Content-Type", "text/plain"), ("X-Empty", "")];
        let packed = pack("200 OK", &headers, "a\0b\u{ff}").unwrap();
        assert_eq!(
            packed,
            "2\u{0}200 OK\u{0}Content-Type\u{0}text/plain\u{0}X-Empty\u{0}\u{0}a\u{0}b\u{ff}"
        );
        let unpacked = unpack(&packed).unwrap();
        assert_eq!(unpacked.status, "200 OK");
        assert_eq!(unpacked.headers, headers.to_vec());
        assert_eq!(unpacked.body, "a\0b\u{ff}");
    }

    #[test]
    fn no_headers_and_no_body() {
        let packed = pack::<&str, &str>("204 No Content", &[], "").unwrap();
        assert_eq!(packed, "0\u{0}204 No Content\u{0}");
        assert_eq!(
            unpack(&packed).unwrap(),
            Unpacked {
                status: "204 No Content",
                headers: vec![],
                body: ""
            }
        );
    }

    #[test]
    fn a_nul_in_the_head_is_not_packed() {
        assert_eq!(pack("200 OK", &[("X-A", "1\0X-Evil\0yes")], ""), None);
        assert_eq!(pack("200\0OK", &[] as &[(&str, &str)], ""), None);
        assert_eq!(pack("200 OK", &[("X\0", "1")], ""), None);
    }

    #[test]
    fn bad_framing_is_refused() {
        for packed in [
            "",
            "200 OK",
            "x\u{0}200 OK\u{0}",
            "-1\u{0}200 OK\u{0}",
            "+1\u{0}200 OK\u{0}A\u{0}b\u{0}",
            "1001\u{0}200 OK\u{0}",
            "99999999999999999999999\u{0}200 OK\u{0}",
            "0\u{0}200 OK",
            "1\u{0}200 OK\u{0}A\u{0}",
            "2\u{0}200 OK\u{0}A\u{0}b\u{0}",
        ] {
            assert!(unpack(packed).is_err(), "{packed:?} was accepted");
        }
    }
}
