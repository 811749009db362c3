//! NIFs of a dispatcher on its relay: open it, take its bell, take what the core reported.

use std::os::fd::IntoRawFd;
use std::sync::{Arc, Mutex};

use crier_core::relay::Left;
use rustler::{Encoder, Env, ResourceArc, Term};

use crate::atoms;
use crate::beam_reporter::{closed_message, encode_request, exit_order, owner_message};
use crate::relay::{RelayResource, Report, Reports, TAKE_MAX_REPORTS, TAKE_MAX_WEIGHT};
use crate::resources::ConnResource;
use crate::terms::io_error_atom;

/// `{:ok, relay}`: a relay for the calling process, which becomes a dispatcher. The relay
/// monitors it; its death drops what is queued (queued requests are answered as
/// `owner_gone`).
#[rustler::nif]
fn relay_open(env: Env<'_>) -> Term<'_> {
    let dispatcher = env.pid();
    let (relay, bell) = match Reports::new() {
        Ok(pair) => pair,
        Err(error) => return (atoms::error(), io_error_atom(env, &error)).encode(env),
    };
    let resource = ResourceArc::new(RelayResource {
        relay: Arc::new(relay),
        bell: Mutex::new(Some(bell)),
    });
    if env.monitor(&resource, &dispatcher).is_none() {
        // The caller is running this call, so it is alive; a failed monitor would leave a
        // relay nobody closes, so close it now rather than queue into it.
        resource.relay.close();
    }
    (atoms::ok(), resource).encode(env)
}

/// `{:ok, fd}`: the descriptor of the relay's bell, for `gen_udp.open(0, [:local, fd: fd])`,
/// which then owns it; `{:error, :taken}` after the first call.
#[rustler::nif]
fn relay_bell(env: Env<'_>, relay: ResourceArc<RelayResource>) -> Term<'_> {
    let bell = relay.bell.lock().unwrap_or_else(|p| p.into_inner()).take();
    match bell {
        Some(fd) => (atoms::ok(), fd.into_raw_fd()).encode(env),
        None => (atoms::error(), atoms::taken()).encode(env),
    }
}

/// `{left, reports}`: takes up to [`TAKE_MAX_REPORTS`] reports weighing up to
/// [`TAKE_MAX_WEIGHT`]; tells owners what they are told (sent from here, on a scheduler),
/// and returns what the dispatcher itself does: `{:crier_request, conn, request}`,
/// `{:crier_exit, pid, ref, reason}` and `{:crier_closed, ref, reason, nanos, subscribed}`.
/// `left` is `:done`, `:more` (take again) or `:heavy` (the next report alone is too heavy
/// for a normal scheduler: take it with `dirty(:relay_take, [relay])`).
#[rustler::nif]
fn relay_take<'a>(env: Env<'a>, relay: ResourceArc<RelayResource>) -> Term<'a> {
    take(env, &relay, TAKE_MAX_REPORTS, TAKE_MAX_WEIGHT)
}

/// The dirty take: one report, whatever it weighs.
pub fn take_heavy<'a>(env: Env<'a>, relay: &RelayResource) -> Term<'a> {
    take(env, relay, 1, usize::MAX)
}

fn take<'a>(
    env: Env<'a>,
    relay: &RelayResource,
    max_reports: usize,
    max_weight: usize,
) -> Term<'a> {
    let taken = relay.relay.take(max_reports, max_weight);
    let mut handed = Vec::with_capacity(taken.reports.len());
    for report in taken.reports {
        match report {
            Report::Request {
                exchange,
                head,
                addresses,
            } => {
                let (connection, exchange) = exchange.claim();
                let conn = ResourceArc::new(ConnResource::new(connection, exchange));
                let request = encode_request(env, exchange, &head, addresses);
                handed.push((atoms::crier_request(), conn, request).encode(env));
            }
            Report::Tell {
                pid,
                exchange,
                news,
            } => {
                // An owner that died meanwhile is not told: its monitor has seen to it.
                let _ = env.send(&pid, owner_message(env, exchange, news));
            }
            Report::Exit {
                pid,
                exchange,
                reason,
            } => handed.push(exit_order(env, pid, exchange, reason)),
            Report::Closed(close) => handed.push(closed_message(env, close)),
            Report::Stopped { listener } => {
                let _ = env.send(&listener, atoms::crier_stopped());
            }
        }
    }
    let left = match taken.left {
        Left::Nothing => atoms::done(),
        Left::More => atoms::more(),
        Left::Heavy => atoms::heavy(),
    };
    (left, handed).encode(env)
}
