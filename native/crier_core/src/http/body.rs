//! Request bodies on the way in: Content-Length and chunked (RFC 9112 sections 6 and 7).
//!
//! [`BodyDecoder`] is fed raw bytes and yields body bytes; it never reads a socket itself.

use super::request::BodyKind;
use super::HttpError;

/// Longest chunk-size line (size, extensions, CRLF) accepted; longer is junk. Extensions are
/// allowed by RFC 9112 section 7.1.1 but no client needs kilobytes of them.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Incremental decoder of one request body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    limit: u64,
    total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkDataEnd,
    Trailers { seen: usize },
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `kind`, refusing more than `limit` bytes of body.
    ///
    /// # Errors
    ///
    /// [`HttpError::PayloadTooLarge`] if a Content-Length already exceeds `limit`.
    pub fn new(kind: BodyKind, limit: u64) -> Result<Self, HttpError> {
        let state = match kind {
            BodyKind::Empty => State::Done,
            BodyKind::Length(n) if n > limit => return Err(HttpError::PayloadTooLarge),
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::ChunkSize,
        };
        Ok(BodyDecoder {
            state,
            limit,
            total: 0,
        })
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many body bytes are still to come, when the framing says so (Content-Length);
    /// `None` for a chunked body not yet complete.
    pub fn known_remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Decodes as much of `input` as it can, appending body bytes to `out`.
    ///
    /// Returns how many input bytes were consumed; bytes past the end of the body are left
    /// for the next request.
    ///
    /// # Errors
    ///
    /// 400 for bad chunk framing, 413 when the body passes the limit.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            match self.state {
                State::Done => break,
                State::Length { remaining } => {
                    let (taken, remaining) = take_body(rest, remaining, out);
                    at += taken;
                    self.state = if remaining == 0 {
                        State::Done
                    } else {
                        State::Length { remaining }
                    };
                }
                State::ChunkSize => {
                    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > MAX_CHUNK_LINE {
                            return Err(HttpError::BadRequest("chunk size line too long"));
                        }
                        break;
                    };
                    if line_end > MAX_CHUNK_LINE {
                        return Err(HttpError::BadRequest("chunk size line too long"));
                    }
                    let size = parse_chunk_size_line(&rest[..=line_end])?;
                    at += line_end + 1;
                    self.total = self.total.saturating_add(size);
                    if self.total > self.limit {
                        return Err(HttpError::PayloadTooLarge);
                    }
                    self.state = if size == 0 {
                        State::Trailers { seen: 0 }
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkData { remaining } => {
                    let (taken, remaining) = take_body(rest, remaining, out);
                    at += taken;
                    self.state = if remaining == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData { remaining }
                    };
                }
                State::ChunkDataEnd => {
                    if rest.len() < 2 {
                        if rest != b"\r" {
                            return Err(HttpError::BadRequest("chunk data not followed by CRLF"));
                        }
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::BadRequest("chunk data not followed by CRLF"));
                    }
                    at += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers { seen } => {
                    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
                        if seen + rest.len() > MAX_TRAILERS {
                            return Err(HttpError::HeadersTooLarge);
                        }
                        break;
                    };
                    let line = &rest[..=line_end];
                    if !line.ends_with(b"\r\n") {
                        return Err(HttpError::BadRequest("bare LF in trailers"));
                    }
                    at += line_end + 1;
                    if seen + line.len() > MAX_TRAILERS {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    self.state = if line == b"\r\n" {
                        State::Done
                    } else {
                        if line.contains(&b'\r')
                            && line.iter().position(|&b| b == b'\r') != Some(line.len() - 2)
                        {
                            return Err(HttpError::BadRequest("bare CR in trailers"));
                        }
                        State::Trailers {
                            seen: seen + line.len(),
                        }
                    };
                }
            }
        }
        Ok(at)
    }
}

/// Moves up to `remaining` body bytes from `input` to `out`; returns how many it took and how
/// many are still to come.
fn take_body(input: &[u8], remaining: u64, out: &mut Vec<u8>) -> (usize, u64) {
    let take = input
        .len()
        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
    out.extend_from_slice(&input[..take]);
    (take, remaining - take as u64)
}

/// Parses `1*HEXDIG [ chunk-ext ] CRLF`; the line includes its LF.
fn parse_chunk_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(HttpError::BadRequest("chunk size line without CRLF"))?;
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, ext) = line.split_at(digits_end);
    if digits.is_empty() {
        return Err(HttpError::BadRequest("missing chunk size"));
    }
    if digits.len() > 15 {
        return Err(HttpError::BadRequest("chunk size overflows"));
    }
    if !ext.is_empty() && !valid_chunk_ext(ext) {
        return Err(HttpError::BadRequest("junk after chunk size"));
    }
    let size = digits.iter().fold(0u64, |acc, &d| {
        acc * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
    });
    Ok(size)
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, checked loosely for visible ASCII.
fn valid_chunk_ext(ext: &[u8]) -> bool {
    let trimmed = ext.trim_ascii_start();
    trimmed.first() == Some(&b';')
        && trimmed
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(kind: BodyKind, input: &[u8]) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut decoder = BodyDecoder::new(kind, 1024)?;
        let mut out = Vec::new();
        let used = decoder.decode(input, &mut out)?;
        Ok((out, used, decoder.is_done()))
    }

    #[test]
    fn content_length_stops_at_the_length() {
        let (body, used, done) = decode_all(BodyKind::Length(3), b"abcGET").unwrap();
        assert_eq!((&body[..], used, done), (&b"abc"[..], 3, true));
    }

    #[test]
    fn chunked_with_extension_and_trailer() {
        let raw = b"3;name=val\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, used, done) = decode_all(BodyKind::Chunked, raw).unwrap();
        assert_eq!(&body[..], b"abcde");
        assert_eq!(used, raw.len() - 4);
        assert!(done);
    }

    #[test]
    fn chunked_fed_one_byte_at_a_time() {
        let raw = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1024).unwrap();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for &b in raw.iter() {
            pending.push(b);
            let used = decoder.decode(&pending, &mut out).unwrap();
            pending.drain(..used);
        }
        assert!(decoder.is_done());
        assert_eq!(&out[..], b"0123456789");
    }

    #[test]
    fn chunk_size_overflow_and_junk_are_400() {
        for raw in [
            &b"fffffffffffffffff\r\n"[..],
            b"3x\r\nabc\r\n",
            b"\r\n",
            b"-1\r\n",
            b"3\nabc",
        ] {
            assert_eq!(
                decode_all(BodyKind::Chunked, raw).unwrap_err().status(),
                400,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn long_chunk_lines_and_endless_trailers_are_refused() {
        let mut line = b"3;".to_vec();
        line.resize(MAX_CHUNK_LINE + 10, b'x');
        line.extend(b"\r\nabc\r\n0\r\n\r\n");
        assert_eq!(
            decode_all(BodyKind::Chunked, &line).unwrap_err().status(),
            400
        );
        let mut raw = b"0\r\n".to_vec();
        while raw.len() <= MAX_TRAILERS + 100 {
            raw.extend(b"x-trailer: 0123456789\r\n");
        }
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1024).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(&raw, &mut out).unwrap_err(),
            HttpError::HeadersTooLarge
        );
    }

    #[test]
    fn missing_crlf_after_chunk_data_is_400() {
        assert!(decode_all(BodyKind::Chunked, b"3\r\nabcX\r\n").is_err());
    }

    #[test]
    fn body_over_limit_is_413() {
        assert_eq!(
            BodyDecoder::new(BodyKind::Length(2048), 1024)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            decode_all(BodyKind::Chunked, b"800\r\n")
                .unwrap_err()
                .status(),
            413
        );
    }
}
