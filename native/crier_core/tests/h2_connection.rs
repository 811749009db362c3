//! An HTTP/2 connection's own life, over real sockets with a raw frame client: a
//! connection with no stream is closed with GOAWAY NO_ERROR (its first one must come within
//! the header timeout, the next within the keep-alive timeout) and one with a live stream
//! never is; a client's GOAWAY and a TCP RST tell every owner on the
//! connection and no other; a graceful server shutdown sends GOAWAY and ends every stream
//! as on HTTP/1.1, each owner told `shutdown`.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use crier_core::config::ServerConfig;
use crier_core::report::CloseReason;
use support::raw_h2::*;
use support::Event;

fn with_keepalive(timeout: Duration) -> Setup {
    let mut config = ServerConfig::default();
    config.limits.keepalive_timeout = timeout;
    setup_with(config)
}

/// GOAWAY's last stream id and error code.
fn goaway_of(frame: &Frame) -> (u32, u32) {
    (
        code(&frame.payload, 0) & 0x7fff_ffff,
        code(&frame.payload, 4),
    )
}

#[test]
fn a_connection_that_opens_no_stream_is_closed_after_the_header_timeout_with_goaway_no_error() {
    let mut config = ServerConfig::default();
    // As on HTTP/1.1, the first request must come within the header timeout.
    config.limits.header_timeout = Duration::from_secs(1);
    let setup = setup_with(config);
    let mut idle = raw_client(&setup);
    let goaway = until(&mut idle, |f| f.kind == GOAWAY).expect("a GOAWAY");
    assert_eq!(goaway_of(&goaway), (0, NO_ERROR));
    assert!(closed_by_server(&mut idle));
}

#[test]
fn a_connection_with_a_live_stream_is_never_idle_and_after_it_closes_after_the_keepalive_timeout() {
    let timeout = Duration::from_millis(200);
    let setup = with_keepalive(timeout);
    let mut client = raw_client(&setup);
    let (connection, exchange) = open_sse(&setup, &mut client, 1);
    // Five idle timeouts with a quiet SSE stream open (no heartbeats in these tests).
    std::thread::sleep(timeout * 5);
    // Everything the server sent before the answer to this PING was read: no GOAWAY in it.
    send(&mut client, PING, 0, 0, b"still?!!");
    let answer = until(&mut client, |f| {
        f.kind == GOAWAY || (f.kind == PING && f.flags & ACK != 0)
    })
    .expect("an answer");
    assert_eq!(answer.kind, PING, "the live connection got a GOAWAY");
    connection.chunk(exchange, b"data: on\n\n").unwrap();
    let data = until(&mut client, |f| f.kind == DATA).expect("data");
    assert_eq!(data.payload, b"data: on\n\n");
    // The stream ends: the connection is idle from then on, and closed.
    assert!(connection.finish(exchange));
    let goaway = until(&mut client, |f| f.kind == GOAWAY).expect("a GOAWAY once idle");
    assert_eq!(goaway_of(&goaway), (1, NO_ERROR));
    assert!(closed_by_server(&mut client));
}

/// A GOAWAY frame's payload.
fn goaway_payload(last_stream: u32, error: u32) -> Vec<u8> {
    let mut payload = last_stream.to_be_bytes().to_vec();
    payload.extend(error.to_be_bytes());
    payload
}

/// Owners 1 and 2 (see [`two_streams`]) are told `closed`, and the victim on its own
/// connection still streams.
fn both_owners_told_and_the_victim_streams(setup: &Setup, victim: &mut Victim) {
    assert_eq!(
        next_closes(&setup.server, 2),
        vec![(1, CloseReason::Closed), (2, CloseReason::Closed)]
    );
    victim.still_streams();
}

/// Two SSE streams on a raw connection, owners 1 and 2.
fn two_streams(setup: &Setup) -> Tls {
    let mut client = raw_client(setup);
    open_sse_on(setup, &mut client, 1, 1);
    open_sse_on(setup, &mut client, 3, 2);
    client
}

#[test]
fn a_client_goaway_and_close_tells_every_owner_on_that_connection_and_no_other() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut client = two_streams(&setup);
    // What a client that shuts down does: GOAWAY, then the connection's end.
    send(&mut client, GOAWAY, 0, 0, &goaway_payload(0, NO_ERROR));
    client.conn.send_close_notify();
    let _ = client.flush();
    client.sock.shutdown(std::net::Shutdown::Write).unwrap();
    both_owners_told_and_the_victim_streams(&setup, &mut victim);
    assert!(drain_reports(&setup.server, Duration::from_millis(200)).is_empty());
}

#[test]
fn a_client_goaway_with_an_error_ends_the_connection_and_tells_every_owner_on_it() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut client = two_streams(&setup);
    // A client that found a connection error and says so, but keeps the socket open
    // (RFC 9113 section 5.4.1 has it close): its streams will not be read again.
    send(
        &mut client,
        GOAWAY,
        0,
        0,
        &goaway_payload(3, PROTOCOL_ERROR),
    );
    both_owners_told_and_the_victim_streams(&setup, &mut victim);
    assert!(closed_by_server(&mut client));
}

#[test]
fn a_client_goaway_without_error_lets_its_streams_go_on() {
    let setup = setup();
    let mut client = raw_client(&setup);
    let (connection, exchange) = open_sse(&setup, &mut client, 1);
    // GOAWAY NO_ERROR from a client only says it opens no more streams (RFC 9113 section
    // 6.8): the stream it has goes on until it ends, and then the connection closes.
    send(&mut client, GOAWAY, 0, 0, &goaway_payload(0, NO_ERROR));
    connection.chunk(exchange, b"data: on\n\n").unwrap();
    let data = until(&mut client, |f| f.kind == DATA).expect("data after the GOAWAY");
    assert_eq!(data.payload, b"data: on\n\n");
    assert!(connection.finish(exchange));
    let end = until(&mut client, |f| f.kind == DATA && f.flags & END_STREAM != 0);
    assert!(end.is_some(), "the stream did not end");
    assert!(closed_by_server(&mut client));
}

#[test]
fn a_tcp_reset_tells_every_owner_on_that_connection_closed_and_no_other() {
    let setup = setup();
    let mut victim = victim(&setup);
    let client = two_streams(&setup);
    // SO_LINGER 0: the close is an RST, with no close_notify or FIN before it.
    socket2::SockRef::from(&client.sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    both_owners_told_and_the_victim_streams(&setup, &mut victim);
    assert!(drain_reports(&setup.server, Duration::from_millis(200)).is_empty());
}

#[test]
fn a_graceful_shutdown_sends_goaway_and_ends_every_stream_with_the_final_event() {
    let setup = setup_with(ServerConfig {
        // Far longer than the test waits: the stop must not need the drain timeout. The
        // grace bounds how long a drained connection waits for the client's PING answer.
        shutdown_timeout: Duration::from_secs(60),
        close_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    });
    let mut client = two_streams(&setup);
    let mut idle = raw_client(&setup);
    let _ = answers_ping(&mut idle);
    setup.server.server.shutdown(Some(bytes::Bytes::from_static(
        b"event: bye\ndata: stop\n\n",
    )));
    // A GOAWAY, and on each stream the final event, then END_STREAM, in whatever order.
    let mut goaways = Vec::new();
    let mut bodies: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut ended = [false, false];
    while goaways.is_empty() || !ended.iter().all(|e| *e) {
        // Never answering h2's shutdown PING, as a client gone silent: the stop must not
        // wait for it.
        let frame = until(&mut client, |_| true).expect("the streams' end");
        match (frame.kind, frame.stream) {
            (GOAWAY, _) => goaways.push(goaway_of(&frame).1),
            (DATA, 1 | 3) => {
                let at = (frame.stream / 2) as usize;
                bodies[at].extend(&frame.payload);
                ended[at] = frame.flags & END_STREAM != 0;
            }
            _ => {}
        }
    }
    assert!(goaways.iter().all(|code| *code == NO_ERROR));
    for body in bodies {
        assert_eq!(body, b"event: bye\ndata: stop\n\n");
    }
    // As on HTTP/1.1: each owner is told `shutdown`, then the server reports it stopped.
    let mut shutdowns = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("no stop report in time");
        match setup.server.next_event(left) {
            Event::Closed { owner, reason, .. } => shutdowns.push((owner, reason)),
            Event::Stopped => break,
            _ => {}
        }
    }
    shutdowns.sort_by_key(|c| c.0);
    assert_eq!(
        shutdowns,
        vec![(1, CloseReason::Shutdown), (2, CloseReason::Shutdown)]
    );
    // The idle connection got its GOAWAY too, and both were closed.
    assert_eq!(goaway_code(&mut idle), Some(NO_ERROR));
    assert!(closed_by_server(&mut idle));
    assert!(closed_by_server(&mut client));
    let _ = client.flush();
}

#[test]
fn a_sized_response_the_shutdown_cuts_short_is_reset_not_ended() {
    let setup = setup();
    let mut client = raw_client(&setup);
    send(
        &mut client,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block(&[]),
    );
    let (connection, exchange, _) = setup.server.next_request(1);
    connection
        .send_head(exchange, 200, None, &[("content-type", "text/plain")], 100)
        .unwrap();
    connection.chunk(exchange, b"ten bytes.").unwrap();
    until(&mut client, |f| f.kind == DATA).expect("the first bytes");
    setup.server.server.shutdown(None);
    // Ten bytes of a hundred: END_STREAM would pass them off as the whole body.
    let end = until_answering(&mut client, |f| {
        f.stream == 1 && (f.kind == RST_STREAM || f.flags & END_STREAM != 0)
    })
    .expect("the stream's end");
    assert_eq!(end.kind, RST_STREAM);
    assert_eq!(code(&end.payload, 0), CANCEL);
    assert_eq!(
        next_closes(&setup.server, 1),
        vec![(1, CloseReason::Shutdown)]
    );
}
