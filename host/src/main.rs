//! The `wsgi-wasm` command line.

use clap::Parser;

mod commands;

/// A WSGI server whose applications run in WebAssembly sandboxes.
#[derive(Parser)]
#[command(name = "wsgi-wasm", version, about, long_about = None)]
enum Cli {
    Serve(commands::serve::ServeCommand),
    Build(commands::build::BuildCommand),
    Compile(commands::compile::CompileCommand),
}

fn main() {
    let result = match Cli::parse() {
        Cli::Serve(cmd) => cmd.execute(),
        Cli::Build(cmd) => cmd.execute(),
        Cli::Compile(cmd) => cmd.execute(),
    };
    wsgi_wasm::log::flush();
    if let Err(e) = result {
        // One line, outermost context first: "cannot read app.wasm: No such file...".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
