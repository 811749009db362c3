//! Every limit and timer of a server, with the defaults `shared/DESIGN.md` sets.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits applied to each request before a handler sees it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line (method, target, version), counted without its CRLF. Longer
    /// gets 414. Default is 8 KiB, as common proxies allow.
    pub max_request_line: usize,
    /// Largest header block: the field lines with their line endings, without the request
    /// line and the empty line that ends the head. Larger gets 431. Default is 16 KiB.
    pub max_header_bytes: usize,
    /// Most header fields in one request. More gets 431. Default is 100.
    pub max_headers: usize,
    /// Largest request body, by Content-Length or chunked. Larger gets 413. Default is 8 MiB.
    pub max_body: u64,
    /// Absolute time from the first byte of a request (or the connection's start) until its
    /// head is complete; a client that trickles bytes cannot hold a slot longer. A client that
    /// sent part of a head gets 408; one that sent nothing is closed quietly. Default is 10 s.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests. Default is 60 s.
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
        }
    }
}

/// How one server listens and treats its streams.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub addr: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Bytes a stream may have queued before `chunk` must wait. A subscriber is dropped with
    /// `overflow` when its socket takes no more while more than this is left of its
    /// broadcasts, or when broadcasts would queue twice this before its writer ran (the most
    /// a subscriber whose reader stopped holds). Default is 256 KiB.
    pub write_queue_bytes: usize,
    /// How long a full write queue may make no progress before the stream closes with
    /// `timeout`. Default is 15 s.
    pub send_timeout: Duration,
    /// Idle time after which an SSE stream gets a `:` comment line; `None` disables it.
    /// Default is 15 s, below the 30 to 60 s idle cut-off of common proxies.
    pub heartbeat: Option<Duration>,
    /// How long queues may drain on shutdown before what is left is closed. Default is 5 s.
    pub shutdown_timeout: Duration,
    /// After the drain, how long closed streams get to flush their last bytes before the
    /// shutdown reports that it stopped. Default is 5 s.
    pub close_grace: Duration,
    /// Most open connections; the next one gets 503. Default is 1,000,000.
    pub max_connections: usize,
    /// TCP keepalive idle time before the first probe on accepted sockets; `None` disables
    /// keepalive. Default is 30 s.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the kernel drops
    /// the connection, which finds peers that vanished without a FIN. Default is 30 s.
    pub tcp_user_timeout: Option<Duration>,
    /// Listen backlog. Default is 4096.
    pub backlog: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            write_queue_bytes: 256 * 1024,
            send_timeout: Duration::from_secs(15),
            heartbeat: Some(Duration::from_secs(15)),
            shutdown_timeout: Duration::from_secs(5),
            close_grace: Duration::from_secs(5),
            max_connections: 1_000_000,
            tcp_keepalive: Some(Duration::from_secs(30)),
            tcp_user_timeout: Some(Duration::from_secs(30)),
            backlog: 4096,
        }
    }
}
