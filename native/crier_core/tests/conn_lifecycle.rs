//! One connection's life over real sockets, with the BEAM replaced by a channel: a request
//! reaches the owner, chunks arrive framed to the byte, a client that leaves is reported at
//! once without any write, and nothing is left behind.

mod support;

use std::net::Shutdown;
use std::time::Duration;

use crier_core::config::ServerConfig;
use crier_core::http::Version;
use crier_core::notify::CloseReason;
use crier_core::stream::StreamError;
use support::{read_to_end, read_until, send, Event, TestServer};

const HEADERS: &[(&str, &str)] = &[("content-type", "text/event-stream")];
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

fn quiet_config() -> ServerConfig {
    ServerConfig {
        heartbeat: None,
        ..ServerConfig::default()
    }
}

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
    let (client, stream, _exchange, head) = server.request(
        b"GET /room/1?since=5 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 4\r\n\r\n",
        1,
    );
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/room/1");
    assert_eq!(head.query, "since=5");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.header("last-event-id"), Some(&b"4"[..]));
    assert_eq!(stream.peer, client.local_addr().unwrap());
}

#[test]
fn chunks_are_framed_to_the_byte_and_finish_ends_the_body() {
    let server = TestServer::start(quiet_config());
    let (mut client, stream, exchange, _) = server.request(GET, 1);
    stream
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    stream.chunk(exchange, b"data: a\n\n").unwrap();
    stream.chunk(exchange, b"").unwrap();
    stream.chunk(exchange, &[b'x'; 300]).unwrap();
    assert!(stream.finish(exchange));
    let got = read_until(&mut client, b"0\r\n\r\n");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut expected = b"9\r\ndata: a\n\n\r\n12c\r\n".to_vec();
    expected.extend_from_slice(&[b'x'; 300]);
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(&got[body_at..], &expected[..]);
    // The exchange is over: a stale handle can no longer write.
    assert_eq!(stream.chunk(exchange, b"late"), Err(StreamError::Closed));
}

#[test]
fn idle_client_fin_is_reported_without_any_write() {
    let server = TestServer::start(quiet_config());
    let (mut client, stream, exchange, _) = server.request(GET, 7);
    stream
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
    assert_eq!(stream.chunk(exchange, b"x"), Err(StreamError::Closed));
    wait_for_no_tasks(&server);
}

#[test]
fn client_rst_is_reported() {
    let server = TestServer::start(quiet_config());
    let (client, stream, exchange, _) = server.request(GET, 3);
    let writer = client.try_clone().unwrap();
    stream
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
    let (mut client, stream, exchange, _) = server.request(GET, 1);
    stream
        .send_chunked(exchange, 200, None, HEADERS, false)
        .unwrap();
    stream.owner_gone(exchange);
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
    let (mut client, stream, exchange, _) = server.request(GET, 1);
    stream.owner_gone(exchange);
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
    let (mut client, stream, first, _) = server.request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    stream
        .send_resp(first, 200, None, &[("x-a", "1")], b"one")
        .unwrap();
    assert!(stream.finish(first));
    read_until(&mut client, b"one");
    send(&mut client, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let (same, second, head) = server.next_request(2);
    assert_eq!(head.path, "/b");
    assert!(std::sync::Arc::ptr_eq(&stream, &same));
    assert_ne!(first, second);
    assert_eq!(
        stream.send_resp(first, 200, None, &[("a", "b")], b"stale"),
        Err(StreamError::Closed)
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
        let (client, stream, exchange, _) = server.request(GET, i);
        stream
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
    let (mut client, stream, exchange, _) = server.request(GET, 4);
    server.server.stop_listening();
    // The port is free at once: a new listener binds it (without SO_REUSEPORT).
    let rebound = std::net::TcpListener::bind(addr).expect("the port is still bound");
    drop(rebound);
    // The open connection is still served.
    stream
        .send_resp(exchange, 200, None, HEADERS, b"ok")
        .unwrap();
    let answer = read_until(&mut client, b"ok");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}
