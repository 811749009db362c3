//! What every connection of one server shares: the configuration, the reporter, the stats,
//! the hub, and what shutdown needs to reach and await each connection.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::connection::Connection;
use crate::hub::Hub;
use crate::reporter::Reporter;
use crate::stats::Stats;

/// What every connection of one server shares.
pub struct Shared<N: Reporter> {
    /// The configuration the server started with.
    pub config: ServerConfig,
    /// Where requests and closes are reported.
    pub reporter: N,
    /// Live counters, shared with the hub.
    pub stats: Arc<Stats>,
    /// Topics of this server.
    pub hub: Hub,
    /// The live connections, so shutdown can reach each one. Touched on connect and close
    /// only: a per-connection cancellation future would cost every connection a waiter
    /// polled on each of its wake-ups.
    pub(crate) registry: Mutex<HashMap<u64, Weak<Connection<N>>>>,
    /// Cancelled when shutdown begins: the accept loop stops, idle connections close.
    pub(crate) stopping: CancellationToken,
    /// Every connection task, so shutdown can wait for them without polling.
    pub(crate) tasks: TaskTracker,
    pub(crate) next_conn: AtomicU64,
    pub(crate) next_exchange: AtomicU64,
}

impl<N: Reporter> Shared<N> {
    pub(crate) fn register(&self, connection: &Arc<Connection<N>>) {
        self.lock_registry()
            .insert(connection.id, Arc::downgrade(connection));
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.lock_registry().remove(&id);
    }

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Connection<N>>>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn live_connections(&self) -> Vec<Arc<Connection<N>>> {
        self.lock_registry()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn next_exchange(&self) -> u64 {
        self.next_exchange.fetch_add(1, Relaxed)
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }
}
