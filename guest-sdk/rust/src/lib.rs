//! Write wsgi-wasm applications in Rust.
//!
//! wsgi-wasm is a WSGI (PEP 3333) server whose applications run as WebAssembly
//! components. This crate gives a Rust app the same shape a Python WSGI app has:
//! an [`Environ`] with the request's CGI keys and its body ([`Environ::input`]),
//! and a [`Responder`] with `start_response` and `write`. The host does the
//! network and HTTP; the app only sees one call per request.
//!
//! ```no_run
//! use wsgi_wasm_guest::{App, Environ, Responder, Result};
//!
//! struct Hello;
//!
//! impl App for Hello {
//!     fn call(environ: &mut Environ, response: &mut Responder) -> Result<()> {
//!         let body = format!("Hello from {}!\n", environ.path_info());
//!         response.respond("200 OK", [("Content-Type", "text/plain")], body.as_bytes())
//!     }
//! }
//!
//! wsgi_wasm_guest::export_app!(Hello);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`, which makes a component
//! directly, and serve it:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! wsgi-wasm serve target/wasm32-wasip2/release/my_app.wasm
//! ```
//!
//! # Errors, panics and limits
//!
//! An [`Error`] returned from [`App::call`] is logged by the server, which answers
//! `500 Internal Server Error` — or, when part of the body already went out, cuts
//! the connection so the client cannot take half a body for a whole one. The
//! instance stays in use.
//!
//! A panic aborts (wasm has no unwinding): the instance traps, the server answers
//! 500 the same way, and throws the instance away. Running past the server's CPU
//! time or memory limit does the same. The panic message goes to the server log
//! through stderr.
//!
//! # State between requests
//!
//! With `wsgi-wasm serve --isolation pooled` (the default) an instance serves many
//! requests one at a time, so statics (a `thread_local!`, a `OnceLock`) survive
//! between them, like module globals in a Python worker. With
//! `--isolation request` every request gets a fresh instance
//! ([`Environ::run_once`] is then true).

#[doc(hidden)]
pub mod bindings;
mod check;
mod environ;
mod error;
mod input;
mod log;
mod response;

pub use environ::{Environ, bytes_to_native, native_to_bytes};
pub use error::{Error, Result};
pub use input::{Input, READ_CHUNK};
pub use log::{Errors, log};
pub use response::{Responder, Writer};

/// A WSGI application: one call per request.
///
/// Read the request from `environ`, then call
/// [`start_response`](Responder::start_response) on `response` and write the
/// body. Export the type with [`export_app!`].
pub trait App {
    fn call(environ: &mut Environ, response: &mut Responder) -> Result<()>;
}

/// Exports an [`App`] as the component's `call` (the `wsgi-app` world's export).
/// Use it once, in the app's crate (a `cdylib`):
///
/// ```no_run
/// # struct MyApp;
/// # impl wsgi_wasm_guest::App for MyApp {
/// #     fn call(_: &mut wsgi_wasm_guest::Environ, r: &mut wsgi_wasm_guest::Responder) -> wsgi_wasm_guest::Result<()> {
/// #         r.respond("204 No Content", [("X", "y")], b"")
/// #     }
/// # }
/// wsgi_wasm_guest::export_app!(MyApp);
/// ```
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        const _: () = {
            struct __WsgiWasmExport;

            impl $crate::bindings::Guest for __WsgiWasmExport {
                fn call(environ: ::std::string::String) -> $crate::__private::CallResult {
                    $crate::__private::call::<$app>(environ)
                }
            }

    $crate::bindings::export!(__WsgiWasmExport with_types_in $crate::bindings);
        };
    };
}

/// Compiles the README's example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

#[doc(hidden)]
pub mod __private {
    use super::*;

    /// What `call` returns: a packed response or "" (see `call` in wsgi.wit), or
    /// the app's error.
    pub type CallResult = std::result::Result<String, String>;

    /// One WSGI call: what the exported `call` does for the app `A`.
    pub fn call<A: App>(packed: String) -> CallResult {
        let pairs = environ::unpack(&packed)
            .ok_or("the host sent an environ this SDK cannot read: build the app with the wsgi-wasm that serves it")?;
        let mut environ = Environ::new(pairs);
        let mut response = Responder::new();
        A::call(&mut environ, &mut response)
            .and_then(|()| response.finish())
            .map_err(Error::into_message)
    }
}
