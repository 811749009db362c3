//! Cluster event ids and the bookkeeping that decides whether replay after one is exact.
//!
//! A cluster event is numbered once, by the cluster's sequencer (one process per server name
//! for the whole cluster, see `Crier.Cluster`): its [`ClusterPosition`] is the sequencer's
//! epoch and the next number of that epoch. The sequencer sends every event to every node in
//! that order, and Erlang distribution keeps the order of one sender's messages to one
//! receiver, so every node receives one epoch's events in sequence order; a node may start
//! late (it joined, or restarted) and may lose a tail (the connection or the sequencer went
//! down). The id `<epoch>-<seq>` is the same bytes on every node.
//!
//! [`ClusterOrder`] is what one node knows of that order: the run of the current epoch it
//! received with no hole (its *segment*). [`Coverage`] is what one topic's ring still holds
//! of that run. Together they prove the one claim replay rests on:
//!
//! > A client whose last id is `(e, s)` has every event of its topics up to `(e, s)`. If this
//! > node's segment is of epoch `e` and starts at or before `s + 1`, and every topic's ring
//! > holds its events of the segment from `s + 1` on, then the events after `(e, s)` in the
//! > rings, followed by the live ones, are exactly the events the client has not seen.
//!
//! Anything else is either `Wait` (the client comes from a node that is ahead: the events it
//! has seen are still on their way here) or a [`GapReason`]: the stream starts live and is
//! told so, and never gets an event it had or misses one silently.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// Where a cluster event stands in its sequencer's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterPosition {
    /// The sequencer's epoch: a number that grows with every change of sequencer along one
    /// line of succession (microseconds of the system clock at its start, and always above the
    /// epoch its node saw last).
    pub epoch: u64,
    /// The event's number in its epoch, from 1.
    pub seq: u64,
}

/// The digits of an epoch in an id: lowercase base 36, so a 2020s epoch takes 10 characters.
const EPOCH_RADIX: u64 = 36;

/// The smallest epoch a sequencer takes: 2020-01-01T00:00:00Z in microseconds. With
/// [`MAX_EPOCH`] it makes every epoch exactly 10 base-36 digits, which sets cluster ids apart
/// from ids applications give (`msg-17`, `order-42`).
pub const MIN_EPOCH: u64 = 1_577_836_800_000_000;

/// One past the largest epoch: 36^10 µs, in the 2080s.
pub const MAX_EPOCH: u64 = 3_656_158_440_062_976;

impl ClusterPosition {
    /// The event's id on the wire: the epoch in base 36, a dash, the sequence number in
    /// decimal (`mi7z2v1k3q-42`).
    pub fn id(self) -> String {
        let mut digits = Vec::new();
        let mut rest = self.epoch;
        loop {
            digits.push(std::char::from_digit((rest % EPOCH_RADIX) as u32, 36).unwrap_or('0'));
            rest /= EPOCH_RADIX;
            if rest == 0 {
                break;
            }
        }
        let mut id: String = digits.into_iter().rev().collect();
        let _ = write!(id, "-{}", self.seq);
        id
    }

    /// Reads an id written by [`ClusterPosition::id`]; `None` for any other id. Strict (no
    /// sign, no leading zero, no upper case), so an id parses only if `id` writes it back the
    /// same.
    pub fn parse(id: &str) -> Option<Self> {
        Self::parse_any(id).filter(|p| (MIN_EPOCH..MAX_EPOCH).contains(&p.epoch))
    }

    /// [`ClusterPosition::parse`] without the range of epochs (for tests and tools).
    pub fn parse_any(id: &str) -> Option<Self> {
        let (epoch, seq) = id.split_once('-')?;
        // At most the digits of u64::MAX: 13 in base 36, 20 in decimal.
        let canonical = |digits: &str, radix: u32| {
            !digits.is_empty()
                && digits.len() <= if radix == 36 { 13 } else { 20 }
                && (digits == "0" || !digits.starts_with('0'))
                && digits
                    .chars()
                    .all(|c| c.is_ascii_digit() || (radix == 36 && c.is_ascii_lowercase()))
        };
        if !canonical(epoch, 36) || !canonical(seq, 10) {
            return None;
        }
        Some(ClusterPosition {
            epoch: u64::from_str_radix(epoch, 36).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Why a stream resumed live instead of being replayed what it missed. Sent to the client as
/// the data of a [`GAP_EVENT_TYPE`] event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The id is from an epoch this node does not hold: the sequencer changed (it died, a
    /// netsplit), this node restarted, or the node has no cluster events yet.
    Epoch,
    /// The id is older than what this node holds: the node joined (or restarted) after it,
    /// lost messages since, or a ring has let the next event fall out.
    Behind,
    /// The id is ahead of this node and the events up to it did not arrive in time.
    Ahead,
}

impl GapReason {
    /// The word the gap event carries as its data.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Epoch => "epoch",
            GapReason::Behind => "behind",
            GapReason::Ahead => "ahead",
        }
    }
}

/// The event type a stream gets when it resumes live without an exact replay, or when the
/// cluster order its node delivers restarts (a new epoch, or messages lost): the client should
/// refetch its state. Its data is a [`GapReason`] word (`epoch`, `behind`, `ahead`); its id,
/// when the node has one, is the position the stream continues from.
pub const GAP_EVENT_TYPE: &str = "crier-gap";

/// What to do with a subscriber whose last id is a cluster id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Replay the events of the current segment after the client's position: exact.
    Exact,
    /// The client has seen events this node has not received yet: wait for them.
    Wait,
    /// No exact replay is possible: start live and say so.
    Gap(GapReason),
}

/// What an arriving cluster event is to this node's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next event of the segment.
    Next,
    /// The first event of a new segment. `after` says why, when a segment came before it:
    /// live streams may have missed events between the two ([`GapReason::Epoch`] for a new
    /// epoch, [`GapReason::Behind`] for a hole in the same one).
    NewSegment {
        /// Why the previous segment ended, if there was one.
        after: Option<GapReason>,
    },
    /// Already received, or from an epoch older than the current one (a message of a former
    /// sequencer that arrived late): dropped.
    Stale,
}

/// How many epochs one segment remembers. A segment crosses an epoch only at a clean handoff
/// (one a rolling deploy makes per node); ids of epochs older than these get a gap.
const MAX_LINKED_EPOCHS: usize = 64;

/// The run of the cluster order this node received without a hole: from `start` on, through
/// the epochs in `links` (each received to its last event, which its successor named), to
/// `last` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// Which segment of this node's life (1, 2, ...): tells a topic's [`Coverage`] whether it
    /// speaks of this one.
    number: u64,
    /// The first position of the run.
    start: ClusterPosition,
    /// Earlier epochs of the run, oldest first, with their last seq.
    links: VecDeque<(u64, u64)>,
    /// The current epoch.
    epoch: u64,
    /// The last seq received in it (0 before its first event).
    last: u64,
}

impl Segment {
    fn current(&self) -> ClusterPosition {
        ClusterPosition {
            epoch: self.epoch,
            seq: self.last,
        }
    }

    /// The last seq of `epoch` in this run, if the run holds that epoch.
    fn last_of(&self, epoch: u64) -> Option<u64> {
        if epoch == self.epoch {
            return Some(self.last);
        }
        self.links
            .iter()
            .find(|(linked, _)| *linked == epoch)
            .map(|(_, last)| *last)
    }
}

/// What one node knows of the cluster order: its current segment.
#[derive(Debug, Clone, Default)]
pub struct ClusterOrder {
    segment: Option<Segment>,
}

impl ClusterOrder {
    /// Records the arrival of the event at `position` and says what it is.
    pub fn arrive(&mut self, position: ClusterPosition) -> Arrival {
        let ClusterPosition { epoch, seq } = position;
        let after = match self.segment.as_mut() {
            Some(segment) if epoch < segment.epoch => return Arrival::Stale,
            Some(segment) if epoch == segment.epoch && seq <= segment.last => {
                return Arrival::Stale
            }
            Some(segment) if epoch == segment.epoch && seq == segment.last + 1 => {
                segment.last = seq;
                return Arrival::Next;
            }
            // A newer epoch, or a hole in this one: a new segment starts.
            Some(segment) if epoch == segment.epoch => Some(GapReason::Behind),
            Some(_) => Some(GapReason::Epoch),
            None => None,
        };
        self.start_segment(position, seq);
        Arrival::NewSegment { after }
    }

    /// Records that the sequencer of `epoch` started; `follows` is the last position of the
    /// epoch before it when that one ended cleanly (its sequencer stopped and said where).
    /// If this node's run ends exactly there, the run goes on into `epoch`: the new epoch's
    /// events follow the old one's with nothing between, so replay across the two stays
    /// exact. Otherwise a new segment starts before the epoch's first event.
    pub fn start_epoch(&mut self, epoch: u64, follows: Option<ClusterPosition>) -> Arrival {
        let after = match self.segment.as_mut() {
            Some(segment) if epoch <= segment.epoch => return Arrival::Stale,
            Some(segment) if follows == Some(segment.current()) => {
                segment.links.push_back((segment.epoch, segment.last));
                segment.epoch = epoch;
                segment.last = 0;
                if segment.links.len() > MAX_LINKED_EPOCHS {
                    segment.links.pop_front();
                    let (first, _) = segment.links.front().copied().unwrap_or((epoch, 0));
                    segment.start = ClusterPosition {
                        epoch: first,
                        seq: 1,
                    };
                }
                return Arrival::Next;
            }
            Some(_) => Some(GapReason::Epoch),
            None => None,
        };
        self.start_segment(ClusterPosition { epoch, seq: 1 }, 0);
        Arrival::NewSegment { after }
    }

    fn start_segment(&mut self, start: ClusterPosition, last: u64) {
        let number = self.segment.as_ref().map_or(1, |s| s.number + 1);
        self.segment = Some(Segment {
            number,
            start,
            links: VecDeque::new(),
            epoch: start.epoch,
            last,
        });
    }

    /// The position a stream that starts now continues from: the last event received.
    pub fn current(&self) -> Option<ClusterPosition> {
        self.segment.as_ref().map(Segment::current)
    }

    /// The position just before the current segment's first event: the id of the gap event
    /// that live streams get when a segment starts after another.
    pub fn segment_start(&self) -> Option<ClusterPosition> {
        self.segment.as_ref().map(|s| ClusterPosition {
            epoch: s.start.epoch,
            seq: s.start.seq - 1,
        })
    }

    /// Decides how to resume a client whose last id is `client`, given the [`Coverage`] of
    /// each of its topics.
    pub fn resume<'a>(
        &self,
        client: ClusterPosition,
        topics: impl IntoIterator<Item = &'a Coverage>,
    ) -> Resume {
        let Some(segment) = self.segment.as_ref() else {
            return Resume::Gap(GapReason::Epoch);
        };
        if client > segment.current() {
            // The client saw events (or a newer epoch) elsewhere that are on their way here.
            return Resume::Wait;
        }
        let Some(last) = segment.last_of(client.epoch) else {
            return Resume::Gap(GapReason::Epoch);
        };
        if client.seq > last {
            // Past the end of an epoch that ended: no such event.
            return Resume::Gap(GapReason::Epoch);
        }
        let next = ClusterPosition {
            epoch: client.epoch,
            seq: client.seq + 1,
        };
        if next < segment.start {
            return Resume::Gap(GapReason::Behind);
        }
        if topics
            .into_iter()
            .any(|coverage| coverage.kept_from(segment) > next)
        {
            return Resume::Gap(GapReason::Behind);
        }
        Resume::Exact
    }
}

/// Which of a topic's cluster events its ring still holds: all of the current segment's from
/// some position on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// `(segment number, position)`: in that segment, the ring holds every event of the topic
    /// from that position on. A coverage that names an older segment (or none) holds the
    /// whole current segment: the topic lost nothing since it began.
    kept_from: Option<(u64, ClusterPosition)>,
}

impl Coverage {
    /// The coverage of a topic that starts keeping events now: nothing before the next event.
    pub fn starting_now(order: &ClusterOrder) -> Self {
        Coverage {
            kept_from: order.segment.as_ref().map(|s| {
                let next = ClusterPosition {
                    epoch: s.epoch,
                    seq: s.last + 1,
                };
                (s.number, next)
            }),
        }
    }

    /// Records that the topic's event at `position` is not in its ring (it fell out, or the
    /// ring keeps nothing): replay after anything before it cannot be exact any more.
    pub fn lost(&mut self, order: &ClusterOrder, position: ClusterPosition) {
        let Some(segment) = order.segment.as_ref() else {
            return;
        };
        if position < segment.start || position > segment.current() {
            // Not an event of the current segment: it changes nothing that replay relies on.
            return;
        }
        let after = ClusterPosition {
            epoch: position.epoch,
            seq: position.seq + 1,
        };
        let from = match self.kept_from {
            Some((number, from)) if number == segment.number => from.max(after),
            _ => after,
        };
        self.kept_from = Some((segment.number, from));
    }

    fn kept_from(&self, segment: &Segment) -> ClusterPosition {
        match self.kept_from {
            Some((number, from)) if number == segment.number => from,
            _ => segment.start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, seq: u64) -> ClusterPosition {
        ClusterPosition { epoch, seq }
    }

    #[test]
    fn ids_are_compact_and_read_back() {
        let position = at(1_764_600_000_000_000, 42);
        assert_eq!(position.id(), "hdhy1rdm2o-42");
        assert_eq!(ClusterPosition::parse(&position.id()), Some(position));
        assert_eq!(at(0, 0).id(), "0-0");
        assert_eq!(ClusterPosition::parse_any("0-0"), Some(at(0, 0)));
        // Ids applications give are not taken for cluster ids.
        for id in [
            "0-0",
            "order-42",
            "msg-17",
            "a1-2",
            "fja0000000-1",
            "10000000000-1",
        ] {
            assert_eq!(ClusterPosition::parse(id), None, "{id:?}");
        }
        assert_eq!(at(MIN_EPOCH, 1).id().len(), 12);
        assert_eq!(at(MAX_EPOCH - 1, 1).id().len(), 12);
        for id in [
            "",
            "-",
            "1-",
            "-1",
            "01-1",
            "1-01",
            "A-1",
            "1-a",
            "1-+1",
            "1--1",
            "42",
            "a-b-c",
            "zzzzzzzzzzzzzz-1",
        ] {
            assert_eq!(ClusterPosition::parse(id), None, "{id:?}");
        }
    }

    #[test]
    fn an_epoch_is_followed_in_order_and_a_hole_starts_a_segment() {
        let mut order = ClusterOrder::default();
        assert_eq!(order.arrive(at(5, 3)), Arrival::NewSegment { after: None });
        assert_eq!(order.arrive(at(5, 4)), Arrival::Next);
        assert_eq!(order.arrive(at(5, 4)), Arrival::Stale);
        assert_eq!(order.arrive(at(4, 9)), Arrival::Stale);
        assert_eq!(
            order.arrive(at(5, 7)),
            Arrival::NewSegment {
                after: Some(GapReason::Behind)
            }
        );
        assert_eq!(order.segment_start(), Some(at(5, 6)));
        assert_eq!(
            order.arrive(at(6, 1)),
            Arrival::NewSegment {
                after: Some(GapReason::Epoch)
            }
        );
        assert_eq!(order.current(), Some(at(6, 1)));
    }

    #[test]
    fn resume_is_exact_only_inside_what_the_node_and_the_rings_hold() {
        let mut order = ClusterOrder::default();
        let none: [&Coverage; 0] = [];
        assert_eq!(order.resume(at(5, 1), none), Resume::Gap(GapReason::Epoch));
        let mut topic = Coverage::starting_now(&order);
        for seq in 3..=10 {
            order.arrive(at(5, seq));
        }
        // The node's segment is 3..=10: the client must have seen 2 at least.
        assert_eq!(
            order.resume(at(5, 1), [&topic]),
            Resume::Gap(GapReason::Behind)
        );
        assert_eq!(order.resume(at(5, 2), [&topic]), Resume::Exact);
        assert_eq!(order.resume(at(5, 10), [&topic]), Resume::Exact);
        assert_eq!(order.resume(at(5, 11), [&topic]), Resume::Wait);
        assert_eq!(order.resume(at(6, 1), [&topic]), Resume::Wait);
        assert_eq!(
            order.resume(at(4, 1), [&topic]),
            Resume::Gap(GapReason::Epoch)
        );
        // The ring let 6 fall out: replay after 5 or later is still exact, before is not.
        topic.lost(&order, at(5, 6));
        assert_eq!(
            order.resume(at(5, 5), [&topic]),
            Resume::Gap(GapReason::Behind)
        );
        assert_eq!(order.resume(at(5, 6), [&topic]), Resume::Exact);
        // A topic that starts now holds nothing before the next event.
        let late = Coverage::starting_now(&order);
        assert_eq!(
            order.resume(at(5, 9), [&topic, &late]),
            Resume::Gap(GapReason::Behind)
        );
        assert_eq!(order.resume(at(5, 10), [&topic, &late]), Resume::Exact);
        // A new segment: the topic has lost nothing of it yet.
        order.arrive(at(7, 1));
        assert_eq!(order.resume(at(7, 0), [&topic, &late]), Resume::Exact);
    }

    #[test]
    fn a_clean_handover_carries_the_run_into_the_next_epoch() {
        let mut order = ClusterOrder::default();
        assert_eq!(
            order.start_epoch(5, None),
            Arrival::NewSegment { after: None }
        );
        for seq in 1..=4 {
            assert_eq!(order.arrive(at(5, seq)), Arrival::Next);
        }
        let topic = Coverage::starting_now(&ClusterOrder::default());
        // Epoch 5 ended at 4 and this node has all of it: the run goes on into 8.
        assert_eq!(order.start_epoch(8, Some(at(5, 4))), Arrival::Next);
        assert_eq!(order.current(), Some(at(8, 0)));
        assert_eq!(order.arrive(at(8, 1)), Arrival::Next);
        assert_eq!(order.resume(at(5, 2), [&topic]), Resume::Exact);
        assert_eq!(order.resume(at(5, 4), [&topic]), Resume::Exact);
        assert_eq!(
            order.resume(at(5, 5), [&topic]),
            Resume::Gap(GapReason::Epoch)
        );
        assert_eq!(
            order.resume(at(6, 1), [&topic]),
            Resume::Gap(GapReason::Epoch)
        );
        assert_eq!(order.start_epoch(7, None), Arrival::Stale);
        // A successor that names another end (this node missed 8-2): a new segment.
        assert_eq!(
            order.start_epoch(9, Some(at(8, 2))),
            Arrival::NewSegment {
                after: Some(GapReason::Epoch)
            }
        );
        assert_eq!(order.segment_start(), Some(at(9, 0)));
        assert_eq!(
            order.resume(at(8, 1), [&topic]),
            Resume::Gap(GapReason::Epoch)
        );
        assert_eq!(order.resume(at(9, 0), [&topic]), Resume::Exact);
    }
}
