//! Host bindings for the ABI in guest-sdk/wit, the one source of truth.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "wsgi-app",
    // Every import may wait (on the client or the request body), and a host fault
    // in one must trap the guest rather than be reported as an app error.
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::wsgi_wasm::wsgi::server;
