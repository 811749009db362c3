//! Incremental HTTP response reader: status line and headers, then a body that is
//! either chunked or close-delimited, fed to a WHATWG event-stream parser. On HTTP/2 the
//! transport reads the head itself and feeds the body alone (`Reader::body`).
//!
//! Only what the benchmark needs: events whose `data` is `<seq> <publish_ns>` are
//! reported to the caller; comments, `id`, `event` and `retry` lines are skipped.

/// One event taken from the stream: its sequence number and publish time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub publish_ns: u64,
}

#[derive(Debug)]
enum Body {
    /// Still reading the head.
    Head,
    /// Close-delimited (HTTP/1.0 style) or content not chunked.
    Plain,
    /// Chunked transfer encoding.
    Chunked(Chunk),
    /// The server finished the body (last chunk seen).
    Ended,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading the hex size.
    Size(usize),
    /// Skipping chunk extensions up to LF.
    SizeRest(usize),
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// After data: expecting CR LF.
    DataEnd,
}

/// Parser state for one connection.
#[derive(Debug)]
pub struct Reader {
    body: Body,
    head: Vec<u8>,
    status: u16,
    line: Vec<u8>,
    /// `data:` value of the event being assembled, if it parsed as a stamp.
    pending: Option<Stamp>,
    data_lines: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    pub fn new() -> Self {
        Reader {
            body: Body::Head,
            head: Vec::with_capacity(256),
            status: 0,
            line: Vec::with_capacity(64),
            pending: None,
            data_lines: 0,
        }
    }

    /// A reader of a body alone, its head already read by a transport that frames the
    /// response itself (HTTP/2: HEADERS with status 200, then the event stream in DATA).
    pub fn body() -> Self {
        Reader {
            body: Body::Plain,
            status: 200,
            ..Reader::new()
        }
    }

    /// Status code once the head is complete, else 0.
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn head_done(&self) -> bool {
        !matches!(self.body, Body::Head)
    }

    #[cfg(test)]
    pub fn ended(&self) -> bool {
        matches!(self.body, Body::Ended)
    }

    /// Feed bytes; every complete event with a stamp is passed to `on_event`.
    pub fn feed(
        &mut self,
        mut buf: &[u8],
        on_event: &mut impl FnMut(Stamp),
    ) -> Result<(), HeadError> {
        if let Body::Head = self.body {
            self.head.extend_from_slice(buf);
            let Some(end) = find(&self.head, b"\r\n\r\n") else {
                if self.head.len() > 16 * 1024 {
                    return Err(HeadError::TooLarge);
                }
                return Ok(());
            };
            let head = std::mem::take(&mut self.head);
            let (status, chunked) = parse_head(&head[..end]).ok_or(HeadError::Malformed)?;
            self.status = status;
            self.body = if chunked {
                Body::Chunked(Chunk::Size(0))
            } else {
                Body::Plain
            };
            let rest = head[end + 4..].to_vec();
            return self.feed_body(&rest, on_event);
        }
        if let Body::Ended = self.body {
            buf = &[];
        }
        self.feed_body(buf, on_event)
    }

    fn feed_body(
        &mut self,
        mut buf: &[u8],
        on_event: &mut impl FnMut(Stamp),
    ) -> Result<(), HeadError> {
        loop {
            match self.body {
                Body::Plain => {
                    self.sse(buf, on_event);
                    return Ok(());
                }
                Body::Chunked(state) => {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    match state {
                        Chunk::Size(n) => {
                            let b = buf[0];
                            buf = &buf[1..];
                            let digit = match b {
                                b'0'..=b'9' => Some(b - b'0'),
                                b'a'..=b'f' => Some(b - b'a' + 10),
                                b'A'..=b'F' => Some(b - b'A' + 10),
                                _ => None,
                            };
                            self.body = Body::Chunked(match digit {
                                Some(d) => Chunk::Size(
                                    n.checked_mul(16)
                                        .and_then(|v| v.checked_add(d as usize))
                                        .ok_or(HeadError::Malformed)?,
                                ),
                                None if b == b'\n' => Self::after_size(n),
                                None => Chunk::SizeRest(n),
                            });
                            if let Body::Chunked(Chunk::Data(0)) = self.body {
                                self.body = Body::Ended;
                            }
                        }
                        Chunk::SizeRest(n) => {
                            match buf.iter().position(|&b| b == b'\n') {
                                Some(p) => {
                                    buf = &buf[p + 1..];
                                    self.body = Body::Chunked(Self::after_size(n));
                                    if let Body::Chunked(Chunk::Data(0)) = self.body {
                                        self.body = Body::Ended;
                                    }
                                }
                                None => return Ok(()),
                            };
                        }
                        Chunk::Data(left) => {
                            let take = left.min(buf.len());
                            let (data, rest) = buf.split_at(take);
                            self.sse(data, on_event);
                            buf = rest;
                            self.body = Body::Chunked(if take == left {
                                Chunk::DataEnd
                            } else {
                                Chunk::Data(left - take)
                            });
                        }
                        Chunk::DataEnd => match buf.iter().position(|&b| b == b'\n') {
                            Some(p) => {
                                buf = &buf[p + 1..];
                                self.body = Body::Chunked(Chunk::Size(0));
                            }
                            None => return Ok(()),
                        },
                    }
                }
                Body::Ended | Body::Head => return Ok(()),
            }
        }
    }

    fn after_size(n: usize) -> Chunk {
        Chunk::Data(n)
    }

    /// Event-stream parsing over body bytes.
    fn sse(&mut self, mut buf: &[u8], on_event: &mut impl FnMut(Stamp)) {
        while !buf.is_empty() {
            match buf.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    if self.line.is_empty() {
                        self.line_done(&buf[..p], on_event);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&buf[..p]);
                        self.line_done(&line, on_event);
                        line.clear();
                        self.line = line;
                    }
                    buf = &buf[p + 1..];
                }
                None => {
                    self.line.extend_from_slice(buf);
                    return;
                }
            }
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(Stamp)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.data_lines == 1 {
                if let Some(s) = self.pending {
                    on_event(s);
                }
            }
            self.pending = None;
            self.data_lines = 0;
            return;
        }
        if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            self.data_lines += 1;
            self.pending = parse_stamp(v);
        }
    }
}

fn parse_stamp(v: &[u8]) -> Option<Stamp> {
    let sp = v.iter().position(|&b| b == b' ')?;
    Some(Stamp {
        seq: parse_u64(&v[..sp])?,
        publish_ns: parse_u64(&v[sp + 1..])?,
    })
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status code and whether the body is chunked.
fn parse_head(head: &[u8]) -> Option<(u16, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    Some((status, chunked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Reader, Vec<Stamp>) {
        let mut r = Reader::new();
        let mut got = Vec::new();
        for c in chunks {
            r.feed(c, &mut |s| got.push(s)).unwrap();
        }
        (r, got)
    }

    #[test]
    fn plain_body_split_anywhere() {
        let msg = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: hi\n\ndata: 1 100\n\nid: 3\ndata: 2 200\r\n\r\n";
        for split in 0..msg.len() {
            let (r, got) = run(&[&msg[..split], &msg[split..]]);
            assert_eq!(r.status(), 200);
            assert_eq!(
                got,
                vec![
                    Stamp {
                        seq: 1,
                        publish_ns: 100
                    },
                    Stamp {
                        seq: 2,
                        publish_ns: 200
                    }
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn chunked_body_split_anywhere() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n: hi\n\n\r\n1a\r\ndata: 1 100\n\ndata: 2 200\n\n\r\n0\r\n\r\n";
        for split in 0..msg.len() {
            let (r, got) = run(&[&msg[..split], &msg[split..]]);
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(
                got[1],
                Stamp {
                    seq: 2,
                    publish_ns: 200
                }
            );
            assert!(r.ended());
        }
    }

    #[test]
    fn body_only_reader_split_anywhere() {
        let msg = b": hi\n\ndata: 1 100\n\ndata: 2 200\r\n\r\n";
        for split in 0..msg.len() {
            let mut r = Reader::body();
            let mut got = Vec::new();
            r.feed(&msg[..split], &mut |s| got.push(s)).unwrap();
            r.feed(&msg[split..], &mut |s| got.push(s)).unwrap();
            assert!(r.head_done());
            assert_eq!(r.status(), 200);
            assert_eq!(
                got.iter().map(|s| s.seq).collect::<Vec<_>>(),
                vec![1, 2],
                "split at {split}"
            );
        }
    }

    #[test]
    fn ignores_foreign_data() {
        let (_, got) = run(&[b"HTTP/1.0 200 OK\r\n\r\ndata: hello\n\ndata: 1 2\ndata: 3 4\n\n"]);
        assert!(got.is_empty());
    }
}
