//! HTTP/1.1 over TLS keeps the plain path's promises, checked with a rustls client and with
//! curl against a certificate made in the test: requests reach the owner with what the
//! handshake agreed, a client that leaves an idle stream is reported at once, a full queue
//! waits for the reader, heartbeats and keep-alive work, and a handshake that never finishes
//! is dropped like a slowloris head.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crier_core::config::{Limits, ServerConfig};
use crier_core::connection::Push;
use crier_core::http::Version;
use crier_core::report::{CloseReason, Wake};
use crier_core::tls::Alpn;
use rustls::pki_types::ServerName;
use support::tls::Cert;
use support::{Event, TestServer};

const HEADERS: &[(&str, &str)] = &[("content-type", "text/event-stream")];
const GET: &[u8] = b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn cert() -> Cert {
    Cert::new()
}

fn tls_server(cert: &Cert, config: ServerConfig) -> TestServer {
    TestServer::start(cert.server_config(&[Alpn::Http11], config))
}

fn quiet() -> ServerConfig {
    ServerConfig {
        heartbeat: None,
        ..ServerConfig::default()
    }
}

type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A blocking rustls client that trusts `cert` and offers `http/1.1`.
fn connect(server: &TestServer, cert: &Cert) -> Client {
    let config = cert.client_config(b"http/1.1");
    let name = ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(session, tcp)
}

fn read_until(client: &mut Client, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = client.read(&mut buf).expect("read");
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn expect_closed(server: &TestServer, owner: u32, exchange: u64) {
    match server.next_event(Duration::from_secs(5)) {
        Event::Closed {
            owner: o,
            exchange: e,
            reason,
        } => assert_eq!((o, e, reason), (owner, exchange, CloseReason::Closed)),
        _ => panic!("expected a close report"),
    }
}

fn wait_for_no_tasks(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let stats = server.server.stats();
        if stats.tasks == 0 && stats.connections == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("tasks left behind: {:?}", server.server.stats());
}

#[test]
fn a_request_over_tls_reaches_the_owner_with_the_session_and_streams_back() {
    let cert = cert();
    let server = tls_server(&cert, quiet());
    let mut client = connect(&server, &cert);
    client.write_all(GET).unwrap();
    let (connection, exchange, head) = server.next_request(1);
    assert_eq!(head.path, "/events");
    assert_eq!(head.version, Version::Http11);
    let info = head.tls.as_ref().expect("a TLS connection says so");
    assert_eq!(info.version, "TLSv1.3");
    assert_eq!(info.alpn, Some(Alpn::Http11));
    assert_eq!(info.sni.as_deref(), Some("localhost"));
    assert!(info.cipher.starts_with("TLS13_"), "{}", info.cipher);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    connection.chunk(exchange, b"data: hi\n\n").unwrap();
    let got = read_until(&mut client, b"data: hi\n\n");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn an_idle_tls_client_that_leaves_is_reported_without_a_write() {
    let cert = cert();
    let server = tls_server(&cert, quiet());
    let mut client = connect(&server, &cert);
    client.write_all(GET).unwrap();
    let (connection, exchange, _) = server.next_request(7);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    read_until(&mut client, b"\r\n\r\n");
    // The client can read the head before the task has counted it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.stats().queued_bytes > 0 {
        assert!(Instant::now() < deadline, "the head stayed queued");
        std::thread::sleep(Duration::from_millis(1));
    }
    let written = server.server.stats().bytes_written;
    // No close_notify: the TCP FIN alone, as a browser tab that is killed.
    client.sock.shutdown(Shutdown::Both).unwrap();
    expect_closed(&server, 7, exchange);
    assert_eq!(server.server.stats().bytes_written, written);
    wait_for_no_tasks(&server);
}

#[test]
fn a_full_queue_over_tls_waits_for_the_reader_and_wakes_the_owner() {
    let cert = cert();
    let server = tls_server(
        &cert,
        ServerConfig {
            write_queue_bytes: 16 * 1024,
            ..quiet()
        },
    );
    let mut client = connect(&server, &cert);
    client.write_all(GET).unwrap();
    let (connection, exchange, _) = server.next_request(2);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    let block = vec![b'x'; 8 * 1024];
    let mut queued = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The client reads nothing: the socket buffers fill, then the queue.
    while connection.chunk(exchange, &block).unwrap() == Push::Queued {
        queued += block.len();
        assert!(Instant::now() < deadline, "the queue never filled");
        if queued.is_multiple_of(256 * 1024) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Reading frees room, and the owner is told once.
    let mut sink = vec![0u8; 64 * 1024];
    let mut read = 0;
    // The last bytes may be read before the wake is sent: the reads then stop waiting, so
    // the loop polls both, each with a short wait, under one deadline.
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let woken = loop {
        match client.read(&mut sink) {
            Ok(n) => read += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed: {e}"),
        }
        if let Some(event) = server.try_event() {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no wake after reading {read} bytes"
        );
    };
    assert!(matches!(
        woken,
        Event::Wake {
            owner: 2,
            what: Wake::Writable,
            ..
        }
    ));
    assert_eq!(connection.chunk(exchange, &block).unwrap(), Push::Queued);
}

#[test]
fn heartbeats_and_keep_alive_work_over_tls() {
    let cert = cert();
    let server = tls_server(
        &cert,
        ServerConfig {
            heartbeat: Some(Duration::from_millis(50)),
            ..ServerConfig::default()
        },
    );
    let mut client = connect(&server, &cert);
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (connection, exchange, _) = server.next_request(1);
    connection
        .send_resp(exchange, 200, None, &[("x-a", "1")], b"ok")
        .unwrap();
    assert!(connection.finish(exchange));
    read_until(&mut client, b"\r\n\r\nok");
    client.write_all(GET).unwrap();
    let (connection, exchange, head) = server.next_request(2);
    assert_eq!(head.path, "/events");
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    read_until(&mut client, b"\r\n\r\n");
    read_until(&mut client, b":\n\n");
}

#[test]
fn a_tls_handshake_that_never_finishes_is_dropped_after_the_header_timeout() {
    let cert = cert();
    let server = tls_server(
        &cert,
        ServerConfig {
            limits: Limits {
                header_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
            ..quiet()
        },
    );
    // Silent, and one that sends the first bytes of a ClientHello and stalls.
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    for client in [&mut silent, &mut stalled] {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        // The server closes: end of stream (or a reset), not the read timeout.
        match client.read(&mut buf) {
            Ok(0) => {}
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "never closed"),
            Ok(n) => panic!("got {n} bytes from a server that should only close"),
        }
    }
    wait_for_no_tasks(&server);
}

#[test]
fn curl_speaks_http11_over_tls() {
    let cert = cert();
    let dir = std::env::temp_dir().join(format!("crier-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let server = tls_server(&cert, quiet());
    let url = format!("https://localhost:{}/events", server.addr().port());
    let resolve = format!("localhost:{}:127.0.0.1", server.addr().port());
    let curl = std::thread::spawn(move || {
        Command::new("curl")
            .args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &resolve, "-w", "\n%{http_version}", &url])
            .output()
            .expect("curl runs")
    });
    let (connection, exchange, _) = server.next_request(1);
    support::stream_one_event(&connection, exchange);
    let output = support::succeeded(curl);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "data: one\n\n\n1.1"
    );
    let _ = std::fs::remove_dir_all(dir);
}
