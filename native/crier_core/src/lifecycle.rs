//! The close and shutdown lifecycle of one connection (for HTTP/2, of one stream).
//!
//! ```text
//!   Open ──begin_drain──> Draining ──(queue written)──┐
//!    │                       │                        v
//!    └──close(reason)────────┴──close(reason)──> Closing(reason) ──report──> Reported(reason)
//! ```
//!
//! The first reason wins; a close is reported once. While draining, owners can queue nothing
//! more, and what was queued before is still written.

use crate::report::CloseReason;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Open,
    /// The server is stopping: what is queued is written, then the connection closes.
    Draining,
    /// Closing for this reason; the task stops writing and reports it.
    Closing(CloseReason),
    /// The close was reported; nothing happens any more.
    Reported(CloseReason),
}

impl Lifecycle {
    /// Whether owners may still queue.
    pub(crate) fn is_open(self) -> bool {
        self == Lifecycle::Open
    }

    /// Whether the connection still carries its response (open or draining).
    pub(crate) fn is_live(self) -> bool {
        matches!(self, Lifecycle::Open | Lifecycle::Draining)
    }

    pub(crate) fn is_draining(self) -> bool {
        self == Lifecycle::Draining
    }

    /// The reason, once closing.
    pub(crate) fn closing(self) -> Option<CloseReason> {
        match self {
            Lifecycle::Closing(reason) => Some(reason),
            _ => None,
        }
    }

    /// Starts the drain of a shutdown; false unless open.
    pub(crate) fn begin_drain(&mut self) -> bool {
        let open = self.is_open();
        if open {
            *self = Lifecycle::Draining;
        }
        open
    }

    /// Closes for `reason`; false when already closing or reported (the first reason wins).
    pub(crate) fn close(&mut self, reason: CloseReason) -> bool {
        let live = self.is_live();
        if live {
            *self = Lifecycle::Closing(reason);
        }
        live
    }

    /// Records the report of the close, with `fallback` as the reason if none was set (the
    /// task ended for its own reason). Returns the reason the first time, `None` after.
    pub(crate) fn report(&mut self, fallback: CloseReason) -> Option<CloseReason> {
        let reason = match *self {
            Lifecycle::Reported(_) => return None,
            Lifecycle::Closing(reason) => reason,
            Lifecycle::Open | Lifecycle::Draining => fallback,
        };
        *self = Lifecycle::Reported(reason);
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_accepts_calls_then_the_first_close_reason_wins() {
        let mut lifecycle = Lifecycle::Open;
        assert!(lifecycle.is_open() && lifecycle.is_live());
        assert!(lifecycle.close(CloseReason::Overflow));
        assert!(!lifecycle.close(CloseReason::Closed));
        assert_eq!(lifecycle.closing(), Some(CloseReason::Overflow));
        assert!(!lifecycle.is_live());
        assert_eq!(
            lifecycle.report(CloseReason::Closed),
            Some(CloseReason::Overflow)
        );
        assert_eq!(lifecycle.report(CloseReason::Closed), None, "reported once");
        assert!(!lifecycle.close(CloseReason::Timeout));
        assert_eq!(lifecycle, Lifecycle::Reported(CloseReason::Overflow));
    }

    #[test]
    fn a_drain_refuses_calls_but_stays_live_until_closed() {
        let mut lifecycle = Lifecycle::Open;
        assert!(lifecycle.begin_drain());
        assert!(!lifecycle.begin_drain());
        assert!(!lifecycle.is_open());
        assert!(lifecycle.is_live() && lifecycle.is_draining());
        assert!(lifecycle.close(CloseReason::Shutdown));
        assert_eq!(
            lifecycle.report(CloseReason::Closed),
            Some(CloseReason::Shutdown)
        );
    }

    #[test]
    fn a_task_that_ends_on_its_own_reports_its_reason() {
        let mut lifecycle = Lifecycle::Open;
        assert_eq!(
            lifecycle.report(CloseReason::Closed),
            Some(CloseReason::Closed)
        );
        assert!(!lifecycle.begin_drain());
    }
}
