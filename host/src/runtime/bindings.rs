//! Host bindings for the ABI in guest-sdk/wit (through the host/guest-sdk link), the one source of truth.

wasmtime::component::bindgen!({
    path: "guest-sdk/wit",
    world: "wsgi-app",
    // The `server` imports are registered by hand (imports.rs) to read guest
    // memory lazily; these bindings serve the `call` export.
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The ABI's version: the WIT package's (guest-sdk/wit/wsgi.wit), also in the
/// interface names the host serves. A component built for another version does
/// not link, which is what should happen when the ABI changed.
pub const ABI_VERSION: &str = "0.3.0";

#[cfg(test)]
mod tests {
    use super::ABI_VERSION;
    use crate::runtime::imports::SERVER_INTERFACE;
    use crate::runtime::outbound::TLS_INTERFACE;

    #[test]
    fn one_abi_version_everywhere() {
        let wit = include_str!("../../../guest-sdk/wit/wsgi.wit");
        assert!(wit.starts_with(&format!("package wsgi-wasm:wsgi@{ABI_VERSION};")));
        assert_eq!(SERVER_INTERFACE, format!("wsgi-wasm:wsgi/server@{ABI_VERSION}"));
        assert_eq!(TLS_INTERFACE, format!("wsgi-wasm:wsgi/tls@{ABI_VERSION}"));
    }
}
