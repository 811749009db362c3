//! How the core tells its owner something. The core never sees a BEAM term: the NIF crate
//! implements [`Notify`] with `enif_send`, cargo tests with channels.

use std::sync::Arc;

use crate::http::RequestHead;
use crate::stream::Stream;

/// Why a stream ended; each has its own message and its own counter in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed (FIN, RST) or a write failed.
    Closed,
    /// Dead peer: send timeout, `TCP_USER_TIMEOUT`, or the owner gave up waiting.
    Timeout,
    /// A slow subscriber was dropped from a broadcast.
    Overflow,
    /// The server is stopping.
    Shutdown,
    /// The owner died or let go of its last reference before the response ended; nobody
    /// is left to tell.
    OwnerGone,
}

impl CloseReason {
    /// All reasons, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Closed,
        CloseReason::Timeout,
        CloseReason::Overflow,
        CloseReason::Shutdown,
        CloseReason::OwnerGone,
    ];

    /// A dense index, for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used on the Elixir side (`:closed`, `:timeout`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Closed => "closed",
            CloseReason::Timeout => "timeout",
            CloseReason::Overflow => "overflow",
            CloseReason::Shutdown => "shutdown",
            CloseReason::OwnerGone => "owner_gone",
        }
    }
}

/// What a waiting owner call is woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The write queue has room again.
    Writable,
    /// Request body bytes (or its end, or an error) are ready to read.
    Body,
}

/// The owner side of a server, implemented by the NIF crate and by tests.
///
/// Every method is called from a tokio worker thread and must not block.
pub trait Notify: Send + Sync + Sized + 'static {
    /// Identifies the process that owns a stream, with whatever it needs to be told things.
    type Owner: Clone + Send + Sync + 'static;

    /// A request head arrived on `stream` as exchange `exchange`. The implementation hands it
    /// to a fresh owner, which takes the stream with [`Stream::set_owner`].
    fn request(&self, stream: &Arc<Stream<Self>>, exchange: u64, head: RequestHead);

    /// The stream of `exchange` closed for `reason`; sent at most once per exchange.
    fn closed(&self, owner: &Self::Owner, exchange: u64, reason: CloseReason);

    /// A call of `owner` that waits for `what` on `exchange` may go on.
    fn wake(&self, owner: &Self::Owner, exchange: u64, what: Wake);

    /// The server finished shutting down; every stream is closed.
    fn stopped(&self) {}

    /// A stream closed: every close the stats count, owned or subscribed (subscribed
    /// streams have no owner to tell), with how long its exchange had been open. For
    /// metrics; it may be called on any thread, and the default does nothing.
    fn stream_closed(&self, _close: StreamClose) {}
}

/// One stream close, as [`Notify::stream_closed`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct StreamClose {
    /// The connection's stream id.
    pub stream_id: u64,
    /// The exchange that closed.
    pub exchange: u64,
    /// Why.
    pub reason: CloseReason,
    /// Time from the request's head to the close.
    pub open_for: std::time::Duration,
    /// Whether the stream was subscribed to a topic.
    pub subscribed: bool,
}
