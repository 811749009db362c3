//! What h2 does not watch on an HTTP/2 connection, seen from its byte stream: a thin
//! `AsyncRead + AsyncWrite` between the TLS stream and h2 that reads frame headers as they
//! pass (9 bytes each: length, type, flags, stream) and raises an [`Alarm`] for the
//! connection task to act on.
//!
//! - **SETTINGS and PING floods.** h2 answers every SETTINGS and PING, one at a time, so a
//!   flood holds no memory but costs CPU for as long as the client reads the answers. The
//!   client's SETTINGS and PING frames (acknowledgements too) are counted against a budget
//!   per second; a DATA or HEADERS frame the server writes gives one back, as gRPC forgives
//!   PINGs that follow data: a client that probes bandwidth with one PING per DATA frame it
//!   receives (hyper's and gRPC's BDP estimators) is never cut, however fast the stream.
//!   Past the budget, the bytes from the offending frame on are kept from h2 and thrown
//!   away, and [`Alarm::Flood`] is raised.
//! - **A client's GOAWAY with an error code** ([`Alarm::PeerFailed`]): the client declared
//!   the connection broken (RFC 9113 section 5.4.1) and will read none of its streams
//!   again. h2 lets client-initiated streams go on after any client GOAWAY (right for
//!   NO_ERROR, section 6.8), which would leave SSE streams open on a dead connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
/// The client connection preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113 section 3.4).
const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;
/// Reads of a flood thrown away in one poll before it yields to the other tasks.
const DISCARD_READS: usize = 16;

/// What the watch found, once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// More SETTINGS and PING frames than the budget allows.
    Flood,
    /// The client sent GOAWAY with this error code (never NO_ERROR).
    PeerFailed(u32),
}

/// Where the connection task hears of an [`Alarm`]; shared with the watch inside h2.
#[derive(Debug, Default)]
pub(crate) struct AlarmBell {
    alarm: OnceLock<Alarm>,
    ring: Notify,
}

impl AlarmBell {
    fn raise(&self, alarm: Alarm) {
        if self.alarm.set(alarm).is_ok() {
            self.ring.notify_one();
        }
    }

    /// Waits for the alarm; at once if it was raised before.
    pub(crate) async fn rung(&self) -> Alarm {
        loop {
            if let Some(alarm) = self.alarm.get() {
                return *alarm;
            }
            self.ring.notified().await;
        }
    }
}

/// SETTINGS and PING frames left to the client in the current one-second window.
#[derive(Debug)]
struct ControlBudget {
    per_second: u32,
    window_start: Instant,
    spent: u32,
}

impl ControlBudget {
    /// Counts one frame received; `false` once past the budget.
    fn spend(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.spent = 0;
        }
        self.spent += 1;
        self.spent <= self.per_second
    }

    /// Gives one frame back, for a DATA or HEADERS frame the server sent.
    fn refund(&mut self) {
        self.spent = self.spent.saturating_sub(1);
    }
}

/// Where a [`FrameScanner`] is in its byte stream.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// In the client's connection preface, this many bytes of it still to come.
    Preface(usize),
    /// In a frame header, `got` of its bytes read.
    Header { bytes: [u8; HEADER_LEN], got: usize },
    /// In a frame's payload, `left` bytes of it still to come. A GOAWAY's first eight
    /// bytes (last stream id, error code) are collected on the way.
    Payload {
        left: usize,
        goaway: Option<([u8; 8], usize)>,
    },
}

/// What a scanner saw in the bytes it was given.
enum Seen {
    /// A frame header of this type ended this many bytes into the slice (its start may
    /// lie before it).
    Frame(u8, usize),
    /// A GOAWAY's error code, complete.
    GoAway(u32),
}

/// The start of a frame header.
const HEADER_START: Position = Position::Header {
    bytes: [0; HEADER_LEN],
    got: 0,
};

/// Follows an HTTP/2 byte stream's framing one slice at a time, whatever the slices.
#[derive(Debug)]
struct FrameScanner {
    at: Position,
}

impl FrameScanner {
    fn after_preface() -> Self {
        FrameScanner { at: HEADER_START }
    }

    fn before_preface() -> Self {
        FrameScanner {
            at: Position::Preface(PREFACE_LEN),
        }
    }

    /// Walks `bytes`, calling `seen` for each frame header and GOAWAY code completed in
    /// it; stops early when `seen` returns `false`.
    fn scan(&mut self, mut bytes: &[u8], mut seen: impl FnMut(Seen) -> bool) {
        let total = bytes.len();
        while !bytes.is_empty() {
            match &mut self.at {
                Position::Preface(left) => {
                    let step = (*left).min(bytes.len());
                    *left -= step;
                    bytes = &bytes[step..];
                    if *left == 0 {
                        self.at = HEADER_START;
                    }
                }
                Position::Header { bytes: head, got } => {
                    let step = (HEADER_LEN - *got).min(bytes.len());
                    head[*got..*got + step].copy_from_slice(&bytes[..step]);
                    *got += step;
                    bytes = &bytes[step..];
                    if *got < HEADER_LEN {
                        continue;
                    }
                    let head = *head;
                    let left = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    let kind = head[3];
                    self.at = Position::Payload {
                        left,
                        goaway: (kind == GOAWAY).then_some(([0; 8], 0)),
                    };
                    if left == 0 {
                        self.at = HEADER_START;
                    }
                    if !seen(Seen::Frame(kind, total - bytes.len())) {
                        return;
                    }
                }
                Position::Payload { left, goaway } => {
                    let step = (*left).min(bytes.len());
                    let mut error = None;
                    if let Some((code, got)) = goaway {
                        let take = (8 - *got).min(step);
                        code[*got..*got + take].copy_from_slice(&bytes[..take]);
                        *got += take;
                        if take > 0 && *got == 8 {
                            error = Some(u32::from_be_bytes([code[4], code[5], code[6], code[7]]));
                        }
                    }
                    *left -= step;
                    bytes = &bytes[step..];
                    if *left == 0 {
                        self.at = HEADER_START;
                    }
                    if let Some(error) = error {
                        if !seen(Seen::GoAway(error)) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The read side's state.
#[derive(Debug)]
enum Reading {
    /// Frames pass to h2 and are counted.
    Watching,
    /// Past the budget: what the client sends is read and thrown away, so the socket's
    /// receive buffer stays empty and the close that follows the GOAWAY is a FIN, not an
    /// RST that could destroy the GOAWAY before the client reads it.
    Discarding,
}

/// The TLS stream as h2 sees it, watched; see the module's documentation.
pub(crate) struct FrameWatch<S> {
    inner: S,
    reading: Reading,
    received: FrameScanner,
    sent: FrameScanner,
    budget: Option<ControlBudget>,
    bell: Arc<AlarmBell>,
}

impl<S> FrameWatch<S> {
    /// Watches `inner`, a connection whose client preface is still to come, allowing
    /// `per_second` SETTINGS and PING frames (`None`: any number).
    pub(crate) fn new(inner: S, per_second: Option<u32>, bell: Arc<AlarmBell>) -> Self {
        FrameWatch {
            inner,
            reading: Reading::Watching,
            received: FrameScanner::before_preface(),
            sent: FrameScanner::after_preface(),
            budget: per_second.map(|per_second| ControlBudget {
                per_second,
                window_start: Instant::now(),
                spent: 0,
            }),
            bell,
        }
    }

    /// Scans bytes just received; returns how many of them h2 may have.
    fn received(&mut self, bytes: &[u8]) -> usize {
        let mut keep = bytes.len();
        let budget = &mut self.budget;
        let bell = &self.bell;
        self.received.scan(bytes, |seen| match seen {
            Seen::Frame(kind, end) if kind == SETTINGS || kind == PING => {
                let Some(budget) = budget.as_mut() else {
                    return true;
                };
                if budget.spend(Instant::now()) {
                    return true;
                }
                // The header may have begun in an earlier read: then none of this one.
                keep = end.saturating_sub(HEADER_LEN);
                bell.raise(Alarm::Flood);
                false
            }
            Seen::GoAway(error) if error != 0 => {
                bell.raise(Alarm::PeerFailed(error));
                true
            }
            _ => true,
        });
        keep
    }

    /// Scans bytes h2 wrote; each DATA or HEADERS frame refunds one control frame.
    fn sent(&mut self, bytes: &[u8]) {
        let Some(budget) = self.budget.as_mut() else {
            return;
        };
        self.sent.scan(bytes, |seen| {
            if let Seen::Frame(kind, _) = seen {
                if kind == DATA || kind == HEADERS {
                    budget.refund();
                }
            }
            true
        });
    }
}

impl<S: AsyncRead + Unpin> FrameWatch<S> {
    /// Reads and drops what the client sends; `Ready` only at its end.
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        for _ in 0..DISCARD_READS {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Reading::Discarding = this.reading {
            return this.discard(cx);
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = buf.filled().len() - before;
        if fresh == 0 {
            return Poll::Ready(Ok(()));
        }
        let keep = this.received(&buf.filled()[before..]);
        if keep == fresh {
            return Poll::Ready(Ok(()));
        }
        buf.set_filled(before + keep);
        this.reading = Reading::Discarding;
        if keep > 0 {
            return Poll::Ready(Ok(()));
        }
        // Nothing for h2, and an empty read would be the end of the stream to it: the
        // alarm wakes the connection task, which polls h2 again.
        match this.discard(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = written;
        for slice in bufs {
            let take = left.min(slice.len());
            this.sent(&slice[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    /// Every frame header and GOAWAY code in `bytes`, fed in pieces of `piece` bytes.
    fn scan_in_pieces(bytes: &[u8], piece: usize) -> Vec<String> {
        let mut scanner = FrameScanner::before_preface();
        let mut seen = Vec::new();
        for chunk in bytes.chunks(piece) {
            scanner.scan(chunk, |s| {
                seen.push(match s {
                    Seen::Frame(kind, _) => format!("frame {kind}"),
                    Seen::GoAway(code) => format!("goaway {code}"),
                });
                true
            });
        }
        seen
    }

    #[test]
    fn frames_are_found_however_the_bytes_are_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(PING, 1, b"12345678"));
        bytes.extend(frame(HEADERS, 5, &[0x82; 300]));
        bytes.extend(frame(SETTINGS, 1, &[]));
        bytes.extend(frame(GOAWAY, 0, &[0, 0, 0, 1, 0, 0, 0, 2, b'x']));
        let want = [
            "frame 4", "frame 6", "frame 1", "frame 4", "frame 7", "goaway 2",
        ];
        for piece in [1, 2, 7, 9, 10, 64, bytes.len()] {
            assert_eq!(scan_in_pieces(&bytes, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn the_budget_is_per_second_and_data_sent_gives_back() {
        let start = Instant::now();
        let mut budget = ControlBudget {
            per_second: 3,
            window_start: start,
            spent: 0,
        };
        assert!((0..3).all(|_| budget.spend(start)));
        assert!(!budget.spend(start));
        budget.refund();
        budget.refund();
        assert!(budget.spend(start));
        let next = start + Duration::from_secs(1);
        assert!((0..3).all(|_| budget.spend(next)));
        assert!(!budget.spend(next));
    }
}
