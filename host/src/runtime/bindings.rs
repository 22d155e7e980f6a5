//! Host bindings for the ABI in guest-sdk/wit (through the host/guest-sdk link), the one source of truth.

wasmtime::component::bindgen!({
    path: "guest-sdk/wit",
    world: "wsgi-app",
    // The `server` imports are registered by hand (imports.rs) to read guest
    // memory lazily; these bindings serve the `call` export.
    imports: { default: async | trappable },
    exports: { default: async },
});
