//! The exchange lifecycle: one request and its response, from the request head to the end.
//!
//! ```text
//!   begin ──> Open(Pending) ──send_chunked──> Open(Streaming) ──finish──> Finished ──end──> Ended
//!                │  │ inform (1xx: stays Pending)        │ (subscribed: owner lets go,
//!                │  ├─send_resp───────> Open(Complete) ──┤  stays Open)
//!                │  ├─send_head───────> Open(Sized) ─────┤
//!                │  └─HEAD/204/304────> Open(HeadOnly) ──┤
//!                ├─ body refused ─────────────────────────> Finished
//!                └─ owner gone (a 500) ───────────────────> Finished
//!   any state ──connection closes──> Ended
//! ```
//!
//! Pure state: each transition checks the call against its own exchange, decides the framing
//! through [`crate::http::response`] and returns the bytes to queue; the connection queues
//! them. Nothing here knows the transport, so an HTTP/2 stream can hold an exchange just as an
//! HTTP/1.1 connection holds one at a time.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::http::response::{self, Framing};
use crate::http::{chunked, RequestHead, Version};
use crate::stats::{GaugeHold, Stats, Streams};

/// What went wrong with an owner's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The connection is closed, or the exchange the call names is over: `{:error, :closed}`.
    Closed,
    /// A response head was already sent for this exchange.
    AlreadySent,
    /// `chunk` before `send_chunked`, or after a complete response.
    NotStreaming,
    /// A value that cannot go on the wire; the message says which and why.
    Invalid(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Closed => f.write_str("connection closed"),
            CallError::AlreadySent => f.write_str("a response was already sent"),
            CallError::NotStreaming => f.write_str("the response is not a chunked stream"),
            CallError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CallError {}

impl From<response::InvalidResponse> for CallError {
    fn from(invalid: response::InvalidResponse) -> Self {
        CallError::Invalid(invalid.0)
    }
}

/// The facts of a request that shape its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestFacts {
    pub(crate) version: Version,
    pub(crate) is_head: bool,
    /// The request allows the connection to carry another one (RFC 9112 section 9.3).
    pub(crate) keep_alive: bool,
}

impl RequestFacts {
    pub(crate) fn of(head: &RequestHead) -> Self {
        RequestFacts {
            version: head.version,
            is_head: head.is_head(),
            keep_alive: head.keep_alive,
        }
    }
}

/// Where the response of an open exchange stands.
#[derive(Debug)]
pub(crate) enum Response {
    /// No final head yet; interim (1xx) heads may go out.
    Pending,
    /// A streamed body follows the head, as chunks or delimited by the close. Holds one count
    /// of the `streams` gauge for as long as it streams.
    Streaming {
        chunked: bool,
        /// An SSE stream: it gets heartbeats while idle.
        sse: bool,
        _counted: GaugeHold<Streams>,
    },
    /// `remaining` more body bytes follow a content-length head.
    Sized { remaining: u64 },
    /// A head no body may follow (HEAD, 204, 304): chunks are taken and dropped, as the body
    /// of a HEAD answer is.
    HeadOnly,
    /// A complete response is queued.
    Complete,
}

/// The lifecycle of an exchange.
#[derive(Debug)]
pub(crate) enum Stage {
    /// The owner may respond.
    Open(Response),
    /// The owner is done: once what is queued is written, the exchange ends.
    Finished,
    /// Over. Every call naming this exchange gets [`CallError::Closed`].
    Ended,
}

/// A checked status: its code, and the application's own reason phrase if it gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status<'a> {
    pub(crate) code: u16,
    pub(crate) reason: Option<&'a [u8]>,
}

impl Status<'static> {
    /// A code with Crier's own phrase.
    #[cfg(test)]
    pub(crate) fn code(code: u16) -> Self {
        Status { code, reason: None }
    }
}

/// How a chunk goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkPlan {
    /// As one chunk of a chunked body.
    Framed,
    /// As given: a close-delimited or sized body.
    Raw,
    /// Not at all: the answer to a HEAD request has no body.
    Dropped,
}

/// What [`Exchange::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// No response was sent: the caller sends one (a 500) and finishes again.
    NothingSent,
    /// Finished; with `last_chunk`, the last chunk must be queued to end the body.
    Done { last_chunk: bool },
}

/// One request and its response. See the module docs.
#[derive(Debug)]
pub(crate) struct Exchange {
    id: u64,
    request: RequestFacts,
    /// The connection may carry another request after this one.
    keep_alive: bool,
    /// When the request arrived, as [`clock_ns`] read then (8 bytes where an `Instant` takes
    /// 16), for the durations telemetry reports.
    began_ns: u64,
    stage: Stage,
}

/// Nanoseconds since the first call (a u64 of them lasts 584 years).
fn clock_ns() -> u64 {
    static START: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    u64::try_from(START.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Exchange {
    /// No exchange yet: every call is refused.
    pub(crate) fn none() -> Self {
        Exchange {
            id: 0,
            request: RequestFacts {
                version: Version::Http11,
                is_head: false,
                keep_alive: false,
            },
            keep_alive: false,
            began_ns: 0,
            stage: Stage::Ended,
        }
    }

    /// Exchange `id` for a request with `request`'s facts; no response yet.
    pub(crate) fn begin(id: u64, request: RequestFacts) -> Self {
        Exchange {
            id,
            request,
            keep_alive: request.keep_alive,
            began_ns: clock_ns(),
            stage: Stage::Open(Response::Pending),
        }
    }

    /// How long the exchange has been open.
    pub(crate) fn open_for(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(clock_ns().saturating_sub(self.began_ns))
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn version(&self) -> Version {
        self.request.version
    }

    /// Whether this is exchange `id` and it has not ended.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.id == id && !matches!(self.stage, Stage::Ended)
    }

    /// Whether the owner may still call.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.stage, Stage::Finished)
    }

    /// The connection may carry another request once this exchange is over.
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The connection ends after this exchange, whatever the response said.
    pub(crate) fn close_after(&mut self) {
        self.keep_alive = false;
    }

    /// The response, if exchange `id` is open.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] for another exchange, or one that is over.
    pub(crate) fn open(&mut self, id: u64) -> Result<&mut Response, CallError> {
        match &mut self.stage {
            Stage::Open(response) if self.id == id => Ok(response),
            _ => Err(CallError::Closed),
        }
    }

    /// `(chunked, sse)` of an open streamed response.
    pub(crate) fn streaming(&self) -> Option<(bool, bool)> {
        match self.stage {
            Stage::Open(Response::Streaming { chunked, sse, .. }) => Some((chunked, sse)),
            _ => None,
        }
    }

    /// Whether exchange `id` has sent a final head (or a complete response).
    pub(crate) fn response_started(&self, id: u64) -> bool {
        self.id == id && !matches!(self.stage, Stage::Open(Response::Pending))
    }

    /// Whether no final head went out yet.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.stage, Stage::Open(Response::Pending))
    }

    fn pending(&mut self, id: u64) -> Result<(), CallError> {
        match self.open(id)? {
            Response::Pending => Ok(()),
            _ => Err(CallError::AlreadySent),
        }
    }

    /// `send_chunked`: the head of a streamed body. `body_held_back`: the client still holds
    /// back a body it announced with `Expect: 100-continue`.
    pub(crate) fn start_stream<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u64,
        status: Status<'_>,
        headers: &[(K, V)],
        sse: bool,
        body_held_back: bool,
        stats: &Arc<Stats>,
    ) -> Result<Bytes, CallError> {
        self.pending(id)?;
        let request = self.request;
        let framing = response::stream_framing(request.version, request.is_head, status.code);
        let head = self.encode_head(status, headers, framing, body_held_back);
        self.stage = Stage::Open(match framing {
            Framing::NoBody => Response::HeadOnly,
            _ => Response::Streaming {
                chunked: framing == Framing::Chunked,
                sse,
                _counted: GaugeHold::take(stats),
            },
        });
        Ok(head)
    }

    /// `send_resp`: a complete response, its body unless the request was HEAD.
    pub(crate) fn respond<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u64,
        status: Status<'_>,
        headers: &[(K, V)],
        body: &[u8],
        body_held_back: bool,
    ) -> Result<Bytes, CallError> {
        self.pending(id)?;
        let framing =
            response::complete_framing(status.code, self.request.is_head, headers, body.len());
        let head = self.encode_head(status, headers, framing, body_held_back);
        let with_body = response::body_follows(self.request.is_head, framing) && !body.is_empty();
        let mut out = BytesMut::with_capacity(head.len() + if with_body { body.len() } else { 0 });
        out.put_slice(&head);
        if with_body {
            out.put_slice(body);
        }
        self.stage = Stage::Open(Response::Complete);
        Ok(out.freeze())
    }

    /// `send_head`: a head with `content-length: length`; the body follows in chunks.
    pub(crate) fn start_sized<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u64,
        status: Status<'_>,
        headers: &[(K, V)],
        length: u64,
        body_held_back: bool,
    ) -> Result<Bytes, CallError> {
        self.pending(id)?;
        let framing = response::sized_framing(status.code, length);
        let head = self.encode_head(status, headers, framing, body_held_back);
        self.stage = Stage::Open(if !response::body_follows(self.request.is_head, framing) {
            Response::HeadOnly
        } else if length == 0 {
            Response::Complete
        } else {
            Response::Sized { remaining: length }
        });
        Ok(head)
    }

    /// `inform`: an interim head, or `None` where none may be sent (HTTP/1.0).
    pub(crate) fn inform<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u64,
        status: Status<'_>,
        headers: &[(K, V)],
    ) -> Result<Option<Bytes>, CallError> {
        self.pending(id)?;
        Ok(response::informational_head(
            self.request.version,
            status.code,
            status.reason,
            headers,
        ))
    }

    fn encode_head<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        status: Status<'_>,
        headers: &[(K, V)],
        framing: Framing,
        body_held_back: bool,
    ) -> Bytes {
        self.keep_alive = response::keeps_alive(self.keep_alive, framing, headers, body_held_back);
        response::encode_head(
            self.request.version,
            status.code,
            status.reason,
            headers,
            framing,
            self.keep_alive,
        )
    }

    /// How a chunk of `len` bytes of exchange `id` would go out; nothing changes until
    /// [`Exchange::body_sent`] says it was queued.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`], [`CallError::NotStreaming`] with no streamed or sized body, and
    /// [`CallError::Invalid`] for more bytes than a sized body has left.
    pub(crate) fn chunk(&mut self, id: u64, len: usize) -> Result<ChunkPlan, CallError> {
        let is_head = self.request.is_head;
        match self.open(id)? {
            Response::Streaming { chunked: true, .. } => Ok(ChunkPlan::Framed),
            Response::Streaming { chunked: false, .. } => Ok(ChunkPlan::Raw),
            Response::Sized { remaining } if len as u64 > *remaining => Err(CallError::Invalid(
                format!("body longer than its content-length: {remaining} bytes left, {len} given"),
            )),
            Response::Sized { .. } => Ok(ChunkPlan::Raw),
            Response::HeadOnly => Ok(ChunkPlan::Dropped),
            Response::Complete if is_head => Ok(ChunkPlan::Dropped),
            Response::Pending | Response::Complete => Err(CallError::NotStreaming),
        }
    }

    /// `len` body bytes were queued: a sized body counts them.
    pub(crate) fn body_sent(&mut self, len: usize) {
        if let Stage::Open(Response::Sized { remaining }) = &mut self.stage {
            *remaining = remaining.saturating_sub(len as u64);
        }
    }

    /// The owner went away before the response ended: what it queued goes out, then the
    /// connection closes without the body's end (no last chunk), which tells the client the
    /// response was cut. Returns the 500 to queue when no final response was sent (a 1xx may
    /// have gone out; the 500 is the final response after it), as Cowboy answers for a
    /// crashed request process, rather than a connection closed without a word.
    pub(crate) fn abandon(&mut self) -> Option<Bytes> {
        self.keep_alive = false;
        let answer = self.is_pending().then(|| response::error_response(500));
        self.stage = Stage::Finished;
        answer
    }

    /// The owner (or the last topic) is done with the open exchange. A sized body cut short
    /// closes the connection after it, so the client sees the truncation.
    pub(crate) fn finish(&mut self) -> Finish {
        let last_chunk = match &self.stage {
            Stage::Open(Response::Pending) => return Finish::NothingSent,
            Stage::Open(Response::Sized { remaining }) => {
                if *remaining > 0 {
                    self.keep_alive = false;
                }
                false
            }
            Stage::Open(Response::Streaming { chunked, .. }) => *chunked,
            Stage::Open(_) => false,
            Stage::Finished | Stage::Ended => return Finish::Done { last_chunk: false },
        };
        self.stage = Stage::Finished;
        Finish::Done { last_chunk }
    }

    /// A request body was refused (too large, malformed) before any response: the error
    /// answer goes out instead, and the connection ends after it. Returns the answer, or
    /// `None` when a response was already started (the owner's read then reports it).
    pub(crate) fn refuse_body(&mut self, status: u16) -> Option<Bytes> {
        self.keep_alive = false;
        if !self.is_pending() {
            return None;
        }
        self.stage = Stage::Finished;
        Some(response::error_response(status))
    }

    /// Shutdown ends an open streamed body cleanly: the bytes to queue (the final event,
    /// then the last chunk), and the exchange is finished. Other exchanges are left as they
    /// are: what they queued is written, then the connection closes.
    pub(crate) fn end_for_shutdown(&mut self, final_event: Option<&Bytes>) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some((chunked, sse)) = self.streaming() {
            if let (Some(event), true) = (final_event, sse) {
                out.push(if chunked {
                    chunked::frame(event)
                } else {
                    event.clone()
                });
            }
            if chunked {
                out.push(Bytes::from_static(chunked::LAST_CHUNK));
            }
            self.stage = Stage::Finished;
        }
        self.keep_alive = false;
        out
    }

    /// The exchange is over.
    pub(crate) fn end(&mut self) {
        self.stage = Stage::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream"), ("date", "d")];

    fn get(version: Version) -> RequestFacts {
        RequestFacts {
            version,
            is_head: false,
            keep_alive: true,
        }
    }

    fn head_request() -> RequestFacts {
        RequestFacts {
            is_head: true,
            ..get(Version::Http11)
        }
    }

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn no_exchange_refuses_every_call() {
        let mut exchange = Exchange::none();
        let stats = Arc::new(Stats::default());
        assert_eq!(exchange.open(0).err(), Some(CallError::Closed));
        assert_eq!(
            exchange
                .start_stream(0, Status::code(200), SSE, true, false, &stats)
                .err(),
            Some(CallError::Closed)
        );
    }

    #[test]
    fn a_call_for_another_exchange_is_closed() {
        let mut exchange = Exchange::begin(2, get(Version::Http11));
        assert!(exchange.is_live(2));
        assert!(!exchange.is_live(1));
        assert_eq!(exchange.chunk(1, 3), Err(CallError::Closed));
        assert_eq!(
            exchange.inform(1, Status::code(103), SSE).err(),
            Some(CallError::Closed)
        );
        assert!(!exchange.response_started(1));
    }

    #[test]
    fn start_stream_counts_a_stream_until_finished() {
        let stats = Arc::new(Stats::default());
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let head = exchange
            .start_stream(1, Status::code(200), SSE, true, false, &stats)
            .unwrap();
        assert_eq!(
            text(&head),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ndate: d\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(stats.snapshot().streams, 1);
        assert_eq!(exchange.streaming(), Some((true, true)));
        assert_eq!(exchange.chunk(1, 5), Ok(ChunkPlan::Framed));
        assert_eq!(
            exchange
                .start_stream(1, Status::code(200), SSE, true, false, &stats)
                .err(),
            Some(CallError::AlreadySent)
        );
        assert_eq!(exchange.finish(), Finish::Done { last_chunk: true });
        assert_eq!(stats.snapshot().streams, 0);
        assert!(exchange.is_finished());
        assert_eq!(exchange.chunk(1, 5), Err(CallError::Closed));
        exchange.end();
        assert!(!exchange.is_live(1));
    }

    #[test]
    fn head_204_and_304_streams_are_head_only_and_count_nothing() {
        let stats = Arc::new(Stats::default());
        for (request, status) in [
            (head_request(), 200),
            (get(Version::Http11), 204),
            (get(Version::Http11), 304),
        ] {
            let mut exchange = Exchange::begin(1, request);
            let head = exchange
                .start_stream(1, Status::code(status), SSE, true, false, &stats)
                .unwrap();
            assert!(
                !text(&head).contains("transfer-encoding"),
                "{}",
                text(&head)
            );
            assert_eq!(stats.snapshot().streams, 0);
            assert_eq!(exchange.chunk(1, 9), Ok(ChunkPlan::Dropped));
            assert_eq!(exchange.finish(), Finish::Done { last_chunk: false });
            assert!(exchange.keep_alive());
        }
    }

    #[test]
    fn an_http10_stream_is_close_delimited_and_ends_the_connection() {
        let stats = Arc::new(Stats::default());
        let mut exchange = Exchange::begin(1, get(Version::Http10));
        let head = exchange
            .start_stream(1, Status::code(200), SSE, false, false, &stats)
            .unwrap();
        assert!(text(&head).starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(text(&head).ends_with("connection: close\r\n\r\n"));
        assert_eq!(exchange.chunk(1, 3), Ok(ChunkPlan::Raw));
        assert!(!exchange.keep_alive());
        assert_eq!(exchange.finish(), Finish::Done { last_chunk: false });
    }

    #[test]
    fn respond_sends_the_body_except_to_head() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let out = exchange
            .respond(1, Status::code(200), &[("date", "d")], b"hi", false)
            .unwrap();
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ndate: d\r\ncontent-length: 2\r\n\r\nhi"
        );
        assert_eq!(exchange.chunk(1, 1), Err(CallError::NotStreaming));
        let mut exchange = Exchange::begin(1, head_request());
        let out = exchange
            .respond(1, Status::code(200), &[("date", "d")], b"hi", false)
            .unwrap();
        assert!(text(&out).ends_with("content-length: 2\r\n\r\n"));
        assert_eq!(exchange.chunk(1, 1), Ok(ChunkPlan::Dropped));
    }

    #[test]
    fn a_sized_body_counts_down_and_a_short_one_closes_the_connection() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_sized(1, Status::code(200), &[("date", "d")], 5, false)
            .unwrap();
        assert_eq!(exchange.chunk(1, 3), Ok(ChunkPlan::Raw));
        exchange.body_sent(3);
        assert!(matches!(exchange.chunk(1, 3), Err(CallError::Invalid(_))));
        assert_eq!(exchange.finish(), Finish::Done { last_chunk: false });
        assert!(!exchange.keep_alive(), "2 bytes short");

        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_sized(1, Status::code(200), &[("date", "d")], 4, false)
            .unwrap();
        exchange.body_sent(4);
        assert!(matches!(exchange.chunk(1, 1), Err(CallError::Invalid(_))));
        assert_eq!(exchange.finish(), Finish::Done { last_chunk: false });
        assert!(exchange.keep_alive(), "the whole body went out");

        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_sized(1, Status::code(200), &[("date", "d")], 0, false)
            .unwrap();
        assert_eq!(exchange.chunk(1, 0), Err(CallError::NotStreaming));
        assert_eq!(exchange.finish(), Finish::Done { last_chunk: false });
        assert!(exchange.keep_alive());
    }

    #[test]
    fn an_abandoned_exchange_finishes_without_its_end_and_closes_the_connection() {
        let stats = Arc::new(Stats::default());
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_stream(1, Status::code(200), SSE, false, false, &stats)
            .unwrap();
        assert_eq!(exchange.abandon(), None, "a response had started");
        assert!(exchange.is_finished());
        assert!(!exchange.keep_alive());
        assert_eq!(stats.snapshot().streams, 0);
    }

    #[test]
    fn an_owner_gone_before_any_response_leaves_a_500() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange.inform(1, Status::code(103), SSE).unwrap();
        let answer = exchange.abandon().unwrap();
        assert!(text(&answer).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(exchange.is_finished());
        assert!(!exchange.keep_alive());
    }

    #[test]
    fn a_reason_phrase_of_the_applications_own_goes_in_the_status_line() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let status = Status {
            code: 200,
            reason: Some(&b"Fine"[..]),
        };
        let out = exchange
            .respond(1, status, &[("date", "d")], b"", false)
            .unwrap();
        assert!(text(&out).starts_with("HTTP/1.1 200 Fine\r\n"));
    }

    #[test]
    fn finish_before_any_response_sends_nothing() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        assert_eq!(exchange.finish(), Finish::NothingSent);
        assert!(exchange.is_open());
    }

    #[test]
    fn inform_keeps_the_response_pending() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let head = exchange
            .inform(1, Status::code(103), &[("link", "<x>")])
            .unwrap()
            .unwrap();
        assert_eq!(text(&head), "HTTP/1.1 103 Early Hints\r\nlink: <x>\r\n\r\n");
        assert!(exchange.is_pending());
        let mut old = Exchange::begin(1, get(Version::Http10));
        assert_eq!(old.inform(1, Status::code(103), SSE), Ok(None));
    }

    #[test]
    fn a_held_back_body_or_connection_close_ends_the_connection() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .respond(1, Status::code(200), &[("date", "d")], b"", true)
            .unwrap();
        assert!(!exchange.keep_alive());
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let out = exchange
            .respond(1, Status::code(200), &[("connection", "close")], b"", false)
            .unwrap();
        assert!(text(&out).ends_with("connection: close\r\n\r\n"));
        assert!(!exchange.keep_alive());
    }

    #[test]
    fn a_refused_body_answers_only_before_a_response() {
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        let answer = exchange.refuse_body(413).unwrap();
        assert!(text(&answer).starts_with("HTTP/1.1 413 "));
        assert!(exchange.is_finished());
        assert!(!exchange.keep_alive());
        let stats = Arc::new(Stats::default());
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_stream(1, Status::code(200), SSE, false, false, &stats)
            .unwrap();
        assert_eq!(exchange.refuse_body(400), None);
        assert!(exchange.is_open());
    }

    #[test]
    fn shutdown_ends_a_stream_with_the_final_event_then_the_last_chunk() {
        let stats = Arc::new(Stats::default());
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_stream(1, Status::code(200), SSE, true, false, &stats)
            .unwrap();
        let bye = Bytes::from_static(b"data: bye\n\n");
        let out = exchange.end_for_shutdown(Some(&bye));
        let out: Vec<&[u8]> = out.iter().map(|b| &b[..]).collect();
        assert_eq!(out, [&b"b\r\ndata: bye\n\n\r\n"[..], b"0\r\n\r\n"]);
        assert!(exchange.is_finished());
        assert_eq!(stats.snapshot().streams, 0);
        // Not SSE: no final event, only the clean end.
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        exchange
            .start_stream(1, Status::code(200), SSE, false, false, &stats)
            .unwrap();
        assert_eq!(exchange.end_for_shutdown(Some(&bye)).len(), 1);
        // Nothing streamed: nothing to add.
        let mut exchange = Exchange::begin(1, get(Version::Http11));
        assert!(exchange.end_for_shutdown(Some(&bye)).is_empty());
        assert!(exchange.is_open());
    }
}
