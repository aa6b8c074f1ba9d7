//! RecordingBackend: the control test (it does see RSTs and FINs, so a zero-RST result elsewhere
//! is not a blind spot) and each mode's conversation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_testkit::{
    Counts, Ending, Mode, RecordingBackend, connect_and_fin, connect_and_reset,
    read_to_end_classified,
};

const WAIT: Duration = Duration::from_secs(5);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

#[tokio::test]
async fn control_sees_rst_from_a_zero_linger_close() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    connect_and_reset(backend.addr()).await.unwrap();
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Rst]);
    assert_eq!(
        backend.counts(),
        Counts {
            fin: 0,
            rst: 1,
            other: 0,
            open: 0
        }
    );
}

#[tokio::test]
async fn control_sees_rst_after_data_too() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream.write_all(b"some bytes").await.unwrap();
    weir_testkit::client::reset(stream).unwrap();
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Rst]);
}

#[tokio::test]
async fn control_sees_fin_from_a_clean_shutdown() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let ending = connect_and_fin(backend.addr()).await.unwrap();
    assert_eq!(ending, Ending::Fin, "the backend closes with FIN too");
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn counts_open_connections() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let held = TcpStream::connect(backend.addr()).await.unwrap();
    connect_and_fin(backend.addr()).await.unwrap();
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(
        backend.counts(),
        Counts {
            fin: 1,
            rst: 0,
            other: 0,
            open: 1
        }
    );
    assert!(!backend.wait_for_endings(2, Duration::from_millis(50)).await);
    drop(held);
    assert!(backend.wait_for_endings(2, WAIT).await);
}

#[tokio::test]
async fn banner_is_sent_on_accept() {
    let backend = RecordingBackend::start(Mode::Banner(b"SSH-2.0-test\r\n".to_vec())).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream.shutdown().await.unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(data, b"SSH-2.0-test\r\n");
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn http_close_answers_and_closes_first() {
    let backend = RecordingBackend::start(Mode::HttpClose).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(
        data,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    assert_eq!(ending, Ending::Fin, "the server closed first");
    drop(stream);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test]
async fn http_keep_open_answers_every_request_and_waits() {
    let backend = RecordingBackend::start(Mode::HttpKeepOpen).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    stream
        .write_all(&[REQUEST, REQUEST].concat())
        .await
        .unwrap();
    let mut two = vec![0u8; KEEP_ALIVE.len() * 2];
    stream.read_exact(&mut two).await.unwrap();
    assert_eq!(two, [KEEP_ALIVE, KEEP_ALIVE].concat());
    assert!(!backend.wait_for_endings(1, Duration::from_millis(50)).await);
    stream.shutdown().await.unwrap();
    let (rest, ending) = read_to_end_classified(&mut stream).await;
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn http_banner_first_greets_then_answers() {
    let backend = RecordingBackend::start(Mode::HttpBannerFirst).await;
    let mut stream = TcpStream::connect(backend.addr()).await.unwrap();
    let mut greeting = [0u8; 11];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"220 hello\r\n");
    stream.write_all(REQUEST).await.unwrap();
    stream.shutdown().await.unwrap();
    let (data, ending) = read_to_end_classified(&mut stream).await;
    assert_eq!(data, KEEP_ALIVE);
    assert_eq!(ending, Ending::Fin);
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[tokio::test]
async fn dropping_the_backend_stops_it() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let addr = backend.addr();
    let mut held = TcpStream::connect(addr).await.unwrap();
    assert!(backend.wait_accepted(1, WAIT).await);
    drop(backend);
    let (_, ending) = read_to_end_classified(&mut held).await;
    assert_eq!(ending, Ending::Fin, "aborted tasks close their sockets");
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
