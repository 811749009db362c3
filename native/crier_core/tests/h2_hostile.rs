//! Hostile HTTP/2 frames, sent by a raw frame client over TLS, each answered as RFC 9113
//! asks (and as the named limits say) while a well-behaved client on another connection of
//! the same server keeps its stream: rapid reset, oversized headers (an HPACK bomb's
//! effect), CONTINUATION without end, a window pushed past 2^31 - 1, and SETTINGS and PING
//! floods, while a client that PINGs at a sane rate, or after each DATA frame, is never cut.

mod support;

use std::io::Write;
use std::time::Duration;

use crier_core::config::ServerConfig;
use crier_core::report::CloseReason;
use support::raw_h2::*;

#[test]
fn rapid_reset_ends_the_connection_with_enhance_your_calm() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    let mut burst = Vec::new();
    // 200 pairs, 7 KiB: one TLS record, read whole, so the server's close after its GOAWAY
    // leaves nothing unread that would turn it into an RST and destroy the GOAWAY.
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            stream,
            &get_block(&[]),
        ));
        burst.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    // Written whole: the attack is the burst, not a conversation.
    let _ = attacker.write_all(&burst);
    assert_eq!(goaway_code(&mut attacker), Some(ENHANCE_YOUR_CALM));
    victim.still_streams();
    // The victim's owner was not told anything.
    assert!(drain_reports(&setup.server, Duration::from_millis(200))
        .iter()
        .all(|(owner, _)| *owner != 1000));
}

#[test]
fn a_header_list_past_the_limit_is_refused_without_reaching_an_owner() {
    let setup = setup();
    let mut victim = victim(&setup);
    let requests = setup.server.server.stats().requests;
    let mut attacker = raw_client(&setup);
    // A 30 KiB value: past the 24 KiB limit, in a HEADERS and a CONTINUATION frame.
    let value = vec![b'a'; 30 * 1024];
    let mut literal = vec![0x00, 0x01, b'x', 0x7f];
    let mut rest = value.len() - 127;
    while rest >= 128 {
        literal.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    literal.push(rest as u8);
    literal.extend_from_slice(&value);
    let block = get_block(&literal);
    let (first, second) = block.split_at(16 * 1024);
    send(&mut attacker, HEADERS, END_STREAM, 1, first);
    send(&mut attacker, CONTINUATION, END_HEADERS, 1, second);
    // h2 answers 431 on the stream (a HEADERS that ends it) or resets it; not the connection.
    let answer = until(&mut attacker, |f| {
        f.stream == 1 && (f.kind == RST_STREAM || f.kind == HEADERS)
    })
    .expect("the stream is answered");
    assert!(answer.kind == RST_STREAM || answer.flags & END_STREAM != 0);
    assert!(
        answers_ping(&mut attacker),
        "the connection went with the stream"
    );
    assert_eq!(setup.server.server.stats().requests, requests);
    victim.still_streams();
}

#[test]
fn continuation_without_end_ends_the_connection_with_enhance_your_calm() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    send(&mut attacker, HEADERS, END_STREAM, 1, &get_block(&[]));
    let mut flood = Vec::new();
    // Far past h2's count for a 24 KiB list, and one TLS record (see the rapid reset test).
    for _ in 0..1000 {
        flood.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let _ = attacker.write_all(&flood);
    assert_eq!(goaway_code(&mut attacker), Some(ENHANCE_YOUR_CALM));
    victim.still_streams();
}

#[test]
fn a_stream_window_past_the_maximum_resets_that_stream_only() {
    let setup = setup();
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    open_sse(&setup, &mut attacker, 7);
    // 65,535 + 2^31 - 1 is past 2^31 - 1: a stream error (RFC 9113 section 6.9.1).
    send(
        &mut attacker,
        WINDOW_UPDATE,
        0,
        1,
        &0x7fff_ffffu32.to_be_bytes(),
    );
    let reset = until(&mut attacker, |f| f.kind == RST_STREAM && f.stream == 1)
        .expect("the stream is reset");
    assert_eq!(code(&reset.payload, 0), FLOW_CONTROL_ERROR);
    assert!(
        answers_ping(&mut attacker),
        "the connection went with the stream"
    );
    let closes = drain_reports(&setup.server, Duration::from_millis(500));
    assert_eq!(closes, vec![(7, CloseReason::Closed)]);
    victim.still_streams();
}

#[test]
fn a_peer_that_answers_no_ping_is_closed_and_every_owner_on_it_told_timeout() {
    let mut config = ServerConfig::default();
    config.h2.ping_interval = Some(Duration::from_millis(200));
    config.h2.ping_timeout = Duration::from_millis(200);
    let setup = setup_with(config);
    // The raw client never answers anything, as a peer gone behind a NAT that keeps the
    // TCP connection: its two streams' owners are told once the PING goes unanswered.
    let mut silent = raw_client(&setup);
    send(
        &mut silent,
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block(&[]),
    );
    send(
        &mut silent,
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &get_block(&[]),
    );
    for owner in [1, 2] {
        let (connection, exchange, _) = setup.server.next_request(owner);
        support::sse_head(&connection, exchange);
    }
    let mut closes = drain_reports(&setup.server, Duration::from_secs(3));
    closes.sort_by_key(|c| c.0);
    assert_eq!(
        closes,
        vec![(1, CloseReason::Timeout), (2, CloseReason::Timeout)]
    );
    drop(silent);
}

/// Sends `count` copies of one frame at once, then reads what the server answers until its
/// GOAWAY: the GOAWAY's code and how many of those frames were acknowledged before it.
fn flood(client: &mut Tls, kind: u8, payload: &[u8], count: usize) -> (Option<u32>, usize) {
    let mut burst = Vec::new();
    for _ in 0..count {
        burst.extend(frame(kind, 0, 0, payload));
    }
    let _ = client.write_all(&burst);
    let mut acks = 0;
    let goaway = until(client, |f| {
        if f.kind == kind && f.flags & ACK != 0 {
            acks += 1;
        }
        f.kind == GOAWAY
    });
    (goaway.map(|f| code(&f.payload, 4)), acks)
}

/// Floods a connection with frames of `kind`, on which owner 7 streams when `with_stream`:
/// the flood ends it with GOAWAY ENHANCE_YOUR_CALM, few of the frames are answered (those
/// past the budget never reached h2), owner 7 is told `closed`, and a victim on
/// another connection still streams and is told nothing.
fn flood_is_cut(kind: u8, payload: &[u8], with_stream: bool) {
    let setup = setup();
    let limit = ServerConfig::default()
        .h2
        .max_control_frames_per_second
        .unwrap() as usize;
    let mut victim = victim(&setup);
    let mut attacker = raw_client(&setup);
    if with_stream {
        open_sse(&setup, &mut attacker, 7);
    }
    let (goaway, acks) = flood(&mut attacker, kind, payload, 10 * limit);
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM));
    // Twice the budget at most: a one-second window may turn during the flood.
    assert!(acks <= 2 * limit, "{acks} of the flood's frames answered");
    if with_stream {
        assert_eq!(
            next_closes(&setup.server, 1),
            vec![(7, CloseReason::Closed)]
        );
    }
    victim.still_streams();
    assert!(drain_reports(&setup.server, Duration::from_millis(200)).is_empty());
}

#[test]
fn a_ping_flood_ends_the_connection_with_enhance_your_calm_and_tells_its_owner() {
    flood_is_cut(PING, b"flooding", true);
}

#[test]
fn a_settings_flood_ends_the_connection_with_enhance_your_calm() {
    flood_is_cut(SETTINGS, &[], false);
}

#[test]
fn a_client_that_pings_at_a_sane_rate_is_never_cut() {
    let mut config = ServerConfig::default();
    config.h2.max_control_frames_per_second = Some(20);
    let setup = setup_with(config);
    let mut client = raw_client(&setup);
    let (connection, exchange) = open_sse(&setup, &mut client, 1);
    // Ten a second for two and a half seconds: past the budget of one second in all, within
    // it in every second.
    for _ in 0..25 {
        assert!(answers_ping(&mut client), "a PING went unanswered");
        std::thread::sleep(Duration::from_millis(100));
    }
    connection.chunk(exchange, b"data: on\n\n").unwrap();
    let data = until(&mut client, |f| f.kind == DATA || f.kind == GOAWAY).expect("data");
    assert_eq!(data.kind, DATA);
    assert!(drain_reports(&setup.server, Duration::from_millis(100)).is_empty());
}

#[test]
fn a_client_that_pings_after_each_data_frame_is_never_cut() {
    let mut config = ServerConfig::default();
    config.h2.max_control_frames_per_second = Some(20);
    let setup = setup_with(config);
    let mut client = raw_client(&setup);
    let (connection, exchange) = open_sse(&setup, &mut client, 1);
    // A bandwidth probe (hyper's and gRPC's BDP estimators): a PING for each DATA frame
    // received, three times the budget of a second, in well under one.
    for _ in 0..60 {
        connection.chunk(exchange, b"data: on\n\n").unwrap();
        let data = until(&mut client, |f| f.kind == DATA || f.kind == GOAWAY).expect("data");
        assert_eq!(data.kind, DATA, "cut after DATA");
        assert!(
            answers_ping(&mut client),
            "a PING after DATA went unanswered"
        );
    }
    assert!(drain_reports(&setup.server, Duration::from_millis(100)).is_empty());
}
