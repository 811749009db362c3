//! HTTP/2 over TLS with real clients (the h2 crate's client over tokio-rustls, and curl):
//! each stream is one exchange; a reset stream tells its owner alone; a connection that ends
//! tells every owner on it; one stream the client does not read does not stall another; and
//! broadcasts reach HTTP/2 subscribers unframed.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use crier_core::config::ServerConfig;
use crier_core::connection::Push;
use crier_core::http::Version;
use crier_core::report::CloseReason;
use crier_core::tls::{Alpn, DEFAULT_ALPN};
use rustls::pki_types::ServerName;
use support::tls::Cert;
use support::{stream_one_event, succeeded, Event, TestConnection, TestServer};

const HEADERS: &[(&str, &str)] = &[("content-type", "text/event-stream")];

fn cert() -> Cert {
    Cert::new()
}

fn h2_server(cert: &Cert, config: ServerConfig) -> TestServer {
    let quiet = ServerConfig {
        heartbeat: None,
        ..config
    };
    TestServer::start(cert.server_config(&DEFAULT_ALPN, quiet))
}

/// Connects an HTTP/2 client over TLS, on the test server's runtime.
async fn connect(addr: std::net::SocketAddr, cert: &Cert) -> Client {
    let config = cert.client_config(b"h2");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // A browser's connection window is megabytes (Chromium's 15 MiB), its streams' 64 KiB
    // or more: a stream it does not read holds its own window, not the connection's.
    let (send, connection) = h2::client::Builder::new()
        .initial_connection_window_size(4 * 1024 * 1024)
        .handshake(tls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Client { send, task }
}

/// A client connection: the handle that opens streams, and the task that runs it (aborted,
/// it drops the socket: a FIN with no GOAWAY, as a browser that is killed).
struct Client {
    send: h2::client::SendRequest<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}

/// Opens a stream for `path` and returns the client's body handle once the owner `owner`
/// streams an SSE head.
fn open_stream(
    server: &TestServer,
    client: &mut Client,
    path: &str,
    owner: u32,
) -> (TestConnection, u64, h2::RecvStream) {
    let (response, _) = client.send.send_request(get(path), true).unwrap();
    let (connection, exchange, head) = server.next_request(owner);
    assert_eq!(head.version, Version::Http2);
    assert_eq!(head.path, path);
    assert_eq!(head.header("host"), Some(&b"localhost"[..]));
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    let response = server
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), response).await })
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(!response.headers().contains_key("transfer-encoding"));
    (connection, exchange, response.into_body())
}

fn read_data(server: &TestServer, body: &mut h2::RecvStream) -> Bytes {
    server.runtime.block_on(async {
        let data = tokio::time::timeout(Duration::from_secs(5), body.data())
            .await
            .expect("no data in time")
            .expect("stream ended")
            .unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        data
    })
}

fn closes(server: &TestServer, count: usize) -> Vec<(u32, u64, CloseReason)> {
    (0..count)
        .map(|_| match server.next_event(Duration::from_secs(5)) {
            Event::Closed {
                owner,
                exchange,
                reason,
            } => (owner, exchange, reason),
            _ => panic!("expected a close report"),
        })
        .collect()
}

fn no_event_within(server: &TestServer, wait: Duration) {
    let mut events = server.events.lock().unwrap();
    let got = server
        .runtime
        .block_on(async { tokio::time::timeout(wait, events.recv()).await });
    assert!(got.is_err(), "an unexpected report came");
}

#[test]
fn ten_streams_on_one_connection_a_reset_tells_its_owner_only() {
    let cert = cert();
    let server = h2_server(&cert, ServerConfig::default());
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let mut streams: Vec<_> = (1..=10)
        .map(|owner| open_stream(&server, &mut client, &format!("/s/{owner}"), owner))
        .collect();
    for (connection, exchange, _) in &streams {
        connection.chunk(*exchange, b"data: live\n\n").unwrap();
    }
    for (_, _, body) in &mut streams {
        assert_eq!(
            read_data(&server, body),
            Bytes::from_static(b"data: live\n\n")
        );
    }
    assert_eq!(server.server.stats().connections, 1);
    // The client closes stream 4 (as a browser closing one EventSource).
    let (_, exchange4, body4) = streams.remove(3);
    drop(body4);
    assert_eq!(
        closes(&server, 1),
        vec![(4, exchange4, CloseReason::Closed)]
    );
    no_event_within(&server, Duration::from_millis(100));
    for (connection, exchange, body) in &mut streams {
        connection.chunk(*exchange, b"data: still\n\n").unwrap();
        assert_eq!(
            read_data(&server, body),
            Bytes::from_static(b"data: still\n\n")
        );
    }
    // The connection ends (the client goes away without GOAWAY): every other owner is told.
    client.task.abort();
    let told = closes(&server, 9);
    let mut owners: Vec<u32> = told.iter().map(|t| t.0).collect();
    owners.sort();
    assert_eq!(owners, vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert!(told.iter().all(|t| t.2 == CloseReason::Closed));
    drop(streams);
}

#[test]
fn a_stream_the_client_does_not_read_fills_its_own_queue_and_stalls_no_other() {
    let cert = cert();
    let server = h2_server(
        &cert,
        ServerConfig {
            write_queue_bytes: 32 * 1024,
            ..ServerConfig::default()
        },
    );
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let (slow, slow_exchange, _slow_body) = open_stream(&server, &mut client, "/slow", 1);
    let (fast, fast_exchange, mut fast_body) = open_stream(&server, &mut client, "/fast", 2);
    // The slow stream's window (64 KiB) and h2's buffer fill, then its queue.
    let block = vec![b'x'; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.chunk(slow_exchange, &block).unwrap() == Push::Queued {
        assert!(
            Instant::now() < deadline,
            "the slow stream's queue never filled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The fast one still flows, many times its own window.
    let mut got = 0;
    while got < 512 * 1024 {
        while fast.chunk(fast_exchange, &block).unwrap() == Push::Queued {}
        got += read_data(&server, &mut fast_body).len();
        assert!(
            Instant::now() < deadline,
            "the fast stream stalled at {got}"
        );
    }
}

#[test]
fn broadcasts_reach_http2_subscribers_unframed() {
    let cert = cert();
    let server = h2_server(&cert, ServerConfig::default());
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let (connection, exchange, mut body) = open_stream(&server, &mut client, "/t", 1);
    let hub = &server.server.shared().hub;
    hub.subscribe(&connection, exchange, &["room".to_string()], None)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.subscriber_count("room") == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    hub.broadcast(
        "room",
        crier_core::hub::OwnedEvent {
            data: Some("hello".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        read_data(&server, &mut body),
        Bytes::from_static(b"data: hello\n\n")
    );
}

/// Runs `curl --http2 -v` on `path` against `server`, on a thread; `cert` is trusted.
fn curl(
    server: &TestServer,
    cert: &Cert,
    path: &str,
) -> std::thread::JoinHandle<std::process::Output> {
    let dir = std::env::temp_dir().join(format!(
        "crier-h2-{}-{}",
        std::process::id(),
        server.addr().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let port = server.addr().port();
    let url = format!("https://localhost:{port}{path}");
    std::thread::spawn(move || {
        let output = std::process::Command::new("curl")
            .args(["-sS", "-v", "--http2", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-w", "\n%{http_version}"])
            .arg(url)
            .output()
            .expect("curl runs");
        let _ = std::fs::remove_dir_all(dir);
        output
    })
}

#[test]
fn curl_speaks_http2_over_tls() {
    let cert = cert();
    let server = h2_server(&cert, ServerConfig::default());
    let curl = curl(&server, &cert, "/events");
    let (connection, exchange, head) = server.next_request(1);
    assert_eq!(head.version, Version::Http2);
    assert_eq!(head.tls.as_ref().and_then(|t| t.alpn), Some(Alpn::H2));
    stream_one_event(&connection, exchange);
    let output = succeeded(curl);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "data: one\n\n\n2");
}

#[test]
fn inform_sends_a_1xx_headers_frame_before_the_response() {
    let cert = cert();
    let server = h2_server(&cert, ServerConfig::default());
    let curl = curl(&server, &cert, "/hints");
    let (connection, exchange, _) = server.next_request(1);
    let link = [("link", "</app.css>; rel=preload")];
    connection.inform(exchange, 103, None, &link).unwrap();
    connection
        .inform(exchange, 103, None, &[("link", "</app.js>; rel=preload")])
        .unwrap();
    stream_one_event(&connection, exchange);
    let output = succeeded(curl);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "data: one\n\n\n2");
    // curl -v prints each head it receives, interim ones too, in order.
    let trace = String::from_utf8_lossy(&output.stderr);
    let heads: Vec<&str> = trace
        .lines()
        .filter_map(|line| line.strip_prefix("< "))
        .filter(|line| line.starts_with("HTTP/2 ") || line.starts_with("link: "))
        .collect();
    assert_eq!(
        heads,
        [
            "HTTP/2 103 ",
            "link: </app.css>; rel=preload",
            "HTTP/2 103 ",
            "link: </app.js>; rel=preload",
            "HTTP/2 200 ",
        ],
        "{trace}"
    );
}

#[test]
fn a_subscriber_stream_not_read_overflows_alone_and_the_other_stream_goes_on() {
    let cert = cert();
    let server = h2_server(
        &cert,
        ServerConfig {
            write_queue_bytes: 16 * 1024,
            ..ServerConfig::default()
        },
    );
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let (slow, slow_exchange, _slow_body) = open_stream(&server, &mut client, "/slow", 1);
    let (fast, fast_exchange, mut fast_body) = open_stream(&server, &mut client, "/fast", 2);
    let hub = &server.server.shared().hub;
    let topics = ["room".to_string()];
    hub.subscribe(&slow, slow_exchange, &topics, None).unwrap();
    hub.subscribe(&fast, fast_exchange, &topics, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.subscriber_count("room") < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let event = crier_core::hub::OwnedEvent {
        data: Some("x".repeat(1000)),
        ..Default::default()
    };
    let mut received = 0;
    let told = loop {
        hub.broadcast("room", event.clone()).unwrap();
        received += read_data(&server, &mut fast_body).len();
        if let Some(report) = server.try_event() {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "no overflow after {received} bytes"
        );
    };
    assert!(matches!(
        told,
        Event::Closed {
            owner: 1,
            reason: CloseReason::Overflow,
            ..
        }
    ));
    // The fast stream, on the same connection, still gets every broadcast.
    hub.broadcast("room", event).unwrap();
    let mut tail = read_data(&server, &mut fast_body);
    while !tail.ends_with(b"\n\n") {
        tail = read_data(&server, &mut fast_body);
    }
}

/// Sends a POST of `body` on a new stream; returns the owner's side once the request came.
fn post(
    server: &TestServer,
    client: &mut Client,
    body: &'static [u8],
    owner: u32,
) -> (TestConnection, u64, h2::client::ResponseFuture) {
    let request = http::Request::post("https://localhost/upload")
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let (response, mut send) = client.send.send_request(request, false).unwrap();
    send.send_data(Bytes::from_static(body), true).unwrap();
    // An earlier owner's body wake may come first: it is not this request's business.
    loop {
        match server.next_event(Duration::from_secs(5)) {
            Event::Request {
                connection,
                exchange,
                head,
            } => {
                assert_eq!(head.method, "POST");
                // A refused request (413) is over before an owner can take it.
                let _ = connection.set_owner(exchange, owner);
                return (connection, exchange, response);
            }
            Event::Wake { .. } => {}
            _ => panic!("expected a request"),
        }
    }
}

#[test]
fn a_request_body_reaches_the_owner_and_one_past_max_body_gets_413() {
    let cert = cert();
    let mut config = ServerConfig::default();
    config.limits.max_body = 10;
    let server = h2_server(&cert, config);
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let (connection, exchange, _response) = post(&server, &mut client, b"hello", 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        match connection.read_body(exchange, 1024).unwrap() {
            crier_core::connection::BodyRead::Data { bytes, done } => {
                got.extend(bytes);
                if done {
                    break;
                }
            }
            crier_core::connection::BodyRead::Wait => {
                assert!(Instant::now() < deadline, "the body never came");
                std::thread::sleep(Duration::from_millis(5));
            }
            crier_core::connection::BodyRead::Failed(error) => panic!("failed: {error:?}"),
        }
    }
    assert_eq!(got, b"hello");
    let (_connection, _exchange, response) = post(&server, &mut client, b"far too long", 2);
    let response = server
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), response).await })
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[test]
fn an_idle_http2_stream_gets_heartbeats() {
    let cert = cert();
    let server = TestServer::start(cert.server_config(
        &DEFAULT_ALPN,
        ServerConfig {
            heartbeat: Some(Duration::from_millis(50)),
            ..ServerConfig::default()
        },
    ));
    let mut client = server.runtime.block_on(connect(server.addr(), &cert));
    let (_connection, _exchange, mut body) = open_stream(&server, &mut client, "/quiet", 1);
    assert_eq!(read_data(&server, &mut body), Bytes::from_static(b":\n\n"));
}
