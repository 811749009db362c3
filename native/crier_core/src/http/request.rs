//! Request heads: httparse does the tokenizing, this module applies RFC 9112's framing rules
//! and Crier's limits.

use super::HttpError;
use crate::config::Limits;

/// The protocol version of a request; it decides framing and connection reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked encoding, close-delimited responses, no keep-alive by default.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2 (one stream of a connection, [`crate::h2`]): bodies end with the stream, as
    /// close-delimited ones end with the connection, so no chunked coding.
    Http2,
}

/// How the request's body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Path part of the target, before any `?`.
    pub path: String,
    /// Query part of the target, after the first `?`, without it; empty if none.
    pub query: String,
    /// Protocol version.
    pub version: Version,
    /// Header fields in order, names lowercased (as Plug expects), values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// Body framing.
    pub body: BodyKind,
    /// The client sent `Expect: 100-continue` and waits for a 100 before its body.
    pub expect_continue: bool,
    /// What the connection's TLS handshake agreed, for a request over TLS. Carried by the
    /// head, which is dropped once reported, so no connection holds room for it.
    pub tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
}

impl RequestHead {
    /// The first value of header `name` (lowercase), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether this is a HEAD request, whose response never carries a body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Most bytes of empty lines skipped before a request line. RFC 9112 section 2.2 asks servers
/// to ignore at least one (old clients send a CRLF after a POST body); more is not a client.
const MAX_LEADING_EMPTY_BYTES: usize = 64;

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and within limits, or the head and the
/// number of bytes it took. Empty lines before the request line are skipped, as RFC 9112
/// section 2.2 allows.
///
/// The limits count bytes this way: the request line without its line ending against
/// `max_request_line` (414 past it), the field lines with their line endings, without the
/// empty line that ends the head, against `max_header_bytes` (431 past it). An incomplete
/// head is refused as soon as it can no longer fit.
///
/// # Errors
///
/// The [`HttpError`] that the request is refused with.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let skipped = leading_empty_lines(buf);
    if skipped > MAX_LEADING_EMPTY_BYTES {
        return Err(HttpError::BadRequest(
            "too many empty lines before the request line",
        ));
    }
    let buf = &buf[skipped..];
    let line_end = request_line_end(buf, limits)?;

    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // The field lines seen so far, plus at most a CRLF of the final empty line.
            if let Some(line_end) = line_end {
                if buf.len() - line_end > limits.max_header_bytes + 2 {
                    return Err(HttpError::HeadersTooLarge);
                }
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(e) => return Err(HttpError::BadRequest(parse_error_reason(e))),
    };
    let line_end = line_end.ok_or(HttpError::BadRequest("invalid request line"))?;
    let final_empty_line = if buf[..consumed].ends_with(b"\r\n") {
        2
    } else {
        1
    };
    if consumed - line_end - final_empty_line > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let head = build_head(&req)?;
    Ok(Some((head, skipped + consumed)))
}

/// Decides when a head arriving in pieces is worth parsing again, so a client that sends its
/// head a byte at a time costs one parse per line, not one per byte (each parse reads the
/// whole buffer). A parse can only change its answer when a line ends, or when the unfinished
/// line grows past a limit; until then [`parse_head`] would wait again.
#[derive(Debug, Default)]
pub struct HeadProgress {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Where the first line ends (just past its LF), once it has.
    first_line_end: Option<usize>,
}

impl HeadProgress {
    /// Whether `buf`, the same buffer as at the last call plus bytes appended since, should
    /// be parsed now.
    pub fn worth_parsing(&mut self, buf: &[u8], limits: &Limits) -> bool {
        let fresh = &buf[self.scanned.min(buf.len())..];
        let new_line = fresh.iter().position(|&b| b == b'\n');
        if self.first_line_end.is_none() {
            self.first_line_end = new_line.map(|at| self.scanned + at + 1);
        }
        self.scanned = buf.len();
        new_line.is_some()
            || match self.first_line_end {
                None => buf.len() > limits.max_request_line + 1,
                Some(end) => buf.len() - end > limits.max_header_bytes + 2,
            }
    }
}

fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        if buf[at..].starts_with(b"\r\n") {
            at += 2;
        } else if buf[at..].starts_with(b"\n") {
            at += 1;
        } else {
            return at;
        }
    }
}

/// Where the request line ends (just past its LF), once it has; 414 as soon as the line,
/// without its CRLF, is longer than `max_request_line`.
fn request_line_end(buf: &[u8], limits: &Limits) -> Result<Option<usize>, HttpError> {
    let max = limits.max_request_line;
    // Room for the line, its CR and its LF.
    let window = &buf[..buf.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line_len = if lf > 0 && window[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            if line_len > max {
                Err(HttpError::UriTooLong)
            } else {
                Ok(Some(lf + 1))
            }
        }
        None if window.len() > max + 1 => Err(HttpError::UriTooLong),
        None if window.len() == max + 1 && window[max] != b'\r' => Err(HttpError::UriTooLong),
        None => Ok(None),
    }
}

/// httparse reports any request line it cannot read past the target as a version error. A
/// well-formed `HTTP/x.y` that is not 1.0 or 1.1 is 505 (RFC 9112 section 2.3); anything else
/// is a malformed request line, 400.
fn version_error(buf: &[u8]) -> HttpError {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return HttpError::BadRequest("invalid request line");
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HttpError::VersionNotSupported
        }
        _ => HttpError::BadRequest("invalid HTTP version"),
    }
}

fn parse_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::Version => "invalid version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn build_head(req: &httparse::Request<'_, '_>) -> Result<RequestHead, HttpError> {
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::VersionNotSupported),
    };
    let method = req.method.ok_or(HttpError::BadRequest("missing method"))?;
    let target = req.path.ok_or(HttpError::BadRequest("missing target"))?;
    let Target {
        path,
        query,
        authority,
    } = parse_target(method, target)?;

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut framing = Framing::default();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        framing.observe(&name, h.value)?;
        headers.push((name, h.value.to_vec()));
    }
    // RFC 9112 section 6.1: HTTP/1.0 has no transfer codings, so its framing is faulty.
    if version == Version::Http10 && framing.transfer_encoding {
        return Err(HttpError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    let body = framing.body_kind()?;
    let keep_alive = match version {
        // The HTTP/1 parser never yields HTTP/2, which has no connection header.
        Version::Http11 | Version::Http2 => !framing.connection_close,
        Version::Http10 => framing.connection_keep_alive && !framing.connection_close,
    };
    if version == Version::Http11 && !framing.has_host {
        return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
    }
    // RFC 9112 section 3.2.2: the authority of an absolute-form target wins over Host. It
    // replaces the field (as the RFC asks of a proxy), so everything that reads Host agrees.
    if let Some(authority) = authority {
        let authority = authority.as_bytes().to_vec();
        match headers.iter_mut().find(|(name, _)| name == "host") {
            Some((_, value)) => *value = authority,
            None => headers.push(("host".to_string(), authority)),
        }
    }
    Ok(RequestHead {
        method: method.to_string(),
        path,
        query,
        version,
        headers,
        keep_alive,
        body,
        expect_continue: framing.expect_continue && version == Version::Http11,
        tls: None,
    })
}

/// A request-target taken apart.
struct Target<'a> {
    path: String,
    query: String,
    /// The `host[:port]` of an absolute-form target.
    authority: Option<&'a str>,
}

/// Reads the request-target in the forms a server answers (RFC 9112 section 3.2): origin-form
/// (`/path?query`), absolute-form (`http://host:port/path?query`, section 3.2.2) and, for
/// `OPTIONS` only, asterisk-form (`*`, section 3.2.4). Authority-form is CONNECT's, which Crier
/// does not serve. A fragment, which a client should not send, is dropped.
fn parse_target<'a>(method: &str, target: &'a str) -> Result<Target<'a>, HttpError> {
    let (authority, origin) = if target.starts_with('/') {
        (None, target)
    } else if target == "*" {
        if method != "OPTIONS" {
            return Err(HttpError::BadRequest(
                "asterisk-form target without OPTIONS",
            ));
        }
        (None, target)
    } else if let Some(rest) = strip_http_scheme(target) {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // RFC 9110 section 4.2.1 and 4.2.4: an http URI needs a host and has no userinfo.
        if authority.is_empty()
            || authority.starts_with(':')
            || authority.contains('@')
            || !valid_host(authority.as_bytes())
        {
            return Err(HttpError::BadRequest(
                "invalid authority in the request target",
            ));
        }
        (Some(authority), &rest[end..])
    } else {
        return Err(HttpError::BadRequest("invalid request target"));
    };
    let origin = origin.split('#').next().unwrap_or(origin);
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        path: path.to_string(),
        query: query.to_string(),
        authority,
    })
}

/// The rest of `target` after `http://` or `https://`, the scheme in any case (RFC 3986
/// section 3.1).
fn strip_http_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// What the headers say about framing and the connection, checked as they are read.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    has_host: bool,
}

impl Framing {
    fn observe(&mut self, name: &str, value: &[u8]) -> Result<(), HttpError> {
        match name {
            "content-length" => self.observe_content_length(value),
            "transfer-encoding" => self.observe_transfer_encoding(value),
            "connection" => {
                for token in comma_tokens(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.connection_keep_alive = true;
                    }
                }
                Ok(())
            }
            "expect" => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                }
                Ok(())
            }
            "host" => {
                if self.has_host {
                    return Err(HttpError::BadRequest("more than one Host header"));
                }
                if !valid_host(value) {
                    return Err(HttpError::BadRequest("invalid Host"));
                }
                self.has_host = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// RFC 9112 section 6.3: a list of equal lengths counts as one; differing ones, or any
    /// value that is not all digits, make the framing unknowable.
    fn observe_content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        for token in comma_tokens(value) {
            let length =
                parse_decimal(token).ok_or(HttpError::BadRequest("invalid Content-Length"))?;
            match self.content_length {
                Some(seen) if seen != length => {
                    return Err(HttpError::BadRequest("differing Content-Length values"))
                }
                _ => self.content_length = Some(length),
            }
        }
        if self.content_length.is_none() {
            return Err(HttpError::BadRequest("empty Content-Length"));
        }
        Ok(())
    }

    /// Only `chunked`, once and last, is accepted: anything else is a smuggling vector.
    fn observe_transfer_encoding(&mut self, value: &[u8]) -> Result<(), HttpError> {
        for token in comma_tokens(value) {
            if self.chunked {
                return Err(HttpError::BadRequest(
                    "chunked is not the final transfer coding",
                ));
            }
            if token.eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
            } else {
                return Err(HttpError::NotImplemented(
                    "transfer coding other than chunked",
                ));
            }
        }
        self.transfer_encoding = true;
        Ok(())
    }

    fn body_kind(&self) -> Result<BodyKind, HttpError> {
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(HttpError::BadRequest(
                    "Transfer-Encoding with Content-Length",
                ));
            }
            if !self.chunked {
                return Err(HttpError::BadRequest("empty Transfer-Encoding"));
            }
            return Ok(BodyKind::Chunked);
        }
        Ok(match self.content_length {
            None | Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        })
    }
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986 section
/// 3.2.2 and 3.2.3): an IP literal in brackets or a reg-name (IPv4 addresses are reg-names),
/// then an optional port of at most 65535 (`host:` is the default port). Anything else, such
/// as `/`, `@`, whitespace or a second colon, is refused (RFC 9112 section 3.2 asks for 400), so
/// nothing that routes by Host can be fooled by one. Empty is allowed: a target without an
/// authority is sent with an empty Host.
fn valid_host(value: &[u8]) -> bool {
    let (host_ok, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let (address, after) = (&literal[..close], &literal[close + 1..]);
        // IPv6address and IPvFuture use hex digits, `v`, `.` and `:` within this alphabet.
        let address_ok = !address.is_empty()
            && address
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
        match after {
            [] => (address_ok, None),
            [b':', port @ ..] => (address_ok, Some(port)),
            _ => return false,
        }
    } else {
        let (name, port) = match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        };
        (valid_reg_name(name), port)
    };
    host_ok && port.is_none_or(valid_port)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 section 3.2.2).
fn valid_reg_name(name: &[u8]) -> bool {
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        let ok = match b {
            b'%' => matches!(
                (bytes.next(), bytes.next()),
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
            ),
            _ => is_unreserved(b) || is_sub_delim(b),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `port = *DIGIT` (RFC 3986 section 3.2.3), within the 16 bits of a TCP port.
fn valid_port(port: &[u8]) -> bool {
    port.is_empty() || parse_decimal(port).is_some_and(|port| port <= u64::from(u16::MAX))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

fn comma_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Parses 1*DIGIT without sign or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_head(raw, &Limits::default())
    }

    fn head(raw: &[u8]) -> RequestHead {
        parse(raw).unwrap().unwrap().0
    }

    #[test]
    fn parses_a_get_with_query_and_lowercases_names() {
        let raw = b"GET /events/room?x=1&y=2 HTTP/1.1\r\nHost: a\r\nLast-Event-ID: 7\r\n\r\n";
        let (h, used) = parse(raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/events/room");
        assert_eq!(h.query, "x=1&y=2");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.header("last-event-id"), Some(&b"7"[..]));
        assert!(h.keep_alive);
        assert_eq!(h.body, BodyKind::Empty);
    }

    #[test]
    fn partial_head_waits_for_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
    }

    #[test]
    fn request_line_over_the_limit_is_414() {
        let mut raw = b"GET /".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(parse(&raw), Err(HttpError::UriTooLong));
    }

    fn small_limits() -> Limits {
        Limits {
            max_request_line: 32,
            max_header_bytes: 64,
            max_headers: 4,
            ..Limits::default()
        }
    }

    /// A request line of exactly `len` bytes, without its CRLF.
    fn request_line(len: usize) -> Vec<u8> {
        let mut line = b"GET /".to_vec();
        line.resize(len - b" HTTP/1.1".len(), b'a');
        line.extend(b" HTTP/1.1");
        line
    }

    #[test]
    fn request_line_limit_is_exact() {
        let limits = small_limits();
        for (len, ok) in [(32, true), (33, false)] {
            let mut raw = request_line(len);
            raw.extend(b"\r\nHost: a\r\n\r\n");
            let result = parse_head(&raw, &limits);
            assert_eq!(result.is_ok(), ok, "{len}: {result:?}");
            // The same line, incomplete, is refused as soon as it cannot fit.
            let partial = parse_head(&raw[..len + 1], &limits);
            assert_eq!(partial.is_ok(), ok, "{len} partial: {partial:?}");
            if !ok {
                assert_eq!(result, Err(HttpError::UriTooLong));
            }
        }
    }

    #[test]
    fn header_block_limit_is_exact() {
        let limits = small_limits();
        // "Host: a\r\n" is 9 bytes; an X header fills the block to `len`.
        for (len, ok) in [(64, true), (65, false)] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            raw.resize(16 + len - 2, b'v');
            raw.extend(b"\r\n");
            let partial = parse_head(&raw, &limits);
            raw.extend(b"\r\n");
            let result = parse_head(&raw, &limits);
            assert_eq!(result.is_ok(), ok, "{len}: {result:?}");
            assert!(partial.is_ok(), "{len} partial: {partial:?}");
            if !ok {
                assert_eq!(result, Err(HttpError::HeadersTooLarge));
            }
        }
        // With bare LF line endings the same bytes count.
        let mut raw = b"GET / HTTP/1.1\nHost: a\nX: ".to_vec();
        raw.resize(15 + 64 - 1, b'v');
        raw.extend(b"\n\n");
        assert!(parse_head(&raw, &limits).is_ok());
    }

    #[test]
    fn header_count_limit_is_exact() {
        let limits = small_limits();
        for (count, ok) in [(4, true), (5, false)] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 1..count {
                raw.extend(format!("X-{i}: v\r\n").bytes());
            }
            raw.extend(b"\r\n");
            let result = parse_head(&raw, &limits);
            assert_eq!(result.is_ok(), ok, "{count}: {result:?}");
        }
    }

    #[test]
    fn other_versions_are_505_and_malformed_ones_400() {
        for version in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0"] {
            let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()), Err(HttpError::VersionNotSupported));
        }
        for line in [
            "GET / FOO/1.1",
            "GET /a b HTTP/1.1",
            "GET / HTTP/11",
            "GET /",
            "GET / http/1.1",
        ] {
            let raw = format!("{line}\r\nHost: a\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 400, "{line}");
        }
        // The HTTP/2 preface, sent to an HTTP/1.1 port.
        assert_eq!(
            parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Err(HttpError::VersionNotSupported)
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped_up_to_a_point() {
        let (_, used) = parse(b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(used, 3 + 27);
        let flood = b"\r\n".repeat(40);
        assert_eq!(parse(&flood).unwrap_err().status(), 400);
    }

    #[test]
    fn bare_cr_nul_and_bad_names_are_400() {
        for raw in [
            &b"GET / HTTP/1.1\rHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse(raw).unwrap_err().status(),
                400,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn transfer_encoding_in_http10_is_400() {
        let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(raw).unwrap_err().status(), 400);
    }

    #[test]
    fn unknown_transfer_coding_is_501_and_chunked_twice_400() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse(raw).unwrap_err().status(), 501);
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(raw).unwrap_err().status(), 400);
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n";
        assert_eq!(head(raw).body, BodyKind::Chunked);
    }

    #[test]
    fn header_block_over_the_limit_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 30_000));
        assert_eq!(parse(&raw), Err(HttpError::HeadersTooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..101 {
            raw.extend(format!("X-{i}: v\r\n").bytes());
        }
        raw.extend(b"\r\n");
        assert_eq!(parse(&raw), Err(HttpError::HeadersTooLarge));
    }

    #[test]
    fn transfer_encoding_with_content_length_is_rejected() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(raw).unwrap_err().status(), 400);
    }

    #[test]
    fn differing_content_lengths_are_rejected_and_equal_ones_merge() {
        let bad = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(parse(bad).unwrap_err().status(), 400);
        let ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n";
        assert_eq!(head(ok).body, BodyKind::Length(3));
    }

    #[test]
    fn transfer_coding_other_than_chunked_is_rejected() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(parse(raw).is_err());
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(parse(raw).is_err());
    }

    #[test]
    fn whitespace_before_colon_and_obs_fold_are_400() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive_is_asked() {
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn host_must_be_a_host_and_port() {
        for host in [
            "example.com",
            "example.com:8080",
            "[::1]:4000",
            "[v1.fe80::a+en1]",
            "127.0.0.1",
            "b%C3%A4r:65535",
            "banana:",
            "",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse(raw.as_bytes()).is_ok(), "{host}");
        }
        for host in [
            "a b",
            "a/b",
            "user@a",
            "a?b",
            "a#b",
            "a\\b",
            "\"a\"",
            "caf\u{e9}",
            "banana:-1234",
            "banana:65536",
            "a:b:c",
            "[::1",
            "[::1]x",
            "[]",
            "a%zz",
            "a[b]",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 400, "{host}");
        }
    }

    #[test]
    fn http11_without_host_is_400() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn content_length_with_sign_or_overflow_is_400() {
        for cl in ["+3", "-3", "0x3", "99999999999999999999", ""] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 400, "{cl}");
        }
    }

    #[test]
    fn absolute_form_target_keeps_path_and_query() {
        let h = head(b"GET http://example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/a/b", "c=d"));
        let h = head(b"GET http://example.com?c=d#f HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/", "c=d"));
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let h = head(b"GET http://banana:1234/ HTTP/1.1\r\nHost: orange:2345\r\nX: y\r\n\r\n");
        assert_eq!(h.header("host"), Some(&b"banana:1234"[..]));
        assert_eq!(h.headers.len(), 2);
        let h = head(b"GET HTTPS://[::1]/ HTTP/1.0\r\n\r\n");
        assert_eq!(h.header("host"), Some(&b"[::1]"[..]));
        for target in [
            "http://u@a/",
            "http:///",
            "http://:80/",
            "http://a:x/",
            "ftp://a/",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 400, "{target}");
        }
    }

    #[test]
    fn asterisk_form_is_for_options_only() {
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path, "*");
        for method in ["GET", "HEAD", "POST", "options"] {
            let raw = format!("{method} * HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(parse(raw.as_bytes()).unwrap_err().status(), 400, "{method}");
        }
    }
}
