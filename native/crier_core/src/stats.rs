//! Counters every server keeps, cheap to read at any time.
//!
//! Gauges follow from ownership: a [`GaugeHold`] is held by the state it counts (an open
//! stream, a subscribed connection) and gives its count back when that state is dropped, so
//! no path can forget a decrement. The counters every write of every connection touches are
//! [`Spread`] over cache lines, so connections on different cores do not fight over one.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::report::CloseReason;

/// Live counters of one server. Gauges go up and down; totals only up.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open TCP connections (gauge).
    pub connections: AtomicU64,
    /// Responses being streamed, owned or subscribed (gauge).
    pub streams: AtomicU64,
    /// Connections subscribed to at least one topic (gauge).
    pub subscribers: AtomicU64,
    /// Topics with at least one subscriber or a replay ring (gauge).
    pub topics: AtomicU64,
    /// Connection tasks alive, a leak check for tests (gauge).
    pub tasks: AtomicU64,
    /// Requests handed to an owner (total).
    pub requests: AtomicU64,
    /// Requests refused with an error status before any handler (total).
    pub rejected: AtomicU64,
    /// Bytes written to sockets (total).
    pub bytes_written: Spread,
    /// Write system calls made to sockets, each a vectored write of every queued chunk that
    /// fits (total): `bytes_written / writes` is the bytes one call carried.
    pub writes: Spread,
    /// Bytes queued for writing and not yet written, over all connections: the memory held
    /// by write queues (gauge).
    pub queued_bytes: Spread,
    /// Closes by reason, indexed by [`CloseReason::index`] (totals).
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
            bytes_written: self.bytes_written.sum(),
            writes: self.writes.sum(),
            queued_bytes: self.queued_bytes.sum(),
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

/// Shards of a [`Spread`]; a thread keeps to one. More than the cores Crier runs on is
/// wasted memory, fewer makes threads share.
const SHARDS: usize = 16;

/// One shard on a cache line of its own: 128 bytes, because x86's adjacent-line prefetcher
/// pulls lines in pairs (Intel optimization manual, section 3.7.3; crossbeam pads the same).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter that every thread adds to its own shard of, read as the sum. Used for what every
/// write of every connection updates. Subtractions may land on another shard than their
/// additions; the wrapping sum is still exact.
#[derive(Debug, Default)]
pub struct Spread {
    shards: [Shard; SHARDS],
}

impl Spread {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.shards[shard_of_this_thread()].0.fetch_add(n, Relaxed);
    }

    /// Subtracts `n` (a gauge's decrement).
    pub fn sub(&self, n: u64) {
        self.shards[shard_of_this_thread()].0.fetch_sub(n, Relaxed);
    }

    /// The current value.
    pub fn sum(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, shard| sum.wrapping_add(shard.0.load(Relaxed)))
    }
}

fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
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

/// A gauge a piece of connection state holds a count of.
pub(crate) trait Gauge {
    fn counter(stats: &Stats) -> &AtomicU64;
}

/// [`Stats::streams`], held by a streamed response.
#[derive(Debug)]
pub(crate) struct Streams;

impl Gauge for Streams {
    fn counter(stats: &Stats) -> &AtomicU64 {
        &stats.streams
    }
}

/// [`Stats::subscribers`], held by a stream subscribed to at least one topic.
#[derive(Debug)]
pub(crate) struct Subscribers;

impl Gauge for Subscribers {
    fn counter(stats: &Stats) -> &AtomicU64 {
        &stats.subscribers
    }
}

/// One count of gauge `G`, held by the state it counts and given back when dropped. The gauge
/// is a type, so a hold is one pointer (and an `Option` of one no more).
#[derive(Debug)]
pub(crate) struct GaugeHold<G: Gauge> {
    stats: Arc<Stats>,
    gauge: PhantomData<G>,
}

impl<G: Gauge> GaugeHold<G> {
    pub(crate) fn take(stats: &Arc<Stats>) -> Self {
        G::counter(stats).fetch_add(1, Relaxed);
        GaugeHold {
            stats: stats.clone(),
            gauge: PhantomData,
        }
    }
}

impl<G: Gauge> Drop for GaugeHold<G> {
    fn drop(&mut self) {
        G::counter(&self.stats).fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_sums_what_every_thread_added_and_took() {
        let spread = Arc::new(Spread::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let spread = spread.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        spread.add(3);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Taken on this thread, added on others: the sum is still exact.
        spread.sub(4000);
        assert_eq!(spread.sum(), 20_000);
    }

    #[test]
    fn a_gauge_hold_counts_while_it_lives() {
        let stats = Arc::new(Stats::default());
        let streams = GaugeHold::<Streams>::take(&stats);
        let subscribed = GaugeHold::<Subscribers>::take(&stats);
        assert_eq!(
            (stats.snapshot().streams, stats.snapshot().subscribers),
            (1, 1)
        );
        drop(streams);
        assert_eq!(stats.snapshot().streams, 0);
        drop(subscribed);
        assert_eq!(stats.snapshot().subscribers, 0);
    }

    #[test]
    fn a_gauge_hold_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Option<GaugeHold<Streams>>>(), 8);
    }

    #[test]
    fn shards_sit_on_lines_of_their_own() {
        assert_eq!(std::mem::align_of::<Shard>(), 128);
        assert_eq!(std::mem::size_of::<Spread>(), 128 * SHARDS);
    }
}
