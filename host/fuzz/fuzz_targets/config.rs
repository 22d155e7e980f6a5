//! `serve --config FILE`: any text through the parser serve runs on the file.
//! It may refuse the text (with a message), never panic; an accepted config names
//! each app once.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wsgi_wasm::commands::serve::fuzzing::parse_config;

fuzz_target!(|text: &str| {
    match parse_config(text, Path::new("/nonexistent/hosting.toml")) {
        Ok(config) => {
            let mut names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), config.apps.len());
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
