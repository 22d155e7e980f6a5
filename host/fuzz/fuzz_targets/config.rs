//! `serve --config FILE`: any text through the parser serve runs on the file.
//! It may refuse the text (with a message), never panic. An accepted app has the
//! route the router relies on: a prefix that is empty (the root) or starts with
//! '/' and does not end with one, and a component path; its options, stacked on
//! the file's defaults, give a runtime config or a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wsgi_wasm::commands::serve::fuzzing::parse_config;

fuzz_target!(|text: &str| {
    match parse_config(text, Path::new("/nonexistent/hosting.toml")) {
        Ok(config) => {
            for app in &config.apps {
                let prefix = &app.prefix;
                assert!(
                    prefix.is_empty() || (prefix.starts_with('/') && !prefix.ends_with('/')),
                    "apps.{}: prefix {prefix:?}",
                    app.name
                );
                assert!(!app.component.as_os_str().is_empty(), "apps.{}: no component", app.name);
                if let Err(message) = config.defaults.over(&app.options).to_config() {
                    assert!(!message.is_empty());
                }
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
