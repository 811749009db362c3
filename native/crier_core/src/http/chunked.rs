//! Chunked transfer coding on the way out (RFC 9112 section 7.1).

use bytes::{BufMut, Bytes, BytesMut};

/// The last chunk and the empty trailer section that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Frames `data` as one chunk: hex size, CRLF, data, CRLF.
///
/// Empty data yields an empty buffer, never a premature last chunk.
pub fn frame(data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(data.len() + 20);
    put_chunk_header(&mut out, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Writes the `<hex size>\r\n` that opens a chunk of `len` bytes.
pub fn put_chunk_header(out: &mut BytesMut, len: usize) {
    out.put_slice(format!("{len:x}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_to_the_byte() {
        assert_eq!(&frame(b"hello")[..], b"5\r\nhello\r\n");
        assert_eq!(&frame(&[b'x'; 26])[..6], b"1a\r\nxx");
    }

    #[test]
    fn empty_data_is_no_chunk_at_all() {
        assert!(frame(b"").is_empty());
    }
}
