//! What the core reports, on its way to a `Crier.Dispatcher` through a
//! [`crier_core::relay::Relay`] (why a relay and not a message per report: see there).
//!
//! One relay serves every exchange of its connections, so what one owner is told keeps
//! the order in which the core reported it, behind the request that made it the owner.

use std::net::SocketAddr;
use std::sync::Arc;

use crier_core::connection::Connection;
use crier_core::http::RequestHead;
use crier_core::relay::{Relay, Weigh};
use crier_core::report::{CloseReason, ExchangeClose, Wake};
use rustler::{Env, LocalPid, Monitor, Resource};

use crate::beam_reporter::BeamReporter;

/// At most this many reports per `relay_take`, and reports of at most [`TAKE_MAX_WEIGHT`]
/// (beyond the first), so that one call stays far below a millisecond.
pub const TAKE_MAX_REPORTS: usize = 64;
/// See [`TAKE_MAX_REPORTS`]: bytes copied, with each header field counted as
/// [`TERM_WEIGHT`] more for the terms it becomes.
pub const TAKE_MAX_WEIGHT: usize = 128 * 1024;
const TERM_WEIGHT: usize = 64;

/// A server's reports, as its dispatchers' relays hold them.
pub type Reports = Relay<Report>;

/// What the core reported, waiting for the dispatcher to take it.
pub enum Report {
    /// A request head, to be handed to a fresh process.
    Request {
        exchange: PendingExchange,
        head: RequestHead,
        addresses: (SocketAddr, SocketAddr),
    },
    /// Something to tell owner `pid` about `exchange` in a `{:crier, ref, _}` message.
    Tell {
        pid: LocalPid,
        exchange: u64,
        news: News,
    },
    /// End owner `pid` (`on_close: :exit`): only a process can send an exit signal.
    Exit {
        pid: LocalPid,
        exchange: u64,
        reason: CloseReason,
    },
    /// A counted close, for the `[:crier, :stream, :close]` telemetry event.
    Closed(ExchangeClose),
    /// The shutdown is over: `:crier_stopped` to the listener, sent by each dispatcher
    /// behind what it was to tell owners, so the listener (and after it the dispatchers'
    /// own stop) waits until every owner has been told.
    Stopped { listener: LocalPid },
}

/// What a [`Report::Tell`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum News {
    /// `{:error, reason}`: the exchange closed.
    Closed(CloseReason),
    /// `:writable` or `:body`: a waiting call may go on.
    Wake(Wake),
}

impl Weigh for Report {
    fn weight(&self) -> usize {
        match self {
            Report::Request { head, .. } => {
                let fields: usize = head
                    .headers
                    .iter()
                    .map(|(name, value)| name.len() + value.len() + TERM_WEIGHT)
                    .sum();
                head.method.len() + head.path.len() + head.query.len() + fields + TERM_WEIGHT
            }
            _ => TERM_WEIGHT,
        }
    }
}

/// An exchange whose request is queued but held by no resource yet. Dropped unclaimed (its
/// dispatcher died first), it closes the exchange as `owner_gone`, as a dropped resource
/// would: the client gets its answer instead of waiting.
pub struct PendingExchange {
    connection: Option<Arc<Connection<BeamReporter>>>,
    exchange: u64,
}

impl PendingExchange {
    pub fn new(connection: Arc<Connection<BeamReporter>>, exchange: u64) -> Self {
        PendingExchange {
            connection: Some(connection),
            exchange,
        }
    }

    /// The connection and exchange, from now on held by the caller (a resource, which closes
    /// the exchange when it goes).
    pub fn claim(mut self) -> (Arc<Connection<BeamReporter>>, u64) {
        let connection = self
            .connection
            .take()
            .expect("a pending exchange is claimed once");
        (connection, self.exchange)
    }
}

impl Drop for PendingExchange {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.owner_gone(self.exchange);
        }
    }
}

/// A dispatcher's handle on its relay. It monitors the dispatcher: its death closes the
/// relay, so nothing is queued for nobody.
pub struct RelayResource {
    pub relay: Arc<Reports>,
    /// The reader's end of the bell until the dispatcher takes it (`relay_bell`); closed
    /// with the resource if it never does.
    pub bell: std::sync::Mutex<Option<std::os::fd::OwnedFd>>,
}

#[rustler::resource_impl]
impl Resource for RelayResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.relay.close();
    }
}

impl Drop for RelayResource {
    fn drop(&mut self) {
        self.relay.close();
    }
}
