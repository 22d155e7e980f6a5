//! PEP 3333's start_response rules, checked in the guest so a mistake comes back
//! as a clear error at the line that made it. The host checks all of this again:
//! it never trusts a guest.

use wsgi_wasm_rules::{StatusProblem, is_field_char, is_header_name, is_hop_by_hop, split_status};

/// `"200 OK"`: three digits, a space, a reason phrase in latin-1 without controls.
pub(crate) fn status(status: &str) -> Result<(), String> {
    match split_status(status) {
        Ok((_, reason)) => field(reason, "reason phrase"),
        Err(StatusProblem::Format) => Err(format!(
            "status must be three digits, a space and a reason phrase (like \"200 OK\"), not {status:?}"
        )),
        // 1xx are interim responses the server handles itself; 0xx do not exist.
        Err(StatusProblem::NotFinal) => Err(format!("status {status:?} is not a final response status (200 and up)")),
    }
}

pub(crate) fn header(name: &str, value: &str) -> Result<(), String> {
    if !is_header_name(name) {
        return Err(format!("header name {name:?} is not a valid HTTP token"));
    }
    if is_hop_by_hop(name) {
        return Err(format!(
            "hop-by-hop header {name:?} is not allowed: the server manages the connection"
        ));
    }
    field(value, "header value")
}

/// Native string rules: every char latin-1, no control characters but tab.
fn field(value: &str, what: &str) -> Result<(), String> {
    match value.chars().find(|&c| !is_field_char(c)) {
        Some(c) => Err(format!(
            "{what} {value:?} contains {c:?}: only latin-1 characters without controls (no CR/LF) are allowed"
        )),
        None => Ok(()),
    }
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
        // The lists of host and SDK had drifted apart; now both refuse these.
        assert!(header("Trailer", "x").is_err());
        assert!(header("Proxy-Connection", "keep-alive").is_err());
    }
}
