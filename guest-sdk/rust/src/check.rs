//! PEP 3333's start_response rules, checked in the guest so a mistake comes back
//! as a clear error at the line that made it. The host checks all of this again:
//! it never trusts a guest.

/// Hop-by-hop headers belong to one connection, which the server owns (PEP 3333;
/// the same list as wsgiref's `is_hop_by_hop`).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// `"200 OK"`: three digits, a space, a reason phrase in latin-1 without controls.
pub(crate) fn status(status: &str) -> Result<(), String> {
    let bytes = status.as_bytes();
    let well_formed = bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ';
    if !well_formed {
        return Err(format!(
            "status must be three digits, a space and a reason phrase (like \"200 OK\"), not {status:?}"
        ));
    }
    if bytes[0] < b'2' {
        // 1xx are interim responses the server handles itself; 0xx do not exist.
        return Err(format!("status {status:?} is not a final response status (200 and up)"));
    }
    field(&status[4..], "reason phrase")
}

pub(crate) fn header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(format!("header name {name:?} is not a valid HTTP token"));
    }
    if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(format!(
            "hop-by-hop header {name:?} is not allowed: the server manages the connection"
        ));
    }
    field(value, "header value")
}

/// Native string rules: every char latin-1, no control characters but tab.
fn field(value: &str, what: &str) -> Result<(), String> {
    let bad = value.chars().find(|&c| {
        let n = u32::from(c);
        n > 0xff || (n < 0x20 && c != '\t') || n == 0x7f
    });
    match bad {
        Some(c) => Err(format!(
            "{what} {value:?} contains {c:?}: only latin-1 characters without controls (no CR/LF) are allowed"
        )),
        None => Ok(()),
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(status("200 OK").is_ok());
        assert!(status("404 Not Found").is_ok());
        assert!(status("599 ").is_ok());
        assert!(status("200").is_err());
        assert!(status("200OK").is_err());
        assert!(status("20 OK").is_err());
        assert!(status("100 Continue").is_err());
        assert!(status("200 OK\r\nX: y").is_err());
        assert!(status("200 caf\u{e9}").is_ok());
        assert!(status("200 \u{2603}").is_err());
    }

    #[test]
    fn headers() {
        assert!(header("Content-Type", "text/plain").is_ok());
        assert!(header("X-Tab", "a\tb").is_ok());
        assert!(header("", "x").is_err());
        assert!(header("Bad Name", "x").is_err());
        assert!(header("X", "a\nb").is_err());
        assert!(header("X", "\u{100}").is_err());
        assert!(header("Connection", "close").is_err());
        assert!(header("transfer-encoding", "chunked").is_err());
    }
}
