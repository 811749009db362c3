//! `Reporter` over `enif_send`: how the core's reports become messages.
//!
//! Every call comes from a tokio worker thread, where `OwnedEnv::send_and_clear` is allowed.
//! Each worker reuses one `OwnedEnv`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use crier_core::connection::Connection;
use crier_core::http::{RequestHead, Version};
use crier_core::report::{CloseReason, ExchangeClose, Wake};
use crier_core::reporter::Reporter;
use crier_core::tls::TlsInfo;
use rustler::types::tuple::make_tuple;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};

use crate::atoms;
use crate::resources::ConnResource;
use crate::terms::{close_reason_atom, encode_binary};

/// What the owner wants done when its stream closes.
#[derive(Clone, Copy)]
pub enum OnClose {
    /// Send `{:crier, ref, {:error, reason}}`.
    Message,
    /// End the owner with `{:shutdown, reason}`; the dispatcher `via` does the `exit/2`
    /// (a NIF cannot send an exit signal).
    Exit { via: LocalPid },
}

/// The process that owns a stream.
#[derive(Clone)]
pub struct Owner {
    pub pid: LocalPid,
    pub on_close: OnClose,
}

/// Reports of one server: requests go to one of its `Crier.Dispatcher` processes, chosen by
/// connection id (so no one mailbox carries them all), closes and wake-ups to owners, and
/// the end of the shutdown to its `Crier.Listener`.
pub struct BeamReporter {
    pub listener: LocalPid,
    /// Never empty: `server_start` refuses an empty list.
    pub dispatchers: Vec<LocalPid>,
    /// Whether `:telemetry` is loaded: only then are exchange closes reported.
    pub telemetry: bool,
}

impl BeamReporter {
    /// The dispatcher of connection `conn_id`: every exchange of one connection, and the
    /// exits of its owners, go through the same one.
    pub fn dispatcher(&self, conn_id: u64) -> &LocalPid {
        let index = (conn_id % self.dispatchers.len() as u64) as usize;
        &self.dispatchers[index]
    }
}

thread_local! {
    static MESSAGE_ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

fn send<F>(to: &LocalPid, build: F)
where
    F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
{
    if rustler::thread::is_scheduler_thread() {
        // The core only reports from tokio threads; a scheduler thread here is a bug, and
        // send_and_clear would panic, so drop the message instead of the VM.
        debug_assert!(false, "Reporter called on a scheduler thread");
        return;
    }
    MESSAGE_ENV.with(|env| {
        let _ = env.borrow_mut().send_and_clear(to, build);
    });
}

impl Reporter for BeamReporter {
    type Owner = Owner;

    fn request(&self, connection: &Arc<Connection<Self>>, exchange: u64, head: RequestHead) {
        let resource = ResourceArc::new(ConnResource::new(connection.clone(), exchange));
        let (peer, local) = (connection.peer, connection.local);
        // If the dispatcher is gone, the message and the resource in it are dropped, and the
        // dropped resource closes the exchange as `owner_gone`: the client is not left waiting.
        send(self.dispatcher(connection.id), move |env| {
            let request = encode_request(env, exchange, &head, (peer, local));
            make_tuple(
                env,
                &[
                    atoms::crier_request().encode(env),
                    resource.encode(env),
                    request,
                ],
            )
        });
    }

    fn closed(&self, owner: &Owner, exchange: u64, reason: CloseReason) {
        match owner.on_close {
            OnClose::Message => send(&owner.pid, |env| {
                let error = (atoms::error(), close_reason_atom(reason)).encode(env);
                (atoms::crier(), exchange, error).encode(env)
            }),
            OnClose::Exit { via } => {
                let pid = owner.pid;
                send(&via, move |env| {
                    (
                        atoms::crier_exit(),
                        pid,
                        exchange,
                        close_reason_atom(reason),
                    )
                        .encode(env)
                })
            }
        }
    }

    fn wake(&self, owner: &Owner, exchange: u64, what: Wake) {
        let what = match what {
            Wake::Writable => atoms::writable(),
            Wake::Body => atoms::body(),
        };
        send(&owner.pid, |env| {
            (atoms::crier(), exchange, what).encode(env)
        });
    }

    fn stopped(&self) {
        send(&self.listener, |env| atoms::crier_stopped().encode(env));
    }

    /// `{:crier_closed, ref, reason, duration_ns, subscribed?}` to the connection's
    /// dispatcher, which emits the telemetry event. A close found on a scheduler thread (an
    /// owner's death, seen in a NIF callback) is sent from tokio: `enif_send` from there
    /// needs a process environment this callback does not have.
    fn exchange_closed(&self, close: ExchangeClose) {
        if !self.telemetry {
            return;
        }
        let to = *self.dispatcher(close.connection_id);
        if rustler::thread::is_scheduler_thread() {
            crate::runtime::handle()
                .spawn(async move { send(&to, move |env| closed_message(env, close)) });
        } else {
            send(&to, move |env| closed_message(env, close));
        }
    }
}

fn closed_message(env: Env<'_>, close: ExchangeClose) -> Term<'_> {
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
fn encode_request<'a>(
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
