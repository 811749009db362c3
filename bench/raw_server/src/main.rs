//! Raw ceiling for the Crier benchmark: a minimal tokio SSE fan-out server with no BEAM.
//!
//! It speaks the benchmark's endpoint contract (see bench/README.md):
//! `GET /sse?id=X` idle stream owned by a task that waits for the client to leave,
//! `GET /sub?id=X` stream subscribed to the one topic, `POST /publish?n=&mode=&interval_us=`,
//! `GET /stats`, `GET /closes`, `POST /reset`.
//! Each event is encoded once (already framed as an HTTP chunk) into a `Bytes` that all
//! subscribers share; a subscriber drains everything queued and writes it with one
//! vectored write per wake-up.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads (0 = number of cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Events a subscriber may lag behind before it is dropped.
    #[arg(long, default_value_t = 4096)]
    queue: usize,
    /// Quit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    max_secs: u64,
}

#[derive(Default)]
struct State {
    open: AtomicU64,
    subscribers: AtomicU64,
    told: AtomicU64,
    overflow: AtomicU64,
    published: AtomicU64,
    accepted: AtomicU64,
    closes: Mutex<Vec<(Box<str>, u64)>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// One chunk-framed piece of the event stream.
fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 12);
    b.put_slice(format!("{:x}\r\n", payload.len()).as_bytes());
    b.put_slice(payload);
    b.put_slice(b"\r\n");
    b.freeze()
}

fn event(seq: u64) -> String {
    format!("data: {seq} {}\n\n", now_ns())
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
}

fn parse_req(head: &[u8]) -> Option<Req> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut it = line.split(' ');
    let method = it.next()?.to_string();
    let target = it.next()?;
    let (path, qs) = target.split_once('?').unwrap_or((target, ""));
    let query = qs
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Some(Req {
        method,
        path: path.to_string(),
        query,
    })
}

async fn respond(mut s: TcpStream, status: &str, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.shutdown().await;
}

/// Write every buffer with as few vectored writes as the kernel allows.
async fn write_all_vectored(s: &mut TcpStream, bufs: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    let mut offset = 0;
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&bufs[first][offset..]))
            .chain(bufs[first + 1..].iter().map(|b| IoSlice::new(b)))
            .take(512)
            .collect();
        let mut n = s.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = bufs[first].len() - offset;
            if n >= left {
                n -= left;
                first += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}

async fn stream(
    mut s: TcpStream,
    id: Box<str>,
    st: Arc<State>,
    rx: Option<broadcast::Receiver<Bytes>>,
) {
    if s.write_all(SSE_HEAD).await.is_err() {
        return;
    }
    st.open.fetch_add(1, Ordering::Relaxed);
    let subscribed = rx.is_some();
    if subscribed {
        st.subscribers.fetch_add(1, Ordering::Relaxed);
    }
    let mut probe = [0u8; 16];
    match rx {
        None => {
            // Owned stream: wait for the client to leave.
            loop {
                match s.read(&mut probe).await {
                    Ok(0) | Err(_) => {
                        let t = now_ns();
                        st.told.fetch_add(1, Ordering::Relaxed);
                        if !id.is_empty() {
                            st.closes.lock().unwrap().push((id, t));
                        }
                        break;
                    }
                    Ok(_) => {}
                }
            }
        }
        Some(mut rx) => {
            let mut out: Vec<Bytes> = Vec::new();
            loop {
                tokio::select! {
                    r = s.read(&mut probe) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                    m = rx.recv() => {
                        match m {
                            Ok(b) => out.push(b),
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                st.overflow.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                        // Drain whatever else is queued: one write per wake-up.
                        loop {
                            match rx.try_recv() {
                                Ok(b) => out.push(b),
                                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                    st.overflow.fetch_add(1, Ordering::Relaxed);
                                    out.clear();
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        if out.is_empty() || write_all_vectored(&mut s, &mut out).await.is_err() {
                            break;
                        }
                    }
                }
            }
            st.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }
    st.open.fetch_sub(1, Ordering::Relaxed);
}

async fn publish(tx: &broadcast::Sender<Bytes>, st: &State, q: &HashMap<String, String>) -> u64 {
    let n: u64 = q.get("n").and_then(|v| v.parse().ok()).unwrap_or(1);
    let mode = q.get("mode").map(String::as_str).unwrap_or("b2b");
    let interval = q
        .get("interval_us")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000u64);
    let base = st.published.fetch_add(n, Ordering::Relaxed);
    match mode {
        "burst" => {
            let mut all = String::new();
            for k in 0..n {
                all.push_str(&event(base + k));
            }
            let _ = tx.send(frame(all.as_bytes()));
        }
        "paced" => {
            let mut tick = tokio::time::interval(Duration::from_micros(interval.max(1)));
            for k in 0..n {
                tick.tick().await;
                let _ = tx.send(frame(event(base + k).as_bytes()));
            }
        }
        _ => {
            for k in 0..n {
                let _ = tx.send(frame(event(base + k).as_bytes()));
            }
        }
    }
    n
}

async fn conn(mut s: TcpStream, st: Arc<State>, tx: Arc<broadcast::Sender<Bytes>>) {
    let _ = s.set_nodelay(true);
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let req = loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            match parse_req(&head[..end]) {
                Some(r) => break r,
                None => return respond(s, "400 Bad Request", "text/plain", b"bad request\n").await,
            }
        }
        if head.len() > 16 * 1024 {
            return respond(s, "431 Too Large", "text/plain", b"too large\n").await;
        }
    };
    drop(head);
    let id: Box<str> = req.query.get("id").cloned().unwrap_or_default().into();
    // Streams run as tasks of their own, so an idle stream keeps none of the request state.
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/sse") => drop(tokio::spawn(stream(s, id, st, None))),
        ("GET", "/sub") => drop(tokio::spawn(stream(s, id, st, Some(tx.subscribe())))),
        ("POST", "/publish") => {
            let n = publish(&tx, &st, &req.query).await;
            respond(
                s,
                "200 OK",
                "application/json",
                format!("{{\"published\":{n}}}\n").as_bytes(),
            )
            .await
        }
        ("GET", "/stats") => {
            let body = format!(
                "{{\"open\":{},\"subscribers\":{},\"closed_told\":{},\"overflow\":{},\"accepted\":{}}}\n",
                st.open.load(Ordering::Relaxed),
                st.subscribers.load(Ordering::Relaxed),
                st.told.load(Ordering::Relaxed),
                st.overflow.load(Ordering::Relaxed),
                st.accepted.load(Ordering::Relaxed),
            );
            respond(s, "200 OK", "application/json", body.as_bytes()).await
        }
        ("GET", "/closes") => {
            let body: String = st
                .closes
                .lock()
                .unwrap()
                .iter()
                .map(|(id, t)| format!("{id} {t}\n"))
                .collect();
            respond(s, "200 OK", "text/plain", body.as_bytes()).await
        }
        ("POST", "/reset") => {
            st.closes.lock().unwrap().clear();
            st.told.store(0, Ordering::Relaxed);
            respond(s, "200 OK", "application/json", b"{}\n").await
        }
        _ => respond(s, "404 Not Found", "text/plain", b"not found\n").await,
    }
}

fn main() {
    let args = Args::parse();
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        b.worker_threads(args.threads);
    }
    let rt = b.enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(args.listen).expect("bind");
        let listener: TcpListener = sock.listen(4096).expect("listen");
        println!("listening on {}", listener.local_addr().expect("addr"));
        let st = Arc::new(State::default());
        let (tx, _) = broadcast::channel::<Bytes>(args.queue);
        let tx = Arc::new(tx);
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        st.accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(conn(s, st.clone(), tx.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(args.max_secs), accept).await;
    });
}
