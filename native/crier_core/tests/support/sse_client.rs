//! A blocking SSE client over a real socket (HTTP/1.1, chunked, read by the spec-exact parser
//! of `event_stream.rs`), and an owner that plays the Elixir handler's part for topic tests:
//! it answers every request with an SSE head, subscribes the stream to the topics named in
//! its path (honouring `Last-Event-ID`), and, unless the query says `keep`, lets go of it as
//! a handler process that returns and exits would.
//!
//! A test file includes it after `mod support;` and the parser:
//! `#[path = "support/event_stream.rs"] mod event_stream;`
//! `#[path = "support/sse_client.rs"] mod sse_client;`

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crier_core::connection::Connection;
use crier_core::report::CloseReason;

use crate::event_stream::{Dispatched, Parser};
use crate::support::{ChannelNotify, Event, TestServer};

/// The head `Crier.sse/2` sends.
pub const SSE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// One `EventSource`-like connection.
pub struct SseClient {
    pub socket: TcpStream,
    /// Response bytes after the head, not yet de-chunked.
    pending: Vec<u8>,
    /// The response head, as text.
    pub head: String,
    /// The parser, which keeps the last event ID across reconnects.
    pub parser: Parser,
    /// The server ended the response (last chunk) or closed the socket.
    pub ended: bool,
}

impl SseClient {
    /// Opens `path` with an optional `Last-Event-ID` and reads the response head.
    pub fn connect(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> Self {
        Self::connect_with(addr, path, last_event_id, None, Parser::new())
    }

    /// As [`SseClient::connect`], with a small receive buffer (`recv_buffer` bytes) for a
    /// client meant to fall behind, and a parser carried over from an earlier connection.
    pub fn connect_with(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
        recv_buffer: Option<usize>,
        mut parser: Parser,
    ) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        socket.connect(&addr.into()).expect("connect");
        let mut socket: TcpStream = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let extra = last_event_id
            .map(|id| format!("last-event-id: {id}\r\n"))
            .unwrap_or_default();
        socket
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n{extra}\r\n"
                )
                .as_bytes(),
            )
            .expect("send request");
        parser.reconnect();
        let mut client = SseClient {
            socket,
            pending: Vec::new(),
            head: String::new(),
            parser,
            ended: false,
        };
        client.read_head();
        client
    }

    fn read_head(&mut self) {
        loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                self.head = String::from_utf8_lossy(&self.pending[..at]).into_owned();
                self.pending.drain(..at + 4);
                return;
            }
            assert!(self.read_some(), "closed before the response head");
        }
    }

    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.socket.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed (no event in time?): {e}"),
        }
    }

    /// Moves every complete chunk into the parser.
    fn dechunk(&mut self) {
        while !self.ended {
            let Some(line_end) = find(&self.pending, b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.pending[..line_end]).expect("chunk size");
            let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
            if size == 0 {
                self.ended = true;
                return;
            }
            let end = line_end + 2 + size + 2;
            if self.pending.len() < end {
                return;
            }
            assert_eq!(
                &self.pending[end - 2..end],
                b"\r\n",
                "chunk not ended by CRLF"
            );
            let data: Vec<u8> = self.pending[line_end + 2..end - 2].to_vec();
            self.pending.drain(..end);
            self.parser.feed(&data);
        }
    }

    /// The next event, or `None` once the response ended or the socket closed. Panics when
    /// nothing comes for the read timeout.
    pub fn next_event(&mut self) -> Option<Dispatched> {
        loop {
            self.dechunk();
            if let Some(event) = self.parser.events.pop_front() {
                return Some(event);
            }
            if self.ended || !self.read_some() {
                self.ended = true;
                self.parser.end_of_stream();
                return None;
            }
        }
    }

    /// Reads until the response ends or the socket closes; returns the events read on the way.
    pub fn read_to_end(&mut self) -> Vec<Dispatched> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event() {
            events.push(event);
        }
        events
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A stream an owner kept (query `keep`): the test may write to it or drop it.
pub struct Kept {
    pub connection: Arc<Connection<ChannelNotify>>,
    pub exchange: u64,
    pub owner: u32,
}

/// What the owner thread saw.
pub enum Seen {
    /// A stream was subscribed and let go (it lives on in Rust alone).
    Detached { owner: u32 },
    /// A stream was subscribed and kept by its owner.
    Kept(Kept),
    /// The owner of a kept stream was told it closed.
    Closed {
        owner: u32,
        exchange: u64,
        reason: CloseReason,
    },
}

/// Plays the Elixir side until `stop` is set: `GET /a,b?keep` subscribes the stream to
/// topics `a` and `b`; without `keep` the owner finishes and goes away at once.
pub fn serve_subscribers(server: &TestServer, stop: &AtomicBool, seen: mpsc::Sender<Seen>) {
    let mut next_owner = 1u32;
    let mut events = server.events.lock().unwrap();
    while !stop.load(Ordering::SeqCst) {
        let report = server.runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), events.recv()).await
        });
        let Ok(Some(report)) = report else { continue };
        match report {
            Event::Request {
                connection,
                exchange,
                head,
            } => {
                let owner = next_owner;
                next_owner += 1;
                if connection.set_owner(exchange, owner).is_err() {
                    continue; // the client left before its request was served
                }
                if connection
                    .send_chunked(exchange, 200, None, SSE_HEADERS, true)
                    .is_err()
                {
                    continue;
                }
                let topics: Vec<String> = head.path[1..].split(',').map(str::to_string).collect();
                let last_event_id = head
                    .header("last-event-id")
                    .map(|id| String::from_utf8_lossy(id).into_owned());
                let hub = &server.server.shared().hub;
                if hub
                    .subscribe(&connection, exchange, &topics, last_event_id.as_deref())
                    .is_err()
                {
                    continue;
                }
                if head.query.split('&').any(|p| p == "keep") {
                    let _ = seen.send(Seen::Kept(Kept {
                        connection,
                        exchange,
                        owner,
                    }));
                } else {
                    // The handler returns and its process exits: Crier.Request calls finish,
                    // then the resource's monitor reports the owner gone.
                    connection.finish(exchange);
                    connection.owner_gone(exchange);
                    let _ = seen.send(Seen::Detached { owner });
                }
            }
            Event::Closed {
                owner,
                exchange,
                reason,
            } => {
                let _ = seen.send(Seen::Closed {
                    owner,
                    exchange,
                    reason,
                });
            }
            Event::Wake { .. } | Event::Stopped => {}
        }
    }
}
