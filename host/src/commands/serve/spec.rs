//! The APP arguments of `serve`: `[PREFIX=]FILE[,KEY=VALUE...]`.
//!
//! `app.wasm` mounts one app at the root; `/shop=shop.wasm /blog=blog.wasm` serves
//! two apps in one process, each under its prefix (its SCRIPT_NAME). Options after
//! the file override the command-line defaults for that app only:
//! `/blog=blog.wasm,isolation=request,instances=2,max-memory=64MiB`. Grants given
//! this way add to the command line's for that app only:
//! `/blog=blog.wasm,dir=blog-data:/data:rw,allow-connect=127.0.0.1:5432,env=MODE=prod`.

use std::path::PathBuf;

use super::options::AppOptions;
use crate::commands::serve::parse_script_name;

#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// "" for the root.
    pub prefix: Option<String>,
    pub file: PathBuf,
    /// What the `,key=value` list sets for this app only.
    pub options: AppOptions,
}

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
    let mut pairs = Vec::new();
    for option in parts {
        let (key, value) = option.split_once('=').ok_or_else(|| {
            format!(
                "{text:?}: {option:?} should be KEY=VALUE (keys: {})",
                AppOptions::keys().join(", ")
            )
        })?;
        pairs.push((key.to_owned(), value.to_owned()));
    }
    let options = AppOptions::from_pairs(&pairs).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(AppSpec {
        prefix,
        file: PathBuf::from(file),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgi_wasm::runtime::Isolation;

    #[test]
    fn bare_file_mounts_at_the_default_prefix() {
        let spec = parse("app.wasm").unwrap();
        assert_eq!(
            spec,
            AppSpec {
                prefix: None,
                file: "app.wasm".into(),
                options: AppOptions::default(),
            }
        );
    }

    #[test]
    fn prefix_and_options() {
        let spec = parse("/blog/=blog.wasm,isolation=request,max-memory=64MiB").unwrap();
        assert_eq!(spec.prefix.as_deref(), Some("/blog"));
        assert_eq!(spec.file, PathBuf::from("blog.wasm"));
        assert_eq!(spec.options.isolation, Some(Isolation::Request));
        assert_eq!(spec.options.max_memory, Some(64 << 20));
    }

    #[test]
    fn per_app_grants() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse(&format!(
            "/blog=blog.wasm,env=MODE=a=b,dir={}:/data:rw,allow-connect=127.0.0.1:5432",
            dir.path().display()
        ))
        .unwrap();
        assert_eq!(spec.options.env, [("MODE".to_owned(), "a=b".to_owned())]);
        assert!(spec.options.dirs[0].writable);
        assert_eq!(spec.options.allow_connect[0].port, 5432);
        let err = parse("a.wasm,allow-connect=127.0.0.1:99999").unwrap_err();
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
