//! What an operator grants a sandbox: nothing unless listed here. Each grant is
//! parsed from its option text in one place (flags and `APP.wasm,key=value` use the
//! same parsers), and checked against the host (directories exist, names resolve)
//! when the app is loaded, before the server binds its port.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

/// Everything one app may use beyond computing: environment variables, host
/// directories, outbound TCP destinations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Environment variables the guest sees (os.environ), and only these.
    pub env: Vec<(String, String)>,
    /// Host directories visible in the guest.
    pub dirs: Vec<DirGrant>,
    /// TCP destinations the guest may connect to.
    pub connect: Vec<ConnectGrant>,
    /// HTTP(S) origins the guest may call (`--allow-http`).
    pub http: Vec<HttpOrigin>,
    /// Extra roots (`--ca-file`) trusted for https origins, beyond the system's.
    pub ca_file: Option<PathBuf>,
}

impl Grants {
    /// Every TCP destination the guest may connect to: `--allow-connect`, plus the
    /// host and port of each `--allow-http` origin (an https one too: the guest's
    /// HTTP client opens the TCP connection before asking the host for TLS).
    pub fn tcp_destinations(&self) -> Vec<ConnectGrant> {
        let mut all = self.connect.clone();
        all.extend(self.http.iter().map(HttpOrigin::destination));
        all
    }
}

/// `--dir HOST[:GUEST][:ro|rw]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DirGrant {
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub guest: String,
    /// Read-write; read-only (the default) otherwise.
    pub writable: bool,
}

/// `--allow-connect HOST:PORT`: HOST is an IP address or a name the host resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectGrant {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ConnectGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for DirGrant {
    type Err = String;
    fn from_str(text: &str) -> Result<DirGrant, String> {
        parse_dir(text)
    }
}

impl std::str::FromStr for ConnectGrant {
    type Err = String;
    fn from_str(text: &str) -> Result<ConnectGrant, String> {
        parse_connect(text)
    }
}

/// `--allow-http SCHEME://HOST[:PORT]`: an origin the guest may call over HTTP
/// (plain TCP through the sandbox) or HTTPS (TLS done by the host).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOrigin {
    pub https: bool,
    /// Lowercase name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl HttpOrigin {
    pub fn destination(&self) -> ConnectGrant {
        ConnectGrant {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

impl std::fmt::Display for HttpOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.destination())
    }
}

/// `http://HOST[:PORT]` or `https://HOST[:PORT]` (port 80/443 by default), and
/// nothing more: a path, query, user or other scheme would suggest a finer grant
/// than the one given, which is the whole origin.
pub fn parse_http_origin(text: &str) -> Result<HttpOrigin, String> {
    let usage = || {
        format!(
            "{text:?} should be an origin, http://HOST[:PORT] or https://HOST[:PORT] (e.g. https://api.example.com)"
        )
    };
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(usage());
    };
    // A trailing slash is how origins are often written; anything after it is not.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(usage());
    }
    let default_port = if https { 443 } else { 80 };
    let with_port = if rest.ends_with(']') || !rest.contains(':') {
        format!("{rest}:{default_port}")
    } else {
        rest.to_owned()
    };
    let ConnectGrant { host, port } = parse_connect(&with_port).map_err(|_| usage())?;
    Ok(HttpOrigin { https, host, port })
}

impl std::str::FromStr for HttpOrigin {
    type Err = String;
    fn from_str(text: &str) -> Result<HttpOrigin, String> {
        parse_http_origin(text)
    }
}

/// `KEY=VALUE`.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} should be KEY=VALUE")),
    }
}

/// `HOST[:GUEST][:ro|rw]`: GUEST defaults to HOST, access to read-only. Checked
/// against the filesystem here, so a typo fails at start, not at the first request.
pub fn parse_dir(text: &str) -> Result<DirGrant, String> {
    let (rest, writable) = match text.rsplit_once(':') {
        Some((rest, "rw")) => (rest, true),
        Some((rest, "ro")) => (rest, false),
        _ => (text, false),
    };
    let (host, guest) = rest.split_once(':').unwrap_or((rest, rest));
    if let Some((_, access)) = guest.rsplit_once(':') {
        // `data:/data:RW` must not grant a directory named "/data:RW", read-only.
        return Err(format!("{text:?}: the access {access:?} should be ro or rw"));
    }
    if host.is_empty() || !guest.starts_with('/') {
        return Err(format!(
            "{text:?} should be HOST[:GUEST][:ro|rw] with an absolute GUEST path (e.g. data:/data:rw)"
        ));
    }
    let host = PathBuf::from(host);
    let meta = match std::fs::metadata(&host) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => {
            return Err(format!(
                "{}: not a directory (grant the directory that holds it)",
                host.display()
            ));
        }
        Err(e) => return Err(format!("{}: {e} (create it first)", host.display())),
    };
    if writable && meta.permissions().readonly() {
        return Err(format!(
            "{}: granted rw but the directory is read-only on the host",
            host.display()
        ));
    }
    Ok(DirGrant {
        host,
        guest: guest.to_owned(),
        writable,
    })
}

/// `HOST:PORT` (`[v6]:PORT` for IPv6). The name is resolved later, by
/// [`NetworkPolicy::resolve`], so parsing stays pure.
pub fn parse_connect(text: &str) -> Result<ConnectGrant, String> {
    let usage = || format!("{text:?} should be HOST:PORT (e.g. 127.0.0.1:5432, [::1]:5432 or db.internal:5432)");
    let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
    // IPv6 only in brackets: in `::1:80` the port could be part of the address.
    let (host, bracketed) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => (inner, true),
        None => (host, false),
    };
    // `db.internal.` (fully qualified) is the name `db.internal`: the sandbox's
    // lookups drop the dot too.
    let host = if bracketed {
        host
    } else {
        host.strip_suffix('.').unwrap_or(host)
    };
    let valid = if bracketed {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty() && !host.contains([':', '/', ' ', ',', '[', ']'])
    };
    if !valid {
        return Err(usage());
    }
    let port = match port.parse::<u32>() {
        Ok(port @ 1..=65535) => port as u16,
        Ok(_) => return Err(format!("{text:?}: port must be 1-65535")),
        Err(_) => return Err(usage()),
    };
    Ok(ConnectGrant {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// The resolved form of an app's connect grants, shared by its instances: which
/// socket addresses it may connect to, and the names it may look up.
#[derive(Debug, Default)]
pub struct NetworkPolicy {
    /// Destinations a connect may reach.
    allowed: HashSet<SocketAddr>,
    /// Granted names and the one address each resolves to in the sandbox.
    names: HashMap<String, IpAddr>,
}

impl NetworkPolicy {
    /// Resolves granted names once, at start: a name that does not resolve is a
    /// configuration error. A name stands for the address it resolved to then
    /// (IPv4 preferred, as most database servers listen on it), so what an app may
    /// reach cannot change behind the operator's back while it runs.
    pub fn resolve(grants: &[ConnectGrant]) -> Result<Arc<NetworkPolicy>, String> {
        let mut policy = NetworkPolicy::default();
        for grant in grants {
            let ip = match grant.host.parse::<IpAddr>() {
                Ok(ip) => ip,
                // One name, one address, whatever ports it is granted with: a second
                // lookup could pick another address (round-robin DNS), and the
                // sandbox's own lookup gives the name one address.
                Err(_) if policy.names.contains_key(&grant.host) => policy.names[&grant.host],
                Err(_) => {
                    let addrs: Vec<SocketAddr> = (grant.host.as_str(), grant.port)
                        .to_socket_addrs()
                        .map_err(|e| format!("--allow-connect {grant}: the name does not resolve ({e})"))?
                        .collect();
                    let ip = addrs
                        .iter()
                        .find(|a| a.is_ipv4())
                        .or(addrs.first())
                        .ok_or_else(|| format!("--allow-connect {grant}: the name resolves to no address"))?
                        .ip();
                    policy.names.insert(grant.host.clone(), ip);
                    ip
                }
            };
            policy.allowed.insert(SocketAddr::new(ip, grant.port));
        }
        Ok(Arc::new(policy))
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    pub fn may_connect(&self, addr: SocketAddr) -> bool {
        self.allowed
            .contains(&SocketAddr::new(addr.ip().to_canonical(), addr.port()))
    }

    /// The address a name looks up to in the sandbox: IP literals stand for
    /// themselves (no lookup happens), granted names for their address, and any
    /// other name for nothing.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name);
        literal.parse().ok().or_else(|| self.names.get(&name).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_default_to_read_only_and_take_rw() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let plain = parse_dir(host).unwrap();
        assert_eq!((plain.guest.as_str(), plain.writable), (host, false));
        let ro = parse_dir(&format!("{host}:/data")).unwrap();
        assert_eq!((ro.guest.as_str(), ro.writable), ("/data", false));
        let rw = parse_dir(&format!("{host}:/data:rw")).unwrap();
        assert_eq!((rw.guest.as_str(), rw.writable), ("/data", true));
        assert!(!parse_dir(&format!("{host}:/data:ro")).unwrap().writable);
    }

    #[test]
    fn bad_dir_grants_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite3");
        std::fs::write(&file, "").unwrap();
        let err = parse_dir(&format!("{}:/data:rw", file.display())).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let err = parse_dir("/no/such/dir:/data:rw").unwrap_err();
        assert!(err.contains("create it first"), "{err}");
        let err = parse_dir(&format!("{}:data", dir.path().display())).unwrap_err();
        assert!(err.contains("absolute GUEST path"), "{err}");
        let err = parse_dir(&format!("{}:/data:RW", dir.path().display())).unwrap_err();
        assert!(err.ends_with(r#": the access "RW" should be ro or rw"#), "{err}");
        assert!(parse_dir(&format!("{}:/data:rw:rw", dir.path().display())).is_err());
    }

    #[test]
    fn connect_grants_parse_hosts_and_ports() {
        assert_eq!(
            parse_connect("127.0.0.1:5432").unwrap(),
            ConnectGrant {
                host: "127.0.0.1".into(),
                port: 5432
            }
        );
        assert_eq!(parse_connect("[::1]:6379").unwrap().host, "::1");
        assert_eq!(parse_connect("DB.Internal:5432").unwrap().host, "db.internal");
        assert!(parse_connect("127.0.0.1:0").unwrap_err().contains("1-65535"));
        assert!(parse_connect("127.0.0.1:70000").unwrap_err().contains("1-65535"));
        assert!(parse_connect("127.0.0.1").unwrap_err().contains("HOST:PORT"));
        assert!(parse_connect(":80").unwrap_err().contains("HOST:PORT"));
        assert!(parse_connect("::1:80").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn http_origins_parse_scheme_host_and_port() {
        let origin = parse_http_origin("https://API.example.com").unwrap();
        assert_eq!(
            (origin.https, origin.host.as_str(), origin.port),
            (true, "api.example.com", 443)
        );
        assert_eq!(origin.to_string(), "https://api.example.com:443");
        assert_eq!(parse_http_origin("http://127.0.0.1:9000/").unwrap().port, 9000);
        assert_eq!(parse_http_origin("http://localhost").unwrap().port, 80);
        let v6 = parse_http_origin("https://[::1]:8443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert_eq!(parse_http_origin("https://[::1]").unwrap().port, 443);
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/v1",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:http",
            "https://example.com?x=1",
        ] {
            let err = parse_http_origin(bad).unwrap_err();
            assert!(err.contains("should be an origin"), "{bad}: {err}");
        }
    }

    #[test]
    fn policy_allows_exactly_the_granted_destinations() {
        let grants = [
            parse_connect("127.0.0.1:5432").unwrap(),
            parse_connect("localhost:6379").unwrap(),
        ];
        let policy = NetworkPolicy::resolve(&grants).unwrap();
        assert!(policy.may_connect("127.0.0.1:5432".parse().unwrap()));
        assert!(
            policy.may_connect("127.0.0.1:6379".parse().unwrap()),
            "localhost resolved to IPv4"
        );
        assert!(!policy.may_connect("127.0.0.1:5433".parse().unwrap()), "other port");
        assert!(!policy.may_connect("127.0.0.2:5432".parse().unwrap()), "other host");
        assert_eq!(policy.lookup("localhost"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(policy.lookup("LOCALHOST."), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            policy.lookup("10.1.2.3"),
            Some("10.1.2.3".parse().unwrap()),
            "literals need no lookup"
        );
        assert_eq!(policy.lookup("example.com"), None, "ungranted names do not resolve");
    }

    #[test]
    fn a_fully_qualified_name_is_granted_as_the_name() {
        let grants = [
            parse_connect("LocalHost.:5432").unwrap(),
            parse_connect("localhost:6379").unwrap(),
        ];
        assert_eq!(grants[0].host, "localhost");
        let policy = NetworkPolicy::resolve(&grants).unwrap();
        let ip = policy.lookup("localhost.").unwrap();
        assert!(policy.may_connect(SocketAddr::new(ip, 5432)));
        assert!(policy.may_connect(SocketAddr::new(ip, 6379)));
        assert!(parse_connect(".:80").is_err());
    }

    #[test]
    fn names_that_do_not_resolve_fail_at_start() {
        let err = NetworkPolicy::resolve(&[parse_connect("no-such-host.invalid:80").unwrap()]).unwrap_err();
        assert!(
            err.contains("--allow-connect no-such-host.invalid:80: the name does not resolve"),
            "{err}"
        );
    }
}
