//! A spec-exact event-stream parser, written from the WHATWG HTML standard, section 9.2.5
//! ("Parsing an event stream") and 9.2.6 ("Interpreting an event stream"), and nothing else:
//! the yardstick Crier's encoder is measured against. It takes bytes in pieces of any size
//! (a CRLF may be split between two reads) and keeps what a browser's `EventSource` keeps.
//!
//! Test files include it with `#[path = "support/event_stream.rs"] mod event_stream;`.

#![allow(dead_code)]

/// One dispatched `MessageEvent`, as a browser would hand it to a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// `event.type`: the `event:` field, or "message" when it was missing or empty.
    pub kind: String,
    /// `event.data`: the `data:` lines joined with LF.
    pub data: String,
    /// `event.lastEventId` at dispatch time.
    pub last_event_id: String,
}

/// The parser state of one `EventSource` connection.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the line being read (not yet ended by CR, LF or CRLF).
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// A line was ended already: the BOM check is over.
    bom_checked: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// The "last event ID string" of the `EventSource`: what it sends as `Last-Event-ID`.
    pub last_event_id: String,
    /// The "reconnection time", once a valid `retry:` set it.
    pub retry: Option<u64>,
    /// Every `retry:` value that took effect, in order.
    pub retries: Vec<u64>,
    /// Events dispatched and not yet taken.
    pub events: std::collections::VecDeque<Dispatched>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' => {
                    self.end_line();
                    self.after_cr = true;
                }
                b'\n' => self.end_line(),
                _ => self.line.push(byte),
            }
        }
    }

    /// The end of the stream: "any pending data must be discarded" (an event not ended by a
    /// blank line is not dispatched). The last event ID survives, for the reconnect.
    pub fn end_of_stream(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.data.clear();
        self.event_type.clear();
    }

    /// A reconnect starts a new stream (with a fresh BOM check) but keeps the last event ID
    /// and the reconnection time, as an `EventSource` does.
    pub fn reconnect(&mut self) {
        self.end_of_stream();
        self.bom_checked = false;
        self.last_event_id_buffer = self.last_event_id.clone();
    }

    /// Takes every event dispatched so far.
    pub fn take(&mut self) -> Vec<Dispatched> {
        self.events.drain(..).collect()
    }

    fn end_line(&mut self) {
        let mut raw = std::mem::take(&mut self.line);
        if !self.bom_checked {
            self.bom_checked = true;
            // "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
            if raw.starts_with(&[0xEF, 0xBB, 0xBF]) {
                raw.drain(..3);
            }
        }
        // The stream is decoded with "UTF-8 decode": invalid sequences become U+FFFD. Line
        // ends are ASCII, so decoding line by line is the same as decoding the whole stream.
        let line = String::from_utf8_lossy(&raw).into_owned();
        self.interpret(&line);
    }

    fn interpret(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
        } else if line.starts_with(':') {
            // A comment: ignored.
        } else if let Some(colon) = line.find(':') {
            let field = &line[..colon];
            let mut value = &line[colon + 1..];
            if let Some(rest) = value.strip_prefix(' ') {
                value = rest;
            }
            self.field(field, value);
        } else {
            self.field(line, "");
        }
    }

    fn field(&mut self, name: &str, value: &str) {
        match name {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL is ignored: a browser could not send it back in a header.
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_string(),
            // Only ASCII digits set the reconnection time. Digits past u64 are refused rather
            // than wrapped, which keeps the comparison honest.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                    self.retries.push(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.last_event_id = self.last_event_id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let kind = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event_type)
        };
        self.event_type.clear();
        self.events.push_back(Dispatched {
            kind,
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }
}

/// Parses a complete stream in one piece.
pub fn parse(bytes: &[u8]) -> Parser {
    let mut parser = Parser::new();
    parser.feed(bytes);
    parser
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<(String, String, String)> {
        parse(bytes)
            .take()
            .into_iter()
            .map(|e| (e.kind, e.data, e.last_event_id))
            .collect()
    }

    fn ev(kind: &str, data: &str, id: &str) -> (String, String, String) {
        (kind.into(), data.into(), id.into())
    }

    // The examples of WHATWG HTML 9.2.6, to check the yardstick itself.
    #[test]
    fn spec_example_stock_ticker() {
        assert_eq!(
            events(b"data: YHOO\ndata: +2\ndata: 10\n\n"),
            [ev("message", "YHOO\n+2\n10", "")]
        );
    }

    #[test]
    fn spec_example_ids_and_comments() {
        let stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        assert_eq!(
            events(stream),
            [
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", ""),
            ]
        );
    }

    #[test]
    fn spec_example_empty_data() {
        // "data\n\ndata\ndata\n\ndata:" gives "" and "\n"; the last is never dispatched.
        assert_eq!(
            events(b"data\n\ndata\ndata\n\ndata:"),
            [ev("message", "", ""), ev("message", "\n", "")]
        );
    }

    #[test]
    fn spec_example_space_after_colon() {
        assert_eq!(
            events(b"data:test\n\ndata: test\n\n"),
            [ev("message", "test", ""), ev("message", "test", "")]
        );
    }

    #[test]
    fn bom_cr_crlf_and_split_feeds() {
        let mut parser = Parser::new();
        for piece in [
            &b"\xEF\xBB\xBFdata: a\r"[..],
            b"\ndata: b\r",
            b"\r",
            b"event: x\rdata: c\n\n",
        ] {
            parser.feed(piece);
        }
        let got: Vec<_> = parser
            .take()
            .into_iter()
            .map(|e| (e.kind, e.data))
            .collect();
        assert_eq!(
            got,
            [
                ("message".to_string(), "a\nb".to_string()),
                ("x".to_string(), "c".to_string())
            ]
        );
    }

    #[test]
    fn only_one_bom_is_stripped_and_only_at_the_start() {
        assert_eq!(
            events("\u{feff}\u{feff}data: x\n\n".as_bytes()),
            [] as [(String, String, String); 0]
        );
        assert_eq!(
            events("data: \u{feff}x\n\n".as_bytes()),
            [ev("message", "\u{feff}x", "")]
        );
    }

    #[test]
    fn id_with_nul_is_ignored_and_retry_needs_digits() {
        let mut parser =
            parse(b"id: 1\nid: 2\x003\nretry: 10x\nretry: -1\nretry:\nretry: 250\ndata: d\n\n");
        let got = parser.take();
        assert_eq!(got[0].last_event_id, "1");
        assert_eq!(parser.retry, Some(250));
        assert_eq!(parser.retries, [250]);
    }

    #[test]
    fn unknown_fields_are_ignored_and_event_type_resets() {
        assert_eq!(
            events(b"event: a\nfoo: bar\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n"),
            [
                ev("a", "1", ""),
                ev("message", "2", ""),
                ev("message", "3", "")
            ]
        );
    }
}
