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
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::cluster_order::{
    Arrival, ClusterOrder, ClusterPosition, Coverage, GapReason, Resume, GAP_EVENT_TYPE,
};
use crate::exchange::CallError;
use crate::membership::Subscriber;
use crate::sse::{self, Event, InvalidEvent, WireEvent};
use crate::stats::Stats;

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

    /// Encodes the event to its wire bytes.
    ///
    /// # Errors
    ///
    /// As [`sse::encode`].
    pub fn encode(&self) -> Result<Bytes, InvalidEvent> {
        sse::encode(&self.as_event())
    }
}

/// A subscriber as topics hold it.
type SubscriberRef = Arc<dyn Subscriber>;

enum Command {
    Publish {
        topic: String,
        event: Encoded,
        /// Where the cluster's sequencer put the event; `None` for a local broadcast.
        position: Option<ClusterPosition>,
    },
    Subscribe {
        topics: Vec<String>,
        subscriber: SubscriberRef,
        last_event_id: Option<String>,
    },
    Unsubscribe {
        topic: String,
        subscriber_id: u64,
    },
    SubscriberClosed {
        subscriber_id: u64,
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
    /// Answered once every command queued before it was handled.
    Barrier(oneshot::Sender<()>),
}

/// An event encoded where it was broadcast (which is also where it was checked), with its id
/// when the application gave one; the hub puts the ids it assigns in front of these bytes.
struct Encoded {
    id: Option<String>,
    bytes: Bytes,
}

/// The owner-facing handle of the hub task.
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
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

struct Topic {
    subscribers: HashMap<u64, SubscriberRef>,
    ring: VecDeque<Stored>,
    ring_size: usize,
    coverage: Coverage,
}

impl Topic {
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

impl Hub {
    /// Starts the hub task on the current runtime. `default_replay` is the ring size of a
    /// topic with no size of its own; `write_queue_bytes` sizes how much the hub fans out
    /// between two sure turns of the writers.
    pub(crate) fn start(
        stats: Arc<Stats>,
        default_replay: usize,
        write_queue_bytes: usize,
    ) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let subscriber_counts = SubscriberCounts::default();
        tokio::spawn(run(
            stats,
            receiver,
            HubLimits {
                default_replay,
                batch_bytes: (write_queue_bytes / 2).max(1),
            },
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

    /// Queues `event` for every subscriber of `topic`. It is encoded here, once: that checks
    /// it, and its bytes are what every subscriber gets.
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
        let bytes = event.encode()?;
        let _ = self.commands.send(Command::Publish {
            topic: topic.to_string(),
            event: Encoded {
                id: event.id,
                bytes,
            },
            position,
        });
        Ok(())
    }

    /// Resolves once every command queued before this call was handled: every broadcast
    /// that returned before it has been fanned out. The barrier is queued at the call, not
    /// when the future is first polled.
    pub(crate) fn barrier(&self) -> impl Future<Output = ()> + Send + 'static {
        let (done, handled) = oneshot::channel();
        let _ = self.commands.send(Command::Barrier(done));
        async move {
            // An error means the hub task is gone, with nothing left to wait for.
            let _ = handled.await;
        }
    }

    /// Hands `subscriber`'s stream (exchange `exchange`) to `topics`: it lives on in Rust
    /// after its owner returns. With `last_event_id`, the events of all `topics` published
    /// after it come first, merged in publish order (see the module docs and `replay`).
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] or [`CallError::NotStreaming`] when there is no open stream to
    /// subscribe.
    pub fn subscribe<S: Subscriber>(
        &self,
        subscriber: &Arc<S>,
        exchange: u64,
        topics: &[String],
        last_event_id: Option<&str>,
    ) -> Result<(), CallError> {
        let added = subscriber.attach_topics(exchange, topics)?;
        // One command for all the topics: their missed events are replayed merged, in the
        // order they were published.
        if !added.is_empty() {
            let _ = self.commands.send(Command::Subscribe {
                topics: added,
                subscriber: subscriber.clone(),
                last_event_id: last_event_id.map(str::to_string),
            });
        }
        Ok(())
    }

    /// Removes exchange `exchange`'s stream from `topic`. A stream left with no topic and no
    /// owner ends.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] when `exchange` is not the subscriber's current exchange (a
    /// stale handle): nothing changes.
    pub fn unsubscribe<S: Subscriber>(
        &self,
        subscriber: &S,
        exchange: u64,
        topic: &str,
    ) -> Result<(), CallError> {
        subscriber.detach_topic(exchange, topic)?;
        let _ = self.commands.send(Command::Unsubscribe {
            topic: topic.to_string(),
            subscriber_id: subscriber.subscriber_id(),
        });
        Ok(())
    }

    /// Sets how many events `topic` keeps for replay (0 turns replay off).
    pub fn set_replay(&self, topic: &str, size: usize) {
        let _ = self.commands.send(Command::SetReplay {
            topic: topic.to_string(),
            size,
        });
    }

    pub(crate) fn subscriber_closed(&self, subscriber_id: u64, topics: Vec<String>) {
        if !topics.is_empty() {
            let _ = self.commands.send(Command::SubscriberClosed {
                subscriber_id,
                topics,
            });
        }
    }
}

/// How the hub task sizes things.
struct HubLimits {
    /// Ring size of a topic with none of its own.
    default_replay: usize,
    /// Encoded bytes fanned out after which the writers get a turn before more: half a write
    /// queue, so a subscriber that keeps reading never meets a backlog the size of its queue
    /// that it had no chance to take. Also the most bytes one batch gathers.
    batch_bytes: usize,
}

/// A subscriber held back until this node has the cluster events its last id says it has
/// seen (see [`Resume::Wait`]).
struct Waiting {
    topics: Vec<String>,
    subscriber: SubscriberRef,
    client: ClusterPosition,
    deadline: tokio::time::Instant,
}

/// A run of a batch's events that follows the cluster order without a break, and the gap
/// (its reason and the id of the gap event) that live streams are told of before it.
type OrderedRun = (
    Option<(GapReason, Option<ClusterPosition>)>,
    Vec<(Encoded, Option<ClusterPosition>)>,
);

/// What the hub task knows of the cluster: the order it follows, and the subscribers that
/// wait for it to catch up with them.
struct ClusterState {
    order: ClusterOrder,
    waiting: Vec<Waiting>,
}

impl ClusterState {
    /// Records the arrival of a batch's cluster events: drops the stale ones, and splits the
    /// batch where a new segment starts, so live streams hear of the gap just before it.
    fn follow(&mut self, events: Vec<(Encoded, Option<ClusterPosition>)>) -> Vec<OrderedRun> {
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
        topics: &mut HashMap<String, Topic>,
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
        topics: &mut HashMap<String, Topic>,
        counts: &SubscriberCounts,
        ring_size_of: &dyn Fn(&str) -> usize,
        waiting: Waiting,
        expired: bool,
    ) {
        let names: Vec<String> = waiting
            .topics
            .iter()
            .filter(|name| waiting.subscriber.holds_topic(name))
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
            Resume::Exact => {
                replay_cluster(topics, &names, waiting.subscriber.as_ref(), waiting.client)
            }
            Resume::Wait if !expired => return self.waiting.push(waiting),
            Resume::Wait => start_live(waiting.subscriber.as_ref(), GapReason::Ahead, current),
            Resume::Gap(reason) => start_live(waiting.subscriber.as_ref(), reason, current),
        }
        attach(topics, &names, &waiting.subscriber, counts);
    }

    /// Resumes the waiting subscribers the cluster order has caught up with, and, with
    /// `expire`, those whose deadline has passed.
    fn resume_waiting(
        &mut self,
        topics: &mut HashMap<String, Topic>,
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

/// Adds `subscriber` to the topics `names` (which exist).
fn attach(
    topics: &mut HashMap<String, Topic>,
    names: &[String],
    subscriber: &SubscriberRef,
    counts: &SubscriberCounts,
) {
    for name in names {
        if let Some(entry) = topics.get_mut(name) {
            entry
                .subscribers
                .insert(subscriber.subscriber_id(), subscriber.clone());
            set_count(counts, name, entry.subscribers.len());
        }
    }
}

/// Tells every live stream once that the cluster order its node delivers restarted: it may
/// have missed events between the two segments.
fn announce_gap(topics: &HashMap<String, Topic>, reason: GapReason, id: Option<ClusterPosition>) {
    let wire = gap_event(reason, id);
    let mut told = std::collections::HashSet::new();
    for subscriber in topics.values().flat_map(|t| t.subscribers.values()) {
        if told.insert(subscriber.subscriber_id()) {
            subscriber.push_events(&[&wire], true);
        }
    }
}

/// Tells `subscriber` it starts live, at `current`, without a replay.
fn start_live(subscriber: &dyn Subscriber, reason: GapReason, current: Option<ClusterPosition>) {
    subscriber.push_events(&[&gap_event(reason, current)], true);
}

async fn run(
    stats: Arc<Stats>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    limits: HubLimits,
    counts: SubscriberCounts,
) {
    let default_replay = limits.default_replay;
    let mut topics: HashMap<String, Topic> = HashMap::new();
    let mut replay_sizes: HashMap<String, usize> = HashMap::new();
    let mut next_seq: u64 = 1;
    let mut held: Option<Command> = None;
    // Bytes fanned out since the connection tasks last had a sure turn: the hub waited for a
    // command, or yielded.
    let mut since_turn: usize = 0;
    let mut cluster = ClusterState {
        order: ClusterOrder::default(),
        waiting: Vec::new(),
    };
    loop {
        let ring_size_of = |name: &str| replay_sizes.get(name).copied().unwrap_or(default_replay);
        let command = match held.take().map(Ok).unwrap_or_else(|| commands.try_recv()) {
            Ok(command) => command,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                since_turn = 0;
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
        match command {
            Command::Publish {
                topic,
                event,
                position,
            } => {
                // Publishes to the same topic that are already queued go out together: one
                // lock and one wake-up per subscriber, and one write for the whole run, up to
                // a batch's bytes.
                let mut batch_bytes = event.bytes.len();
                let mut events = vec![(event, position)];
                while events.len() < MAX_BATCH && batch_bytes < limits.batch_bytes {
                    match commands.try_recv() {
                        Ok(Command::Publish {
                            topic: next,
                            event,
                            position,
                        }) if next == topic => {
                            batch_bytes += event.bytes.len();
                            events.push((event, position))
                        }
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
                    if publish(entry, events, &mut next_seq, &cluster.order) {
                        since_turn += batch_bytes;
                    }
                    // Subscribers that overflowed or left are gone from the topic now.
                    if entry.subscribers.len() != before {
                        set_count(&counts, &topic, entry.subscribers.len());
                        drop_if_idle(&mut topics, &topic);
                    }
                }
                if sequenced {
                    cluster.resume_waiting(&mut topics, &counts, &ring_size_of, false);
                }
                if since_turn >= limits.batch_bytes {
                    // The writers' turn, after half a queue of bytes: the connection tasks
                    // just woken take what they can before more lands on their queues. Not
                    // after every batch: small events keep coalescing into one write each.
                    since_turn = 0;
                    stats.topics.store(topics.len() as u64, Relaxed);
                    tokio::task::yield_now().await;
                }
            }
            Command::Subscribe {
                topics: names,
                subscriber,
                last_event_id,
            } => {
                // A stream that closed or unsubscribed while this command was queued has
                // told (or will tell) the hub already: adding it now would leak it.
                let names: Vec<String> = names
                    .into_iter()
                    .filter(|name| subscriber.holds_topic(name))
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
                        subscriber,
                        client,
                        deadline: tokio::time::Instant::now() + CATCH_UP_TIMEOUT,
                    };
                    cluster.resume(&mut topics, &counts, &ring_size_of, waiting, false);
                } else {
                    if let Some(last) = last_event_id {
                        replay(&topics, &names, subscriber.as_ref(), &last);
                    }
                    attach(&mut topics, &names, &subscriber, &counts);
                }
            }
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => {
                if let Some(entry) = topics.get_mut(&topic) {
                    entry.subscribers.remove(&subscriber_id);
                    set_count(&counts, &topic, entry.subscribers.len());
                }
                drop_if_idle(&mut topics, &topic);
            }
            Command::SubscriberClosed {
                subscriber_id,
                topics: names,
            } => {
                cluster
                    .waiting
                    .retain(|w| w.subscriber.subscriber_id() != subscriber_id);
                for name in names {
                    if let Some(entry) = topics.get_mut(&name) {
                        entry.subscribers.remove(&subscriber_id);
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
            Command::Barrier(done) => {
                let _ = done.send(());
            }
        }
        stats.topics.store(topics.len() as u64, Relaxed);
    }
}

fn drop_if_idle(topics: &mut HashMap<String, Topic>, name: &str) {
    if topics.get(name).is_some_and(Topic::is_idle) {
        topics.remove(name);
    }
}

/// Frames each event once (with the id the hub assigns in front of the bytes encoded at the
/// broadcast), keeps it in the ring, queues the same bytes on every subscriber, and forgets
/// subscribers that are gone or overflowed. `seq` is the event's place in the hub's order; a
/// cluster event's id is its position's, and what the ring does not keep is recorded in the
/// topic's coverage. Returns whether any subscriber got the events.
fn publish(
    topic: &mut Topic,
    events: Vec<(Encoded, Option<ClusterPosition>)>,
    next_seq: &mut u64,
    order: &ClusterOrder,
) -> bool {
    let mut framed = Vec::with_capacity(events.len());
    for (event, position) in events {
        let seq = *next_seq;
        *next_seq += 1;
        let (id, wire) = match (event.id, position) {
            (Some(id), _) => (Some(id), WireEvent::new(&event.bytes)),
            (None, assigned) => {
                let id = match assigned {
                    Some(position) => Some(position.id()),
                    None if topic.ring_size > 0 => Some(seq.to_string()),
                    None => None,
                };
                let wire = WireEvent::with_id(id.as_deref(), &event.bytes);
                (id, wire)
            }
        };
        framed.push((seq, id, position, wire));
    }
    let wires: Vec<&WireEvent> = framed.iter().map(|(_, _, _, wire)| wire).collect();
    topic
        .subscribers
        .retain(|_, subscriber| subscriber.push_events(&wires, false));
    drop(wires);
    let reached = !topic.subscribers.is_empty();
    for (seq, id, position, wire) in framed {
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
    reached
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
fn replay_cluster(
    topics: &HashMap<String, Topic>,
    names: &[String],
    subscriber: &dyn Subscriber,
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
    let wires: Vec<&WireEvent> = missed.into_iter().map(|stored| &stored.wire).collect();
    subscriber.push_events(&wires, true);
}

/// Whether an event in the rings of `names` has `client`'s id as an id the application gave
/// (not the id of its cluster position): then that id is the application's, replayed as such.
fn given_by_app(
    topics: &HashMap<String, Topic>,
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
fn rings<'a>(
    topics: &'a HashMap<String, Topic>,
    names: &'a [String],
) -> impl Iterator<Item = &'a VecDeque<Stored>> {
    names
        .iter()
        .filter_map(|name| topics.get(name))
        .map(|topic| &topic.ring)
}

/// The place in the hub's order of the latest event in the rings of `names` that `matches`.
fn latest_seq(
    topics: &HashMap<String, Topic>,
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
fn replay(
    topics: &HashMap<String, Topic>,
    names: &[String],
    subscriber: &dyn Subscriber,
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
    let wires: Vec<&WireEvent> = missed.into_iter().map(|stored| &stored.wire).collect();
    subscriber.push_events(&wires, true);
}
