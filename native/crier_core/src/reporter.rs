//! How the core tells its owners something. The core never sees a BEAM term: the NIF crate
//! implements [`Reporter`] with [`crate::relay::Relay`]s its dispatchers take from, cargo
//! tests with channels.
//!
//! (Named for what it does; tokio's `sync::Notify`, which the connection task also uses, is
//! a different thing.)

use std::sync::Arc;

use crate::connection::Connection;
use crate::http::RequestHead;
use crate::report::{CloseReason, ExchangeClose, Wake};

/// The owner side of a server, implemented by the NIF crate and by tests.
///
/// Every method is called from a tokio worker thread, never with a connection's lock held,
/// and must not block.
pub trait Reporter: Send + Sync + Sized + 'static {
    /// Identifies the process that owns an exchange, with whatever it needs to be told things.
    type Owner: Clone + Send + Sync + 'static;

    /// A request head arrived on `connection` as exchange `exchange`. The implementation hands
    /// it to a fresh owner, which takes the exchange with [`Connection::set_owner`].
    fn request(&self, connection: &Arc<Connection<Self>>, exchange: u64, head: RequestHead);

    /// Exchange `exchange` closed for `reason`; sent at most once per exchange.
    fn closed(&self, owner: &Self::Owner, exchange: u64, reason: CloseReason);

    /// A call of `owner` that waits for `what` on `exchange` may go on.
    fn wake(&self, owner: &Self::Owner, exchange: u64, what: Wake);

    /// The server finished shutting down; every connection is closed.
    fn stopped(&self) {}

    /// An exchange closed: every close the stats count, owned or subscribed (subscribed
    /// exchanges have no owner to tell), with how long it had been open. For metrics; the
    /// default does nothing.
    fn exchange_closed(&self, _close: ExchangeClose) {}
}
