//! The `server` interface of guest-sdk/wit/wsgi.wit, served to guests.
//!
//! Registered by hand rather than through bindgen's `Host` trait so that lists and
//! strings are read lazily out of guest memory (`WasmList`, `WasmStr`): a guest can
//! pass a 200 MiB body or a million headers, and the host copies at most a bounded
//! piece at a time, or refuses by length before copying anything. Host memory per
//! request stays flat whatever the guest does. (`write-memory`'s bytes are copied
//! while its arguments are lifted, at most one piece: see guest_memory.rs.) The
//! signatures here are checked against the component's imports when it is linked.

use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use wasmtime::component::{Linker, WasmList, WasmStr};
use wasmtime::{StoreContextMut, Trap};

use super::crypto;
use super::guest_memory::GuestBytes;
use super::state::GuestState;
use crate::log;
use crate::wsgi::exchange::Exchange;
use crate::wsgi::response::{MAX_RESPONSE_HEAD_BYTES, MAX_RESPONSE_HEADERS, latin1_body};

/// The interface's name as the component imports it.
pub const SERVER_INTERFACE: &str = "wsgi-wasm:wsgi/server@0.3.0";

/// Most body bytes copied out of guest memory at once. Each piece waits for room
/// in the response stream, so a huge write costs the host a few pieces, not its size.
pub const MAX_WRITE_PIECE: usize = 256 * 1024;
/// Largest latin-1 string one call may pass (`tls.write`'s data, a key
/// derivation's password or salt), in UTF-8 bytes: 256 KiB of bytes (the SDK's
/// piece size) is at most twice that once UTF-8 encoded. A string can only be
/// read whole, so the size is bounded per call instead of piecewise.
pub const MAX_LATIN1_PIECE_UTF8: usize = 2 * MAX_WRITE_PIECE;

/// Longest hash name accepted ("sha512" is 6): anything longer is not a hash.
const MAX_HASH_NAME: usize = 32;

type Answer = (Result<(), String>,);

/// How `send-file` errors begin when nothing was sent, so the guest may send the
/// file itself (one the host cannot open: say, a file bundled in the snapshot).
const UNAVAILABLE: &str = "unavailable:";

pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    let mut server = linker.instance(SERVER_INTERFACE)?;

    server.func_wrap_async(
        "start-response",
        |mut store: StoreContextMut<'_, GuestState>,
         (status, headers, replace): (WasmStr, WasmList<(WasmStr, WasmStr)>, bool)| {
            Box::new(async move { Ok((accept_head(&mut store, &status, &headers, replace)?,)) })
        },
    )?;

    server.func_wrap_async(
        "write",
        |mut store: StoreContextMut<'_, GuestState>, (data,): (WasmList<u8>,)| {
            Box::new(async move { write_pieces(&mut store, &data).await })
        },
    )?;

    server.func_wrap_async(
        "write-body",
        |mut store: StoreContextMut<'_, GuestState>, (data,): (WasmList<u8>,)| {
            Box::new(async move {
                if data.len() <= MAX_WRITE_PIECE {
                    let body = Bytes::copy_from_slice(data.as_le_slice(&store));
                    return Ok((exchange(&mut store)?.write_body(body).await,));
                }
                // Too big to copy at once: declare its length, then stream it.
                if let Err(message) = exchange(&mut store)?.declare_length(data.len() as u64) {
                    return Ok((Err(message),));
                }
                write_pieces(&mut store, &data).await
            })
        },
    )?;

    server.func_wrap_async(
        "write-memory",
        |mut store: StoreContextMut<'_, GuestState>, (GuestBytes(piece),): (GuestBytes,)| {
            Box::new(async move {
                match piece {
                    Ok(piece) => Ok((exchange(&mut store)?.write(piece).await,)),
                    Err(message) => Ok((Err(message),)),
                }
            })
        },
    )?;

    server.func_wrap_async(
        "write-body-memory",
        |mut store: StoreContextMut<'_, GuestState>, (GuestBytes(piece), total): (GuestBytes, u64)| {
            Box::new(async move {
                match piece {
                    Ok(piece) => write_body_piece(&mut store, piece, total).await,
                    Err(message) => Ok((Err(message),)),
                }
            })
        },
    )?;

    server.func_wrap_async(
        "send-response",
        |mut store: StoreContextMut<'_, GuestState>, (packed,): (WasmStr,)| {
            Box::new(async move {
                let packed = match packed.to_str(&store) {
                    Ok(packed) => packed.into_owned(),
                    Err(e) => return Ok((Err(format!("malformed packed response: {e}")),)),
                };
                Ok((exchange(&mut store)?.respond_packed(&packed).await,))
            })
        },
    )?;

    server.func_wrap_async(
        "send-file",
        |mut store: StoreContextMut<'_, GuestState>, (path, offset, length): (WasmStr, u64, u64)| {
            Box::new(async move {
                let path = match path.to_str(&store) {
                    Ok(path) => path.into_owned(),
                    Err(e) => return Ok((Err(format!("{UNAVAILABLE} malformed path: {e}")),)),
                };
                store
                    .data()
                    .note_unrecorded("files sent by the host (wsgi.file_wrapper under --dir)");
                let (file, size) = match store.data().files.open_file(&path) {
                    Ok(opened) => opened,
                    Err(message) => return Ok((Err(format!("{UNAVAILABLE} {message}")),)),
                };
                send_file(&mut store, file, size, offset, length).await
            })
        },
    )?;

    server.func_wrap_async("read", |mut store: StoreContextMut<'_, GuestState>, (max,): (u32,)| {
        Box::new(async move {
            let result = exchange(&mut store)?.read(max).await;
            Ok((result.map(|bytes| bytes.to_vec()).map_err(|e| e.to_string()),))
        })
    })?;

    server.func_wrap_async(
        "pbkdf2-hmac",
        |mut store: StoreContextMut<'_, GuestState>,
         (hash, password, salt, iterations, dklen): (WasmStr, WasmStr, WasmStr, u32, u32)| {
            Box::new(async move {
                let hash = match hash.to_str(&store) {
                    Ok(name) if name.len() <= MAX_HASH_NAME => name.into_owned(),
                    _ => return Ok((Err("unsupported hash type".to_owned()),)),
                };
                derive_key(&mut store, &password, &salt, move |password, salt, deadline| {
                    crypto::pbkdf2_hmac(&hash, &password, &salt, iterations, dklen, deadline)
                        .map_err(|e| (e == crypto::Pbkdf2Error::DeadlinePassed, e.to_string()))
                })
                .await
            })
        },
    )?;

    server.func_wrap_async(
        "scrypt",
        |mut store: StoreContextMut<'_, GuestState>,
         (password, salt, n, r, p, maxmem, dklen): (WasmStr, WasmStr, u64, u32, u32, u64, u32)| {
            Box::new(async move {
                derive_key(&mut store, &password, &salt, move |password, salt, deadline| {
                    crypto::scrypt(&password, &salt, (n, r, p), maxmem, dklen, deadline)
                        .map_err(|e| (e == crypto::ScryptError::DeadlinePassed, e.to_string()))
                })
                .await
            })
        },
    )?;

    server.func_wrap_async(
        "log",
        |store: StoreContextMut<'_, GuestState>, (message,): (WasmStr,)| {
            Box::new(async move {
                let text = message.to_str(&store)?;
                // Only the part the log keeps is copied.
                let mut end = text.len().min(log::MAX_LOG_LINE);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                log::app(store.data().app_name(), "wsgi.errors", &text[..end]);
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// The exchange the guest's request belongs to. Calling an import outside a
/// request is a host fault (it cannot happen through the SDKs), so it traps.
fn exchange<'a>(store: &'a mut StoreContextMut<'_, GuestState>) -> wasmtime::Result<&'a mut Exchange> {
    store
        .data_mut()
        .exchange
        .as_mut()
        .ok_or_else(|| wasmtime::format_err!("server import called outside a request"))
}

async fn write_pieces(store: &mut StoreContextMut<'_, GuestState>, data: &WasmList<u8>) -> wasmtime::Result<Answer> {
    let len = data.len();
    if len == 0 {
        return Ok((exchange(store)?.write(Bytes::new()).await,));
    }
    let mut offset = 0;
    while offset < len {
        let end = len.min(offset + MAX_WRITE_PIECE);
        let piece = Bytes::copy_from_slice(&data.as_le_slice(&*store)[offset..end]);
        if let Err(message) = exchange(store)?.write(piece).await {
            return Ok((Err(message),));
        }
        offset = end;
    }
    Ok((Ok(()),))
}

/// One piece of a complete body of `total` bytes (`write-body-memory`): a first
/// piece that is the whole body goes out with its length like `write-body`;
/// otherwise the length is declared and the piece streamed.
async fn write_body_piece(
    store: &mut StoreContextMut<'_, GuestState>,
    piece: Bytes,
    total: u64,
) -> wasmtime::Result<Answer> {
    let exchange = exchange(store)?;
    if !exchange.headers_sent() && piece.len() as u64 == total {
        return Ok((exchange.write_body(piece).await,));
    }
    if let Err(message) = exchange.declare_length(total) {
        return Ok((Err(message),));
    }
    Ok((exchange.write(piece).await,))
}

/// A key derived by the host from the guest's latin-1 `password` and `salt`:
/// `derive` runs on a blocking thread (seconds of hashing must not stall the
/// executor's other requests) with the request's CPU deadline, its time is
/// charged to the request, and running out of CPU time traps like a guest that
/// ran out (a 504). `derive` fails with (ran out of time, message).
async fn derive_key(
    store: &mut StoreContextMut<'_, GuestState>,
    password: &WasmStr,
    salt: &WasmStr,
    derive: impl FnOnce(Bytes, Bytes, Instant) -> Result<Vec<u8>, (bool, String)> + Send + 'static,
) -> wasmtime::Result<(Result<Vec<u8>, String>,)> {
    let (password, salt) = match (latin1_piece(store, password), latin1_piece(store, salt)) {
        (Ok(password), Ok(salt)) => (password, salt),
        (Err(message), _) | (_, Err(message)) => return Ok((Err(message),)),
    };
    let deadline = store.data().cpu_deadline();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || derive(password, salt, deadline)).await?;
    store.data_mut().charge_cpu(started.elapsed());
    match result {
        Ok(key) => Ok((Ok(key),)),
        Err((true, _)) => Err(Trap::Interrupt.into()),
        Err((false, message)) => Ok((Err(message),)),
    }
}

/// `length` bytes of `file` from `offset` as the response body, a piece at a time,
/// each read from the disk off the executor's threads.
async fn send_file(
    store: &mut StoreContextMut<'_, GuestState>,
    file: std::fs::File,
    size: u64,
    offset: u64,
    length: u64,
) -> wasmtime::Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Ok((Err(format!(
            "{UNAVAILABLE} the file has {size} bytes: {length} from offset {offset} is past its end"
        )),));
    }
    let mut file = tokio::fs::File::from_std(file);
    if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
        return Ok((Err(format!("{UNAVAILABLE} reading the file failed: {e}")),));
    }
    if let Err(message) = exchange(store)?.declare_length(length) {
        return Ok((Err(message),));
    }
    if length == 0 {
        return Ok((exchange(store)?.write_body(Bytes::new()).await,));
    }
    let mut left = length;
    while left > 0 {
        let mut piece = vec![0; MAX_WRITE_PIECE.min(usize::try_from(left).unwrap_or(usize::MAX))];
        let read = match file.read(&mut piece).await {
            Ok(0) => return Ok((Err("the file shrank while it was being sent".to_owned()),)),
            Ok(read) => read,
            Err(e) => return Ok((Err(format!("reading the file failed: {e}")),)),
        };
        piece.truncate(read);
        left -= read as u64;
        let exchange = exchange(store)?;
        if let Err(message) = exchange.write(Bytes::from(piece)).await {
            return Ok((Err(message),));
        }
        if exchange.body_closed() {
            // A HEAD request, or the app's own shorter Content-Length: the rest
            // of the file would only be read to be dropped.
            break;
        }
    }
    Ok((Ok(()),))
}

/// A latin-1 string (`tls.write`'s data, `pbkdf2-hmac`'s and `scrypt`'s password
/// and salt) as the bytes it stands for: at most `MAX_WRITE_PIECE` of them, as
/// wsgi.wit promises. Its refusals still speak of a "body" piece or string: they
/// are the texts guests and tests already know.
pub(super) fn latin1_piece(store: &StoreContextMut<'_, GuestState>, data: &WasmStr) -> Result<Bytes, String> {
    let text = data.to_str(store).map_err(|e| format!("malformed body string: {e}"))?;
    // No piece within the limit is longer than this in UTF-8: refused before
    // decoding it.
    if text.len() > MAX_LATIN1_PIECE_UTF8 {
        return Err(piece_too_large());
    }
    let piece = latin1_body(&text)?;
    if piece.len() > MAX_WRITE_PIECE {
        return Err(piece_too_large());
    }
    Ok(piece)
}

/// What a guest is told when one call passes more than `MAX_WRITE_PIECE` bytes.
pub(super) fn piece_too_large() -> String {
    format!("body piece is larger than {MAX_WRITE_PIECE} bytes; send at most that per call")
}

/// start_response's status and headers, lifted and handed to the exchange, which
/// checks them and holds them until the first body bytes. A refused head is the
/// guest's error, not a host fault.
fn accept_head(
    store: &mut StoreContextMut<'_, GuestState>,
    status: &WasmStr,
    headers: &WasmList<(WasmStr, WasmStr)>,
    replace: bool,
) -> wasmtime::Result<Result<(), String>> {
    let head = match lift_head(store, status, headers) {
        Ok(head) => head,
        Err(message) => return Ok(Err(message)),
    };
    Ok(exchange(store)?.start_response(&head.0, &head.1, replace))
}

/// Status and headers, copied only after their count and total size are known to
/// be within the limits.
fn lift_head(
    store: &mut StoreContextMut<'_, GuestState>,
    status: &WasmStr,
    headers: &WasmList<(WasmStr, WasmStr)>,
) -> Result<(String, Vec<(String, String)>), String> {
    if headers.len() > MAX_RESPONSE_HEADERS {
        return Err(format!(
            "too many response headers ({}; at most {MAX_RESPONSE_HEADERS})",
            headers.len()
        ));
    }
    let bad = |e: wasmtime::Error| format!("malformed start_response arguments: {e}");
    let status = status.to_str(&*store).map_err(bad)?;
    let mut size = status.len();
    if size > MAX_RESPONSE_HEAD_BYTES {
        return Err(format!("response status is over {MAX_RESPONSE_HEAD_BYTES} bytes"));
    }
    let status = status.into_owned();
    let mut lifted = Vec::with_capacity(headers.len());
    for i in 0..headers.len() {
        let (name, value) = headers.get(&mut *store, i).expect("index within len").map_err(bad)?;
        let (name, value) = (name.to_str(&*store).map_err(bad)?, value.to_str(&*store).map_err(bad)?);
        size += name.len() + value.len() + 4;
        if size > MAX_RESPONSE_HEAD_BYTES {
            return Err(format!("response head is over {MAX_RESPONSE_HEAD_BYTES} bytes"));
        }
        lifted.push((name.into_owned(), value.into_owned()));
    }
    Ok((status, lifted))
}
