//! Several worker threads (thread-per-core): each accepts on its own socket of a listener and
//! serves its connections to the end; shutdown reaches every worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, config, http_config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::workers::Workers;
use weir_testkit::{Backend, Ending, H1Client, HttpBackend, read_to_end_classified};

/// Connections opened per test: SO_REUSEPORT hashes each to one worker's socket, so with two
/// workers the chance that all of them land on the same one is 2^-63. A worker that does not
/// accept leaves about half of them unanswered.
const CONNECTIONS: usize = 64;

#[tokio::test]
async fn every_worker_serves_http_and_shutdown_closes_every_connection() {
    let backend = HttpBackend::start("a").await;
    let workers = Workers::start(2, true).unwrap();
    let mut h = Harness::start_on(
        &http_config(&[backend.addr()], "", "", NO_CHECK),
        &workers.handles(),
    )
    .await;

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut client = H1Client::connect(h.addr).await.unwrap();
        let resp = within(5, client.get("/", &[]))
            .await
            .expect("every worker answers");
        assert_eq!(resp.status, 200);
        clients.push(client);
    }
    // Keep-alive: each connection's second request is served by the same worker, from its
    // own pool of server connections.
    for client in &mut clients {
        let resp = within(5, client.get("/again", &[])).await.unwrap();
        assert_eq!(resp.status, 200);
    }
    assert_eq!(backend.requests(), 2 * CONNECTIONS);

    // Each client reads to the end and then closes, as the drain after weir's FIN expects.
    let endings: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(read_to_end_classified(client.into_inner())))
        .collect();
    let report = h.shutdown(Duration::from_secs(5)).await;
    assert!(!report.forced, "idle keep-alive connections close at once");
    for ending in endings {
        let (rest, ending) = within(5, ending).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            ending,
            Ending::Fin,
            "every worker closes its connections with FIN"
        );
    }
    assert!(
        TcpStream::connect(h.addr).await.is_err(),
        "no worker listens after shutdown"
    );
    assert_eq!(backend.resets(), 0);
    workers.stop();
}

#[tokio::test]
async fn every_worker_forwards_tcp() {
    let backend = Backend::builder().start().await;
    let workers = Workers::start(2, true).unwrap();
    let mut h = Harness::start_on(
        &config(&[backend.addr()], "", "", NO_CHECK),
        &workers.handles(),
    )
    .await;
    let mut streams = Vec::new();
    for i in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        let msg = format!("hello {i}\n");
        stream.write_all(msg.as_bytes()).await.unwrap();
        let mut echo = vec![0; msg.len()];
        within(5, stream.read_exact(&mut echo))
            .await
            .expect("every worker forwards");
        assert_eq!(echo, msg.as_bytes());
        streams.push(stream);
    }
    drop(streams);
    for _ in 0..CONNECTIONS {
        h.record().await;
    }
    h.shutdown(Duration::from_secs(1)).await;
    workers.stop();
}

/// Each worker batches its small sends to servers (`runtime.io_uring`): many small writes in a
/// row, then a half-close, reach the server whole, in order, and before the FIN (the echo
/// coming back proves it).
#[tokio::test]
async fn batched_small_writes_keep_their_order_and_come_before_the_fin() {
    let backend = Backend::builder().start().await; // echoes until EOF, then FIN
    let workers = Workers::start(1, true).unwrap();
    let mut h = Harness::start_on(
        &config(&[backend.addr()], "", "", NO_CHECK),
        &workers.handles(),
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(TcpStream::connect(h.addr).await.unwrap());
    }
    let mut sent = vec![Vec::new(); streams.len()];
    for round in 0..200 {
        for (i, stream) in streams.iter_mut().enumerate() {
            let msg = format!("{i}:{round};");
            stream.write_all(msg.as_bytes()).await.unwrap();
            sent[i].extend_from_slice(msg.as_bytes());
        }
    }
    let endings: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                stream.shutdown().await.unwrap();
                read_to_end_classified(stream).await
            })
        })
        .collect();
    for (i, ending) in endings.into_iter().enumerate() {
        let (echo, ending) = within(5, ending).await.unwrap();
        assert_eq!(echo, sent[i], "connection {i}: every byte, in order");
        assert_eq!(
            ending,
            Ending::Fin,
            "connection {i}: the FIN after the bytes"
        );
    }
    for _ in 0..sent.len() {
        let record = h.record().await;
        assert_eq!(record.bytes_in, record.bytes_out);
    }
    h.shutdown(Duration::from_secs(1)).await;
    workers.stop();
}

#[tokio::test]
async fn a_second_instance_cannot_share_a_port_through_reuseport() {
    let backend = HttpBackend::start("a").await;
    let workers = Workers::start(2, true).unwrap();
    let first = Harness::start_on(
        &http_config(&[backend.addr()], "", "", NO_CHECK),
        &workers.handles(),
    )
    .await;
    let toml = common::web_config(
        "http",
        &first.addr.to_string(),
        &[backend.addr()],
        "",
        "",
        NO_CHECK,
    );
    let loaded = weir_config::parse(&toml, "second.toml").unwrap();
    let (tx, _records) = tokio::sync::mpsc::unbounded_channel();
    let sink = std::sync::Arc::new(weir_core::access_log::ChannelSink(tx));
    let second = weir_core::Proxy::start_on(&loaded.config, sink, &workers.handles()).await;
    match second {
        Err(weir_core::StartError::Bind { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("a second proxy joined the first one's port"),
    }
    drop(first);
    workers.stop();
}
