//! Property: any sequence of events that Crier's encoder accepts, parsed by a spec-exact
//! event-stream parser (WHATWG HTML 9.2.6, in `support/event_stream.rs`) from bytes cut at
//! random places, comes back as the same events: same type, same data (line ends normalised
//! to LF, as the spec joins `data:` lines), same last event ID, same reconnection times. And
//! the encoder refuses exactly the events that could not come back equal.

#[path = "support/event_stream.rs"]
mod event_stream;

use crier_core::hub::OwnedEvent;
use crier_core::sse::encode;
use event_stream::{Dispatched, Parser};
use proptest::prelude::*;

/// Text biased toward what breaks event streams: every line end, NUL, colons, spaces, a BOM,
/// non-ASCII, and line separators of other formats.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("\r".to_string()),
        4 => Just("\n".to_string()),
        4 => Just("\r\n".to_string()),
        2 => Just("\0".to_string()),
        2 => Just(":".to_string()),
        2 => Just(" ".to_string()),
        1 => Just("\u{feff}".to_string()),
        1 => Just("\u{2028}".to_string()),
        1 => Just("\u{85}".to_string()),
        1 => Just("data: x".to_string()),
        1 => Just("id".to_string()),
        8 => "[a-z0-9]{1,6}",
        4 => any::<char>().prop_map(String::from),
        2 => "[é日😀ß]{1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

/// Whether the encoder must accept `event`: only an id with CR, LF or NUL, or an event name
/// with CR or LF, could not come back equal. Written from the spec, apart from the encoder.
fn encodable(event: &OwnedEvent) -> bool {
    let id_ok = event
        .id
        .as_deref()
        .is_none_or(|id| !id.contains(['\r', '\n', '\0']));
    let event_ok = event
        .event
        .as_deref()
        .is_none_or(|name| !name.contains(['\r', '\n']));
    id_ok && event_ok
}

fn any_event() -> impl Strategy<Value = OwnedEvent> {
    (
        proptest::option::of(hostile_text()),
        proptest::option::of(hostile_text()),
        proptest::option::of(hostile_text()),
        proptest::option::of(prop_oneof![0u64..10_000, any::<u64>()]),
        proptest::option::weighted(0.2, hostile_text()),
    )
        .prop_map(|(id, event, data, retry, comment)| OwnedEvent {
            id,
            event,
            data,
            retry,
            comment,
        })
}

/// What a browser must see for `events`, written from the spec's dispatch rules.
struct Expected {
    dispatched: Vec<Dispatched>,
    last_event_id: String,
    retries: Vec<u64>,
}

fn expected(events: &[OwnedEvent]) -> Expected {
    let mut last_event_id = String::new();
    let mut dispatched = Vec::new();
    let mut retries = Vec::new();
    for event in events {
        if let Some(id) = &event.id {
            last_event_id = id.clone();
        }
        if let Some(retry) = event.retry {
            retries.push(retry);
        }
        if let Some(data) = &event.data {
            let kind = match event.event.as_deref() {
                None | Some("") => "message".to_string(),
                Some(name) => name.to_string(),
            };
            dispatched.push(Dispatched {
                kind,
                data: normalise_line_ends(data),
                last_event_id: last_event_id.clone(),
            });
        }
    }
    Expected {
        dispatched,
        last_event_id,
        retries,
    }
}

/// `data` as the spec's parser hands it back: every line end (CRLF, lone CR, lone LF) becomes
/// LF, since the encoder writes each line as its own `data:` field and the parser joins them
/// with LF. Written here from the spec, apart from the encoder's own line splitter.
fn normalise_line_ends(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Cuts `bytes` at the (sorted, deduplicated) `cuts` and feeds the pieces one by one.
fn feed_in_pieces(parser: &mut Parser, bytes: &[u8], cuts: &[usize]) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut start = 0;
    for point in points {
        parser.feed(&bytes[start..point]);
        start = point;
    }
    parser.feed(&bytes[start..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn proptest_events_come_back_equal(
        events in prop::collection::vec(any_event(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        bom in any::<bool>(),
    ) {
        let accepted: Vec<OwnedEvent> = events.iter().filter(|e| encodable(e)).cloned().collect();
        let mut stream = Vec::new();
        if bom {
            stream.extend_from_slice("\u{feff}".as_bytes());
        }
        for event in &events {
            match encode(&event.as_event()) {
                Ok(bytes) => {
                    prop_assert!(encodable(event), "accepted a hostile event: {:?}", event);
                    stream.extend_from_slice(&bytes);
                }
                Err(_) => prop_assert!(!encodable(event), "refused a valid event: {:?}", event),
            }
        }
        let mut parser = Parser::new();
        feed_in_pieces(&mut parser, &stream, &cuts);
        let want = expected(&accepted);
        prop_assert_eq!(parser.take(), want.dispatched);
        prop_assert_eq!(&parser.last_event_id, &want.last_event_id);
        prop_assert_eq!(&parser.retries, &want.retries);
    }

    #[test]
    fn proptest_one_event_is_one_block(event in any_event()) {
        // Whatever the fields hold, an accepted event ends in exactly one blank line: nothing
        // inside it can end it early, so it can never dispatch twice or swallow the next one.
        if let Ok(bytes) = encode(&event.as_event()) {
            let text = std::str::from_utf8(&bytes).unwrap();
            prop_assert!(text.ends_with('\n'));
            let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
            prop_assert_eq!(lines.last().copied(), Some(""));
            prop_assert!(lines[..lines.len() - 1].iter().all(|l| !l.is_empty() && !l.contains('\r')));
        }
    }
}
