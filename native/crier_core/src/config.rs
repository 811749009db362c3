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
    /// sent part of a head gets 408; one that sent nothing is closed quietly. An HTTP/2
    /// connection must open its first stream within it (else GOAWAY NO_ERROR). Default is
    /// 10 s.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests, and an HTTP/2
    /// connection with no open stream between streams, which is then closed with GOAWAY
    /// NO_ERROR. Default is 60 s.
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
    /// TLS for every connection (see [`crate::tls::server_config`]); `None` serves plain
    /// TCP. A handshake must finish within `limits.header_timeout` of the accept, like a
    /// request head. Default is `None`.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// HTTP/2 settings and limits, for connections whose ALPN chose `h2`.
    pub h2: H2Settings,
}

/// HTTP/2's settings and its limits against known attacks (RFC 9113 section 10.5). Each
/// stream is one exchange with its own write queue; the connection's write side is shared.
#[derive(Debug, Clone)]
pub struct H2Settings {
    /// Streams a client may hold open on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    /// A browser puts every tab of an origin on one connection and an SSE stream stays open,
    /// so this is the number of tabs one browser can keep live; each costs one exchange's
    /// state and task. RFC 9113 asks for at least 100. Default is 256.
    pub max_concurrent_streams: u32,
    /// Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE): request body bytes a
    /// client may send ahead of the owner's reads. SSE requests carry none. Default is
    /// 65,535, the protocol's own.
    pub initial_window_size: u32,
    /// Receive window of the whole connection: request body bytes of all its streams ahead
    /// of the owners' reads. Default is 1 MiB.
    pub initial_connection_window_size: u32,
    /// Largest frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE). Default is
    /// 16,384, the protocol's minimum.
    pub max_frame_size: u32,
    /// Largest decoded header list, HPACK's output, counted as RFC 9113 section 6.5.2 does
    /// (SETTINGS_MAX_HEADER_LIST_SIZE). It stops HPACK bombs, and the CONTINUATION flood:
    /// h2 counts a header block across its CONTINUATION frames and answers past it with 431
    /// or GOAWAY. Default is 24 KiB, HTTP/1.1's request line plus header block limits.
    pub max_header_list_size: u32,
    /// Streams a client may open and reset before the server has taken them: the rapid
    /// reset attack (CVE-2023-44487). Past it, the connection ends with GOAWAY
    /// (ENHANCE_YOUR_CALM). Default is 20, h2's.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for the client's protocol errors on one connection
    /// before it ends it with GOAWAY (RUSTSEC-2024-0003's flood of bad frames). Default
    /// is 1,024, h2's.
    pub max_local_error_reset_streams: usize,
    /// Bytes of response body h2 buffers per stream beyond what flow control lets out. Kept
    /// small so the stream's write queue holds the rest: backpressure, overflow and the send
    /// timeout then work as on HTTP/1.1. Default is 64 KiB.
    pub max_send_buffer_size: usize,
    /// Idle time of a connection after which the server sends a PING; `None` sends none.
    /// With `ping_timeout`, it finds a peer that vanished behind a proxy or NAT that
    /// keeps the TCP connection. Default is 30 s.
    pub ping_interval: Option<std::time::Duration>,
    /// How long a PING may go unanswered before the connection is closed and every owner
    /// on it told `timeout`. Default is 15 s.
    pub ping_timeout: std::time::Duration,
    /// SETTINGS and PING frames a client may send per second (counted in one-second
    /// windows, acknowledgements included), beyond one for each DATA or HEADERS frame the
    /// server sent it; past it, the connection ends with GOAWAY ENHANCE_YOUR_CALM and every
    /// owner on it is told `closed`. h2 answers each such frame and reads the next only
    /// once its answer is written, so a flood holds no memory, but nothing bounds the CPU a
    /// client that reads the answers makes the server spend (CVE-2019-9512, CVE-2019-9515).
    /// Envoy, nginx and Go bound the answers queued, which h2 already does; gRPC servers
    /// cut a client that PINGs past a rate with this same GOAWAY, and forgive PINGs that
    /// follow data, as the DATA refund does here for clients that probe bandwidth with one
    /// PING per DATA frame (hyper's and gRPC's BDP estimators). A browser sends a handful
    /// per connection; `None` counts none. Default is 100.
    pub max_control_frames_per_second: Option<u32>,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            max_concurrent_streams: 256,
            initial_window_size: 65_535,
            initial_connection_window_size: 1024 * 1024,
            max_frame_size: 16_384,
            max_header_list_size: 24 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_send_buffer_size: 64 * 1024,
            ping_interval: Some(std::time::Duration::from_secs(30)),
            ping_timeout: std::time::Duration::from_secs(15),
            max_control_frames_per_second: Some(100),
        }
    }
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
            tls: None,
            h2: H2Settings::default(),
        }
    }
}
