//! Topic membership of one exchange's stream, and the face the hub sees of a subscriber.
//!
//! ```text
//!   Unsubscribed ──attach──> Subscribed{topics} ──detach(last)──> Unsubscribed
//! ```
//!
//! A subscribed stream holds one count of the `subscribers` gauge, whatever the number of its
//! topics. The overflow policy that drops a subscriber lives with the bytes it measures, in
//! [`crate::write_queue`].

use std::collections::HashSet;
use std::sync::Arc;

use crate::exchange::CallError;
use crate::sse::WireEvent;
use crate::stats::{GaugeHold, Stats, Subscribers};

/// The topics one stream is subscribed to. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Sorted, for binary search.
    topics: Vec<String>,
    /// Held while `topics` is not empty.
    counted: Option<GaugeHold<Subscribers>>,
}

/// What [`Membership::detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    /// The stream did not hold the topic.
    NotHeld,
    /// Removed; other topics remain.
    Removed,
    /// Removed the last topic: nothing feeds the stream any more.
    Last,
}

impl Membership {
    /// Adds each of `topics` the stream does not hold yet (a repeat counts once) and returns
    /// those, in the order given. The held topics stay sorted, so this and [`Membership::holds`]
    /// stay near linear however many topics one subscribe names.
    pub(crate) fn attach_all(&mut self, topics: &[String], stats: &Arc<Stats>) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::with_capacity(topics.len());
        let added: Vec<String> = topics
            .iter()
            .filter(|topic| !self.holds(topic) && seen.insert(topic.as_str()))
            .cloned()
            .collect();
        if !added.is_empty() && self.counted.is_none() {
            self.counted = Some(GaugeHold::take(stats));
        }
        self.topics.extend(added.iter().cloned());
        self.topics.sort_unstable();
        added
    }

    /// Removes `topic`.
    pub(crate) fn detach(&mut self, topic: &str) -> Detached {
        let Ok(at) = self
            .topics
            .binary_search_by(|held| held.as_str().cmp(topic))
        else {
            return Detached::NotHeld;
        };
        self.topics.remove(at);
        if self.topics.is_empty() {
            self.counted = None;
            Detached::Last
        } else {
            Detached::Removed
        }
    }

    /// Whether the stream holds `topic`.
    pub(crate) fn holds(&self, topic: &str) -> bool {
        self.topics
            .binary_search_by(|held| held.as_str().cmp(topic))
            .is_ok()
    }

    /// Whether the stream holds any topic.
    pub(crate) fn is_subscribed(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Leaves every topic (the stream closed); returns the topics left, for the hub.
    pub(crate) fn leave_all(&mut self) -> Vec<String> {
        self.counted = None;
        std::mem::take(&mut self.topics)
    }
}

/// A stream as the hub holds it: it never sees the connection behind it, so an HTTP/2 stream
/// can subscribe just as an HTTP/1.1 connection does.
pub trait Subscriber: Send + Sync + 'static {
    /// Unique among the server's subscribers.
    fn subscriber_id(&self) -> u64;

    /// Queues `events` under one lock with one wake-up. Returns false when the stream is gone
    /// (closed, or dropped for overflow): the hub forgets it. `replay`: the events come from
    /// a ring on subscribe, and do not use up the room of live events.
    fn push_events(&self, events: &[&WireEvent], replay: bool) -> bool;

    /// Whether the stream is open and still subscribed to `topic`: the hub checks it before it
    /// adds the stream, so a stream that closed (or left) while its subscribe was queued is
    /// never held by a topic it left.
    fn holds_topic(&self, topic: &str) -> bool;

    /// Marks exchange `exchange`'s stream as subscribed to each of `topics` it does not hold
    /// yet, in time linear in their number, and returns those.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] for a closed or stale exchange, [`CallError::NotStreaming`] when
    /// it streams no response.
    fn attach_topics(&self, exchange: u64, topics: &[String]) -> Result<Vec<String>, CallError>;

    /// Removes `topic` from exchange `exchange`'s subscriptions; a stream left with none and
    /// no owner ends.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] for a call naming another exchange than the stream's.
    fn detach_topic(&self, exchange: u64, topic: &str) -> Result<(), CallError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subscriber_counted_however_many_topics() {
        let stats = Arc::new(Stats::default());
        let mut membership = Membership::default();
        let attach = |m: &mut Membership, topics: &[&str]| {
            let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
            m.attach_all(&topics, &stats)
        };
        assert_eq!(attach(&mut membership, &["a"]), ["a"]);
        assert_eq!(attach(&mut membership, &["b"]), ["b"]);
        assert!(attach(&mut membership, &["a"]).is_empty(), "already held");
        assert_eq!(attach(&mut membership, &["c", "b", "c", "d"]), ["c", "d"]);
        assert_eq!(stats.snapshot().subscribers, 1);
        assert!(membership.holds("b"));
        assert_eq!(membership.detach("x"), Detached::NotHeld);
        assert_eq!(membership.detach("a"), Detached::Removed);
        assert_eq!(stats.snapshot().subscribers, 1);
        assert_eq!(membership.detach("c"), Detached::Removed);
        assert_eq!(membership.detach("d"), Detached::Removed);
        assert_eq!(membership.detach("b"), Detached::Last);
        assert_eq!(stats.snapshot().subscribers, 0);
        assert!(!membership.is_subscribed());
    }

    #[test]
    fn leaving_all_gives_the_topics_back_and_the_count() {
        let stats = Arc::new(Stats::default());
        let mut membership = Membership::default();
        membership.attach_all(&["a".to_string(), "b".to_string()], &stats);
        assert_eq!(membership.leave_all(), ["a", "b"]);
        assert_eq!(stats.snapshot().subscribers, 0);
        assert!(membership.leave_all().is_empty());
    }
}
