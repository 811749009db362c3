//! Server-Sent Events encoding, per the WHATWG HTML standard, section 9.2 ("event stream
//! interpretation"). One encoder serves every path: single streams, broadcasts and replay.
//!
//! ```
//! use crier_core::sse::{encode, Event};
//! let bytes = encode(&Event { id: Some("7"), event: Some("tick"), data: Some("a\nb"), ..Event::default() }).unwrap();
//! assert_eq!(&bytes[..], b"id: 7\nevent: tick\ndata: a\ndata: b\n\n");
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// The comment line written to idle streams to keep proxies open and surface dead peers.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// One event; every field is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// Sets the client's last event ID. No CR, LF or NUL.
    pub id: Option<&'a str>,
    /// The event type (`addEventListener` name). No CR or LF.
    pub event: Option<&'a str>,
    /// The payload; split on CRLF, CR and LF into one `data:` line each.
    pub data: Option<&'a str>,
    /// Reconnection time in milliseconds.
    pub retry: Option<u64>,
    /// A comment, ignored by clients; split into lines like `data`.
    pub comment: Option<&'a str>,
}

/// Why an event cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent(pub &'static str);

impl std::fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidEvent {}

/// Encodes `event` as the bytes of one event-stream block, ending in a blank line.
///
/// # Errors
///
/// An `id` with CR, LF or NUL (a client would ignore or split it), or an `event` with CR or
/// LF (it would inject a field).
pub fn encode(event: &Event<'_>) -> Result<Bytes, InvalidEvent> {
    let mut out = BytesMut::with_capacity(encoded_len_hint(event));
    encode_into(event, &mut out)?;
    Ok(out.freeze())
}

/// Like [`encode`], appending to `out`.
///
/// # Errors
///
/// As [`encode`]; nothing is appended on error.
pub fn encode_into(event: &Event<'_>, out: &mut BytesMut) -> Result<(), InvalidEvent> {
    if let Some(id) = event.id {
        if id.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(InvalidEvent("id must not contain CR, LF or NUL"));
        }
    }
    if let Some(name) = event.event {
        if name.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(InvalidEvent("event must not contain CR or LF"));
        }
    }
    if let Some(comment) = event.comment {
        for line in split_lines(comment) {
            out.put_slice(b": ");
            out.put_slice(line.as_bytes());
            out.put_u8(b'\n');
        }
    }
    if let Some(id) = event.id {
        put_field(out, b"id", id);
    }
    if let Some(name) = event.event {
        put_field(out, b"event", name);
    }
    if let Some(retry) = event.retry {
        put_field(out, b"retry", &retry.to_string());
    }
    if let Some(data) = event.data {
        for line in split_lines(data) {
            put_field(out, b"data", line);
        }
    }
    out.put_u8(b'\n');
    Ok(())
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &str) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

fn encoded_len_hint(event: &Event<'_>) -> usize {
    let field = |v: Option<&str>| v.map_or(0, |s| s.len() + 8);
    field(event.id) + field(event.event) + field(event.data) + field(event.comment) + 24
}

/// Splits on CRLF, lone CR and lone LF, the three line ends an event stream knows.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(event: Event<'_>) -> Vec<u8> {
        encode(&event).unwrap().to_vec()
    }

    #[test]
    fn all_fields_to_the_byte() {
        let bytes = enc(Event {
            id: Some("42"),
            event: Some("update"),
            data: Some("hello"),
            retry: Some(3000),
            comment: Some("hi"),
        });
        assert_eq!(
            bytes,
            b": hi\nid: 42\nevent: update\nretry: 3000\ndata: hello\n\n"
        );
    }

    #[test]
    fn data_splits_on_crlf_cr_and_lf() {
        let bytes = enc(Event {
            data: Some("a\r\nb\rc\nd"),
            ..Event::default()
        });
        assert_eq!(bytes, b"data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn empty_and_trailing_newline_data_keep_their_lines() {
        assert_eq!(
            enc(Event {
                data: Some(""),
                ..Event::default()
            }),
            b"data: \n\n"
        );
        assert_eq!(
            enc(Event {
                data: Some("x\n"),
                ..Event::default()
            }),
            b"data: x\ndata: \n\n"
        );
    }

    #[test]
    fn hostile_id_and_event_are_rejected() {
        for id in ["a\nb", "a\rb", "a\0b"] {
            assert!(
                encode(&Event {
                    id: Some(id),
                    ..Event::default()
                })
                .is_err(),
                "{id:?}"
            );
        }
        for name in ["a\nb", "a\rb"] {
            assert!(encode(&Event {
                event: Some(name),
                ..Event::default()
            })
            .is_err());
        }
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(
            enc(Event {
                data: Some("héllo ✓"),
                ..Event::default()
            }),
            "data: héllo ✓\n\n".as_bytes()
        );
    }
}
