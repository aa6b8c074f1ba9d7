//! Scriptable backends: each behaviour does what it says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_testkit::{
    Backend, Behavior, Ending, blob_bytes, fnv1a64, read_to_end_classified, refusing_addr,
    unresponsive_listener,
};

const WAIT: Duration = Duration::from_secs(5);

async fn start(name: &str, behavior: Behavior) -> Backend {
    Backend::builder()
        .name(name)
        .behavior(behavior)
        .start()
        .await
}

/// Writes `input`, half-closes, and reads the rest.
async fn exchange(backend: &Backend, input: &[u8]) -> (Vec<u8>, Ending) {
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream.write_all(input).await.unwrap();
    stream.shutdown().await.unwrap();
    read_to_end_classified(&mut stream).await
}

#[tokio::test]
async fn echo_echoes_then_fins() {
    let backend = start("e", Behavior::Echo).await;
    let (data, ending) = exchange(&backend, b"hello, weir").await;
    assert_eq!(data, b"hello, weir");
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn greet_says_its_name_first() {
    let backend = start("s1", Behavior::Greet).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    let mut name = [0u8; 3];
    stream.read_exact(&mut name).await.unwrap();
    assert_eq!(&name, b"s1\n");
    stream.shutdown().await.unwrap();
    let (rest, ending) = read_to_end_classified(&mut stream).await;
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn http_name_answers_with_its_name_and_closes() {
    let backend = start("s2", Behavior::HttpName).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    let text = String::from_utf8(data).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\ns2\n"), "{text}");
    assert_eq!(ending, Ending::Fin);
    drop(stream);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn send_then_fin_sends_and_closes_first() {
    let backend = start("b", Behavior::SendThenFin(b"bye".to_vec())).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(data, b"bye");
    assert_eq!(ending, Ending::Fin);
    assert!(!backend.wait_for_endings(1, Duration::from_millis(50)).await);
    drop(stream);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn reset_after_resets_once_enough_arrived() {
    let backend = start("r", Behavior::ResetAfter(4)).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream.write_all(b"0123456789").await.unwrap();
    let (_, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(ending, Ending::Rst);
    assert!(backend.endings().is_empty());
}

#[tokio::test]
async fn reset_after_fins_when_the_peer_ends_first() {
    let backend = start("r", Behavior::ResetAfter(100)).await;
    let (data, ending) = exchange(&backend, b"short").await;
    assert_eq!(data, b"short");
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
}

#[tokio::test]
async fn reset_on_accept_resets() {
    let backend = start("r", Behavior::ResetOnAccept).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    assert!(data.is_empty());
    assert_eq!(ending, Ending::Rst);
}

#[tokio::test]
async fn hang_holds_the_socket_until_dropped() {
    let backend = start("h", Behavior::Hang).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    assert!(backend.wait_accepted(1, WAIT).await);
    let mut byte = [0u8; 1];
    let quiet = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
    assert!(quiet.is_err(), "a hanging backend sends nothing: {quiet:?}");
    drop(backend);
    let (_, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(ending, Ending::Fin);
}

#[tokio::test]
async fn sink_replies_with_length_and_hash_after_half_close() {
    let backend = start("k", Behavior::Sink { reply_hash: true }).await;
    let input = blob_bytes(300_001, 7);
    let (data, ending) = exchange(&backend, &input).await;
    let expected = format!("{} {:016x}\n", input.len(), fnv1a64(&input));
    assert_eq!(String::from_utf8(data).unwrap(), expected);
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn sink_without_reply_just_fins() {
    let backend = start("k", Behavior::Sink { reply_hash: false }).await;
    let (data, ending) = exchange(&backend, b"ignored").await;
    assert!(data.is_empty());
    assert_eq!(ending, Ending::Fin);
}

#[tokio::test]
async fn blob_streams_deterministic_bytes_after_the_request_ends() {
    let backend = start(
        "blob",
        Behavior::Blob {
            len: 100_003,
            seed: 42,
        },
    )
    .await;
    let (data, ending) = exchange(&backend, b"GET blob\n").await;
    assert_eq!(data.len(), 100_003);
    assert!(data == blob_bytes(100_003, 42), "blob bytes differ");
    assert_eq!(ending, Ending::Fin);
    assert_ne!(blob_bytes(64, 1), blob_bytes(64, 2));
    assert_eq!(blob_bytes(13, 9)[..], blob_bytes(64, 9)[..13]);
}

#[test]
fn fnv1a64_matches_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[tokio::test]
async fn refusing_addr_refuses() {
    let addr = refusing_addr().await;
    assert!(addr.ip().is_loopback());
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn unresponsive_listener_leaves_connects_hanging() {
    let (held, addr) = unresponsive_listener().unwrap();
    assert_eq!(held.addr(), addr);
    assert!(addr.ip().is_loopback());
    let attempt = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
    assert!(attempt.is_err(), "connect completed: {attempt:?}");
}
