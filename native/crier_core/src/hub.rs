//! Topics: fan-out of one encoded event to every subscriber, and the replay ring that serves
//! `Last-Event-ID`.
//!
//! One task owns all topic state and takes commands in order from an unbounded channel, so a
//! subscribe that races a broadcast is simply before or after it: the subscriber gets the
//! missed events from the ring, then the live ones, with no gap and no duplicate. Owner calls
//! only enqueue a command; encoding and fan-out run on tokio. Each event is encoded once and
//! its `Bytes` shared by every subscriber's queue.
//!
//! Every event the hub publishes gets the next number of one hub-wide sequence; a topic with
//! a replay ring uses it as the event's id when the application gives none. One sequence for
//! all topics is what makes replay exact for a stream subscribed to several topics: its
//! `Last-Event-ID` names one point in the hub's order, and the missed events of all its topics
//! are the ones after that point, replayed in that order.
//!
//! Cluster events come numbered: the cluster's sequencer gave each a [`ClusterPosition`], the
//! same on every node, and its id is the position's. The hub follows that order with a
//! [`ClusterOrder`], each topic tracks what its ring still holds of it with a [`Coverage`], and
//! a subscriber whose last id is a cluster id is resumed by [`ClusterOrder::resume`]: replayed
//! exactly, held back until the events it has seen arrive here, or started live with a
//! [`GAP_EVENT_TYPE`] event (see `cluster_order` for the proof).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::cluster_order::{
    Arrival, ClusterOrder, ClusterPosition, Coverage, GapReason, Resume, GAP_EVENT_TYPE,
};
use crate::notify::Notify;
use crate::server::Shared;
use crate::sse::{self, Event, InvalidEvent};
use crate::stream::{Stream, StreamError, WireEvent};

/// An event owned by a command, checked before it is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedEvent {
    /// See [`Event::id`]. When `None`, a cluster event gets its position's id, and a local
    /// one, if the topic keeps a ring, the hub's next sequence number.
    pub id: Option<String>,
    /// See [`Event::event`].
    pub event: Option<String>,
    /// See [`Event::data`].
    pub data: Option<String>,
    /// See [`Event::retry`].
    pub retry: Option<u64>,
    /// See [`Event::comment`].
    pub comment: Option<String>,
}

impl OwnedEvent {
    /// The event borrowed as the encoder takes it.
    pub fn as_event(&self) -> Event<'_> {
        Event {
            id: self.id.as_deref(),
            event: self.event.as_deref(),
            data: self.data.as_deref(),
            retry: self.retry,
            comment: self.comment.as_deref(),
        }
    }

    /// Checks the event can be encoded, so errors reach the caller, not the hub task.
    ///
    /// # Errors
    ///
    /// As [`sse::encode`].
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        sse::encode_into(&self.as_event(), &mut BytesMut::new())
    }

    /// Encodes the event to its wire bytes.
    ///
    /// # Errors
    ///
    /// As [`sse::encode`].
    pub fn encode(&self) -> Result<Bytes, InvalidEvent> {
        sse::encode(&self.as_event())
    }
}

enum Command<N: Notify> {
    Publish {
        topic: String,
        event: OwnedEvent,
        /// Where the cluster's sequencer put the event; `None` for a local broadcast.
        position: Option<ClusterPosition>,
    },
    Subscribe {
        topics: Vec<String>,
        stream: Arc<Stream<N>>,
        last_event_id: Option<String>,
    },
    Unsubscribe {
        topic: String,
        stream_id: u64,
    },
    StreamClosed {
        stream_id: u64,
        topics: Vec<String>,
    },
    SetReplay {
        topic: String,
        size: usize,
    },
    StartEpoch {
        epoch: u64,
        follows: Option<ClusterPosition>,
    },
}

/// The owner-facing handle of the hub task.
pub struct Hub<N: Notify> {
    commands: mpsc::UnboundedSender<Command<N>>,
    subscriber_counts: SubscriberCounts,
}

/// Subscribers per topic, written by the hub task when a topic's subscribers change (never per
/// event delivered) and read by [`Hub::subscriber_count`]. Topics with none are absent.
type SubscriberCounts = Arc<Mutex<HashMap<String, usize>>>;

fn set_count(counts: &SubscriberCounts, topic: &str, count: usize) {
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    if count == 0 {
        counts.remove(topic);
    } else if let Some(slot) = counts.get_mut(topic) {
        *slot = count;
    } else {
        counts.insert(topic.to_string(), count);
    }
}

/// Most queued publishes to one topic fanned out together.
const MAX_BATCH: usize = 256;

/// How long a subscriber whose last id is ahead of this node waits for the events it has seen
/// to arrive before it starts live with a gap. The sequencer sends each event to every node
/// at once, so one node trails another by a message's way (well under a millisecond on a LAN);
/// what has not come in this time is lost (a sequencer died while sending) or is stuck behind
/// a partition.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// An event as the ring keeps it: its place in the hub's order, its id, its place in the
/// cluster order if it has one, and its two wire forms.
struct Stored {
    seq: u64,
    id: String,
    position: Option<ClusterPosition>,
    wire: WireEvent,
}

struct Topic<N: Notify> {
    subscribers: HashMap<u64, Arc<Stream<N>>>,
    ring: VecDeque<Stored>,
    ring_size: usize,
    coverage: Coverage,
}

impl<N: Notify> Topic<N> {
    fn new(ring_size: usize, order: &ClusterOrder) -> Self {
        Topic {
            subscribers: HashMap::new(),
            ring: VecDeque::new(),
            ring_size,
            coverage: Coverage::starting_now(order),
        }
    }

    /// Lets the oldest events fall out until the ring fits its size.
    fn trim_ring(&mut self, order: &ClusterOrder) {
        while self.ring.len() > self.ring_size {
            if let Some(Stored {
                position: Some(position),
                ..
            }) = self.ring.pop_front()
            {
                self.coverage.lost(order, position);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.ring.is_empty()
    }
}

impl<N: Notify> Hub<N> {
    /// Starts the hub task on the current runtime. `default_replay` is the ring size of a
    /// topic with no size of its own.
    pub(crate) fn start(shared: Weak<Shared<N>>, default_replay: usize) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let subscriber_counts = SubscriberCounts::default();
        tokio::spawn(run(
            shared,
            receiver,
            default_replay,
            subscriber_counts.clone(),
        ));
        Hub {
            commands,
            subscriber_counts,
        }
    }

    /// How many streams are subscribed to `topic`, as of the last command the hub task
    /// handled (a subscribe still queued is not counted yet).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        let counts = self
            .subscriber_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.get(topic).copied().unwrap_or(0)
    }

    /// Queues `event` for every subscriber of `topic`.
    ///
    /// # Errors
    ///
    /// The event cannot be encoded (nothing is queued).
    pub fn broadcast(&self, topic: &str, event: OwnedEvent) -> Result<(), InvalidEvent> {
        self.broadcast_at(topic, event, None)
    }

    /// Queues the cluster event at `position` for every subscriber of `topic`: the event's id
    /// is the position's (unless the application gave one), and the topic's ring remembers the
    /// position for replay after a cluster id. Events of an epoch older than the hub's, or
    /// already received, are dropped.
    ///
    /// # Errors
    ///
    /// The event cannot be encoded (nothing is queued).
    pub fn broadcast_sequenced(
        &self,
        topic: &str,
        event: OwnedEvent,
        position: ClusterPosition,
    ) -> Result<(), InvalidEvent> {
        self.broadcast_at(topic, event, Some(position))
    }

    /// Records that the cluster's sequencer started `epoch`, right after `follows` when the
    /// epoch before ended cleanly (see [`ClusterOrder::start_epoch`]). Ordered with the
    /// epoch's events: the sequencer sends it before them.
    pub fn start_epoch(&self, epoch: u64, follows: Option<ClusterPosition>) {
        let _ = self.commands.send(Command::StartEpoch { epoch, follows });
    }

    /// [`Hub::broadcast_sequenced`] with a position, [`Hub::broadcast`] without.
    ///
    /// # Errors
    ///
    /// The event cannot be encoded (nothing is queued).
    pub fn broadcast_at(
        &self,
        topic: &str,
        event: OwnedEvent,
        position: Option<ClusterPosition>,
    ) -> Result<(), InvalidEvent> {
        event.validate()?;
        let _ = self.commands.send(Command::Publish {
            topic: topic.to_string(),
            event,
            position,
        });
        Ok(())
    }

    /// Hands `stream` (exchange `exchange`) to `topics`: it lives on in Rust after its owner
    /// returns. With `last_event_id`, the events of all `topics` published after it come
    /// first, merged in publish order (see the module docs and `replay`).
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] or [`StreamError::NotStreaming`] when there is no open stream to
    /// subscribe.
    pub fn subscribe(
        &self,
        stream: &Arc<Stream<N>>,
        exchange: u64,
        topics: &[String],
        last_event_id: Option<&str>,
    ) -> Result<(), StreamError> {
        let added = stream.attach_topics(exchange, topics)?;
        // One command for all the topics: their missed events are replayed merged, in the
        // order they were published.
        if !added.is_empty() {
            let _ = self.commands.send(Command::Subscribe {
                topics: added,
                stream: stream.clone(),
                last_event_id: last_event_id.map(str::to_string),
            });
        }
        Ok(())
    }

    /// Removes `stream` from `topic`. A stream left with no topic and no owner ends.
    pub fn unsubscribe(&self, stream: &Stream<N>, topic: &str) {
        stream.detach_topic(topic);
        let _ = self.commands.send(Command::Unsubscribe {
            topic: topic.to_string(),
            stream_id: stream.id,
        });
    }

    /// Sets how many events `topic` keeps for replay (0 turns replay off).
    pub fn set_replay(&self, topic: &str, size: usize) {
        let _ = self.commands.send(Command::SetReplay {
            topic: topic.to_string(),
            size,
        });
    }

    pub(crate) fn stream_closed(&self, stream_id: u64, topics: Vec<String>) {
        if !topics.is_empty() {
            let _ = self
                .commands
                .send(Command::StreamClosed { stream_id, topics });
        }
    }
}

/// A subscriber held back until this node has the cluster events its last id says it has
/// seen (see [`Resume::Wait`]).
struct Waiting<N: Notify> {
    topics: Vec<String>,
    stream: Arc<Stream<N>>,
    client: ClusterPosition,
    deadline: tokio::time::Instant,
}

/// A run of a batch's events that follows the cluster order without a break, and the gap
/// (its reason and the id of the gap event) that live streams are told of before it.
type OrderedRun = (
    Option<(GapReason, Option<ClusterPosition>)>,
    Vec<(OwnedEvent, Option<ClusterPosition>)>,
);

/// What the hub task knows of the cluster: the order it follows, and the subscribers that
/// wait for it to catch up with them.
struct ClusterState<N: Notify> {
    order: ClusterOrder,
    waiting: Vec<Waiting<N>>,
}

impl<N: Notify> ClusterState<N> {
    /// Records the arrival of a batch's cluster events: drops the stale ones, and splits the
    /// batch where a new segment starts, so live streams hear of the gap just before it.
    fn follow(&mut self, events: Vec<(OwnedEvent, Option<ClusterPosition>)>) -> Vec<OrderedRun> {
        let mut runs = vec![(None, Vec::with_capacity(events.len()))];
        for (event, position) in events {
            if let Some(position) = position {
                match self.order.arrive(position) {
                    Arrival::Stale => continue,
                    Arrival::NewSegment {
                        after: Some(reason),
                    } => runs.push((Some((reason, self.order.segment_start())), Vec::new())),
                    Arrival::NewSegment { after: None } | Arrival::Next => {}
                }
            }
            if let Some((_, run)) = runs.last_mut() {
                run.push((event, position));
            }
        }
        runs
    }

    fn start_epoch(
        &mut self,
        topics: &mut HashMap<String, Topic<N>>,
        counts: &SubscriberCounts,
        ring_size_of: &dyn Fn(&str) -> usize,
        epoch: u64,
        follows: Option<ClusterPosition>,
    ) {
        if let Arrival::NewSegment {
            after: Some(reason),
        } = self.order.start_epoch(epoch, follows)
        {
            announce_gap(topics, reason, self.order.segment_start());
        }
        self.resume_waiting(topics, counts, ring_size_of, false);
    }

    /// Resumes a subscriber whose last id is a cluster id: replays exactly, or starts it live
    /// after a gap event, then adds it to its topics; or keeps it waiting (with `expired`,
    /// the wait is over: a gap).
    fn resume(
        &mut self,
        topics: &mut HashMap<String, Topic<N>>,
        counts: &SubscriberCounts,
        ring_size_of: &dyn Fn(&str) -> usize,
        waiting: Waiting<N>,
        expired: bool,
    ) {
        let names: Vec<String> = waiting
            .topics
            .iter()
            .filter(|name| waiting.stream.holds_topic(name))
            .cloned()
            .collect();
        // A topic dropped while the subscriber waited kept nothing meanwhile: it starts now.
        for name in &names {
            if !topics.contains_key(name) {
                topics.insert(name.clone(), Topic::new(ring_size_of(name), &self.order));
            }
        }
        let coverages = names
            .iter()
            .filter_map(|name| topics.get(name))
            .map(|topic| &topic.coverage);
        let current = self.order.current();
        match self.order.resume(waiting.client, coverages) {
            Resume::Exact => replay_cluster(topics, &names, &waiting.stream, waiting.client),
            Resume::Wait if !expired => return self.waiting.push(waiting),
            Resume::Wait => start_live(&waiting.stream, GapReason::Ahead, current),
            Resume::Gap(reason) => start_live(&waiting.stream, reason, current),
        }
        attach(topics, &names, &waiting.stream, counts);
    }

    /// Resumes the waiting subscribers the cluster order has caught up with, and, with
    /// `expire`, those whose deadline has passed.
    fn resume_waiting(
        &mut self,
        topics: &mut HashMap<String, Topic<N>>,
        counts: &SubscriberCounts,
        ring_size_of: &dyn Fn(&str) -> usize,
        expire: bool,
    ) {
        let now = tokio::time::Instant::now();
        for waiting in std::mem::take(&mut self.waiting) {
            let expired = expire && waiting.deadline <= now;
            self.resume(topics, counts, ring_size_of, waiting, expired);
        }
    }
}

/// Adds `stream` to the topics `names` (which exist).
fn attach<N: Notify>(
    topics: &mut HashMap<String, Topic<N>>,
    names: &[String],
    stream: &Arc<Stream<N>>,
    counts: &SubscriberCounts,
) {
    for name in names {
        if let Some(entry) = topics.get_mut(name) {
            entry.subscribers.insert(stream.id, stream.clone());
            set_count(counts, name, entry.subscribers.len());
        }
    }
}

/// Tells every live stream once that the cluster order its node delivers restarted: it may
/// have missed events between the two segments.
fn announce_gap<N: Notify>(
    topics: &HashMap<String, Topic<N>>,
    reason: GapReason,
    id: Option<ClusterPosition>,
) {
    let wire = gap_event(reason, id);
    let mut told = std::collections::HashSet::new();
    for stream in topics.values().flat_map(|t| t.subscribers.values()) {
        if told.insert(stream.id) {
            stream.push_shared([&wire], true);
        }
    }
}

/// Tells `stream` it starts live, at `current`, without a replay.
fn start_live<N: Notify>(stream: &Stream<N>, reason: GapReason, current: Option<ClusterPosition>) {
    stream.push_shared([&gap_event(reason, current)], true);
}

async fn run<N: Notify>(
    shared: Weak<Shared<N>>,
    mut commands: mpsc::UnboundedReceiver<Command<N>>,
    default_replay: usize,
    counts: SubscriberCounts,
) {
    let mut topics: HashMap<String, Topic<N>> = HashMap::new();
    let mut replay_sizes: HashMap<String, usize> = HashMap::new();
    let mut next_seq: u64 = 1;
    let mut held: Option<Command<N>> = None;
    let mut cluster = ClusterState {
        order: ClusterOrder::default(),
        waiting: Vec::new(),
    };
    loop {
        let ring_size_of = |name: &str| replay_sizes.get(name).copied().unwrap_or(default_replay);
        let command = match held.take() {
            Some(command) => command,
            None => {
                // Subscribers waiting for the cluster order are given up on at their deadline.
                let deadline = cluster.waiting.iter().map(|w| w.deadline).min();
                let received = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, commands.recv()).await,
                    None => Ok(commands.recv().await),
                };
                match received {
                    Ok(Some(command)) => command,
                    Ok(None) => return,
                    Err(_elapsed) => {
                        cluster.resume_waiting(&mut topics, &counts, &ring_size_of, true);
                        continue;
                    }
                }
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match command {
            Command::Publish {
                topic,
                event,
                position,
            } => {
                // Publishes to the same topic that are already queued go out together: one
                // lock and one wake-up per subscriber, and one write for the whole run.
                let mut events = vec![(event, position)];
                while events.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(Command::Publish {
                            topic: next,
                            event,
                            position,
                        }) if next == topic => events.push((event, position)),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !topics.contains_key(&topic) {
                    // Nobody listens and nothing is kept: nothing to do but follow the order.
                    let size = ring_size_of(&topic);
                    if size > 0 {
                        topics.insert(topic.clone(), Topic::new(size, &cluster.order));
                    }
                }
                let sequenced = events.iter().any(|(_, position)| position.is_some());
                for (gap, events) in cluster.follow(events) {
                    if let Some((reason, id)) = gap {
                        announce_gap(&topics, reason, id);
                    }
                    let Some(entry) = topics.get_mut(&topic) else {
                        continue;
                    };
                    let before = entry.subscribers.len();
                    publish(entry, events, &mut next_seq, &cluster.order);
                    // Subscribers that overflowed or left are gone from the topic now.
                    if entry.subscribers.len() != before {
                        set_count(&counts, &topic, entry.subscribers.len());
                        drop_if_idle(&mut topics, &topic);
                    }
                }
                if sequenced {
                    cluster.resume_waiting(&mut topics, &counts, &ring_size_of, false);
                }
            }
            Command::Subscribe {
                topics: names,
                stream,
                last_event_id,
            } => {
                // A stream that closed or unsubscribed while this command was queued has
                // told (or will tell) the hub already: adding it now would leak it.
                let names: Vec<String> = names
                    .into_iter()
                    .filter(|name| stream.holds_topic(name))
                    .collect();
                for name in &names {
                    let size = ring_size_of(name);
                    topics
                        .entry(name.clone())
                        .or_insert_with(|| Topic::new(size, &cluster.order));
                }
                let cluster_id = last_event_id
                    .as_deref()
                    .and_then(ClusterPosition::parse)
                    .filter(|&client| !given_by_app(&topics, &names, client));
                if let Some(client) = cluster_id {
                    // A cluster id: replayed exactly, held back until this node catches up,
                    // or started live after a gap event (see `cluster_order`).
                    let waiting = Waiting {
                        topics: names,
                        stream,
                        client,
                        deadline: tokio::time::Instant::now() + CATCH_UP_TIMEOUT,
                    };
                    cluster.resume(&mut topics, &counts, &ring_size_of, waiting, false);
                } else {
                    if let Some(last) = last_event_id {
                        replay(&topics, &names, &stream, &last);
                    }
                    attach(&mut topics, &names, &stream, &counts);
                }
            }
            Command::Unsubscribe { topic, stream_id } => {
                if let Some(entry) = topics.get_mut(&topic) {
                    entry.subscribers.remove(&stream_id);
                    set_count(&counts, &topic, entry.subscribers.len());
                }
                drop_if_idle(&mut topics, &topic);
            }
            Command::StreamClosed {
                stream_id,
                topics: names,
            } => {
                cluster.waiting.retain(|w| w.stream.id != stream_id);
                for name in names {
                    if let Some(entry) = topics.get_mut(&name) {
                        entry.subscribers.remove(&stream_id);
                        set_count(&counts, &name, entry.subscribers.len());
                    }
                    drop_if_idle(&mut topics, &name);
                }
            }
            Command::SetReplay { topic, size } => {
                if let Some(entry) = topics.get_mut(&topic) {
                    entry.ring_size = size;
                    entry.trim_ring(&cluster.order);
                }
                replay_sizes.insert(topic.clone(), size);
                drop_if_idle(&mut topics, &topic);
            }
            Command::StartEpoch { epoch, follows } => {
                cluster.start_epoch(&mut topics, &counts, &ring_size_of, epoch, follows)
            }
        }
        shared.stats.topics.store(topics.len() as u64, Relaxed);
    }
}

fn drop_if_idle<N: Notify>(topics: &mut HashMap<String, Topic<N>>, name: &str) {
    if topics.get(name).is_some_and(Topic::is_idle) {
        topics.remove(name);
    }
}

/// Encodes once, keeps it in the ring, queues the same bytes on every subscriber, and forgets
/// subscribers that are gone or overflowed. `seq` is the event's place in the hub's order; a
/// cluster event's id is its position's, and what the ring does not keep is recorded in the
/// topic's coverage.
fn publish<N: Notify>(
    topic: &mut Topic<N>,
    events: Vec<(OwnedEvent, Option<ClusterPosition>)>,
    next_seq: &mut u64,
    order: &ClusterOrder,
) {
    let mut encoded = Vec::with_capacity(events.len());
    for (mut event, position) in events {
        let seq = *next_seq;
        *next_seq += 1;
        if event.id.is_none() {
            event.id = match position {
                Some(position) => Some(position.id()),
                None if topic.ring_size > 0 => Some(seq.to_string()),
                None => None,
            };
        }
        // Broadcast validated the event before queueing it, so this does not fail.
        if let Ok(bytes) = event.encode() {
            encoded.push((seq, event.id, position, WireEvent::new(&bytes)));
        }
    }
    topic
        .subscribers
        .retain(|_, stream| stream.push_shared(encoded.iter().map(|(_, _, _, wire)| wire), false));
    for (seq, id, position, wire) in encoded {
        match (id, position) {
            (Some(id), position) if topic.ring_size > 0 => topic.ring.push_back(Stored {
                seq,
                id,
                position,
                wire,
            }),
            (_, Some(position)) => topic.coverage.lost(order, position),
            (_, None) => {}
        }
    }
    topic.trim_ring(order);
}

/// The event that tells a stream it resumed without an exact replay (see [`GAP_EVENT_TYPE`]);
/// its id, when there is one, is where the stream continues from.
fn gap_event(reason: GapReason, continues_from: Option<ClusterPosition>) -> WireEvent {
    let event = OwnedEvent {
        id: continues_from.map(ClusterPosition::id),
        event: Some(GAP_EVENT_TYPE.to_string()),
        data: Some(reason.as_str().to_string()),
        ..OwnedEvent::default()
    };
    // Every field is ours and valid, so this does not fail.
    WireEvent::new(&event.encode().unwrap_or_default())
}

/// Queues the events of `names` after the cluster position `client`, in the hub's order (see
/// [`ClusterOrder::resume`], which proved beforehand that the rings hold all of them).
///
/// Where a ring holds the client's own event, every event after it there is replayed, so
/// local broadcasts this node delivered after it come too; otherwise the cluster events after
/// its position (a node receives cluster positions in increasing order only).
fn replay_cluster<N: Notify>(
    topics: &HashMap<String, Topic<N>>,
    names: &[String],
    stream: &Stream<N>,
    client: ClusterPosition,
) {
    let found = latest_seq(topics, names, |stored| stored.position == Some(client));
    let after_client = |stored: &&Stored| match found {
        Some(seq) => stored.seq > seq,
        None => stored.position.is_some_and(|p| p > client),
    };
    let mut missed: Vec<&Stored> = rings(topics, names)
        .flat_map(|ring| ring.iter().filter(after_client))
        .collect();
    missed.sort_unstable_by_key(|stored| stored.seq);
    stream.push_shared(missed.into_iter().map(|stored| &stored.wire), true);
}

/// Whether an event in the rings of `names` has `client`'s id as an id the application gave
/// (not the id of its cluster position): then that id is the application's, replayed as such.
fn given_by_app<N: Notify>(
    topics: &HashMap<String, Topic<N>>,
    names: &[String],
    client: ClusterPosition,
) -> bool {
    let id = client.id();
    latest_seq(topics, names, |stored| {
        stored.id == id && stored.position != Some(client)
    })
    .is_some()
}

/// The rings of the topics `names` that exist.
fn rings<'a, N: Notify>(
    topics: &'a HashMap<String, Topic<N>>,
    names: &'a [String],
) -> impl Iterator<Item = &'a VecDeque<Stored>> {
    names
        .iter()
        .filter_map(|name| topics.get(name))
        .map(|topic| &topic.ring)
}

/// The place in the hub's order of the latest event in the rings of `names` that `matches`.
fn latest_seq<N: Notify>(
    topics: &HashMap<String, Topic<N>>,
    names: &[String],
    matches: impl Fn(&Stored) -> bool,
) -> Option<u64> {
    rings(topics, names)
        .filter_map(|ring| ring.iter().rev().find(|stored| matches(stored)))
        .map(|stored| stored.seq)
        .max()
}

/// Queues the events of `names` published after `last_event_id`, merged in the hub's order.
///
/// The id is looked up in the rings; one no ring holds any more is read as a number of the
/// hub's sequence (the ids the hub assigns), so a client away longer than a ring lasts still
/// gets what is left after it. Any other id gets the whole rings, the most a reconnecting
/// client can still be given. Ids restart at 1 with the server, so a client coming back from
/// an earlier run with a higher number gets nothing replayed.
fn replay<N: Notify>(
    topics: &HashMap<String, Topic<N>>,
    names: &[String],
    stream: &Stream<N>,
    last_event_id: &str,
) {
    let found = latest_seq(topics, names, |stored| stored.id == last_event_id);
    let after = found
        .or_else(|| last_event_id.parse::<u64>().ok())
        .unwrap_or(0);
    let mut missed: Vec<&Stored> = rings(topics, names)
        .flat_map(|ring| {
            // Each ring is in sequence order: skip to the first event after `after`.
            let start = ring.partition_point(|stored| stored.seq <= after);
            ring.range(start..)
        })
        .collect();
    missed.sort_unstable_by_key(|stored| stored.seq);
    stream.push_shared(missed.into_iter().map(|stored| &stored.wire), true);
}
