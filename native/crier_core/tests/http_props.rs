//! Property tests of the two parsers that read hostile bytes: the request head parser and the
//! request body decoder (Content-Length and chunked).
//!
//! `cargo test` runs each property 256 times (proptest's default); `make fuzz` sets
//! `PROPTEST_CASES` for a long run in release mode. A failure prints the smallest input that
//! breaks the property, and proptest keeps it in `tests/http_props.proptest-regressions` so
//! later runs try it first.

use crier_core::config::Limits;
use crier_core::http::body::BodyDecoder;
use crier_core::http::request::{parse_head, HeadProgress};
use crier_core::http::{BodyKind, HttpError, Version};
use proptest::prelude::*;

/// Statuses a refused head may get; anything else is a bug.
const HEAD_STATUSES: [u16; 5] = [400, 414, 431, 501, 505];
/// Statuses a refused body may get: bad framing, too large, trailers too large.
const BODY_STATUSES: [u16; 3] = [400, 413, 431];

fn small_limits() -> Limits {
    Limits {
        max_request_line: 64,
        max_header_bytes: 256,
        max_headers: 8,
        max_body: 4096,
        ..Limits::default()
    }
}

// ---- request heads ---------------------------------------------------------------------------

/// A token (RFC 9110 section 5.6.2): method and field names.
fn token() -> impl Strategy<Value = String> {
    "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}"
}

/// A field value: visible ASCII and inner spaces, no leading or trailing whitespace.
fn field_value() -> impl Strategy<Value = String> {
    "([!-~]([ !-~]{0,20}[!-~])?)?"
}

/// A header that does not change framing, so any set of them keeps a request valid.
fn plain_header() -> impl Strategy<Value = (String, String)> {
    (token(), field_value()).prop_filter("framing and singleton headers", |(name, _)| {
        !matches!(
            name.to_ascii_lowercase().as_str(),
            "content-length" | "transfer-encoding" | "host" | "connection" | "expect"
        )
    })
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    /// "\r\n" or a bare "\n" (RFC 9112 section 2.2 lets a recipient accept it).
    eol: &'static str,
}

impl Request {
    fn to_bytes(&self) -> Vec<u8> {
        let eol = self.eol;
        let mut out = format!("{} {}", self.method, self.path);
        if let Some(query) = &self.query {
            out.push('?');
            out.push_str(query);
        }
        out.push_str(" HTTP/1.1");
        out.push_str(eol);
        out.push_str("Host: example.com");
        out.push_str(eol);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}{eol}"));
        }
        out.push_str(eol);
        out.into_bytes()
    }
}

fn request() -> impl Strategy<Value = Request> {
    (
        token(),
        "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,30}",
        proptest::option::of("[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,20}"),
        proptest::collection::vec(plain_header(), 0..6),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(method, path, query, headers, eol)| Request {
            method,
            path,
            query,
            headers,
            eol,
        })
}

/// Ways to break a valid request that must each get 400, at a header chosen by `at`.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    /// A CR not followed by LF inside a value.
    BareCrInValue,
    /// A CR LF ending replaced by a lone CR.
    BareCrLineEnd,
    /// NUL inside a value.
    NulInValue,
    /// A space or tab between the name and the colon (RFC 9112 section 5.1).
    WhitespaceBeforeColon,
    /// A continuation line (obs-fold, RFC 9112 section 5.2).
    ObsFold,
    /// A separator inside a field name.
    SeparatorInName,
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        Just(Breakage::BareCrInValue),
        Just(Breakage::BareCrLineEnd),
        Just(Breakage::NulInValue),
        Just(Breakage::WhitespaceBeforeColon),
        Just(Breakage::ObsFold),
        Just(Breakage::SeparatorInName),
    ]
}

fn broken(req: &Request, how: Breakage, at: prop::sample::Index, ws: bool) -> Vec<u8> {
    let mut req = req.clone();
    req.eol = "\r\n";
    req.headers.push(("X-Last".into(), "last".into()));
    let i = at.index(req.headers.len());
    let (name, value) = req.headers[i].clone();
    let blank = if ws { "\t" } else { " " };
    match how {
        Breakage::BareCrInValue => req.headers[i].1 = format!("{value}\rx"),
        Breakage::NulInValue => req.headers[i].1 = format!("{value}\0x"),
        Breakage::WhitespaceBeforeColon => req.headers[i].0 = format!("{name}{blank}"),
        Breakage::ObsFold => req.headers[i].1 = format!("{value}\r\n{blank}folded"),
        Breakage::SeparatorInName => req.headers[i].0 = format!("{name}(x)"),
        Breakage::BareCrLineEnd => {
            let raw = req.to_bytes();
            let needle = format!("{name}: {value}\r\n");
            let at = find(&raw, needle.as_bytes()).expect("header present") + needle.len() - 1;
            let mut raw = raw;
            raw.remove(at);
            return raw;
        }
    }
    req.to_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn status_of(result: &Result<Option<(crier_core::http::RequestHead, usize)>, HttpError>) -> u16 {
    match result {
        Err(e) => e.status(),
        Ok(_) => 0,
    }
}

proptest! {
    /// Arbitrary bytes never panic the parser; it waits, parses within the input, or refuses
    /// with one of the statuses a head can get.
    #[test]
    fn parser_takes_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        for limits in [Limits::default(), small_limits()] {
            match parse_head(&raw, &limits) {
                Ok(None) => {}
                Ok(Some((_, used))) => prop_assert!(used <= raw.len()),
                Err(e) => prop_assert!(HEAD_STATUSES.contains(&e.status()), "{e:?}"),
            }
        }
    }

    /// Bytes that look like a request (a valid start, then noise) reach deeper parser states.
    #[test]
    fn parser_takes_noise_after_a_valid_start(
        req in request(),
        cut in any::<prop::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut raw = req.to_bytes();
        raw.truncate(cut.index(raw.len()));
        raw.extend(noise);
        match parse_head(&raw, &small_limits()) {
            Ok(None) => {}
            Ok(Some((_, used))) => prop_assert!(used <= raw.len()),
            Err(e) => prop_assert!(HEAD_STATUSES.contains(&e.status()), "{e:?}"),
        }
    }

    /// A valid request parses to what was sent, consumes exactly its head, and every strict
    /// prefix waits for more (no decision is made on a partial head).
    #[test]
    fn valid_requests_round_trip(req in request(), next in "[A-Z]{0,8}") {
        let head_bytes = req.to_bytes();
        let mut raw = head_bytes.clone();
        raw.extend(next.as_bytes());
        let (head, used) = parse_head(&raw, &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
            .ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(used, head_bytes.len());
        prop_assert_eq!(&head.method, &req.method);
        prop_assert_eq!(&head.path, &req.path);
        prop_assert_eq!(&head.query, &req.query.clone().unwrap_or_default());
        prop_assert_eq!(head.version, Version::Http11);
        prop_assert_eq!(head.body, BodyKind::Empty);
        prop_assert!(head.keep_alive);
        let expected: Vec<(String, Vec<u8>)> = std::iter::once(("host".to_string(), b"example.com".to_vec()))
            .chain(req.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes())))
            .collect();
        prop_assert_eq!(head.headers, expected);
        for end in 0..head_bytes.len() {
            prop_assert_eq!(parse_head(&head_bytes[..end], &Limits::default()), Ok(None), "prefix {}", end);
        }
    }

    /// Each way of breaking a field line is 400, wherever it is and whatever surrounds it.
    #[test]
    fn broken_field_lines_are_400(
        req in request(),
        how in breakage(),
        at in any::<prop::sample::Index>(),
        tab in any::<bool>(),
    ) {
        let raw = broken(&req, how, at, tab);
        let result = parse_head(&raw, &Limits::default());
        prop_assert_eq!(status_of(&result), 400, "{:?}", String::from_utf8_lossy(&raw));
    }

    /// Content-Length with Transfer-Encoding is refused in any order, case and spacing.
    #[test]
    fn content_length_with_transfer_encoding_is_400(
        req in request(),
        te_first in any::<bool>(),
        upper in any::<bool>(),
        length in 0u64..100_000,
        ows in "[ \t]{0,2}",
    ) {
        let mut req = req;
        req.eol = "\r\n";
        let (cl, te) = if upper {
            ("CONTENT-LENGTH", "TRANSFER-ENCODING")
        } else {
            ("content-length", "Transfer-Encoding")
        };
        let framing = [
            (cl.to_string(), format!("{ows}{length}{ows}").trim_start().to_string()),
            (te.to_string(), "chunked".to_string()),
        ];
        let order: Vec<_> = if te_first { framing.iter().rev().cloned().collect() } else { framing.to_vec() };
        req.headers.splice(0..0, order);
        let result = parse_head(&req.to_bytes(), &Limits::default());
        prop_assert_eq!(status_of(&result), 400);
    }

    /// Two different Content-Length values, in one field or two, are refused; equal ones are
    /// one length.
    #[test]
    fn differing_content_lengths_are_400(a in 0u64..10_000, b in 0u64..10_000, one_field in any::<bool>()) {
        let fields = if one_field {
            format!("Content-Length: {a}, {b}\r\n")
        } else {
            format!("Content-Length: {a}\r\nContent-Length: {b}\r\n")
        };
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let result = parse_head(raw.as_bytes(), &Limits::default());
        if a == b {
            let expected = if a == 0 { BodyKind::Empty } else { BodyKind::Length(a) };
            prop_assert_eq!(result.map(|h| h.map(|(h, _)| h.body)), Ok(Some(expected)));
        } else {
            prop_assert_eq!(status_of(&result), 400);
        }
    }

    /// Any transfer coding list that does not end in exactly one `chunked` is refused: 501 for
    /// a coding Crier does not implement, 400 when chunked is not last or repeated.
    #[test]
    fn transfer_codings_other_than_chunked_are_refused(
        codings in proptest::collection::vec(prop_oneof![
            Just("chunked".to_string()),
            Just("gzip".to_string()),
            Just("identity".to_string()),
            "[a-z]{1,8}",
        ], 1..4),
    ) {
        let value = codings.join(", ");
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {value}\r\n\r\n");
        let result = parse_head(raw.as_bytes(), &Limits::default());
        if codings == ["chunked"] {
            prop_assert_eq!(result.map(|h| h.map(|(h, _)| h.body)), Ok(Some(BodyKind::Chunked)));
        } else {
            let status = status_of(&result);
            prop_assert!(status == 400 || status == 501, "{value}: {status}");
        }
    }
}

// ---- request targets and Host (RFC 9112 section 3.2) ---------------------------------------

/// `uri-host`: a reg-name (which covers IPv4 addresses) or an IP literal in brackets.
fn uri_host() -> impl Strategy<Value = String> {
    prop_oneof![
        "([A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2}){0,16}",
        "\\[[0-9A-Fa-f:.]{1,20}\\]",
    ]
}

/// `uri-host [ ":" port ]`, with a port a TCP port can be, or empty (the default one).
fn host_value() -> impl Strategy<Value = String> {
    (
        uri_host(),
        proptest::option::of(prop_oneof![
            Just(String::new()),
            (0u32..=65_535).prop_map(|p| p.to_string())
        ]),
    )
        .prop_map(|(host, port)| match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
}

/// A port that is not `*DIGIT` within 16 bits.
fn bad_port() -> impl Strategy<Value = String> {
    prop_oneof![
        (65_536u64..10_000_000).prop_map(|p| p.to_string()),
        "[0-9]{0,3}[-a-z:+][0-9a-z]{0,3}",
    ]
}

proptest! {
    /// Every `uri-host [ ":" port ]` is a valid Host; the same with a bad port is 400.
    #[test]
    fn host_values_follow_the_grammar(host in host_value(), name in uri_host(), port in bad_port()) {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let head = parse_head(raw.as_bytes(), &Limits::default());
        prop_assert!(matches!(head, Ok(Some(_))), "{host}: {head:?}");
        let raw = format!("GET / HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n");
        let result = parse_head(raw.as_bytes(), &Limits::default());
        prop_assert_eq!(status_of(&result), 400, "{}:{}", name, port);
    }

    /// An absolute-form target keeps its path and query, and its authority is the Host the
    /// request is read with, whatever Host was sent (RFC 9112 section 3.2.2).
    #[test]
    fn absolute_form_authority_wins_over_host(req in request(), authority in host_value(), sent_host in host_value()) {
        prop_assume!(!authority.is_empty() && !authority.starts_with(':'));
        let mut raw = req.to_bytes();
        let origin = format!("{} ", req.method);
        let at = origin.len();
        raw.splice(at..at, format!("http://{authority}").into_bytes());
        let raw = String::from_utf8(raw).unwrap().replacen("Host: example.com", &format!("Host: {sent_host}"), 1);
        let (head, _) = parse_head(raw.as_bytes(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e:?}: {raw:?}")))?
            .ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(&head.path, &req.path);
        prop_assert_eq!(&head.query, &req.query.clone().unwrap_or_default());
        prop_assert_eq!(head.header("host"), Some(authority.as_bytes()));
        prop_assert_eq!(head.headers.iter().filter(|(n, _)| n == "host").count(), 1);
    }

    /// The asterisk-form is OPTIONS's alone (RFC 9112 section 3.2.4).
    #[test]
    fn asterisk_form_needs_options(method in token()) {
        let raw = format!("{method} * HTTP/1.1\r\nHost: a\r\n\r\n");
        let result = parse_head(raw.as_bytes(), &Limits::default());
        if method == "OPTIONS" {
            prop_assert!(matches!(result, Ok(Some((ref h, _))) if h.path == "*"));
        } else {
            prop_assert_eq!(status_of(&result), 400, "{}", method);
        }
    }
}

// ---- request bodies --------------------------------------------------------------------------

/// Feeds `wire` to a decoder in pieces cut at `cuts`, the way the connection task does: bytes
/// pile up in a buffer and the decoder consumes what it can from its front. Returns the body,
/// whether it is done, and the bytes left over.
fn feed(
    decoder: &mut BodyDecoder,
    wire: &[u8],
    cuts: &[prop::sample::Index],
) -> Result<(Vec<u8>, bool, Vec<u8>), HttpError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut pending = Vec::new();
    let mut body = Vec::new();
    let mut from = 0;
    for to in points {
        pending.extend_from_slice(&wire[from..to]);
        from = to;
        if decoder.is_done() {
            continue;
        }
        let used = decoder.decode(&pending, &mut body)?;
        assert!(used <= pending.len());
        pending.drain(..used);
    }
    Ok((body, decoder.is_done(), pending))
}

#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    extension: Option<String>,
    upper_hex: bool,
    leading_zeros: usize,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    (
        proptest::collection::vec(any::<u8>(), 1..200),
        proptest::option::of(r#";[a-z]{1,6}(=([a-z0-9]{1,6}|"[ a-z]{0,6}"))?"#),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(data, extension, upper_hex, leading_zeros)| Chunk {
            data,
            extension,
            upper_hex,
            leading_zeros,
        })
}

fn encode_chunked(chunks: &[Chunk], trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let size = if c.upper_hex {
            format!("{:X}", c.data.len())
        } else {
            format!("{:x}", c.data.len())
        };
        out.extend("0".repeat(c.leading_zeros).bytes());
        out.extend(size.bytes());
        if let Some(ext) = &c.extension {
            out.extend(ext.bytes());
        }
        out.extend(b"\r\n");
        out.extend(&c.data);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\n");
    for (name, value) in trailers {
        out.extend(format!("{name}: {value}\r\n").bytes());
    }
    out.extend(b"\r\n");
    out
}

proptest! {
    /// A chunked body, with extensions, leading zeros and trailers, decodes to its data
    /// however the bytes are cut, and the next request's bytes are left alone.
    #[test]
    fn chunked_bodies_round_trip(
        chunks in proptest::collection::vec(chunk(), 0..8),
        trailers in proptest::collection::vec((token(), field_value()), 0..3),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        next in "(GET / HTTP/1.1\r\n)?",
    ) {
        let mut wire = encode_chunked(&chunks, &trailers);
        let body_len = wire.len();
        wire.extend(next.as_bytes());
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1 << 20).unwrap();
        let (body, done, left) = feed(&mut decoder, &wire, &cuts)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        prop_assert_eq!(body, expected);
        prop_assert!(done);
        prop_assert_eq!(&left[..], &wire[body_len..]);
    }

    /// Content-Length bodies stop at their length however the bytes are cut.
    #[test]
    fn sized_bodies_round_trip(
        data in proptest::collection::vec(any::<u8>(), 1..2000),
        next in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut wire = data.clone();
        wire.extend(&next);
        let mut decoder = BodyDecoder::new(BodyKind::Length(data.len() as u64), 4096).unwrap();
        let (body, done, left) = feed(&mut decoder, &wire, &cuts).unwrap();
        prop_assert_eq!(body, data);
        prop_assert!(done);
        prop_assert_eq!(left, next);
    }

    /// Arbitrary bytes never panic the chunked decoder, never yield more body than the limit,
    /// and a refusal is 400, 413 or 431.
    #[test]
    fn chunked_decoder_takes_any_bytes(
        wire in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 64).unwrap();
        match feed(&mut decoder, &wire, &cuts) {
            Ok((body, _, _)) => prop_assert!(body.len() <= 64),
            Err(e) => prop_assert!(BODY_STATUSES.contains(&e.status()), "{e:?}"),
        }
    }

    /// Chunk-shaped noise (hex digits, CRLFs, semicolons) reaches the decoder's edge cases
    /// more often than uniform bytes do.
    #[test]
    fn chunked_decoder_takes_chunk_shaped_noise(
        wire in "([0-9a-fA-F]{1,4}|\r\n|\r|\n|;|=|x|0|\t| ){0,40}",
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 256).unwrap();
        match feed(&mut decoder, wire.as_bytes(), &cuts) {
            Ok((body, _, _)) => prop_assert!(body.len() <= 256),
            Err(e) => prop_assert!(BODY_STATUSES.contains(&e.status()), "{e:?}"),
        }
    }

    /// A chunk size too large for 64 bits is 400, never a wrapped small size.
    #[test]
    fn overflowing_chunk_sizes_are_400(size in "[1-9a-fA-F][0-9a-fA-F]{16,40}") {
        let wire = format!("{size}\r\nabc\r\n0\r\n\r\n");
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX).unwrap();
        let result = decoder.decode(wire.as_bytes(), &mut Vec::new());
        prop_assert_eq!(result.map_err(|e| e.status()), Err(400));
    }

    /// A chunk size followed by anything but an extension or its CRLF is 400.
    #[test]
    fn junk_after_chunk_size_is_400(size in 1u32..0xffff, junk in "[g-zG-Z:,/ x\"]{1,4}") {
        let wire = format!("{size:x}{junk}\r\n");
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, u64::MAX).unwrap();
        let result = decoder.decode(wire.as_bytes(), &mut Vec::new());
        prop_assert_eq!(result.map_err(|e| e.status()), Err(400));
    }

    /// A chunked body larger than the limit is 413, whether one chunk or many pass it.
    #[test]
    fn chunked_bodies_over_the_limit_are_413(
        chunks in proptest::collection::vec(chunk(), 1..8),
        limit in 0u64..400,
    ) {
        let wire = encode_chunked(&chunks, &[]);
        let total: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, limit).unwrap();
        let result = feed(&mut decoder, &wire, &[]);
        if total > limit {
            prop_assert_eq!(result.map(|_| ()).map_err(|e| e.status()), Err(413));
        } else {
            prop_assert!(result.is_ok());
        }
    }
}

// ---- heads arriving in pieces --------------------------------------------------------------

/// What a parse decided: a head and the bytes it took, or a refusal.
type HeadDecision = Result<(crier_core::http::RequestHead, usize), HttpError>;

/// Feeds `raw` in pieces cut at `cuts`, parsing only when [`HeadProgress`] says so, as the
/// connection task does. Returns the first decision (a head or a refusal), or `None` if the
/// input ran out first, with the most bytes that were ever left undecided.
fn feed_head(
    raw: &[u8],
    cuts: &[prop::sample::Index],
    limits: &Limits,
) -> (Option<HeadDecision>, usize) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(raw.len() + 1)).collect();
    points.push(raw.len());
    points.sort_unstable();
    let mut progress = HeadProgress::default();
    let mut undecided = 0;
    for end in points {
        let buf = &raw[..end];
        if buf.is_empty() || !progress.worth_parsing(buf, limits) {
            undecided = undecided.max(end);
            continue;
        }
        match parse_head(buf, limits) {
            Ok(None) => undecided = undecided.max(end),
            Ok(Some(head)) => return (Some(Ok(head)), undecided),
            Err(e) => return (Some(Err(e)), undecided),
        }
    }
    (None, undecided)
}

proptest! {
    /// Parsing only when a line ends or a limit is passed still finds every valid head as
    /// soon as its last byte arrives, however the bytes are cut.
    #[test]
    fn gated_parsing_finds_every_head(
        req in request(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let raw = req.to_bytes();
        let (decision, _) = feed_head(&raw, &cuts, &Limits::default());
        let (head, used) = decision
            .ok_or_else(|| TestCaseError::fail("never parsed"))?
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(used, raw.len());
        prop_assert_eq!(Some(head), parse_head(&raw, &Limits::default()).unwrap().map(|(h, _)| h));
    }

    /// Gated parsing never lets a head grow much past the limits undecided: a client cannot
    /// make the buffer grow by avoiding line ends.
    #[test]
    fn gated_parsing_bounds_the_buffer(
        raw in proptest::collection::vec(
            prop_oneof![8 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')],
            0..800,
        ),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let limits = small_limits();
        let (_, undecided) = feed_head(&raw, &cuts, &limits);
        // Empty lines skipped, the request line with its CRLF, the field lines, the final CRLF.
        let bound = 64 + limits.max_request_line + 2 + limits.max_header_bytes + 2;
        prop_assert!(undecided <= bound, "{} undecided bytes", undecided);
    }
}
