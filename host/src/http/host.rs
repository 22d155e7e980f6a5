//! Which host a request is for (RFC 9112 section 3.2): the one place that reads the
//! Host header and an absolute-form target, so that everything that cares about
//! the host (today the refusal of bad requests, later a Host-based router) agrees.

use hyper::header::{HOST, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::{Uri, Version};

/// Why a request's host is unacceptable; every case is answered 400 (RFC 9112
/// section 3.2: a missing Host in HTTP/1.1, more than one Host, or an invalid one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    Missing,
    Repeated,
    Invalid,
    InvalidTarget,
    Conflicting,
}

impl HostError {
    /// What the 400 page tells the client.
    pub fn message(self) -> &'static str {
        match self {
            HostError::Missing => "An HTTP/1.1 request must have a Host header.",
            HostError::Repeated => "A request may have only one Host header.",
            HostError::Invalid => "The Host header is not a valid host[:port].",
            HostError::InvalidTarget => "The request target is not a valid http URI.",
            HostError::Conflicting => "The Host header names another host than :authority.",
        }
    }
}

/// The host the request is for, lower-cased and without the port (an IPv6 address
/// keeps its brackets). `None` only for an HTTP/1.0 request without a Host header,
/// which HTTP/1.0 allows. An empty Host value is valid (RFC 9112 section 3.2: what a
/// client sends when the target URI has no authority) and gives `Some("")`.
///
/// With an absolute-form target (`GET http://example.com/ HTTP/1.1`) the target's
/// authority is the host and the Host header is ignored (RFC 9112 section 3.2.2),
/// though it must still be present and valid: a request whose two hosts could be
/// read differently is exactly what a proxy in front may have checked the wrong half of.
pub fn request_host(parts: &Parts) -> Result<Option<String>, HostError> {
    let mut values = parts.headers.get_all(HOST).iter();
    let header = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(HostError::Repeated),
        (Some(value), None) => Some(parse_host_value(value)?),
        (None, _) if parts.version == Version::HTTP_10 => None,
        // HTTP/2 names the host in :authority (the target's authority here) and
        // needs no Host header (RFC 9113 section 8.3.1).
        (None, _) if parts.version == Version::HTTP_2 && parts.uri.authority().is_some() => None,
        (None, _) => return Err(HostError::Missing),
    };
    match target_authority(&parts.uri)? {
        // An HTTP/2 request naming two different hosts is malformed (RFC 9113
        // section 8.3.1), not one where :authority quietly wins.
        Some(authority) if parts.version == Version::HTTP_2 && header.as_ref().is_some_and(|h| *h != authority) => {
            Err(HostError::Conflicting)
        }
        Some(authority) => Ok(Some(authority)),
        None => Ok(header),
    }
}

/// For an absolute-form target, the Host header value that agrees with it, so that
/// HTTP_HOST names the same host the server acted on.
pub fn absolute_form_host(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    HeaderValue::from_str(authority.as_str()).ok()
}

/// Whether `value` would be accepted as a Host header (a forwarded host must be).
pub fn is_valid_host_value(value: &HeaderValue) -> bool {
    !value.is_empty() && parse_host_value(value).is_ok()
}

fn parse_host_value(value: &HeaderValue) -> Result<String, HostError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let text = value.to_str().map_err(|_| HostError::Invalid)?;
    let authority: Authority = text.parse().map_err(|_| HostError::Invalid)?;
    normalise(&authority).ok_or(HostError::Invalid)
}

fn target_authority(uri: &Uri) -> Result<Option<String>, HostError> {
    let Some(authority) = uri.authority() else {
        return Ok(None);
    };
    // Only requests to a proxy use other schemes, and this is not one; a bare
    // authority (`GET host:80`) is the form only CONNECT uses (RFC 9112 3.2.3).
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(HostError::InvalidTarget);
    }
    normalise(authority).map(Some).ok_or(HostError::InvalidTarget)
}

/// Host (lower-case) of a `host[:port]`, or None when the authority is more than
/// that. The http crate checks the characters and brackets; what it allows beyond
/// RFC 9110's `uri-host [":" port]` is refused here: userinfo (`user@host`, which
/// RFC 9110 section 4.2.4 says to treat as an error) and a port that is not digits.
fn normalise(authority: &Authority) -> Option<String> {
    let text = authority.as_str();
    let host = authority.host();
    if text.contains('@') || host.is_empty() {
        return None;
    }
    // Without userinfo the host is where the authority starts.
    match text.strip_prefix(host)?.strip_prefix(':') {
        Some(port) if port.len() > MAX_PORT_DIGITS || !port.bytes().all(|b| b.is_ascii_digit()) => return None,
        None if text.len() != host.len() => return None,
        _ => {}
    }
    // Brackets hold an IP address (RFC 3986 IP-literal); the IPvFuture form is not
    // used by any client and is refused.
    if let Some(inside) = host.strip_prefix('[') {
        inside.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok()?;
    }
    Some(host.to_ascii_lowercase())
}

/// "65535" has five digits; longer ports (even zero-padded ones) are refused rather
/// than risk two parsers reading different numbers.
const MAX_PORT_DIGITS: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn host_of(version: Version, target: &str, hosts: &[&[u8]]) -> Result<Option<String>, HostError> {
        let mut request = Request::builder().version(version).uri(target);
        for host in hosts {
            request = request.header(HOST, HeaderValue::from_bytes(host).unwrap());
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        request_host(&parts)
    }

    fn h11(hosts: &[&[u8]]) -> Result<Option<String>, HostError> {
        host_of(Version::HTTP_11, "/", hosts)
    }

    #[test]
    fn valid_hosts_are_normalised_without_the_port() {
        assert_eq!(h11(&[b"Example.COM"]), Ok(Some("example.com".into())));
        assert_eq!(h11(&[b"example.com:8080"]), Ok(Some("example.com".into())));
        assert_eq!(h11(&[b"127.0.0.1:80"]), Ok(Some("127.0.0.1".into())));
        assert_eq!(h11(&[b"[::1]:8000"]), Ok(Some("[::1]".into())));
        assert_eq!(h11(&[b"[::1]"]), Ok(Some("[::1]".into())));
        assert_eq!(h11(&[b"example.com:"]), Ok(Some("example.com".into())));
        assert_eq!(h11(&[b""]), Ok(Some(String::new())));
    }

    #[test]
    fn missing_repeated_and_invalid_hosts_are_refused() {
        assert_eq!(h11(&[]), Err(HostError::Missing));
        assert_eq!(h11(&[b"a", b"a"]), Err(HostError::Repeated));
        assert_eq!(h11(&[b"a", b"b"]), Err(HostError::Repeated));
        for bad in [
            &b"a b"[..],
            b"user@example.com",
            b"example.com:80:80",
            b"example.com:http",
            b"example.com:000080",
            b"example.com/path",
            b"example.com?q",
            b"exa\"mple",
            b"[::1",
            b"::1",
            b"\xe9xample.com",
            b":80",
            b"[zzz]",
            b"a:a",
        ] {
            assert_eq!(h11(&[bad]), Err(HostError::Invalid), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http10_may_leave_the_host_out_but_not_send_a_bad_one() {
        assert_eq!(host_of(Version::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(host_of(Version::HTTP_10, "/", &[b"a b"]), Err(HostError::Invalid));
        assert_eq!(host_of(Version::HTTP_10, "/", &[b"a", b"b"]), Err(HostError::Repeated));
    }

    #[test]
    fn http2_takes_the_authority_and_refuses_a_different_host_header() {
        let target = "https://Example.com:8443/x";
        assert_eq!(host_of(Version::HTTP_2, target, &[]), Ok(Some("example.com".into())));
        assert_eq!(
            host_of(Version::HTTP_2, target, &[b"example.com"]),
            Ok(Some("example.com".into()))
        );
        assert_eq!(
            host_of(Version::HTTP_2, target, &[b"other.example"]),
            Err(HostError::Conflicting)
        );
        assert_eq!(host_of(Version::HTTP_2, "/x", &[]), Err(HostError::Missing));
        assert_eq!(
            host_of(Version::HTTP_2, "/x", &[b"a.example"]),
            Ok(Some("a.example".into()))
        );
    }

    #[test]
    fn absolute_form_target_wins_over_the_host_header() {
        let target = "http://Other.example:81/x";
        assert_eq!(
            host_of(Version::HTTP_11, target, &[b"example.com"]),
            Ok(Some("other.example".into()))
        );
        assert_eq!(host_of(Version::HTTP_11, target, &[]), Err(HostError::Missing));
        assert_eq!(
            host_of(Version::HTTP_11, "http://u@other.example/x", &[b"a"]),
            Err(HostError::InvalidTarget)
        );
        assert_eq!(
            host_of(Version::HTTP_11, "ftp://other.example/x", &[b"a"]),
            Err(HostError::InvalidTarget)
        );
        assert_eq!(
            host_of(Version::HTTP_11, "other.example:80", &[b"a"]),
            Err(HostError::InvalidTarget)
        );
    }
}
