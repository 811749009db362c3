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

mod sse;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

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
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
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
    })
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

#[allow(clippy::too_many_arguments)]
async fn hold_conn(
    i: usize,
    target: Arc<Target>,
    common: Arc<Common>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut close_rx: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
) {
    let permit = sem.acquire_owned().await.expect("semaphore");
    let id = format!("p{}c{}", common.proc_id, i);
    let path = with_id(&target.path, &id);
    let fail = |why: String| {
        shared.stats.lock().unwrap().fail(why);
        shared.heads.fetch_add(1, Ordering::Relaxed);
    };
    let stream = match tokio::time::timeout_at(deadline, connect(&target, src_ip(&common, i))).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(format!("connect: {}", e.kind())),
        Err(_) => return fail("connect: timeout".into()),
    };
    let (mut rd, mut wr) = stream.into_split();
    if let Err(e) = wr.write_all(request(&target, &path).as_bytes()).await {
        return fail(format!("write: {}", e.kind()));
    }
    let mut reader = sse::Reader::new();
    let mut buf = vec![0u8; 4096];
    let mut permit = Some(permit);
    let mut events: Vec<sse::Stamp> = Vec::with_capacity(64);
    loop {
        tokio::select! {
            biased;
            _ = close_rx.changed() => {
                let t = now_ns();
                drop(rd);
                drop(wr);
                shared.close_ns[i].store(t, Ordering::Relaxed);
                shared.open[i].store(false, Ordering::Relaxed);
                return;
            }
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        if permit.is_some() {
                            return fail("closed before head".into());
                        }
                        shared.open[i].store(false, Ordering::Relaxed);
                        shared.stats.lock().unwrap().disconnected += 1;
                        // Stay until told to close, so the close list stays complete.
                        let _ = close_rx.changed().await;
                        return;
                    }
                    Ok(n) => n,
                };
                let t = now_ns();
                events.clear();
                if reader.feed(&buf[..n], &mut |s| events.push(s)).is_err() {
                    return fail("bad head".into());
                }
                if permit.is_some() && reader.head_done() {
                    if reader.status() != 200 {
                        return fail(format!("status {}", reader.status()));
                    }
                    permit = None;
                    shared.open[i].store(true, Ordering::Relaxed);
                    shared.stats.lock().unwrap().opened += 1;
                    shared.heads.fetch_add(1, Ordering::Relaxed);
                }
                if !events.is_empty() {
                    let mut st = shared.stats.lock().unwrap();
                    for e in &events {
                        let lat_us = t.saturating_sub(e.publish_ns) / 1000;
                        st.hist.saturating_record(lat_us.max(1));
                        st.first_pub_ns = st.first_pub_ns.min(e.publish_ns);
                        let last = st.last_seq[i];
                        if last != u64::MAX && e.seq != last + 1 && e.seq > last {
                            st.gaps += e.seq - last - 1;
                        }
                        st.last_seq[i] = e.seq;
                    }
                    st.counts[i] += events.len() as u32;
                    st.events += events.len() as u64;
                    st.first_recv_ns = st.first_recv_ns.min(t);
                    st.last_recv_ns = st.last_recv_ns.max(t);
                }
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
) -> Result<(), String> {
    let target = Arc::new(parse_url(&common.url)?);
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
    for i in 0..conns {
        tasks.push(tokio::spawn(hold_conn(
            i,
            target.clone(),
            common.clone(),
            shared.clone(),
            sem.clone(),
            close_rx.clone(),
            deadline,
        )));
    }
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

async fn churn_once(target: &Target, src: IpAddr, path: &str) -> Result<(), String> {
    let mut s = connect(target, src)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    s.write_all(request(target, path).as_bytes())
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
    let target = Arc::new(parse_url(&common.url)?);
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
        let (target, common, cycles, stats) = (
            target.clone(),
            common.clone(),
            cycles.clone(),
            stats.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while Instant::now() < end && cycles.load(Ordering::Relaxed) < max_cycles {
                // No id: servers keep no per-stream close record for churned streams.
                let path = target.path.clone();
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    churn_once(&target, src_ip(&common, k), &path),
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
                } => hold(common, conns, connect_concurrency, connect_timeout_secs).await,
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
