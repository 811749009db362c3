//! Shared helpers for crier_core's integration tests: a [`Notify`] over a channel, so tests
//! play the BEAM's part, and a blocking TCP client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crier_core::config::ServerConfig;
use crier_core::connection::Connection;
use crier_core::http::RequestHead;
use crier_core::report::{CloseReason, Wake};
use crier_core::reporter::Reporter;
use crier_core::server::Server;
use tokio::sync::mpsc;

pub mod raw_h2;
pub mod tls;

/// A response head's headers for an SSE stream.
pub const SSE_HEADERS: &[(&str, &str)] = &[("content-type", "text/event-stream")];
/// The plainest HTTP/1.1 request.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The default configuration without heartbeats, whose writes would interleave with what a
/// test expects to read.
pub fn quiet_config() -> ServerConfig {
    ServerConfig {
        heartbeat: None,
        ..ServerConfig::default()
    }
}

/// Everything the core reports, in order.
pub enum Event {
    Request {
        connection: Arc<Connection<ChannelNotify>>,
        exchange: u64,
        head: RequestHead,
    },
    Closed {
        owner: u32,
        exchange: u64,
        reason: CloseReason,
    },
    Wake {
        owner: u32,
        exchange: u64,
        what: Wake,
    },
    Stopped,
}

/// Reports to a channel; owners are plain numbers.
pub struct ChannelNotify {
    events: mpsc::UnboundedSender<Event>,
}

impl ChannelNotify {
    /// A reporter and the receiving end of its reports, for a runtime a test builds itself.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (ChannelNotify { events }, rx)
    }
}

impl Reporter for ChannelNotify {
    type Owner = u32;

    fn request(&self, connection: &Arc<Connection<Self>>, exchange: u64, head: RequestHead) {
        let _ = self.events.send(Event::Request {
            connection: connection.clone(),
            exchange,
            head,
        });
    }

    fn closed(&self, owner: &u32, exchange: u64, reason: CloseReason) {
        let _ = self.events.send(Event::Closed {
            owner: *owner,
            exchange,
            reason,
        });
    }

    fn wake(&self, owner: &u32, exchange: u64, what: Wake) {
        let _ = self.events.send(Event::Wake {
            owner: *owner,
            exchange,
            what,
        });
    }

    fn stopped(&self) {
        let _ = self.events.send(Event::Stopped);
    }
}

/// A connection as the core hands it to the tests.
pub type TestConnection = Arc<Connection<ChannelNotify>>;

/// A server on 127.0.0.1 with a port of its own, and the receiving end of its reports.
pub struct TestServer {
    pub server: Server<ChannelNotify>,
    pub events: Mutex<mpsc::UnboundedReceiver<Event>>,
    pub runtime: tokio::runtime::Runtime,
}

impl TestServer {
    /// Starts a server with `config` (its address is replaced by 127.0.0.1:0).
    pub fn start(config: ServerConfig) -> Self {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a server with `config` listening on `addr`.
    pub fn start_on(mut config: ServerConfig, addr: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        config.addr = addr;
        let (tx, rx) = mpsc::unbounded_channel();
        let server =
            Server::start(config, ChannelNotify { events: tx }, runtime.handle(), 0).expect("bind");
        TestServer {
            server,
            events: Mutex::new(rx),
            runtime,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The next report, or a panic after `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Event {
        let mut events = self.events.lock().unwrap();
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, events.recv()).await })
            .expect("no report from the server in time")
            .expect("report channel closed")
    }

    /// A report already made, if any, without waiting.
    pub fn try_event(&self) -> Option<Event> {
        self.events.lock().unwrap().try_recv().ok()
    }

    /// The next request, taken by owner `owner`.
    pub fn next_request(&self, owner: u32) -> (TestConnection, u64, RequestHead) {
        match self.next_event(Duration::from_secs(5)) {
            Event::Request {
                connection,
                exchange,
                head,
            } => {
                connection.set_owner(exchange, owner).expect("owner");
                (connection, exchange, head)
            }
            _ => panic!("expected a request"),
        }
    }

    /// Connects a client, sends `raw` on it and takes the request that comes, as owner `owner`.
    pub fn request(&self, raw: &[u8], owner: u32) -> (TcpStream, TestConnection, u64, RequestHead) {
        let mut client = self.connect();
        send(&mut client, raw);
        let (connection, exchange, head) = self.next_request(owner);
        (client, connection, exchange, head)
    }

    /// Connects a blocking client with a read timeout.
    pub fn connect(&self) -> TcpStream {
        self.connect_to(self.addr())
    }

    /// Connects a blocking client with a read timeout to `addr`, one of the server's.
    pub fn connect_to(&self, addr: SocketAddr) -> TcpStream {
        let client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    }
}

/// Sends `raw` on `client`.
pub fn send(client: &mut TcpStream, raw: &[u8]) {
    client.write_all(raw).expect("send");
}

/// Reads until `needle` appears in what was read (or panics after the read timeout).
pub fn read_until(client: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = client.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before {:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Reads until the server closes; returns everything read.
pub fn read_to_end(client: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    got
}

/// Has owner side `connection` send an SSE response's head.
pub fn sse_head(connection: &TestConnection, exchange: u64) {
    let headers = [("content-type", "text/event-stream")];
    connection
        .send_chunked(exchange, 200, None, &headers, true)
        .unwrap();
}

/// Has owner side `connection` stream an SSE head, one event (`data: one`) and the end.
pub fn stream_one_event(connection: &TestConnection, exchange: u64) {
    sse_head(connection, exchange);
    connection.chunk(exchange, b"data: one\n\n").unwrap();
    assert!(connection.finish(exchange));
}

/// The output of a client command run on a thread, once it succeeded.
pub fn succeeded(command: std::thread::JoinHandle<std::process::Output>) -> std::process::Output {
    let output = command.join().unwrap();
    assert!(output.status.success(), "the client failed: {output:?}");
    output
}
