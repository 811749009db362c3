//! Server-Sent Events encoding, per the WHATWG HTML standard, section 9.2 ("event stream
//! interpretation"). One encoder serves every path: single streams, broadcasts and replay.
//!
//! ```
//! use crier_core::sse::{encode, Event};
//! let bytes = encode(&Event { id: Some("7"), event: Some("tick"), data: Some("a\nb"), ..Event::default() }).unwrap();
//! assert_eq!(&bytes[..], b"id: 7\nevent: tick\ndata: a\ndata: b\n\n");
//! ```

use crate::http::chunked;
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

/// One broadcast event in both wire forms, encoded once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct WireEvent {
    /// The event as one chunk, for HTTP/1.1 streams.
    pub(crate) framed: Bytes,
    /// The event as is, for close-delimited (HTTP/1.0) streams: a slice of `framed`.
    pub(crate) raw: Bytes,
}

impl WireEvent {
    /// Frames encoded event bytes; `raw` shares `framed`'s memory.
    pub fn new(encoded: &[u8]) -> Self {
        Self::with_id(None, encoded)
    }

    /// Frames encoded event bytes with an `id` line put first: the hub numbers events after
    /// they were encoded, and the order of fields in a block does not matter (WHATWG HTML
    /// 9.2.6). The id must be free of CR, LF and NUL, as the hub's numbers are.
    pub fn with_id(id: Option<&str>, encoded: &[u8]) -> Self {
        let id_line = id.map_or(0, |id| b"id: ".len() + id.len() + 1);
        let len = id_line + encoded.len();
        let mut out = BytesMut::with_capacity(len + 20);
        chunked::put_chunk_header(&mut out, len);
        let start = out.len();
        if let Some(id) = id {
            put_field(&mut out, b"id", id);
        }
        out.put_slice(encoded);
        out.put_slice(b"\r\n");
        let framed = out.freeze();
        let raw = framed.slice(start..start + len);
        WireEvent { framed, raw }
    }

    /// The event framed for a stream: as one chunk, or as is.
    pub(crate) fn for_stream(&self, chunked: bool) -> &Bytes {
        if chunked {
            &self.framed
        } else {
            &self.raw
        }
    }
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
    fn retry_is_written_in_decimal() {
        for (retry, wire) in [
            (0, &b"retry: 0\n\n"[..]),
            (2500, b"retry: 2500\n\n"),
            (u64::MAX, b"retry: 18446744073709551615\n\n"),
        ] {
            assert_eq!(
                enc(Event {
                    retry: Some(retry),
                    ..Event::default()
                }),
                wire
            );
        }
    }

    #[test]
    fn an_event_with_no_field_is_a_blank_line() {
        assert_eq!(enc(Event::default()), b"\n");
    }

    #[test]
    fn id_alone_sets_the_last_event_id_without_data() {
        assert_eq!(
            enc(Event {
                id: Some("9"),
                ..Event::default()
            }),
            b"id: 9\n\n"
        );
        // An empty id is legal: it resets the client's last event ID.
        assert_eq!(
            enc(Event {
                id: Some(""),
                ..Event::default()
            }),
            b"id: \n\n"
        );
    }

    #[test]
    fn every_line_end_combination_splits_once_per_break() {
        let cases: [(&str, &[u8]); 9] = [
            ("\r\n", b"data: \ndata: \n\n"),
            ("\n\r", b"data: \ndata: \ndata: \n\n"),
            ("\r\r", b"data: \ndata: \ndata: \n\n"),
            ("\r\n\n", b"data: \ndata: \ndata: \n\n"),
            ("\r\r\n", b"data: \ndata: \ndata: \n\n"),
            ("\na", b"data: \ndata: a\n\n"),
            ("a\r", b"data: a\ndata: \n\n"),
            ("a\r\nb\r\n", b"data: a\ndata: b\ndata: \n\n"),
            ("\n\n\n", b"data: \ndata: \ndata: \ndata: \n\n"),
        ];
        for (data, wire) in cases {
            assert_eq!(
                enc(Event {
                    data: Some(data),
                    ..Event::default()
                }),
                wire,
                "{data:?}"
            );
        }
    }

    #[test]
    fn leading_space_and_colons_in_data_survive() {
        // The parser strips one space after the colon; ours is that space, so " x" stays " x".
        assert_eq!(
            enc(Event {
                data: Some(" x: y"),
                ..Event::default()
            }),
            b"data:  x: y\n\n"
        );
    }

    #[test]
    fn hostile_data_cannot_inject_fields_or_end_the_event() {
        assert_eq!(
            enc(Event {
                data: Some("a\n\nid: 666\r\nevent: evil\rretry: 1"),
                ..Event::default()
            }),
            b"data: a\ndata: \ndata: id: 666\ndata: event: evil\ndata: retry: 1\n\n"
        );
    }

    #[test]
    fn comments_split_like_data_and_come_first() {
        assert_eq!(
            enc(Event {
                comment: Some("one\r\ntwo\rthree\n"),
                data: Some("x"),
                ..Event::default()
            }),
            b": one\n: two\n: three\n: \ndata: x\n\n"
        );
        assert_eq!(
            enc(Event {
                comment: Some(""),
                ..Event::default()
            }),
            b": \n\n"
        );
    }

    #[test]
    fn nul_is_rejected_in_id_but_passes_in_data_and_event() {
        let error = encode(&Event {
            id: Some("1\u{0}2"),
            data: Some("x"),
            ..Event::default()
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "id must not contain CR, LF or NUL");
        assert_eq!(
            enc(Event {
                event: Some("a\0b"),
                data: Some("c\0d"),
                ..Event::default()
            }),
            b"event: a\0b\ndata: c\0d\n\n"
        );
    }

    #[test]
    fn crlf_in_event_is_rejected_with_its_reason() {
        let error = encode(&Event {
            event: Some("tick\r\ndata: evil"),
            ..Event::default()
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "event must not contain CR or LF");
    }

    #[test]
    fn encode_into_appends_nothing_on_error() {
        let mut out = BytesMut::from(&b"kept"[..]);
        assert!(encode_into(
            &Event {
                comment: Some("would come first"),
                id: Some("\n"),
                ..Event::default()
            },
            &mut out
        )
        .is_err());
        assert_eq!(&out[..], b"kept");
        encode_into(
            &Event {
                data: Some("x"),
                ..Event::default()
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], b"keptdata: x\n\n");
    }

    #[test]
    fn utf8_in_every_field_is_written_as_is() {
        assert_eq!(
            enc(Event {
                id: Some("ід-7"),
                event: Some("тик"),
                data: Some("日本\n😀"),
                comment: Some("ç"),
                retry: None,
            }),
            ": ç\nid: ід-7\nevent: тик\ndata: 日本\ndata: 😀\n\n".as_bytes()
        );
        // U+2028 and U+0085 are line breaks elsewhere, not in an event stream.
        assert_eq!(
            enc(Event {
                data: Some("a\u{2028}b\u{85}c"),
                ..Event::default()
            }),
            "data: a\u{2028}b\u{85}c\n\n".as_bytes()
        );
    }

    #[test]
    fn split_lines_yields_one_line_per_break() {
        let lines: Vec<&str> = split_lines("a\r\nb\rc\nd").collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
        assert_eq!(split_lines("").collect::<Vec<_>>(), [""]);
        assert_eq!(split_lines("\r\n").collect::<Vec<_>>(), ["", ""]);
    }

    #[test]
    fn heartbeat_is_a_comment_and_a_blank_line() {
        assert_eq!(HEARTBEAT, b":\n\n");
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

    #[test]
    fn a_wire_event_is_framed_once_with_its_raw_form_inside() {
        let wire = WireEvent::new(b"data: a\n\n");
        assert_eq!(&wire.framed[..], b"9\r\ndata: a\n\n\r\n");
        assert_eq!(&wire.raw[..], b"data: a\n\n");
        assert_eq!(&wire.for_stream(false)[..], b"data: a\n\n");
        let numbered = WireEvent::with_id(Some("42"), b"data: a\n\n");
        assert_eq!(&numbered.framed[..], b"10\r\nid: 42\ndata: a\n\n\r\n");
        assert_eq!(&numbered.raw[..], b"id: 42\ndata: a\n\n");
    }
}
