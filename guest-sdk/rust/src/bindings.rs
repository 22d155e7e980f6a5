//! Bindings for the ABI in guest-sdk/wit, the one source of truth shared with the
//! host. Apps use the WSGI-shaped API at the crate root instead; these are public
//! only so that [`export_app!`](crate::export_app) can reach them from the app's crate.

wit_bindgen::generate!({
    path: "../wit",
    world: "wsgi-app",
    // The export macro is expanded in the app's crate, not here.
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "$crate::bindings",
});
