//! What the host and the Rust guest SDK must agree on, in one place: the packed
//! environ's and response's formats (see `call` in guest-sdk/wit/wsgi.wit) and PEP 3333's rules
//! for what an app may pass to start_response. The SDK checks them to give the app
//! a clear error at the line that broke them; the host checks them again because it
//! never trusts a guest. Each side words its own errors; the rules are these.

pub mod packed;
pub mod packed_response;

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus wsgiref's `is_hop_by_hop`
/// list): they describe one connection, which the server owns, so an app may not
/// set them. Any `Proxy-*` header is refused as well (see [`is_hop_by_hop`]).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether an app may not set the header `name` (any case).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() >= 6 && name.as_bytes()[..6].eq_ignore_ascii_case(b"proxy-")
}

/// Why a status line is not one an app may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusProblem {
    /// Not three digits, a space and a reason phrase.
    Format,
    /// 1xx (the server sends interim responses itself) or 0xx.
    NotFinal,
}

/// `"200 OK"`: three digits, a space, then the reason phrase (checked with
/// [`is_field_char`]). Returns the code and the reason phrase.
pub fn split_status(status: &str) -> Result<(u16, &str), StatusProblem> {
    let bytes = status.as_bytes();
    if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[3] != b' ' {
        return Err(StatusProblem::Format);
    }
    let code = bytes[..3].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if code < 200 {
        return Err(StatusProblem::NotFinal);
    }
    Ok((code, &status[4..]))
}

/// A header name must be an RFC 9110 token.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_char)
}

/// RFC 9110 `tchar`.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A character allowed in a reason phrase or header value: a native string's
/// (latin-1) and no control character but tab, so no CR/LF can split a header.
pub fn is_field_char(c: char) -> bool {
    let n = u32::from(c);
    n <= 0xff && (n >= 0x20 || c == '\t') && n != 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(split_status("200 OK"), Ok((200, "OK")));
        assert_eq!(split_status("599 "), Ok((599, "")));
        assert_eq!(split_status("200"), Err(StatusProblem::Format));
        assert_eq!(split_status("200OK"), Err(StatusProblem::Format));
        assert_eq!(split_status("20 OK"), Err(StatusProblem::Format));
        assert_eq!(split_status("100 Continue"), Err(StatusProblem::NotFinal));
        assert_eq!(split_status("099 Odd"), Err(StatusProblem::NotFinal));
    }

    #[test]
    fn headers() {
        assert!(is_header_name("Content-Type"));
        assert!(!is_header_name("Bad Name") && !is_header_name(""));
        for name in [
            "Connection",
            "TE",
            "Trailer",
            "transfer-encoding",
            "Proxy-Authenticate",
            "proxy-x",
        ] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop("Content-Type") && !is_hop_by_hop("Proxy"));
        assert!(is_field_char('\t') && is_field_char('\u{e9}'));
        assert!(!is_field_char('\n') && !is_field_char('\u{7f}') && !is_field_char('\u{100}'));
    }
}
