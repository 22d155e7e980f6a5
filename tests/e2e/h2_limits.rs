//! HTTP/2 rules hyper lacks. Idle timeout: a connection with no open stream is
//! closed (GOAWAY) after the header timeout, the same idle time an HTTP/1.1
//! keep-alive connection gets, even when the client keeps answering PINGs; a
//! stream that takes longer than that is not cut. Stalled streams: a client that
//! never opens its flow-control window has its connection closed after the I/O
//! timeout.

use std::time::{Duration, Instant};

use hyper::Request;

use crate::support::client::{block_on, curl, h2c_get};
use crate::support::components::python_fixtures;
use crate::support::server::Server;

/// The idle time the test server gets (--header-timeout): short, so the test is.
const IDLE: Duration = Duration::from_secs(2);
/// How late the close may come: the server only has to notice a timer, but the
/// CI machine may be loaded.
const SLACK: Duration = Duration::from_secs(8);

/// Reads `body` without ever giving its window back, until the server cuts it:
/// the bytes it got. A clean end fails the test (a cut response must not look
/// whole), and so does a stream still open after IDLE + SLACK.
async fn read_until_cut(mut body: h2::RecvStream) -> usize {
    let started = Instant::now();
    let mut received = 0;
    loop {
        match tokio::time::timeout(IDLE + SLACK, body.data()).await {
            Ok(Some(Ok(chunk))) => received += chunk.len(),
            Ok(Some(Err(e))) => {
                eprintln!("cut after {received} bytes, {:?}: {e}", started.elapsed());
                return received;
            }
            Ok(None) => panic!("the body ended cleanly after {received} bytes"),
            Err(_) => panic!("still open after {:?}", started.elapsed()),
        }
    }
}

#[test]
fn an_idle_h2_connection_answering_pings_is_closed_after_the_idle_timeout() {
    let server = Server::start(&python_fixtures(), &["--header-timeout", "2s"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut client, mut connection) = h2::client::handshake(tcp).await.unwrap();
        let mut ping_pong = connection.ping_pong().expect("the ping handle");
        let mut connection = tokio::spawn(connection);

        // A stream open longer than the idle time keeps the connection.
        let request = Request::get(format!("http://{}/sleep?s=3", server.addr))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = response.await.expect("the slow request is answered");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(text, b"slept\n");

        // Now idle, but alive: every PING is answered until the server closes.
        let idle_since = Instant::now();
        let mut pongs = 0;
        let closed = loop {
            tokio::select! {
                result = &mut connection => break result.unwrap(),
                pong = ping_pong.ping(h2::Ping::opaque()) => {
                    if pong.is_err() {
                        // The server's GOAWAY reached the ping first.
                        break (&mut connection).await.unwrap();
                    }
                    pongs += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ = tokio::time::sleep(IDLE + SLACK) => panic!("still open after {:?}", idle_since.elapsed()),
            }
        };
        let idle = idle_since.elapsed();
        assert!(closed.is_ok(), "closed with an error, not GOAWAY NO_ERROR: {closed:?}");
        assert!(pongs >= 3, "the client answered only {pongs} pings before the close");
        assert!(
            idle >= IDLE - Duration::from_millis(200),
            "closed after {idle:?}, before the idle time"
        );
        assert!(idle < IDLE + SLACK, "closed after {idle:?}");
    });
    // Other connections are not affected.
    assert_eq!(curl(&["--http2-prior-knowledge", &server.url("/hello")]).status, 200);
}

#[test]
fn a_client_that_never_opens_its_window_is_disconnected_after_the_io_timeout() {
    // Far more than the 64 KiB window a client starts with.
    let (server, _dir) = Server::with_big_static_file(8 << 20, &["--io-timeout", "1s"]);
    block_on(async {
        let response = h2c_get(server.addr, "/static/big.bin").await;
        assert_eq!(response.status(), 200);
        // Read what the window lets through and never give it back: the socket
        // stays readable, so only the stream is stalled.
        let started = Instant::now();
        let received = read_until_cut(response.into_body()).await;
        let waited = started.elapsed();
        assert!(received < 8 << 20, "{received}");
        assert!(waited >= Duration::from_millis(900), "closed after {waited:?}");
    });
    assert!(
        server.wait_for_log(
            "a response waited 1s for the client to open its flow-control window",
            SLACK
        ),
        "{}",
        server.log()
    );
    // Other connections are not affected.
    assert_eq!(curl(&["--http2-prior-knowledge", &server.url("/hello")]).status, 200);
}

#[test]
fn a_slow_h2_client_that_keeps_reading_gets_the_whole_response() {
    let server = Server::start(&python_fixtures(), &["--io-timeout", "500ms"]);
    block_on(async {
        // 1 MiB in one write: the host streams it in 256 KiB blocks.
        let response = h2c_get(server.addr, "/big_write?mb=1").await;
        assert_eq!(response.status(), 200);
        // Read at ~320 KB/s: a block takes ~0.8 s to go out, more than
        // --io-timeout, but data keeps moving, so the stream is not stalled.
        let started = Instant::now();
        let mut body = response.into_body();
        let mut received = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("cut after {received} bytes, {:?}: {e}", started.elapsed()));
            received += chunk.len();
            tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / 320_000.0)).await;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        assert_eq!(received, 1 << 20);
        assert!(started.elapsed() > Duration::from_secs(2), "{:?}", started.elapsed());
    });
    assert!(!server.log().contains("flow-control window"), "{}", server.log());
}

#[test]
fn a_response_whose_last_bytes_never_get_window_does_not_keep_its_connection() {
    // --header-timeout is the idle time: once no stream is open here, the
    // connection is asked to close; --io-timeout is how long it may then linger.
    let server = Server::start(&python_fixtures(), &["--header-timeout", "1s", "--io-timeout", "1s"]);
    block_on(async {
        // 64 KiB whole: one byte more than the 65,535-byte window a client starts
        // with. The body hands its last piece over with window for all but that
        // byte, so the stream ends here while the byte waits in hyper's buffer.
        let response = h2c_get(server.addr, "/big_write?whole=64").await;
        assert_eq!(response.status(), 200);
        assert_eq!(read_until_cut(response.into_body()).await, 65_535);
    });
    assert!(
        server.wait_for_log("for the client to open its flow-control window", SLACK),
        "{}",
        server.log()
    );
}
