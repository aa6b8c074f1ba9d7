//! The attribution matrix (SPEC §8): one test per way a TCP connection can end, each checking
//! the logged `end_by` / `end_how` / `end_phase`, and what each side saw on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{
    Backend, Behavior, Ending, Mode, RecordingBackend, read_to_end_classified, refusing_addr,
    unresponsive_listener,
};

fn assert_end(r: &weir_core::end::ConnRecord, by: EndBy, how: EndHow, phase: EndPhase) {
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (by, how, phase),
        "record: {r:?}"
    );
}

#[tokio::test]
async fn client_fin() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).await.unwrap();
    client.shutdown().await.unwrap();
    let (rest, ending) = read_to_end_classified(&mut client).await;
    assert!(rest.is_empty());
    assert_eq!(
        ending,
        Ending::Fin,
        "the server's FIN is passed on as a FIN"
    );

    let r = h.record().await;
    assert_end(&r, EndBy::Client, EndHow::Fin, EndPhase::Tunnel);
    assert_eq!((r.bytes_in, r.bytes_out), (5, 5));
    assert_eq!(r.server.as_deref(), Some("s0"));
    assert!(r.connect_time.is_some());
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn client_rst_is_passed_on_to_the_server() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    assert!(backend.wait_accepted(1, Duration::from_secs(5)).await);
    weir_testkit::client::reset(client).unwrap();

    let r = h.record().await;
    assert_end(&r, EndBy::Client, EndHow::Rst, EndPhase::Tunnel);
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(
        backend.endings(),
        vec![Ending::Rst],
        "the client's reset reaches the server"
    );
}

#[tokio::test]
async fn client_rst_is_not_passed_on_when_propagation_is_off() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut h = Harness::start(&config(
        &[backend.addr()],
        "propagate_reset = false",
        "",
        NO_CHECK,
    ))
    .await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    assert!(backend.wait_accepted(1, Duration::from_secs(5)).await);
    weir_testkit::client::reset(client).unwrap();

    let r = h.record().await;
    assert_end(&r, EndBy::Client, EndHow::Rst, EndPhase::Tunnel);
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(
        backend.endings(),
        vec![Ending::Fin],
        "weir closes the server side with FIN instead"
    );
}

#[tokio::test]
async fn server_fin() {
    let backend = Backend::builder()
        .behavior(Behavior::SendThenFin(b"bye\n".to_vec()))
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    let (data, ending) = read_to_end_classified(&mut client).await;
    assert_eq!((data.as_slice(), ending), (&b"bye\n"[..], Ending::Fin));
    client.shutdown().await.unwrap();

    let r = h.record().await;
    assert_end(&r, EndBy::Upstream, EndHow::Fin, EndPhase::Tunnel);
    assert_eq!(r.bytes_out, 4);
}

#[tokio::test]
async fn server_rst_mid_stream_is_passed_on_to_the_client() {
    let backend = Backend::builder()
        .behavior(Behavior::ResetAfter(4))
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(b"abcd").await.unwrap();
    let (_, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Rst, "the server's reset reaches the client");

    let r = h.record().await;
    assert_end(&r, EndBy::Upstream, EndHow::Rst, EndPhase::Tunnel);
}

#[tokio::test]
async fn server_refusing_then_the_next_server_serves() {
    let refusing = refusing_addr().await;
    let good = Backend::builder()
        .name("good")
        .behavior(Behavior::Greet)
        .start()
        .await;
    // Round robin starts at the first server, so the refusing one is always tried first.
    let cfg = config(&[refusing, good.addr()], "", "algorithm = \"rr\"", NO_CHECK);
    let mut h = Harness::start(&cfg).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    let mut line = [0u8; 5];
    client.read_exact(&mut line).await.unwrap();
    assert_eq!(&line, b"good\n");
    client.shutdown().await.unwrap();
    let (_, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Fin);

    let r = h.record().await;
    assert_eq!(
        r.retries, 1,
        "one refused attempt before the good server: {r:?}"
    );
    assert_eq!(r.server.as_deref(), Some("s1"));
    assert_end(&r, EndBy::Client, EndHow::Fin, EndPhase::Tunnel);
}

#[tokio::test]
async fn every_server_refusing() {
    let (a, b) = (refusing_addr().await, refusing_addr().await);
    let mut h = Harness::start(&config(&[a, b], "", "", NO_CHECK)).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (_, ending) = read_to_end_classified(client).await;
    assert_eq!(
        ending,
        Ending::Fin,
        "the client is closed with FIN, not reset"
    );

    let r = h.record().await;
    assert_end(&r, EndBy::Upstream, EndHow::Refused, EndPhase::Connect);
    assert!(r.server.is_some());
    assert_eq!(
        r.retries, 2,
        "retries default to 2 and alternate between the two servers"
    );
}

#[tokio::test]
async fn server_not_accepting_within_the_connect_timeout() {
    let (_held, addr) = unresponsive_listener().unwrap();
    let cfg = config(
        &[addr],
        "",
        "connect_timeout = \"200ms\"\nretries = 0",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (_, ending) = read_to_end_classified(client).await;
    assert_eq!(ending, Ending::Fin);

    let r = h.record().await;
    assert_end(&r, EndBy::Weir, EndHow::Timeout, EndPhase::Connect);
    assert_eq!(r.end_reason, Some("connect_timeout"));
    assert!(r.duration >= Duration::from_millis(200), "{r:?}");
}

#[tokio::test]
async fn idle_timeout_closes_both_sides_with_fin() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut h = Harness::start(&config(
        &[backend.addr()],
        "idle_timeout = \"300ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (_, ending) = read_to_end_classified(client).await;
    assert_eq!(ending, Ending::Fin, "the client sees weir's FIN");

    let r = h.record().await;
    assert_end(&r, EndBy::Weir, EndHow::Timeout, EndPhase::Tunnel);
    assert_eq!(r.end_reason, Some("idle_timeout"));
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(
        backend.endings(),
        vec![Ending::Fin],
        "the server sees weir's FIN"
    );
}

#[tokio::test]
async fn activity_postpones_the_idle_timeout() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(
        &[backend.addr()],
        "idle_timeout = \"300ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    // Six round trips 100 ms apart: 600 ms in all, never 300 ms idle.
    for _ in 0..6 {
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.shutdown().await.unwrap();
    let (_, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let r = h.record().await;
    assert_end(&r, EndBy::Client, EndHow::Fin, EndPhase::Tunnel);
    assert_eq!(r.bytes_in, 6);
}

#[tokio::test]
async fn shutdown_closes_open_connections_with_fin_after_the_grace() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    assert!(backend.wait_accepted(1, Duration::from_secs(5)).await);
    let reader = tokio::spawn(read_to_end_classified(client));

    let report = h.shutdown(Duration::from_millis(200)).await;
    assert!(
        report.forced,
        "the connection was still open when the grace ran out"
    );
    let (_, ending) = reader.await.unwrap();
    assert_eq!(ending, Ending::Fin);
    let r = h.record().await;
    assert_end(&r, EndBy::Weir, EndHow::Shutdown, EndPhase::Tunnel);
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(backend.counts().rst, 0);
}

#[tokio::test]
async fn shutdown_lets_connections_finish_within_the_grace() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    client.read_exact(&mut b).await.unwrap();

    let proxy = h.take_proxy();
    let shutdown = tokio::spawn(async move { proxy.shutdown(Duration::from_secs(10)).await });
    // weir no longer accepts, but the open connection still works.
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"pong").await.unwrap();
    client.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"pong");
    client.shutdown().await.unwrap();
    let (_, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let report = shutdown.await.unwrap();
    assert!(!report.forced);
    let r = h.record().await;
    assert_end(&r, EndBy::Client, EndHow::Fin, EndPhase::Tunnel);
    assert_eq!(r.bytes_in, 8);
}
