//! The state one connection shares between its tokio task and its owner.
//!
//! The owner (an Elixir process, through the NIF) only ever takes a short lock and enqueues:
//! no call here waits for the network. The connection task ([`crate::conn`]) drains the queue
//! into the socket and reports closes. Every owner call names the exchange (one request and
//! its response) it means, so a stale handle from an earlier request on a keep-alive
//! connection cannot write into a later response.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};

use crate::http::response::{self, Framing};
use crate::http::{chunked, HttpError, RequestHead, Version};
use crate::notify::{CloseReason, Notify, StreamClose, Wake};
use crate::server::Shared;

/// What went wrong with an owner's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The stream is closed, or the exchange is over: `{:error, :closed}`.
    Closed,
    /// A response head was already sent for this exchange.
    AlreadySent,
    /// `chunk` before `send_chunked`, or after a complete response.
    NotStreaming,
    /// A value that cannot go on the wire; the message says which and why.
    Invalid(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Closed => f.write_str("stream closed"),
            StreamError::AlreadySent => f.write_str("a response was already sent"),
            StreamError::NotStreaming => f.write_str("the response is not a chunked stream"),
            StreamError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StreamError {}

/// What `chunk` did with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued; the call may return.
    Queued,
    /// The queue is full and nothing was queued: the caller waits for [`Wake::Writable`]
    /// (sent once, to this exchange's owner) and tries again.
    Full,
}

/// One broadcast event in both wire forms, encoded once and shared by every subscriber.
#[derive(Debug, Clone)]
pub(crate) struct WireEvent {
    /// The event as one chunk, for HTTP/1.1 streams.
    pub(crate) framed: Bytes,
    /// The event as is, for close-delimited (HTTP/1.0) streams: a slice of `framed`.
    pub(crate) raw: Bytes,
}

impl WireEvent {
    /// Frames encoded event bytes; `raw` shares `framed`'s memory.
    pub(crate) fn new(encoded: &[u8]) -> Self {
        let framed = chunked::frame(encoded);
        let header = framed.len() - encoded.len() - 2;
        let raw = framed.slice(header..header + encoded.len());
        WireEvent { framed, raw }
    }
}

/// What `read_body` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRead {
    /// Body bytes; `done` when they are the last.
    Data { bytes: Vec<u8>, done: bool },
    /// Nothing buffered yet: the caller waits for [`Wake::Body`] and asks again.
    Wait,
    /// The body was malformed or too large; the connection closes after the response.
    Failed(HttpError),
}

/// How the response of the current exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Response {
    NotStarted,
    /// A head went out; chunks follow, framed if `chunked`.
    Streaming {
        chunked: bool,
    },
    /// A head with a content-length went out; `remaining` body bytes must follow.
    Sized {
        remaining: u64,
    },
    /// A complete response is queued.
    Complete,
}

/// Request body bytes decoded by the task, waiting for the owner to read them.
#[derive(Debug, Default)]
pub(crate) struct BodyBuffer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) done: bool,
    pub(crate) error: Option<HttpError>,
    /// The owner asked for the body; with `Expect: 100-continue` that is the cue for a 100.
    pub(crate) wanted: bool,
}

pub(crate) struct State<O> {
    exchange: u64,
    exchange_open: bool,
    version: Version,
    is_head: bool,
    keep_alive: bool,
    response: Response,
    finished: bool,
    owner: Option<O>,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    /// Of `queued_bytes`, those a topic's replay ring queued on subscribe: bounded by the
    /// ring, and not counted against the room live broadcasts have.
    replay_bytes: usize,
    close: Option<CloseReason>,
    close_reported: bool,
    waiter: Option<Wake>,
    /// Bytes the `chunk` waiting for [`Wake::Writable`] needs; it is woken once they fit.
    waiting_len: usize,
    pub(crate) sse: bool,
    pub(crate) topics: Vec<String>,
    pub(crate) body: BodyBuffer,
    expect_continue: bool,
    continue_sent: bool,
    draining: bool,
    /// When the exchange began, for the duration [`Notify::stream_closed`] reports.
    began: std::time::Instant,
}

/// The locked state of a stream.
type Locked<'a, N> = MutexGuard<'a, State<<N as Notify>::Owner>>;

/// One connection's shared half. See the module docs.
pub struct Stream<N: Notify> {
    /// Unique per server, for registries and logs.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address on this connection.
    pub local: SocketAddr,
    pub(crate) server: Arc<Shared<N>>,
    state: Mutex<State<N::Owner>>,
    wake: tokio::sync::Notify,
}

/// What the task must do after a look at the shared state.
#[derive(Debug, Default)]
pub(crate) struct TaskView {
    /// The stream is closing for this reason.
    pub(crate) close: Option<CloseReason>,
    /// The owner finished: once `out` is written, the exchange is over.
    pub(crate) finished: bool,
    /// The server is stopping: once `out` is written, the stream closes with `shutdown`.
    pub(crate) draining: bool,
    /// The connection may carry another request afterwards.
    pub(crate) keep_alive: bool,
    /// The response may keep the connection, but the request body has not all arrived: the
    /// task drains it before reading the next request.
    pub(crate) unread_body: bool,
    /// The body reader wants more bytes (or a 100 Continue first).
    pub(crate) body_wanted: bool,
    /// The response is an open SSE stream: heartbeats are due when it idles.
    pub(crate) heartbeat: bool,
}

impl<N: Notify> Stream<N> {
    pub(crate) fn new(
        id: u64,
        server: Arc<Shared<N>>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        Stream {
            id,
            peer,
            local,
            server,
            state: Mutex::new(State {
                exchange: 0,
                exchange_open: false,
                version: Version::Http11,
                is_head: false,
                keep_alive: false,
                response: Response::NotStarted,
                finished: false,
                owner: None,
                queue: VecDeque::new(),
                queued_bytes: 0,
                replay_bytes: 0,
                close: None,
                close_reported: false,
                waiter: None,
                waiting_len: 0,
                sse: false,
                topics: Vec::new(),
                body: BodyBuffer::default(),
                expect_continue: false,
                continue_sent: false,
                draining: false,
                began: std::time::Instant::now(),
            }),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<N::Owner>> {
        // A panic while the lock was held leaves consistent data (every update is a plain
        // field write), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the connection task.
    pub(crate) fn wake_task(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The server this stream belongs to.
    pub fn server(&self) -> &Arc<Shared<N>> {
        &self.server
    }

    // ---- owner side -------------------------------------------------------------------

    /// Makes `owner` the process told about `exchange`.
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] if the exchange is over or the client already left; the caller
    /// then learns it at once instead of by message.
    pub fn set_owner(&self, exchange: u64, owner: N::Owner) -> Result<(), StreamError> {
        let mut st = self.lock();
        Self::check_open(&st, exchange)?;
        st.owner = Some(owner);
        Ok(())
    }

    /// Sends a response head for a body streamed in chunks: chunked on HTTP/1.1, delimited by
    /// the close on HTTP/1.0. With `sse`, the stream gets heartbeats when idle. The status line
    /// carries `reason` when given (Plug's phrase, for one), else Crier's own.
    ///
    /// # Errors
    ///
    /// [`StreamError::Invalid`] for a bad status, reason or header (nothing is sent; the
    /// exchange goes on), [`StreamError::AlreadySent`], [`StreamError::Closed`].
    pub fn send_chunked<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        sse: bool,
    ) -> Result<(), StreamError> {
        let (status, mut st) = self.begin_response(exchange, status, reason, headers)?;
        let no_body = st.is_head || response::status_has_no_body(status);
        let chunked = st.version == Version::Http11 && !no_body;
        let framing = match (no_body, chunked) {
            (true, _) => Framing::NoBody,
            (false, true) => Framing::Chunked,
            (false, false) => Framing::CloseDelimited,
        };
        if framing == Framing::CloseDelimited {
            st.keep_alive = false;
        }
        let keep_alive = Self::response_keep_alive(&mut st, headers);
        let head = response::encode_head(st.version, status, reason, headers, framing, keep_alive);
        st.response = if no_body {
            Response::Complete
        } else {
            Response::Streaming { chunked }
        };
        st.sse = sse && !no_body;
        self.server.stats.streams.fetch_add(1, Relaxed);
        self.enqueue(&mut st, head);
        drop(st);
        self.wake_task();
        Ok(())
    }

    /// Sends a complete response with a content-length. HEAD requests and 204/304 get the
    /// head alone; see [`response::complete_framing`] for the length a HEAD response gets.
    ///
    /// # Errors
    ///
    /// As [`Stream::send_chunked`].
    pub fn send_resp<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        body: &[u8],
    ) -> Result<(), StreamError> {
        let (status, mut st) = self.begin_response(exchange, status, reason, headers)?;
        let framing = response::complete_framing(status, st.is_head, headers, body.len());
        let keep_alive = Self::response_keep_alive(&mut st, headers);
        let head = response::encode_head(st.version, status, reason, headers, framing, keep_alive);
        let with_body = !st.is_head && framing != Framing::NoBody && !body.is_empty();
        let mut out = BytesMut::with_capacity(head.len() + if with_body { body.len() } else { 0 });
        out.put_slice(&head);
        if with_body {
            out.put_slice(body);
        }
        st.response = Response::Complete;
        self.enqueue(&mut st, out.freeze());
        drop(st);
        self.wake_task();
        Ok(())
    }

    /// Sends a head with `content-length: length`; the body follows through
    /// [`Stream::chunk`] calls, written as given, adding up to exactly `length` bytes. This is
    /// how a file is streamed without holding it in memory. A body cut short closes the
    /// connection after the response, so the client sees the truncation.
    ///
    /// # Errors
    ///
    /// As [`Stream::send_chunked`].
    pub fn send_sized<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
        length: u64,
    ) -> Result<(), StreamError> {
        let (status, mut st) = self.begin_response(exchange, status, reason, headers)?;
        let no_body = response::status_has_no_body(status);
        let framing = if no_body {
            Framing::NoBody
        } else {
            Framing::Length(length)
        };
        let keep_alive = Self::response_keep_alive(&mut st, headers);
        let head = response::encode_head(st.version, status, reason, headers, framing, keep_alive);
        st.response = if no_body || st.is_head || length == 0 {
            Response::Complete
        } else {
            Response::Sized { remaining: length }
        };
        self.enqueue(&mut st, head);
        drop(st);
        self.wake_task();
        Ok(())
    }

    /// Sends an interim 1xx response (`inform`) before the final one.
    ///
    /// # Errors
    ///
    /// A status outside 100..=199 or a bad header is [`StreamError::Invalid`]; HTTP/1.0 clients
    /// get nothing (RFC 9110 section 15.2) and the call succeeds.
    pub fn inform<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
    ) -> Result<(), StreamError> {
        if !(100..200).contains(&status) || status == 101 {
            return Err(StreamError::Invalid(format!(
                "inform needs an informational status (100, 102..199), got: {status}"
            )));
        }
        let (status, mut st) = self.begin_response(exchange, status, reason, headers)?;
        if st.version == Version::Http10 {
            return Ok(());
        }
        let mut head = BytesMut::new();
        head.put_slice(format!("HTTP/1.1 {status} ").as_bytes());
        head.put_slice(reason.unwrap_or(response::reason_phrase(status).as_bytes()));
        head.put_slice(b"\r\n");
        for (name, value) in headers {
            head.put_slice(name.as_ref());
            head.put_slice(b": ");
            head.put_slice(value.as_ref());
            head.put_slice(b"\r\n");
        }
        head.put_slice(b"\r\n");
        self.enqueue(&mut st, head.freeze());
        drop(st);
        self.wake_task();
        Ok(())
    }

    /// Queues `data` as one chunk of the streaming response.
    ///
    /// Returns [`Push::Full`] and queues nothing when the queue holds `write_queue_bytes` or
    /// more; the owner is then woken once with [`Wake::Writable`]. Empty data is a no-op.
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] once the stream closed, [`StreamError::NotStreaming`] before a
    /// chunked head.
    pub fn chunk(&self, exchange: u64, data: &[u8]) -> Result<Push, StreamError> {
        let mut st = self.lock();
        Self::check_open(&st, exchange)?;
        let chunked = match st.response {
            Response::Streaming { chunked } => chunked,
            Response::Sized { remaining } if data.len() as u64 > remaining => {
                return Err(StreamError::Invalid(format!(
                    "body longer than its content-length: {} bytes left, {} given",
                    remaining,
                    data.len()
                )))
            }
            Response::Sized { .. } => false,
            Response::Complete if st.is_head => return Ok(Push::Queued),
            _ => return Err(StreamError::NotStreaming),
        };
        if data.is_empty() {
            return Ok(Push::Queued);
        }
        let framed_len = if chunked {
            data.len() + CHUNK_FRAMING
        } else {
            data.len()
        };
        if !self.has_room(&st, framed_len) {
            st.waiter = Some(Wake::Writable);
            st.waiting_len = framed_len;
            return Ok(Push::Full);
        }
        let framed = if chunked {
            chunked::frame(data)
        } else {
            Bytes::copy_from_slice(data)
        };
        if let Response::Sized { remaining } = &mut st.response {
            *remaining -= data.len() as u64;
        }
        self.enqueue(&mut st, framed);
        drop(st);
        self.wake_task();
        Ok(Push::Queued)
    }

    /// The owner is done with the exchange: a chunked response gets its last chunk, and the
    /// connection goes on to the next request once everything is written. A subscribed stream
    /// goes on in Rust.
    ///
    /// Returns false, and finishes nothing, when no response was sent: the caller sends one
    /// (a 500) and finishes again.
    pub fn finish(&self, exchange: u64) -> bool {
        let mut st = self.lock();
        if st.exchange != exchange || !st.exchange_open || st.finished || st.close.is_some() {
            return true;
        }
        if !st.topics.is_empty() {
            st.owner = None;
            return true;
        }
        if st.response == Response::NotStarted {
            return false;
        }
        if let Response::Sized { remaining: 1.. } = st.response {
            st.keep_alive = false;
        }
        if let Response::Streaming { chunked: true } = st.response {
            if !st.is_head && st.close.is_none() {
                self.enqueue(&mut st, Bytes::from_static(chunked::LAST_CHUNK));
            }
        }
        st.finished = true;
        drop(st);
        self.wake_task();
        true
    }

    /// Closes the stream of `exchange` from the owner's side (for example `:timeout` after
    /// `chunk` waited too long). The owner is told once, like any close.
    pub fn close(&self, exchange: u64, reason: CloseReason) {
        let mut st = self.lock();
        if st.exchange == exchange && st.exchange_open {
            st.waiter = None;
            Self::set_close(&mut st, reason);
            drop(st);
            self.wake_task();
        }
    }

    /// The owner of `exchange` died, or dropped its last handle. Unless the stream is
    /// subscribed to a topic (it then lives on in Rust), what was queued is written and the
    /// connection closes. An owner that dies before any response (killed, or by a linked
    /// process's exit) leaves its client a 500, as Cowboy answers for a crashed request
    /// process, rather than a connection closed without a word.
    pub fn owner_gone(&self, exchange: u64) {
        let mut st = self.lock();
        if st.exchange != exchange || !st.exchange_open {
            return;
        }
        st.owner = None;
        st.waiter = None;
        if !st.topics.is_empty() || st.finished || st.close.is_some() {
            return;
        }
        if st.response == Response::NotStarted {
            // A 1xx may have gone out already; the 500 is the final response after it.
            self.enqueue(&mut st, response::error_response(500));
            st.response = Response::Complete;
        }
        // What the owner queued still goes out (a complete response stays complete), then
        // the connection closes; a cut stream lacks its last chunk, which tells the client.
        st.finished = true;
        st.keep_alive = false;
        self.server.stats.count_close(CloseReason::OwnerGone);
        self.report_stream_closed(&st, CloseReason::OwnerGone, false);
        drop(st);
        self.wake_task();
    }

    /// Forgets that the owner waits for a wake-up, after its wait timed out.
    pub fn cancel_wait(&self, exchange: u64) {
        let mut st = self.lock();
        if st.exchange == exchange {
            st.waiter = None;
        }
    }

    /// Takes up to `max` bytes of the request body.
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] once the stream closed.
    pub fn read_body(&self, exchange: u64, max: usize) -> Result<BodyRead, StreamError> {
        let mut st = self.lock();
        // A broken body is reported as such even after the refusal it caused ended the
        // exchange.
        if st.exchange == exchange {
            if let Some(error) = st.body.error.clone() {
                return Ok(BodyRead::Failed(error));
            }
        }
        Self::check_open(&st, exchange)?;
        if st.body.bytes.is_empty() && !st.body.done {
            st.body.wanted = true;
            st.waiter = Some(Wake::Body);
            drop(st);
            self.wake_task();
            return Ok(BodyRead::Wait);
        }
        let take = st.body.bytes.len().min(max.max(1));
        let rest = st.body.bytes.split_off(take);
        let bytes = std::mem::replace(&mut st.body.bytes, rest);
        let done = st.body.done && st.body.bytes.is_empty();
        if !done {
            // Room freed in the body buffer: the task may read on.
            drop(st);
            self.wake_task();
        }
        Ok(BodyRead::Data { bytes, done })
    }

    /// The HTTP version of the current request.
    pub fn version(&self) -> Version {
        self.lock().version
    }

    /// Whether the owner of `exchange` has sent a response head or a complete response.
    pub fn response_started(&self, exchange: u64) -> bool {
        let st = self.lock();
        st.exchange == exchange && st.response != Response::NotStarted
    }

    /// Checks a head's values, then locks the stream and checks that `exchange` is open and
    /// has sent no response yet: the common start of every call that writes a head.
    fn begin_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        exchange: u64,
        status: i64,
        reason: Option<&[u8]>,
        headers: &[(K, V)],
    ) -> Result<(u16, Locked<'_, N>), StreamError> {
        let status = check_head(status, reason, headers)?;
        let st = self.lock();
        Self::check_open(&st, exchange)?;
        if st.response != Response::NotStarted {
            return Err(StreamError::AlreadySent);
        }
        Ok((status, st))
    }

    fn check_open(st: &State<N::Owner>, exchange: u64) -> Result<(), StreamError> {
        if st.exchange != exchange
            || !st.exchange_open
            || st.close.is_some()
            || st.finished
            || st.draining
        {
            Err(StreamError::Closed)
        } else {
            Ok(())
        }
    }

    /// Whether the connection may carry another request after the response starting now.
    /// A response sent while the client still holds back a body it announced with
    /// `Expect: 100-continue` ends the connection: the client may send the body or not
    /// (RFC 9110 section 10.1.1), so where the next request starts is unknowable.
    /// An application header `connection: close` closes it too.
    fn response_keep_alive<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        st: &mut State<N::Owner>,
        headers: &[(K, V)],
    ) -> bool {
        if (st.expect_continue && !st.continue_sent && !st.body.done)
            || response::asks_close(headers)
        {
            st.keep_alive = false;
        }
        st.keep_alive
    }

    fn enqueue(&self, st: &mut State<N::Owner>, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        st.queued_bytes += bytes.len();
        self.server
            .stats
            .queued_bytes
            .fetch_add(bytes.len() as u64, Relaxed);
        st.queue.push_back(bytes);
    }

    /// Whether `len` more bytes fit in the write queue: the queue never holds more than
    /// `write_queue_bytes`, except for one larger chunk given to an empty queue.
    fn has_room(&self, st: &State<N::Owner>, len: usize) -> bool {
        st.queued_bytes == 0 || st.queued_bytes + len <= self.server.config.write_queue_bytes
    }

    fn set_close(st: &mut State<N::Owner>, reason: CloseReason) {
        if st.close.is_none() {
            st.close = Some(reason);
        }
    }

    // ---- hub side ---------------------------------------------------------------------

    /// Queues broadcast events, shared with every other subscriber, under one lock and with
    /// one wake-up, so the task writes them together. Returns false when the stream is gone;
    /// a stream whose queue would pass `write_queue_bytes` is closed with `overflow`.
    ///
    /// With `replay`, the events come from a topic's ring on subscribe: they are always
    /// queued (the ring bounds how much that can be), and they do not use up the room of live
    /// events, or a client reconnecting after a long absence would overflow at once.
    pub(crate) fn push_shared<'a>(
        &self,
        events: impl IntoIterator<Item = &'a WireEvent>,
        replay: bool,
    ) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || !st.exchange_open || st.draining {
            return false;
        }
        let chunked = match st.response {
            Response::Streaming { chunked } => chunked,
            _ => return false,
        };
        let was_empty = st.queue.is_empty();
        for event in events {
            let bytes = if chunked { &event.framed } else { &event.raw };
            let live_bytes = st.queued_bytes - st.replay_bytes.min(st.queued_bytes);
            if replay {
                st.replay_bytes += bytes.len();
            } else if live_bytes > 0
                && live_bytes + bytes.len() > self.server.config.write_queue_bytes
            {
                Self::set_close(&mut st, CloseReason::Overflow);
                drop(st);
                self.wake_task();
                return false;
            }
            self.enqueue(&mut st, bytes.clone());
        }
        drop(st);
        if was_empty {
            self.wake_task();
        }
        true
    }

    /// Marks the stream as subscribed to each of `topics` it does not hold yet, and returns
    /// those; an error if it cannot be subscribed (closed, or not a streaming response).
    pub(crate) fn attach_topics(
        &self,
        exchange: u64,
        topics: &[String],
    ) -> Result<Vec<String>, StreamError> {
        let mut st = self.lock();
        Self::check_open(&st, exchange)?;
        if !matches!(st.response, Response::Streaming { .. }) {
            return Err(StreamError::NotStreaming);
        }
        // One set for the whole call keeps a subscribe to many topics linear.
        let mut held: HashSet<&str> = st.topics.iter().map(String::as_str).collect();
        let added: Vec<String> = topics
            .iter()
            .filter(|topic| held.insert(topic.as_str()))
            .cloned()
            .collect();
        if st.topics.is_empty() && !added.is_empty() {
            self.server.stats.subscribers.fetch_add(1, Relaxed);
        }
        st.topics.extend(added.iter().cloned());
        Ok(added)
    }

    /// Removes `topic` from the stream's subscriptions; a stream left with none and no owner
    /// has nobody to feed it, so it ends like a finished response.
    pub(crate) fn detach_topic(&self, topic: &str) {
        let mut st = self.lock();
        let before = st.topics.len();
        st.topics.retain(|t| t != topic);
        if before > 0 && st.topics.is_empty() {
            self.server.stats.subscribers.fetch_sub(1, Relaxed);
            if st.owner.is_none() && st.close.is_none() {
                if let Response::Streaming { chunked: true } = st.response {
                    self.enqueue(&mut st, Bytes::from_static(chunked::LAST_CHUNK));
                }
                st.finished = true;
                drop(st);
                self.wake_task();
            }
        }
    }

    /// Whether the stream is open and still subscribed to `topic`: the hub checks it before
    /// it adds the stream, so a stream that closed (or unsubscribed) while its subscribe was
    /// queued is never added, and never held by a topic it left.
    pub(crate) fn holds_topic(&self, topic: &str) -> bool {
        let st = self.lock();
        st.close.is_none() && st.exchange_open && st.topics.iter().any(|t| t == topic)
    }

    // ---- server side -------------------------------------------------------------------

    /// Starts a graceful close for shutdown: an SSE stream gets `final_event` (already
    /// encoded), a chunked response its last chunk, owners can queue nothing more, and the
    /// stream closes with `shutdown` once what is queued has been written.
    pub(crate) fn begin_shutdown(&self, final_event: Option<&Bytes>) {
        let mut st = self.lock();
        if st.draining {
            return;
        }
        if let (Some(event), Response::Streaming { chunked }, true) =
            (final_event, st.response, st.sse)
        {
            if st.close.is_none() && st.exchange_open {
                let bytes = if chunked {
                    chunked::frame(event)
                } else {
                    event.clone()
                };
                self.enqueue(&mut st, bytes);
            }
        }
        // The response ends cleanly: a chunked body gets its last chunk, so the client (and any
        // proxy) sees a complete response rather than a cut one.
        if let Response::Streaming { chunked: true } = st.response {
            if st.close.is_none() && st.exchange_open && !st.finished && !st.is_head {
                self.enqueue(&mut st, Bytes::from_static(chunked::LAST_CHUNK));
            }
        }
        st.draining = true;
        drop(st);
        self.wake_task();
    }

    // ---- task side --------------------------------------------------------------------

    /// Starts exchange `exchange` for `head`.
    pub(crate) fn begin_exchange(&self, exchange: u64, head: &RequestHead) {
        let mut st = self.lock();
        st.exchange = exchange;
        st.exchange_open = true;
        st.version = head.version;
        st.is_head = head.is_head();
        st.keep_alive = head.keep_alive;
        st.response = Response::NotStarted;
        st.finished = false;
        st.owner = None;
        st.waiter = None;
        st.sse = false;
        st.body = BodyBuffer {
            done: head.body == crate::http::BodyKind::Empty,
            ..BodyBuffer::default()
        };
        st.expect_continue = head.expect_continue;
        st.continue_sent = false;
        st.began = std::time::Instant::now();
    }

    /// Moves queued bytes into `out` and says what else the task must do.
    pub(crate) fn take_batch(&self, out: &mut VecDeque<Bytes>) -> TaskView {
        let mut st = self.lock();
        if st.expect_continue && st.body.wanted && !st.continue_sent {
            st.continue_sent = true;
            if st.response == Response::NotStarted {
                out.push_back(Bytes::from_static(response::CONTINUE));
            }
        }
        out.extend(st.queue.drain(..));
        TaskView {
            close: st.close,
            finished: st.exchange_open && st.finished,
            draining: st.draining,
            keep_alive: st.keep_alive && st.body.done && st.body.error.is_none(),
            unread_body: st.keep_alive && !st.body.done && st.body.error.is_none(),
            body_wanted: !st.body.done
                && st.body.error.is_none()
                && (!st.expect_continue || st.continue_sent)
                && st.body.bytes.len() < BODY_WINDOW,
            heartbeat: st.sse && st.exchange_open && st.close.is_none(),
        }
    }

    /// `n` queued bytes reached the socket: frees room and wakes a waiting writer.
    pub(crate) fn written(&self, n: usize) {
        let mut st = self.lock();
        let freed = n.min(st.queued_bytes);
        st.queued_bytes -= freed;
        st.replay_bytes = st.replay_bytes.saturating_sub(freed);
        self.server
            .stats
            .queued_bytes
            .fetch_sub(freed as u64, Relaxed);
        if st.waiter == Some(Wake::Writable) && self.has_room(&st, st.waiting_len) {
            st.waiter = None;
            // Sent under the lock: an owner that withdraws its wait (`close`, `cancel_wait`)
            // after this point finds the notice already in its mailbox and can flush it.
            if let Some(owner) = &st.owner {
                self.server.notify.wake(owner, st.exchange, Wake::Writable);
            }
        }
    }

    /// Stores decoded body bytes (or the body's end or error) and wakes a waiting reader.
    pub(crate) fn body_progress(&self, bytes: &[u8], done: bool, error: Option<HttpError>) {
        let mut st = self.lock();
        st.body.bytes.extend_from_slice(bytes);
        st.body.done |= done;
        if let Some(error) = error {
            st.keep_alive = false;
            // A broken or oversized body is refused like a bad head, with its status, unless
            // the owner already answered; `read_body` then reports why.
            if st.exchange_open
                && st.response == Response::NotStarted
                && st.close.is_none()
                && !st.draining
            {
                self.server.stats.rejected.fetch_add(1, Relaxed);
                let answer = response::error_response(error.status());
                self.enqueue(&mut st, answer);
                st.response = Response::Complete;
                st.finished = true;
            }
            st.body.error = Some(error);
        }
        if st.waiter == Some(Wake::Body)
            && (!st.body.bytes.is_empty() || st.body.done || st.body.error.is_some())
        {
            st.waiter = None;
            // Under the lock, as in `written`.
            if let Some(owner) = &st.owner {
                self.server.notify.wake(owner, st.exchange, Wake::Body);
            }
        }
    }

    /// Queues a heartbeat if the stream is still an idle SSE stream.
    pub(crate) fn push_heartbeat(&self) {
        let mut st = self.lock();
        if let (true, Response::Streaming { chunked }) = (st.sse && st.close.is_none(), st.response)
        {
            if st.queue.is_empty() {
                let bytes = if chunked {
                    chunked::frame(crate::sse::HEARTBEAT)
                } else {
                    Bytes::from_static(crate::sse::HEARTBEAT)
                };
                self.enqueue(&mut st, bytes);
            }
        }
    }

    /// Closes from the task's side (the peer left, a write failed, a timer fired).
    pub(crate) fn close_from_task(&self, reason: CloseReason) {
        Self::set_close(&mut self.lock(), reason);
    }

    /// Ends the exchange after a complete response: no more owner calls, no close message.
    pub(crate) fn end_exchange(&self) {
        let mut st = self.lock();
        if st.exchange_open && matches!(st.response, Response::Streaming { .. }) {
            self.server.stats.streams.fetch_sub(1, Relaxed);
        }
        st.exchange_open = false;
        st.owner = None;
        st.waiter = None;
        st.sse = false;
        // A body error outlives the exchange it ended, for a `read_body` that comes late.
        st.body = BodyBuffer {
            error: st.body.error.take(),
            ..BodyBuffer::default()
        };
    }

    fn report_stream_closed(&self, st: &State<N::Owner>, reason: CloseReason, subscribed: bool) {
        self.server.notify.stream_closed(StreamClose {
            stream_id: self.id,
            exchange: st.exchange,
            reason,
            open_for: st.began.elapsed(),
            subscribed,
        });
    }

    /// Reports the close to the owner (once) and returns the topics to leave. Called by the
    /// task as it ends the connection.
    pub(crate) fn report_close(&self, fallback: CloseReason) -> Vec<String> {
        let mut st = self.lock();
        let reason = *st.close.get_or_insert(fallback);
        let tell = (!st.close_reported && st.exchange_open && reason != CloseReason::OwnerGone)
            .then(|| st.owner.clone())
            .flatten();
        let counted = st.exchange_open && !st.close_reported;
        if counted && matches!(st.response, Response::Streaming { .. }) {
            self.server.stats.streams.fetch_sub(1, Relaxed);
        }
        // A call waiting for room or body bytes must not sit out its whole timeout: wake it,
        // and it finds the stream closed. Sent under the lock, as in `written`.
        if let Some((what, owner)) = st.waiter.take().zip(st.owner.as_ref()) {
            self.server.notify.wake(owner, st.exchange, what);
        }
        st.close_reported = true;
        st.exchange_open = false;
        st.owner = None;
        st.queue.clear();
        self.server
            .stats
            .queued_bytes
            .fetch_sub(st.queued_bytes as u64, Relaxed);
        st.queued_bytes = 0;
        st.replay_bytes = 0;
        let topics = std::mem::take(&mut st.topics);
        if !topics.is_empty() {
            self.server.stats.subscribers.fetch_sub(1, Relaxed);
        }
        let exchange = st.exchange;
        if counted {
            self.report_stream_closed(&st, reason, !topics.is_empty());
        }
        drop(st);
        if counted {
            self.server.stats.count_close(reason);
        }
        if let Some(owner) = tell {
            self.server.notify.closed(&owner, exchange, reason);
        }
        topics
    }
}

/// Most bytes chunked framing adds to a chunk: a 16-digit hex size and two CRLFs.
const CHUNK_FRAMING: usize = 16 + 4;

/// Body bytes the task reads ahead of the owner; past this it stops reading until the owner
/// takes some, so a large upload never sits whole in memory.
pub(crate) const BODY_WINDOW: usize = 64 * 1024;

fn check_head<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: i64,
    reason: Option<&[u8]>,
    headers: &[(K, V)],
) -> Result<u16, StreamError> {
    let status = response::check_status(status).map_err(|e| StreamError::Invalid(e.0))?;
    if let Some(reason) = reason {
        response::check_reason(reason).map_err(|e| StreamError::Invalid(e.0))?;
    }
    for (name, value) in headers {
        response::check_header(name.as_ref(), value.as_ref())
            .map_err(|e| StreamError::Invalid(e.0))?;
    }
    Ok(status)
}
