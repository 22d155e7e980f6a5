//! Sockets handed over by a service manager (systemd's socket activation:
//! LISTEN_PID and LISTEN_FDS, descriptors from 3 on; sd_listen_fds(3)).
//!
//! Hand-written rather than a crate: the protocol is two variables and a range of
//! descriptors, and std tells a TCP socket from a Unix one by its local address.

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

use anyhow::{Result, bail};

/// The first passed descriptor (after stdin, stdout and stderr).
const FIRST_FD: RawFd = 3;
/// More would be a misconfigured unit rather than a server with that many
/// listeners; the bound keeps a bad LISTEN_FDS from making us adopt arbitrary fds.
const MAX_FDS: usize = 64;

pub enum Activated {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// The listening sockets passed to this process, or none when it was not socket
/// activated (LISTEN_PID names another process: the variables were inherited).
pub fn take_listeners() -> Result<Vec<Activated>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let count: usize = match fds.trim().parse() {
        Ok(n) if n <= MAX_FDS => n,
        _ => bail!("LISTEN_FDS={fds:?} is not a number of sockets up to {MAX_FDS}"),
    };
    let mut listeners = Vec::new();
    for fd in (FIRST_FD..).take(count) {
        listeners.push(adopt(fd)?);
    }
    Ok(listeners)
}

fn adopt(fd: RawFd) -> Result<Activated> {
    // SAFETY: the service manager passed this descriptor for this process to own
    // (LISTEN_PID matched); nothing else in the process uses descriptors 3.. at start.
    let tcp = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    if tcp.local_addr().is_ok() {
        tcp.set_nonblocking(true)?;
        return Ok(Activated::Tcp(tcp));
    }
    // SAFETY: the same descriptor, handed back by the TCP wrapper that did not fit.
    let unix = unsafe { std::os::unix::net::UnixListener::from_raw_fd(tcp.into_raw_fd()) };
    if unix.local_addr().is_ok() {
        unix.set_nonblocking(true)?;
        return Ok(Activated::Unix(unix));
    }
    // Leave it open: it is not ours to close if it is not a socket we understand.
    let _ = unix.into_raw_fd();
    bail!("descriptor {fd} from LISTEN_FDS is neither a TCP nor a Unix listening socket")
}
