//! A queue of reports with a doorbell: how the NIF crate hands what the core reports to a
//! BEAM process without sending one message per report from a tokio thread.
//!
//! Why (measured on connection churn, see `bench/AB-issue-11.md`): a message `enif_send`
//! makes on a tokio thread lives in the BEAM's one locked allocator instance for foreign
//! threads. The scheduler that frees it hands each block back through that instance's
//! delayed-dealloc queue, served by the VM's aux thread, which it must wake, and wake
//! again once thread progress allows the free. That was a fifth of the server's CPU. Here
//! the report is queued, and the reader is woken through a datagram socket it reads with
//! `gen_udp`: the BEAM makes that message itself, on a scheduler. The reader takes the
//! queue in bounded batches and builds every term on its own scheduler.
//!
//! The doorbell rings once per batch: on the push that finds the queue taken, not on every
//! push. The queue is FIFO, so what one process is told keeps the order it was reported in.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

/// What a report costs to take, bounding each [`Relay::take`].
pub trait Weigh {
    /// Roughly the bytes (and terms, counted as bytes) the reader builds from it.
    fn weight(&self) -> usize;
}

/// Whether the reader knows there is something to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doorbell {
    /// Nothing queued that it was told of: the next push rings.
    Quiet,
    /// Rung (or the last take left reports behind): the reader will take.
    Rung,
    /// The reader is gone: reports are dropped as they come.
    Gone,
}

struct Inbox<R> {
    reports: VecDeque<R>,
    doorbell: Doorbell,
}

/// The queue between the core's tasks and one reader process.
pub struct Relay<R> {
    inbox: Mutex<Inbox<R>>,
    /// Our end of a datagram socket pair; the reader holds the other.
    bell: socket2::Socket,
}

/// What one [`Relay::take`] returns.
pub struct Taken<R> {
    /// The reports, oldest first.
    pub reports: Vec<R>,
    /// What is left behind them.
    pub left: Left,
}

/// What a [`Relay::take`] left in the queue. Unless it is empty the bell does not ring
/// again for it: the reader must take again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// Nothing: the next push rings.
    Nothing,
    /// More than one take's worth.
    More,
    /// A report that alone weighs more than the take's bound: take it where the time it
    /// costs does no harm (a dirty scheduler).
    Heavy,
}

impl<R: Weigh> Relay<R> {
    /// A relay, and the reader's end of its doorbell: a non-blocking `AF_UNIX` datagram
    /// socket that receives one byte per ring. The caller owns the descriptor.
    pub fn new() -> std::io::Result<(Self, OwnedFd)> {
        let (ours, theirs) =
            socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        let relay = Relay {
            inbox: Mutex::new(Inbox {
                reports: VecDeque::new(),
                doorbell: Doorbell::Quiet,
            }),
            bell: ours,
        };
        Ok((relay, theirs.into()))
    }

    // Nothing runs foreign code under the lock (reports are dropped after it), so a poisoned
    // lock's data is still whole.
    fn lock(&self) -> MutexGuard<'_, Inbox<R>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `report`, ringing the bell if the reader has not been told yet. Any thread;
    /// never blocks but on the queue's lock. Once the relay is closed the report is dropped
    /// here (after the lock: dropping it may report again).
    pub fn push(&self, report: R) {
        drop(self.try_push(report));
    }

    /// [`Relay::push`], but a closed relay hands the report back, for the caller to carry
    /// out some other way.
    pub fn try_push(&self, report: R) -> Result<(), R> {
        let ring = {
            let mut inbox = self.lock();
            match inbox.doorbell {
                Doorbell::Gone => return Err(report),
                Doorbell::Quiet => {
                    inbox.doorbell = Doorbell::Rung;
                    inbox.reports.push_back(report);
                    true
                }
                Doorbell::Rung => {
                    inbox.reports.push_back(report);
                    false
                }
            }
        };
        if ring {
            // One byte says it all. A full socket buffer means rings are unread already; a
            // closed peer, that the reader is gone (its monitor closes the relay).
            let _ = self.bell.send(&[1]);
        }
        Ok(())
    }

    /// Takes reports oldest first: at most `max_reports`, weighing at most `max_weight` in
    /// all. A report heavier than that alone is not taken but named by [`Left::Heavy`] when it
    /// is next.
    pub fn take(&self, max_reports: usize, max_weight: usize) -> Taken<R> {
        let mut inbox = self.lock();
        let mut reports = Vec::new();
        let mut weight = 0usize;
        let left = loop {
            let Some(next) = inbox.reports.front() else {
                break Left::Nothing;
            };
            if reports.len() >= max_reports {
                break Left::More;
            }
            let next_weight = next.weight();
            if weight.saturating_add(next_weight) > max_weight {
                break if reports.is_empty() {
                    Left::Heavy
                } else {
                    Left::More
                };
            }
            weight += next_weight;
            reports.extend(inbox.reports.pop_front());
        };
        if left == Left::Nothing && inbox.doorbell == Doorbell::Rung {
            inbox.doorbell = Doorbell::Quiet;
        }
        Taken { reports, left }
    }

    /// The reader is gone: drops what is queued (after the lock) and whatever comes later.
    pub fn close(&self) {
        let left = {
            let mut inbox = self.lock();
            inbox.doorbell = Doorbell::Gone;
            std::mem::take(&mut inbox.reports)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Report {
        id: usize,
        weight: usize,
        drops: Arc<AtomicUsize>,
    }

    impl Weigh for Report {
        fn weight(&self) -> usize {
            self.weight
        }
    }

    impl Drop for Report {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn report(id: usize, weight: usize, drops: &Arc<AtomicUsize>) -> Report {
        Report {
            id,
            weight,
            drops: drops.clone(),
        }
    }

    /// How many rings are waiting at the reader's end.
    fn rings(reader: &socket2::Socket) -> usize {
        let mut n = 0;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8];
        while reader.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    fn relay() -> (Relay<Report>, socket2::Socket, Arc<AtomicUsize>) {
        let (relay, fd) = Relay::new().unwrap();
        (
            relay,
            socket2::Socket::from(fd),
            Arc::new(AtomicUsize::new(0)),
        )
    }

    #[test]
    fn the_bell_rings_once_per_batch_and_again_after_the_queue_is_taken() {
        let (relay, reader, drops) = relay();
        for id in 0..5 {
            relay.push(report(id, 1, &drops));
        }
        assert_eq!(rings(&reader), 1);
        let taken = relay.take(100, usize::MAX);
        assert_eq!(
            taken.reports.iter().map(|r| r.id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(taken.left, Left::Nothing);
        relay.push(report(5, 1, &drops));
        assert_eq!(rings(&reader), 1);
    }

    #[test]
    fn a_bounded_take_leaves_the_rest_without_ringing_again() {
        let (relay, reader, drops) = relay();
        for id in 0..10 {
            relay.push(report(id, 1, &drops));
        }
        assert_eq!(rings(&reader), 1);
        let first = relay.take(4, usize::MAX);
        assert_eq!(first.reports.len(), 4);
        assert_eq!(first.left, Left::More);
        // Still rung: a push now must not ring, the reader takes again on its own.
        relay.push(report(10, 1, &drops));
        assert_eq!(rings(&reader), 0);
        let rest = relay.take(100, usize::MAX);
        assert_eq!(
            rest.reports.iter().map(|r| r.id).collect::<Vec<_>>(),
            [4, 5, 6, 7, 8, 9, 10]
        );
        assert_eq!(rest.left, Left::Nothing);
    }

    #[test]
    fn weight_bounds_a_take_and_a_report_heavier_than_the_bound_is_left_named() {
        let (relay, reader, drops) = relay();
        for id in 0..10 {
            relay.push(report(id, 10, &drops));
        }
        relay.push(report(10, 1_000, &drops));
        relay.push(report(11, 10, &drops));
        assert_eq!(rings(&reader), 1);
        // 0..=9 weigh 100 together: the bound, reached, not passed.
        let light = relay.take(100, 100);
        assert_eq!(
            light.reports.iter().map(|r| r.id).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(light.left, Left::More);
        let heavy = relay.take(100, 100);
        assert!(heavy.reports.is_empty());
        assert_eq!(heavy.left, Left::Heavy);
        // Left named, the bell stays quiet: the reader must take it, unbounded.
        relay.push(report(12, 10, &drops));
        assert_eq!(rings(&reader), 0);
        let one = relay.take(1, usize::MAX);
        assert_eq!(one.reports.iter().map(|r| r.id).collect::<Vec<_>>(), [10]);
        assert_eq!(one.left, Left::More);
        let rest = relay.take(100, 100);
        assert_eq!(
            rest.reports.iter().map(|r| r.id).collect::<Vec<_>>(),
            [11, 12]
        );
        assert_eq!(rest.left, Left::Nothing);
    }

    #[test]
    fn a_closed_relay_drops_what_it_held_and_what_comes_after() {
        let (relay, reader, drops) = relay();
        relay.push(report(0, 1, &drops));
        relay.push(report(1, 1, &drops));
        relay.close();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        rings(&reader);
        relay.push(report(2, 1, &drops));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        let back = relay.try_push(report(3, 1, &drops));
        assert_eq!(back.err().map(|r| r.id), Some(3));
        assert_eq!(relay.take(100, usize::MAX).reports.len(), 0);
        assert_eq!(rings(&reader), 0);
    }

    #[test]
    fn a_gone_reader_does_not_stop_pushes() {
        let (relay, reader, drops) = relay();
        drop(reader);
        relay.push(report(0, 1, &drops));
        assert_eq!(relay.take(100, usize::MAX).reports.len(), 1);
    }

    #[test]
    fn pushes_from_many_threads_are_all_taken_once() {
        let (relay, reader, drops) = relay();
        let relay = Arc::new(relay);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (relay, drops) = (relay.clone(), drops.clone());
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        relay.push(report(t * 1_000 + i, 1, &drops));
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 4_000 {
            seen.extend(relay.take(64, usize::MAX).reports.into_iter().map(|r| r.id));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        // Each thread's reports come out in the order it pushed them.
        for t in 0..4 {
            let own: Vec<usize> = seen.iter().copied().filter(|id| id / 1_000 == t).collect();
            assert!(own.windows(2).all(|w| w[0] < w[1]), "thread {t} reordered");
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..4_000).collect::<Vec<_>>());
        assert!(rings(&reader) >= 1);
    }
}
