//! Checks on what the guest passes to start_response, done again on the host
//! because the guest is not trusted (the SDK checks first, for nicer errors).

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// Response headers one start_response may set. Real apps send tens; the cap keeps
/// a hostile guest from making the host build a multi-megabyte header block.
pub const MAX_RESPONSE_HEADERS: usize = 256;
/// Bytes of status + header names and values one start_response may set. Matches
/// the largest request head most proxies accept (64 KiB), so anything larger would
/// be rejected downstream anyway.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidResponse {
    #[error("status {0:?} must be three digits, a space and a reason phrase, like \"200 OK\"")]
    StatusFormat(String),
    #[error("status {0} is informational (1xx); a WSGI app must send a final status")]
    Informational(u16),
    #[error("{what} {value:?} contains a character that is not latin-1 or is a control character")]
    BadChars { what: &'static str, value: String },
    #[error("header name {0:?} is not a valid HTTP token")]
    HeaderName(String),
    #[error("header {0:?} is hop-by-hop; the server manages the connection itself")]
    HopByHop(String),
    #[error("Content-Length {0:?} is not a non-negative integer")]
    ContentLength(String),
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    #[error("too many response headers ({0}; at most {MAX_RESPONSE_HEADERS})")]
    TooManyHeaders(usize),
    #[error("response head is {0} bytes; at most {MAX_RESPONSE_HEAD_BYTES}")]
    HeadTooLarge(usize),
}

/// A checked response head, ready for hyper.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The reason phrase exactly as the app wrote it ("200 Okay" stays "Okay").
    pub reason: Vec<u8>,
    pub headers: HeaderMap,
    /// The app's declared body length, which the host enforces.
    pub content_length: Option<u64>,
}

// The rules themselves (which headers are hop-by-hop, what a status line and a
// field look like) are shared with the Rust guest SDK.
use wsgi_wasm_rules::{StatusProblem, is_field_char, is_hop_by_hop, split_status};

impl ResponseHead {
    pub fn from_wsgi<N: AsRef<str>, V: AsRef<str>>(status: &str, headers: &[(N, V)]) -> Result<Self, InvalidResponse> {
        if headers.len() > MAX_RESPONSE_HEADERS {
            return Err(InvalidResponse::TooManyHeaders(headers.len()));
        }
        let size = status.len()
            + headers
                .iter()
                .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 4)
                .sum::<usize>();
        if size > MAX_RESPONSE_HEAD_BYTES {
            return Err(InvalidResponse::HeadTooLarge(size));
        }
        let (status, reason) = parse_status(status)?;
        let mut map = HeaderMap::with_capacity(headers.len());
        let mut content_length = None;
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            if is_hop_by_hop(name) {
                return Err(InvalidResponse::HopByHop(name.to_owned()));
            }
            let header_name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidResponse::HeaderName(name.to_owned()))?;
            let bytes = field_bytes(value, "header value")?;
            if header_name == hyper::header::CONTENT_LENGTH {
                let n = parse_content_length(value)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(InvalidResponse::ConflictingContentLength);
                }
                if content_length.is_some() {
                    continue;
                }
                content_length = Some(n);
            }
            let header_value = HeaderValue::from_bytes(&bytes).map_err(|_| InvalidResponse::BadChars {
                what: "header value",
                value: value.to_owned(),
            })?;
            map.append(header_name, header_value);
        }
        Ok(ResponseHead {
            status,
            reason,
            headers: map,
            content_length,
        })
    }

    /// Whether this status may carry a body at all (RFC 9110: 204 and 304 never do).
    pub fn allows_body(&self) -> bool {
        !matches!(self.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
    }
}

fn parse_status(status: &str) -> Result<(StatusCode, Vec<u8>), InvalidResponse> {
    let (code, reason) = split_status(status).map_err(|problem| match problem {
        StatusProblem::Format => InvalidResponse::StatusFormat(status.to_owned()),
        StatusProblem::NotFinal => InvalidResponse::Informational(status[..3].parse().unwrap_or_default()),
    })?;
    let status_code = StatusCode::from_u16(code).map_err(|_| InvalidResponse::StatusFormat(status.to_owned()))?;
    Ok((status_code, field_bytes(reason, "reason phrase")?))
}

fn parse_content_length(value: &str) -> Result<u64, InvalidResponse> {
    let trimmed = value.trim_matches([' ', '\t']);
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidResponse::ContentLength(value.to_owned()));
    }
    trimmed
        .parse()
        .map_err(|_| InvalidResponse::ContentLength(value.to_owned()))
}

/// Bytes given as a latin-1 string (one char per byte: a packed response's body,
/// `tls.write`'s data, see wsgi.wit) as the bytes it stands for.
pub fn latin1_body(text: &str) -> Result<Bytes, String> {
    if text.is_ascii() {
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    }
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        let byte = u8::try_from(u32::from(c)).map_err(|_| format!("body string has {c:?}, which is not latin-1"))?;
        bytes.push(byte);
    }
    Ok(Bytes::from(bytes))
}

/// Native string -> wire bytes. Every char must be latin-1 and not a control
/// character (tab is allowed inside values, as HTTP allows it).
fn field_bytes(value: &str, what: &'static str) -> Result<Vec<u8>, InvalidResponse> {
    value
        .chars()
        .map(|c| {
            if is_field_char(c) {
                Ok(c as u8)
            } else {
                Err(InvalidResponse::BadChars {
                    what,
                    value: value.to_owned(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_HEADERS: &[(&str, &str)] = &[];

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn status_needs_three_digits_space_reason() {
        assert!(ResponseHead::from_wsgi("200 OK", NO_HEADERS).is_ok());
        assert_eq!(
            ResponseHead::from_wsgi("404 Not Here", NO_HEADERS).unwrap().reason,
            b"Not Here"
        );
        for bad in ["200", "200OK", "20 OK", "2000 OK", "abc OK", "", " 200 OK"] {
            assert!(
                matches!(
                    ResponseHead::from_wsgi(bad, NO_HEADERS),
                    Err(InvalidResponse::StatusFormat(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn informational_status_is_refused() {
        assert_eq!(
            ResponseHead::from_wsgi("101 Switching", NO_HEADERS).unwrap_err(),
            InvalidResponse::Informational(101)
        );
    }

    #[test]
    fn status_reason_must_be_clean_latin1() {
        assert!(ResponseHead::from_wsgi("200 Caf\u{e9}", NO_HEADERS).is_ok());
        assert!(ResponseHead::from_wsgi("200 \u{263a}", NO_HEADERS).is_err());
        assert!(ResponseHead::from_wsgi("200 OK\r\nX: y", NO_HEADERS).is_err());
    }

    #[test]
    fn hop_by_hop_headers_are_refused() {
        for name in [
            "Connection",
            "keep-alive",
            "Transfer-Encoding",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Authenticate",
            "proxy-foo",
        ] {
            assert_eq!(
                ResponseHead::from_wsgi("200 OK", &h(&[(name, "x")])).unwrap_err(),
                InvalidResponse::HopByHop(name.into())
            );
        }
    }

    #[test]
    fn header_injection_is_refused() {
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X-A", "b\r\nSet-Cookie: x")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X-A", "b\nc")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X A", "b")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X-A:", "b")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X-A", "\u{100}")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("X-A", "a\tb \u{ff}")])).is_ok());
    }

    #[test]
    fn content_length_is_parsed_and_checked() {
        let head = ResponseHead::from_wsgi("200 OK", &h(&[("Content-Length", "12")])).unwrap();
        assert_eq!(head.content_length, Some(12));
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("Content-Length", "-1")])).is_err());
        assert!(ResponseHead::from_wsgi("200 OK", &h(&[("Content-Length", "1x")])).is_err());
        assert_eq!(
            ResponseHead::from_wsgi("200 OK", &h(&[("Content-Length", "1"), ("content-length", "2")])).unwrap_err(),
            InvalidResponse::ConflictingContentLength
        );
        let same = ResponseHead::from_wsgi("200 OK", &h(&[("Content-Length", "3"), ("content-length", "3")])).unwrap();
        assert_eq!(same.headers.get_all("content-length").iter().count(), 1);
    }

    #[test]
    fn header_count_and_size_are_bounded() {
        let many: Vec<_> = (0..MAX_RESPONSE_HEADERS + 1)
            .map(|i| (format!("X-{i}"), "v".to_string()))
            .collect();
        assert!(matches!(
            ResponseHead::from_wsgi("200 OK", &many),
            Err(InvalidResponse::TooManyHeaders(_))
        ));
        let big = h(&[("X-Big", &"a".repeat(MAX_RESPONSE_HEAD_BYTES))]);
        assert!(matches!(
            ResponseHead::from_wsgi("200 OK", &big),
            Err(InvalidResponse::HeadTooLarge(_))
        ));
    }
}
