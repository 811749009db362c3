//! Owner calls on a plain HTTP/1.1 connection write a small head or chunk to the socket
//! themselves when the connection task holds none of the queue's bytes: it is in the kernel
//! when the call returns, with no task wake-up. Nothing may overtake bytes the task holds, and
//! heartbeats still follow the stream's real idle time.

mod support;

use std::io::Read;
use std::time::Duration;

use crier_core::server::Server;
use support::{
    quiet_config, read_until, send, ChannelNotify, Event, TestServer, GET, SSE_HEADERS as HEADERS,
};

/// The runtime is only driven while the request is taken; the head and the event are sent
/// while no thread runs the connection task, so only the calls themselves can write them.
#[test]
fn a_head_and_an_event_reach_the_socket_within_the_call() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (reporter, mut events) = ChannelNotify::channel();
    let mut config = quiet_config();
    config.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::start(config, reporter, runtime.handle(), 0).expect("bind");
    let mut client = std::net::TcpStream::connect(server.local_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    send(&mut client, GET);
    let (connection, exchange) = runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(Event::Request {
                connection,
                exchange,
                ..
            })) => (connection, exchange),
            _ => panic!("expected a request"),
        }
    });
    connection.set_owner(exchange, 1).unwrap();
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    connection.chunk(exchange, b"data: now\n\n").unwrap();
    let got = read_until(&mut client, b"data: now\n\n\r\n");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    drop(client);
    // The task still sees the close once the runtime runs again.
    let closed = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), events.recv()).await });
    assert!(matches!(closed, Ok(Some(Event::Closed { owner: 1, .. }))));
}

/// Chunks too large to write through go through the task; small ones after them must wait
/// behind them, whatever the task has taken or written. A slow reader keeps the socket full
/// so every interleaving happens.
#[test]
fn small_chunks_never_overtake_large_ones_the_task_writes() {
    let server = TestServer::start(quiet_config());
    let (mut client, connection, exchange, _) = server.request(GET, 1);
    connection
        .send_chunked(exchange, 200, None, HEADERS, true)
        .unwrap();
    let writer = std::thread::spawn(move || {
        for seq in 0..300u32 {
            let size = if seq % 3 == 0 { 100 * 1024 } else { 16 };
            let mut chunk = vec![b'.'; size];
            chunk[..4].copy_from_slice(&seq.to_be_bytes());
            loop {
                match connection.chunk(exchange, &chunk) {
                    Ok(crier_core::connection::Push::Queued) => break,
                    // Full: the queue drains as the reader reads; try again shortly.
                    Ok(crier_core::connection::Push::Full) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("chunk {seq}: {e:?}"),
                }
            }
        }
        connection
    });
    // Read the head, then decode the chunked body and check each chunk's sequence number.
    let head = read_until(&mut client, b"\r\n\r\n");
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let mut body = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut next = 0u32;
    while next < 300 {
        // Slow, small reads: the server's socket stays full for most of the run.
        let n = client.read(&mut buf).expect("read");
        assert!(n > 0, "closed early at chunk {next}");
        body.extend_from_slice(&buf[..n]);
        while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
                .expect("chunk size");
            if body.len() < line_end + 2 + size + 2 {
                break;
            }
            let data = &body[line_end + 2..line_end + 2 + size];
            let seq = u32::from_be_bytes(data[..4].try_into().unwrap());
            assert_eq!(seq, next, "chunk {seq} came where {next} was due");
            next += 1;
            body.drain(..line_end + 2 + size + 2);
        }
    }
    let connection = writer.join().unwrap();
    assert!(connection.finish(exchange));
}
