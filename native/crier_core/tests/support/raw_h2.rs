//! A raw HTTP/2 client over TLS, frame by frame, for what no real client sends: hostile
//! frames, floods, a silent peer. Shared by the HTTP/2 tests that need one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crier_core::config::ServerConfig;
use crier_core::report::CloseReason;
use crier_core::tls::DEFAULT_ALPN;
use rustls::pki_types::ServerName;

use super::tls::Cert;
use super::{Event, TestConnection, TestServer};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub struct Setup {
    pub server: TestServer,
    pub cert: Cert,
}

pub fn setup_with(config: ServerConfig) -> Setup {
    let cert = Cert::new();
    let quiet = ServerConfig {
        heartbeat: None,
        ..config
    };
    let server = TestServer::start(cert.server_config(&DEFAULT_ALPN, quiet));
    Setup { server, cert }
}

pub fn setup() -> Setup {
    setup_with(ServerConfig::default())
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A raw HTTP/2 client: the preface and an empty SETTINGS sent, nothing else.
pub fn raw_client(setup: &Setup) -> Tls {
    let config = setup.cert.client_config(b"h2");
    let session =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(setup.server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut client = rustls::StreamOwned::new(session, tcp);
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    send(&mut client, SETTINGS, 0, 0, &[]);
    client
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn send(client: &mut Tls, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    client
        .write_all(&frame(kind, flags, stream, payload))
        .unwrap();
}

/// A GET's header block: `:method GET`, `:scheme https`, `:path /`, `:authority localhost`,
/// from HPACK's static table, plus `extra` literal bytes.
pub fn get_block(extra: &[u8]) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(extra);
    block
}

/// One frame the server sent: type, flags, stream, payload.
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

pub fn read_frame(client: &mut Tls) -> Option<Frame> {
    let mut head = [0u8; 9];
    client.read_exact(&mut head).ok()?;
    let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
    let mut payload = vec![0u8; len];
    client.read_exact(&mut payload).ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Reads frames until one matches `wanted`; `None` if the connection ends first.
pub fn until(client: &mut Tls, mut wanted: impl FnMut(&Frame) -> bool) -> Option<Frame> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let frame = read_frame(client)?;
        if wanted(&frame) {
            return Some(frame);
        }
    }
    None
}

pub fn code(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([
        payload[at],
        payload[at + 1],
        payload[at + 2],
        payload[at + 3],
    ])
}

pub fn goaway_code(client: &mut Tls) -> Option<u32> {
    until(client, |f| f.kind == GOAWAY).map(|f| code(&f.payload, 4))
}

/// The connection still answers: a PING comes back acknowledged.
pub fn answers_ping(client: &mut Tls) -> bool {
    send(client, PING, 0, 0, b"crier!!!");
    until(client, |f| f.kind == PING && f.flags & ACK != 0)
        .is_some_and(|f| f.payload == b"crier!!!")
}

/// A well-behaved stream on its own connection, raw too: its owner streams, and its data
/// still arrives after the attack.
pub struct Victim {
    pub client: Tls,
    pub connection: TestConnection,
    pub exchange: u64,
}

/// Opens stream 1 on `client` as a GET, has owner `owner` stream an SSE head on it, and
/// waits for the head.
pub fn open_sse(setup: &Setup, client: &mut Tls, owner: u32) -> (TestConnection, u64) {
    open_sse_on(setup, client, 1, owner)
}

/// Opens stream `stream` (odd, above the last) on `client` as a GET, has owner `owner`
/// stream an SSE head on it, and waits for the head.
pub fn open_sse_on(
    setup: &Setup,
    client: &mut Tls,
    stream: u32,
    owner: u32,
) -> (TestConnection, u64) {
    send(
        client,
        HEADERS,
        END_STREAM | END_HEADERS,
        stream,
        &get_block(&[]),
    );
    let (connection, exchange, _) = setup.server.next_request(owner);
    super::sse_head(&connection, exchange);
    until(client, |f| f.kind == HEADERS && f.stream == stream).expect("the stream's head");
    (connection, exchange)
}

pub fn victim(setup: &Setup) -> Victim {
    let mut client = raw_client(setup);
    let (connection, exchange) = open_sse(setup, &mut client, 1000);
    Victim {
        client,
        connection,
        exchange,
    }
}

impl Victim {
    pub fn still_streams(&mut self) {
        self.connection
            .chunk(self.exchange, b"data: fine\n\n")
            .unwrap();
        let data = until(&mut self.client, |f| f.kind == DATA && f.stream == 1)
            .expect("the victim's data");
        assert_eq!(data.payload, b"data: fine\n\n");
    }
}

/// Takes every report for `wait`, answering none; returns the close reports.
pub fn drain_reports(server: &TestServer, wait: Duration) -> Vec<(u32, CloseReason)> {
    let mut closes = Vec::new();
    let deadline = Instant::now() + wait;
    let mut events = server.events.lock().unwrap();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let next = server
            .runtime
            .block_on(async { tokio::time::timeout(left, events.recv()).await });
        match next {
            Ok(Some(Event::Closed { owner, reason, .. })) => closes.push((owner, reason)),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    closes
}

/// The next `count` close reports, sorted by owner; other reports are skipped. Panics if
/// they do not all come within 5 s.
pub fn next_closes(server: &TestServer, count: usize) -> Vec<(u32, CloseReason)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closes = Vec::new();
    while closes.len() < count {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        if let Event::Closed { owner, reason, .. } = server.next_event(left) {
            closes.push((owner, reason));
        }
    }
    closes.sort_by_key(|c| c.0);
    closes
}

/// Reads frames, acknowledging the server's PINGs as a live client does, until one matches
/// `wanted`; `None` if the connection ends first.
pub fn until_answering(client: &mut Tls, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let frame = read_frame(client)?;
        if frame.kind == PING && frame.flags & ACK == 0 {
            send(client, PING, ACK, 0, &frame.payload);
        }
        if wanted(&frame) {
            return Some(frame);
        }
    }
    None
}

/// Whether the server closed the connection: reads until the end of the stream, within
/// the client's read timeout.
pub fn closed_by_server(client: &mut Tls) -> bool {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => {
            e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::ConnectionReset
        }
    }
}
