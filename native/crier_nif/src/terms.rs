//! Term conversions: server options, events, headers and stats. Anything malformed becomes
//! `{:error, {:argument, message}}`, which the Elixir side raises as `ArgumentError`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use crier_core::config::ServerConfig;
use crier_core::hub::OwnedEvent;
use crier_core::report::CloseReason;
use crier_core::stats::Snapshot;
use crier_core::tls::{self, Alpn, TlsError, DEFAULT_ALPN};
use rustler::types::atom::Atom;
use rustler::{Binary, Encoder, Env, NewBinary, Term};

use crate::atoms;

/// An error the caller made: raised as `ArgumentError` with this message.
pub struct Invalid(pub String);

pub type Checked<T> = Result<T, Invalid>;

impl Invalid {
    pub fn into_error(self) -> rustler::Error {
        rustler::Error::Term(Box::new((atoms::argument(), self.0)))
    }
}

impl From<Invalid> for rustler::Error {
    fn from(invalid: Invalid) -> Self {
        invalid.into_error()
    }
}

pub fn encode_binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Term::from(binary)
}

pub fn close_reason_atom(reason: CloseReason) -> Atom {
    match reason {
        CloseReason::Closed => atoms::closed(),
        CloseReason::Timeout => atoms::timeout(),
        CloseReason::Overflow => atoms::overflow(),
        CloseReason::Shutdown => atoms::shutdown(),
        CloseReason::OwnerGone => atoms::owner_gone(),
    }
}

pub fn decode_close_reason(term: Term) -> Checked<CloseReason> {
    let atom: Atom = term
        .decode()
        .map_err(|_| Invalid("close reason must be an atom".into()))?;
    CloseReason::ALL
        .into_iter()
        .find(|r| close_reason_atom(*r) == atom)
        .ok_or_else(|| {
            Invalid("close reason must be :closed, :timeout, :overflow or :shutdown".into())
        })
}

fn get<'a>(map: Term<'a>, key: &str) -> Option<Term<'a>> {
    let key = Atom::from_str(map.get_env(), key).ok()?;
    map.map_get(key)
        .ok()
        .filter(|v| !(v.is_atom() && *v == atoms::nil().to_term(map.get_env())))
}

fn get_uint(map: Term, key: &str) -> Checked<Option<u64>> {
    match get(map, key) {
        None => Ok(None),
        Some(term) => term
            .decode::<u64>()
            .map(Some)
            .map_err(|_| Invalid(format!("{key} must be a non-negative integer"))),
    }
}

fn get_ms(map: Term, key: &str) -> Checked<Option<Duration>> {
    Ok(get_uint(map, key)?.map(Duration::from_millis))
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Decodes the options map `Crier.Server` builds; absent keys keep the core's defaults.
/// Timeouts are in milliseconds; `nil` heartbeats or keepalive turn them off.
pub fn decode_config(map: Term) -> Checked<(ServerConfig, usize)> {
    if !map.is_map() {
        return Err(Invalid("server options must be a map".into()));
    }
    let mut config = ServerConfig::default();
    let ip = match get(map, "ip") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(term) => decode_ip(term)?,
    };
    let port = get_uint(map, "port")?.unwrap_or(0);
    let port = u16::try_from(port)
        .map_err(|_| Invalid(format!("port must be in 0..65535, got: {port}")))?;
    config.addr = SocketAddr::new(ip, port);
    let limits = &mut config.limits;
    if let Some(v) = get_uint(map, "max_request_line")? {
        limits.max_request_line = to_usize(v);
    }
    if let Some(v) = get_uint(map, "max_header_bytes")? {
        limits.max_header_bytes = to_usize(v);
    }
    if let Some(v) = get_uint(map, "max_headers")? {
        limits.max_headers = to_usize(v).max(1);
    }
    if let Some(v) = get_uint(map, "max_body")? {
        limits.max_body = v;
    }
    if let Some(v) = get_ms(map, "header_timeout")? {
        limits.header_timeout = v;
    }
    if let Some(v) = get_ms(map, "keepalive_timeout")? {
        limits.keepalive_timeout = v;
    }
    if let Some(v) = get_uint(map, "write_queue_bytes")? {
        config.write_queue_bytes = to_usize(v).max(1);
    }
    if let Some(v) = get_ms(map, "send_timeout")? {
        config.send_timeout = v;
    }
    if let Some(v) = get_ms(map, "shutdown_timeout")? {
        config.shutdown_timeout = v;
    }
    if let Some(v) = get_uint(map, "max_connections")? {
        config.max_connections = to_usize(v);
    }
    if let Some(v) = get_uint(map, "backlog")? {
        config.backlog = u32::try_from(v).unwrap_or(u32::MAX);
    }
    // These three are "off" when nil, so they are read whether or not the key is present.
    config.heartbeat = optional_ms(map, "heartbeat", config.heartbeat)?;
    config.tcp_keepalive = optional_ms(map, "tcp_keepalive", config.tcp_keepalive)?;
    config.tcp_user_timeout = optional_ms(map, "tcp_user_timeout", config.tcp_user_timeout)?;
    let replay = to_usize(get_uint(map, "replay")?.unwrap_or(0));
    Ok((config, replay))
}

/// The TLS part of the options: `tls_cert` and `tls_key` (PEM binaries, both or neither) and
/// `alpn` (a list of `"h2"` and `"http/1.1"`, in order of preference). `Ok(None)`: plain TCP.
/// A certificate or key that cannot be used is the inner error, for `{:error, {:tls, why}}`.
pub fn decode_tls(map: Term) -> Checked<Result<Option<Arc<rustls::ServerConfig>>, TlsError>> {
    let (cert, key) = match (get(map, "tls_cert"), get(map, "tls_key")) {
        (None, None) => return Ok(Ok(None)),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(Invalid("tls needs both a certificate and a key".into())),
    };
    let cert: Binary = cert
        .decode()
        .map_err(|_| Invalid("tls_cert must be a binary".into()))?;
    let key: Binary = key
        .decode()
        .map_err(|_| Invalid("tls_key must be a binary".into()))?;
    let alpn = match get(map, "alpn") {
        None => DEFAULT_ALPN.to_vec(),
        Some(list) => {
            let ids: Vec<Binary> = list
                .decode()
                .map_err(|_| Invalid("alpn must be a list of binaries".into()))?;
            ids.iter()
                .map(|id| {
                    Alpn::from_id(id.as_slice()).ok_or_else(|| {
                        Invalid(format!(
                            "alpn protocols are \"h2\" and \"http/1.1\", got: {:?}",
                            String::from_utf8_lossy(id.as_slice())
                        ))
                    })
                })
                .collect::<Checked<Vec<Alpn>>>()?
        }
    };
    Ok(tls::server_config(cert.as_slice(), key.as_slice(), &alpn).map(Some))
}

fn optional_ms(map: Term, key: &str, default: Option<Duration>) -> Checked<Option<Duration>> {
    let env = map.get_env();
    let Ok(atom) = Atom::from_str(env, key) else {
        return Ok(default);
    };
    match map.map_get(atom) {
        Err(_) => Ok(default),
        Ok(term) if term == atoms::nil().to_term(env) => Ok(None),
        Ok(term) => term
            .decode::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| Invalid(format!("{key} must be milliseconds or nil"))),
    }
}

fn decode_ip(term: Term) -> Checked<IpAddr> {
    if let Ok((a, b, c, d)) = term.decode::<(u8, u8, u8, u8)>() {
        return Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    if let Ok(parts) = rustler::types::tuple::get_tuple(term) {
        if parts.len() == 8 {
            let segments: Result<Vec<u16>, _> = parts.iter().map(|p| p.decode::<u16>()).collect();
            if let Ok(s) = segments {
                return Ok(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                )));
            }
        }
    }
    Err(Invalid("ip must be an IPv4 or IPv6 address tuple".into()))
}

/// Decodes a `[{name, value}]` header list of binaries.
pub fn decode_headers<'a>(term: Term<'a>) -> Checked<Vec<(Binary<'a>, Binary<'a>)>> {
    let list: Vec<Term<'a>> = term
        .decode()
        .map_err(|_| Invalid("headers must be a list of {name, value} binaries".into()))?;
    list.into_iter()
        .map(|pair| {
            pair.decode::<(Binary, Binary)>().map_err(|_| {
                Invalid("each header must be a {name, value} tuple of binaries".into())
            })
        })
        .collect()
}

/// Flattens iodata into one binary (copying only if it is not one already).
pub fn decode_iodata<'a>(term: Term<'a>, what: &str) -> Checked<Binary<'a>> {
    if let Ok(binary) = term.decode::<Binary>() {
        return Ok(binary);
    }
    Binary::from_iolist(term).map_err(|_| Invalid(format!("{what} must be iodata")))
}

/// Decodes `%{id:, event:, data:, retry:, comment:}` (a `Crier.Event` or a plain map).
pub fn decode_event(term: Term) -> Checked<OwnedEvent> {
    if !term.is_map() {
        return Err(Invalid("event must be a %Crier.Event{} or a map".into()));
    }
    let text = |key: &str| -> Checked<Option<String>> {
        match get(term, key) {
            None => Ok(None),
            Some(v) => {
                let bytes = v
                    .decode::<Binary>()
                    .map_err(|_| Invalid(format!("event {key} must be a string")))?;
                String::from_utf8(bytes.as_slice().to_vec())
                    .map(Some)
                    .map_err(|_| Invalid(format!("event {key} must be valid UTF-8")))
            }
        }
    };
    // Not encoded here: every caller encodes it next, which is the check.
    Ok(OwnedEvent {
        id: text("id")?,
        event: text("event")?,
        data: text("data")?,
        comment: text("comment")?,
        retry: get_uint(term, "retry")
            .map_err(|_| Invalid("event retry must be a non-negative integer".into()))?,
    })
}

pub fn encode_stats<'a>(env: Env<'a>, stats: &Snapshot) -> rustler::NifResult<Term<'a>> {
    let closes = rustler::types::map::map_new(env);
    let closes = stats
        .closes
        .iter()
        .try_fold(closes, |map, (reason, count)| {
            map.map_put(close_reason_atom(*reason), *count)
        })?;
    let pairs: [(&str, Term<'a>); 11] = [
        ("connections", stats.connections.encode(env)),
        ("streams", stats.streams.encode(env)),
        ("subscribers", stats.subscribers.encode(env)),
        ("topics", stats.topics.encode(env)),
        ("tasks", stats.tasks.encode(env)),
        ("requests", stats.requests.encode(env)),
        ("rejected", stats.rejected.encode(env)),
        ("bytes_written", stats.bytes_written.encode(env)),
        ("queued_bytes", stats.queued_bytes.encode(env)),
        ("writes", stats.writes.encode(env)),
        ("closes", closes),
    ];
    pairs
        .iter()
        .try_fold(rustler::types::map::map_new(env), |map, (key, value)| {
            map.map_put(Atom::from_str(env, key)?, *value)
        })
}
