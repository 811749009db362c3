//! Hostile HTTP/2 frames, sent by a raw frame client over TLS, each answered as RFC 9113
//! asks (and as the named limits say) while a well-behaved client on another connection of
//! the same server keeps its stream: rapid reset, oversized headers (an HPACK bomb's
//! effect), CONTINUATION without end, and a window pushed past 2^31 - 1.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crier_core::config::ServerConfig;
use crier_core::report::CloseReason;
use crier_core::tls::DEFAULT_ALPN;
use rustls::pki_types::ServerName;
use support::tls::Cert;
use support::{Event, TestServer};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

struct Setup {
    server: TestServer,
    cert: Cert,
}

fn setup_with(config: ServerConfig) -> Setup {
    let cert = Cert::new();
    let quiet = ServerConfig {
        heartbeat: None,
        ..config
    };
    let server = TestServer::start(cert.server_config(&DEFAULT_ALPN, quiet));
    Setup { server, cert }
}

fn setup() -> Setup {
    setup_with(ServerConfig::default())
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A raw HTTP/2 client: the preface and an empty SETTINGS sent, nothing else.
fn raw_client(setup: &Setup) -> Tls {
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

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn send(client: &mut Tls, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    client
        .write_all(&frame(kind, flags, stream, payload))
        .unwrap();
}

/// A GET's header block: `:method GET`, `:scheme https`, `:path /`, `:authority localhost`,
/// from HPACK's static table, plus `extra` literal bytes.
fn get_block(extra: &[u8]) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(extra);
    block
}

/// One frame the server sent: type, flags, stream, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn read_frame(client: &mut Tls) -> Option<Frame> {
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
fn until(client: &mut Tls, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let frame = read_frame(client)?;
        if wanted(&frame) {
            return Some(frame);
        }
    }
    None
}

fn code(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([
        payload[at],
        payload[at + 1],
        payload[at + 2],
        payload[at + 3],
    ])
}

fn goaway_code(client: &mut Tls) -> Option<u32> {
    until(client, |f| f.kind == GOAWAY).map(|f| code(&f.payload, 4))
}

/// The connection still answers: a PING comes back acknowledged.
fn answers_ping(client: &mut Tls) -> bool {
    send(client, PING, 0, 0, b"crier!!!");
    until(client, |f| f.kind == PING && f.flags & ACK != 0)
        .is_some_and(|f| f.payload == b"crier!!!")
}

/// A well-behaved stream on its own connection, raw too: its owner streams, and its data
/// still arrives after the attack.
struct Victim {
    client: Tls,
    connection: support::TestConnection,
    exchange: u64,
}

/// Opens stream 1 on `client` as a GET, has owner `owner` stream an SSE head on it, and
/// waits for the head.
fn open_sse(setup: &Setup, client: &mut Tls, owner: u32) -> (support::TestConnection, u64) {
    send(
        client,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block(&[]),
    );
    let (connection, exchange, _) = setup.server.next_request(owner);
    let headers = [("content-type", "text/event-stream")];
    connection
        .send_chunked(exchange, 200, None, &headers, true)
        .unwrap();
    until(client, |f| f.kind == HEADERS && f.stream == 1).expect("the stream's head");
    (connection, exchange)
}

fn victim(setup: &Setup) -> Victim {
    let mut client = raw_client(setup);
    let (connection, exchange) = open_sse(setup, &mut client, 1000);
    Victim {
        client,
        connection,
        exchange,
    }
}

impl Victim {
    fn still_streams(&mut self) {
        self.connection
            .chunk(self.exchange, b"data: fine\n\n")
            .unwrap();
        let data = until(&mut self.client, |f| f.kind == DATA && f.stream == 1)
            .expect("the victim's data");
        assert_eq!(data.payload, b"data: fine\n\n");
    }
}

/// Takes every report for `wait`, answering none; returns the close reports.
fn drain_reports(server: &TestServer, wait: Duration) -> Vec<(u32, CloseReason)> {
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

#[test]
fn rapid_reset_ends_the_connection_with_enhance_your_calm() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    let mut burst = Vec::new();
    // 200 pairs, 7 KiB: one TLS record, read whole, so the server's close after its GOAWAY
    // leaves nothing unread that would turn it into an RST and destroy the GOAWAY.
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            stream,
            &get_block(&[]),
        ));
        burst.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    // Written whole: the attack is the burst, not a conversation.
    let _ = attacker.write_all(&burst);
    assert_eq!(goaway_code(&mut attacker), Some(ENHANCE_YOUR_CALM));
    victim.still_streams();
    // The victim's owner was not told anything.
    assert!(drain_reports(&setup.server, Duration::from_millis(200))
        .iter()
        .all(|(owner, _)| *owner != 1000));
}

#[test]
fn a_header_list_past_the_limit_is_refused_without_reaching_an_owner() {
    let setup = setup();
    let mut victim = victim(&setup);
    let requests = setup.server.server.stats().requests;
    let mut attacker = raw_client(&setup);
    // A 30 KiB value: past the 24 KiB limit, in a HEADERS and a CONTINUATION frame.
    let value = vec![b'a'; 30 * 1024];
    let mut literal = vec![0x00, 0x01, b'x', 0x7f];
    let mut rest = value.len() - 127;
    while rest >= 128 {
        literal.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    literal.push(rest as u8);
    literal.extend_from_slice(&value);
    let block = get_block(&literal);
    let (first, second) = block.split_at(16 * 1024);
    send(&mut attacker, HEADERS, END_STREAM, 1, first);
    send(&mut attacker, CONTINUATION, END_HEADERS, 1, second);
    // h2 answers 431 on the stream (a HEADERS that ends it) or resets it; not the connection.
    let answer = until(&mut attacker, |f| {
        f.stream == 1 && (f.kind == RST_STREAM || f.kind == HEADERS)
    })
    .expect("the stream is answered");
    assert!(answer.kind == RST_STREAM || answer.flags & END_STREAM != 0);
    assert!(
        answers_ping(&mut attacker),
        "the connection went with the stream"
    );
    assert_eq!(setup.server.server.stats().requests, requests);
    victim.still_streams();
}

#[test]
fn continuation_without_end_ends_the_connection_with_enhance_your_calm() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    send(&mut attacker, HEADERS, END_STREAM, 1, &get_block(&[]));
    let mut flood = Vec::new();
    // Far past h2's count for a 24 KiB list, and one TLS record (see the rapid reset test).
    for _ in 0..1000 {
        flood.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let _ = attacker.write_all(&flood);
    assert_eq!(goaway_code(&mut attacker), Some(ENHANCE_YOUR_CALM));
    victim.still_streams();
}

#[test]
fn a_stream_window_past_the_maximum_resets_that_stream_only() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    open_sse(&setup, &mut attacker, 7);
    // 65,535 + 2^31 - 1 is past 2^31 - 1: a stream error (RFC 9113 section 6.9.1).
    send(
        &mut attacker,
        WINDOW_UPDATE,
        0,
        1,
        &0x7fff_ffffu32.to_be_bytes(),
    );
    let reset = until(&mut attacker, |f| f.kind == RST_STREAM && f.stream == 1)
        .expect("the stream is reset");
    assert_eq!(code(&reset.payload, 0), FLOW_CONTROL_ERROR);
    assert!(
        answers_ping(&mut attacker),
        "the connection went with the stream"
    );
    let closes = drain_reports(&setup.server, Duration::from_millis(500));
    assert_eq!(closes, vec![(7, CloseReason::Closed)]);
    victim.still_streams();
}

#[test]
fn a_peer_that_answers_no_ping_is_closed_and_every_owner_on_it_told_timeout() {
    let mut config = ServerConfig::default();
    config.h2.ping_interval = Some(Duration::from_millis(200));
    config.h2.ping_timeout = Duration::from_millis(200);
    let setup = setup_with(config);
    // The raw client never answers anything, as a peer gone behind a NAT that keeps the
    // TCP connection: its two streams' owners are told once the PING goes unanswered.
    let mut silent = raw_client(&setup);
    send(
        &mut silent,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block(&[]),
    );
    send(
        &mut silent,
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &get_block(&[]),
    );
    for owner in [1, 2] {
        let (connection, exchange, _) = setup.server.next_request(owner);
        connection
            .send_chunked(
                exchange,
                200,
                None,
                &[("content-type", "text/event-stream")],
                true,
            )
            .unwrap();
    }
    let mut closes = drain_reports(&setup.server, Duration::from_secs(3));
    closes.sort_by_key(|c| c.0);
    assert_eq!(
        closes,
        vec![(1, CloseReason::Timeout), (2, CloseReason::Timeout)]
    );
    drop(silent);
}
