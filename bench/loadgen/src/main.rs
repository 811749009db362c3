//! Load generator for the Crier benchmark.
//!
//! One OS process holds up to a few thousand SSE connections (the machine caps a
//! process at 20,000 open files, so the orchestrator runs several). Each
//! connection binds a source address in 127.<net>.<proc>.<k> before connecting,
//! which spreads the connections over many addresses and so past the ephemeral
//! port range.
//!
//! `hold` opens the connections, prints a `ready` JSON line, then obeys commands
//! read from stdin, one a line:
//!   `wait <events> <timeout_ms> <idle_ms>`  wait until every connection has
//!        `<events>` events (or the timeout, or no event for idle_ms), then report
//!   `report`  print the counters now
//!   `reset`   clear the counters and the latency histogram
//!   `close`   close every connection at once, print each close time (ns, CLOCK_REALTIME)
//!   `exit`    (or end of input) quit
//! Every answer is one JSON line on stdout. The process quits by itself after `--max-secs`.
//!
//! `churn` connects, reads the response head and disconnects, in a loop, from
//! `--concurrency` tasks for `--secs` seconds, then prints one JSON line.
//!
//! Transports: an `http://` URL is HTTP/1.1 on TCP; an `https://` URL is HTTP/1.1 over TLS
//! (`--proto h1`, the default) or HTTP/2 over TLS (`--proto h2`, ALPN `h2`), where `hold`
//! spreads its `--conns` streams over connections of `--streams-per-conn` streams each.
//! TLS accepts only the certificate in `--cert` (the one made for the run). Whatever the
//! transport, the response body goes through the same event-stream reader and counters.

mod sse;
mod transport;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

#[derive(Parser)]
#[command(about = "SSE load generator for the Crier benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, clap::Args)]
struct Common {
    /// Target, e.g. http://127.0.0.1:4000/sub
    #[arg(long)]
    url: String,
    /// Index of this process among the orchestrator's processes (0..=255).
    #[arg(long, default_value_t = 0)]
    proc_id: u8,
    /// Second octet of the source addresses (127.<net>.<proc_id>.<1..=200>).
    #[arg(long, default_value_t = 1)]
    src_net: u8,
    /// Hard bound on this process's lifetime.
    #[arg(long, default_value_t = 1800)]
    max_secs: u64,
    /// Draw a progress bar on stderr.
    #[arg(long)]
    progress: bool,
    /// Protocol: h1 (HTTP/1.1, on TCP or over TLS by the URL's scheme) or h2 (HTTP/2, https only).
    #[arg(long, value_enum, default_value_t = Proto::H1)]
    proto: Proto,
    /// The PEM certificate an https:// server must present (checked byte for byte).
    #[arg(long)]
    cert: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Proto {
    H1,
    H2,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hold N SSE connections and answer commands on stdin.
    Hold {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        conns: usize,
        /// Connections being opened at one time.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// Give up opening after this long.
        #[arg(long, default_value_t = 120)]
        connect_timeout_secs: u64,
        /// HTTP/2: streams carried by each connection (the last may carry fewer).
        #[arg(long, default_value_t = 1)]
        streams_per_conn: usize,
    },
    /// Connect, read the head, disconnect, in a loop.
    Churn {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Stop after this many cycles in this process.
        #[arg(long, default_value_t = 10_000_000)]
        max_cycles: u64,
    },
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: bool,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("only http:// and https:// URLs: {url}")),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|e| format!("need ip:port in {url}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("loopback targets only: {url}"));
    }
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
        tls,
    })
}

/// Where to connect and how: the target, and the TLS client when the URL is https.
struct Client {
    target: Target,
    proto: Proto,
    tls: Option<transport::Tls>,
}

impl Client {
    fn new(common: &Common) -> Result<Client, String> {
        let target = parse_url(&common.url)?;
        let tls = match (target.tls, &common.cert) {
            (false, _) if common.proto == Proto::H2 => {
                return Err("--proto h2 needs an https:// URL (no cleartext h2c)".into())
            }
            (false, _) => None,
            (true, None) => return Err("an https:// URL needs --cert".into()),
            (true, Some(cert)) => Some(transport::Tls::new(
                cert,
                match common.proto {
                    Proto::H1 => transport::ALPN_H1,
                    Proto::H2 => transport::ALPN_H2,
                },
            )?),
        };
        Ok(Client {
            target,
            proto: common.proto,
            tls,
        })
    }

    /// A TLS stream (handshake done) for HTTP/2, whose streams the caller then opens.
    async fn connect_h2(
        &self,
        src: IpAddr,
    ) -> Result<h2::client::SendRequest<bytes::Bytes>, String> {
        let tls = self.tls.as_ref().ok_or("h2 needs TLS")?;
        let tcp = connect(&self.target, src)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        transport::h2_handshake(tls.handshake(tcp).await?).await
    }
}

fn src_ip(common: &Common, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        common.src_net,
        common.proc_id,
        1 + (i % 200) as u8,
    ))
}

async fn connect(target: &Target, src: IpAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    // Let connect() pick the port for the (src, dst) pair rather than bind().
    set_bind_address_no_port(&sock);
    sock.set_nodelay(true)?;
    sock.bind(SocketAddr::new(src, 0))?;
    sock.connect(target.addr).await
}

fn set_bind_address_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the fd is an open socket owned by `sock`; `one` outlives the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn request(target: &Target, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
        target.host
    )
}

fn with_id(path: &str, id: &str) -> String {
    if path.contains('?') {
        format!("{path}&id={id}")
    } else {
        format!("{path}?id={id}")
    }
}

/// Counters of one hold process.
struct Stats {
    hist: Histogram<u64>,
    counts: Vec<u32>,
    last_seq: Vec<u64>,
    gaps: u64,
    events: u64,
    first_pub_ns: u64,
    first_recv_ns: u64,
    last_recv_ns: u64,
    opened: usize,
    failed: usize,
    disconnected: usize,
    fail_reasons: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    fn new(n: usize) -> Self {
        Stats {
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
            counts: vec![0; n],
            last_seq: vec![u64::MAX; n],
            gaps: 0,
            events: 0,
            first_pub_ns: u64::MAX,
            first_recv_ns: u64::MAX,
            last_recv_ns: 0,
            opened: 0,
            failed: 0,
            disconnected: 0,
            fail_reasons: Default::default(),
        }
    }

    fn reset(&mut self) {
        self.hist.reset();
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.gaps = 0;
        self.events = 0;
        self.first_pub_ns = u64::MAX;
        self.first_recv_ns = u64::MAX;
        self.last_recv_ns = 0;
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        *self.fail_reasons.entry(why).or_default() += 1;
    }
}

#[derive(Serialize)]
struct Report {
    r#type: &'static str,
    proc_id: u8,
    opened: usize,
    failed: usize,
    disconnected: usize,
    events: u64,
    /// Connections that got at least the awaited number of events.
    complete: usize,
    min_count: u32,
    max_count: u32,
    gaps: u64,
    first_pub_ns: u64,
    first_recv_ns: u64,
    last_recv_ns: u64,
    /// Latency publish -> receipt in microseconds: [value, count] pairs.
    hist_us: Vec<(u64, u64)>,
    fail_reasons: std::collections::BTreeMap<String, usize>,
}

fn hist_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect()
}

fn report(st: &Stats, proc_id: u8, want: u32, open: &[AtomicBool]) -> Report {
    let mut min = u32::MAX;
    let mut max = 0;
    let mut complete = 0;
    for (i, &c) in st.counts.iter().enumerate() {
        if !open[i].load(Ordering::Relaxed) {
            continue;
        }
        min = min.min(c);
        max = max.max(c);
        if c >= want {
            complete += 1;
        }
    }
    Report {
        r#type: "report",
        proc_id,
        opened: st.opened,
        failed: st.failed,
        disconnected: st.disconnected,
        events: st.events,
        complete,
        min_count: if min == u32::MAX { 0 } else { min },
        max_count: max,
        gaps: st.gaps,
        first_pub_ns: if st.first_pub_ns == u64::MAX {
            0
        } else {
            st.first_pub_ns
        },
        first_recv_ns: if st.first_recv_ns == u64::MAX {
            0
        } else {
            st.first_recv_ns
        },
        last_recv_ns: st.last_recv_ns,
        hist_us: hist_pairs(&st.hist),
        fail_reasons: st.fail_reasons.clone(),
    }
}

fn emit<T: Serialize>(v: &T) {
    use std::io::Write;
    let line = serde_json::to_string(v).expect("json");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Shared {
    stats: Mutex<Stats>,
    open: Vec<AtomicBool>,
    close_ns: Vec<AtomicU64>,
    heads: AtomicU64,
}

/// Where one stream is: waiting for its response head (holding a permit of the opening
/// semaphore, on HTTP/1.1) or open.
enum Phase {
    Opening {
        /// Held, not read: dropping it lets the next connection start.
        _permit: Option<OwnedSemaphorePermit>,
    },
    Open,
}

/// One stream's share of the counters, whatever carries it: every transport feeds the
/// response bytes it reads here, so HTTP/1.1, TLS and HTTP/2 count events the same way.
struct StreamIo {
    i: usize,
    shared: Arc<Shared>,
    phase: Phase,
    reader: sse::Reader,
    events: Vec<sse::Stamp>,
}

impl StreamIo {
    fn new(i: usize, shared: Arc<Shared>, phase: Phase, reader: sse::Reader) -> Self {
        StreamIo {
            i,
            shared,
            phase,
            reader,
            events: Vec::with_capacity(64),
        }
    }

    /// The stream could not be opened: counted, and the ready line does not wait for it.
    fn fail(self, why: String) {
        self.shared.stats.lock().unwrap().fail(why);
        self.shared.heads.fetch_add(1, Ordering::Relaxed);
    }

    /// The response head came with status 200: the stream is open.
    fn opened(&mut self) {
        self.phase = Phase::Open;
        self.shared.open[self.i].store(true, Ordering::Relaxed);
        self.shared.stats.lock().unwrap().opened += 1;
        self.shared.heads.fetch_add(1, Ordering::Relaxed);
    }

    /// Response bytes just read (with the head on HTTP/1.1; the body alone on HTTP/2).
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        let t = now_ns();
        let events = &mut self.events;
        events.clear();
        self.reader
            .feed(bytes, &mut |s| events.push(s))
            .map_err(|_| "bad head".to_string())?;
        if matches!(self.phase, Phase::Opening { .. }) && self.reader.head_done() {
            if self.reader.status() != 200 {
                return Err(format!("status {}", self.reader.status()));
            }
            self.opened();
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let i = self.i;
        let mut st = self.shared.stats.lock().unwrap();
        for e in &self.events {
            let lat_us = t.saturating_sub(e.publish_ns) / 1000;
            st.hist.saturating_record(lat_us.max(1));
            st.first_pub_ns = st.first_pub_ns.min(e.publish_ns);
            let last = st.last_seq[i];
            if last != u64::MAX && e.seq != last + 1 && e.seq > last {
                st.gaps += e.seq - last - 1;
            }
            st.last_seq[i] = e.seq;
        }
        st.counts[i] += self.events.len() as u32;
        st.events += self.events.len() as u64;
        st.first_recv_ns = st.first_recv_ns.min(t);
        st.last_recv_ns = st.last_recv_ns.max(t);
        Ok(())
    }

    /// We closed the stream at `t` (ns) on the `close` command.
    fn closed_at(self, t: u64) {
        self.shared.close_ns[self.i].store(t, Ordering::Relaxed);
        self.shared.open[self.i].store(false, Ordering::Relaxed);
    }

    /// The server ended the stream: before its head that is a failure; after it, counted as
    /// a disconnect, and the stream waits for the `close` command so the close list stays
    /// complete.
    async fn ended(self, mut close_rx: watch::Receiver<bool>) {
        if matches!(self.phase, Phase::Opening { .. }) {
            return self.fail("closed before head".into());
        }
        self.shared.open[self.i].store(false, Ordering::Relaxed);
        self.shared.stats.lock().unwrap().disconnected += 1;
        let _ = close_rx.changed().await;
    }
}

/// What every connection task of `hold` shares, whatever its transport.
#[derive(Clone)]
struct Hold {
    client: Arc<Client>,
    common: Arc<Common>,
    shared: Arc<Shared>,
    /// Connections being opened at one time.
    sem: Arc<Semaphore>,
    close_rx: watch::Receiver<bool>,
    /// Opening gives up at this instant.
    deadline: tokio::time::Instant,
}

/// Stream `i` of `hold` on HTTP/1.1: its own connection, on TCP or over TLS.
async fn hold_h1(i: usize, h: Hold) {
    let permit = h.sem.clone().acquire_owned().await.expect("semaphore");
    let io = StreamIo::new(
        i,
        h.shared.clone(),
        Phase::Opening {
            _permit: Some(permit),
        },
        sse::Reader::new(),
    );
    let id = format!("p{}c{}", h.common.proc_id, i);
    let req = request(&h.client.target, &with_id(&h.client.target.path, &id));
    let stream =
        match tokio::time::timeout_at(h.deadline, connect(&h.client.target, src_ip(&h.common, i)))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return io.fail(format!("connect: {}", e.kind())),
            Err(_) => return io.fail("connect: timeout".into()),
        };
    match &h.client.tls {
        None => run_h1(io, stream, req, h.close_rx.clone()).await,
        Some(tls) => match tokio::time::timeout_at(h.deadline, tls.handshake(stream)).await {
            Ok(Ok(s)) => run_h1(io, s, req, h.close_rx.clone()).await,
            Ok(Err(e)) => io.fail(e),
            Err(_) => io.fail("tls: timeout".into()),
        },
    }
}

/// Sends the request and reads the response until the server ends it or `close`.
async fn run_h1<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: StreamIo,
    mut s: S,
    req: String,
    mut close_rx: watch::Receiver<bool>,
) {
    if let Err(e) = async {
        s.write_all(req.as_bytes()).await?;
        s.flush().await
    }
    .await
    {
        return io.fail(format!("write: {}", e.kind()));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            biased;
            _ = close_rx.changed() => {
                let t = now_ns();
                drop(s);
                return io.closed_at(t);
            }
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return io.ended(close_rx).await,
                Ok(n) => {
                    if let Err(why) = io.feed(&buf[..n]) {
                        return io.fail(why);
                    }
                }
            }
        }
    }
}

/// Connection `c` of `hold` on HTTP/2, carrying streams `first..first + count`.
async fn hold_h2_conn(c: usize, first: usize, count: usize, h: Hold) {
    let permit = h.sem.clone().acquire_owned().await.expect("semaphore");
    let ios = (first..first + count).map(|i| {
        StreamIo::new(
            i,
            h.shared.clone(),
            Phase::Opening { _permit: None },
            sse::Reader::body(),
        )
    });
    let send = match tokio::time::timeout_at(h.deadline, h.client.connect_h2(src_ip(&h.common, c)))
        .await
    {
        Ok(Ok(send)) => send,
        Ok(Err(why)) => return ios.for_each(|io| io.fail(why.clone())),
        Err(_) => return ios.for_each(|io| io.fail("connect: timeout".into())),
    };
    drop(permit);
    let streams: Vec<_> = ios
        .map(|io| {
            let path = with_id(
                &h.client.target.path,
                &format!("p{}c{}", h.common.proc_id, io.i),
            );
            tokio::spawn(run_h2_stream(
                io,
                send.clone(),
                path,
                h.close_rx.clone(),
                h.deadline,
            ))
        })
        .collect();
    // The connection lives while a stream or this handle does: drop ours now.
    drop(send);
    for s in streams {
        let _ = s.await;
    }
}

/// One HTTP/2 stream: its request, its response head, then DATA until the end or `close`.
async fn run_h2_stream(
    mut io: StreamIo,
    send: h2::client::SendRequest<bytes::Bytes>,
    path: String,
    mut close_rx: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
) {
    let req = match transport::h2_get(&path) {
        Ok(r) => r,
        Err(e) => return io.fail(e),
    };
    let opening = async {
        let mut send = send.ready().await.map_err(|e| format!("h2: {e}"))?;
        let (response, _) = send
            .send_request(req, true)
            .map_err(|e| format!("h2: {e}"))?;
        response.await.map_err(|e| format!("h2: {e}"))
    };
    let response = match tokio::time::timeout_at(deadline, opening).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return io.fail(e),
        Err(_) => return io.fail("h2: timeout".into()),
    };
    if response.status() != 200 {
        return io.fail(format!("status {}", response.status().as_u16()));
    }
    io.opened();
    let mut body = response.into_body();
    loop {
        tokio::select! {
            biased;
            _ = close_rx.changed() => {
                let t = now_ns();
                drop(body); // RST_STREAM (CANCEL): the stream ends, the connection stays
                return io.closed_at(t);
            }
            d = body.data() => match d {
                Some(Ok(bytes)) => {
                    let _ = body.flow_control().release_capacity(bytes.len());
                    if let Err(why) = io.feed(&bytes) {
                        return io.fail(why);
                    }
                }
                _ => return io.ended(close_rx).await,
            }
        }
    }
}

fn bar(show: bool, len: u64, msg: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

#[derive(Serialize)]
struct Ready {
    r#type: &'static str,
    proc_id: u8,
    opened: usize,
    failed: usize,
    connect_ms: u64,
    fail_reasons: std::collections::BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct Closed {
    r#type: &'static str,
    proc_id: u8,
    /// [connection index, close time ns]; id on the server is p<proc>c<index>.
    closes: Vec<(usize, u64)>,
}

async fn hold(
    common: Common,
    conns: usize,
    concurrency: usize,
    connect_timeout: u64,
    streams_per_conn: usize,
) -> Result<(), String> {
    let client = Arc::new(Client::new(&common)?);
    let common = Arc::new(common);
    let shared = Arc::new(Shared {
        stats: Mutex::new(Stats::new(conns)),
        open: (0..conns).map(|_| AtomicBool::new(false)).collect(),
        close_ns: (0..conns).map(|_| AtomicU64::new(0)).collect(),
        heads: AtomicU64::new(0),
    });
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let (close_tx, close_rx) = watch::channel(false);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(connect_timeout);
    let mut tasks = Vec::with_capacity(conns);
    let h = Hold {
        client: client.clone(),
        common: common.clone(),
        shared: shared.clone(),
        sem,
        close_rx,
        deadline,
    };
    match client.proto {
        Proto::H1 => {
            for i in 0..conns {
                tasks.push(tokio::spawn(hold_h1(i, h.clone())));
            }
        }
        Proto::H2 => {
            let per = streams_per_conn.max(1);
            for (c, first) in (0..conns).step_by(per).enumerate() {
                tasks.push(tokio::spawn(hold_h2_conn(
                    c,
                    first,
                    per.min(conns - first),
                    h.clone(),
                )));
            }
        }
    }
    drop(h);
    let pb = bar(common.progress, conns as u64, "connecting");
    while (shared.heads.load(Ordering::Relaxed) as usize) < conns {
        pb.set_position(shared.heads.load(Ordering::Relaxed));
        if tokio::time::Instant::now() > deadline + Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pb.finish_and_clear();
    {
        let st = shared.stats.lock().unwrap();
        emit(&Ready {
            r#type: "ready",
            proc_id: common.proc_id,
            opened: st.opened,
            failed: conns - st.opened,
            connect_ms: started.elapsed().as_millis() as u64,
            fail_reasons: st.fail_reasons.clone(),
        });
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut want: u32 = 0;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            _ => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["wait", n, timeout_ms, idle_ms] => {
                want = n.parse().map_err(|_| "wait: bad count")?;
                let timeout = Duration::from_millis(timeout_ms.parse().unwrap_or(60_000));
                let idle = Duration::from_millis(idle_ms.parse().unwrap_or(5_000));
                let t0 = Instant::now();
                let total = shared
                    .open
                    .iter()
                    .filter(|o| o.load(Ordering::Relaxed))
                    .count();
                let pb = bar(common.progress, total as u64 * want as u64, "events");
                let mut last_events = 0;
                let mut last_change = Instant::now();
                loop {
                    let (done, events) = {
                        let st = shared.stats.lock().unwrap();
                        let done =
                            st.counts.iter().enumerate().all(|(i, &c)| {
                                c >= want || !shared.open[i].load(Ordering::Relaxed)
                            });
                        (done, st.events)
                    };
                    pb.set_position(events);
                    if events != last_events {
                        last_events = events;
                        last_change = Instant::now();
                    }
                    if done || t0.elapsed() > timeout || last_change.elapsed() > idle {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                pb.finish_and_clear();
                let st = shared.stats.lock().unwrap();
                emit(&report(&st, common.proc_id, want, &shared.open));
            }
            ["report"] => {
                let st = shared.stats.lock().unwrap();
                emit(&report(&st, common.proc_id, want, &shared.open));
            }
            ["reset"] => {
                shared.stats.lock().unwrap().reset();
                emit(&serde_json::json!({"type": "reset", "proc_id": common.proc_id}));
            }
            ["close"] => {
                let _ = close_tx.send(true);
                for t in tasks.drain(..) {
                    let _ = t.await;
                }
                let closes = shared
                    .close_ns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| {
                        let t = t.load(Ordering::Relaxed);
                        (t != 0).then_some((i, t))
                    })
                    .collect();
                emit(&Closed {
                    r#type: "closed",
                    proc_id: common.proc_id,
                    closes,
                });
            }
            ["exit"] => break,
            _ => emit(&serde_json::json!({"type": "error", "line": line})),
        }
    }
    let _ = close_tx.send(true);
    Ok(())
}

#[derive(Serialize)]
struct ChurnReport {
    r#type: &'static str,
    proc_id: u8,
    cycles: u64,
    errors: u64,
    secs: f64,
    /// Connect -> response head, microseconds: [value, count].
    hist_us: Vec<(u64, u64)>,
    fail_reasons: std::collections::BTreeMap<String, usize>,
}

/// One churn cycle: connect (and shake hands over TLS), send the request, read the
/// response head, close.
async fn churn_once(client: &Client, src: IpAddr, path: &str) -> Result<(), String> {
    let tcp = connect(&client.target, src)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let req = request(&client.target, path);
    match &client.tls {
        None => read_head(tcp, &req).await,
        Some(tls) => read_head(tls.handshake(tcp).await?, &req).await,
    }
}

async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &str) -> Result<(), String> {
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    s.flush()
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut reader = sse::Reader::new();
    let mut buf = [0u8; 2048];
    while !reader.head_done() {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err("closed before head".into());
        }
        reader
            .feed(&buf[..n], &mut |_| {})
            .map_err(|_| "bad head".to_string())?;
    }
    if reader.status() != 200 {
        return Err(format!("status {}", reader.status()));
    }
    Ok(())
}

async fn churn(
    common: Common,
    concurrency: usize,
    secs: u64,
    max_cycles: u64,
) -> Result<(), String> {
    if common.proto == Proto::H2 {
        return Err("churn speaks HTTP/1.1 (on TCP or over TLS)".into());
    }
    let client = Arc::new(Client::new(&common)?);
    let common = Arc::new(common);
    let cycles = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Mutex::new((
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
        0u64,
        std::collections::BTreeMap::<String, usize>::new(),
    )));
    let end = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let pb = bar(common.progress, secs, "churn (s)");
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, common, cycles, stats) = (
            client.clone(),
            common.clone(),
            cycles.clone(),
            stats.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while Instant::now() < end && cycles.load(Ordering::Relaxed) < max_cycles {
                // No id: servers keep no per-stream close record for churned streams.
                let path = client.target.path.clone();
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    churn_once(&client, src_ip(&common, k), &path),
                )
                .await
                .unwrap_or_else(|_| Err("timeout".into()));
                k += concurrency;
                let failed = {
                    let mut st = stats.lock().unwrap();
                    match r {
                        Ok(()) => {
                            st.0.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                            cycles.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Err(e) => {
                            st.1 += 1;
                            *st.2.entry(e).or_default() += 1;
                            true
                        }
                    }
                };
                if failed {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    while Instant::now() < end && !tasks.iter().all(|t| t.is_finished()) {
        pb.set_position(started.elapsed().as_secs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    pb.finish_and_clear();
    let st = stats.lock().unwrap();
    emit(&ChurnReport {
        r#type: "churn",
        proc_id: common.proc_id,
        cycles: cycles.load(Ordering::Relaxed),
        errors: st.1,
        secs: started.elapsed().as_secs_f64(),
        hist_us: hist_pairs(&st.0),
        fail_reasons: st.2.clone(),
    });
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let max_secs = match &cli.cmd {
        Cmd::Hold { common, .. } | Cmd::Churn { common, .. } => common.max_secs,
    };
    let res = rt.block_on(async move {
        let work = async move {
            match cli.cmd {
                Cmd::Hold {
                    common,
                    conns,
                    connect_concurrency,
                    connect_timeout_secs,
                    streams_per_conn,
                } => {
                    hold(
                        common,
                        conns,
                        connect_concurrency,
                        connect_timeout_secs,
                        streams_per_conn,
                    )
                    .await
                }
                Cmd::Churn {
                    common,
                    concurrency,
                    secs,
                    max_cycles,
                } => churn(common, concurrency, secs, max_cycles).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(max_secs), work).await {
            Ok(r) => r,
            Err(_) => Err(format!("max-secs {max_secs} reached")),
        }
    });
    if let Err(e) = res {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
    // Do not wait for connection tasks: the runtime drops them and the sockets.
    rt.shutdown_timeout(Duration::from_millis(100));
}
