//! One connection's life over real sockets, with the BEAM replaced by a channel: a request
//! reaches the owner, chunks arrive framed to the byte, a client that leaves is reported at
//! once without any write, and nothing is left behind.

mod support;

use std::net::Shutdown;
use std::net::SocketAddr;
use std::time::Duration;

use crier_core::config::ServerConfig;
use crier_core::connection::CallError;
use crier_core::http::Version;
use crier_core::report::CloseReason;
use support::{
    quiet_config, read_to_end, read_until, send, Event, TestServer, GET, SSE_HEADERS as HEADERS,
};

fn expect_closed(server: &TestServer, owner: u32, exchange: u64, reason: CloseReason) {
    match server.next_event(Duration::from_secs(5)) {
        Event::Closed {
            owner: o,
            exchange: e,
            reason: r,
        } => assert_eq!((o, e, r), (owner, exchange, reason)),
        _ => panic!("expected a close report"),
    }
}

fn wait_for_no_tasks(server: &TestServer) {
    for _ in 0..500 {
        let stats = server.server.stats();
        if stats.tasks == 0 && stats.connections == 0 && stats.streams == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("tasks left behind: {:?}", server.server.stats());
}

#[test]
fn request_reaches_the_owner_with_its_fields() {
    let server = TestServer::start(quiet_config());
    let (client, connection, _exchange, head) = server.request(
        b"GET /room/1?since=5 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 4\r\n\r\n",
        1,
    );
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/room/1");
    assert_eq!(head.query, "since=5");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.header("last-event-id"), Some(&b"4"[..]));
    assert_eq!(connection.peer, client.local_addr().unwrap());
    assert_eq!(connection.local, client.peer_addr().unwrap());
}

/// The accept loop knows a bound listener's address, but a wildcard listener's connections
/// each reached one of the host's addresses: that one is the connection's local address.
#[test]
fn a_wildcard_listener_reports_the_address_each_client_reached() {
    let server = TestServer::start_on(quiet_config(), SocketAddr::from(([0, 0, 0, 0], 0)));
    let port = server.addr().port();
    // Each client stays connected until the end: a close would be the next report.
    let mut clients = Vec::new();
    for reached in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let mut client = server.connect_to(SocketAddr::from((reached, port)));
        send(&mut client, GET);
        let (connection, _exchange, _head) = server.next_request(1);
        assert_eq!(connection.local, SocketAddr::from((reached, port)));
        assert_eq!(connection.peer, client.local_addr().unwrap());
        clients.push(client);
    }
}

#[test]
fn chunks_are_framed_to_the_byte_and_finish_ends_the_body() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 1);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    connection.chunk(exchange, b"data: a\n\n").unwrap();
    connection.chunk(exchange, b"").unwrap();
    connection.chunk(exchange, &[b'x'; 300]).unwrap();
    assert!(connection.finish(exchange));
    let got = read_until(&mut client, b"0\r\n\r\n");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut expected = b"9\r\ndata: a\n\n\r\n12c\r\n".to_vec();
    expected.extend_from_slice(&[b'x'; 300]);
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(&got[body_at..], &expected[..]);
    // The exchange is over: a stale handle can no longer write.
    assert_eq!(connection.chunk(exchange, b"late"), Err(CallError::Closed));
}

#[test]
fn idle_client_fin_is_reported_without_any_write() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 7);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    let head = read_until(&mut client, b"\r\n\r\n");
    // The counter moves just after the write the client already read: wait for it.
    let written = head.len() as u64;
    for _ in 0..500 {
        if server.server.stats().bytes_written == written {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.server.stats().bytes_written, written);
    client.shutdown(Shutdown::Both).unwrap();
    expect_closed(&server, 7, exchange, CloseReason::Closed);
    assert_eq!(
        server.server.stats().bytes_written,
        written,
        "detection must not need a write"
    );
    assert_eq!(connection.chunk(exchange, b"x"), Err(CallError::Closed));
    wait_for_no_tasks(&server);
}

#[test]
fn client_rst_is_reported() {
    let server = TestServer::start(quiet_config());
    let (client, connection, exchange, _) = server.request(GET, 3);
    let writer = client.try_clone().unwrap();
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    // SO_LINGER 0 turns the close into an RST.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    drop(writer);
    expect_closed(&server, 3, exchange, CloseReason::Closed);
    wait_for_no_tasks(&server);
}

#[test]
fn owner_gone_closes_the_socket_without_a_report() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 1);
    connection
        .send_chunked(exchange, 200, None, HEADERS, false)
        .unwrap();
    connection.owner_gone(exchange);
    let got = read_to_end(&mut client);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    wait_for_no_tasks(&server);
    assert_eq!(
        server.server.stats().closes[CloseReason::OwnerGone.index()].1,
        1
    );
}

#[test]
fn owner_gone_before_a_response_answers_500_and_closes() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 1);
    connection.owner_gone(exchange);
    let got = String::from_utf8(read_to_end(&mut client)).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{got}"
    );
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nInternal Server Error"), "{got}");
    wait_for_no_tasks(&server);
    assert_eq!(
        server.server.stats().closes[CloseReason::OwnerGone.index()].1,
        1
    );
}

#[test]
fn keep_alive_serves_the_next_request_on_the_same_connection() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, first, _) =
        server.request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    connection
        .send_resp(first, 200, None, &[("x-a", "1")], b"one")
        .unwrap();
    assert!(connection.finish(first));
    read_until(&mut client, b"one");
    send(&mut client, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let (same, second, head) = server.next_request(2);
    assert_eq!(head.path, "/b");
    assert!(std::sync::Arc::ptr_eq(&connection, &same));
    assert_ne!(first, second);
    assert_eq!(
        connection.send_resp(first, 200, None, &[("a", "b")], b"stale"),
        Err(CallError::Closed)
    );
    same.send_resp(second, 200, None, &[("x-b", "2")], b"two")
        .unwrap();
    read_until(&mut client, b"two");
}

#[test]
fn many_streams_closed_at_once_are_each_reported_once() {
    let server = TestServer::start(quiet_config());
    let mut clients = Vec::new();
    let mut exchanges = std::collections::HashSet::new();
    for i in 0..200u32 {
        let (client, connection, exchange, _) = server.request(GET, i);
        connection
            .send_chunked(exchange, 200, None, HEADERS, true)
            .unwrap();
        exchanges.insert(exchange);
        clients.push(client);
    }
    drop(clients);
    for _ in 0..200 {
        match server.next_event(Duration::from_secs(5)) {
            Event::Closed {
                exchange, reason, ..
            } => {
                assert_eq!(reason, CloseReason::Closed);
                assert!(
                    exchanges.remove(&exchange),
                    "reported twice or unknown: {exchange}"
                );
            }
            _ => panic!("expected only close reports"),
        }
    }
    wait_for_no_tasks(&server);
}

#[test]
fn stop_listening_frees_the_port_before_it_returns_and_keeps_open_connections() {
    let server = TestServer::start(quiet_config());
    let addr = server.addr();
    let (mut client, connection, exchange, _) = server.request(GET, 4);
    server.server.stop_listening();
    // The port is free at once: a new listener binds it (without SO_REUSEPORT).
    let rebound = std::net::TcpListener::bind(addr).expect("the port is still bound");
    drop(rebound);
    // The open connection is still served.
    connection
        .send_resp(exchange, 200, None, HEADERS, b"ok")
        .unwrap();
    let answer = read_until(&mut client, b"ok");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}

/// Finding 2 of issue 10: a client that sends more pipelined bytes than the read buffer takes
/// must not switch close detection off. The read-side wait holds in every state.
#[test]
fn a_fin_after_many_pipelined_bytes_is_still_reported() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 5);
    // Not SSE: no heartbeat will ever write and find the close that way.
    connection
        .send_chunked(exchange, 200, None, HEADERS, false)
        .unwrap();
    read_until(&mut client, b"\r\n\r\n");
    // Far past the request line and header limits (24 KiB together).
    send(&mut client, &vec![b'x'; 64 * 1024]);
    client.shutdown(Shutdown::Write).unwrap();
    expect_closed(&server, 5, exchange, CloseReason::Closed);
    drop(client);
    wait_for_no_tasks(&server);
}

/// Finding 2 of issue 10, while a request body waits: the owner has not asked for the body of
/// an `Expect: 100-continue` request, so nothing is read, and a client that leaves is still
/// seen at once.
#[test]
fn a_client_that_leaves_while_its_body_is_unread_is_reported() {
    let server = TestServer::start(quiet_config());
    let (client, connection, exchange, _) = server.request(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
        6,
    );
    connection
        .send_chunked(exchange, 200, None, HEADERS, false)
        .unwrap();
    client.shutdown(Shutdown::Both).unwrap();
    expect_closed(&server, 6, exchange, CloseReason::Closed);
    wait_for_no_tasks(&server);
}

/// Finding 3 of issue 10: `send_chunked` answered with a head alone (HEAD, 204, 304) opens no
/// stream, so the `streams` gauge comes back to 0 after any mix of requests.
#[test]
fn head_and_bodiless_answers_to_send_chunked_leave_no_stream_counted() {
    let server = TestServer::start(quiet_config());
    let mut client = server.connect();
    let requests: [(&[u8], i64); 4] = [
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (GET, 204),
        (GET, 304),
        (GET, 200),
    ];
    for (n, (raw, status)) in requests.into_iter().enumerate() {
        send(&mut client, raw);
        let (connection, exchange, _) = server.next_request(n as u32);
        connection
            .send_chunked(exchange, status, None, HEADERS, true)
            .unwrap();
        if status == 200 {
            // A HEAD answer takes the chunk and sends nothing of it.
            connection.chunk(exchange, b"data: x\n\n").unwrap();
        }
        assert!(connection.finish(exchange));
        // A HEAD, 204 or 304 answer ends with its head; the GET's body with its last chunk.
        let end: &[u8] = if n == 3 { b"0\r\n\r\n" } else { b"\r\n\r\n" };
        read_until(&mut client, end);
    }
    for _ in 0..500 {
        if server.server.stats().streams == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        server.server.stats().streams,
        0,
        "{:?}",
        server.server.stats()
    );
    drop(client);
    wait_for_no_tasks(&server);
}

/// `heartbeat: None` sends none, told apart from the default by the default's own interval:
/// on a runtime whose clock is paused (and runs ahead whenever every task waits), an idle SSE
/// stream with the default heartbeat gets one, and a stream with none gets nothing for an
/// hour of that clock, in milliseconds of real time.
#[test]
fn no_heartbeat_means_none_ever_and_the_default_sends_one() {
    let idle_hour = |heartbeat: Option<Duration>| -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (reporter, mut events) = support::ChannelNotify::channel();
        let config = ServerConfig {
            heartbeat,
            // Only the heartbeat may write: no other timer of the hour may end the stream.
            tcp_keepalive: None,
            tcp_user_timeout: None,
            ..ServerConfig::default()
        };
        let server =
            crier_core::server::Server::start(config, reporter, runtime.handle(), 0).expect("bind");
        runtime.block_on(async {
            let mut client = tokio::net::TcpStream::connect(server.local_addr())
                .await
                .unwrap();
            client.write_all(GET).await.unwrap();
            let Some(Event::Request {
                connection,
                exchange,
                ..
            }) = events.recv().await
            else {
                panic!("expected a request");
            };
            connection.set_owner(exchange, 1).unwrap();
            connection
                .send_chunked(exchange, 200, None, HEADERS, true)
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(3600), async {
                loop {
                    let n = client.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed");
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n:\n\n\r\n") {
                        return;
                    }
                }
            })
            .await;
            let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            got.split_off(body_at)
        })
    };
    assert_eq!(
        idle_hour(ServerConfig::default().heartbeat),
        b"3\r\n:\n\n\r\n"
    );
    assert_eq!(idle_hour(None), b"");
}
