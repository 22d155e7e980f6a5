//! Graceful shutdown: SIGTERM/SIGINT stop accepting, in-flight requests finish,
//! the process exits 0.

use std::time::{Duration, Instant};

use crate::support::client::curl;
use crate::support::components::python_fixtures;
use crate::support::server::Server;

fn shutdown_with(signal: &str) {
    let server = Server::start(&python_fixtures(), &["--instances", "8", "--shutdown-grace", "10s"]);
    let addr = server.addr;
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", server.pid())).unwrap().count();
    let idle_fds = fds();
    let in_flight: Vec<_> = (0..20)
        .map(|_| {
            let url = server.url("/sleep?s=1");
            std::thread::spawn(move || curl(&[&url]))
        })
        .collect();
    // In flight means accepted: a connection still in the listen backlog, or one
    // whose request has not been read yet, is not (it gets closed at shutdown).
    // Starting 20 curls can take longer than any fixed pause on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fds() < idle_fds + 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.signal(signal);
    // Draining: a new connection is refused while in-flight requests still run.
    let refused_while_draining = loop {
        if std::net::TcpStream::connect(addr).is_err() {
            break in_flight.iter().any(|t| !t.is_finished());
        }
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(refused_while_draining, "new connections were accepted during the drain");
    let code = server.wait_for_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "exit status after {signal}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let ok = in_flight
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|r| r.status == 200 && r.text() == "slept\n")
        .count();
    assert_eq!(ok, 20, "requests lost at shutdown");
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    shutdown_with("TERM");
}

#[test]
fn sigint_finishes_in_flight_requests_and_exits_0() {
    shutdown_with("INT");
}
