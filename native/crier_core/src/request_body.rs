//! The request body between the connection task, which decodes it from the socket, and the
//! owner, which reads it: a bounded buffer, the owner's wait for bytes, and `Expect:
//! 100-continue`.
//!
//! ```text
//!   arrival:   Receiving ──received(done)──> Complete
//!                 └────────failed(error)───> Failed(error)
//!   continue:  NotExpected
//!              Withheld ──owner reads──> Due ──task writes 100──> Sent
//! ```
//!
//! The task reads body bytes only while [`RequestBody::wants_bytes`]: at most
//! [`BODY_WINDOW`] ahead of the owner, and never before a `100 Continue` the client waits for.

use crate::http::HttpError;

/// Body bytes the task reads ahead of the owner; past this it stops reading until the owner
/// takes some, so a large upload never sits whole in memory.
pub(crate) const BODY_WINDOW: usize = 64 * 1024;

/// What `read_body` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRead {
    /// Body bytes; `done` when they are the last.
    Data { bytes: Vec<u8>, done: bool },
    /// Nothing buffered yet: the caller waits for [`crate::report::Wake::Body`] and asks again.
    Wait,
    /// The body was malformed or too large; the connection closes after the response.
    Failed(HttpError),
}

/// How much of the body has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arrival {
    Receiving,
    Complete,
    /// Boxed: rare, and every connection holds an `Arrival`.
    Failed(Box<HttpError>),
}

/// Where `Expect: 100-continue` stands (RFC 9110 section 10.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// The client sends its body unasked.
    NotExpected,
    /// The client holds its body back until it gets a 100.
    Withheld,
    /// The owner asked for the body: the task owes the client a 100.
    Due,
    /// The 100 went out (or was made moot by the final response).
    Sent,
}

/// The body of one request. See the module docs.
#[derive(Debug)]
pub(crate) struct RequestBody {
    buffered: Vec<u8>,
    arrival: Arrival,
    expect: Continue,
    /// The owner waits for a [`crate::report::Wake::Body`].
    reader_waits: bool,
}

impl RequestBody {
    /// The body of a request: `empty` when it has none, `expect_continue` when the client
    /// waits for a 100 before sending it.
    pub(crate) fn new(empty: bool, expect_continue: bool) -> Self {
        RequestBody {
            buffered: Vec::new(),
            arrival: if empty {
                Arrival::Complete
            } else {
                Arrival::Receiving
            },
            expect: if expect_continue && !empty {
                Continue::Withheld
            } else {
                Continue::NotExpected
            },
            reader_waits: false,
        }
    }

    /// A request with no body.
    pub(crate) fn none() -> Self {
        Self::new(true, false)
    }

    /// Takes up to `max` buffered bytes (at least one). Returns what was found and whether
    /// the task must be woken: to send a 100, to read on now that there is room, or to read
    /// what the owner now waits for.
    pub(crate) fn read(&mut self, max: usize) -> (BodyRead, bool) {
        if let Arrival::Failed(error) = &self.arrival {
            return (BodyRead::Failed(HttpError::clone(error)), false);
        }
        if self.buffered.is_empty() && self.arrival == Arrival::Receiving {
            self.reader_waits = true;
            if self.expect == Continue::Withheld {
                self.expect = Continue::Due;
            }
            return (BodyRead::Wait, true);
        }
        let take = self.buffered.len().min(max.max(1));
        let rest = self.buffered.split_off(take);
        let bytes = std::mem::replace(&mut self.buffered, rest);
        let done = self.arrival == Arrival::Complete && self.buffered.is_empty();
        // Room freed in the buffer: the task may read on.
        (BodyRead::Data { bytes, done }, !done)
    }

    /// Decoded bytes arrived; `done` when the body is complete. Returns true when the waiting
    /// owner must be woken.
    pub(crate) fn received(&mut self, bytes: &[u8], done: bool) -> bool {
        self.buffered.extend_from_slice(bytes);
        if done && self.arrival == Arrival::Receiving {
            self.arrival = Arrival::Complete;
        }
        self.wake_reader_if(!self.buffered.is_empty() || self.arrival == Arrival::Complete)
    }

    /// The body is malformed or too large. Returns true when the waiting owner must be woken.
    pub(crate) fn failed(&mut self, error: HttpError) -> bool {
        self.arrival = Arrival::Failed(Box::new(error));
        self.wake_reader_if(true)
    }

    fn wake_reader_if(&mut self, ready: bool) -> bool {
        let wake = ready && self.reader_waits;
        if wake {
            self.reader_waits = false;
        }
        wake
    }

    /// Withdraws the owner's wait. Returns false when there was none: the wake-up was already
    /// claimed and is on its way to the owner.
    pub(crate) fn cancel_wait(&mut self) -> bool {
        std::mem::take(&mut self.reader_waits)
    }

    /// Whether the task owes the client a `100 Continue` now; it is then counted as sent.
    /// `response_pending`: no final head went out, else a 100 would come after it and is
    /// skipped.
    pub(crate) fn take_continue(&mut self, response_pending: bool) -> bool {
        if self.expect != Continue::Due {
            return false;
        }
        self.expect = Continue::Sent;
        response_pending
    }

    /// Whether the task should read body bytes from the socket now.
    pub(crate) fn wants_bytes(&self) -> bool {
        self.arrival == Arrival::Receiving
            && matches!(self.expect, Continue::NotExpected | Continue::Sent)
            && self.buffered.len() < BODY_WINDOW
    }

    /// The body has fully arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.arrival == Arrival::Complete
    }

    /// The body broke: the connection cannot carry another request.
    pub(crate) fn has_failed(&self) -> bool {
        matches!(self.arrival, Arrival::Failed(_))
    }

    /// The client still holds back a body it announced with `Expect: 100-continue`.
    pub(crate) fn held_back(&self) -> bool {
        matches!(self.expect, Continue::Withheld | Continue::Due)
            && self.arrival == Arrival::Receiving
    }

    /// What is left once the exchange ended: only a failure, for a `read_body` that comes
    /// late and must learn why the connection closed.
    pub(crate) fn after_exchange(&mut self) -> RequestBody {
        let mut left = RequestBody::none();
        if let Arrival::Failed(error) = &self.arrival {
            left.arrival = Arrival::Failed(error.clone());
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_body_reads_as_done_at_once() {
        let mut body = RequestBody::none();
        assert!(body.is_complete());
        assert!(!body.wants_bytes());
        assert_eq!(
            body.read(10),
            (
                BodyRead::Data {
                    bytes: vec![],
                    done: true
                },
                false
            )
        );
    }

    #[test]
    fn the_owner_waits_for_bytes_and_is_woken_once_when_they_come() {
        let mut body = RequestBody::new(false, false);
        assert!(body.wants_bytes());
        assert_eq!(body.read(10), (BodyRead::Wait, true));
        assert!(body.received(b"abc", false));
        assert!(!body.received(b"def", false), "woken once");
        assert_eq!(
            body.read(4).0,
            BodyRead::Data {
                bytes: b"abcd".to_vec(),
                done: false
            }
        );
        assert!(!body.received(b"", true));
        assert_eq!(
            body.read(10),
            (
                BodyRead::Data {
                    bytes: b"ef".to_vec(),
                    done: true
                },
                false
            )
        );
        assert!(body.is_complete());
    }

    #[test]
    fn reading_stops_while_the_window_is_full() {
        let mut body = RequestBody::new(false, false);
        body.received(&vec![0; BODY_WINDOW], false);
        assert!(!body.wants_bytes());
        let (_, wake) = body.read(1);
        assert!(wake, "room freed: the task may read on");
        assert!(body.wants_bytes());
    }

    #[test]
    fn a_withheld_body_is_asked_for_with_one_100_when_the_owner_reads() {
        let mut body = RequestBody::new(false, true);
        assert!(body.held_back());
        assert!(!body.wants_bytes(), "not before the 100");
        assert!(!body.take_continue(true), "nobody asked yet");
        assert_eq!(body.read(10), (BodyRead::Wait, true));
        assert!(body.held_back());
        assert!(body.take_continue(true));
        assert!(!body.take_continue(true), "one 100");
        assert!(!body.held_back());
        assert!(body.wants_bytes());
    }

    #[test]
    fn no_100_after_the_final_response_started() {
        let mut body = RequestBody::new(false, true);
        body.read(10);
        assert!(!body.take_continue(false));
        assert!(body.wants_bytes(), "the client may send it anyway");
    }

    #[test]
    fn a_failure_wakes_the_reader_and_outlives_the_exchange() {
        let mut body = RequestBody::new(false, false);
        body.read(10);
        assert!(body.failed(HttpError::PayloadTooLarge));
        assert!(body.has_failed());
        assert!(!body.wants_bytes());
        let mut left = body.after_exchange();
        assert_eq!(
            left.read(10).0,
            BodyRead::Failed(HttpError::PayloadTooLarge)
        );
        assert!(RequestBody::new(false, false)
            .after_exchange()
            .is_complete());
    }

    #[test]
    fn a_withdrawn_wait_says_whether_a_wake_up_is_on_its_way() {
        let mut body = RequestBody::new(false, false);
        body.read(10);
        assert!(body.cancel_wait());
        assert!(!body.received(b"x", false), "withdrawn: nobody to wake");
        body.read(10);
        body.read(10);
        assert!(body.received(b"y", false));
        assert!(!body.cancel_wait(), "claimed already");
    }
}
