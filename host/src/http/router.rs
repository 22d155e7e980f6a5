//! Which app serves a request, from its host and path. Hosts first: an exact host
//! name, then the most specific wildcard (`*.example.com`), then the apps that
//! name no host. The host chosen, the longest matching path prefix among its apps
//! wins, and that prefix becomes the app's SCRIPT_NAME. A request is never passed
//! on to a less specific host's apps: a tenant only gets requests naming it (or,
//! for a hostless app, requests no tenant claimed).

use std::collections::HashMap;
use std::sync::Arc;

use crate::wsgi::Application;
use crate::wsgi::environ::{MountPoint, is_under};

/// The hosts an app answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Every host no other app names.
    Any,
    /// One host name, lower-case, without a port.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending so, at any depth
    /// (`a.example.com`, `a.b.example.com`), but not `example.com` itself.
    Wildcard(String),
}

impl HostPattern {
    /// A host as written in a config file: `shop.example.com`, `*.example.com`, or
    /// an IP address; no port (the router ignores the request's port).
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let bracketed = name.starts_with('[') && name.ends_with(']');
        let valid = !name.is_empty()
            && (bracketed && !wild && name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()
                || name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }));
        if !valid {
            let fix = if name.contains(':') && !bracketed {
                " (leave the port out: hosts match whatever port the request names)"
            } else {
                " (a host name such as shop.example.com, or *.example.com for its subdomains)"
            };
            return Err(format!("{text:?} is not a host name{fix}"));
        }
        Ok(if wild {
            HostPattern::Wildcard(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Any => write!(f, "any host"),
            HostPattern::Exact(name) => write!(f, "{name}"),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// One app at one place: what `route` returns.
pub struct Mount {
    pub app: Arc<dyn Application>,
    pub point: MountPoint,
}

/// A route to add: an app, the hosts it answers for and its path prefix.
pub struct Route {
    pub host: HostPattern,
    pub mount: Mount,
}

#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Vec<Mount>>,
    /// Longest suffix first, so the first match is the most specific.
    wildcards: Vec<(String, Vec<Mount>)>,
    hostless: Vec<Mount>,
}

impl Router {
    /// Fails when two apps claim the same host and prefix.
    pub fn new(routes: Vec<Route>) -> Result<Router, String> {
        let mut router = Router::default();
        for Route { host, mount } in routes {
            let group = match &host {
                HostPattern::Any => &mut router.hostless,
                HostPattern::Exact(name) => router.exact.entry(name.clone()).or_default(),
                HostPattern::Wildcard(suffix) => match router.wildcards.iter().position(|(s, _)| s == suffix) {
                    Some(i) => &mut router.wildcards[i].1,
                    None => {
                        router.wildcards.push((suffix.clone(), Vec::new()));
                        &mut router.wildcards.last_mut().unwrap().1
                    }
                },
            };
            if let Some(taken) = group.iter().find(|m| m.point.script_name == mount.point.script_name) {
                let prefix = &mount.point.script_name;
                return Err(format!(
                    "apps {} and {} both claim {host} at {:?}",
                    taken.app.name(),
                    mount.app.name(),
                    if prefix.is_empty() { "/" } else { prefix }
                ));
            }
            group.push(mount);
        }
        router
            .wildcards
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        let by_prefix = |group: &mut Vec<Mount>| group.sort_by_key(|m| std::cmp::Reverse(m.point.script_name.len()));
        router.exact.values_mut().for_each(by_prefix);
        router.wildcards.iter_mut().for_each(|(_, group)| by_prefix(group));
        by_prefix(&mut router.hostless);
        Ok(router)
    }

    /// The app for a request: `host` as `http::host::request_host` gives it (no
    /// port, lower-case; None for an HTTP/1.0 request without one), `path` as
    /// `wsgi::environ::request_path` decodes it. Prefixes match whole segments:
    /// "/shop" serves "/shop" and "/shop/cart", never "/shopping".
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Mount> {
        self.host_group(host.unwrap_or_default())
            .iter()
            .find(|m| is_under(path, &m.point.script_name))
    }

    fn host_group(&self, host: &str) -> &[Mount] {
        if let Some(group) = self.exact.get(host) {
            return group;
        }
        if let Some((_, group)) = self
            .wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
        {
            return group;
        }
        &self.hostless
    }

    /// Every mounted app, once per mount.
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.exact
            .values()
            .flatten()
            .chain(self.wildcards.iter().flat_map(|(_, group)| group))
            .chain(&self.hostless)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("Shop.Example.com").unwrap(),
            HostPattern::Exact("shop.example.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.example.com").unwrap(),
            HostPattern::Wildcard(".example.com".into())
        );
        assert!(HostPattern::parse("[::1]").is_ok());
        assert!(
            HostPattern::parse("shop.example.com:8080")
                .unwrap_err()
                .contains("leave the port out")
        );
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("sh op").is_err());
    }
}
