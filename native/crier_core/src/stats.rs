//! Counters every server keeps, cheap to read at any time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::notify::CloseReason;

/// Live counters of one server. Gauges go up and down; totals only up.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open TCP connections (gauge).
    pub connections: AtomicU64,
    /// Responses being streamed, owned or subscribed (gauge).
    pub streams: AtomicU64,
    /// Streams subscribed to at least one topic (gauge).
    pub subscribers: AtomicU64,
    /// Topics with at least one subscriber or a replay ring (gauge).
    pub topics: AtomicU64,
    /// Connections tasks alive, a leak check for tests (gauge).
    pub tasks: AtomicU64,
    /// Requests handed to an owner (total).
    pub requests: AtomicU64,
    /// Requests refused with an error status before any handler (total).
    pub rejected: AtomicU64,
    /// Bytes written to sockets (total).
    pub bytes_written: AtomicU64,
    /// Write system calls made to sockets, each a vectored write of every queued chunk that
    /// fits (total): `bytes_written / writes` is the bytes one call carried.
    pub writes: AtomicU64,
    /// Bytes queued for writing and not yet written, over all streams: the memory held by
    /// write queues (gauge).
    pub queued_bytes: AtomicU64,
    /// Stream closes by reason, indexed by [`CloseReason::index`] (totals).
    pub closes: [AtomicU64; CloseReason::ALL.len()],
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// See [`Stats::connections`].
    pub connections: u64,
    /// See [`Stats::streams`].
    pub streams: u64,
    /// See [`Stats::subscribers`].
    pub subscribers: u64,
    /// See [`Stats::topics`].
    pub topics: u64,
    /// See [`Stats::tasks`].
    pub tasks: u64,
    /// See [`Stats::requests`].
    pub requests: u64,
    /// See [`Stats::rejected`].
    pub rejected: u64,
    /// See [`Stats::bytes_written`].
    pub bytes_written: u64,
    /// See [`Stats::writes`].
    pub writes: u64,
    /// See [`Stats::queued_bytes`].
    pub queued_bytes: u64,
    /// Closes by reason.
    pub closes: Vec<(CloseReason, u64)>,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.load(Relaxed),
            streams: self.streams.load(Relaxed),
            subscribers: self.subscribers.load(Relaxed),
            topics: self.topics.load(Relaxed),
            tasks: self.tasks.load(Relaxed),
            requests: self.requests.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            writes: self.writes.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            closes: CloseReason::ALL
                .iter()
                .map(|r| (*r, self.closes[r.index()].load(Relaxed)))
                .collect(),
        }
    }

    pub(crate) fn count_close(&self, reason: CloseReason) {
        self.closes[reason.index()].fetch_add(1, Relaxed);
    }
}

/// Decrements a gauge when dropped, so every exit path of a task counts down.
pub(crate) struct GaugeGuard<'a>(pub &'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        GaugeGuard(gauge)
    }

    /// Takes over one count already added (by the accept loop, before the task existed).
    pub(crate) fn adopt(gauge: &'a AtomicU64) -> Self {
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
