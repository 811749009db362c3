//! The two resource types the BEAM holds: a server, and one exchange (request) of a
//! connection.

use std::sync::{Arc, Mutex};

use crier_core::connection::Connection;
use crier_core::server::Server;
use rustler::{Env, LocalPid, Monitor, Resource};

use crate::beam_reporter::BeamReporter;

/// A running server, monitoring the `Crier.Listener` process that owns it. `Crier.Listener`
/// shuts it down gracefully when it terminates; if that process dies without terminating
/// (killed), or the last reference goes, the listening socket closes at once and the
/// streams are shut down, so no connection is accepted that nobody would serve.
pub struct ServerResource {
    pub server: Server<BeamReporter>,
}

#[rustler::resource_impl]
impl Resource for ServerResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.abandon();
    }
}

impl ServerResource {
    /// Nobody serves this server any more: stop listening and shut the streams down.
    fn abandon(&self) {
        self.server.stop_listening();
        self.server.shutdown(None);
    }
}

impl Drop for ServerResource {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// The handle an owner holds on one exchange. It holds the connection through a plain `Arc`
/// (tasks never hold the resource), so when the owner dies or drops its last reference the
/// connection learns it and closes, unless the exchange's stream is subscribed to a topic.
pub struct ConnResource {
    pub connection: Arc<Connection<BeamReporter>>,
    pub exchange: u64,
    /// The monitor on the current owner; a new owner replaces it, so only the current owner's
    /// death counts.
    pub owner_monitor: Mutex<Option<Monitor>>,
}

impl ConnResource {
    pub fn new(connection: Arc<Connection<BeamReporter>>, exchange: u64) -> Self {
        ConnResource {
            connection,
            exchange,
            owner_monitor: Mutex::new(None),
        }
    }
}

#[rustler::resource_impl]
impl Resource for ConnResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, monitor: Monitor) {
        let current = *self.owner_monitor.lock().unwrap_or_else(|p| p.into_inner());
        if current == Some(monitor) {
            self.connection.owner_gone(self.exchange);
        }
    }
}

impl Drop for ConnResource {
    fn drop(&mut self) {
        self.connection.owner_gone(self.exchange);
    }
}
