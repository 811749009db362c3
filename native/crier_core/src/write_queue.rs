//! The bounded write queue of one exchange's response: the chunks waiting for the socket,
//! the bytes the socket has not taken yet, the owner call waiting for room, and the overflow
//! policy of broadcasts.
//!
//! ```text
//!            offer (fits)                       written(n) frees room
//!   Idle ───────────────────> Idle        Waiting{needs} ─────────────────> Idle + wake owner
//!     │ offer (full)                           │ cancel / close
//!     └──────────────────────> Waiting{needs}  └──────────────────────────> Idle (no wake)
//! ```
//!
//! Overflow, for broadcasts only (an owner's `chunk` waits instead):
//! - at push, a hard cap of [`HARD_CAP_FACTOR`] times the limit bounds the memory a stream
//!   whose writer has not run yet can hold;
//! - when the socket refuses more ([`WriteQueue::socket_full`]), live bytes past the limit mean
//!   the reader has really fallen behind.
//!
//! So a reader is judged by what the socket has not taken, not by the size of one burst the
//! hub handed over before the writer had a turn.
//!
//! Byte accounting: `unwritten` counts every byte from its push until the socket took it,
//! including bytes the task has taken out of the queue for a write. The server's
//! `queued_bytes` gauge follows it, and the queue gives its count back when dropped.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::stats::Stats;

/// How far past its limit the queue of a subscribed stream may grow before its writer had a
/// chance to run: the memory bound of a subscriber whose reader stopped.
pub(crate) const HARD_CAP_FACTOR: usize = 2;

/// Most bytes chunked framing adds to a chunk: a 16-digit hex size and two CRLFs.
pub(crate) const CHUNK_FRAMING: usize = 16 + 4;

/// Whether an owner's chunk was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued; the call may return.
    Queued,
    /// The queue is full and nothing was queued: the caller waits for
    /// [`crate::report::Wake::Writable`] (sent once, to this exchange's owner) and tries again.
    Full,
}

/// A subscriber fell too far behind its broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// The owner call waiting for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    None,
    /// A chunk of `needs` bytes is waiting for room. Never zero (empty chunks are not
    /// queued), which lets the enum take no more room than the number.
    Writable {
        needs: NonZeroUsize,
    },
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes pushed and not yet taken by the socket.
    unwritten: usize,
    /// Of `unwritten`, bytes a topic's replay ring queued: bounded by the ring, and not
    /// counted against the room of live events, or a client reconnecting after a long absence
    /// would overflow at once.
    replay: usize,
    waiter: Waiter,
    limit: usize,
    stats: Arc<Stats>,
}

impl WriteQueue {
    /// An empty queue of `limit` bytes whose bytes `stats` counts.
    pub(crate) fn new(limit: usize, stats: Arc<Stats>) -> Self {
        WriteQueue {
            chunks: VecDeque::new(),
            unwritten: 0,
            replay: 0,
            waiter: Waiter::None,
            limit,
            stats,
        }
    }

    /// Bytes pushed and not yet taken by the socket.
    #[cfg(test)]
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Whether chunks wait to be taken by the writer.
    pub(crate) fn has_chunks(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Queues `bytes` as they are (a head, a framed chunk, a last chunk).
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.unwritten += bytes.len();
        self.stats.queued_bytes.add(bytes.len() as u64);
        self.chunks.push_back(bytes);
    }

    /// Whether `len` more bytes fit: the queue never holds more than its limit, except for one
    /// larger chunk given to an empty queue.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.unwritten == 0 || self.unwritten + len <= self.limit
    }

    /// An owner's chunk of `len` bytes: `Queued` when it fits (the caller then pushes it),
    /// else `Full`, and the owner is woken once it would fit.
    pub(crate) fn offer(&mut self, len: usize) -> Push {
        match NonZeroUsize::new(len) {
            Some(needs) if !self.has_room(len) => {
                self.waiter = Waiter::Writable { needs };
                Push::Full
            }
            _ => Push::Queued,
        }
    }

    /// Withdraws the owner's wait. Returns false when there was none: the wake-up was already
    /// claimed and is on its way to the owner.
    pub(crate) fn cancel_wait(&mut self) -> bool {
        std::mem::replace(&mut self.waiter, Waiter::None) != Waiter::None
    }

    /// A broadcast event of `bytes`; `replay` when it comes from a ring on subscribe.
    ///
    /// # Errors
    ///
    /// [`Overflow`] when live bytes would pass the hard cap; nothing is queued.
    pub(crate) fn push_broadcast(&mut self, bytes: &Bytes, replay: bool) -> Result<(), Overflow> {
        if replay {
            self.replay += bytes.len();
        } else {
            let live = self.live();
            if live > 0 && live + bytes.len() > self.limit * HARD_CAP_FACTOR {
                return Err(Overflow);
            }
        }
        self.push(bytes.clone());
        Ok(())
    }

    /// The socket refused more while bytes are left: a subscriber with more live bytes than
    /// the limit has fallen behind.
    ///
    /// # Errors
    ///
    /// [`Overflow`] then.
    pub(crate) fn socket_full(&self) -> Result<(), Overflow> {
        if self.live() > self.limit {
            Err(Overflow)
        } else {
            Ok(())
        }
    }

    fn live(&self) -> usize {
        self.unwritten - self.replay.min(self.unwritten)
    }

    /// Whether the connection task holds none of the queue's bytes in a batch of its own:
    /// bytes written now cannot overtake any it took before.
    pub(crate) fn writer_holds_nothing(&self) -> bool {
        self.unwritten == self.queued_len()
    }

    /// Bytes waiting in the queue, none taken by the writer yet.
    pub(crate) fn queued_len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Writes the queued chunks with `send` (a non-blocking socket write) until the socket
    /// refuses more or fails, and returns how many bytes it took. Only for a writer holding
    /// nothing ([`WriteQueue::writer_holds_nothing`]); what the socket did not take stays
    /// queued for the connection task, which also meets any error again and closes.
    pub(crate) fn write_direct(
        &mut self,
        mut send: impl FnMut(&[u8]) -> io::Result<usize>,
    ) -> usize {
        debug_assert!(self.writer_holds_nothing());
        let mut total = 0;
        while let Some(front) = self.chunks.front_mut() {
            match send(front) {
                Ok(n) if n == front.len() => {
                    total += n;
                    self.chunks.pop_front();
                }
                Ok(n) => {
                    total += n;
                    front.advance(n);
                    break;
                }
                Err(_) => break,
            }
        }
        // No owner call waits meanwhile: the caller is the owner, and it did not wait.
        self.account_written(total);
        total
    }

    /// Moves the queued chunks into the writer's batch; they stay counted until written.
    pub(crate) fn take_into(&mut self, out: &mut VecDeque<Bytes>) {
        out.extend(self.chunks.drain(..));
    }

    /// `n` bytes reached the socket. Returns true when the waiting owner must be woken: its
    /// chunk fits now (the wait is over).
    pub(crate) fn written(&mut self, n: usize) -> bool {
        self.account_written(n);
        match self.waiter {
            Waiter::Writable { needs } if self.has_room(needs.get()) => {
                self.waiter = Waiter::None;
                true
            }
            _ => false,
        }
    }

    fn account_written(&mut self, n: usize) {
        let freed = n.min(self.unwritten);
        self.unwritten -= freed;
        self.replay = self.replay.saturating_sub(freed);
        self.stats.queued_bytes.sub(freed as u64);
    }

    /// Drops everything (the connection closed). Returns true when an owner waited: it must be
    /// woken to find the connection closed rather than sit out its timeout.
    pub(crate) fn clear(&mut self) -> bool {
        self.chunks.clear();
        self.stats.queued_bytes.sub(self.unwritten as u64);
        self.unwritten = 0;
        self.replay = 0;
        self.cancel_wait()
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.stats.queued_bytes.sub(self.unwritten as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(limit: usize) -> (WriteQueue, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        (WriteQueue::new(limit, stats.clone()), stats)
    }

    fn bytes(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn a_direct_write_takes_what_the_socket_takes_and_leaves_the_rest_queued() {
        let (mut queue, stats) = queue(100);
        queue.push(bytes(30));
        queue.push(bytes(20));
        assert!(queue.writer_holds_nothing());
        // The socket takes the first chunk and 5 bytes of the second, then is full.
        let mut room = 35;
        let taken = queue.write_direct(|b| {
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(room);
            room -= n;
            Ok(n)
        });
        assert_eq!(taken, 35);
        assert_eq!((queue.unwritten(), queue.queued_len()), (15, 15));
        assert_eq!(stats.snapshot().queued_bytes, 15);
        // A failing socket takes nothing: the bytes stay for the task, which meets the error.
        assert_eq!(
            queue.write_direct(|_| Err(io::ErrorKind::BrokenPipe.into())),
            0
        );
        assert_eq!(queue.queued_len(), 15);
        // Once the task took the rest, it holds bytes nothing may overtake.
        let mut out = VecDeque::new();
        queue.take_into(&mut out);
        queue.push(bytes(1));
        assert!(!queue.writer_holds_nothing());
        queue.written(15);
        assert!(queue.writer_holds_nothing());
    }

    #[test]
    fn pushed_bytes_count_until_the_socket_takes_them() {
        let (mut queue, stats) = queue(100);
        queue.push(bytes(30));
        queue.push(Bytes::new());
        queue.push(bytes(20));
        assert_eq!((queue.unwritten(), stats.snapshot().queued_bytes), (50, 50));
        let mut out = VecDeque::new();
        queue.take_into(&mut out);
        assert_eq!(out.len(), 2);
        assert!(!queue.has_chunks());
        assert_eq!(
            queue.unwritten(),
            50,
            "taken by the writer, not yet by the socket"
        );
        queue.written(45);
        assert_eq!((queue.unwritten(), stats.snapshot().queued_bytes), (5, 5));
        drop(queue);
        assert_eq!(
            stats.snapshot().queued_bytes,
            0,
            "the queue gives its count back"
        );
    }

    #[test]
    fn a_full_queue_makes_the_owner_wait_until_its_chunk_fits() {
        let (mut queue, _) = queue(100);
        assert_eq!(
            queue.offer(500),
            Push::Queued,
            "an empty queue takes any chunk"
        );
        queue.push(bytes(500));
        assert_eq!(queue.offer(10), Push::Full);
        assert!(!queue.written(400), "100 left: 10 more do not fit yet");
        assert!(queue.written(10), "90 left: 10 fit, the owner is woken");
        assert!(!queue.written(10), "woken once");
    }

    #[test]
    fn a_withdrawn_wait_is_not_woken_and_says_whether_it_was_there() {
        let (mut queue, _) = queue(10);
        queue.push(bytes(10));
        assert_eq!(queue.offer(5), Push::Full);
        assert!(queue.cancel_wait());
        assert!(!queue.written(10));
        assert_eq!(queue.offer(50), Push::Queued);
        queue.push(bytes(50));
        assert_eq!(queue.offer(5), Push::Full);
        assert!(queue.written(50));
        assert!(
            !queue.cancel_wait(),
            "already claimed: the wake-up is on its way"
        );
    }

    #[test]
    fn clearing_drops_everything_and_wakes_a_waiter() {
        let (mut queue, stats) = queue(10);
        queue.push(bytes(10));
        assert_eq!(queue.offer(5), Push::Full);
        assert!(queue.clear());
        assert_eq!((queue.unwritten(), stats.snapshot().queued_bytes), (0, 0));
        assert!(!queue.clear());
    }

    #[test]
    fn broadcasts_overflow_at_the_hard_cap_before_the_writer_ran() {
        let (mut queue, _) = queue(100);
        let event = bytes(60);
        for _ in 0..3 {
            queue.push_broadcast(&event, false).unwrap();
        }
        assert_eq!(queue.unwritten(), 180, "past the limit, under the hard cap");
        assert_eq!(queue.push_broadcast(&event, false), Err(Overflow));
        assert_eq!(queue.unwritten(), 180, "nothing queued");
    }

    #[test]
    fn a_subscriber_is_judged_by_what_the_socket_did_not_take() {
        let (mut queue, _) = queue(100);
        let event = bytes(60);
        queue.push_broadcast(&event, false).unwrap();
        queue.push_broadcast(&event, false).unwrap();
        assert_eq!(
            queue.socket_full(),
            Err(Overflow),
            "120 left when the socket refused"
        );
        queue.written(30);
        assert_eq!(
            queue.socket_full(),
            Ok(()),
            "90 left: a reader that keeps up"
        );
    }

    #[test]
    fn replayed_bytes_do_not_use_up_the_room_of_live_ones() {
        let (mut queue, _) = queue(100);
        let big = bytes(1000);
        queue.push_broadcast(&big, true).unwrap();
        queue.push_broadcast(&bytes(150), false).unwrap();
        assert_eq!(queue.socket_full(), Err(Overflow));
        queue.written(1000);
        assert_eq!(queue.unwritten(), 150);
        queue.written(60);
        assert_eq!(queue.socket_full(), Ok(()));
    }
}
