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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::exchange::CallError;
use crate::membership::Subscriber;
use crate::sse::{self, Event, InvalidEvent, WireEvent};
use crate::stats::Stats;

/// An event owned by a command, checked before it is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedEvent {
    /// See [`Event::id`]. When `None` and the topic keeps a ring, the hub assigns the topic's
    /// next sequence number.
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
    /// Answered once every command queued before it was handled.
    Barrier(oneshot::Sender<()>),
}

/// An event encoded where it was broadcast (which is also where it was checked), with its id
/// when the application gave one; the hub numbers the others in front of these bytes.
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

/// An event as the ring keeps it: its place in the hub's order, its id and its two wire forms.
/// Most queued publishes to one topic fanned out together.
const MAX_BATCH: usize = 256;

struct Stored {
    seq: u64,
    id: String,
    wire: WireEvent,
}

struct Topic {
    subscribers: HashMap<u64, SubscriberRef>,
    ring: VecDeque<Stored>,
    ring_size: usize,
}

impl Topic {
    fn new(ring_size: usize) -> Self {
        Topic {
            subscribers: HashMap::new(),
            ring: VecDeque::new(),
            ring_size,
        }
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.ring.is_empty()
    }
}

impl Hub {
    /// Starts the hub task on the current runtime. `default_replay` is the ring size of a
    /// topic with no size of its own; `write_queue_bytes` sizes the batches it fans out
    /// between two turns of the writers.
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
        let bytes = event.encode()?;
        let _ = self.commands.send(Command::Publish {
            topic: topic.to_string(),
            event: Encoded {
                id: event.id,
                bytes,
            },
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
        let mut added = Vec::with_capacity(topics.len());
        for topic in topics {
            if subscriber.attach_topic(exchange, topic)? {
                added.push(topic.clone());
            }
        }
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
    /// Most encoded bytes fanned out in one batch before the writers get a turn: half a
    /// write queue, so a subscriber that keeps reading never meets a backlog the size of its
    /// queue that it had no chance to take.
    batch_bytes: usize,
}

async fn run(
    stats: Arc<Stats>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    limits: HubLimits,
    counts: SubscriberCounts,
) {
    let mut topics: HashMap<String, Topic> = HashMap::new();
    let mut replay_sizes: HashMap<String, usize> = HashMap::new();
    let mut next_seq: u64 = 1;
    let mut held: Option<Command> = None;
    // Bytes fanned out since the connection tasks last had a sure turn: the hub waited for a
    // command, or yielded.
    let mut since_turn: usize = 0;
    loop {
        let command = match held.take() {
            Some(command) => command,
            None => match commands.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Empty) => {
                    since_turn = 0;
                    match commands.recv().await {
                        Some(command) => command,
                        None => return,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            },
        };
        let default_replay = limits.default_replay;
        let ring_size_of = |name: &str| replay_sizes.get(name).copied().unwrap_or(default_replay);
        match command {
            Command::Publish { topic, event } => {
                // Publishes to the same topic that are already queued go out together: one
                // lock and one wake-up per subscriber, and one write for the whole run, up to
                // a batch's bytes.
                let mut batch_bytes = event.bytes.len();
                let mut events = vec![event];
                while events.len() < MAX_BATCH && batch_bytes < limits.batch_bytes {
                    match commands.try_recv() {
                        Ok(Command::Publish { topic: next, event }) if next == topic => {
                            batch_bytes += event.bytes.len();
                            events.push(event)
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !topics.contains_key(&topic) {
                    // Nobody listens and nothing is kept: nothing to do.
                    let size = ring_size_of(&topic);
                    if size == 0 {
                        continue;
                    }
                    topics.insert(topic.clone(), Topic::new(size));
                }
                let Some(entry) = topics.get_mut(&topic) else {
                    continue;
                };
                let before = entry.subscribers.len();
                let reached = publish(entry, events, &mut next_seq);
                // Subscribers that overflowed or left are gone from the topic now.
                if entry.subscribers.len() != before {
                    set_count(&counts, &topic, entry.subscribers.len());
                    drop_if_idle(&mut topics, &topic);
                }
                if reached {
                    since_turn += batch_bytes;
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
                        .or_insert_with(|| Topic::new(size));
                }
                if let Some(last) = last_event_id {
                    replay(&topics, &names, subscriber.as_ref(), &last);
                }
                for name in names {
                    if let Some(entry) = topics.get_mut(&name) {
                        entry
                            .subscribers
                            .insert(subscriber.subscriber_id(), subscriber.clone());
                        set_count(&counts, &name, entry.subscribers.len());
                    }
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
                    while entry.ring.len() > size {
                        entry.ring.pop_front();
                    }
                }
                replay_sizes.insert(topic.clone(), size);
                drop_if_idle(&mut topics, &topic);
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

/// Frames each event once (numbering those that need it), keeps it in the ring, queues the
/// same bytes on every subscriber, and forgets subscribers that are gone or overflowed. `seq`
/// is the event's place in the hub's order. Returns whether any subscriber got the events.
fn publish(topic: &mut Topic, events: Vec<Encoded>, next_seq: &mut u64) -> bool {
    let mut framed = Vec::with_capacity(events.len());
    for event in events {
        let seq = *next_seq;
        *next_seq += 1;
        let (id, wire) = match event.id {
            Some(id) => (Some(id), WireEvent::new(&event.bytes)),
            None if topic.ring_size > 0 => {
                let id = seq.to_string();
                let wire = WireEvent::with_id(Some(&id), &event.bytes);
                (Some(id), wire)
            }
            None => (None, WireEvent::new(&event.bytes)),
        };
        framed.push((seq, id, wire));
    }
    let wires: Vec<&WireEvent> = framed.iter().map(|(_, _, wire)| wire).collect();
    topic
        .subscribers
        .retain(|_, subscriber| subscriber.push_events(&wires, false));
    drop(wires);
    let reached = !topic.subscribers.is_empty();
    if topic.ring_size > 0 {
        for (seq, id, wire) in framed {
            if let Some(id) = id {
                topic.ring.push_back(Stored { seq, id, wire });
            }
        }
        while topic.ring.len() > topic.ring_size {
            topic.ring.pop_front();
        }
    }
    reached
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
    let rings = || {
        names
            .iter()
            .filter_map(|name| topics.get(name))
            .map(|topic| &topic.ring)
    };
    let found = rings()
        .filter_map(|ring| ring.iter().rev().find(|stored| stored.id == last_event_id))
        .map(|stored| stored.seq)
        .max();
    let after = found
        .or_else(|| last_event_id.parse::<u64>().ok())
        .unwrap_or(0);
    let mut missed: Vec<&Stored> = rings()
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
