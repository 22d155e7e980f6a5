//! Hello, world! as a wsgi-wasm Rust guest: the smallest complete app, and the one
//! to benchmark the server with, since it does nothing but the fast path (one
//! `respond`: the whole response goes back as the call's result, without a host
//! call, and the host sends it with a Content-Length).

use wsgi_wasm_guest::{App, Environ, Responder, Result};

struct Hello;

impl App for Hello {
    fn call(_environ: &mut Environ, response: &mut Responder) -> Result<()> {
        response.respond("200 OK", [("Content-Type", "text/plain")], b"Hello, world!\n")
    }
}

wsgi_wasm_guest::export_app!(Hello);
