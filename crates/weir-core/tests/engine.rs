//! TCP tunnels through a worker's io_uring engine (`net::ring`), which the test workers run:
//! small messages both ways, pipelined bytes that turn to bulk mid-stream and go back to the
//! copy path, many connections sharing the engine's buffers at once, and slots reused by
//! connection after connection. The attribution and half-close tests run through it too.
//! Every wait is bounded, so that a tunnel the engine loses fails its test instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, NO_CHECK, config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Backend, Behavior, Ending, blob_bytes, read_to_end_classified};

/// Sends `rounds` messages of varying sizes (1 byte to 12 KiB) and checks each echo; returns
/// the bytes sent.
async fn echo_rounds(client: &mut TcpStream, rounds: usize, seed: u64) -> usize {
    let data = blob_bytes(12 * 1024 + rounds, seed);
    let mut total = 0;
    let mut echo = vec![0u8; 12 * 1024];
    for round in 0..rounds {
        let len = 1 + (round * 997 + seed as usize) % (12 * 1024);
        let message = &data[round..round + len];
        client.write_all(message).await.unwrap();
        client.read_exact(&mut echo[..len]).await.unwrap();
        assert!(echo[..len] == *message, "round {round}: the echo differs");
        total += len;
    }
    total
}

#[tokio::test]
async fn small_messages_both_ways_arrive_whole_in_order_and_counted() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    let sent = within(10, echo_rounds(&mut client, 500, 3)).await;
    client.shutdown().await.unwrap();
    let (rest, ending) = within(10, read_to_end_classified(&mut client)).await;
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Fin);

    let r = h.record().await;
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (EndBy::Client, EndHow::Fin, EndPhase::Tunnel),
        "{r:?}"
    );
    assert_eq!((r.bytes_in, r.bytes_out), (sent as u64, sent as u64));
}

#[tokio::test]
async fn pipelined_bytes_turn_to_bulk_mid_stream_and_arrive_in_order() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    // Small writes first (the engine's), then a flood that fills its buffers (bulk, handed
    // back to the copy path), all one stream.
    let upload = blob_bytes(4 * 1024 * 1024, 21);
    let writer = {
        let upload = upload.clone();
        tokio::spawn(async move {
            for chunk in upload[..64 * 1024].chunks(100) {
                wr.write_all(chunk).await.unwrap();
            }
            wr.write_all(&upload[64 * 1024..]).await.unwrap();
            wr.shutdown().await.unwrap();
        })
    };
    let mut echoed = Vec::with_capacity(upload.len());
    within(10, rd.read_to_end(&mut echoed)).await.unwrap();
    within(10, writer).await.unwrap();
    assert_eq!(echoed.len(), upload.len());
    assert!(echoed == upload, "the echo differs");

    let r = h.record().await;
    assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
    assert_eq!(
        (r.bytes_in, r.bytes_out),
        (upload.len() as u64, upload.len() as u64)
    );
}

#[tokio::test]
async fn many_connections_at_once_share_the_engine() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let addr = h.addr;
    // More connections than the engine has buffers (512), each with messages in flight.
    let clients: Vec<_> = (0..600u64)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = TcpStream::connect(addr).await.unwrap();
                let sent = echo_rounds(&mut client, 20, i).await;
                client.shutdown().await.unwrap();
                let (rest, ending) = read_to_end_classified(&mut client).await;
                assert!(rest.is_empty());
                assert_eq!(ending, Ending::Fin);
                sent
            })
        })
        .collect();
    let mut total = 0;
    for client in clients {
        total += within(20, client).await.unwrap();
    }
    let mut counted = 0;
    for _ in 0..600 {
        let r = h.record().await;
        assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
        assert_eq!(r.bytes_in, r.bytes_out);
        counted += r.bytes_in as usize;
    }
    assert_eq!(counted, total);
}

#[tokio::test]
async fn one_connection_after_another_reuses_the_engine_slots() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    for i in 0..300u64 {
        let mut client = TcpStream::connect(h.addr).await.unwrap();
        let sent = within(10, echo_rounds(&mut client, 3, i)).await;
        client.shutdown().await.unwrap();
        let (rest, ending) = within(10, read_to_end_classified(&mut client)).await;
        assert!(rest.is_empty() && ending == Ending::Fin, "connection {i}");
        let r = h.record().await;
        assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
        assert_eq!((r.bytes_in, r.bytes_out), (sent as u64, sent as u64), "{i}");
    }
}
