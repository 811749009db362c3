//! NIFs on one exchange: ownership, response, chunks, body, topics, close. Each takes a short
//! lock and enqueues; none waits for the network.

use crier_core::connection::{BodyRead, CallError, Push};
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::atoms;
use crate::beam_reporter::{OnClose, Owner};
use crate::resources::ConnResource;
use crate::server_nifs::topic_name;
use crate::terms::{
    decode_close_reason, decode_headers, decode_iodata, decode_list, encode_binary, Invalid,
};

type Conn = ResourceArc<ConnResource>;

fn header_slices<'a>(headers: &[(Binary<'a>, Binary<'a>)]) -> Vec<(&'a [u8], &'a [u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

/// Decodes a head's header list and replies with what `send` made of it, as every NIF that
/// writes a head does.
fn with_headers<'a>(
    env: Env<'a>,
    headers: Term<'a>,
    send: impl FnOnce(&[(&[u8], &[u8])]) -> Result<(), CallError>,
) -> NifResult<Term<'a>> {
    let headers = decode_headers(headers)?;
    reply(env, send(&header_slices(&headers)))
}

/// A head's status: `code`, or `{code, reason_phrase}` for a phrase of the caller's own (Plug
/// passes `Plug.Conn.Status.reason_phrase/1`'s); the phrase is checked where the head is made.
fn decode_status<'a>(status: Term<'a>) -> NifResult<(i64, Option<Binary<'a>>)> {
    if let Ok(code) = status.decode::<i64>() {
        return Ok((code, None));
    }
    status
        .decode::<(i64, Binary<'a>)>()
        .map(|(code, reason)| (code, Some(reason)))
        .map_err(|_| {
            Invalid("status must be an integer or a {integer, reason_phrase} tuple".into()).into()
        })
}

fn reply<'a>(env: Env<'a>, result: Result<(), CallError>) -> NifResult<Term<'a>> {
    match result {
        Ok(()) => Ok(atoms::ok().encode(env)),
        Err(error) => call_error(env, error),
    }
}

fn call_error<'a, T>(env: Env<'a>, error: CallError) -> NifResult<T> {
    let _ = env;
    Err(match error {
        CallError::Closed => rustler::Error::Term(Box::new(atoms::closed())),
        CallError::AlreadySent => rustler::Error::Term(Box::new(atoms::already_sent())),
        CallError::NotStreaming => rustler::Error::Term(Box::new(atoms::not_streaming())),
        CallError::Invalid(message) => Invalid(message).into_error(),
    })
}

/// Makes `pid` the owner: it is monitored and told about closes in the way `on_close` says.
#[rustler::nif]
fn conn_set_owner<'a>(
    env: Env<'a>,
    conn: Conn,
    pid: LocalPid,
    on_close: Atom,
) -> NifResult<Term<'a>> {
    let on_close = if on_close == atoms::exit() {
        OnClose::Exit
    } else if on_close == atoms::message() {
        OnClose::Message
    } else {
        return Err(Invalid("on_close must be :message or :exit".into()).into());
    };
    let connection_id = conn.connection.id;
    let result = conn.connection.set_owner(
        conn.exchange,
        Owner {
            pid,
            on_close,
            connection_id,
        },
    );
    if result.is_ok() {
        let mut monitor = conn.owner_monitor.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = monitor.take() {
            env.demonitor(&conn, &previous);
        }
        *monitor = env.monitor(&conn, &pid);
    }
    reply(env, result)
}

/// Sends a chunked (or SSE) response head. Like every NIF here that decodes a list or
/// copies data, it has a dirty-scheduler twin through `dirty_nifs::dirty`.
#[rustler::nif]
fn conn_send_chunked<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    sse: bool,
) -> NifResult<Term<'a>> {
    send_chunked(env, conn, status, headers, sse)
}

pub(crate) fn send_chunked<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    sse: bool,
) -> NifResult<Term<'a>> {
    let (status, reason) = decode_status(status)?;
    with_headers(env, headers, |headers| {
        let reason = reason.as_ref().map(Binary::as_slice);
        conn.connection
            .send_chunked(conn.exchange, status, reason, headers, sse)
    })
}

#[rustler::nif]
fn conn_send_resp<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    body: Term<'a>,
) -> NifResult<Term<'a>> {
    send_resp(env, conn, status, headers, body)
}

pub(crate) fn send_resp<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    body: Term<'a>,
) -> NifResult<Term<'a>> {
    let (status, reason) = decode_status(status)?;
    let body = decode_iodata(body, "body")?;
    with_headers(env, headers, |headers| {
        let reason = reason.as_ref().map(Binary::as_slice);
        conn.connection
            .send_resp(conn.exchange, status, reason, headers, body.as_slice())
    })
}

/// A head with `content-length: length`; the body follows through `conn_chunk`, unframed.
#[rustler::nif]
fn conn_send_head<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    length: u64,
) -> NifResult<Term<'a>> {
    send_head(env, conn, status, headers, length)
}

pub(crate) fn send_head<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
    length: u64,
) -> NifResult<Term<'a>> {
    let (status, reason) = decode_status(status)?;
    with_headers(env, headers, |headers| {
        let reason = reason.as_ref().map(Binary::as_slice);
        conn.connection
            .send_head(conn.exchange, status, reason, headers, length)
    })
}

#[rustler::nif]
fn conn_inform<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
) -> NifResult<Term<'a>> {
    inform(env, conn, status, headers)
}

pub(crate) fn inform<'a>(
    env: Env<'a>,
    conn: Conn,
    status: Term<'a>,
    headers: Term<'a>,
) -> NifResult<Term<'a>> {
    let (status, reason) = decode_status(status)?;
    with_headers(env, headers, |headers| {
        let reason = reason.as_ref().map(Binary::as_slice);
        conn.connection
            .inform(conn.exchange, status, reason, headers)
    })
}

/// `:ok` when queued, `:full` when the caller must wait for `{:crier, ref, :writable}`.
#[rustler::nif]
fn conn_chunk<'a>(env: Env<'a>, conn: Conn, data: Term<'a>) -> NifResult<Term<'a>> {
    chunk(env, conn, data)
}

pub(crate) fn chunk<'a>(env: Env<'a>, conn: Conn, data: Term<'a>) -> NifResult<Term<'a>> {
    let data = decode_iodata(data, "chunk data")?;
    match conn.connection.chunk(conn.exchange, data.as_slice()) {
        Ok(Push::Queued) => Ok(atoms::ok().encode(env)),
        Ok(Push::Full) => Ok(atoms::full().encode(env)),
        Err(error) => call_error(env, error),
    }
}

/// The owner is done; returns whether a response had been sent.
#[rustler::nif]
fn conn_finish(conn: Conn) -> bool {
    conn.connection.finish(conn.exchange)
}

#[rustler::nif]
fn conn_close(conn: Conn, reason: Term) -> NifResult<Atom> {
    let reason = decode_close_reason(reason)?;
    conn.connection.close(conn.exchange, reason);
    Ok(atoms::ok())
}

/// `:ok` when the wait was withdrawn, `:woken` when its wake-up was already sent (the caller
/// takes it from its mailbox).
#[rustler::nif]
fn conn_cancel_wait(conn: Conn) -> Atom {
    if conn.connection.cancel_wait(conn.exchange) {
        atoms::ok()
    } else {
        atoms::woken()
    }
}

/// `{:ok, bytes, done?}`, `:wait` (a `{:crier, ref, :body}` follows), or `{:error, reason}`.
#[rustler::nif]
fn conn_read_body<'a>(env: Env<'a>, conn: Conn, max: usize) -> NifResult<Term<'a>> {
    match conn.connection.read_body(conn.exchange, max) {
        Ok(BodyRead::Data { bytes, done }) => {
            Ok((atoms::ok(), encode_binary(env, &bytes), done).encode(env))
        }
        Ok(BodyRead::Wait) => Ok(atoms::wait().encode(env)),
        Ok(BodyRead::Failed(error)) => {
            let reason = if error.status() == 413 {
                atoms::too_large()
            } else {
                atoms::bad_request()
            };
            Ok((atoms::error(), reason).encode(env))
        }
        Err(error) => call_error(env, error),
    }
}

#[rustler::nif]
fn conn_subscribe<'a>(
    env: Env<'a>,
    conn: Conn,
    topics: Term<'a>,
    last_event_id: Term<'a>,
) -> NifResult<Term<'a>> {
    subscribe(env, conn, topics, last_event_id)
}

pub(crate) fn subscribe<'a>(
    env: Env<'a>,
    conn: Conn,
    topics: Term<'a>,
    last_event_id: Term<'a>,
) -> NifResult<Term<'a>> {
    let topics = decode_list(topics, "topics")?
        .into_iter()
        .map(|topic| {
            let topic: Binary = topic
                .decode()
                .map_err(|_| Invalid("each topic must be a string".into()))?;
            topic_name(&topic)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last_event_id = if last_event_id.is_atom() {
        None
    } else {
        let id: Binary = last_event_id
            .decode()
            .map_err(|_| Invalid("last_event_id must be a string or nil".into()))?;
        Some(String::from_utf8_lossy(id.as_slice()).into_owned())
    };
    let hub = &conn.connection.server().hub;
    reply(
        env,
        hub.subscribe(
            &conn.connection,
            conn.exchange,
            &topics,
            last_event_id.as_deref(),
        ),
    )
}

/// `:ok`, or `{:error, :closed}` for a conn whose exchange is over (a stale handle).
#[rustler::nif]
fn conn_unsubscribe<'a>(env: Env<'a>, conn: Conn, topic: Binary<'a>) -> NifResult<Term<'a>> {
    let topic = topic_name(&topic)?;
    let hub = &conn.connection.server().hub;
    reply(
        env,
        hub.unsubscribe(conn.connection.as_ref(), conn.exchange, &topic),
    )
}

#[rustler::nif]
fn conn_response_started(conn: Conn) -> bool {
    conn.connection.response_started(conn.exchange)
}
