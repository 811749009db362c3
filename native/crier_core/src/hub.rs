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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::notify::Notify;
use crate::server::Shared;
use crate::sse::{self, Event, InvalidEvent};
use crate::stream::{Stream, StreamError, WireEvent};

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

/// An event as the ring keeps it: its place in the hub's order, its id and its two wire forms.
/// Most queued publishes to one topic fanned out together.
const MAX_BATCH: usize = 256;

struct Stored {
    seq: u64,
    id: String,
    wire: WireEvent,
}

struct Topic<N: Notify> {
    subscribers: HashMap<u64, Arc<Stream<N>>>,
    ring: VecDeque<Stored>,
    ring_size: usize,
}

impl<N: Notify> Topic<N> {
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
        event.validate()?;
        let _ = self.commands.send(Command::Publish {
            topic: topic.to_string(),
            event,
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
    loop {
        let command = match held.take() {
            Some(command) => command,
            None => match commands.recv().await {
                Some(command) => command,
                None => return,
            },
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ring_size_of = |name: &str| replay_sizes.get(name).copied().unwrap_or(default_replay);
        match command {
            Command::Publish { topic, event } => {
                // Publishes to the same topic that are already queued go out together: one
                // lock and one wake-up per subscriber, and one write for the whole run.
                let mut events = vec![event];
                while events.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(Command::Publish { topic: next, event }) if next == topic => {
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
                publish(entry, events, &mut next_seq);
                // Subscribers that overflowed or left are gone from the topic now.
                if entry.subscribers.len() != before {
                    set_count(&counts, &topic, entry.subscribers.len());
                    drop_if_idle(&mut topics, &topic);
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
                        .or_insert_with(|| Topic::new(size));
                }
                if let Some(last) = last_event_id {
                    replay(&topics, &names, &stream, &last);
                }
                for name in names {
                    if let Some(entry) = topics.get_mut(&name) {
                        entry.subscribers.insert(stream.id, stream.clone());
                        set_count(&counts, &name, entry.subscribers.len());
                    }
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
                    while entry.ring.len() > size {
                        entry.ring.pop_front();
                    }
                }
                replay_sizes.insert(topic.clone(), size);
                drop_if_idle(&mut topics, &topic);
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
/// subscribers that are gone or overflowed. `seq` is the event's place in the hub's order.
fn publish<N: Notify>(topic: &mut Topic<N>, events: Vec<OwnedEvent>, next_seq: &mut u64) {
    let mut encoded = Vec::with_capacity(events.len());
    for mut event in events {
        let seq = *next_seq;
        *next_seq += 1;
        if event.id.is_none() && topic.ring_size > 0 {
            event.id = Some(seq.to_string());
        }
        // Broadcast validated the event before queueing it, so this does not fail.
        if let Ok(bytes) = event.encode() {
            encoded.push((seq, event.id, WireEvent::new(&bytes)));
        }
    }
    topic
        .subscribers
        .retain(|_, stream| stream.push_shared(encoded.iter().map(|(_, _, wire)| wire), false));
    if topic.ring_size > 0 {
        for (seq, id, wire) in encoded {
            if let Some(id) = id {
                topic.ring.push_back(Stored { seq, id, wire });
            }
        }
        while topic.ring.len() > topic.ring_size {
            topic.ring.pop_front();
        }
    }
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
    stream.push_shared(missed.into_iter().map(|stored| &stored.wire), true);
}
