//! HTTP/2 over TLS, with the `h2` crate for framing, HPACK and flow control.
//!
//! Each stream is one exchange: its own [`Connection`] (the shared half the NIFs, the hub and
//! the owner see, exactly as on HTTP/1.1), driven by a task of its own that plays the part
//! [`crate::task`] plays for an HTTP/1.1 socket. The owner API, the write queue, overflow,
//! heartbeats and close reporting are the HTTP/1.1 ones; only the framing differs. An HTTP/2
//! exchange frames its body as an HTTP/1.0 one does (no chunked coding: the body ends with
//! END_STREAM), so broadcasts hand it the unframed bytes every such subscriber shares, and its
//! head is encoded as for HTTP/1.x and turned into a HEADERS frame here.
//!
//! Close detection per stream: the stream task polls `poll_reset`, which answers for that
//! stream alone when the client resets it (RST_STREAM), and with an error for every stream
//! when the connection ends (GOAWAY, FIN, RST, a dead peer found by the kernel, or a PING
//! without answer), so every owner on it is told.
//!
//! The connection's own task ([`serve`]) runs h2 over a [`FrameWatch`] (SETTINGS and PING
//! floods, a client's error GOAWAY), closes a connection that opens no stream within
//! `header_timeout`, or is left with none for `keepalive_timeout`, with GOAWAY NO_ERROR, and
//! on shutdown drains its streams, then closes.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Ping, Reason, RecvStream, SendStream};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::server::TlsStream;

use crate::connection::Connection;
use crate::h2_watch::{Alarm, AlarmBell, FrameWatch};
use crate::http::{BodyKind, HttpError, RequestHead, Version};
use crate::report::CloseReason;
use crate::reporter::Reporter;
use crate::shared::Shared;
use crate::stats::GaugeGuard;
use crate::tls::TlsInfo;

/// h2's connection over the watched TLS stream.
type H2Connection = h2::server::Connection<FrameWatch<TlsStream<TcpStream>>, Bytes>;

/// Why a connection ended, when its streams should hear more than `closed`.
type ConnectionEnd = Arc<OnceLock<CloseReason>>;

/// Where a connection is in its life, as its task drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking streams.
    Open,
    /// The server is stopping: a graceful GOAWAY went out, the open streams drain.
    Draining,
    /// Stopping, and the streams are done: h2 flushes their last frames and closes once
    /// the client answers its shutdown PING; a client that does not is closed after
    /// `close_grace`, the time closed streams get to flush their last bytes.
    Drained,
    /// A last GOAWAY is on its way (idle, drained, or a flood); h2 flushes it and closes,
    /// within `send_timeout`.
    Closing,
}

/// The streams open on one connection, each counted by the [`StreamHold`] its task holds;
/// the connection is idle while there are none.
#[derive(Debug, Default)]
struct OpenStreams {
    count: AtomicUsize,
    none_left: Notify,
}

impl OpenStreams {
    fn hold(self: &Arc<Self>) -> StreamHold {
        self.count.fetch_add(1, AcqRel);
        StreamHold(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.count.load(Acquire) == 0
    }
}

/// One open stream's count in [`OpenStreams`], given back when its task ends.
#[derive(Debug)]
struct StreamHold(Arc<OpenStreams>);

impl Drop for StreamHold {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, AcqRel) == 1 {
            self.0.none_left.notify_one();
        }
    }
}

/// Serves an HTTP/2 connection whose TLS handshake chose `h2`, until it closes.
pub(crate) async fn serve<N: Reporter>(stream: TlsStream<TcpStream>, shared: Arc<Shared<N>>) {
    let tls = Arc::new(TlsInfo::of(stream.get_ref().1));
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let peer = stream.get_ref().0.peer_addr().unwrap_or(unknown);
    let local = stream.get_ref().0.local_addr().unwrap_or(unknown);
    let settings = &shared.config.h2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(settings.initial_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .max_frame_size(settings.max_frame_size)
        .max_header_list_size(settings.max_header_list_size)
        .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(settings.max_local_error_reset_streams))
        .max_send_buffer_size(settings.max_send_buffer_size);
    let bell = Arc::new(AlarmBell::default());
    let watched = FrameWatch::new(stream, settings.max_control_frames_per_second, bell.clone());
    // The client's preface and SETTINGS are part of its head: the same deadline.
    let deadline = Instant::now() + shared.config.limits.header_timeout;
    let handshake = builder.handshake::<_, Bytes>(watched);
    let mut connection = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(connection)) => connection,
        _ => return,
    };
    let end: ConnectionEnd = Arc::new(OnceLock::new());
    let keepalive = keep_alive(
        connection.ping_pong(),
        settings.ping_interval,
        settings.ping_timeout,
    );
    tokio::pin!(keepalive);
    let streams = Arc::new(OpenStreams::default());
    let idle_timeout = shared.config.limits.keepalive_timeout;
    // As on HTTP/1.1: the first request (here, stream) within `header_timeout` of the
    // accept, then `keepalive_timeout` of idleness between them.
    let timer = sleep_until(deadline);
    tokio::pin!(timer);
    let mut phase = Phase::Open;
    loop {
        if phase == Phase::Draining && streams.is_idle() {
            phase = Phase::Drained;
            timer
                .as_mut()
                .reset(Instant::now() + shared.config.close_grace);
        }
        let timed = match phase {
            Phase::Open => streams.is_idle(),
            Phase::Draining => false,
            Phase::Drained | Phase::Closing => true,
        };
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    if phase == Phase::Drained {
                        // Sent before the client saw the GOAWAY: drained like the others.
                        phase = Phase::Draining;
                    }
                    let id = shared.next_conn.fetch_add(1, Relaxed);
                    let hold = streams.hold();
                    let stream = Stream::open(request, respond, &shared, id, (peer, local), &tls, &end);
                    shared.tasks.spawn(stream.run(hold));
                }
                // The connection ended: GOAWAY either way, a protocol error, FIN or RST.
                Some(Err(_)) | None => break,
            },
            _ = shared.stopping.cancelled(), if phase == Phase::Open => {
                // GOAWAY: no new streams; the open ones drain as HTTP/1.1 connections do.
                phase = Phase::Draining;
                connection.graceful_shutdown();
            }
            _ = streams.none_left.notified(), if phase != Phase::Closing => {
                // Idle from now on. A draining connection is done: the top of the loop
                // sets its grace instead.
                if phase == Phase::Open {
                    timer.as_mut().reset(Instant::now() + idle_timeout);
                }
            }
            _ = &mut timer, if timed => {
                if phase == Phase::Closing {
                    // The client takes no bytes: the GOAWAY cannot be flushed.
                    break;
                }
                // Idle (no stream for `keepalive_timeout`), or drained and past the grace.
                phase = close(&mut connection, Reason::NO_ERROR, &mut timer, &shared);
            }
            alarm = bell.rung(), if phase != Phase::Closing => match alarm {
                Alarm::Flood => {
                    phase = close(&mut connection, Reason::ENHANCE_YOUR_CALM, &mut timer, &shared);
                }
                // The client said the connection is broken: nothing more to send it.
                Alarm::PeerFailed(_) => break,
            },
            _ = &mut keepalive => {
                let _ = end.set(CloseReason::Timeout);
                break;
            }
        }
    }
    // Dropping the connection ends every stream still open: each one's task sees its
    // `poll_reset` fail and reports the close.
}

/// Sends GOAWAY with `reason` and the last stream h2 took, resetting the streams still
/// open (their owners are told `closed`); h2 then flushes it and closes, which must
/// happen within `send_timeout`.
fn close<N: Reporter>(
    connection: &mut H2Connection,
    reason: Reason,
    timer: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    shared: &Shared<N>,
) -> Phase {
    connection.abrupt_shutdown(reason);
    timer
        .as_mut()
        .reset(Instant::now() + shared.config.send_timeout);
    Phase::Closing
}

/// Sends a PING after each `interval` and returns when one goes unanswered for `timeout`;
/// never returns when `interval` is `None` or h2 gave no handle.
async fn keep_alive(
    ping_pong: Option<h2::PingPong>,
    interval: Option<std::time::Duration>,
    timeout: std::time::Duration,
) {
    let (Some(mut ping_pong), Some(interval)) = (ping_pong, interval) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// One stream's task state: the exchange's shared half and h2's two ends of the stream.
struct Stream<N: Reporter> {
    connection: Arc<Connection<N>>,
    respond: SendResponse<Bytes>,
    /// The response body's end, once the head is sent.
    send: Option<SendStream<Bytes>>,
    recv: RecvStream,
    /// Head bytes taken from the queue until the head is complete.
    head: BytesMut,
    end: ConnectionEnd,
    /// Request body bytes received, held against `max_body`.
    body_seen: u64,
}

/// What woke a stream's wait on h2.
enum StreamEvent {
    /// The client reset the stream (`true`), or the connection ended (`false`).
    Reset(bool),
    /// Flow control let more out.
    Capacity,
    /// Request body bytes, or its end (`None`).
    Data(Option<Result<Bytes, h2::Error>>),
}

impl<N: Reporter> Stream<N> {
    /// Creates the stream's exchange and hands the request to the owner side.
    fn open(
        request: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        shared: &Arc<Shared<N>>,
        id: u64,
        (peer, local): (SocketAddr, SocketAddr),
        tls: &Arc<TlsInfo>,
        end: &ConnectionEnd,
    ) -> Self {
        let (parts, recv) = request.into_parts();
        let head = request_head(&parts, &recv, tls);
        let declared = match head.body {
            BodyKind::Length(length) => length,
            _ => 0,
        };
        let connection = Arc::new(Connection::new(id, shared.clone(), peer, local));
        shared.register(&connection);
        let exchange = shared.next_exchange();
        connection.begin_exchange(exchange, &head);
        shared.stats.requests.fetch_add(1, Relaxed);
        shared.reporter.request(&connection, exchange, head);
        if declared > shared.config.limits.max_body {
            // Refused as on HTTP/1.1: a 413, unless the owner answered first.
            connection.body_failed(HttpError::PayloadTooLarge);
        }
        Stream {
            connection,
            respond,
            send: None,
            recv,
            head: BytesMut::new(),
            end: end.clone(),
            body_seen: 0,
        }
    }

    /// Serves the stream until it ends, then reports the close; `_open` counts it among
    /// its connection's open streams until then.
    async fn run(mut self, _open: StreamHold) {
        let shared = self.connection.server.clone();
        let _task = GaugeGuard::new(&shared.stats.tasks);
        let reason = self.exchange().await;
        let topics = self.connection.report_close(reason);
        shared.hub.subscriber_closed(self.connection.id, topics);
        shared.unregister(self.connection.id);
    }

    /// Writes what the owner queues as flow control allows, reads the body it asks for,
    /// watches for a reset, sends heartbeats and enforces the send timeout.
    async fn exchange(&mut self) -> CloseReason {
        let server = self.connection.server.clone();
        let config = &server.config;
        let mut out: VecDeque<Bytes> = VecDeque::new();
        let mut last_write = Instant::now();
        let mut stalled_since: Option<Instant> = None;
        let mut body_done = self.recv.is_end_stream();
        let timer = sleep_until(far_future());
        tokio::pin!(timer);
        loop {
            let view = self.connection.take_batch(&mut out);
            if let Some(reason) = view.close {
                self.reset(Reason::CANCEL);
                return reason;
            }
            match self.write(&mut out) {
                Ok(0) => {}
                Ok(n) => {
                    self.connection.written(n);
                    server.stats.bytes_written.add(n as u64);
                    last_write = Instant::now();
                    stalled_since = None;
                }
                Err(reason) => return reason,
            }
            if !out.is_empty() {
                if let Some(reason) = self.connection.socket_full() {
                    self.reset(Reason::CANCEL);
                    return reason;
                }
            } else if view.draining {
                // As on HTTP/1.1: the stream ends, and its owner is told `shutdown`. A
                // response the stop cut short (a sized body) is reset, not ended, so the
                // client cannot take it for whole; HTTP/1.1 closes the connection for that.
                if view.finished || self.send.is_none() {
                    self.end_stream();
                } else {
                    self.reset(Reason::CANCEL);
                }
                return CloseReason::Shutdown;
            } else if view.finished {
                self.end_stream();
                self.connection.end_exchange();
                return CloseReason::Closed;
            }
            let want_write = !out.is_empty();
            if want_write && stalled_since.is_none() {
                stalled_since = Some(Instant::now());
            }
            let send_deadline = stalled_since.map(|at| at + config.send_timeout);
            let heartbeat_at = config
                .heartbeat
                .filter(|_| !want_write && view.heartbeat)
                .map(|every| last_write + every);
            let timer_at = send_deadline.or(heartbeat_at);
            let due = timer_at.unwrap_or_else(far_future);
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            let want_body = view.body_wanted && !body_done;
            let connection = self.connection.clone();
            let woke = {
                let event = poll_fn(|cx| self.poll_event(cx, want_write, want_body));
                tokio::select! {
                    _ = connection.woken() => None,
                    event = event => Some(event),
                    _ = &mut timer, if timer_at.is_some() => {
                        if send_deadline.is_some() {
                            self.reset(Reason::CANCEL);
                            return CloseReason::Timeout;
                        }
                        connection.push_heartbeat();
                        last_write = Instant::now();
                        None
                    }
                }
            };
            match woke {
                None | Some(StreamEvent::Capacity) => {}
                Some(StreamEvent::Reset(true)) => return CloseReason::Closed,
                Some(StreamEvent::Reset(false)) => {
                    return self.end.get().copied().unwrap_or(CloseReason::Closed);
                }
                Some(StreamEvent::Data(Some(Ok(bytes)))) => {
                    let _ = self.recv.flow_control().release_capacity(bytes.len());
                    body_done = self.recv.is_end_stream();
                    self.body_seen += bytes.len() as u64;
                    if self.body_seen > config.limits.max_body {
                        body_done = true;
                        self.connection.body_failed(HttpError::PayloadTooLarge);
                    } else {
                        self.connection.body_received(&bytes, body_done);
                    }
                }
                Some(StreamEvent::Data(None)) => {
                    body_done = true;
                    self.connection.body_received(&[], true);
                }
                Some(StreamEvent::Data(Some(Err(_)))) => {
                    body_done = true;
                    self.connection
                        .body_failed(HttpError::BadRequest("request body reset"));
                }
            }
        }
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        want_capacity: bool,
        want_body: bool,
    ) -> Poll<StreamEvent> {
        let reset = match self.send.as_mut() {
            Some(send) => send.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        };
        if let Poll::Ready(reset) = reset {
            return Poll::Ready(StreamEvent::Reset(reset.is_ok()));
        }
        if want_capacity {
            if let Some(send) = self.send.as_mut() {
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => return Poll::Ready(StreamEvent::Capacity),
                    // The stream or connection is gone; its reset says which on the next pass.
                    Poll::Ready(_) => return Poll::Ready(StreamEvent::Reset(false)),
                    Poll::Pending => {}
                }
            }
        }
        if want_body {
            if let Poll::Ready(data) = self.recv.poll_data(cx) {
                return Poll::Ready(StreamEvent::Data(data));
            }
        }
        Poll::Pending
    }

    /// Moves what flow control lets out from `out` into h2: first the head, as HEADERS, then
    /// body bytes as DATA, as far as the stream's granted capacity goes. Returns how many
    /// queued bytes left the queue.
    fn write(&mut self, out: &mut VecDeque<Bytes>) -> Result<usize, CloseReason> {
        let mut taken = 0;
        while self.send.is_none() {
            if let Some(end) = find_head_end(&self.head) {
                let rest = self.head.split_off(end);
                let head = std::mem::replace(&mut self.head, rest);
                let response = response_of(&head);
                if response.status().is_informational() {
                    // `inform`: a HEADERS frame of its own, the final response still to come.
                    self.respond
                        .send_informational(response)
                        .map_err(|_| CloseReason::Closed)?;
                    continue;
                }
                let send = self
                    .respond
                    .send_response(response, false)
                    .map_err(|_| CloseReason::Closed)?;
                self.send = Some(send);
                if !self.head.is_empty() {
                    let rest = std::mem::take(&mut self.head).freeze();
                    taken -= rest.len();
                    out.push_front(rest);
                }
                break;
            }
            let Some(front) = out.pop_front() else {
                return Ok(taken);
            };
            taken += front.len();
            self.head.extend_from_slice(&front);
        }
        let Some(send) = self.send.as_mut() else {
            return Ok(taken);
        };
        let queued: usize = out.iter().map(Bytes::len).sum();
        if queued > 0 {
            send.reserve_capacity(queued);
        }
        while let Some(front) = out.front_mut() {
            let room = send.capacity();
            if room == 0 {
                break;
            }
            let data = if front.len() > room {
                front.split_to(room)
            } else if front.len() == room || out.len() == 1 {
                out.pop_front().unwrap_or_default()
            } else {
                coalesce(out, room)
            };
            taken += data.len();
            send.send_data(data, false)
                .map_err(|_| CloseReason::Closed)?;
        }
        Ok(taken)
    }

    /// Ends the response with END_STREAM.
    fn end_stream(&mut self) {
        match self.send.as_mut() {
            Some(send) => {
                let _ = send.send_data(Bytes::new(), true);
            }
            None => {
                // Nothing was ever queued: an empty 500, as for an owner that never answered.
                let mut response = http::Response::new(());
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                let _ = self.respond.send_response(response, true);
            }
        }
    }

    /// Resets the stream, so the client knows the response is cut.
    fn reset(&mut self, reason: Reason) {
        match self.send.as_mut() {
            Some(send) => send.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }
}

/// Several queued buffers as one DATA frame's payload, up to `room` bytes. A frame per
/// event would cost 9 bytes and a flow-control step each, and h2 clients (the h2 crate among
/// them) end a connection that sends them more small frames than they have read as a flood
/// (ENHANCE_YOUR_CALM, "too_many_data_frames"). The copy is one per batch per stream; the
/// hub's one encoded event is still shared by every subscriber up to here.
fn coalesce(out: &mut VecDeque<Bytes>, room: usize) -> Bytes {
    let queued: usize = out.iter().map(Bytes::len).sum();
    let mut frame = BytesMut::with_capacity(room.min(queued));
    while let Some(front) = out.front_mut() {
        let left = room - frame.len();
        if left == 0 {
            break;
        }
        if front.len() <= left {
            frame.extend_from_slice(front);
            out.pop_front();
        } else {
            frame.extend_from_slice(&front.split_to(left));
        }
    }
    frame.freeze()
}

/// The request as the owner side sees it: `:authority` becomes `host` (RFC 9113 section
/// 8.3.1), as Plug expects; the body's length is its content-length, else unknown.
fn request_head(
    parts: &http::request::Parts,
    body: &RecvStream,
    tls: &Arc<TlsInfo>,
) -> RequestHead {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(parts.headers.len() + 1);
    if let Some(authority) = parts.uri.authority() {
        if !parts.headers.contains_key(http::header::HOST) {
            headers.push(("host".into(), authority.as_str().as_bytes().to_vec()));
        }
    }
    for (name, value) in &parts.headers {
        headers.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    let body_kind = if body.is_end_stream() {
        BodyKind::Empty
    } else {
        match parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
        {
            Some(length) => BodyKind::Length(length),
            None => BodyKind::Chunked,
        }
    };
    RequestHead {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        version: Version::Http2,
        headers,
        keep_alive: true,
        body: body_kind,
        expect_continue: false,
        tls: Some(tls.clone()),
    }
}

/// Where the head in `bytes` ends (after its empty line), if it is complete.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Hop-by-hop fields HTTP/2 forbids (RFC 9113 section 8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The response, final or interim (1xx), a head encoded for HTTP/1.x stands for. The head
/// was checked when the owner gave it, so a field that does not parse here cannot occur; it
/// would be left out.
fn response_of(head: &[u8]) -> http::Response<()> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok()?.parse::<u16>().ok())
        .unwrap_or(500);
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for line in lines.filter(|line| !line.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            continue;
        };
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_becomes_a_response_without_connection_specific_fields() {
        let head = b"HTTP/2 200 OK\r\ncontent-type: text/event-stream\r\nX-A: 1\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n";
        let response = response_of(head);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["x-a"], "1");
        assert!(!response.headers().contains_key("connection"));
        assert!(!response.headers().contains_key("transfer-encoding"));
        let hints = response_of(b"HTTP/2 103 Early Hints\r\nlink: </a>\r\n\r\n");
        assert_eq!(hints.status(), 103);
        assert_eq!(hints.headers()["link"], "</a>");
        assert_eq!(find_head_end(head), Some(head.len()));
        assert_eq!(find_head_end(b"HTTP/2 200 OK\r\n"), None);
    }
}
