//! `Reporter` over the dispatchers' relays: the core's reports are queued on tokio
//! threads and turned into terms and messages on a scheduler (see `relay`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use crier_core::connection::Connection;
use crier_core::http::{RequestHead, Version};
use crier_core::report::{CloseReason, ExchangeClose, Wake};
use crier_core::reporter::Reporter;
use crier_core::tls::TlsInfo;
use rustler::types::tuple::make_tuple;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use crate::atoms;
use crate::relay::{News, PendingExchange, Report, Reports};
use crate::terms::{close_reason_atom, encode_binary};

/// What the owner wants done when its stream closes.
#[derive(Clone, Copy)]
pub enum OnClose {
    /// Send `{:crier, ref, {:error, reason}}`.
    Message,
    /// End the owner with `{:shutdown, reason}`; its connection's dispatcher does the
    /// `exit/2` (a NIF cannot send an exit signal).
    Exit,
}

/// The process that owns a stream.
#[derive(Clone)]
pub struct Owner {
    pub pid: LocalPid,
    pub on_close: OnClose,
    /// Its connection's id: what it is told goes through that connection's relay, behind
    /// the request that made it the owner.
    pub connection_id: u64,
}

/// Reports of one server: those of a connection go through one of its dispatchers' relays,
/// chosen by connection id (so no one mailbox carries them all); the end of the shutdown
/// goes through all of them to its `Crier.Listener`.
pub struct BeamReporter {
    pub listener: LocalPid,
    /// Never empty: `server_start` refuses an empty list.
    pub relays: Vec<Arc<Reports>>,
    /// Whether `:telemetry` is loaded: only then are exchange closes reported.
    pub telemetry: bool,
}

impl BeamReporter {
    /// The relay of connection `connection_id`: every exchange of one connection, and what
    /// its owners are told, go through the same one.
    pub fn relay(&self, connection_id: u64) -> &Reports {
        let index = (connection_id % self.relays.len() as u64) as usize;
        &self.relays[index]
    }
}

thread_local! {
    static MESSAGE_ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

impl Reporter for BeamReporter {
    type Owner = Owner;

    fn request(&self, connection: &Arc<Connection<Self>>, exchange: u64, head: RequestHead) {
        // If the dispatcher is gone, the report is dropped, and the pending exchange in it
        // closes the exchange as `owner_gone`: the client is not left waiting.
        self.relay(connection.id).push(Report::Request {
            exchange: PendingExchange::new(connection.clone(), exchange),
            head,
            addresses: (connection.peer, connection.local),
        });
    }

    fn closed(&self, owner: &Owner, exchange: u64, reason: CloseReason) {
        let report = match owner.on_close {
            OnClose::Message => Report::Tell {
                pid: owner.pid,
                exchange,
                news: News::Closed(reason),
            },
            OnClose::Exit => Report::Exit {
                pid: owner.pid,
                exchange,
                reason,
            },
        };
        self.relay(owner.connection_id).push(report);
    }

    fn wake(&self, owner: &Owner, exchange: u64, what: Wake) {
        self.relay(owner.connection_id).push(Report::Tell {
            pid: owner.pid,
            exchange,
            news: News::Wake(what),
        });
    }

    /// Through every relay, behind the closes it carries (see [`Report::Stopped`]); a relay
    /// whose dispatcher is gone has no owner left to tell, so its share is sent from here.
    fn stopped(&self) {
        for relay in &self.relays {
            let listener = self.listener;
            if relay.try_push(Report::Stopped { listener }).is_err() {
                send_stopped(&listener);
            }
        }
    }

    /// `{:crier_closed, ref, reason, duration_ns, subscribed?}` for the connection's
    /// dispatcher, which emits the telemetry event.
    fn exchange_closed(&self, close: ExchangeClose) {
        if self.telemetry {
            self.relay(close.connection_id).push(Report::Closed(close));
        }
    }
}

fn send_stopped(listener: &LocalPid) {
    if rustler::thread::is_scheduler_thread() {
        // The core only reports this from tokio; a scheduler thread here is a bug, and
        // send_and_clear would panic, so drop the message instead of the VM.
        debug_assert!(false, "stopped reported on a scheduler thread");
        return;
    }
    MESSAGE_ENV.with(|env| {
        let _ = env
            .borrow_mut()
            .send_and_clear(listener, |env| atoms::crier_stopped().encode(env));
    });
}

/// `{:crier, ref, news}`, what an owner is told.
pub fn owner_message(env: Env<'_>, exchange: u64, news: News) -> Term<'_> {
    let news = match news {
        News::Closed(reason) => (atoms::error(), close_reason_atom(reason)).encode(env),
        News::Wake(Wake::Writable) => atoms::writable().encode(env),
        News::Wake(Wake::Body) => atoms::body().encode(env),
    };
    (atoms::crier(), exchange, news).encode(env)
}

/// `{:crier_exit, pid, ref, reason}`: the dispatcher ends `pid` with `{:shutdown, reason}`.
pub fn exit_order(env: Env<'_>, pid: LocalPid, exchange: u64, reason: CloseReason) -> Term<'_> {
    (
        atoms::crier_exit(),
        pid,
        exchange,
        close_reason_atom(reason),
    )
        .encode(env)
}

pub fn closed_message(env: Env<'_>, close: ExchangeClose) -> Term<'_> {
    let nanos = u64::try_from(close.open_for.as_nanos()).unwrap_or(u64::MAX);
    (
        atoms::crier_closed(),
        close.exchange,
        close_reason_atom(close.reason),
        nanos,
        close.subscribed,
    )
        .encode(env)
}

/// `{ref, method, path, query, version, headers, peer, local}`; `Crier.Conn` builds its struct
/// from it.
pub fn encode_request<'a>(
    env: Env<'a>,
    exchange: u64,
    head: &RequestHead,
    (peer, local): (SocketAddr, SocketAddr),
) -> Term<'a> {
    let version = match head.version {
        Version::Http10 => atoms::http_1_0(),
        Version::Http11 => atoms::http_1_1(),
        Version::Http2 => atoms::http_2(),
    };
    let headers: Vec<Term<'a>> = head
        .headers
        .iter()
        .map(|(name, value)| {
            (
                encode_binary(env, name.as_bytes()),
                encode_binary(env, value),
            )
                .encode(env)
        })
        .collect();
    make_tuple(
        env,
        &[
            exchange.encode(env),
            encode_binary(env, head.method.as_bytes()),
            encode_binary(env, head.path.as_bytes()),
            encode_binary(env, head.query.as_bytes()),
            version.encode(env),
            headers.encode(env),
            encode_addr(env, peer),
            encode_addr(env, local),
            head.tls
                .as_deref()
                .map_or_else(|| atoms::nil().encode(env), |tls| encode_tls(env, tls)),
        ],
    )
}

/// What the handshake agreed, as a keyword list with `:ssl.connection_information/1`'s
/// names where it has one: `protocol` (`:"tlsv1.3"`), `cipher_suite` (IANA name),
/// `negotiated_protocol` (ALPN, or `nil`), `sni_hostname` (or `nil`).
fn encode_tls<'a>(env: Env<'a>, tls: &TlsInfo) -> Term<'a> {
    let protocol = if tls.version == "TLSv1.2" {
        atoms::tlsv1_2()
    } else {
        atoms::tlsv1_3()
    };
    let nil = atoms::nil().encode(env);
    let alpn = tls.alpn.map_or(nil, |alpn| encode_binary(env, alpn.id()));
    let sni = tls
        .sni
        .as_ref()
        .map_or(nil, |name| encode_binary(env, name.as_bytes()));
    vec![
        (atoms::protocol(), protocol.encode(env)),
        (
            atoms::cipher_suite(),
            encode_binary(env, tls.cipher.as_bytes()),
        ),
        (atoms::negotiated_protocol(), alpn),
        (atoms::sni_hostname(), sni),
    ]
    .encode(env)
}

/// `{ip_tuple, port}` as `:inet` writes addresses.
pub fn encode_addr(env: Env<'_>, addr: SocketAddr) -> Term<'_> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a, b, c, d).encode(env)
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let parts: Vec<Term> = s.iter().map(|p| p.encode(env)).collect();
            make_tuple(env, &parts)
        }
    };
    (ip, addr.port()).encode(env)
}
