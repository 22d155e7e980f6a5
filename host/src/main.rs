//! The `wsgi-wasm` command line.

use std::sync::LazyLock;

use clap::{CommandFactory, FromArgMatches, Parser};
use wsgi_wasm::commands;
use wsgi_wasm::runtime::engine::{WASMTIME_PATCH, WASMTIME_VERSION};

/// `--version`: this release (the wheel's and the Rust SDK's too: one workspace
/// version), the componentize-py `build` expects and the wasmtime that runs apps,
/// with the changes our copy of it carries.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (componentize-py {}, wasmtime {WASMTIME_VERSION} patched: {WASMTIME_PATCH})",
        env!("CARGO_PKG_VERSION"),
        commands::build::COMPONENTIZE_PY_VERSION,
    )
});

/// A WSGI server whose applications run in WebAssembly sandboxes.
#[derive(Parser)]
#[command(name = "wsgi-wasm", about, long_about = None)]
// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Cli {
    Serve(commands::serve::ServeCommand),
    Build(commands::build::BuildCommand),
    Compile(commands::compile::CompileCommand),
    Replay(commands::replay::ReplayCommand),
}

fn main() {
    let matches = Cli::command().version(VERSION.as_str()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli {
        Cli::Serve(cmd) => cmd.execute(),
        Cli::Build(cmd) => cmd.execute(),
        Cli::Compile(cmd) => cmd.execute(),
        // Its exit status says how the replay compared (see its --help).
        Cli::Replay(cmd) => {
            let status = cmd.execute();
            wsgi_wasm::log::flush();
            std::process::exit(status);
        }
    };
    wsgi_wasm::log::flush();
    if let Err(e) = result {
        // One line, outermost context first: "cannot read app.wasm: No such file...".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
