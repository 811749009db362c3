//! What the core reports to an owner besides a request: why a connection's exchange closed,
//! and what a waiting call is woken for. A leaf: it imports nothing of the crate, so every
//! other module may name these values without importing one another.

/// Why an exchange ended before its response did; each has its own message and its own
/// counter in the stats.
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

/// One counted close, as [`crate::reporter::Reporter::exchange_closed`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeClose {
    /// The connection's id.
    pub connection_id: u64,
    /// The exchange that closed.
    pub exchange: u64,
    /// Why.
    pub reason: CloseReason,
    /// Time from the request's head to the close.
    pub open_for: std::time::Duration,
    /// Whether the exchange was subscribed to a topic.
    pub subscribed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_are_the_elixir_atoms() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let names: Vec<&str> = CloseReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            ["closed", "timeout", "overflow", "shutdown", "owner_gone"]
        );
    }
}
