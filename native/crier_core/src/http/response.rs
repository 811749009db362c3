//! Response heads: values from the application are checked, then written with the framing
//! headers the server owns (RFC 9112 section 4 and 6).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::request::{parse_decimal, Version};

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `transfer-encoding: chunked` (HTTP/1.1 streams).
    Chunked,
    /// `content-length: n`.
    Length(u64),
    /// The body ends when the connection closes (HTTP/1.0 streams).
    CloseDelimited,
    /// 1xx, 204 and 304: no body and no length headers.
    NoBody,
}

/// A value from the application that cannot go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResponse(pub String);

impl std::fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidResponse {}

/// Checks a status code: three digits, 100 to 999 (RFC 9110 section 15).
///
/// # Errors
///
/// When the status is outside 100..=999.
pub fn check_status(status: i64) -> Result<u16, InvalidResponse> {
    if (100..=999).contains(&status) {
        Ok(status as u16)
    } else {
        Err(InvalidResponse(format!(
            "status must be an integer in 100..999, got: {status}"
        )))
    }
}

/// Checks one header: the name a non-empty token, the value free of CR, LF and NUL
/// (RFC 9110 section 5.1 and 5.5), which would let a value inject headers or a body.
///
/// # Errors
///
/// Says which header is wrong and why.
pub fn check_header(name: &[u8], value: &[u8]) -> Result<(), InvalidResponse> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(InvalidResponse(format!(
            "invalid header name {:?}: must be a non-empty token (no whitespace, CR, LF, NUL or separators)",
            String::from_utf8_lossy(name)
        )));
    }
    if let Some(bad) = value.iter().find(|&&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(InvalidResponse(format!(
            "invalid value for header {:?}: contains {}",
            String::from_utf8_lossy(name),
            match bad {
                b'\r' => "CR",
                b'\n' => "LF",
                _ => "NUL",
            }
        )));
    }
    Ok(())
}

/// Checks a reason phrase from the application: `*( HTAB / SP / VCHAR / obs-text )` (RFC 9112
/// section 4), so it cannot end the status line or inject a header.
///
/// # Errors
///
/// Says which byte is not allowed.
pub fn check_reason(reason: &[u8]) -> Result<(), InvalidResponse> {
    match reason
        .iter()
        .find(|&&b| !(b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80))
    {
        None => Ok(()),
        Some(bad) => Err(InvalidResponse(format!(
            "invalid reason phrase {:?}: contains byte {bad:#04x} (only tab, space, visible \
             characters and obs-text are allowed)",
            String::from_utf8_lossy(reason)
        ))),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a status forbids a body (RFC 9110 sections 15.2, 15.3.5 and 15.4.5).
pub fn status_has_no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Checks a response head from the application: its status ([`check_status`]), its own
/// reason phrase if it gives one ([`check_reason`]) and every header ([`check_header`]).
///
/// # Errors
///
/// The first value that cannot go on the wire, and why.
pub fn check_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: i64,
    reason: Option<&[u8]>,
    headers: &[(N, V)],
) -> Result<u16, InvalidResponse> {
    let status = check_status(status)?;
    if let Some(reason) = reason {
        check_reason(reason)?;
    }
    for (name, value) in headers {
        check_header(name.as_ref(), value.as_ref())?;
    }
    Ok(status)
}

/// Checks the status of an interim response: 1xx, but not 101, which only an upgrade may
/// send (RFC 9110 section 15.2).
///
/// # Errors
///
/// Any other status.
pub fn check_informational(status: i64) -> Result<u16, InvalidResponse> {
    if (100..200).contains(&status) && status != 101 {
        Ok(status as u16)
    } else {
        Err(InvalidResponse(format!(
            "inform needs an informational status (100, 102..199), got: {status}"
        )))
    }
}

/// How a streamed response (`send_chunked`) is framed: no body for HEAD and for the statuses
/// that forbid one, chunked on HTTP/1.1, delimited by the close on HTTP/1.0, which has no
/// chunked coding (RFC 9112 sections 6.3 and 7).
pub fn stream_framing(version: Version, is_head: bool, status: u16) -> Framing {
    if is_head || status_has_no_body(status) {
        Framing::NoBody
    } else if version == Version::Http11 {
        Framing::Chunked
    } else {
        Framing::CloseDelimited
    }
}

/// How a response announced as `length` bytes is framed (`send_head`; `send_resp` uses
/// [`complete_framing`]). A HEAD answer keeps the length a GET would get (RFC 9110 section
/// 9.3.2) and sends no body.
pub fn sized_framing(status: u16, length: u64) -> Framing {
    if status_has_no_body(status) {
        Framing::NoBody
    } else {
        Framing::Length(length)
    }
}

/// Whether body bytes follow a head framed with `framing` on the wire.
pub fn body_follows(is_head: bool, framing: Framing) -> bool {
    !is_head && framing != Framing::NoBody
}

/// Whether the connection may carry another request after a response framed with `framing`
/// (RFC 9112 section 9.3): the request allowed it, the body does not end with the close, the
/// application's headers do not ask to close, and no request body is held back. A body the
/// client holds back for a `100 Continue` that never came makes the next request's start
/// unknowable: the client may send the body or not (RFC 9110 section 10.1.1).
pub fn keeps_alive<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    request_keep_alive: bool,
    framing: Framing,
    headers: &[(N, V)],
    body_held_back: bool,
) -> bool {
    request_keep_alive
        && framing != Framing::CloseDelimited
        && !body_held_back
        && !asks_close(headers)
}

/// The head of an interim (1xx) response, or `None` on HTTP/1.0, which has no interim
/// responses (RFC 9110 section 15.2). On HTTP/2 the head becomes a HEADERS frame of its
/// own. The status line carries `reason` when given, else Crier's phrase. The reason and
/// headers must have passed [`check_head`].
pub fn informational_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    version: Version,
    status: u16,
    reason: Option<&[u8]>,
    headers: &[(N, V)],
) -> Option<Bytes> {
    if version == Version::Http10 {
        return None;
    }
    let mut head = BytesMut::with_capacity(64);
    head.put_slice(status_line_start(version));
    head.put_slice(status.to_string().as_bytes());
    head.put_u8(b' ');
    head.put_slice(reason.unwrap_or(reason_phrase(status).as_bytes()));
    head.put_slice(b"\r\n");
    for (name, value) in headers {
        head.put_slice(name.as_ref());
        head.put_slice(b": ");
        head.put_slice(value.as_ref());
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"\r\n");
    Some(head.freeze())
}

/// The framing of a complete response with a `body_len`-byte body (RFC 9110 section 8.6):
/// none for 1xx, 204 and 304; the body's length otherwise. The response to HEAD has no body,
/// so an empty one says nothing of the GET's size: the application's `content-length` is kept
/// (it knows the size of the GET response, as under Bandit), or none is sent, since a
/// `content-length: 0` would be a wrong size for the GET.
pub fn complete_framing<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: u16,
    is_head: bool,
    headers: &[(N, V)],
    body_len: usize,
) -> Framing {
    if status_has_no_body(status) {
        Framing::NoBody
    } else if is_head && body_len == 0 {
        headers
            .iter()
            .find(|(name, _)| name.as_ref().eq_ignore_ascii_case(b"content-length"))
            .and_then(|(_, value)| parse_decimal(value.as_ref().trim_ascii()))
            .map_or(Framing::NoBody, Framing::Length)
    } else {
        Framing::Length(body_len as u64)
    }
}

/// The framing headers the server writes itself; the application's copies are dropped.
fn is_framing_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// Whether the application's headers close the connection (`connection: close`, RFC 9112
/// section 9.6); the server then does close it after the response.
pub fn asks_close<N: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.as_ref().eq_ignore_ascii_case(b"connection")
            && value
                .as_ref()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The version and space a status line starts with.
fn status_line_start(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"HTTP/1.0 ",
        Version::Http11 => b"HTTP/1.1 ",
        Version::Http2 => b"HTTP/2 ",
    }
}

/// Encodes a response head. The status line carries `reason`, which must have passed
/// [`check_reason`], or else [`reason_phrase`]'s. Headers must have passed [`check_header`];
/// they are written as given, case preserved, except framing headers, which follow `framing`. A `date` header is
/// added unless present, `connection: close` when the connection ends after this response, and
/// `connection: keep-alive` when an HTTP/1.0 connection does not (RFC 9112 section 9.3:
/// without it an HTTP/1.0 client takes the connection as closing). The server's own
/// `connection` header replaces the application's in both cases.
pub fn encode_head<N, V>(
    version: Version,
    status: u16,
    reason: Option<&[u8]>,
    headers: &[(N, V)],
    framing: Framing,
    keep_alive: bool,
) -> Bytes
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(status_line_start(version));
    out.put_slice(status.to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason.unwrap_or(reason_phrase(status).as_bytes()));
    out.put_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if is_framing_header(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"connection") && (!keep_alive || version == Version::Http10) {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    if !has_date {
        out.put_slice(b"date: ");
        with_http_date(|date| out.put_slice(date.as_bytes()));
        out.put_slice(b"\r\n");
    }
    match framing {
        Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(n.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        Framing::CloseDelimited | Framing::NoBody => {}
    }
    if !keep_alive {
        out.put_slice(b"connection: close\r\n");
    } else if version == Version::Http10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// A complete error response for a refused request; the connection closes after it.
pub fn error_response(status: u16) -> Bytes {
    let body = reason_phrase(status);
    let mut out = BytesMut::from(
        &encode_head(
            Version::Http11,
            status,
            None,
            &[("content-type", "text/plain")],
            Framing::Length(body.len() as u64),
            false,
        )[..],
    );
    out.put_slice(body.as_bytes());
    out.freeze()
}

/// The interim `100 Continue` sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Calls `f` with the current IMF-fixdate, formatted at most once a second per thread.
fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second || cache.1.is_empty() {
            *cache = (second, httpdate::fmt_http_date(now));
        }
        f(&cache.1)
    })
}

/// The reason phrase of every status in the IANA HTTP Status Code Registry (RFC 9110 section
/// 15 and the RFCs it lists), plus 418 from RFC 2324; others get an empty one, which RFC 9112
/// section 4 allows. 306 and 418 are "(Unused)" in the registry: 306 has no phrase left,
/// 418 keeps the one every HTTP library knows.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_text(bytes: &Bytes) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn chunked_head_keeps_header_case_and_adds_date_and_framing() {
        let head = encode_head(
            Version::Http11,
            200,
            None,
            &[("Content-Type", "text/event-stream"), ("date", "x")],
            Framing::Chunked,
            true,
        );
        assert_eq!(
            head_text(&head),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ndate: x\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn application_framing_headers_are_replaced() {
        let head = encode_head(
            Version::Http11,
            404,
            None,
            &[
                ("content-length", "999"),
                ("Transfer-Encoding", "gzip"),
                ("date", "d"),
            ],
            Framing::Length(3),
            false,
        );
        assert_eq!(
            head_text(&head),
            "HTTP/1.1 404 Not Found\r\ndate: d\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn date_is_an_imf_fixdate() {
        let head = head_text(&encode_head::<&str, &str>(
            Version::Http10,
            799,
            None,
            &[],
            Framing::NoBody,
            true,
        ));
        let date = head.lines().nth(1).unwrap().strip_prefix("date: ").unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(head.starts_with("HTTP/1.0 799 \r\n"));
    }

    #[test]
    fn http10_keep_alive_is_said_and_close_replaces_the_application_header() {
        let head = head_text(&encode_head(
            Version::Http10,
            200,
            None,
            &[("date", "d"), ("Connection", "Keep-Alive")],
            Framing::Length(0),
            true,
        ));
        assert_eq!(
            head,
            "HTTP/1.0 200 OK\r\ndate: d\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
        let head = head_text(&encode_head(
            Version::Http11,
            200,
            None,
            &[("date", "d"), ("Connection", "close")],
            Framing::Length(0),
            false,
        ));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ndate: d\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn head_keeps_the_application_length_of_an_empty_body() {
        let length = [("Content-Length", " 10001 ")];
        assert_eq!(
            complete_framing(200, true, &length, 0),
            Framing::Length(10001)
        );
        assert_eq!(complete_framing(200, true, &length, 5), Framing::Length(5));
        assert_eq!(complete_framing(200, false, &length, 0), Framing::Length(0));
        assert_eq!(
            complete_framing::<&str, &str>(200, true, &[], 0),
            Framing::NoBody
        );
        assert_eq!(
            complete_framing(200, true, &[("content-length", "x")], 0),
            Framing::NoBody
        );
        assert_eq!(complete_framing(204, true, &length, 0), Framing::NoBody);
        assert_eq!(complete_framing(304, false, &length, 4), Framing::NoBody);
    }

    #[test]
    fn asks_close_finds_the_token() {
        assert!(asks_close(&[("Connection", "Close")]));
        assert!(asks_close(&[("x", "y"), ("connection", "upgrade, close")]));
        assert!(!asks_close(&[("connection", "keep-alive")]));
        assert!(!asks_close(&[("x-connection", "close")]));
    }

    #[test]
    fn every_registered_status_has_its_phrase() {
        let registered = [
            100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302,
            303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411,
            412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451,
            500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
        ];
        for status in registered {
            assert!(!reason_phrase(status).is_empty(), "{status}");
        }
        assert_eq!(reason_phrase(418), "I'm a teapot");
        assert_eq!(reason_phrase(799), "");
    }

    #[test]
    fn a_given_reason_replaces_the_table() {
        let head = head_text(&encode_head(
            Version::Http11,
            413,
            Some(b"Request Entity Too Large"),
            &[("date", "d")],
            Framing::Length(0),
            true,
        ));
        assert_eq!(
            head,
            "HTTP/1.1 413 Request Entity Too Large\r\ndate: d\r\ncontent-length: 0\r\n\r\n"
        );
        assert!(check_reason(b"Token Expired\t\xc3\xa9").is_ok());
        assert!(check_reason(b"").is_ok());
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"a\x7fb"] {
            assert!(check_reason(bad).is_err());
        }
    }

    #[test]
    fn status_and_header_checks() {
        assert!(check_status(99).is_err());
        assert!(check_status(1000).is_err());
        assert_eq!(check_status(204), Ok(204));
        assert!(check_header(b"x-ok", b"fine value").is_ok());
        assert!(check_header(b"bad name", b"v").is_err());
        assert!(check_header(b"", b"v").is_err());
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b"] {
            assert!(check_header(b"x", bad).is_err());
        }
    }

    #[test]
    fn streams_are_framed_by_version_method_and_status() {
        use Version::{Http10, Http11};
        assert_eq!(stream_framing(Http11, false, 200), Framing::Chunked);
        assert_eq!(stream_framing(Http10, false, 200), Framing::CloseDelimited);
        for (version, is_head, status) in [
            (Http11, true, 200),
            (Http10, true, 200),
            (Http11, false, 204),
            (Http11, false, 304),
            (Http11, false, 103),
        ] {
            assert_eq!(stream_framing(version, is_head, status), Framing::NoBody);
        }
        assert_eq!(sized_framing(200, 7), Framing::Length(7));
        assert_eq!(sized_framing(204, 7), Framing::NoBody);
        assert!(body_follows(false, Framing::Length(7)));
        assert!(!body_follows(true, Framing::Length(7)));
        assert!(!body_follows(false, Framing::NoBody));
    }

    #[test]
    fn keep_alive_rules() {
        let none: &[(&str, &str)] = &[];
        assert!(keeps_alive(true, Framing::Chunked, none, false));
        assert!(!keeps_alive(false, Framing::Chunked, none, false));
        assert!(!keeps_alive(true, Framing::CloseDelimited, none, false));
        assert!(!keeps_alive(
            true,
            Framing::Length(1),
            &[("Connection", "close")],
            false
        ));
        assert!(!keeps_alive(true, Framing::NoBody, none, true));
    }

    #[test]
    fn informational_heads_to_the_byte() {
        let head = informational_head(
            Version::Http11,
            103,
            None,
            &[("link", "</a.css>; rel=preload")],
        );
        assert_eq!(
            head_text(&head.unwrap()),
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
        let none: &[(&str, &str)] = &[];
        assert_eq!(
            &informational_head(Version::Http11, 100, None, none).unwrap()[..],
            CONTINUE
        );
        assert!(informational_head(Version::Http10, 103, None, none).is_none());
        let h2 = informational_head(Version::Http2, 103, None, none).unwrap();
        assert_eq!(&h2[..], b"HTTP/2 103 Early Hints\r\n\r\n");
        let own = informational_head(Version::Http11, 103, Some(&b"Hints"[..]), none).unwrap();
        assert_eq!(&own[..], b"HTTP/1.1 103 Hints\r\n\r\n");
        assert_eq!(check_informational(103), Ok(103));
        for bad in [99, 101, 200] {
            assert!(check_informational(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_head_is_checked_status_first_then_each_header() {
        assert_eq!(check_head(200, None, &[("x", "y")]), Ok(200));
        assert!(check_head(42, None, &[("x", "y")]).is_err());
        assert!(check_head(200, Some(&b"Fine\r\nx: y"[..]), &[("x", "y")]).is_err());
        assert!(check_head(200, None, &[("x", "y\r\nz: 1")]).is_err());
    }
}
