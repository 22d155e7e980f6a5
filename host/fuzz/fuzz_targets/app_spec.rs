//! `serve [PREFIX=]APP.wasm[,KEY=VALUE...]`: any argument through the parser serve
//! runs on it. It may refuse the argument (with a message), never panic; an
//! accepted one names a file and a prefix that is "" or starts with '/'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgi_wasm::commands::serve::fuzzing::parse_app_spec;

fuzz_target!(|text: &str| {
    match parse_app_spec(text) {
        Ok(spec) => {
            assert!(!spec.file.as_os_str().is_empty());
            if let Some(prefix) = &spec.prefix {
                assert!(prefix.is_empty() || (prefix.starts_with('/') && !prefix.ends_with('/')));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
