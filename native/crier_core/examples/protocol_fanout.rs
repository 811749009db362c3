//! Fan-out cost by protocol, in one run on one machine: the same broadcasts to the same
//! number of subscribers over HTTP/1.1 on TCP, HTTP/1.1 over TLS, HTTP/2 with one stream per
//! connection, and HTTP/2 with every stream on one connection. The server's threads' CPU
//! time is read from /proc per thread (the clients run on a runtime of their own), so the
//! figures are the server's cost per delivered event, compared as ratios to plain HTTP/1.1.
//!
//! ```sh
//! cargo run --release -p crier_core --example protocol_fanout [SUBSCRIBERS] [EVENTS] [GAP_µS]
//! ```
//!
//! No BEAM: subscribers are subscribed by the reporter as Crier.subscribe/3 would, so this is
//! the core's cost alone (encode once, fan out, frame, encrypt, write).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crier_core::config::ServerConfig;
use crier_core::connection::Connection;
use crier_core::http::RequestHead;
use crier_core::hub::OwnedEvent;
use crier_core::report::{CloseReason, Wake};
use crier_core::reporter::Reporter;
use crier_core::server::Server;
use crier_core::tls::{self, Alpn};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "t";
const SERVER_THREAD: &str = "crier-srv";

/// Subscribes every request to [`TOPIC`], as a handler calling `Crier.subscribe/3` would.
struct AutoSubscribe;

impl Reporter for AutoSubscribe {
    type Owner = ();

    fn request(&self, connection: &Arc<Connection<Self>>, exchange: u64, _head: RequestHead) {
        let _ = connection.set_owner(exchange, ());
        let headers = [("content-type", "text/event-stream")];
        let _ = connection.send_chunked(exchange, 200, None, &headers, true);
        let hub = &connection.server().hub;
        let _ = hub.subscribe(connection, exchange, &[TOPIC.to_string()], None);
    }

    fn closed(&self, _: &(), _: u64, _: CloseReason) {}
    fn wake(&self, _: &(), _: u64, _: Wake) {}
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Http11Tcp,
    Http11Tls,
    Http2PerConnection,
    Http2OneConnection,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Http11Tcp => "HTTP/1.1, TCP",
            Scenario::Http11Tls => "HTTP/1.1, TLS",
            Scenario::Http2PerConnection => "HTTP/2, a connection per stream",
            Scenario::Http2OneConnection => "HTTP/2, all streams on one connection",
        }
    }
}

/// CPU time (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let ticks_per_sec = 100; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime and stime are 14th and 15th.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Duration::from_millis(ticks * 1000 / ticks_per_sec)
}

/// Counts `z` bytes (the events' payload) after the head until `want`.
async fn count_events_h1<S: AsyncRead + Unpin>(mut stream: S, want: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut head_done = false;
    let mut seen = 0;
    let mut tail = Vec::new();
    while seen < want {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "server closed");
        let mut data = &buf[..n];
        if !head_done {
            tail.extend_from_slice(data);
            match tail.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(at) => {
                    head_done = true;
                    seen += tail[at + 4..].iter().filter(|&&b| b == b'z').count();
                }
                None => continue,
            }
            data = &[];
        }
        seen += data.iter().filter(|&&b| b == b'z').count();
    }
}

async fn count_events_h2(mut body: h2::RecvStream, want: usize) {
    let mut seen = 0;
    while seen < want {
        let data = body.data().await.expect("stream ended").expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        seen += data.iter().filter(|&&b| b == b'z').count();
    }
}

fn client_tls(cert: &CertificateDer<'static>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn h2_connect(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, connection) = h2::client::Builder::new()
        .initial_connection_window_size(16 * 1024 * 1024)
        .initial_window_size(1024 * 1024)
        .handshake(tls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn h2_get() -> http::Request<()> {
    http::Request::get("https://localhost/events")
        .body(())
        .unwrap()
}

/// Opens the subscribers of `scenario` and returns the tasks that read until `want` payload
/// bytes each have arrived.
async fn open_clients(
    scenario: Scenario,
    addr: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
    subscribers: usize,
    want: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    const GET: &[u8] = b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut readers = Vec::new();
    match scenario {
        Scenario::Http11Tcp => {
            for _ in 0..subscribers {
                let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.write_all(GET).await.unwrap();
                readers.push(tokio::spawn(count_events_h1(tcp, want)));
            }
        }
        Scenario::Http11Tls => {
            let connector = client_tls(cert, b"http/1.1");
            for _ in 0..subscribers {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                tls.write_all(GET).await.unwrap();
                readers.push(tokio::spawn(count_events_h1(tls, want)));
            }
        }
        Scenario::Http2PerConnection | Scenario::Http2OneConnection => {
            let connector = client_tls(cert, b"h2");
            let mut shared = None;
            for _ in 0..subscribers {
                let mut send = if scenario == Scenario::Http2OneConnection {
                    if shared.is_none() {
                        shared = Some(h2_connect(addr, &connector).await);
                    }
                    shared.clone().unwrap()
                } else {
                    h2_connect(addr, &connector).await
                };
                send = send.ready().await.unwrap();
                let (response, _) = send.send_request(h2_get(), true).unwrap();
                readers.push(tokio::spawn(async move {
                    let body = response.await.unwrap().into_body();
                    count_events_h2(body, want).await;
                }));
            }
        }
    }
    readers
}

struct Figures {
    deliveries: usize,
    wall: Duration,
    server_cpu: Duration,
}

fn run(scenario: Scenario, subscribers: usize, events: usize, gap: Duration) -> Figures {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let tls = (scenario != Scenario::Http11Tcp).then(|| {
        tls::server_config(
            cert.pem().as_bytes(),
            signing_key.serialize_pem().as_bytes(),
            &[Alpn::H2, Alpn::Http11],
        )
        .unwrap()
    });
    let config = ServerConfig {
        tls,
        heartbeat: None,
        write_queue_bytes: 4 * 1024 * 1024,
        ..ServerConfig::default()
    };
    let server = Server::start(config, AutoSubscribe, server_runtime.handle(), 0).unwrap();
    let addr = server.local_addr();
    let payload = "z".repeat(100);
    let want = events * payload.len();
    let der = cert.der().clone();
    let readers = client_runtime.block_on(open_clients(scenario, addr, &der, subscribers, want));
    let hub = &server.shared().hub;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.subscriber_count(TOPIC) < subscribers {
        assert!(Instant::now() < deadline, "subscribers never all arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu_before = thread_cpu(SERVER_THREAD);
    let started = Instant::now();
    for _ in 0..events {
        let event = OwnedEvent {
            data: Some(payload.clone()),
            ..OwnedEvent::default()
        };
        hub.broadcast(TOPIC, event).unwrap();
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    client_runtime.block_on(async {
        for reader in readers {
            reader.await.unwrap();
        }
    });
    let wall = started.elapsed();
    let server_cpu = thread_cpu(SERVER_THREAD).saturating_sub(cpu_before);
    server.shutdown(None);
    drop(client_runtime);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
    Figures {
        deliveries: subscribers * events,
        wall,
        server_cpu,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    // Microseconds between broadcasts: 0 sends them back to back (the hub batches them into
    // large writes); a gap makes each event its own write, record and frame, as live SSE is.
    let gap = Duration::from_micros(args.next().and_then(|a| a.parse().ok()).unwrap_or(0));
    println!(
        "{subscribers} subscribers, {events} events of 100 bytes, {} µs apart, server on one thread\n",
        gap.as_micros()
    );
    println!("| protocol | deliveries/s | server CPU per delivery | CPU vs HTTP/1.1 TCP |");
    println!("|---|---:|---:|---:|");
    let mut baseline = None;
    for scenario in [
        Scenario::Http11Tcp,
        Scenario::Http11Tls,
        Scenario::Http2PerConnection,
        Scenario::Http2OneConnection,
    ] {
        let figures = run(scenario, subscribers, events, gap);
        let per = figures.server_cpu.as_secs_f64() * 1e6 / figures.deliveries as f64;
        let base = *baseline.get_or_insert(per);
        println!(
            "| {} | {:.0} | {:.2} µs | {:.2}× |",
            scenario.name(),
            figures.deliveries as f64 / figures.wall.as_secs_f64(),
            per,
            per / base
        );
    }
}
