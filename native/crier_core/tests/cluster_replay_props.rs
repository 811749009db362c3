//! The replay guarantee of `cluster_order`, driven by proptest: a cluster history of several
//! epochs, one node that receives it as a node can (joining late, losing a tail when the
//! sequencer changes, a hole when messages are lost, late messages of a former sequencer,
//! restarts), topic rings of random sizes that start at random moments, and clients that
//! come back with any id of the history at any moment. Whatever the schedule:
//!
//! * `Exact` is never wrong: the ring events after the client's id are exactly the events of
//!   its topics it has not seen and that this node received, none twice, in order;
//! * `Exact` is given whenever the node can give it (the same epoch, a run that covers the
//!   id, rings that lost nothing): the signal is not a blanket refusal;
//! * a client ahead of the node waits, one in an older epoch gets a gap.

use std::collections::VecDeque;

use crier_core::cluster_order::{Arrival, ClusterOrder, ClusterPosition, Coverage, Resume};
use proptest::prelude::*;

const TOPICS: usize = 3;

/// The sequencers' history: per epoch, the topic of each event (seq = index + 1).
#[derive(Debug, Clone)]
struct History {
    epochs: Vec<Vec<usize>>,
}

impl History {
    fn position(&self, epoch: usize, seq: u64) -> ClusterPosition {
        ClusterPosition {
            epoch: 1_000 + epoch as u64 * 7,
            seq,
        }
    }

    fn topic(&self, position: ClusterPosition) -> usize {
        let epoch = ((position.epoch - 1_000) / 7) as usize;
        self.epochs[epoch][position.seq as usize - 1]
    }

    /// The events of `topics` after `client` up to `current`, in the cluster's order.
    fn between(
        &self,
        client: ClusterPosition,
        current: ClusterPosition,
        topics: &[usize],
    ) -> Vec<ClusterPosition> {
        (0..self.epochs.len())
            .flat_map(|index| (1..=self.epochs[index].len() as u64).map(move |seq| (index, seq)))
            .filter(|&(index, seq)| topics.contains(&self.epochs[index][seq as usize - 1]))
            .map(|(index, seq)| self.position(index, seq))
            .filter(|p| *p > client && *p <= current)
            .collect()
    }
}

/// What reaches the node, in order.
#[derive(Debug, Clone)]
enum Step {
    Deliver(ClusterPosition),
    /// The sequencer of `epoch` announces itself; `follows` when the epoch before ended
    /// cleanly at that position.
    StartEpoch {
        epoch: u64,
        follows: Option<ClusterPosition>,
    },
    Restart,
    /// A client comes back with `client` for `topics` (indices); with `near`, its id is
    /// instead one of the node's current epoch around the node's position (the common case:
    /// it comes from a node a little ahead or behind).
    Resume {
        client: ClusterPosition,
        near: Option<f64>,
        topics: Vec<usize>,
    },
}

struct TopicRing {
    ring: VecDeque<ClusterPosition>,
    coverage: Coverage,
}

/// One node as the hub keeps it: the cluster order and a ring per topic that exists, plus
/// what the test knows of the current segment: which topics existed when it began, and
/// which have lost one of its events since.
struct Node {
    order: ClusterOrder,
    rings: Vec<Option<TopicRing>>,
    ring_sizes: Vec<usize>,
    existed_at_start: [bool; TOPICS],
    lost_in_segment: [bool; TOPICS],
    /// The segment as the test sees it: per epoch, the first and last seq received.
    chain: Vec<(u64, u64, u64)>,
}

impl Node {
    fn new(ring_sizes: Vec<usize>) -> Self {
        Node {
            order: ClusterOrder::default(),
            rings: (0..TOPICS).map(|_| None).collect(),
            ring_sizes,
            existed_at_start: [true; TOPICS],
            lost_in_segment: [false; TOPICS],
            chain: Vec::new(),
        }
    }

    /// As the hub does when a topic is subscribed or first published to.
    fn ensure(&mut self, topic: usize) {
        if self.rings[topic].is_none() {
            self.rings[topic] = Some(TopicRing {
                ring: VecDeque::new(),
                coverage: Coverage::starting_now(&self.order),
            });
        }
    }

    fn in_segment(&self, position: ClusterPosition) -> bool {
        match (self.order.segment_start(), self.order.current()) {
            (Some(start), Some(current)) => {
                position.epoch == current.epoch && position.seq > start.seq
            }
            _ => false,
        }
    }

    fn new_segment(&mut self, epoch: u64, first: u64, last: u64) {
        for t in 0..TOPICS {
            self.existed_at_start[t] = self.rings[t].is_some();
            self.lost_in_segment[t] = false;
        }
        self.chain = vec![(epoch, first, last)];
    }

    fn start_epoch(&mut self, epoch: u64, follows: Option<ClusterPosition>) {
        match self.order.start_epoch(epoch, follows) {
            Arrival::Stale => {}
            Arrival::NewSegment { .. } => self.new_segment(epoch, 1, 0),
            Arrival::Next => self.chain.push((epoch, 1, 0)),
        }
    }

    fn deliver(&mut self, position: ClusterPosition, topic: usize) {
        match self.order.arrive(position) {
            Arrival::Stale => return,
            Arrival::NewSegment { .. } => {
                self.new_segment(position.epoch, position.seq, position.seq)
            }
            Arrival::Next => {
                if let Some(link) = self.chain.last_mut() {
                    link.2 = position.seq;
                }
            }
        }
        // As the hub: a topic with a ring exists from its first event on.
        let size = self.ring_sizes[topic];
        if size > 0 {
            self.ensure(topic);
        }
        let mut lost = Vec::new();
        if let Some(entry) = self.rings[topic].as_mut() {
            if size > 0 {
                entry.ring.push_back(position);
            } else {
                lost.push(position);
            }
            while entry.ring.len() > size {
                lost.extend(entry.ring.pop_front());
            }
        } else {
            lost.push(position);
        }
        for position in lost {
            if let Some(entry) = self.rings[topic].as_mut() {
                entry.coverage.lost(&self.order, position);
            }
            if self.in_segment(position) {
                self.lost_in_segment[topic] = true;
            }
        }
    }

    /// Whether the node holds, in its segment and rings, every event of `topics` after
    /// `client`: then it must replay exactly.
    fn could_replay(&self, client: ClusterPosition, topics: &[usize]) -> bool {
        self.chain.iter().any(|&(epoch, first, last)| {
            epoch == client.epoch && client.seq + 1 >= first && client.seq <= last
        }) && topics
            .iter()
            .all(|&t| self.existed_at_start[t] && !self.lost_in_segment[t])
    }
}

fn history() -> impl Strategy<Value = History> {
    prop::collection::vec(prop::collection::vec(0..TOPICS, 1..25), 1..4)
        .prop_map(|epochs| History { epochs })
}

/// A schedule for `history`: per epoch, the node gets a run (maybe with a hole, maybe none),
/// sometimes a late message of the epoch before, a restart now and then, and clients that
/// come back with ids of the history in between.
fn schedule(history: History) -> impl Strategy<Value = (History, Vec<Step>, Vec<usize>)> {
    let epochs = history.epochs.len();
    let per_epoch = prop::collection::vec(
        (
            any::<bool>(),
            0.0..1.0f64,
            0.0..1.0f64,
            0.0..1.0f64,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        epochs,
    );
    let clients = prop::collection::vec(
        (
            0..epochs,
            0.0..1.0f64,
            prop::option::weighted(0.6, 0.0..1.0f64),
            prop::collection::vec(0..TOPICS, 1..=TOPICS),
        ),
        1..12,
    );
    let ring_sizes = prop::collection::vec(0usize..12, TOPICS);
    (Just(history), per_epoch, clients, ring_sizes).prop_map(
        |(history, per_epoch, clients, ring_sizes)| {
            let mut deliveries = Vec::new();
            for (index, (skip, start, end, hole, stale, restart, clean)) in
                per_epoch.into_iter().enumerate()
            {
                let n = history.epochs[index].len() as u64;
                if restart && index > 0 {
                    deliveries.push(Step::Restart);
                }
                if skip && index > 0 {
                    continue;
                }
                // The sequencer announces its epoch; after a clean handover it names the
                // last event of the epoch before (the truth, from the history), and the node
                // got its first events.
                let previous = index
                    .checked_sub(1)
                    .map(|p| history.position(p, history.epochs[p].len() as u64));
                let follows = previous.filter(|_| clean);
                if index > 0 || clean {
                    deliveries.push(Step::StartEpoch {
                        epoch: history.position(index, 1).epoch,
                        follows,
                    });
                }
                let first = if follows.is_some() {
                    1
                } else {
                    1 + (start * n as f64 * 0.5) as u64
                };
                let last = (first + ((n - first) as f64 * (0.5 + end * 0.5)) as u64).min(n);
                let hole_at = first + ((last - first) as f64 * hole) as u64;
                for seq in first..=last {
                    // A hole of two events (lost with a connection) in some runs.
                    if restart && seq > hole_at && seq <= hole_at + 2 {
                        continue;
                    }
                    deliveries.push(Step::Deliver(history.position(index, seq)));
                }
                if stale && index > 0 {
                    // A former sequencer's message, overtaken by the new epoch.
                    deliveries.push(Step::Deliver(history.position(index - 1, 1)));
                }
            }
            let len = deliveries.len();
            for (i, (epoch, at, near, topics)) in clients.into_iter().enumerate() {
                let n = history.epochs[epoch].len() as u64;
                let seq = (at * (n + 1) as f64) as u64;
                let client = history.position(epoch, seq.min(n));
                let index = ((i * 7919) % (len + 1)).min(deliveries.len());
                deliveries.insert(
                    index,
                    Step::Resume {
                        client,
                        near,
                        topics,
                    },
                );
            }
            (history, deliveries, ring_sizes)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn replay_after_a_cluster_id_is_exact_or_says_why_not(
        (history, steps, ring_sizes) in history().prop_flat_map(schedule)
    ) {
        let mut node = Node::new(ring_sizes.clone());
        for step in steps {
            match step {
                Step::Restart => node = Node::new(ring_sizes.clone()),
                Step::StartEpoch { epoch, follows } => node.start_epoch(epoch, follows),
                Step::Deliver(position) => node.deliver(position, history.topic(position)),
                Step::Resume {
                    client,
                    near,
                    topics,
                } => {
                    let client = match (near, node.order.current()) {
                        (Some(near), Some(current)) => ClusterPosition {
                            epoch: current.epoch,
                            seq: (near * (current.seq + 3) as f64) as u64,
                        },
                        _ => client,
                    };
                    // Decided before the subscribe creates missing topics, as the hub
                    // creates them (and a topic created now holds nothing before now).
                    let could = node.could_replay(client, &topics);
                    for &t in &topics {
                        node.ensure(t);
                    }
                    let coverages = topics
                        .iter()
                        .filter_map(|&t| node.rings[t].as_ref().map(|r| &r.coverage));
                    let decision = node.order.resume(client, coverages);
                    let current = node.order.current();
                    match decision {
                        Resume::Exact => {
                            let current = current.expect("exact replay needs a segment");
                            // As the hub replays: the ring events of the client's epoch after
                            // it, in order.
                            let mut replayed: Vec<ClusterPosition> = topics
                                .iter()
                                .filter_map(|&t| node.rings[t].as_ref())
                                .flat_map(|r| r.ring.iter().copied())
                                .filter(|p| *p > client)
                                .collect();
                            replayed.sort();
                            replayed.dedup();
                            let expected = history.between(client, current, &topics);
                            prop_assert_eq!(replayed, expected, "client {:?}", client);
                        }
                        Resume::Wait => {
                            let current = current.expect("waiting needs a segment");
                            prop_assert!(client > current, "{:?} waits at {:?}", client, current);
                        }
                        Resume::Gap(reason) => {
                            prop_assert!(!could, "{:?} refused ({:?}) at {:?}", client, reason, current);
                        }
                    }
                    prop_assert!(!could || decision == Resume::Exact);
                }
            }
        }
    }
}
