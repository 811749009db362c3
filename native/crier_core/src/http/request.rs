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

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and within limits, or the head and the
/// number of bytes it took. Empty lines before the request line are skipped, as RFC 9112
/// section 2.2 allows.
///
/// # Errors
///
/// The [`HttpError`] that the request is refused with.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let skipped = leading_empty_lines(buf);
    let buf = &buf[skipped..];
    check_request_line_length(buf, limits)?;

    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_request_line + limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(e) => return Err(HttpError::BadRequest(parse_error_reason(e))),
    };
    if consumed > limits.max_request_line + limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let head = build_head(&req)?;
    Ok(Some((head, skipped + consumed)))
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

fn check_request_line_length(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    let window = &buf[..buf.len().min(limits.max_request_line + 1)];
    match window.iter().position(|&b| b == b'\n') {
        Some(_) => Ok(()),
        None if window.len() > limits.max_request_line => Err(HttpError::UriTooLong),
        None => Ok(()),
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
    let (path, query) = split_target(target)?;

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut framing = Framing::default();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        framing.observe(&name, h.value)?;
        headers.push((name, h.value.to_vec()));
    }
    let body = framing.body_kind()?;
    let keep_alive = match version {
        Version::Http11 => !framing.connection_close,
        Version::Http10 => framing.connection_keep_alive && !framing.connection_close,
    };
    if version == Version::Http11 && !framing.has_host {
        return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
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
    })
}

/// Splits an origin-form or absolute-form target into path and query (RFC 9112 section 3.2).
fn split_target(target: &str) -> Result<(String, String), HttpError> {
    let origin = if target.starts_with('/') {
        target
    } else if target == "*" {
        "*"
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |at| &rest[at..])
    } else {
        return Err(HttpError::BadRequest("invalid request target"));
    };
    let origin = origin.split('#').next().unwrap_or(origin);
    Ok(match origin.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (origin.to_string(), String::new()),
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
    }
}
