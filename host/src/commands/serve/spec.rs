//! The APP arguments of `serve`: `[PREFIX=]FILE[,KEY=VALUE...]`.
//!
//! `app.wasm` mounts one app at the root; `/shop=shop.wasm /blog=blog.wasm` serves
//! two apps in one process, each under its prefix (its SCRIPT_NAME). Options after
//! the file override the command-line defaults for that app only:
//! `/blog=blog.wasm,isolation=request,instances=2,max-memory=64MiB`. Grants given
//! this way add to the command line's for that app only:
//! `/blog=blog.wasm,dir=blog-data:/data:rw,allow-connect=127.0.0.1:5432,env=MODE=prod`.

use std::path::PathBuf;

use crate::commands::serve::parse_script_name;
use wsgi_wasm::runtime::grants;
use wsgi_wasm::runtime::{AppConfig, Isolation};
use wsgi_wasm::units::{parse_duration, parse_size};

#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// "" for the root.
    pub prefix: Option<String>,
    pub file: PathBuf,
    pub overrides: Vec<(String, String)>,
}

/// Keys an app spec may set, each mirroring the `serve` option of the same name.
pub const KEYS: &[&str] = &[
    "isolation",
    "instances",
    "queue",
    "max-memory",
    "cpu-timeout",
    "max-requests",
    "env",
    "dir",
    "allow-connect",
    "allow-http",
];

pub fn parse(text: &str) -> Result<AppSpec, String> {
    let mut parts = text.split(',');
    let target = parts.next().unwrap_or_default();
    let (prefix, file) = match target.split_once('=') {
        Some((prefix, file)) if prefix.starts_with('/') => (Some(parse_script_name(prefix)?), file),
        _ => (None, target),
    };
    if file.is_empty() {
        return Err(format!("{text:?}: no component file given"));
    }
    let mut overrides = Vec::new();
    for option in parts {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: {option:?} should be KEY=VALUE (keys: {})", KEYS.join(", ")))?;
        if !KEYS.contains(&key) {
            return Err(format!("{text:?}: unknown option {key:?} (keys: {})", KEYS.join(", ")));
        }
        overrides.push((key.to_owned(), value.to_owned()));
    }
    Ok(AppSpec {
        prefix,
        file: PathBuf::from(file),
        overrides,
    })
}

impl AppSpec {
    /// The command line's config with this app's overrides applied.
    pub fn config(&self, defaults: &AppConfig) -> Result<AppConfig, String> {
        let mut config = defaults.clone();
        for (key, value) in &self.overrides {
            let bad = |e: String| format!("{}: {key}={value}: {e}", self.file.display());
            let number = |v: &str| v.parse::<u64>().map_err(|e| bad(e.to_string()));
            match key.as_str() {
                "isolation" => {
                    config.isolation = <Isolation as clap::ValueEnum>::from_str(value, true).map_err(bad)?;
                }
                "instances" => config.max_instances = number(value)?.max(1) as usize,
                "queue" => config.max_queue = number(value)? as usize,
                "max-memory" => config.max_memory = parse_size(value).map_err(bad)? as usize,
                "cpu-timeout" => config.cpu_timeout = parse_duration(value).map_err(bad)?,
                "max-requests" => config.max_requests_per_instance = number(value)?.max(1),
                "env" => config.grants.env.push(grants::parse_env(value).map_err(bad)?),
                "dir" => config.grants.dirs.push(grants::parse_dir(value).map_err(bad)?),
                "allow-connect" => config.grants.connect.push(grants::parse_connect(value).map_err(bad)?),
                "allow-http" => config.grants.http.push(grants::parse_http_origin(value).map_err(bad)?),
                _ => unreachable!("keys are checked when parsing"),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bare_file_mounts_at_the_default_prefix() {
        let spec = parse("app.wasm").unwrap();
        assert_eq!(
            spec,
            AppSpec {
                prefix: None,
                file: "app.wasm".into(),
                overrides: vec![]
            }
        );
    }

    /// Command-line values that no override in these tests happens to equal.
    fn small_defaults() -> AppConfig {
        AppConfig {
            isolation: Isolation::Pooled,
            max_memory: 1,
            max_instances: 1,
            max_queue: 1,
            cpu_timeout: Duration::from_secs(1),
            max_requests_per_instance: 1,
            grants: Default::default(),
        }
    }

    #[test]
    fn prefix_and_overrides() {
        let spec = parse("/blog/=blog.wasm,isolation=request,max-memory=64MiB").unwrap();
        assert_eq!(spec.prefix.as_deref(), Some("/blog"));
        assert_eq!(spec.file, PathBuf::from("blog.wasm"));
        let defaults = small_defaults();
        let config = spec.config(&defaults).unwrap();
        assert_eq!(config.isolation, Isolation::Request);
        assert_eq!(config.max_memory, 64 << 20);
    }

    #[test]
    fn per_app_grants_add_to_the_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse(&format!(
            "/blog=blog.wasm,env=MODE=a=b,dir={}:/data:rw,allow-connect=127.0.0.1:5432",
            dir.path().display()
        ))
        .unwrap();
        let mut defaults = small_defaults();
        defaults.grants.env.push(("GLOBAL".into(), "1".into()));
        let config = spec.config(&defaults).unwrap();
        assert_eq!(
            config.grants.env,
            [
                ("GLOBAL".to_owned(), "1".to_owned()),
                ("MODE".to_owned(), "a=b".to_owned())
            ]
        );
        assert_eq!(config.grants.dirs.len(), 1);
        assert!(config.grants.dirs[0].writable);
        assert_eq!(config.grants.connect[0].port, 5432);
        let err = parse("a.wasm,allow-connect=127.0.0.1:99999")
            .unwrap()
            .config(&defaults)
            .unwrap_err();
        assert!(
            err.contains("allow-connect=127.0.0.1:99999") && err.contains("1-65535"),
            "{err}"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(parse("/x=").unwrap_err().contains("no component file"));
        assert!(
            parse("a.wasm,colour=blue")
                .unwrap_err()
                .contains("unknown option \"colour\"")
        );
        assert!(parse("a.wasm,isolation").unwrap_err().contains("KEY=VALUE"));
        assert!(
            parse("x/=a.wasm").is_ok_and(|s| s.prefix.is_none()),
            "a file path with '=' but no leading slash is a file"
        );
    }
}
