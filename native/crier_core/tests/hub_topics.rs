//! Topics over real sockets, with the BEAM played by a channel: a subscribed stream lives on
//! in Rust after its owner is gone; a broadcast is one encode whose bytes every subscriber
//! gets, parsed back by a spec-exact parser; a slow subscriber is dropped with `overflow`
//! while the others go on; unsubscribe and close leave no topic behind; and `Last-Event-ID`
//! replay is exactly once and in order, even while broadcasts race a storm of reconnects.

#[path = "support/event_stream.rs"]
mod event_stream;
#[path = "support/sse_client.rs"]
mod sse_client;
mod support;

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crier_core::cluster_order::{ClusterPosition, MIN_EPOCH};
use crier_core::config::ServerConfig;
use crier_core::hub::OwnedEvent;
use crier_core::report::CloseReason;
use event_stream::Parser;
use sse_client::{serve_subscribers, Seen, SseClient};
use support::TestServer;

fn config() -> ServerConfig {
    ServerConfig {
        heartbeat: None,
        ..ServerConfig::default()
    }
}

/// `config()` with a 16 KiB write queue, which a test fills quickly.
fn small_queue_config() -> ServerConfig {
    ServerConfig {
        write_queue_bytes: 16 * 1024,
        ..config()
    }
}

fn data(text: &str) -> OwnedEvent {
    OwnedEvent {
        data: Some(text.to_string()),
        ..OwnedEvent::default()
    }
}

/// Polls `check` on the server's stats until it holds (or panics after 5 s).
fn wait_for_stats(
    server: &TestServer,
    what: &str,
    check: impl Fn(&crier_core::stats::Snapshot) -> bool,
) {
    for _ in 0..500 {
        if check(&server.server.stats()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: {:?}", server.server.stats());
}

fn next_seen(seen: &mpsc::Receiver<Seen>) -> Seen {
    seen.recv_timeout(Duration::from_secs(5))
        .expect("the owner saw nothing in time")
}

fn detached(seen: &mpsc::Receiver<Seen>) {
    match next_seen(seen) {
        Seen::Detached { .. } => {}
        _ => panic!("expected a detached subscriber"),
    }
}

fn close_count(server: &TestServer, reason: CloseReason) -> u64 {
    server
        .server
        .stats()
        .closes
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

/// Runs `body` with the owner thread serving subscribers. The owner stops when `body`
/// returns or panics (a panic must fail the test, not leave the scope waiting forever).
fn with_owner<R>(server: &TestServer, body: impl FnOnce(&mpsc::Receiver<Seen>) -> R) -> R {
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| serve_subscribers(server, &stop, tx));
        let _stop = StopOnDrop(&stop);
        body(&rx)
    })
}

#[test]
fn a_broadcast_reaches_every_subscriber_after_its_owner_is_gone() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    with_owner(&server, |seen| {
        let mut clients: Vec<SseClient> = (0..3)
            .map(|_| SseClient::connect(server.addr(), "/news", None))
            .collect();
        for _ in 0..3 {
            detached(seen);
        }
        // A stream counts as a subscriber once it holds the topic, a moment before the hub
        // task has added it: wait for both.
        wait_for_stats(&server, "three subscribers, one topic", |s| {
            s.subscribers == 3
                && s.topics == 1
                && s.streams == 3
                && hub.subscriber_count("news") == 3
        });
        assert_eq!(hub.subscriber_count("elsewhere"), 0);
        for client in &clients {
            assert!(
                client.head.starts_with("HTTP/1.1 200 OK\r\n"),
                "{}",
                client.head
            );
            assert!(client.head.contains("content-type: text/event-stream"));
            assert!(client.head.contains("transfer-encoding: chunked"));
        }
        hub.broadcast(
            "news",
            OwnedEvent {
                id: Some("n1".into()),
                event: Some("headline".into()),
                data: Some("line one\r\nline two ✓\rline three".into()),
                ..OwnedEvent::default()
            },
        )
        .unwrap();
        for client in &mut clients {
            let event = client.next_event().expect("event");
            assert_eq!(event.kind, "headline");
            assert_eq!(event.data, "line one\nline two ✓\nline three");
            assert_eq!(event.last_event_id, "n1");
        }
        // No owner is left to tell, and none was told anything.
        assert!(seen.try_recv().is_err());
    });
}

#[test]
fn a_broadcast_to_a_topic_nobody_holds_is_dropped_and_keeps_no_state() {
    let server = TestServer::start(config());
    server
        .server
        .shared()
        .hub
        .broadcast("empty", data("x"))
        .unwrap();
    // A subscribe queued after it proves the broadcast was handled: the topic count then
    // comes from the subscribe alone.
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/other", None);
        detached(seen);
        wait_for_stats(&server, "one topic", |s| s.topics == 1);
        server
            .server
            .shared()
            .hub
            .broadcast("other", data("y"))
            .unwrap();
        assert_eq!(client.next_event().unwrap().data, "y");
    });
}

#[test]
fn an_event_that_cannot_be_encoded_is_refused_before_it_is_queued() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    let bad = OwnedEvent {
        id: Some("1\n2".into()),
        data: Some("x".into()),
        ..OwnedEvent::default()
    };
    assert_eq!(
        hub.broadcast("t", bad).unwrap_err().to_string(),
        "id must not contain CR, LF or NUL"
    );
}

#[test]
fn a_slow_subscriber_is_dropped_with_overflow_and_the_others_go_on() {
    let server = TestServer::start(small_queue_config());
    let hub = &server.server.shared().hub;
    with_owner(&server, |seen| {
        // The slow client keeps its owner (as the demo handler does), so the owner is told.
        let slow =
            SseClient::connect_with(server.addr(), "/feed?keep", None, Some(4096), Parser::new());
        let kept = match next_seen(seen) {
            Seen::Kept(kept) => kept,
            _ => panic!("expected the kept stream"),
        };
        let mut fast = SseClient::connect(server.addr(), "/feed", None);
        detached(seen);
        // A quarter of the queue: the fast client may read an event before its task has
        // counted it as written, so two events can sit in its queue's books at once.
        let payload = "x".repeat(4 * 1024);
        let mut overflowed = None;
        // Lockstep: the fast client reads each event before the next goes out, so only the
        // client that reads nothing can fall behind. Kernel buffers fill after a few MB.
        for n in 0..20_000 {
            hub.broadcast("feed", data(&format!("{n} {payload}")))
                .unwrap();
            let event = fast.next_event().expect("the fast client was dropped");
            assert!(event.data.starts_with(&format!("{n} ")));
            if let Ok(Seen::Closed {
                owner,
                exchange,
                reason,
            }) = seen.try_recv()
            {
                overflowed = Some((owner, exchange, reason));
                break;
            }
        }
        assert_eq!(
            overflowed,
            Some((kept.owner, kept.exchange, CloseReason::Overflow))
        );
        assert_eq!(close_count(&server, CloseReason::Overflow), 1);
        // The stream is closed for its owner too, and the topic goes on without it.
        assert!(kept.connection.chunk(kept.exchange, b"late").is_err());
        hub.broadcast("feed", data("after")).unwrap();
        assert_eq!(fast.next_event().unwrap().data, "after");
        wait_for_stats(&server, "one subscriber left", |s| s.subscribers == 1);
        assert_eq!(hub.subscriber_count("feed"), 1);
        drop(slow);
    });
}

#[test]
fn unsubscribe_stops_delivery_and_the_last_one_ends_an_ownerless_stream() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/a,b?keep", None);
        let kept = match next_seen(seen) {
            Seen::Kept(kept) => kept,
            _ => panic!("expected the kept stream"),
        };
        wait_for_stats(&server, "one subscriber of two topics", |s| {
            s.subscribers == 1 && s.topics == 2
        });
        // The owner hands the stream over and goes away.
        kept.connection.finish(kept.exchange);
        kept.connection.owner_gone(kept.exchange);
        hub.unsubscribe(kept.connection.as_ref(), kept.exchange, "a")
            .unwrap();
        hub.broadcast("a", data("to a")).unwrap();
        hub.broadcast("b", data("to b")).unwrap();
        assert_eq!(client.next_event().unwrap().data, "to b");
        wait_for_stats(&server, "topic a gone", |s| s.topics == 1);
        assert_eq!(
            (hub.subscriber_count("a"), hub.subscriber_count("b")),
            (0, 1)
        );
        hub.unsubscribe(kept.connection.as_ref(), kept.exchange, "b")
            .unwrap();
        // Nobody can feed it any more: the response ends with its last chunk.
        assert_eq!(client.read_to_end(), []);
        assert!(client.ended);
        wait_for_stats(&server, "no subscriber, no topic, no stream", |s| {
            s.subscribers == 0 && s.topics == 0 && s.streams == 0
        });
    });
}

#[test]
fn a_client_that_leaves_is_removed_from_its_topics() {
    let server = TestServer::start(config());
    with_owner(&server, |seen| {
        let clients: Vec<SseClient> = (0..2)
            .map(|_| SseClient::connect(server.addr(), "/x,y", None))
            .collect();
        detached(seen);
        detached(seen);
        let hub = &server.server.shared().hub;
        // The hub counts a subscriber when it takes the subscribe, after the stats gauge.
        wait_for_stats(&server, "two subscribers in both topics", |s| {
            s.subscribers == 2
                && s.topics == 2
                && (hub.subscriber_count("x"), hub.subscriber_count("y")) == (2, 2)
        });
        drop(clients);
        // Seen by the read side at once, with no broadcast needed to find out.
        wait_for_stats(&server, "everything gone", |s| {
            s.subscribers == 0 && s.topics == 0 && s.connections == 0 && s.tasks == 0
        });
        assert_eq!(
            (hub.subscriber_count("x"), hub.subscriber_count("y")),
            (0, 0)
        );
        assert_eq!(close_count(&server, CloseReason::Closed), 2);
    });
}

#[test]
fn replay_sends_what_was_missed_once_then_the_live_events() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    hub.set_replay("r", 100);
    for n in 1..=10 {
        hub.broadcast("r", data(&format!("e{n}"))).unwrap();
    }
    with_owner(&server, |seen| {
        // Auto ids are the topic's sequence numbers.
        let mut client = SseClient::connect(server.addr(), "/r", Some("4"));
        detached(seen);
        for n in 5..=10 {
            let event = client.next_event().unwrap();
            assert_eq!(
                (event.last_event_id.as_str(), event.data.as_str()),
                (n.to_string().as_str(), format!("e{n}").as_str())
            );
        }
        hub.broadcast("r", data("e11")).unwrap();
        let live = client.next_event().unwrap();
        assert_eq!(
            (live.last_event_id.as_str(), live.data.as_str()),
            ("11", "e11")
        );

        // Up to date: nothing replayed, the next live event first.
        let mut current = SseClient::connect(server.addr(), "/r", Some("11"));
        detached(seen);
        hub.broadcast("r", data("e12")).unwrap();
        assert_eq!(current.next_event().unwrap().data, "e12");
        assert_eq!(client.next_event().unwrap().data, "e12");

        // An id the ring never held: the whole ring, the most that can still be given.
        let mut stranger = SseClient::connect(server.addr(), "/r", Some("nope"));
        detached(seen);
        let first = stranger.next_event().unwrap();
        assert_eq!(first.data, "e1");
    });
}

#[test]
fn replay_after_the_ring_wrapped_and_with_ids_given_by_the_app() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    hub.set_replay("small", 3);
    for n in 1..=10 {
        hub.broadcast("small", data(&n.to_string())).unwrap();
    }
    hub.set_replay("named", 10);
    for id in ["alpha", "beta", "gamma"] {
        hub.broadcast(
            "named",
            OwnedEvent {
                id: Some(id.into()),
                data: Some(id.into()),
                ..OwnedEvent::default()
            },
        )
        .unwrap();
    }
    with_owner(&server, |seen| {
        let mut behind = SseClient::connect(server.addr(), "/small", Some("2"));
        detached(seen);
        let got: Vec<String> = (0..3).map(|_| behind.next_event().unwrap().data).collect();
        assert_eq!(got, ["8", "9", "10"]);

        let mut named = SseClient::connect(server.addr(), "/named", Some("beta"));
        detached(seen);
        let event = named.next_event().unwrap();
        assert_eq!(
            (event.data.as_str(), event.last_event_id.as_str()),
            ("gamma", "gamma")
        );
    });
}

#[test]
fn replay_across_topics_is_merged_in_publish_order() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    hub.set_replay("a", 10);
    hub.set_replay("b", 10);
    // Ids come from one hub-wide sequence: a gets 1, 3, 5; b gets 2, 4.
    for n in 1..=5 {
        let topic = if n % 2 == 1 { "a" } else { "b" };
        hub.broadcast(topic, data(&format!("{topic}{n}"))).unwrap();
    }
    let read = |client: &mut SseClient, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|_| {
                let event = client.next_event().unwrap();
                (event.last_event_id, event.data)
            })
            .collect()
    };
    let pair = |id: &str, data: &str| (id.to_string(), data.to_string());
    with_owner(&server, |seen| {
        let mut both = SseClient::connect(server.addr(), "/b,a", Some("2"));
        detached(seen);
        assert_eq!(
            read(&mut both, 3),
            [pair("3", "a3"), pair("4", "b4"), pair("5", "a5")]
        );
        // An id from topic a, reconnecting to b alone: b's events after that point.
        let mut only_b = SseClient::connect(server.addr(), "/b", Some("3"));
        detached(seen);
        assert_eq!(read(&mut only_b, 1), [pair("4", "b4")]);
        // Live events follow on both, in order.
        hub.broadcast("a", data("a6")).unwrap();
        hub.broadcast("b", data("b7")).unwrap();
        assert_eq!(read(&mut both, 2), [pair("6", "a6"), pair("7", "b7")]);
        assert_eq!(read(&mut only_b, 1), [pair("7", "b7")]);
    });
}

#[test]
fn a_replay_larger_than_the_write_queue_is_delivered_whole() {
    // 2,000 events of about 1 KiB replayed into a 16 KiB queue: replay is bounded by the ring,
    // not by the room live events get, so the reconnecting client is not dropped.
    let server = TestServer::start(small_queue_config());
    let hub = &server.server.shared().hub;
    hub.set_replay("big", 2_000);
    let payload = "p".repeat(1000);
    for n in 1..=2_000 {
        hub.broadcast("big", data(&format!("{n} {payload}")))
            .unwrap();
    }
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/big", Some("0"));
        detached(seen);
        for n in 1..=2_000 {
            let event = client.next_event().expect("dropped during replay");
            assert_eq!(event.last_event_id, n.to_string());
        }
        hub.broadcast("big", data("live")).unwrap();
        assert_eq!(client.next_event().unwrap().data, "live");
        assert_eq!(close_count(&server, CloseReason::Overflow), 0);
    });
}

/// The race the hub's single actor exists for: a publisher broadcasts without pause, to two
/// topics in turn, while clients subscribed to both drop their connection at arbitrary points
/// and come back with `Last-Event-ID`. Every client must see every event, exactly once, in
/// the order published: ids 1..=N with no gap and no duplicate, however its reconnects
/// interleave with the broadcasts, and across both topics' rings.
#[test]
fn replay_is_exactly_once_and_in_order_while_broadcasts_race_reconnects() {
    const EVENTS: u64 = 20_000;
    const CLIENTS: usize = 4;
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    hub.set_replay("race1", EVENTS as usize);
    hub.set_replay("race2", EVENTS as usize);
    let reconnects = with_owner(&server, |_seen| {
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let addr = server.addr();
                    scope.spawn(move || {
                        let mut parser = Parser::new();
                        // "0" is no id the ring holds: the first connection gets the ring
                        // from its start, so every client expects exactly 1..=EVENTS.
                        let mut last = "0".to_string();
                        let mut expected = 1u64;
                        let mut connections = 0u64;
                        while expected <= EVENTS {
                            let mut client = SseClient::connect_with(
                                addr,
                                "/race1,race2",
                                Some(&last),
                                None,
                                parser,
                            );
                            connections += 1;
                            // Leave after a varying number of events, mid-stream.
                            let budget = 1 + (connections * 7 + c as u64 * 13) % 97;
                            for _ in 0..budget {
                                let Some(event) = client.next_event() else {
                                    break;
                                };
                                let id: u64 = event.last_event_id.parse().expect("numeric id");
                                assert_eq!(id, expected, "client {c}: gap or duplicate");
                                assert_eq!(event.data, id.to_string());
                                expected += 1;
                                if expected > EVENTS {
                                    break;
                                }
                            }
                            last = client.parser.last_event_id.clone();
                            parser = std::mem::take(&mut client.parser);
                        }
                        connections
                    })
                })
                .collect();
            let publisher = scope.spawn(|| {
                for n in 1..=EVENTS {
                    let topic = if n % 2 == 0 { "race2" } else { "race1" };
                    hub.broadcast(topic, data(&n.to_string())).unwrap();
                    if n % 8 == 0 {
                        // Pace the publisher so it races the reconnects over the whole run
                        // instead of finishing before the first one.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            });
            publisher.join().unwrap();
            readers
                .into_iter()
                .map(|r| r.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    // Each client reconnected hundreds of times while the publisher ran.
    assert!(reconnects.iter().all(|&n| n > 100), "{reconnects:?}");
    wait_for_stats(&server, "all clients gone", |s| s.subscribers == 0);
}

/// Reports requests to a std channel; owners are `()`. For a server on a runtime that only
/// runs when the test drives it.
struct Inbox(
    mpsc::Sender<(
        std::sync::Arc<crier_core::connection::Connection<Inbox>>,
        u64,
    )>,
);

impl crier_core::reporter::Reporter for Inbox {
    type Owner = ();

    fn request(
        &self,
        connection: &std::sync::Arc<crier_core::connection::Connection<Self>>,
        exchange: u64,
        _head: crier_core::http::RequestHead,
    ) {
        let _ = self.0.send((connection.clone(), exchange));
    }

    fn closed(&self, _owner: &(), _exchange: u64, _reason: CloseReason) {}

    fn wake(&self, _owner: &(), _exchange: u64, _what: crier_core::report::Wake) {}
}

async fn read_until_driven(socket: &mut tokio::net::TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
    use tokio::io::AsyncReadExt;
    let deadline = Duration::from_secs(5);
    tokio::time::timeout(deadline, async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("nothing in time");
}

/// A server on a current-thread runtime, which runs only inside `block_on`: between two
/// `block_on` calls no task can move, so whatever a call does then, it did without waiting
/// for the fan-out. One client is subscribed to topic `t`, its owner gone.
struct Driven {
    server: crier_core::server::Server<Inbox>,
    socket: tokio::net::TcpStream,
    got: Vec<u8>,
    runtime: tokio::runtime::Runtime,
}

fn driven_subscriber() -> Driven {
    use tokio::io::AsyncWriteExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let server =
        crier_core::server::Server::start(config(), Inbox(tx), runtime.handle(), 0).unwrap();
    let hub = &server.shared().hub;
    let addr = server.local_addr();
    let mut got = Vec::new();
    let socket = runtime.block_on(async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /t HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let (connection, exchange) = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(request) = rx.try_recv() {
                    return request;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("no request");
        connection.set_owner(exchange, ()).unwrap();
        connection
            .send_chunked(exchange, 200, None, sse_client::SSE_HEADERS, true)
            .unwrap();
        hub.subscribe(&connection, exchange, &["t".to_string()], None)
            .unwrap();
        connection.finish(exchange);
        connection.owner_gone(exchange);
        read_until_driven(&mut socket, &mut got, b"\r\n\r\n").await;
        // Let the hub take the subscribe before the runtime stops.
        tokio::time::timeout(Duration::from_secs(5), async {
            while server.stats().topics == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("subscribe not taken");
        socket
    });
    Driven {
        server,
        socket,
        got,
        runtime,
    }
}

impl Driven {
    /// Broadcasts `count` events with data `0`, `1`, ... on topic `t`. The runtime does not
    /// run meanwhile, so nothing is fanned out yet.
    fn broadcast_numbered(&self, count: u32) {
        for n in 0..count {
            self.server
                .shared()
                .hub
                .broadcast("t", data(&n.to_string()))
                .unwrap();
        }
    }

    /// Runs the runtime until the subscriber has read `needle`.
    fn run_until_read(&mut self, needle: &[u8]) {
        let Driven {
            runtime,
            socket,
            got,
            ..
        } = self;
        runtime.block_on(read_until_driven(socket, got, needle));
    }
}

#[test]
fn broadcast_returns_before_any_fan_out_has_run() {
    let mut driven = driven_subscriber();
    let written = driven.server.stats().bytes_written;
    driven.broadcast_numbered(1_000);
    assert_eq!(
        driven.server.stats().bytes_written,
        written,
        "nothing ran yet"
    );
    driven.run_until_read(b"data: 999\n\n");
}

#[test]
fn queued_broadcasts_reach_a_subscriber_in_one_write() {
    let mut driven = driven_subscriber();
    let writes = driven.server.stats().writes;
    driven.broadcast_numbered(200);
    driven.run_until_read(b"data: 199\n\n");
    assert_eq!(
        driven.server.stats().writes - writes,
        1,
        "200 queued events, one writev"
    );
}

#[test]
fn a_subscribe_with_repeated_and_held_topics_holds_each_once() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/a?keep", None);
        let kept = match next_seen(seen) {
            Seen::Kept(kept) => kept,
            _ => panic!("expected the kept stream"),
        };
        let topics: Vec<String> = ["a", "b", "b", "c", "a"].map(String::from).to_vec();
        hub.subscribe(&kept.connection, kept.exchange, &topics, None)
            .unwrap();
        wait_for_stats(&server, "one subscriber of three topics", |s| {
            s.subscribers == 1 && s.topics == 3
        });
        let counts = ["a", "b", "c"].map(|t| hub.subscriber_count(t));
        assert_eq!(counts, [1, 1, 1]);
        // One event per topic reaches it once, whatever the repeats.
        for topic in ["a", "b", "c"] {
            hub.broadcast(topic, data(topic)).unwrap();
        }
        let got: Vec<String> = (0..3).map(|_| client.next_event().unwrap().data).collect();
        assert_eq!(got, ["a", "b", "c"]);
    });
}

/// Finding 1 of issue 10, deterministic: broadcasts that returned before the stop, still
/// queued for the hub when it comes, all reach the subscriber ahead of the final event.
#[test]
fn shutdown_delivers_every_broadcast_that_returned_before_the_final_event() {
    let mut driven = driven_subscriber();
    driven.broadcast_numbered(200);
    driven.server.shutdown(Some(bytes::Bytes::from_static(
        b"event: bye\ndata: stop\n\n",
    )));
    driven.run_until_read(b"0\r\n\r\n");
    let mut parser = Parser::new();
    let body_at = driven
        .got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    parser.feed(&dechunk(&driven.got[body_at..]));
    let events: Vec<String> = parser
        .take()
        .into_iter()
        .map(|e| format!("{}:{}", e.kind, e.data))
        .collect();
    let mut want: Vec<String> = (0..200).map(|n| format!("message:{n}")).collect();
    want.push("bye:stop".to_string());
    assert_eq!(events, want);
}

/// Finding 1 of issue 10, as it was found: many subscribers, broadcasts that returned, an
/// immediate stop. Every client gets every event, then the final one, then the last chunk.
#[test]
fn shutdown_right_after_broadcasts_loses_none_of_them() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    with_owner(&server, |seen| {
        let clients: Vec<SseClient> = (0..100)
            .map(|_| SseClient::connect(server.addr(), "/all", None))
            .collect();
        for _ in 0..100 {
            detached(seen);
        }
        wait_for_stats(&server, "100 subscribers", |_| {
            hub.subscriber_count("all") == 100
        });
        for n in 0..200 {
            hub.broadcast("all", data(&n.to_string())).unwrap();
        }
        server.server.shutdown(Some(bytes::Bytes::from_static(
            b"event: bye\ndata: stop\n\n",
        )));
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                std::thread::spawn(move || {
                    let events = client.read_to_end();
                    (events, client.ended)
                })
            })
            .collect();
        for reader in readers {
            let (events, ended) = reader.join().unwrap();
            let got: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
            let mut want: Vec<String> = (0..200).map(|n| n.to_string()).collect();
            want.push("stop".to_string());
            assert_eq!(got, want);
            assert_eq!(events.last().unwrap().kind, "bye");
            assert!(ended);
        }
    });
}

/// Finding 5 of issue 10: bursts twice the size of the write queue, to clients that read as
/// fast as loopback allows, drop none of them: overflow is measured against what the socket
/// has not taken, and the writers get their turn between batches.
#[test]
fn bursts_larger_than_the_queue_do_not_drop_fast_readers() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    const CLIENTS: usize = 4;
    const BURSTS: usize = 10;
    const PER_BURST: usize = 8;
    // 8 events of 64 KiB: twice the default 256 KiB write queue.
    let payload = "p".repeat(64 * 1024);
    with_owner(&server, |seen| {
        let clients: Vec<SseClient> = (0..CLIENTS)
            .map(|_| SseClient::connect(server.addr(), "/burst", None))
            .collect();
        for _ in 0..CLIENTS {
            detached(seen);
        }
        wait_for_stats(&server, "4 subscribers", |_| {
            hub.subscriber_count("burst") == CLIENTS
        });
        let (read_tx, read_rx) = mpsc::channel();
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let read_tx = read_tx.clone();
                std::thread::spawn(move || {
                    for _ in 0..BURSTS * PER_BURST {
                        match client.next_event() {
                            Some(event) => read_tx.send(Some(event.data.len())).unwrap(),
                            None => return read_tx.send(None).unwrap(),
                        }
                    }
                })
            })
            .collect();
        for burst in 0..BURSTS {
            for _ in 0..PER_BURST {
                hub.broadcast("burst", data(&payload)).unwrap();
            }
            for _ in 0..CLIENTS * PER_BURST {
                let got = read_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a client read nothing in time");
                assert_eq!(
                    got,
                    Some(payload.len()),
                    "a client was dropped in burst {burst}: {:?}",
                    server.server.stats()
                );
            }
        }
        for reader in readers {
            reader.join().unwrap();
        }
        assert_eq!(close_count(&server, CloseReason::Overflow), 0);
    });
}

/// The body of a chunked response, its framing removed.
fn dechunk(mut framed: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = framed.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&framed[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&framed[line_end + 2..line_end + 2 + size]);
        framed = &framed[line_end + 2 + size + 2..];
    }
}

/// Position `seq` of the `epoch`-th epoch after the first a sequencer can take.
fn at(epoch: u64, seq: u64) -> ClusterPosition {
    ClusterPosition {
        epoch: MIN_EPOCH + epoch,
        seq,
    }
}

/// Broadcasts `e<seq>` at each position of `epoch` in `seqs` to `topic`, as the cluster's
/// sequencer would have numbered it.
fn broadcast_sequenced(server: &TestServer, topic: &str, epoch: u64, seqs: RangeInclusive<u64>) {
    for seq in seqs {
        server
            .server
            .shared()
            .hub
            .broadcast_sequenced(topic, data(&format!("e{seq}")), at(epoch, seq))
            .unwrap();
    }
}

fn id_and_data(event: &event_stream::Dispatched) -> (String, String) {
    (event.last_event_id.clone(), event.data.clone())
}

#[test]
fn a_cluster_event_keeps_its_position_as_id_and_replays_exactly_after_it() {
    let server = TestServer::start(config());
    server.server.shared().hub.set_replay("c", 100);
    broadcast_sequenced(&server, "c", 7, 1..=5);
    // A late message of a former sequencer, and one received twice: both dropped.
    broadcast_sequenced(&server, "c", 6, 9..=9);
    broadcast_sequenced(&server, "c", 7, 5..=5);
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/c", Some(&at(7, 2).id()));
        detached(seen);
        for seq in 3..=5 {
            let event = client.next_event().unwrap();
            assert_eq!(id_and_data(&event), (at(7, seq).id(), format!("e{seq}")));
        }
        broadcast_sequenced(&server, "c", 7, 6..=6);
        assert_eq!(
            id_and_data(&client.next_event().unwrap()),
            (at(7, 6).id(), "e6".to_string())
        );
    });
}

#[test]
fn ids_the_application_gives_replay_as_before_even_on_cluster_events() {
    let server = TestServer::start(config());
    let hub = &server.server.shared().hub;
    hub.set_replay("app", 100);
    // An id of a cluster id's shape that the application gave: looked up as its id.
    let shaped = at(7, 1).id();
    for (id, position) in [("order-42", at(7, 1)), (shaped.as_str(), at(7, 2))] {
        let event = OwnedEvent {
            id: Some(id.to_string()),
            ..data(id)
        };
        hub.broadcast_sequenced("app", event, position).unwrap();
    }
    hub.broadcast("app", data("local")).unwrap();
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/app", Some("order-42"));
        detached(seen);
        assert_eq!(client.next_event().unwrap().data, shaped);
        assert_eq!(client.next_event().unwrap().data, "local");
        let mut client = SseClient::connect(server.addr(), "/app", Some(&shaped));
        detached(seen);
        assert_eq!(client.next_event().unwrap().data, "local");
    });
}

#[test]
fn a_client_ahead_of_the_node_waits_for_what_it_has_seen() {
    let server = TestServer::start(config());
    server.server.shared().hub.set_replay("w", 100);
    broadcast_sequenced(&server, "w", 7, 1..=3);
    with_owner(&server, |seen| {
        // The client saw 7-5 on a node the sequencer reached first: 4 and 5 are on their way.
        let mut client = SseClient::connect(server.addr(), "/w", Some(&at(7, 5).id()));
        detached(seen);
        broadcast_sequenced(&server, "w", 7, 4..=6);
        let event = client.next_event().unwrap();
        assert_eq!(id_and_data(&event), (at(7, 6).id(), "e6".to_string()));
    });
}

#[test]
fn an_id_the_node_cannot_vouch_for_starts_live_after_a_crier_gap_event() {
    let server = TestServer::start(config());
    server.server.shared().hub.set_replay("g", 3);
    broadcast_sequenced(&server, "g", 7, 1..=10);
    with_owner(&server, |seen| {
        // Older than the ring (it holds 8..=10), and of an epoch this node never had.
        for (id, reason, next) in [(at(7, 4), "behind", 11), (at(6, 99), "epoch", 12)] {
            let mut client = SseClient::connect(server.addr(), "/g", Some(&id.id()));
            detached(seen);
            let gap = client.next_event().unwrap();
            let current = at(7, next - 1).id();
            assert_eq!(
                (
                    gap.kind.as_str(),
                    gap.data.as_str(),
                    gap.last_event_id.as_str()
                ),
                ("crier-gap", reason, current.as_str())
            );
            // Then live, with nothing replayed.
            broadcast_sequenced(&server, "g", 7, next..=next);
            assert_eq!(client.next_event().unwrap().data, format!("e{next}"));
        }
    });
}

#[test]
fn live_streams_hear_of_a_new_epoch_before_its_first_event() {
    let server = TestServer::start(config());
    with_owner(&server, |seen| {
        let mut client = SseClient::connect(server.addr(), "/live", None);
        detached(seen);
        wait_for_stats(&server, "one subscriber", |s| s.subscribers == 1);
        broadcast_sequenced(&server, "live", 7, 1..=2);
        broadcast_sequenced(&server, "live", 9, 1..=1);
        let seen: Vec<_> = (0..4)
            .map(|_| {
                let event = client.next_event().unwrap();
                (event.kind, event.data, event.last_event_id)
            })
            .collect();
        let owned =
            |kind: &str, data: &str, id: ClusterPosition| (kind.into(), data.into(), id.id());
        assert_eq!(
            seen,
            vec![
                owned("message", "e1", at(7, 1)),
                owned("message", "e2", at(7, 2)),
                owned("crier-gap", "epoch", at(9, 0)),
                owned("message", "e1", at(9, 1)),
            ]
        );
    });
}
