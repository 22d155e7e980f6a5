//! Requests that came through a reverse proxy (`--forwarded-allow-ips`): the one
//! place that reads X-Forwarded-For/-Proto/-Host and RFC 7239 `Forwarded`.
//!
//! Only a peer in the trusted list may say who the client was, which scheme it used
//! and which host it asked for; from anyone else those headers are only passed to
//! the app as HTTP_* values, never acted on, since any client can send them.
//!
//! What a trusted proxy says is applied to the request itself before anything else
//! looks at it: the Host header is replaced (and an absolute target or HTTP/2
//! :authority made origin-form), so `host::request_host` — the host the access
//! rules and a Host-based router see — and the app's HTTP_HOST are the forwarded one.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::{PathAndQuery, Uri};
use ipnet::IpNet;

use super::host;
use crate::wsgi::environ::Client;

/// Peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// Peers on Unix sockets, which have no address to list: `unix` in the list.
    unix: bool,
}

/// One `--forwarded-allow-ips` entry: an address, a network or `unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedPeer {
    Net(IpNet),
    Unix,
}

/// Parses one entry: `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` or `unix`.
impl std::str::FromStr for TrustedPeer {
    type Err = String;
    fn from_str(text: &str) -> Result<TrustedPeer, String> {
        parse_peer(text)
    }
}

pub fn parse_peer(text: &str) -> Result<TrustedPeer, String> {
    let text = text.trim();
    if text == "unix" {
        return Ok(TrustedPeer::Unix);
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(TrustedPeer::Net(net.trunc()));
    }
    text.parse::<IpAddr>()
        .map(|ip| TrustedPeer::Net(IpNet::from(ip)))
        .map_err(|_| format!("{text:?} is not an IP address, a CIDR network (10.0.0.0/8) or `unix`"))
}

impl TrustedProxies {
    pub fn new(peers: &[TrustedPeer]) -> TrustedProxies {
        let mut trusted = TrustedProxies::default();
        for peer in peers {
            match peer {
                TrustedPeer::Net(net) => trusted.nets.push(*net),
                TrustedPeer::Unix => trusted.unix = true,
            }
        }
        trusted
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    fn trusts_peer(&self, peer: &Client) -> bool {
        match peer.addr {
            Some(ip) => self.trusts_ip(ip),
            None => self.unix,
        }
    }

    /// Applies what a trusted peer forwarded to `parts` (Host, target) and returns
    /// the client the app should see. An untrusted peer's request is left as it is.
    pub fn apply(&self, peer: Client, parts: &mut Parts) -> Client {
        if !self.trusts_peer(&peer) {
            return peer;
        }
        let said = if parts.headers.contains_key(&FORWARDED) {
            self.read_forwarded(&parts.headers)
        } else {
            self.read_x_forwarded(&parts.headers)
        };
        let mut client = peer;
        if let Some(hop) = said.client {
            client.addr = Some(hop.ip().to_canonical());
            client.port = (hop.port() != 0).then_some(hop.port());
        }
        if let Some(https) = said.https {
            client.https = https;
        }
        if let Some(host) = said.host {
            parts.headers.insert(HOST, host);
            // The target's authority would win over Host: drop it, keeping the path.
            if parts.uri.authority().is_some() {
                let path = parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or(PathAndQuery::from_static("/"));
                parts.uri = Uri::from(path);
            }
        }
        client
    }

    /// RFC 7239: elements right to left, each added by the proxy that received the
    /// request from the element's `for`. The first element whose `for` is not a
    /// trusted proxy names the client, and its proto and host are what that client
    /// used; when every hop is trusted the leftmost element does.
    fn read_forwarded(&self, headers: &HeaderMap) -> Said {
        let mut elements = Vec::new();
        for value in headers.get_all(&FORWARDED) {
            let Ok(text) = value.to_str() else {
                return Said::default();
            };
            elements.extend(text.split(',').map(parse_element));
        }
        let mut said = Said::default();
        for element in elements.into_iter().rev() {
            let Some(element) = element else { break };
            let Some(hop) = element.for_ else { break };
            said = Said {
                client: Some(hop),
                https: element.https,
                host: element.host,
            };
            if !self.trusts_ip(hop.ip()) {
                break;
            }
        }
        said
    }

    /// X-Forwarded-For read right to left, skipping trusted proxies: the rightmost
    /// address that is not one is the client (the ones left of it were sent by the
    /// client and could be anything). -Proto and -Host are the last value, the one
    /// the proxy that connected to us set.
    fn read_x_forwarded(&self, headers: &HeaderMap) -> Said {
        let mut said = Said::default();
        for item in list_items(headers, &X_FORWARDED_FOR).into_iter().rev() {
            let Some(hop) = parse_node(&item) else { break };
            said.client = Some(hop);
            if !self.trusts_ip(hop.ip()) {
                break;
            }
        }
        said.https = list_items(headers, &X_FORWARDED_PROTO)
            .last()
            .and_then(|p| parse_proto(p));
        said.host = list_items(headers, &X_FORWARDED_HOST)
            .last()
            .and_then(|h| valid_host(h));
        said
    }
}

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxies said; None where they said nothing usable.
#[derive(Debug, Default)]
struct Said {
    client: Option<SocketAddr>,
    https: Option<bool>,
    host: Option<HeaderValue>,
}

struct Element {
    for_: Option<SocketAddr>,
    https: Option<bool>,
    host: Option<HeaderValue>,
}

/// `for=192.0.2.60;proto=https;host=example.com` (RFC 7239 section 4). None when
/// the element is malformed, which ends the walk: nothing left of it can be placed.
fn parse_element(text: &str) -> Option<Element> {
    let mut element = Element {
        for_: None,
        https: None,
        host: None,
    };
    for pair in text.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        match name.trim().to_ascii_lowercase().as_str() {
            // "unknown" and obfuscated `_names` cannot become a REMOTE_ADDR.
            "for" => element.for_ = Some(parse_node(value)?),
            "proto" => element.https = parse_proto(value),
            "host" => element.host = valid_host(value),
            _ => {}
        }
    }
    Some(element)
}

/// `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:4711`; port 0
/// stands for "no port".
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let inside = text.strip_prefix('[')?.strip_suffix(']')?;
    inside.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

fn parse_proto(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    }
}

/// A forwarded host is used only when it would pass as a Host header.
fn valid_host(text: &str) -> Option<HeaderValue> {
    let value = HeaderValue::from_str(text.trim()).ok()?;
    host::is_valid_host_value(&value).then_some(value)
}

fn list_items(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&list.iter().map(|t| parse_peer(t).unwrap()).collect::<Vec<_>>())
    }

    fn apply(proxies: &TrustedProxies, peer: &str, headers: &[(&str, &str)]) -> (Client, Parts) {
        let mut request = Request::builder().uri("/p?q=1").header("host", "backend:8000");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let peer = Client::peer(Some(peer.parse().unwrap()), false);
        (proxies.apply(peer, &mut parts), parts)
    }

    fn addr(client: &Client) -> String {
        client.addr.unwrap().to_string()
    }

    #[test]
    fn entries_parse_as_addresses_networks_or_unix() {
        assert_eq!(parse_peer("unix"), Ok(TrustedPeer::Unix));
        assert_eq!(
            parse_peer("10.1.2.3"),
            Ok(TrustedPeer::Net("10.1.2.3/32".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("10.1.2.3/8"),
            Ok(TrustedPeer::Net("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(parse_peer("::1"), Ok(TrustedPeer::Net("::1/128".parse().unwrap())));
        assert!(parse_peer("10.0.0.0/33").is_err());
        assert!(parse_peer("example.com").is_err());
        assert!(parse_peer("*").is_err());
    }

    #[test]
    fn an_untrusted_peer_is_not_believed() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let headers = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ];
        let (client, parts) = apply(&proxies, "192.0.2.9:5000", &headers);
        assert_eq!(client, Client::peer(Some("192.0.2.9:5000".parse().unwrap()), false));
        assert_eq!(parts.headers[HOST], "backend:8000");
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_hop() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")];
        let (client, _) = apply(&proxies, "10.0.0.1:5000", &xff);
        assert_eq!(addr(&client), "203.0.113.7");
        assert_eq!(client.port, None);
        // All trusted: the leftmost one is the client.
        let (client, _) = apply(&proxies, "10.0.0.1:5000", &[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(addr(&client), "10.9.9.9");
        // Garbage stops the walk at the last hop that could be read.
        let (client, _) = apply(&proxies, "10.0.0.1:5000", &[("x-forwarded-for", "junk, 10.0.0.2")]);
        assert_eq!(addr(&client), "10.0.0.2");
    }

    #[test]
    fn x_forwarded_proto_and_host_apply_when_valid() {
        let proxies = trusted(&["127.0.0.1"]);
        let headers = [("x-forwarded-proto", "https"), ("x-forwarded-host", "Shop.example:443")];
        let (client, parts) = apply(&proxies, "127.0.0.1:5000", &headers);
        assert!(client.https);
        assert_eq!(parts.headers[HOST], "Shop.example:443");
        assert_eq!(host::request_host(&parts), Ok(Some("shop.example".into())));
        let headers = [("x-forwarded-proto", "gopher"), ("x-forwarded-host", "a b")];
        let (client, parts) = apply(&proxies, "127.0.0.1:5000", &headers);
        assert!(!client.https);
        assert_eq!(parts.headers[HOST], "backend:8000");
    }

    #[test]
    fn forwarded_elements_are_walked_together() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let header = [(
            "forwarded",
            r#"for=6.6.6.6;proto=http, for="[2001:db8::1]:4711";proto=https;host=site.example, for=10.0.0.5"#,
        )];
        let (client, parts) = apply(&proxies, "10.0.0.1:5000", &header);
        assert_eq!(addr(&client), "2001:db8::1");
        assert_eq!(client.port, Some(4711));
        assert!(client.https);
        assert_eq!(parts.headers[HOST], "site.example");
        // Forwarded wins over X-Forwarded-*.
        let both = [("forwarded", "for=192.0.2.1"), ("x-forwarded-for", "192.0.2.2")];
        let (client, _) = apply(&proxies, "10.0.0.1:5000", &both);
        assert_eq!(addr(&client), "192.0.2.1");
        let (client, _) = apply(&proxies, "10.0.0.1:5000", &[("forwarded", "for=unknown")]);
        assert_eq!(addr(&client), "10.0.0.1");
    }
}
