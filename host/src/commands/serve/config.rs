//! `serve --config hosting.toml`: the server's options and its apps in one file.
//!
//! ```toml
//! listen = "0.0.0.0:8000"            # any server option, named as its flag
//! max-memory = "128MiB"              # app options here are every app's defaults
//!
//! [apps.shop]
//! component = "shop.wasm"            # relative to this file
//! hosts = ["shop.example.com", "*.shop.example.com"]   # optional: any host
//! prefix = "/"                       # optional
//! isolation = "pooled"               # any app option, as `serve --help` lists them
//! env = { STRIPE_KEY = "sk_test" }
//! dirs = ["data:/data:rw"]
//! ```
//!
//! Every value is parsed by the same code as the flag of the same name, and every
//! mistake is reported with the file, the line and what to do about it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::options::{AppOptions, ServerOptions};
use wsgi_wasm::http::router::HostPattern;

/// One app of the file.
#[derive(Debug, Clone)]
pub struct AppEntry {
    /// The table's name (`[apps.shop]`): the app's name in the log.
    pub name: String,
    pub component: PathBuf,
    /// Empty: the app answers for hosts no other app names.
    pub hosts: Vec<HostPattern>,
    /// The path prefix, "" for the root.
    pub prefix: String,
    pub options: AppOptions,
    /// Where the table starts, for messages about it found later (a component
    /// that fails to load, a route another app already has).
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct HostingConfig {
    pub server: ServerOptions,
    /// The app options given at the top level: defaults for every app.
    pub defaults: AppOptions,
    pub apps: Vec<AppEntry>,
}

/// Keys of an app table that are not app options.
const ROUTE_KEYS: &[&str] = &["component", "hosts", "prefix"];

pub fn load(path: &Path) -> Result<HostingConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<HostingConfig, String> {
    let file = path.display();
    let base = path.parent().unwrap_or(Path::new("."));
    let at = |span: std::ops::Range<usize>| format!("{file}:{}", line_of(text, span.start));
    // toml's own message names the line and column of a syntax error.
    let top: BTreeMap<String, Spanned<Value>> =
        toml::from_str(text).map_err(|e| format!("{file}: {}", e.to_string().trim_end()))?;

    let server_keys = field_names::<ServerOptions>();
    let app_keys = field_names::<AppOptions>();
    let mut server = toml::Table::new();
    let mut defaults = toml::Table::new();
    for (key, value) in &top {
        if key == "apps" {
            continue;
        }
        let mut value = value.get_ref().clone();
        relative_to(base, key, &mut value);
        let target = if server_keys.contains(&key.as_str()) {
            check::<ServerOptions>(key, &value).map_err(|e| format!("{}: {key}: {e}", at(top[key].span())))?;
            &mut server
        } else if app_keys.contains(&key.as_str()) {
            check::<AppOptions>(key, &value).map_err(|e| format!("{}: {key}: {e}", at(top[key].span())))?;
            &mut defaults
        } else {
            return Err(format!(
                "{}: unknown key {key:?}; server options: {}; app options: {}; apps go in [apps.NAME] tables",
                at(top[key].span()),
                server_keys.join(", "),
                app_keys.join(", ")
            ));
        };
        target.insert(key.clone(), value);
    }
    let server: ServerOptions = Value::Table(server).try_into().map_err(|e| format!("{file}: {e}"))?;
    let defaults: AppOptions = Value::Table(defaults).try_into().map_err(|e| format!("{file}: {e}"))?;

    #[derive(Deserialize)]
    struct AppsOnly {
        #[serde(default)]
        apps: BTreeMap<String, Spanned<BTreeMap<String, Spanned<Value>>>>,
    }
    let apps_only: AppsOnly = toml::from_str(text).map_err(|e| {
        let where_ = top
            .get("apps")
            .map(|v| at(v.span()))
            .unwrap_or_else(|| file.to_string());
        format!("{where_}: apps: each app is a table, [apps.NAME] with at least component = \"APP.wasm\" ({e})")
    })?;
    let mut apps = Vec::new();
    for (name, table) in apps_only.apps {
        let location = at(table.span());
        let table = table.into_inner();
        let key_at = |key: &str| at(table[key].span());
        let string = |key: &str| -> Result<Option<String>, String> {
            match table.get(key).map(|v| v.get_ref()) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!(
                    "{}: apps.{name}.{key}: expected a string, found {}",
                    key_at(key),
                    other.type_str()
                )),
            }
        };
        let component = string("component")?.ok_or_else(|| {
            format!("{location}: apps.{name} has no component; add component = \"APP.wasm\" (relative to this file)")
        })?;
        let prefix = super::parse_script_name(&string("prefix")?.unwrap_or_default())
            .map_err(|e| format!("{}: apps.{name}.prefix: {e}", key_at("prefix")))?;
        let hosts = match table.get("hosts").map(|v| v.get_ref()) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => HostPattern::parse(s),
                    other => Err(format!("expected host names as strings, found {}", other.type_str())),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: apps.{name}.hosts: {e}", key_at("hosts")))?,
            Some(other) => {
                return Err(format!(
                    "{}: apps.{name}.hosts: expected a list such as [\"shop.example.com\"], found {}",
                    key_at("hosts"),
                    other.type_str()
                ));
            }
        };
        let mut options = toml::Table::new();
        for (key, value) in &table {
            if ROUTE_KEYS.contains(&key.as_str()) {
                continue;
            }
            if !app_keys.contains(&key.as_str()) {
                return Err(format!(
                    "{}: apps.{name}: unknown key {key:?}; app keys: {}, {}",
                    key_at(key),
                    ROUTE_KEYS.join(", "),
                    app_keys.join(", ")
                ));
            }
            let mut value = value.get_ref().clone();
            relative_to(base, key, &mut value);
            check::<AppOptions>(key, &value).map_err(|e| format!("{}: apps.{name}.{key}: {e}", key_at(key)))?;
            options.insert(key.clone(), value);
        }
        let options: AppOptions = Value::Table(options)
            .try_into()
            .map_err(|e| format!("{location}: {e}"))?;
        apps.push(AppEntry {
            component: base.join(component),
            name,
            hosts,
            prefix,
            options,
            location,
        });
    }
    if apps.is_empty() {
        return Err(format!(
            "{file}: no apps; add one as\n\n[apps.NAME]\ncomponent = \"APP.wasm\"\n"
        ));
    }
    Ok(HostingConfig { server, defaults, apps })
}

/// Parses one key alone, so that a bad value is reported at its own line.
fn check<T: for<'de> Deserialize<'de>>(key: &str, value: &Value) -> Result<(), String> {
    let mut one = toml::Table::new();
    one.insert(key.to_owned(), value.clone());
    Value::Table(one)
        .try_into::<T>()
        .map(drop)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
}

/// Paths in a config file are relative to the file, not to wherever the server
/// was started from: the host side of `dirs` entries, `static` directories,
/// `cache-dir`, `ca-file` and `record`.
fn relative_to(base: &Path, key: &str, value: &mut Value) {
    let absolute = |path: &str| -> String {
        if Path::new(path).is_absolute() {
            path.to_owned()
        } else {
            base.join(path).display().to_string()
        }
    };
    match (key, value) {
        ("dirs" | "dir", Value::Array(items)) => {
            for item in items {
                if let Value::String(text) = item
                    && let Some((host, rest)) = text.split_once(':')
                {
                    *text = format!("{}:{rest}", absolute(host));
                }
            }
        }
        ("static", Value::Table(mounts)) => {
            for (_, dir) in mounts.iter_mut() {
                if let Value::String(dir) = dir {
                    *dir = absolute(dir);
                }
            }
        }
        ("cache-dir" | "ca-file" | "tls-cert" | "tls-key" | "record", Value::String(path)) => *path = absolute(path),
        _ => {}
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The keys a struct accepts, as serde sees them (renamed, with aliases).
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{Deserializer, Error, Visitor};

    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("only structs"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("fields taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<HostingConfig, String> {
        parse(text, Path::new("/etc/wsgi/hosting.toml"))
    }

    #[test]
    fn apps_with_hosts_prefixes_and_defaults() {
        let config = parse_text(
            r#"
listen = ["127.0.0.1:0"]
max-body-size = "1MiB"
keep-resident = "8MiB"
isolation = "request"

[apps.shop]
component = "shop.wasm"
hosts = ["shop.example.com", "*.shop.example.com"]
instances = 4
env = { STRIPE_KEY = "sk_test" }

[apps.blog]
component = "/srv/blog.wasm"
prefix = "/blog/"
"#,
        )
        .unwrap();
        assert_eq!(config.server.listen, ["127.0.0.1:0"]);
        assert_eq!(config.server.max_body_size, Some(1 << 20));
        assert_eq!(config.server.keep_resident, Some(8 << 20));
        assert_eq!(config.defaults.isolation, Some(wsgi_wasm::runtime::Isolation::Request));
        let blog = &config.apps[0];
        assert_eq!((blog.name.as_str(), blog.prefix.as_str()), ("blog", "/blog"));
        assert_eq!(blog.component, PathBuf::from("/srv/blog.wasm"));
        assert!(blog.hosts.is_empty());
        let shop = &config.apps[1];
        assert_eq!(shop.component, PathBuf::from("/etc/wsgi/shop.wasm"));
        assert_eq!(shop.hosts.len(), 2);
        assert_eq!(shop.options.instances, Some(4));
        assert_eq!(shop.options.env, [("STRIPE_KEY".to_owned(), "sk_test".to_owned())]);
        assert_eq!(shop.location, "/etc/wsgi/hosting.toml:7");
    }

    #[test]
    fn mistakes_name_the_line_and_the_fix() {
        let err = parse_text("listen = \"x\"\ncolour = 3\n[apps.a]\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/wsgi/hosting.toml:2: unknown key \"colour\""),
            "{err}"
        );
        let err = parse_text("[apps.a]\ncomponent = \"a.wasm\"\nmax-memory = \"lots\"\n").unwrap_err();
        assert!(err.starts_with("/etc/wsgi/hosting.toml:3: apps.a.max-memory:"), "{err}");
        assert!(err.contains("\"lots\""), "{err}");
        let err = parse_text("[apps.a]\ncomponent = \"a.wasm\"\nhosts = [\"a.example.com:80\"]\n").unwrap_err();
        assert!(
            err.contains(":3: apps.a.hosts:") && err.contains("leave the port out"),
            "{err}"
        );
        let err = parse_text("[apps.a]\nprefix = \"/a\"\n").unwrap_err();
        assert!(err.contains(":1: apps.a has no component"), "{err}");
        let err = parse_text("[apps.a]\ncomponent = \"a.wasm\"\ninstances = \"four\"\n").unwrap_err();
        assert!(err.contains(":3: apps.a.instances:"), "{err}");
        let err = parse_text("[apps.a]\ncomponent = \"a.wasm\"\nlisten = \"x\"\n").unwrap_err();
        assert!(err.contains(":3: apps.a: unknown key \"listen\""), "{err}");
        let err = parse_text("listen = [\n").unwrap_err();
        assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
        assert!(parse_text("listen = \"x\"\n").unwrap_err().contains("no apps"));
    }

    #[test]
    fn field_names_are_the_kebab_case_keys() {
        let keys = field_names::<AppOptions>();
        assert!(keys.contains(&"max-memory") && keys.contains(&"dirs") && keys.contains(&"allow-connect"));
        assert!(field_names::<ServerOptions>().contains(&"static"));
    }
}
