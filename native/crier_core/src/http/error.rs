//! Why a request was refused, and the status that says so.

use std::fmt;

/// A request the server refuses before any handler sees it.
///
/// Each variant maps to one status code; the connection is closed after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header, or body framing (400).
    BadRequest(&'static str),
    /// The request line is longer than the limit (414).
    UriTooLong,
    /// The header block is larger than the limit, or has too many headers (431).
    HeadersTooLarge,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// The head did not arrive before the header deadline (408).
    Timeout,
    /// A version other than HTTP/1.0 or HTTP/1.1 (505).
    VersionNotSupported,
    /// A Transfer-Encoding other than `chunked` (501).
    NotImplemented(&'static str),
}

impl HttpError {
    /// The status code this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::UriTooLong => 414,
            HttpError::HeadersTooLarge => 431,
            HttpError::PayloadTooLarge => 413,
            HttpError::Timeout => 408,
            HttpError::VersionNotSupported => 505,
            HttpError::NotImplemented(_) => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::UriTooLong => f.write_str("request line too long"),
            HttpError::HeadersTooLarge => f.write_str("header block too large"),
            HttpError::PayloadTooLarge => f.write_str("body too large"),
            HttpError::Timeout => f.write_str("head not complete before the deadline"),
            HttpError::VersionNotSupported => f.write_str("HTTP version not supported"),
            HttpError::NotImplemented(why) => write!(f, "not implemented: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}
