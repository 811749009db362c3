//! One connection's tokio task, the I/O half of [`crate::connection`]: reads request heads,
//! hands each to the owner, writes what the owner queues, keeps a read-side wait on the socket
//! in every state so a client that leaves is seen at once, and reports the close.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use crate::connection::Connection;
use crate::http::body::BodyDecoder;
use crate::http::request::{parse_head, HeadProgress};
use crate::http::{response, HttpError, RequestHead};
use crate::report::CloseReason;
use crate::reporter::Reporter;
use crate::shared::Shared;
use crate::stats::{GaugeGuard, Spread};
use crate::tls::Alpn;
use crate::transport::{TlsTransport, Transport};

/// Most buffers handed to one `writev`; Linux's `IOV_MAX` is 1024.
const MAX_IOVECS: usize = 256;
/// Most bytes of a request body the owner never read that are read and thrown away after
/// the response so the connection can carry the next request; a longer one closes the
/// connection instead, which costs the client a reconnect rather than the server a transfer.
const MAX_DRAIN: usize = 1024 * 1024;

/// How a request head ended up.
enum HeadEnd {
    /// The client left or idled out between requests: close quietly.
    Gone,
    /// Refuse with this status and close.
    Refuse(HttpError),
}

/// How an exchange ended.
enum Outcome {
    /// Response complete; read the next request if the connection may be reused.
    Done { keep_alive: bool },
    /// The stream closed for this reason.
    Closed(CloseReason),
}

/// The addresses of an accepted connection as the accept loop knows them: the peer from
/// `accept` itself, and the local address when the listener is bound to one (a socket
/// accepted there has exactly it); `None` for a wildcard listener, where only the accepted
/// socket knows which of the host's addresses the client reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepted {
    pub(crate) peer: SocketAddr,
    pub(crate) local: Option<SocketAddr>,
}

impl Accepted {
    /// The local address, asked of the socket (`getsockname`) only when it is not known.
    fn local(self, socket: &TcpStream) -> SocketAddr {
        self.local
            .or_else(|| socket.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Serves one accepted connection until it closes.
///
/// The connection is opened before the future is made, so the addresses never sit in it:
/// an async fn keeps its arguments in its future for as long as it runs.
pub(crate) fn run<N: Reporter>(
    socket: TcpStream,
    accepted: Accepted,
    shared: Arc<Shared<N>>,
    conn_id: u64,
) -> impl std::future::Future<Output = ()> + Send {
    let mut task = Task::open(socket, Vec::new(), accepted, &shared, conn_id);
    async move {
        let _task = GaugeGuard::new(&shared.stats.tasks);
        // The accept loop counted this connection when it checked the cap.
        let _conn = GaugeGuard::adopt(&shared.stats.connections);
        let reason = task.serve().await;
        task.report_close(reason);
    }
}

/// Serves one accepted connection over TLS until it closes: the handshake, which must finish
/// within `header_timeout` of the accept as a request head must, then HTTP/2 ([`crate::h2`])
/// if ALPN chose it, else HTTP/1.1.
pub(crate) async fn run_tls<N: Reporter>(
    socket: TcpStream,
    accepted: Accepted,
    shared: Arc<Shared<N>>,
    conn_id: u64,
    tls: Arc<rustls::ServerConfig>,
) {
    let _task = GaugeGuard::new(&shared.stats.tasks);
    let _conn = GaugeGuard::adopt(&shared.stats.connections);
    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(socket);
    let deadline = shared.config.limits.header_timeout;
    let stream = tokio::select! {
        done = tokio::time::timeout(deadline, handshake) => match done {
            Ok(Ok(stream)) => stream,
            // A failed handshake has had its alert; a slow one is dropped like a slow head.
            Ok(Err(_)) | Err(_) => {
                shared.stats.rejected.fetch_add(1, Relaxed);
                return;
            }
        },
        _ = shared.stopping.cancelled() => return,
    };
    if stream.get_ref().1.alpn_protocol() == Some(Alpn::H2.id()) {
        // Boxed: HTTP/2's connection state lives in this task only for h2 connections.
        Box::pin(crate::h2::serve(stream, shared.clone())).await;
        return;
    }
    let (tcp, session) = stream.into_inner();
    let mut inbuf = Vec::new();
    let Ok(transport) = TlsTransport::new(tcp, session, &mut inbuf) else {
        return;
    };
    let mut task = Task::open(transport, inbuf, accepted, &shared, conn_id);
    let reason = task.serve().await;
    task.report_close(reason);
}

struct Task<N: Reporter, T: Transport> {
    socket: T,
    connection: Arc<Connection<N>>,
    /// Bytes read but not yet parsed: a partial head, or pipelined requests.
    inbuf: Vec<u8>,
}

/// However the task ends (closed, or dropped by a runtime shutting down), owner calls stop
/// writing to its socket before the socket closes: the descriptor could be reused.
impl<N: Reporter, T: Transport> Drop for Task<N, T> {
    fn drop(&mut self) {
        self.connection.detach_socket();
    }
}

/// What a read-side wait that consumes nothing waits for. Tokio's priority interest resolves
/// on read-closed too (EPOLLRDHUP, which the registration for reading asks the kernel for),
/// without the readable data that would wake a plain read wait at once and forever; the
/// error interest catches an RST (EPOLLERR). So the kernel reports a peer's FIN or RST while
/// the task leaves what the client sent unread.
#[cfg(any(target_os = "linux", target_os = "android"))]
const WATCH_CLOSE: Interest = Interest::PRIORITY.add(Interest::ERROR);
/// Elsewhere there is no read-closed interest apart from reading: only errors are seen.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const WATCH_CLOSE: Interest = Interest::ERROR;

/// What the read side does with what the socket has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadSide {
    /// Read it: body bytes the owner wants, or pipelined requests while there is room.
    Consume,
    /// Leave it in the socket and wait only for the peer's FIN, RST or an error, which the
    /// kernel reports without the data being read: close detection holds whatever the client
    /// sent.
    Watch,
}

impl<N: Reporter, T: Transport> Task<N, T> {
    /// Creates the connection's shared half and registers it with the server.
    fn open(
        socket: T,
        inbuf: Vec<u8>,
        accepted: Accepted,
        shared: &Arc<Shared<N>>,
        conn_id: u64,
    ) -> Self {
        let local = accepted.local(socket.tcp());
        let connection = Arc::new(Connection::new(
            conn_id,
            shared.clone(),
            accepted.peer,
            local,
        ));
        #[cfg(unix)]
        if let Some(fd) = socket.write_through_fd() {
            // Safety: the socket is this task's; its Drop detaches the descriptor before the
            // socket field closes it.
            unsafe { connection.attach_socket(fd) };
        }
        shared.register(&connection);
        Task {
            socket,
            connection,
            inbuf,
        }
    }

    /// Reports the close to the owner, the hub and the server's registry.
    fn report_close(&self, reason: CloseReason) {
        let shared = &self.connection.server;
        let topics = self.connection.report_close(reason);
        shared.hub.subscriber_closed(self.connection.id, topics);
        shared.unregister(self.connection.id);
    }

    fn shared(&self) -> &Shared<N> {
        &self.connection.server
    }

    // The rare, large steps (refusing, lingering, draining an unread body) are boxed at their
    // call: an async fn's future is as large as its largest await point, and every open
    // stream would otherwise carry their room inline.
    async fn serve(&mut self) -> CloseReason {
        let mut first = true;
        loop {
            let started = match self.read_head(first).await {
                Ok(head) => self.start_exchange(head),
                Err(HeadEnd::Gone) => return CloseReason::Closed,
                Err(HeadEnd::Refuse(error)) => Err(error),
            };
            let decoder = match started {
                Ok(decoder) => decoder,
                Err(error) => {
                    Box::pin(self.refuse(error)).await;
                    return CloseReason::Closed;
                }
            };
            first = false;
            match self.exchange(decoder).await {
                Outcome::Done { keep_alive: true } if !self.shared().is_stopping() => {
                    self.connection.end_exchange();
                    // An idle keep-alive connection holds no read buffer.
                    if self.inbuf.is_empty() {
                        self.inbuf = Vec::new();
                    }
                }
                Outcome::Done { .. } => {
                    self.connection.end_exchange();
                    if !self.shared().is_stopping() {
                        Box::pin(self.linger_close()).await;
                    }
                    return CloseReason::Closed;
                }
                Outcome::Closed(reason) => return reason,
            }
        }
    }

    /// Opens an exchange for `head` and hands the request to the owner side. Synchronous, so
    /// the head never sits in the connection's future while the response streams.
    fn start_exchange(&mut self, mut head: RequestHead) -> Result<BodyDecoder, HttpError> {
        head.tls = self.socket.tls_info();
        let decoder = BodyDecoder::new(head.body, self.shared().config.limits.max_body)?;
        let exchange = self.shared().next_exchange();
        self.connection.begin_exchange(exchange, &head);
        self.shared().stats.requests.fetch_add(1, Relaxed);
        self.shared()
            .reporter
            .request(&self.connection, exchange, head);
        Ok(decoder)
    }

    /// Reads until a complete head is parsed. The first request of a connection has
    /// `header_timeout` from the accept; later ones have the keep-alive idle time to start and
    /// `header_timeout` from their first byte.
    async fn read_head(&mut self, first: bool) -> Result<RequestHead, HeadEnd> {
        let limits = &self.connection.server.config.limits;
        let mut deadline = Instant::now()
            + if first {
                limits.header_timeout
            } else {
                limits.keepalive_timeout
            };
        let mut started = first;
        let mut progress = HeadProgress::default();
        loop {
            if !self.inbuf.is_empty() {
                if !started {
                    started = true;
                    deadline = Instant::now() + limits.header_timeout;
                }
                if progress.worth_parsing(&self.inbuf, limits) {
                    match parse_head(&self.inbuf, limits) {
                        Ok(Some((head, used))) => {
                            self.inbuf.drain(..used);
                            if self.inbuf.is_empty() {
                                // Parsed: a stream that now idles holds no read buffer.
                                self.inbuf = Vec::new();
                            }
                            return Ok(head);
                        }
                        Ok(None) => {}
                        Err(error) => return Err(HeadEnd::Refuse(error)),
                    }
                }
            }
            if self.connection.server.is_stopping() {
                return Err(HeadEnd::Gone);
            }
            tokio::select! {
                ready = self.socket.tcp().readable() => {
                    if ready.is_err() {
                        return Err(HeadEnd::Gone);
                    }
                    match self.socket.read_into(&mut self.inbuf) {
                        Ok(0) => return Err(HeadEnd::Gone),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(HeadEnd::Gone),
                    }
                }
                _ = self.connection.woken() => {}
                _ = sleep_until(deadline) => {
                    // A 408 answers a request that came too slowly. A connection that sent
                    // nothing (a browser's preconnect, an idle keep-alive) just closes: an
                    // unasked-for 408 could be read as the answer to a request sent later.
                    return Err(if !self.inbuf.is_empty() {
                        HeadEnd::Refuse(HttpError::Timeout)
                    } else {
                        HeadEnd::Gone
                    });
                }
            }
        }
    }

    /// Answers a refused request with its status and lets the connection close.
    async fn refuse(&mut self, error: HttpError) {
        self.shared().stats.rejected.fetch_add(1, Relaxed);
        let answer = response::error_response(error.status());
        let deadline = Instant::now()
            + self
                .shared()
                .config
                .send_timeout
                .min(std::time::Duration::from_secs(5));
        let mut out = VecDeque::from([answer]);
        while !out.is_empty() || self.socket.has_pending() {
            tokio::select! {
                ready = self.socket.tcp().writable() => {
                    if ready.is_err() { return; }
                    let writes = &self.connection.server.stats.writes;
                    match write_batch(&mut self.socket, &mut out, writes) {
                        Ok(n) => { self.shared().stats.bytes_written.add(n as u64); }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                _ = sleep_until(deadline) => return,
            }
        }
        self.linger_close().await;
    }

    /// Closes after a final answer. Unread request bytes would turn the close into an RST that
    /// can destroy the answer in flight (RFC 9112 section 9.6): stop sending, then read and
    /// discard until the peer closes too, for half a second at most.
    async fn linger_close(&mut self) {
        self.socket.close_write();
        let linger = Instant::now() + std::time::Duration::from_millis(500);
        // On the heap: an array here would sit in every connection task's future, refused or not.
        let mut scratch = vec![0u8; 4096];
        loop {
            tokio::select! {
                ready = self.socket.tcp().readable() => {
                    if ready.is_err() { return; }
                    // Raw socket bytes: for TLS, records nobody decrypts.
                    match self.socket.tcp().try_read(&mut scratch) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                _ = sleep_until(linger) => return,
            }
        }
    }

    /// Runs one exchange: writes what the owner queues, reads the body it asks for, watches
    /// for the client leaving, sends heartbeats, and enforces the send timeout.
    async fn exchange(&mut self, mut decoder: BodyDecoder) -> Outcome {
        let server = self.connection.server.clone();
        let config = &server.config;
        let mut out: VecDeque<Bytes> = VecDeque::new();
        let mut last_write = Instant::now();
        let mut stalled_since: Option<Instant> = None;
        // One timer per connection, an entry in tokio's hierarchical timer wheel: the send
        // deadline while writes are stalled, else the next heartbeat while the SSE stream is
        // idle. Each write pushes the heartbeat back, and pushing a deadline later is a
        // lock-free store (tokio re-files the entry when its old slot comes up), so a busy
        // stream costs the wheel one visit per heartbeat interval, not one per write.
        let never = far_future();
        let timer = tokio::time::sleep_until(never);
        tokio::pin!(timer);
        // Whatever arrived with the head may already be body.
        if !self.inbuf.is_empty() && !decoder.is_done() {
            if let Err(outcome) = self.decode_body(&mut decoder) {
                return outcome;
            }
        }
        loop {
            let view = self.connection.take_batch(&mut out);
            if let Some(reason) = view.close {
                return Outcome::Closed(reason);
            }
            if !out.is_empty() || self.socket.has_pending() {
                let stats = &self.connection.server.stats;
                match write_batch(&mut self.socket, &mut out, &stats.writes) {
                    Ok(n) => {
                        if n > 0 {
                            // Counted before the queue frees them: a queue seen empty has
                            // its bytes in the count.
                            stats.bytes_written.add(n as u64);
                            self.connection.written(n);
                            last_write = Instant::now();
                            stalled_since = None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Outcome::Closed(close_reason_of(&e)),
                }
                // The socket took what it could: what it left is what a subscriber is judged by.
                if !out.is_empty() {
                    if let Some(reason) = self.connection.socket_full() {
                        return Outcome::Closed(reason);
                    }
                }
            }
            if out.is_empty() && !self.socket.has_pending() {
                if view.draining {
                    return Outcome::Closed(CloseReason::Shutdown);
                }
                if view.finished {
                    let keep_alive = view.keep_alive
                        || (view.unread_body && Box::pin(self.drain_body(&mut decoder)).await);
                    return Outcome::Done { keep_alive };
                }
            }
            let want_write = !out.is_empty() || self.socket.has_pending();
            if want_write && stalled_since.is_none() {
                stalled_since = Some(Instant::now());
            }
            let send_deadline = stalled_since.map(|at| at + config.send_timeout);
            let pipeline_room =
                self.inbuf.len() < config.limits.max_request_line + config.limits.max_header_bytes;
            let read_side = if view.body_wanted || (decoder.is_done() && pipeline_room) {
                ReadSide::Consume
            } else {
                ReadSide::Watch
            };
            let heartbeat_at = config
                .heartbeat
                .filter(|_| !want_write && view.heartbeat)
                .map(|every| last_write + every);
            let timer_at = send_deadline.or(heartbeat_at);
            let due = timer_at.unwrap_or(never);
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }

            // One readiness future for both directions (each costs 152 bytes of every
            // connection's future), and it always watches the read side.
            let interest = match (read_side, want_write) {
                (ReadSide::Consume, false) => Interest::READABLE,
                (ReadSide::Consume, true) => Interest::READABLE | Interest::WRITABLE,
                (ReadSide::Watch, false) => WATCH_CLOSE,
                (ReadSide::Watch, true) => WATCH_CLOSE | Interest::WRITABLE,
            };
            tokio::select! {
                _ = self.connection.woken() => {}
                ready = self.socket.tcp().ready(interest) => {
                    match ready {
                        Err(_) => return Outcome::Closed(CloseReason::Closed),
                        Ok(ready) if ready.is_read_closed() || ready.is_error() || ready.is_readable() => {
                            if let Err(outcome) = self.on_read_side(read_side, ready, &mut decoder) {
                                return outcome;
                            }
                        }
                        // Writable: the loop writes on its next pass.
                        Ok(_) => {}
                    }
                }
                _ = &mut timer, if timer_at.is_some() => {
                    if send_deadline.is_some() {
                        return Outcome::Closed(CloseReason::Timeout);
                    }
                    last_write = self.on_heartbeat(last_write);
                }
            }
        }
    }

    /// The heartbeat timer fired at `last_write` + the interval: queues a heartbeat if the
    /// stream idled that long, and returns the time the next interval counts from. An owner
    /// call may have written to the socket itself meanwhile (the task did not see it): the
    /// stream was not idle, and the next heartbeat is an interval after that write.
    fn on_heartbeat(&self, last_write: Instant) -> Instant {
        let now = Instant::now();
        let every = self.shared().config.heartbeat.unwrap_or_default();
        if let Some(at) = self.connection.wrote_through_at() {
            if at > last_write && now.duration_since(at) < every {
                return at;
            }
        }
        self.connection.push_heartbeat();
        // The next one is an interval away even if nothing could be queued.
        now
    }

    /// Reads and discards the rest of a request body the owner never read, so the connection
    /// can carry the next request. Returns false, and the connection closes instead, for a
    /// body with more than [`MAX_DRAIN`] bytes still to come, a broken one, or one that does
    /// not arrive within `header_timeout`.
    async fn drain_body(&mut self, decoder: &mut BodyDecoder) -> bool {
        let deadline = Instant::now() + self.shared().config.limits.header_timeout;
        let mut drained = 0;
        let mut discard = Vec::new();
        loop {
            if !self.inbuf.is_empty() {
                discard.clear();
                match decoder.decode(&self.inbuf, &mut discard) {
                    Ok(used) => {
                        self.inbuf.drain(..used);
                        drained += used;
                    }
                    Err(_) => return false,
                }
            }
            if decoder.is_done() {
                return true;
            }
            let too_long = decoder
                .known_remaining()
                .is_some_and(|left| left > (MAX_DRAIN.saturating_sub(drained)) as u64);
            if drained > MAX_DRAIN || too_long || self.shared().is_stopping() {
                return false;
            }
            tokio::select! {
                ready = self.socket.tcp().readable() => {
                    if ready.is_err() {
                        return false;
                    }
                    match self.socket.read_into(&mut self.inbuf) {
                        Ok(0) => return false,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return false,
                    }
                }
                _ = sleep_until(deadline) => return false,
            }
        }
    }

    /// The read side is ready. [`ReadSide::Consume`] reads. [`ReadSide::Watch`] waited for
    /// the peer's FIN or an error only (see [`WATCH_CLOSE`]): either closes; anything else it
    /// woke for is cleared, and the data stays in the socket, bounded by the kernel's buffer,
    /// which then holds the client back.
    fn on_read_side(
        &mut self,
        side: ReadSide,
        ready: Ready,
        decoder: &mut BodyDecoder,
    ) -> Result<(), Outcome> {
        match side {
            ReadSide::Consume => self.read_during_exchange(decoder),
            ReadSide::Watch if ready.is_read_closed() || ready.is_error() => {
                Err(Outcome::Closed(CloseReason::Closed))
            }
            ReadSide::Watch => {
                // Urgent data: nobody reads it, so its readiness would wake this wait at once
                // forever. Cleared, the next wake-up is the next event.
                let _ = self.socket.tcp().try_io(WATCH_CLOSE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                Ok(())
            }
        }
    }

    /// Reads what the socket has: body bytes for the owner, or pipelined requests for later.
    /// End of stream or an error means the client is gone.
    fn read_during_exchange(&mut self, decoder: &mut BodyDecoder) -> Result<(), Outcome> {
        match self.socket.read_into(&mut self.inbuf) {
            Ok(0) => Err(Outcome::Closed(CloseReason::Closed)),
            Ok(_) if !decoder.is_done() => self.decode_body(decoder),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Outcome::Closed(close_reason_of(&e))),
        }
    }

    fn decode_body(&mut self, decoder: &mut BodyDecoder) -> Result<(), Outcome> {
        let mut body = Vec::new();
        match decoder.decode(&self.inbuf, &mut body) {
            Ok(used) => {
                self.inbuf.drain(..used);
                self.connection.body_received(&body, decoder.is_done());
                Ok(())
            }
            Err(error) => {
                self.inbuf.clear();
                self.connection.body_received(&body, false);
                self.connection.body_failed(error);
                Ok(())
            }
        }
    }
}

/// Writes as much of `out` as the socket takes now, in vectored writes of up to
/// [`MAX_IOVECS`] buffers; returns the bytes written, leaving the rest in `out`. Each write
/// call that wrote is counted in `writes`.
fn write_batch<T: Transport>(
    socket: &mut T,
    out: &mut VecDeque<Bytes>,
    writes: &Spread,
) -> io::Result<usize> {
    let mut total = 0;
    while !out.is_empty() {
        let slices: Vec<IoSlice<'_>> = out
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let written = match socket.write_vectored(&slices) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && total > 0 => return Ok(total),
            Err(e) => return Err(e),
        };
        drop(slices);
        writes.add(1);
        total += written;
        advance(out, written);
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    // TLS records the socket had no room for when their plaintext was taken.
    if socket.has_pending() {
        match socket.flush_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
    }
    Ok(total)
}

fn advance(out: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = out.front_mut() else { return };
        if front.len() <= n {
            n -= front.len();
            out.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

/// A dead peer found by the kernel (keepalive or `TCP_USER_TIMEOUT`) is a timeout; every
/// other failure means the client closed.
fn close_reason_of(error: &io::Error) -> CloseReason {
    if error.kind() == io::ErrorKind::TimedOut {
        CloseReason::Timeout
    } else {
        CloseReason::Closed
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::http::RequestHead;
    use crate::report::{CloseReason, Wake};
    use crate::server::Server;

    struct Silent;

    impl Reporter for Silent {
        type Owner = ();
        fn request(&self, _: &Arc<Connection<Self>>, _: u64, _: RequestHead) {}
        fn closed(&self, _: &(), _: u64, _: CloseReason) {}
        fn wake(&self, _: &(), _: u64, _: Wake) {}
    }

    /// Every open connection costs its task's future and its shared state, so their sizes
    /// are the per-stream memory the core adds to the socket's. One timer (112 bytes in tokio
    /// 1.54) serves both the heartbeat and the send deadline, one readiness future (152
    /// bytes) both directions, and the rare large steps are boxed: 728 bytes with tokio 1.54.
    /// The shared state is 336 bytes (296 before it was split into its state machines; the
    /// task future lost 16; 16 more for owner calls' own writes: the socket and when they
    /// last wrote). TLS adds nothing to either on plain TCP: its data rides on each
    /// request head. The future lost 56 when the connection came to be opened before it was
    /// made (an async fn's arguments stay in its future while it runs).
    #[test]
    fn a_connection_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = Server::start(ServerConfig::default(), Silent, runtime.handle(), 0).unwrap();
        let addr = server.local_addr();
        let size = runtime.block_on(async {
            let socket = TcpStream::connect(addr).await.unwrap();
            let accepted = Accepted {
                peer: socket.local_addr().unwrap(),
                local: Some(addr),
            };
            let task = run(socket, accepted, server.shared().clone(), u64::MAX);
            std::mem::size_of_val(&task)
        });
        eprintln!(
            "connection task future: {size} bytes, connection: {} bytes",
            std::mem::size_of::<Connection<Silent>>()
        );
        assert!(size <= 1024, "connection task future grew to {size} bytes");
        let shared = std::mem::size_of::<Connection<Silent>>();
        assert!(shared <= 336, "connection state grew to {shared} bytes");
    }
}
