//! The WSGI environ: the CGI keys the host sends, plus the streams PEP 3333 puts
//! next to them (`wsgi.input`, `wsgi.errors`).

use std::io;

use crate::input::Input;
use crate::log::Errors;

/// One request's environ, as the host built it (PEP 3333).
///
/// Values are *native strings*: the raw bytes of the request, one char per byte
/// (latin-1). ASCII looks as usual; a UTF-8 path such as `/caf%C3%A9` arrives as
/// `"/cafÃ©"`. [`Environ::get_bytes`] gives the bytes back, so
/// `String::from_utf8(environ.get_bytes("PATH_INFO"))` recovers the text.
///
/// Keys: `REQUEST_METHOD`, `SCRIPT_NAME`, `PATH_INFO`, `QUERY_STRING`,
/// `CONTENT_TYPE` and `CONTENT_LENGTH` (when the request has them), `SERVER_NAME`,
/// `SERVER_PORT`, `SERVER_PROTOCOL`, `SERVER_SOFTWARE`, `GATEWAY_INTERFACE`,
/// `REMOTE_ADDR`, `REMOTE_PORT`, one `HTTP_*` key per request header, and
/// `wsgi.url_scheme`, `wsgi.multithread`, `wsgi.multiprocess`, `wsgi.run_once`
/// (the flags as `"1"` or `"0"`).
pub struct Environ {
    pairs: Vec<(String, String)>,
    input: Input,
}

/// The host's packed environ (see `call` in wsgi.wit) as pairs; None if it is
/// not in the format this SDK knows (a host from another version).
pub fn unpack(packed: &str) -> Option<Vec<(String, String)>> {
    wsgi_wasm_rules::packed::unpack(packed)
}

impl Environ {
    /// An environ over these pairs, reading its body from the host. The SDK makes
    /// one per call; apps only need this to test their code with made-up requests.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Environ {
            pairs,
            input: Input::new(),
        }
    }

    /// The value of `key`, if the request has it. Keys are case-sensitive, as in
    /// Python's `environ[key]`.
    pub fn get(&self, key: &str) -> Option<&str> {
        // A linear scan: environs hold ~20-40 keys, and building a map per request
        // would cost more than the few lookups an app makes.
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key` as the bytes the client sent (native string -> latin-1).
    pub fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(native_to_bytes)
    }

    /// `REQUEST_METHOD`, e.g. `"GET"`.
    pub fn method(&self) -> &str {
        self.get("REQUEST_METHOD").unwrap_or("GET")
    }

    /// `SCRIPT_NAME`: where the app is mounted (`wsgi-wasm serve --script-name`),
    /// `""` at the root.
    pub fn script_name(&self) -> &str {
        self.get("SCRIPT_NAME").unwrap_or("")
    }

    /// `PATH_INFO`: the percent-decoded path below the mount point, e.g. `"/echo"`.
    pub fn path_info(&self) -> &str {
        self.get("PATH_INFO").unwrap_or("")
    }

    /// `QUERY_STRING`: the raw query after `?`, without decoding, `""` when absent.
    pub fn query_string(&self) -> &str {
        self.get("QUERY_STRING").unwrap_or("")
    }

    /// `CONTENT_TYPE` of the request body, when the client sent one.
    pub fn content_type(&self) -> Option<&str> {
        self.get("CONTENT_TYPE").filter(|v| !v.is_empty())
    }

    /// `CONTENT_LENGTH` of the request body, when the client sent a valid one.
    /// Chunked requests have none; read [`Environ::input`] to the end instead.
    pub fn content_length(&self) -> Option<u64> {
        self.get("CONTENT_LENGTH")?.trim().parse().ok()
    }

    /// A request header by its HTTP name, case-insensitively:
    /// `header("User-Agent")` reads `HTTP_USER_AGENT`, `header("content-type")`
    /// reads `CONTENT_TYPE`. Repeated headers arrive joined with `,` (cookies with
    /// `; `). Header names containing `_` never reach the app (the host drops them
    /// so `X-Auth_User` cannot pose as `X-Auth-User`).
    pub fn header(&self, name: &str) -> Option<&str> {
        let key: String = name
            .chars()
            .map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() })
            .collect();
        match key.as_str() {
            "CONTENT_TYPE" | "CONTENT_LENGTH" => self.get(&key),
            _ => self.get(&format!("HTTP_{key}")),
        }
    }

    /// `SERVER_NAME`.
    pub fn server_name(&self) -> &str {
        self.get("SERVER_NAME").unwrap_or("")
    }

    /// `SERVER_PORT`, as the string PEP 3333 specifies.
    pub fn server_port(&self) -> &str {
        self.get("SERVER_PORT").unwrap_or("")
    }

    /// `SERVER_PROTOCOL`, e.g. `"HTTP/1.1"`.
    pub fn server_protocol(&self) -> &str {
        self.get("SERVER_PROTOCOL").unwrap_or("HTTP/1.0")
    }

    /// `REMOTE_ADDR`: the client's IP address.
    pub fn remote_addr(&self) -> Option<&str> {
        self.get("REMOTE_ADDR")
    }

    /// `wsgi.url_scheme`: `"http"` or `"https"`.
    pub fn url_scheme(&self) -> &str {
        self.get("wsgi.url_scheme").unwrap_or("http")
    }

    /// `wsgi.run_once`: true when this instance serves only this request
    /// (`--isolation request`), so caching anything in statics is pointless.
    pub fn run_once(&self) -> bool {
        self.get("wsgi.run_once") == Some("1")
    }

    /// `wsgi.multithread`.
    pub fn multithread(&self) -> bool {
        self.get("wsgi.multithread") == Some("1")
    }

    /// `wsgi.multiprocess`.
    pub fn multiprocess(&self) -> bool {
        self.get("wsgi.multiprocess") == Some("1")
    }

    /// `wsgi.input`: the request body.
    pub fn input(&mut self) -> &mut Input {
        &mut self.input
    }

    /// `wsgi.errors`: a writer whose lines go to the server log.
    pub fn errors(&self) -> Errors {
        Errors::new()
    }

    /// Every `(key, value)` pair, in the order the host sent them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no keys at all (never, for a real request).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, for code that wants to own them.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }

    /// Reads the whole request body (shorthand for `input().read_all()`).
    pub fn read_body(&mut self) -> io::Result<Vec<u8>> {
        self.input.read_all()
    }
}

/// Native string -> bytes: each char becomes the byte with the same number.
/// Environ values always fit; a char above U+00FF (which the host never sends)
/// becomes `?`.
pub fn native_to_bytes(value: &str) -> Vec<u8> {
    value.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect()
}

/// Bytes -> native string: each byte becomes the char with the same number. Use it
/// to put arbitrary bytes (e.g. a UTF-8 file name) into a response header value,
/// which must be a native string.
pub fn bytes_to_native(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_reads_the_hosts_packed_environ() {
        let packed = "0\u{100}C\u{100}/a\u{0}b\u{ff}\u{100}X_KEY\u{100}\u{100}";
        let pairs = unpack(packed).unwrap();
        assert_eq!(pairs[0], ("PATH_INFO".to_owned(), "/a\u{0}b\u{ff}".to_owned()));
        assert_eq!(pairs[1], ("X_KEY".to_owned(), String::new()));
        assert_eq!(pairs[2], ("wsgi.multithread".to_owned(), "0".to_owned()));
        assert_eq!(unpack(""), None);
    }
}
