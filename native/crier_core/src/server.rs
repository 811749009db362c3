//! The listener: binds, accepts, applies socket options and the connection cap, spawns one
//! [`crate::task`] per connection, and runs the graceful shutdown.
//!
//! Shutdown, in order: stop accepting; pass a barrier through the hub's command queue, so
//! every broadcast that returned before the stop has been fanned out; start each connection's
//! drain (what it queued, then the final event, then the last chunk); wait for the connection
//! tasks, tracked by a [`TaskTracker`], up to `shutdown_timeout`; close what is left with
//! `shutdown` and wait for those too; report [`Reporter::stopped`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::http::response;
use crate::hub::Hub;
use crate::report::CloseReason;
use crate::reporter::Reporter;
use crate::shared::Shared;
use crate::stats::{Snapshot, Stats};
use crate::task;

/// The listening socket, where [`Server::stop_listening`] can take it out and close it while
/// the accept task polls it.
type ListenerSlot = Arc<Mutex<Option<TcpListener>>>;

/// A running server. Dropping it does not stop it: call [`Server::shutdown`].
pub struct Server<N: Reporter> {
    shared: Arc<Shared<N>>,
    local_addr: SocketAddr,
    listener: ListenerSlot,
    /// Cancelled by [`Server::stop_listening`] and by shutdown (it is a child of
    /// `shared.stopping`): wakes the accept task, which finds the slot empty and ends.
    stop_accepting: CancellationToken,
    shutdown_started: std::sync::atomic::AtomicBool,
    runtime: Handle,
}

impl<N: Reporter> Server<N> {
    /// Binds `config.addr` and starts accepting on `runtime`. `default_replay` is the replay
    /// ring size of topics with none of their own.
    ///
    /// # Errors
    ///
    /// The bind failed (address in use, not local, no permission).
    pub fn start(
        config: ServerConfig,
        reporter: N,
        runtime: &Handle,
        default_replay: usize,
    ) -> io::Result<Self> {
        let std_listener = bind(&config)?;
        let local_addr = std_listener.local_addr()?;
        let _entered = runtime.enter();
        let listener = TcpListener::from_std(std_listener)?;
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            hub: Hub::start(stats.clone(), default_replay, config.write_queue_bytes),
            config,
            reporter,
            stats,
            registry: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            next_exchange: AtomicU64::new(1),
        });
        let listener = Arc::new(Mutex::new(Some(listener)));
        let stop_accepting = shared.stopping.child_token();
        runtime.spawn(accept_loop(
            listener.clone(),
            local_addr,
            shared.clone(),
            stop_accepting.clone(),
        ));
        Ok(Server {
            shared,
            local_addr,
            listener,
            stop_accepting,
            shutdown_started: std::sync::atomic::AtomicBool::new(false),
            runtime: runtime.clone(),
        })
    }

    /// The address the server listens on (with the port picked, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The state shared with connections: config, hub, reporter.
    pub fn shared(&self) -> &Arc<Shared<N>> {
        &self.shared
    }

    /// Reads the counters.
    pub fn stats(&self) -> Snapshot {
        self.shared.stats.snapshot()
    }

    /// Closes the listening socket before it returns, so the port is free for a new server at
    /// once; connections still in the kernel's accept queue are reset by the close. Open
    /// connections are left alone. A second call does nothing.
    pub fn stop_listening(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(listener);
        // Wakes the accept task, which finds the slot empty and ends.
        self.stop_accepting.cancel();
    }

    /// Stops accepting, delivers every broadcast that returned before this call, lets every
    /// connection drain for `shutdown_timeout` (SSE streams first get `final_event`, already
    /// encoded), then closes what is left with `shutdown` and calls [`Reporter::stopped`].
    /// Returns at once; a second call does nothing.
    pub fn shutdown(&self, final_event: Option<Bytes>) {
        if self.shutdown_started.swap(true, Relaxed) {
            return;
        }
        self.stop_listening();
        let shared = self.shared.clone();
        // Ahead of the stop, so it is the next command the hub takes: every publish queued
        // before it has been fanned out when it answers.
        let barrier = shared.hub.barrier();
        shared.stopping.cancel();
        self.runtime.spawn(async move {
            barrier.await;
            for connection in shared.live_connections() {
                connection.begin_shutdown(final_event.as_ref());
            }
            shared.tasks.close();
            let drained = tokio::time::timeout(shared.config.shutdown_timeout, shared.tasks.wait());
            if drained.await.is_err() {
                for connection in shared.live_connections() {
                    connection.close_from_task(CloseReason::Shutdown);
                }
                let _ = tokio::time::timeout(shared.config.close_grace, shared.tasks.wait()).await;
            }
            shared.reporter.stopped();
        });
    }
}

fn bind(config: &ServerConfig) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(config.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    if INHERITED_OPTIONS {
        configure(&SockRef::from(&socket), config);
    }
    socket.bind(&config.addr.into())?;
    socket.listen(config.backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

async fn accept_loop<N: Reporter>(
    listener: ListenerSlot,
    listening_on: SocketAddr,
    shared: Arc<Shared<N>>,
    stop: CancellationToken,
) {
    // Locked only for one non-blocking poll, so stop_listening never waits for an accept.
    let accept = || {
        std::future::poll_fn(
            |cx| match &*listener.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(listener) => listener.poll_accept(cx).map(Some),
                None => std::task::Poll::Ready(None),
            },
        )
    };
    loop {
        let accepted = tokio::select! {
            accepted = accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            None => return,
            Some(Ok((socket, peer))) => (socket, peer),
            Some(Err(_)) => {
                // Out of descriptors or memory: back off instead of spinning on the error.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !INHERITED_OPTIONS {
            configure(&SockRef::from(&socket), &shared.config);
        }
        // Counted here, not when the task starts, so a burst of accepts cannot pass the cap;
        // the connection task takes the count over.
        let open = shared.stats.connections.fetch_add(1, Relaxed);
        if open >= shared.config.max_connections as u64 {
            shared.stats.connections.fetch_sub(1, Relaxed);
            shared.stats.rejected.fetch_add(1, Relaxed);
            shared.tasks.spawn(refuse_over_capacity(socket));
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Relaxed);
        // Both addresses known here, so a connection costs no getpeername or getsockname.
        let addresses = task::Accepted {
            peer,
            local: Some(listening_on).filter(|at| !at.ip().is_unspecified()),
        };
        match &shared.config.tls {
            None => shared
                .tasks
                .spawn(task::run(socket, addresses, shared.clone(), id)),
            Some(tls) => shared.tasks.spawn(task::run_tls(
                socket,
                addresses,
                shared.clone(),
                id,
                tls.clone(),
            )),
        };
    }
}

/// Whether accepted sockets inherit the listening socket's options. Linux clones an accepted
/// socket from its listener (`sk_clone_lock`), `TCP_NODELAY`, keepalive and
/// `TCP_USER_TIMEOUT` included, and starts the keepalive timer of a clone whose listener has
/// `SO_KEEPALIVE` (`tcp_create_openreq_child`): setting them once on the listener saves six
/// system calls per connection. Elsewhere each accepted socket is configured.
const INHERITED_OPTIONS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Socket options of accepted connections (set on the listener where they are inherited);
/// failures leave the defaults, never the connection.
fn configure(sock: &SockRef<'_>, config: &ServerConfig) {
    let _ = sock.set_nodelay(true);
    if let Some(idle) = config.tcp_keepalive {
        // The kernel counts keepalive times in whole seconds and refuses 0 (tcp(7)).
        let idle = idle.max(Duration::from_secs(1));
        let interval = (idle / 3).max(Duration::from_secs(1));
        let keepalive = TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(3);
        let _ = sock.set_tcp_keepalive(&keepalive);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = config.tcp_user_timeout {
        let _ = sock.set_tcp_user_timeout(Some(timeout));
    }
}

async fn refuse_over_capacity(mut socket: TcpStream) {
    let answer = response::error_response(503);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        socket.write_all(&answer).await?;
        // Send the FIN, then read until the client closes: closing with its request unread
        // would send an RST that can destroy the 503 in flight (RFC 9112 section 9.6).
        socket.shutdown().await?;
        let mut scratch = [0u8; 1024];
        while socket.read(&mut scratch).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted socket carries the options of [`configure`], whether it inherited them from
    /// the listener ([`INHERITED_OPTIONS`]) or had them set after the accept.
    #[test]
    fn accepted_sockets_carry_nodelay_keepalive_and_user_timeout() {
        let config = ServerConfig {
            tcp_keepalive: Some(Duration::from_secs(7)),
            tcp_user_timeout: Some(Duration::from_millis(4_500)),
            ..ServerConfig::default()
        };
        let listener = bind(&config).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((accepted, _)) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        let sock = SockRef::from(&accepted);
        if !INHERITED_OPTIONS {
            configure(&sock, &config);
        }
        assert!(sock.nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(2));
        assert_eq!(sock.keepalive_retries().unwrap(), 3);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(4_500))
        );
        drop(client);
    }
}
