//! Name lookups in the sandbox answer only what was granted.
//!
//! wasmtime-wasi's `wasi:sockets/ip-name-lookup` asks the host's resolver about any
//! name once lookups are on: a guest could then probe the network's names or leak
//! data through DNS queries even with every connection refused. This replaces its
//! `resolve-addresses` with one that asks the app's [`NetworkPolicy`] instead: a
//! granted name resolves to the address it had at start, an IP literal to itself,
//! and anything else fails with `permanent-resolver-failure` (libc's EAI_FAIL)
//! without a query leaving the process. The stream it returns is still wasmtime-wasi's
//! own, produced by its lookup of the IP literal, so nothing else changes.

use anyhow::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::Network;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::Host as _;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Host as _};
use wasmtime_wasi::sockets::WasiSocketsView;

use super::state::GuestState;
use crate::log;

/// The interface as wasmtime-wasi 48 defines it (guests importing any 0.2.x
/// version are linked to it).
const IP_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Call after wasmtime-wasi's `add_to_linker_async`: shadows its lookup.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut lookup = linker.instance(IP_NAME_LOOKUP)?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, GuestState>, (network, name): (Resource<Network>, String)| {
            let state = store.data_mut();
            let Some(ip) = state.network.lookup(&name) else {
                log::app(
                    state.app_name(),
                    "denied",
                    format!("name lookup of {name:?} refused: not granted (allow it with --allow-connect {name}:PORT)"),
                );
                return Ok((Err(ErrorCode::PermanentResolverFailure),));
            };
            let mut view = state.sockets();
            match view.resolve_addresses(network, ip.to_string()) {
                Ok(stream) => Ok((Ok(stream),)),
                Err(e) => Ok((Err(view.convert_error_code(e)?),)),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
