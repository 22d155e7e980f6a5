//! Request parts + connection facts -> the CGI part of a WSGI environ (PEP 3333).
//!
//! Pure and synchronous so every rule can be unit-tested. Values are "native
//! strings": raw bytes decoded as latin-1, one char per byte, as PEP 3333 says.
//! The guest SDK adds the Python objects (wsgi.input, wsgi.errors, wsgi.version).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap};
use hyper::{Method, Uri, Version};

/// What the server knows about itself, fixed per listener.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// SERVER_NAME: the name the operator gave (`--server-name`) or the listen host.
    pub server_name: String,
    /// SERVER_PORT: the port actually bound (never 0).
    pub server_port: u16,
}

/// What the environ says about where the app is mounted, fixed per mount.
#[derive(Debug, Clone, Default)]
pub struct MountPoint {
    /// SCRIPT_NAME: the prefix the app is mounted under, "" for the root.
    pub script_name: String,
    /// wsgi.run_once: true when every request gets a fresh instance.
    pub run_once: bool,
}

/// The request line and headers, as hyper parsed them.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    /// The target's path as [`request_path`] decodes it: the router matches
    /// prefixes on it and PATH_INFO is cut from it, so both see the same path.
    pub path: &'a str,
    pub version: Version,
    pub headers: &'a HeaderMap,
}

/// Who sent the request and how: the socket's peer, or what a trusted proxy said
/// about the client behind it (see http::forwarded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Client {
    /// REMOTE_ADDR; None for a Unix-socket peer, which has no address.
    pub addr: Option<IpAddr>,
    /// REMOTE_PORT, when known (a proxy's X-Forwarded-For gives no port).
    pub port: Option<u16>,
    /// The request came over TLS: wsgi.url_scheme "https" and HTTPS=on.
    pub https: bool,
}

impl Client {
    pub fn peer(remote: Option<SocketAddr>, https: bool) -> Client {
        Client {
            addr: remote.map(|r| r.ip().to_canonical()),
            port: remote.map(|r| r.port()),
            https,
        }
    }
}

/// The CGI keys and values of one request. Keys and the values that are the same
/// for every request are borrowed statics, so building one allocates only what
/// varies (the Python hello: ~30 fewer allocations per request).
pub type Environ = Vec<(Cow<'static, str>, Cow<'static, str>)>;

pub const SERVER_SOFTWARE: &str = concat!("wsgi-wasm/", env!("CARGO_PKG_VERSION"));

/// Builds the environ the guest receives. Keys with a dot are WSGI extensions that
/// the guest SDK turns into Python values ("1"/"0" become booleans).
/// A client on a Unix socket has no address: its REMOTE_ADDR is empty and it has
/// no REMOTE_PORT, as under gunicorn.
pub fn build(head: &RequestHead<'_>, server: &ServerInfo, mount: &MountPoint, client: &Client) -> Environ {
    /// Every fixed key is a borrowed static; a value is borrowed when it is the
    /// same for every request, owned when it varies.
    fn put(env: &mut Environ, key: &'static str, value: impl Into<Cow<'static, str>>) {
        env.push((Cow::Borrowed(key), value.into()));
    }
    let mut env: Environ = Vec::with_capacity(16 + head.headers.len());

    put(&mut env, "REQUEST_METHOD", head.method.as_str().to_owned());
    let (script_name, path_info) = split_path(head.path, &mount.script_name);
    put(&mut env, "SCRIPT_NAME", script_name);
    put(&mut env, "PATH_INFO", path_info);
    put(
        &mut env,
        "QUERY_STRING",
        head.uri.query().map(latin1).unwrap_or_default(),
    );
    put(&mut env, "SERVER_NAME", server.server_name.clone());
    put(&mut env, "SERVER_PORT", server.server_port.to_string());
    put(&mut env, "SERVER_PROTOCOL", protocol(head.version));
    put(&mut env, "SERVER_SOFTWARE", SERVER_SOFTWARE);
    put(&mut env, "GATEWAY_INTERFACE", "CGI/1.1");
    put(
        &mut env,
        "REMOTE_ADDR",
        client.addr.map(|a| a.to_string()).unwrap_or_default(),
    );
    if let Some(port) = client.port {
        put(&mut env, "REMOTE_PORT", port.to_string());
    }
    if client.https {
        // What CGI servers and Django's request.is_secure() fallbacks look at.
        put(&mut env, "HTTPS", "on");
    }
    put(&mut env, "wsgi.url_scheme", if client.https { "https" } else { "http" });
    // Each instance runs one request at a time on one thread; concurrent requests
    // go to separate instances, which is what WSGI calls multiprocess.
    put(&mut env, "wsgi.multithread", "0");
    put(&mut env, "wsgi.multiprocess", "1");
    put(&mut env, "wsgi.run_once", if mount.run_once { "1" } else { "0" });

    for name in head.headers.keys() {
        if name == CONTENT_TYPE || name == CONTENT_LENGTH {
            if let Some(value) = joined_value(head.headers, name) {
                let key = if name == CONTENT_TYPE {
                    "CONTENT_TYPE"
                } else {
                    "CONTENT_LENGTH"
                };
                put(&mut env, key, value);
            }
            continue;
        }
        // "X-Auth_User" and "X-Auth-User" would both become HTTP_X_AUTH_USER; a
        // proxy may have vetted only one spelling, so underscored names are dropped.
        if name.as_str().contains('_') {
            continue;
        }
        if let Some(value) = joined_value(head.headers, name) {
            env.push((Cow::Owned(cgi_header_key(name.as_str())), Cow::Owned(value)));
        }
    }
    env
}

/// SERVER_PROTOCOL for a request of this version; the access log names it the same way.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        // CGI's SERVER_PROTOCOL is "HTTP/" major "." minor (RFC 3875 section 4.1.16),
        // which is also what nginx and Apache pass on for HTTP/2.
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// All values of a header joined as one, the way CGI has it: "," between repeats,
/// except cookies, whose own separator is "; " (RFC 6265 section 5.4).
fn joined_value(headers: &HeaderMap, name: &hyper::header::HeaderName) -> Option<String> {
    let sep = if name == COOKIE { "; " } else { "," };
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let v = latin1(value.as_bytes());
        match &mut out {
            None => out = Some(v),
            Some(s) => {
                s.push_str(sep);
                s.push_str(&v);
            }
        }
    }
    out
}

/// "x-forwarded-for" -> "HTTP_X_FORWARDED_FOR".
fn cgi_header_key(name: &str) -> String {
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(
        name.chars()
            .map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }),
    );
    key
}

/// The request target's path, percent-decoded and read as latin-1, so "%C3%A5"
/// arrives as "Ã¥" and the app may re-encode it to bytes and decode as UTF-8, as
/// PEP 3333 intends. The one place a path is decoded: the router and the environ
/// both use what this returns.
pub fn request_path(uri: &Uri) -> String {
    latin1(percent_decode(uri.path().as_bytes()))
}

/// Whether `path` (decoded) lies under the mount prefix `mount`, on whole
/// segments: "/shop" holds "/shop" and "/shop/cart", never "/shopping".
pub fn is_under(path: &str, mount: &str) -> bool {
    mount.is_empty()
        || path
            .strip_prefix(mount)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// SCRIPT_NAME and PATH_INFO from the decoded path.
fn split_path(path: &str, mount: &str) -> (String, String) {
    if path == "*" {
        // "OPTIONS *": no resource path; PEP 3333 allows an empty PATH_INFO.
        return (mount.to_owned(), String::new());
    }
    if is_under(path, mount) {
        (mount.to_owned(), path[mount.len()..].to_owned())
    } else {
        // Not under the mount point: the app still sees it, with nothing stripped.
        (String::new(), path.to_owned())
    }
}

/// The environ packed for the `call` export (the format is in
/// wsgi_wasm_rules::packed, next to the Rust SDK's decoder).
pub fn pack(env: &Environ) -> String {
    wsgi_wasm_rules::packed::pack(env)
}

pub use wsgi_wasm_rules::packed::unpack;

/// The environ of a plain request with no headers from 127.0.0.1, for calling an
/// app in-process without a socket (runtime tests, benchmarks). Built by `build`,
/// so it has exactly the keys a served request has.
pub fn synthetic(method: &str, target: &str) -> Environ {
    let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
    let uri: Uri = target.parse().expect("a valid request target");
    let headers = HeaderMap::new();
    let path = request_path(&uri);
    let head = RequestHead {
        method: &method,
        uri: &uri,
        path: &path,
        version: Version::HTTP_11,
        headers: &headers,
    };
    let server = ServerInfo {
        server_name: "localhost".into(),
        server_port: 80,
    };
    let client = Client::peer(Some(SocketAddr::from(([127, 0, 0, 1], 40000))), false);
    build(&head, &server, &MountPoint::default(), &client)
}

/// Decodes %XX escapes; a '%' not followed by two hex digits is kept as it is,
/// as CPython's urllib.parse.unquote does.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(input).collect()
}

/// Bytes -> native string: each byte becomes the char with the same number.
pub fn latin1(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    struct Setup {
        server: ServerInfo,
        mount: MountPoint,
    }

    fn server() -> Setup {
        Setup {
            server: ServerInfo {
                server_name: "127.0.0.1".into(),
                server_port: 8000,
            },
            mount: MountPoint::default(),
        }
    }

    fn environ_for(uri: &str, headers: &[(&str, &[u8])], setup: &Setup) -> Environ {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let path = request_path(&uri);
        let head = RequestHead {
            method: &Method::GET,
            uri: &uri,
            path: &path,
            version: Version::HTTP_11,
            headers: &map,
        };
        build(
            &head,
            &setup.server,
            &setup.mount,
            &Client::peer(Some("10.1.2.3:5555".parse().unwrap()), false),
        )
    }

    fn get<'a>(env: &'a Environ, key: &str) -> Option<&'a str> {
        let mut found = env.iter().filter(|(k, _)| k == key);
        let first = found.next().map(|(_, v)| v.as_ref());
        assert!(found.next().is_none(), "{key} appears twice");
        first
    }

    #[test]
    fn base_keys_match_wsgiref() {
        let env = environ_for("/xyz?abc", &[], &server());
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            keys,
            [
                "REQUEST_METHOD",
                "SCRIPT_NAME",
                "PATH_INFO",
                "QUERY_STRING",
                "SERVER_NAME",
                "SERVER_PORT",
                "SERVER_PROTOCOL",
                "SERVER_SOFTWARE",
                "GATEWAY_INTERFACE",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "wsgi.url_scheme",
                "wsgi.multithread",
                "wsgi.multiprocess",
                "wsgi.run_once",
            ]
        );
        assert_eq!(get(&env, "PATH_INFO"), Some("/xyz"));
        assert_eq!(get(&env, "QUERY_STRING"), Some("abc"));
        assert_eq!(get(&env, "SCRIPT_NAME"), Some(""));
        assert_eq!(get(&env, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("8000"));
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.1.2.3"));
        assert_eq!(get(&env, "REMOTE_PORT"), Some("5555"));
        assert_eq!(get(&env, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
    }

    #[test]
    fn path_info_is_percent_decoded_latin1() {
        let env = environ_for("/a%E5/%C3%A5/x%2Fy/%zz", &[], &server());
        assert_eq!(get(&env, "PATH_INFO"), Some("/a\u{e5}/\u{c3}\u{a5}/x/y/%zz"));
    }

    #[test]
    fn query_string_stays_raw() {
        let env = environ_for("/p?a=%20b&c=d+e", &[], &server());
        assert_eq!(get(&env, "QUERY_STRING"), Some("a=%20b&c=d+e"));
        assert_eq!(get(&environ_for("/p", &[], &server()), "QUERY_STRING"), Some(""));
    }

    #[test]
    fn content_headers_lose_http_prefix() {
        let env = environ_for(
            "/",
            &[("content-type", b"text/plain"), ("content-length", b"5"), ("x-a", b"1")],
            &server(),
        );
        assert_eq!(get(&env, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&env, "CONTENT_LENGTH"), Some("5"));
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "HTTP_X_A"), Some("1"));
    }

    #[test]
    fn repeated_headers_join_with_comma_and_cookies_with_semicolon() {
        let env = environ_for(
            "/",
            &[
                ("accept", b"a"),
                ("accept", b"b"),
                ("cookie", b"x=1"),
                ("cookie", b"y=2"),
            ],
            &server(),
        );
        assert_eq!(get(&env, "HTTP_ACCEPT"), Some("a,b"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("x=1; y=2"));
    }

    #[test]
    fn underscored_header_names_are_dropped() {
        let env = environ_for("/", &[("x-auth_user", b"evil"), ("x-auth-user", b"good")], &server());
        assert_eq!(get(&env, "HTTP_X_AUTH_USER"), Some("good"));
    }

    #[test]
    fn header_values_are_byte_exact_latin1() {
        let env = environ_for("/", &[("x-v", b"a\x85b\xa0c")], &server());
        assert_eq!(get(&env, "HTTP_X_V"), Some("a\u{85}b\u{a0}c"));
    }

    #[test]
    fn script_name_is_stripped_from_path_info() {
        let mut s = server();
        s.mount.script_name = "/app".into();
        let env = environ_for("/app/page", &[], &s);
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/app"));
        assert_eq!(get(&env, "PATH_INFO"), Some("/page"));
        let env = environ_for("/application", &[], &s);
        assert_eq!(get(&env, "SCRIPT_NAME"), Some(""));
        assert_eq!(get(&env, "PATH_INFO"), Some("/application"));
    }

    #[test]
    fn packed_environ_unpacks_into_the_pairs() {
        let env = environ_for("/a%00b%FF?q", &[("x-v", b"\x85")], &server());
        let mut back = unpack(&pack(&env)).unwrap();
        let mut expected: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        back.sort();
        expected.sort();
        assert_eq!(back, expected);
        assert_eq!(get(&env, "PATH_INFO"), Some("/a\u{0}b\u{ff}"));
    }

    #[test]
    fn the_python_sdk_holds_the_same_tables() {
        use wsgi_wasm_rules::packed::{CONTEXT_SEPARATOR, FLAG_KEYS, WELL_KNOWN_KEYS};
        let sdk = include_str!("../../guest-sdk/python/wsgi_wasm/environ.py");
        for (code, key) in WELL_KNOWN_KEYS {
            let line = format!("    \"{code}\": \"{key}\",\n");
            assert!(sdk.contains(&line), "environ.py should map {line:?}");
        }
        // `    "A": "REQUEST_METHOD",`: one line per code in the SDK's table.
        let is_code_line = |l: &&str| l.len() > 9 && l.starts_with("    \"") && l[6..].starts_with("\": \"");
        let entries = sdk.lines().filter(is_code_line).count();
        assert_eq!(
            entries,
            WELL_KNOWN_KEYS.len(),
            "environ.py has codes the host does not send"
        );
        for key in FLAG_KEYS {
            assert!(sdk.contains(&format!("\"{key}\"")), "environ.py should set {key}");
        }
        // The SDK reads the main separator from the string's last character; the
        // context separator it must know.
        let context_separator = format!("\nCONTEXT_SEPARATOR = \"\\u{:04x}\"\n", CONTEXT_SEPARATOR as u32);
        assert!(
            sdk.contains(&context_separator),
            "environ.py should set {context_separator:?}"
        );
    }

    /// The string a Python assignment `NAME = (\n    "..."\n    "..."\n)` holds,
    /// with its `\xNN` escapes (the only ones the SDK's literals use) decoded.
    fn python_string_constant(source: &str, name: &str) -> String {
        let start = source
            .find(&format!("\n{name} = (\n"))
            .unwrap_or_else(|| panic!("{name} not found"));
        let body = &source[start..];
        let mut text = String::new();
        for line in body.lines().skip(2).take_while(|l| *l != ")") {
            let quoted = line.trim();
            let mut chars = quoted[1..quoted.len() - 1].chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    assert_eq!(chars.next(), Some('x'), "{name}: only \\xNN escapes are decoded");
                    let hex: String = chars.by_ref().take(2).collect();
                    text.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                } else {
                    text.push(c);
                }
            }
        }
        text
    }

    #[test]
    fn the_python_sdk_warm_up_requests_are_packed_as_the_host_packs() {
        let sdk = include_str!("../../guest-sdk/python/wsgi_wasm/warmup.py");
        for (name, query) in [("_PACKED_REQUEST", ""), ("_PACKED_ITERABLE_REQUEST", "q")] {
            let pairs = [
                ("REQUEST_METHOD", "GET"),
                ("SCRIPT_NAME", ""),
                ("PATH_INFO", "/"),
                ("QUERY_STRING", query),
                ("SERVER_NAME", "localhost"),
                ("SERVER_PORT", "80"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("SERVER_SOFTWARE", "wsgi-wasm"),
                ("GATEWAY_INTERFACE", "CGI/1.1"),
                ("REMOTE_ADDR", "127.0.0.1"),
                ("REMOTE_PORT", "40000"),
                ("wsgi.url_scheme", "http"),
                ("wsgi.multithread", "0"),
                ("wsgi.multiprocess", "1"),
                ("wsgi.run_once", "0"),
                ("HTTP_HOST", "localhost"),
                ("HTTP_USER_AGENT", "warm-up"),
                ("HTTP_ACCEPT", "*/*"),
                ("HTTP_X_WARM_UP", "1"),
            ];
            assert_eq!(
                python_string_constant(sdk, name),
                wsgi_wasm_rules::packed::pack(&pairs),
                "warmup.py's {name} is not what the host would send"
            );
        }
    }

    #[test]
    fn run_once_reflects_isolation() {
        let mut s = server();
        s.mount.run_once = true;
        assert_eq!(get(&environ_for("/", &[], &s), "wsgi.run_once"), Some("1"));
    }
}
