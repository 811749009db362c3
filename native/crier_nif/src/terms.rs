//! Term conversions: server options, events, headers and stats. Anything malformed becomes
//! `{:error, {:argument, message}}`, which the Elixir side raises as `ArgumentError`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crier_core::config::{H2Settings, Limits, ServerConfig};
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

/// The value of `key` in the options map; every key must be there: `Crier.Options` writes
/// each one, with its default, so defaults live in its schema alone.
fn field<'a>(map: Term<'a>, key: &str) -> Checked<Term<'a>> {
    Atom::from_str(map.get_env(), key)
        .ok()
        .and_then(|atom| map.map_get(atom).ok())
        .ok_or_else(|| Invalid(format!("server options lack {key}")))
}

/// A boolean option.
pub fn decode_flag(map: Term, key: &str) -> Checked<bool> {
    field(map, key)?
        .decode::<bool>()
        .map_err(|_| Invalid(format!("{key} must be a boolean")))
}

fn is_nil(term: Term) -> bool {
    term == atoms::nil().to_term(term.get_env())
}

fn uint(map: Term, key: &str) -> Checked<u64> {
    field(map, key)?
        .decode::<u64>()
        .map_err(|_| Invalid(format!("{key} must be a non-negative integer")))
}

fn size(map: Term, key: &str) -> Checked<usize> {
    usize::try_from(uint(map, key)?).map_err(|_| Invalid(format!("{key} is too large")))
}

fn ms(map: Term, key: &str) -> Checked<Duration> {
    Ok(Duration::from_millis(uint(map, key)?))
}

/// A count that fits 32 bits, or `nil` for no limit.
fn optional_u32(map: Term, key: &str) -> Checked<Option<u32>> {
    let term = field(map, key)?;
    if is_nil(term) {
        return Ok(None);
    }
    term.decode::<u32>()
        .map(Some)
        .map_err(|_| Invalid(format!("{key} must be an integer below 2^32 or nil")))
}

/// Milliseconds, or `nil` for off.
fn optional_ms(map: Term, key: &str) -> Checked<Option<Duration>> {
    let term = field(map, key)?;
    if is_nil(term) {
        return Ok(None);
    }
    term.decode::<u64>()
        .map(|ms| Some(Duration::from_millis(ms)))
        .map_err(|_| Invalid(format!("{key} must be milliseconds or nil")))
}

/// Decodes the options map `Crier.Options` builds (every key present, already checked there;
/// checked again here, since a NIF trusts no caller). Timeouts are in milliseconds.
pub fn decode_config(map: Term) -> Checked<(ServerConfig, usize)> {
    if !map.is_map() {
        return Err(Invalid("server options must be a map".into()));
    }
    let port = uint(map, "port")?;
    let port = u16::try_from(port)
        .map_err(|_| Invalid(format!("port must be in 0..65535, got: {port}")))?;
    let config = ServerConfig {
        addr: SocketAddr::new(decode_ip(field(map, "ip")?)?, port),
        limits: Limits {
            max_request_line: size(map, "max_request_line")?,
            max_header_bytes: size(map, "max_header_bytes")?,
            max_headers: size(map, "max_headers")?,
            max_body: uint(map, "max_body")?,
            header_timeout: ms(map, "header_timeout")?,
            keepalive_timeout: ms(map, "keepalive_timeout")?,
        },
        write_queue_bytes: size(map, "write_queue_bytes")?,
        send_timeout: ms(map, "send_timeout")?,
        heartbeat: optional_ms(map, "heartbeat")?,
        shutdown_timeout: ms(map, "shutdown_timeout")?,
        close_grace: ms(map, "close_grace")?,
        max_connections: size(map, "max_connections")?,
        tcp_keepalive: optional_ms(map, "tcp_keepalive")?,
        tcp_user_timeout: optional_ms(map, "tcp_user_timeout")?,
        backlog: u32::try_from(uint(map, "backlog")?)
            .map_err(|_| Invalid("backlog is too large".into()))?,
        // Filled by `decode_tls`, whose failure is a `{:tls, why}`, not an ArgumentError.
        tls: None,
        // The settings with no option keep the core's named defaults.
        h2: H2Settings {
            max_concurrent_streams: u32::try_from(uint(map, "h2_max_concurrent_streams")?)
                .map_err(|_| Invalid("h2_max_concurrent_streams is too large".into()))?,
            initial_window_size: u32::try_from(uint(map, "h2_initial_window_size")?)
                .ok()
                .filter(|size| *size <= i32::MAX as u32)
                .ok_or_else(|| Invalid("h2_initial_window_size is past 2^31 - 1".into()))?,
            max_header_list_size: u32::try_from(uint(map, "h2_max_header_list_size")?)
                .map_err(|_| Invalid("h2_max_header_list_size is too large".into()))?,
            max_pending_accept_reset_streams: size(map, "h2_max_pending_accept_reset_streams")?,
            ping_interval: optional_ms(map, "h2_ping_interval")?,
            ping_timeout: ms(map, "h2_ping_timeout")?,
            max_control_frames_per_second: optional_u32(map, "h2_max_control_frames_per_second")?,
            ..H2Settings::default()
        },
    };
    let positive = [
        ("max_headers", config.limits.max_headers),
        ("write_queue_bytes", config.write_queue_bytes),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(Invalid(format!("{key} must be a positive integer")));
    }
    Ok((config, size(map, "replay")?))
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
            let ids = decode_list(list, "alpn")?;
            ids.iter()
                .map(|id| {
                    let id: Binary = id
                        .decode()
                        .map_err(|_| Invalid("alpn must be a list of binaries".into()))?;
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

/// The elements of a proper list. rustler's list decoding panics on an improper list;
/// `enif_get_list_length` fails on one, so it is checked first.
pub fn decode_list<'a>(term: Term<'a>, what: &str) -> Checked<Vec<Term<'a>>> {
    let invalid = || Invalid(format!("{what} must be a proper list"));
    let length = term.list_length().map_err(|_| invalid())?;
    let mut items = Vec::with_capacity(length);
    let mut rest = term;
    while let Ok((head, tail)) = rest.list_get_cell() {
        items.push(head);
        rest = tail;
    }
    Ok(items)
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
    decode_list(term, "headers")?
        .into_iter()
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

/// The reason of a failed bind (or socket call), as `:inet` would name it (`:eaddrinuse`, `:eaddrnotavail`, ...).
pub fn io_error_atom<'a>(env: Env<'a>, error: &std::io::Error) -> Term<'a> {
    let name = match error.raw_os_error() {
        Some(98) => "eaddrinuse",
        Some(99) => "eaddrnotavail",
        Some(13) => "eacces",
        Some(97) => "eafnosupport",
        Some(22) => "einval",
        Some(24) => "emfile",
        _ => "bind_failed",
    };
    Atom::from_str(env, name).map_or_else(|_| atoms::error().encode(env), |a| a.encode(env))
}
