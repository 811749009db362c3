//! One HTTP/1.1 connection's shared half: where its tokio task ([`crate::task`]) and the
//! owners of its exchanges meet.
//!
//! The state is made of typed parts, each its own state machine with inline tests:
//! the current [`Exchange`], its [`WriteQueue`], its [`RequestBody`], its topic
//! [`Membership`] and the connection's close [`Lifecycle`]. A call takes the lock, runs the
//! parts' transitions, and collects what must happen as [`Effects`] (wake the task, wake or
//! tell the owner, count a close), which are carried out after the lock is released. No
//! call waits for the network.
//!
//! HTTP/1.1 carries one exchange at a time, so the connection holds one of each part. Every
//! owner call names the exchange it means and is checked against it, so a stale handle from
//! an earlier request on a keep-alive connection reaches nothing of a later one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::exchange::{ChunkPlan, Exchange, Finish, RequestFacts, Status};
use crate::http::response::{self, CONTINUE};
use crate::http::{chunked, BodyKind, HttpError, RequestHead, Version};
use crate::lifecycle::Lifecycle;
use crate::membership::{Detached, Membership, Subscriber};
use crate::report::{CloseReason, ExchangeClose, Wake};
use crate::reporter::Reporter;
use crate::request_body::RequestBody;
use crate::shared::Shared;
use crate::sse::WireEvent;
use crate::stats::Stats;
use crate::write_queue::{WriteQueue, CHUNK_FRAMING};

pub use crate::exchange::CallError;
pub use crate::request_body::BodyRead;
pub use crate::write_queue::Push;

/// Most bytes an owner call writes to the socket itself: a head, an event. A larger batch
/// is the task's to write, so that no call copies megabytes into the kernel on a BEAM
/// scheduler.
const WRITE_THROUGH_MAX: usize = 64 * 1024;

/// The socket an owner call may write to itself: a plain TCP connection's descriptor, which
/// its task attaches when it opens and detaches under the lock before the socket closes, so
/// a call holding the lock always writes to this connection's socket. TLS and HTTP/2
/// connections attach none: their bytes must pass through their session. (`'static` stands
/// for "until detached", which the lock enforces; the niche of an fd keeps this 4 bytes.)
#[cfg(unix)]
type DirectSocket = Option<std::os::fd::BorrowedFd<'static>>;
#[cfg(not(unix))]
type DirectSocket = Option<std::convert::Infallible>;

/// The parts of the state. See the module docs.
struct State<O> {
    exchange: Exchange,
    /// The process told about the exchange; `None` before it takes it and after it let go.
    owner: Option<O>,
    queue: WriteQueue,
    body: RequestBody,
    topics: Membership,
    lifecycle: Lifecycle,
    socket: DirectSocket,
    /// When an owner call of the current exchange last wrote to the socket itself; the task,
    /// which did not see that write, counts a heartbeat's idle time from it. Tokio's clock,
    /// as the task's timers (a runtime's paused test clock included).
    wrote_through_at: Option<tokio::time::Instant>,
}

impl<O: Clone> State<O> {
    /// No descriptor to write to here: the task writes everything.
    #[cfg(not(unix))]
    fn write_through(&mut self, _stats: &Stats) -> bool {
        false
    }

    /// Writes what an owner call just queued straight to the socket, when a socket is
    /// attached, the task holds none of the queue's bytes (so nothing it took is overtaken)
    /// and the batch is small. Saves the connection task a wake-up and the BEAM scheduler a
    /// hand-off: a head or an event is in the kernel when the call returns. Returns true when
    /// the queue is empty afterwards; what the socket refused (it is full, or it failed) stays
    /// queued for the task, which also meets the error again and closes.
    #[cfg(unix)]
    fn write_through(&mut self, stats: &Stats) -> bool {
        // TLS and HTTP/2 have no socket attached: they pay nothing more here.
        let Some(fd) = &self.socket else {
            return false;
        };
        let queued = self.queue.queued_len();
        if queued > WRITE_THROUGH_MAX || !self.queue.writer_holds_nothing() {
            return false;
        }
        let socket = socket2::SockRef::from(fd);
        let written = self.queue.write_direct(|bytes| {
            stats.writes.add(1);
            socket.send(bytes)
        });
        if written > 0 {
            stats.bytes_written.add(written as u64);
            self.wrote_through_at = Some(tokio::time::Instant::now());
        }
        written == queued
    }

    /// Whether owners may call for exchange `exchange`.
    fn check_open(&mut self, exchange: u64) -> Result<(), CallError> {
        if !self.lifecycle.is_open() {
            return Err(CallError::Closed);
        }
        self.exchange.open(exchange).map(|_| ())
    }

    /// Wakes the owner, if any, for `what` on the current exchange.
    fn wake_owner(&self, fx: &mut Effects<O>, what: Wake) {
        if let Some(owner) = &self.owner {
            fx.owner_wakes
                .push((owner.clone(), self.exchange.id(), what));
        }
    }
}

/// What a transition asks for, carried out after the lock is released.
#[must_use]
struct Effects<O> {
    /// The connection task has work.
    wake_task: bool,
    /// Waiting owner calls may go on.
    owner_wakes: Vec<(O, u64, Wake)>,
    /// The owner of an exchange is told it closed.
    closed: Option<(O, u64, CloseReason)>,
    /// A close counted in the stats and reported to [`Reporter::exchange_closed`].
    count_close: Option<ExchangeClose>,
}

impl<O> Default for Effects<O> {
    fn default() -> Self {
        Effects {
            wake_task: false,
            owner_wakes: Vec::new(),
            closed: None,
            count_close: None,
        }
    }
}

/// What the task must do after a look at the shared state.
#[derive(Debug, Default)]
pub(crate) struct TaskView {
    /// The connection is closing for this reason.
    pub(crate) close: Option<CloseReason>,
    /// The owner finished: once `out` is written, the exchange is over.
    pub(crate) finished: bool,
    /// The server is stopping: once `out` is written, the connection closes with `shutdown`.
    pub(crate) draining: bool,
    /// The connection may carry another request afterwards.
    pub(crate) keep_alive: bool,
    /// The response may keep the connection, but the request body has not all arrived: the
    /// task drains it before reading the next request.
    pub(crate) unread_body: bool,
    /// The task should read body bytes (the owner wants them, and a 100 went out if due).
    pub(crate) body_wanted: bool,
    /// Heartbeats are due when the response idles: it is an open SSE stream, or it has not
    /// started, as its head may go out through an owner call's own write, which wakes no
    /// task (`State::write_through`).
    pub(crate) heartbeat: bool,
}

/// One connection's shared half. See the module docs.
pub struct Connection<N: Reporter> {
    /// Unique per server, for registries, the hub and logs.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address on this connection.
    pub local: SocketAddr,
    pub(crate) server: Arc<Shared<N>>,
    state: Mutex<State<N::Owner>>,
    task_wake: tokio::sync::Notify,
}

impl<N: Reporter> Connection<N> {
    pub(crate) fn new(
        id: u64,
        server: Arc<Shared<N>>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        let queue = WriteQueue::new(server.config.write_queue_bytes, server.stats.clone());
        Connection {
            id,
            peer,
            local,
            server,
            state: Mutex::new(State {
                exchange: Exchange::none(),
                owner: None,
                queue,
                body: RequestBody::none(),
                topics: Membership::default(),
                lifecycle: Lifecycle::Open,
                socket: None,
                wrote_through_at: None,
            }),
            task_wake: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<N::Owner>> {
        // A panic while the lock was held leaves consistent data (transitions change a part
        // at a time), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `transition` under the lock, then carries out its effects without it.
    fn with_state<R>(
        &self,
        transition: impl FnOnce(&mut State<N::Owner>, &mut Effects<N::Owner>) -> R,
    ) -> R {
        let mut fx = Effects::default();
        let result = transition(&mut self.lock(), &mut fx);
        self.apply(fx);
        result
    }

    fn apply(&self, fx: Effects<N::Owner>) {
        let server = &self.server;
        if let Some(close) = fx.count_close {
            server.stats.count_close(close.reason);
            server.reporter.exchange_closed(close);
        }
        for (owner, exchange, what) in &fx.owner_wakes {
            server.reporter.wake(owner, *exchange, *what);
        }
        if let Some((owner, exchange, reason)) = &fx.closed {
            server.reporter.closed(owner, *exchange, *reason);
        }
        if fx.wake_task {
            self.task_wake.notify_one();
        }
    }

    pub(crate) async fn woken(&self) {
        self.task_wake.notified().await;
    }

    /// The server this connection belongs to.
    pub fn server(&self) -> &Arc<Shared<N>> {
        &self.server
    }

    // ---- owner calls: each names its exchange --------------------------------------------

    /// Makes `owner` the process told about `exchange`.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] if the exchange is over or the client already left; the caller
    /// then learns it at once instead of by message.
    pub fn set_owner(&self, exchange: u64, owner: N::Owner) -> Result<(), CallError> {
        self.with_state(|st, _| {
            st.check_open(exchange)?;
            st.owner = Some(owner);
            Ok(())
        })
    }

    /// Sends a response head for a body streamed in chunks: chunked on HTTP/1.1, delimited by
    /// the close on HTTP/1.0, the head alone for HEAD, 204 and 304. With `sse`, the stream
    /// gets heartbeats when idle. The status line carries `reason` when given (Plug's phrase,
    /// for one), else Crier's own.
    ///
    /// # Errors
    ///
    /// [`CallError::Invalid`] for a bad status, reason or header (nothing is sent; the
    /// exchange goes on), [`CallError::AlreadySent`], [`CallError::Closed`].
    pub fn send_chunked<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        sse: bool,
    ) -> Result<(), CallError> {
        let stats = &self.server.stats;
        self.queue_response(
            exchange,
            status,
            reason,
            headers,
            |exchange_state, status, held_back| {
                exchange_state.start_stream(exchange, status, headers, sse, held_back, stats)
            },
        )
    }

    /// Sends a complete response with a content-length. HEAD requests and 204/304 get the
    /// head alone; see [`response::complete_framing`] for the length a HEAD response gets.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_chunked`].
    pub fn send_resp<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        body: &[u8],
    ) -> Result<(), CallError> {
        self.queue_response(
            exchange,
            status,
            reason,
            headers,
            |exchange_state, status, held_back| {
                exchange_state.respond(exchange, status, headers, body, held_back)
            },
        )
    }

    /// Sends a head with `content-length: length`; the body follows through
    /// [`Connection::chunk`] calls, written as given, adding up to exactly `length` bytes.
    /// This is how a file is streamed without holding it in memory. A body cut short closes
    /// the connection after the response, so the client sees the truncation.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_chunked`].
    pub fn send_head<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        length: u64,
    ) -> Result<(), CallError> {
        self.queue_response(
            exchange,
            status,
            reason,
            headers,
            |exchange_state, status, held_back| {
                exchange_state.start_sized(exchange, status, headers, length, held_back)
            },
        )
    }

    /// The common path of the calls that send a final head: the head's values are checked
    /// before the lock, then `encode` runs the exchange's transition (told whether the client
    /// holds back a body for a `100 Continue`) and its bytes are queued.
    fn queue_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        encode: impl FnOnce(&mut Exchange, Status<'_>, bool) -> Result<Bytes, CallError>,
    ) -> Result<(), CallError> {
        let code = response::check_head(status, reason, headers)?;
        let status = Status { code, reason };
        self.with_state(|st, fx| {
            st.check_open(exchange)?;
            let held_back = st.body.held_back();
            let bytes = encode(&mut st.exchange, status, held_back)?;
            st.queue.push(bytes);
            fx.wake_task = !st.write_through(&self.server.stats);
            Ok(())
        })
    }

    /// Sends an interim 1xx response (`inform`) before the final one.
    ///
    /// # Errors
    ///
    /// A status outside 100..=199 (or 101) or a bad header is [`CallError::Invalid`];
    /// HTTP/1.0 clients get nothing (RFC 9110 section 15.2) and the call succeeds.
    pub fn inform<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
    ) -> Result<(), CallError> {
        let code = response::check_informational(status)?;
        response::check_head(status, reason, headers)?;
        let status = Status { code, reason };
        self.with_state(|st, fx| {
            st.check_open(exchange)?;
            if let Some(head) = st.exchange.inform(exchange, status, headers)? {
                st.queue.push(head);
                fx.wake_task = true;
            }
            Ok(())
        })
    }

    /// Queues `data` as one chunk of the response body.
    ///
    /// Returns [`Push::Full`] and queues nothing when the queue holds `write_queue_bytes` or
    /// more; the owner is then woken once with [`Wake::Writable`]. Empty data is a no-op.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] once the connection closed, [`CallError::NotStreaming`] before a
    /// head with a body, [`CallError::Invalid`] past a sized body's length.
    pub fn chunk(&self, exchange: u64, data: &[u8]) -> Result<Push, CallError> {
        self.with_state(|st, fx| {
            st.check_open(exchange)?;
            let plan = st.exchange.chunk(exchange, data.len())?;
            if data.is_empty() || plan == ChunkPlan::Dropped {
                return Ok(Push::Queued);
            }
            let framed_len = match plan {
                ChunkPlan::Framed => data.len() + CHUNK_FRAMING,
                _ => data.len(),
            };
            if st.queue.offer(framed_len) == Push::Full {
                return Ok(Push::Full);
            }
            st.queue.push(match plan {
                ChunkPlan::Framed => chunked::frame(data),
                _ => Bytes::copy_from_slice(data),
            });
            st.exchange.body_sent(data.len());
            fx.wake_task = !st.write_through(&self.server.stats);
            Ok(Push::Queued)
        })
    }

    /// The owner is done with the exchange: a chunked body gets its last chunk, and the
    /// connection goes on to the next request once everything is written. A subscribed
    /// stream goes on in Rust.
    ///
    /// Returns false, and finishes nothing, when no response was sent: the caller sends one
    /// (a 500) and finishes again.
    pub fn finish(&self, exchange: u64) -> bool {
        self.with_state(|st, fx| {
            if st.check_open(exchange).is_err() {
                return true;
            }
            if st.topics.is_subscribed() {
                st.owner = None;
                return true;
            }
            match st.exchange.finish() {
                Finish::NothingSent => false,
                Finish::Done { last_chunk } => {
                    if last_chunk {
                        st.queue.push(Bytes::from_static(chunked::LAST_CHUNK));
                    }
                    fx.wake_task = true;
                    true
                }
            }
        })
    }

    /// Closes the connection from the owner's side (for example `:timeout` after `chunk`
    /// waited too long). The owner is told once, like any close.
    pub fn close(&self, exchange: u64, reason: CloseReason) {
        self.with_state(|st, fx| {
            if st.exchange.is_live(exchange) {
                st.queue.cancel_wait();
                st.body.cancel_wait();
                fx.wake_task = st.lifecycle.close(reason);
            }
        })
    }

    /// The owner of `exchange` died, or dropped its last handle. Unless the stream is
    /// subscribed to a topic (it then lives on in Rust), what was queued is written and the
    /// connection closes. An owner that dies before any response (killed, or by a linked
    /// process's exit) leaves its client a 500, as Cowboy answers for a crashed request
    /// process, rather than a connection closed without a word.
    pub fn owner_gone(&self, exchange: u64) {
        self.with_state(|st, fx| {
            if !st.exchange.is_live(exchange) {
                return;
            }
            st.owner = None;
            st.queue.cancel_wait();
            st.body.cancel_wait();
            if st.topics.is_subscribed() || st.exchange.is_finished() || !st.lifecycle.is_live() {
                return;
            }
            // What the owner queued still goes out (a complete response stays complete), then
            // the connection closes; a cut stream lacks its last chunk, which tells the client.
            if let Some(answer) = st.exchange.abandon() {
                st.queue.push(answer);
            }
            fx.count_close = Some(self.counted_close(st, CloseReason::OwnerGone));
            fx.wake_task = true;
        })
    }

    /// Withdraws the owner's wait for a wake-up, after its wait timed out. Returns false
    /// when the wake-up was already claimed (room came, body bytes came, or the connection
    /// closed): its message is sent right after the lock that claimed it is released, and
    /// the caller takes it from its mailbox rather than leave it there.
    pub fn cancel_wait(&self, exchange: u64) -> bool {
        self.with_state(|st, _| {
            if st.exchange.id() != exchange {
                return true;
            }
            // Only one call of an owner waits at a time: at most one of these was set.
            let writable = st.queue.cancel_wait();
            let body = st.body.cancel_wait();
            writable || body
        })
    }

    /// Takes up to `max` bytes of the request body.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] once the connection closed.
    pub fn read_body(&self, exchange: u64, max: usize) -> Result<BodyRead, CallError> {
        self.with_state(|st, fx| {
            // A broken body is reported as such even after the refusal it caused ended the
            // exchange.
            if st.exchange.id() == exchange && st.body.has_failed() {
                return Ok(st.body.read(max).0);
            }
            st.check_open(exchange)?;
            let (read, wake_task) = st.body.read(max);
            fx.wake_task = wake_task;
            Ok(read)
        })
    }

    /// The HTTP version of the current request.
    pub fn version(&self) -> Version {
        self.lock().exchange.version()
    }

    /// Whether the owner of `exchange` has sent a response head or a complete response.
    pub fn response_started(&self, exchange: u64) -> bool {
        self.lock().exchange.response_started(exchange)
    }

    // ---- the server's shutdown ------------------------------------------------------------

    /// Starts a graceful close for shutdown: an SSE stream gets `final_event` (already
    /// encoded) and a chunked body its last chunk, after everything queued before; owners can
    /// queue nothing more, and the connection closes with `shutdown` once all is written.
    pub(crate) fn begin_shutdown(&self, final_event: Option<&Bytes>) {
        self.with_state(|st, fx| {
            if st.lifecycle.begin_drain() {
                for bytes in st.exchange.end_for_shutdown(final_event) {
                    st.queue.push(bytes);
                }
            }
            fx.wake_task = true;
        })
    }

    // ---- the connection task ---------------------------------------------------------------

    /// Lets owner calls write to the socket `fd` themselves (see `State::write_through`).
    /// The task must detach it before the socket closes.
    ///
    /// # Safety
    ///
    /// `fd` must stay open until [`Connection::detach_socket`] returns.
    #[cfg(unix)]
    pub(crate) unsafe fn attach_socket(&self, fd: std::os::fd::RawFd) {
        // Safety: the caller keeps it open until it detaches it, under the lock every use
        // of it holds.
        self.lock().socket = Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    }

    /// Owner calls write to the socket no more: it is about to close.
    pub(crate) fn detach_socket(&self) {
        self.lock().socket = None;
    }

    /// When an owner call of the current exchange last wrote to the socket itself.
    pub(crate) fn wrote_through_at(&self) -> Option<tokio::time::Instant> {
        self.lock().wrote_through_at
    }

    /// Starts exchange `exchange` for `head`.
    pub(crate) fn begin_exchange(&self, exchange: u64, head: &RequestHead) {
        self.with_state(|st, _| {
            st.exchange = Exchange::begin(exchange, RequestFacts::of(head));
            st.wrote_through_at = None;
            st.owner = None;
            st.queue.cancel_wait();
            st.body = RequestBody::new(head.body == BodyKind::Empty, head.expect_continue);
        })
    }

    /// Moves queued bytes into `out` (a 100 Continue first, when one is due) and says what
    /// else the task must do.
    pub(crate) fn take_batch(&self, out: &mut VecDeque<Bytes>) -> TaskView {
        self.with_state(|st, _| {
            if st.body.take_continue(st.exchange.is_pending()) {
                out.push_back(Bytes::from_static(CONTINUE));
            }
            st.queue.take_into(out);
            let keep_alive = st.exchange.keep_alive() && !st.body.has_failed();
            TaskView {
                close: st.lifecycle.closing(),
                finished: st.exchange.is_finished(),
                draining: st.lifecycle.is_draining(),
                keep_alive: keep_alive && st.body.is_complete(),
                unread_body: keep_alive && !st.body.is_complete(),
                body_wanted: st.body.wants_bytes(),
                heartbeat: st.lifecycle.is_live()
                    && (st.exchange.is_pending()
                        || st.exchange.streaming().is_some_and(|(_, sse)| sse)),
            }
        })
    }

    /// `n` queued bytes reached the socket: frees room and wakes a waiting writer.
    pub(crate) fn written(&self, n: usize) {
        self.with_state(|st, fx| {
            if st.queue.written(n) {
                st.wake_owner(fx, Wake::Writable);
            }
        })
    }

    /// The socket refused more while bytes were left to write. A subscriber with more live
    /// broadcast bytes left than its queue holds has fallen behind: it closes with
    /// `overflow`. Returns the reason when the connection is closing now.
    pub(crate) fn socket_full(&self) -> Option<CloseReason> {
        self.with_state(|st, _| {
            if st.topics.is_subscribed() && st.queue.socket_full().is_err() {
                st.lifecycle.close(CloseReason::Overflow);
            }
            st.lifecycle.closing()
        })
    }

    /// Stores decoded body bytes (`done`: the body is complete) and wakes a waiting reader.
    pub(crate) fn body_received(&self, bytes: &[u8], done: bool) {
        self.with_state(|st, fx| {
            if st.body.received(bytes, done) {
                st.wake_owner(fx, Wake::Body);
            }
        })
    }

    /// The body is malformed or too large: it is refused like a bad head, with its status,
    /// unless the owner already answered, and `read_body` reports why.
    pub(crate) fn body_failed(&self, error: HttpError) {
        let stats = &self.server.stats;
        self.with_state(|st, fx| {
            let status = error.status();
            if st.body.failed(error) {
                st.wake_owner(fx, Wake::Body);
            }
            st.exchange.close_after();
            if st.lifecycle.is_open() && st.exchange.is_open() {
                if let Some(answer) = st.exchange.refuse_body(status) {
                    stats.rejected.fetch_add(1, Relaxed);
                    st.queue.push(answer);
                    fx.wake_task = true;
                }
            }
        })
    }

    /// Queues a heartbeat if the response is still an idle SSE stream.
    pub(crate) fn push_heartbeat(&self) {
        self.with_state(|st, _| {
            if let (true, Some((chunked, true))) = (st.lifecycle.is_live(), st.exchange.streaming())
            {
                if !st.queue.has_chunks() {
                    st.queue.push(if chunked {
                        chunked::frame(crate::sse::HEARTBEAT)
                    } else {
                        Bytes::from_static(crate::sse::HEARTBEAT)
                    });
                }
            }
        })
    }

    /// Closes from the task's or the server's side (the peer left, a write failed, a timer
    /// fired, the drain ran out of time).
    pub(crate) fn close_from_task(&self, reason: CloseReason) {
        self.with_state(|st, fx| fx.wake_task = st.lifecycle.close(reason))
    }

    /// Ends the exchange after a complete response: no more owner calls, no close message.
    pub(crate) fn end_exchange(&self) {
        self.with_state(|st, _| {
            st.exchange.end();
            st.owner = None;
            st.queue.cancel_wait();
            // A body error outlives the exchange it ended, for a `read_body` that comes late.
            st.body = st.body.after_exchange();
        })
    }

    /// The close of the current exchange for `reason`, as it is counted and reported.
    fn counted_close(&self, st: &State<N::Owner>, reason: CloseReason) -> ExchangeClose {
        ExchangeClose {
            connection_id: self.id,
            exchange: st.exchange.id(),
            reason,
            open_for: st.exchange.open_for(),
            subscribed: st.topics.is_subscribed(),
        }
    }

    /// Reports the close to the owner (once) and returns the topics to leave. Called by the
    /// task as it ends the connection.
    pub(crate) fn report_close(&self, fallback: CloseReason) -> Vec<String> {
        self.with_state(|st, fx| {
            let Some(reason) = st.lifecycle.report(fallback) else {
                return Vec::new();
            };
            let exchange = st.exchange.id();
            let live = st.exchange.is_live(exchange);
            // A call waiting for room or body bytes must not sit out its whole timeout: wake
            // it, and it finds the connection closed.
            if st.queue.clear() {
                st.wake_owner(fx, Wake::Writable);
            }
            if st.body.cancel_wait() {
                st.wake_owner(fx, Wake::Body);
            }
            if live {
                fx.count_close = Some(self.counted_close(st, reason));
                if reason != CloseReason::OwnerGone {
                    fx.closed = st.owner.clone().map(|owner| (owner, exchange, reason));
                }
            }
            st.exchange.end();
            st.owner = None;
            st.topics.leave_all()
        })
    }
}

impl<N: Reporter> Subscriber for Connection<N> {
    fn subscriber_id(&self) -> u64 {
        self.id
    }

    fn push_events(&self, events: &[&WireEvent], replay: bool) -> bool {
        self.with_state(|st, fx| {
            if !st.lifecycle.is_open() {
                return false;
            }
            let Some((chunked, _)) = st.exchange.streaming() else {
                return false;
            };
            let idle = !st.queue.has_chunks();
            for event in events {
                if st
                    .queue
                    .push_broadcast(event.for_stream(chunked), replay)
                    .is_err()
                {
                    st.lifecycle.close(CloseReason::Overflow);
                    fx.wake_task = true;
                    return false;
                }
            }
            // A queue that already held chunks has a wake-up pending.
            fx.wake_task = idle && !events.is_empty();
            true
        })
    }

    fn holds_topic(&self, topic: &str) -> bool {
        let st = self.lock();
        st.lifecycle.is_live() && st.exchange.is_open() && st.topics.holds(topic)
    }

    fn attach_topics(&self, exchange: u64, topics: &[String]) -> Result<Vec<String>, CallError> {
        let stats = &self.server.stats;
        self.with_state(|st, _| {
            st.check_open(exchange)?;
            if st.exchange.streaming().is_none() {
                return Err(CallError::NotStreaming);
            }
            Ok(st.topics.attach_all(topics, stats))
        })
    }

    fn detach_topic(&self, exchange: u64, topic: &str) -> Result<(), CallError> {
        self.with_state(|st, fx| {
            if !st.exchange.is_live(exchange) {
                return Err(CallError::Closed);
            }
            let last = st.topics.detach(topic) == Detached::Last;
            // Nobody can feed a stream with no topic and no owner: it ends like a finished
            // response.
            if last && st.owner.is_none() && st.lifecycle.is_live() && st.exchange.is_open() {
                if let Finish::Done { last_chunk: true } = st.exchange.finish() {
                    st.queue.push(Bytes::from_static(chunked::LAST_CHUNK));
                }
                fx.wake_task = true;
            }
            Ok(())
        })
    }
}
