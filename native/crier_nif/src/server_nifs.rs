//! NIFs on a server: start, port, stats, subscribers per topic, broadcast, replay size, shutdown.

use crier_core::cluster_order::ClusterPosition;
use crier_core::server::Server;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::atoms;
use crate::beam_reporter::BeamReporter;
use crate::relay::RelayResource;
use crate::resources::ServerResource;
use crate::terms::{
    decode_config, decode_event, decode_flag, decode_iodata, decode_list, decode_tls,
    encode_binary, encode_stats, io_error_atom, Invalid,
};

/// Binds and starts a server owned by `listener` (monitored: its death stops the server)
/// whose reports go through `relays`, one per dispatcher. Binding is one non-blocking syscall; no name
/// resolution happens here. On a dirty scheduler: with TLS it parses and checks a
/// certificate chain and its key, which for a large RSA key takes milliseconds.
#[rustler::nif(schedule = "DirtyCpu")]
fn server_start<'a>(
    env: Env<'a>,
    options: Term<'a>,
    listener: LocalPid,
    relays: Term<'a>,
) -> NifResult<Term<'a>> {
    let (mut config, replay) = decode_config(options)?;
    match decode_tls(options)? {
        Ok(tls) => config.tls = tls,
        Err(error) => {
            let why = encode_binary(env, error.to_string().as_bytes());
            return Ok((atoms::error(), (atoms::tls(), why)).encode(env));
        }
    }
    let relays = decode_list(relays, "relays")?
        .into_iter()
        .map(|relay| relay.decode::<ResourceArc<RelayResource>>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Invalid("relays must be a list of relays (Native.relay_open/0)".into()))?;
    if relays.is_empty() {
        return Err(Invalid("relays must not be empty".into()).into());
    }
    let reporter = BeamReporter {
        listener,
        relays: relays.iter().map(|r| r.relay.clone()).collect(),
        telemetry: decode_flag(options, "telemetry")?,
    };
    match Server::start(config, reporter, crate::runtime::handle(), replay) {
        Ok(server) => {
            let resource = ResourceArc::new(ServerResource { server });
            if env.monitor(&resource, &listener).is_none() {
                // The owner is already dead: nobody would ever stop this server.
                resource.server.stop_listening();
                resource.server.shutdown(None);
                return Ok((atoms::error(), atoms::owner_gone()).encode(env));
            }
            Ok((atoms::ok(), resource).encode(env))
        }
        Err(error) => Ok((atoms::error(), io_error_atom(env, &error)).encode(env)),
    }
}

/// Worker threads of the process-wide tokio runtime.
#[rustler::nif]
fn runtime_workers() -> usize {
    crate::runtime::handle().metrics().num_workers()
}

#[rustler::nif]
fn server_port(server: ResourceArc<ServerResource>) -> u16 {
    server.server.local_addr().port()
}

#[rustler::nif]
fn server_stats(env: Env<'_>, server: ResourceArc<ServerResource>) -> NifResult<Term<'_>> {
    encode_stats(env, &server.server.stats())
}

/// Closes the listening socket before returning (see `Server::stop_listening`); a new
/// incarnation of a killed server calls it on the old one's resource before it binds.
#[rustler::nif]
fn server_stop_listening(server: ResourceArc<ServerResource>) -> Atom {
    server.server.stop_listening();
    atoms::ok()
}

/// Queues `event` for every subscriber of `topic`; encoding and fan-out run on tokio.
#[rustler::nif]
fn server_broadcast(
    server: ResourceArc<ServerResource>,
    topic: Binary,
    event: Term,
) -> NifResult<Atom> {
    broadcast_at(&server, topic, event, None)
}

pub(crate) fn broadcast_at(
    server: &ServerResource,
    topic: Binary,
    event: Term,
    position: Option<ClusterPosition>,
) -> NifResult<Atom> {
    let event = decode_event(event)?;
    let topic = topic_name(&topic)?;
    server
        .server
        .shared()
        .hub
        .broadcast_at(&topic, event, position)
        .map_err(|e| Invalid(format!("invalid event: {e}")))?;
    Ok(atoms::ok())
}

/// Queues the cluster event the sequencer put at (`epoch`, `seq`) for every subscriber of
/// `topic`: its id is the position's unless the application gave one (see `Crier.Cluster`).
#[rustler::nif]
fn server_broadcast_sequenced(
    server: ResourceArc<ServerResource>,
    topic: Binary,
    event: Term,
    epoch: u64,
    seq: u64,
) -> NifResult<Atom> {
    broadcast_at(&server, topic, event, Some(ClusterPosition { epoch, seq }))
}

/// Records that the sequencer started `epoch`; `follows` is `nil`, or `{epoch, seq}`: the last
/// event of the epoch before, when that one ended cleanly.
#[rustler::nif]
fn server_start_epoch(
    server: ResourceArc<ServerResource>,
    epoch: u64,
    follows: Term,
) -> NifResult<Atom> {
    let follows = if follows.is_atom() {
        None
    } else {
        let (epoch, seq): (u64, u64) = follows
            .decode()
            .map_err(|_| Invalid("follows must be nil or {epoch, seq}".into()))?;
        Some(ClusterPosition { epoch, seq })
    };
    server.server.shared().hub.start_epoch(epoch, follows);
    Ok(atoms::ok())
}

/// How many streams are subscribed to `topic` (a lock and a lookup; no call to the hub task).
#[rustler::nif]
fn server_topic_subscribers(
    server: ResourceArc<ServerResource>,
    topic: Binary,
) -> NifResult<usize> {
    Ok(server
        .server
        .shared()
        .hub
        .subscriber_count(&topic_name(&topic)?))
}

#[rustler::nif]
fn server_set_replay(
    server: ResourceArc<ServerResource>,
    topic: Binary,
    size: usize,
) -> NifResult<Atom> {
    server
        .server
        .shared()
        .hub
        .set_replay(&topic_name(&topic)?, size);
    Ok(atoms::ok())
}

/// Starts the graceful shutdown; `:crier_stopped` reaches the listener process when it is
/// done. `final_event` (its wire bytes, encoded when the server started, or nil) is sent to
/// every SSE stream first. On a dirty scheduler: called once per server, it copies the event.
#[rustler::nif(schedule = "DirtyCpu")]
fn server_shutdown(server: ResourceArc<ServerResource>, final_event: Term) -> NifResult<Atom> {
    let final_bytes = if is_nil_atom(final_event) {
        None
    } else {
        let bytes = decode_iodata(final_event, "final_event")?;
        Some(bytes::Bytes::copy_from_slice(bytes.as_slice()))
    };
    server.server.shutdown(final_bytes);
    Ok(atoms::ok())
}

fn is_nil_atom(term: Term) -> bool {
    term == atoms::nil().to_term(term.get_env())
}

/// Encodes an event to its wire bytes, for `Crier.send_event/2`.
#[rustler::nif]
fn encode_event<'a>(env: Env<'a>, event: Term<'a>) -> NifResult<Term<'a>> {
    encode(env, event)
}

pub(crate) fn encode<'a>(env: Env<'a>, event: Term<'a>) -> NifResult<Term<'a>> {
    let bytes = decode_event(event)?
        .encode()
        .map_err(|e| Invalid(format!("invalid event: {e}")))?;
    Ok(encode_binary(env, &bytes))
}

pub fn topic_name(topic: &Binary) -> Result<String, Invalid> {
    std::str::from_utf8(topic.as_slice())
        .map(str::to_string)
        .map_err(|_| Invalid("topic must be a UTF-8 string".into()))
}
