//! One NIF on a dirty CPU scheduler that runs any of the NIFs whose work grows with their
//! arguments (decoding long lists, copying large binaries). The Elixir side calls it
//! instead of the plain NIF when an argument is large enough (see `Crier.Boundary`) that the
//! work could hold a normal scheduler past a millisecond; small calls stay on the cheaper
//! normal scheduler.

use crier_core::cluster_order::ClusterPosition;
use rustler::{Atom, Encoder, Env, NifResult, ResourceArc, Term};

use crate::conn_nifs;
use crate::relay::RelayResource;
use crate::relay_nifs;
use crate::resources::ServerResource;
use crate::server_nifs;
use crate::terms::{decode_list, Invalid};

rustler::atoms! {
    conn_send_chunked,
    conn_send_resp,
    conn_send_head,
    conn_inform,
    conn_chunk,
    conn_subscribe,
    server_broadcast,
    server_broadcast_sequenced,
    encode_event,
    relay_take,
}

/// `dirty(name, args)`: the NIF `name` applied to the list `args`, on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn dirty<'a>(env: Env<'a>, name: Atom, args: Term<'a>) -> NifResult<Term<'a>> {
    let args = decode_list(args, "arguments")?;
    let bad = || {
        Invalid(format!(
            "no dirty NIF of that name takes {} arguments",
            args.len()
        ))
    };
    match args.as_slice() {
        [conn, status, headers, sse] if name == conn_send_chunked() => conn_nifs::send_chunked(
            env,
            conn.decode()?,
            status.decode()?,
            *headers,
            sse.decode()?,
        ),
        [conn, status, headers, body] if name == conn_send_resp() => {
            conn_nifs::send_resp(env, conn.decode()?, *status, *headers, *body)
        }
        [conn, status, headers, length] if name == conn_send_head() => conn_nifs::send_head(
            env,
            conn.decode()?,
            status.decode()?,
            *headers,
            length.decode()?,
        ),
        [conn, status, headers] if name == conn_inform() => {
            conn_nifs::inform(env, conn.decode()?, *status, *headers)
        }
        [conn, data] if name == conn_chunk() => conn_nifs::chunk(env, conn.decode()?, *data),
        [conn, topics, last_event_id] if name == conn_subscribe() => {
            conn_nifs::subscribe(env, conn.decode()?, *topics, *last_event_id)
        }
        [server, topic, event] if name == server_broadcast() => {
            let server: ResourceArc<ServerResource> = server.decode()?;
            server_nifs::broadcast_at(&server, topic.decode()?, *event, None).map(|a| a.encode(env))
        }
        [server, topic, event, epoch, seq] if name == server_broadcast_sequenced() => {
            let server: ResourceArc<ServerResource> = server.decode()?;
            let position = ClusterPosition {
                epoch: epoch.decode()?,
                seq: seq.decode()?,
            };
            server_nifs::broadcast_at(&server, topic.decode()?, *event, Some(position))
                .map(|a| a.encode(env))
        }
        [event] if name == encode_event() => server_nifs::encode(env, *event),
        [relay] if name == relay_take() => {
            let relay: ResourceArc<RelayResource> = relay.decode()?;
            Ok(relay_nifs::take_heavy(env, &relay))
        }
        _ => Err(bad().into()),
    }
}
