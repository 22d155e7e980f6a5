//! Random bytes for the guest, eight at a time.
//!
//! wasmtime-wasi 48 serves `get-random-bytes` and `get-insecure-random-bytes` by
//! drawing one 32-bit value from the generator for every byte it hands out and
//! keeping its low byte. CPython asks for 2,496 bytes when a fresh instance seeds
//! its `random` module, so every instance under `--isolation request` paid for
//! 9,984 bytes of ChaCha12 output and 2,496 calls through the boxed generator
//! (~7 us, perf). These two functions replace wasmtime-wasi's: they fill the list
//! from the same generators (the WASI context's, taped when recording or replaying)
//! with one 64-bit draw per eight bytes. The guest gets random bytes either way;
//! a recording, which holds the draws, now holds about as many bytes as the guest
//! got (recording format 2), not four times as many.

use anyhow::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::random::insecure::Host as _;
use wasmtime_wasi::p2::bindings::random::random::Host as _;
use wasmtime_wasi::random::{DEFAULT_MAX_SIZE, WasiRandomCtx};

use super::state::GuestState;

/// The interfaces as wasmtime-wasi 48 defines them (guests importing any 0.2.x
/// version are linked to them).
const RANDOM: &str = "wasi:random/random@0.2.12";
const INSECURE: &str = "wasi:random/insecure@0.2.12";

/// Largest list one call may ask for: wasmtime-wasi's own default (64 MiB), kept so
/// that what a guest may ask for does not change with this replacement. The list is
/// built on the host before it is copied into the guest, so the limit bounds the
/// host memory one call takes.
const MAX_RANDOM_BYTES: u64 = DEFAULT_MAX_SIZE;

/// Call after wasmtime-wasi's `add_to_linker_async`: shadows its two byte-list
/// functions (the u64 ones and `insecure-seed` stay wasmtime-wasi's).
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    linker.allow_shadowing(true);
    shadow(linker, RANDOM, "get-random-bytes", |random| random.get_random_u64())?;
    shadow(linker, INSECURE, "get-insecure-random-bytes", |random| {
        random.get_insecure_random_u64()
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Defines `interface`'s `function(len) -> list<u8>` as `len` bytes filled from
/// `draw`, one of the WASI context's 64-bit generators.
fn shadow(
    linker: &mut Linker<GuestState>,
    interface: &str,
    function: &str,
    draw: fn(&mut WasiRandomCtx) -> wasmtime::Result<u64>,
) -> Result<()> {
    linker.instance(interface)?.func_wrap(
        function,
        move |mut store: StoreContextMut<'_, GuestState>, (len,): (u64,)| {
            let random = store.data_mut().ctx().ctx.random();
            Ok((fill(len, || draw(random))?,))
        },
    )?;
    Ok(())
}

/// `len` bytes, eight from each value `next` draws (the last value's first bytes
/// for a length not a multiple of eight).
fn fill(len: u64, mut next: impl FnMut() -> wasmtime::Result<u64>) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!("requested len {len} exceeds limit {MAX_RANDOM_BYTES}");
    }
    let mut bytes = vec![0; len as usize];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&next()?.to_le_bytes()[..chunk.len()]);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_eight_bytes_from_each_draw_and_the_first_of_the_last() {
        let mut draws = [0x0807_0605_0403_0201_u64, 0x1817_1615_1413_1211].into_iter();
        let bytes = fill(11, || Ok(draws.next().unwrap())).unwrap();
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13]);
        assert_eq!(draws.next(), None, "one draw per eight bytes");
    }

    #[test]
    fn an_empty_list_draws_nothing() {
        assert_eq!(fill(0, || panic!("no draw for zero bytes")).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn refuses_more_than_the_limit_before_drawing() {
        let err = fill(MAX_RANDOM_BYTES + 1, || panic!("no draw past the limit")).unwrap_err();
        assert!(err.to_string().contains("exceeds limit"), "{err}");
    }
}
