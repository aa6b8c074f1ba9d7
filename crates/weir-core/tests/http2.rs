//! HTTP/2 clients, served by hyper: the connection's own timers and shutdown. An idle
//! connection gets GOAWAY after the listener's `idle_timeout` and closes cleanly (the client
//! sees no error); on shutdown an idle connection gets GOAWAY and closes at once, without
//! waiting for the grace period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, NO_CHECK, http_config, within};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use weir_testkit::HttpBackend;

/// An HTTP/2 connection with prior knowledge to `h`, after one answered request; the task
/// ends when the connection does, and panics if it ends with an error (no GOAWAY).
async fn h2_after_one_request(h: &Harness) -> (SendRequest<Empty<Bytes>>, JoinHandle<()>) {
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        conn.await.unwrap();
    });
    let request = http::Request::get("http://t/one")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within(10, sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    within(10, response.into_body().collect()).await.unwrap();
    (sender, conn)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    let backend = HttpBackend::start("b0").await;
    let h = Harness::start(&http_config(
        &[backend.addr()],
        "idle_timeout = \"300ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let (_sender, conn) = h2_after_one_request(&h).await;
    let idle_from = Instant::now();
    within(5, conn).await.unwrap();
    assert!(
        idle_from.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the idle timeout",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn shutdown_sends_goaway_to_an_idle_http2_connection() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let (_sender, conn) = h2_after_one_request(&h).await;
    // The grace is long: only GOAWAY (not the forced close at its end) ends this in time.
    within(5, h.shutdown(Duration::from_secs(60))).await;
    within(5, conn).await.unwrap();
}
