//! Request smuggling, as raw bytes (SPEC §3, §11 "a bad request never reaches a server"): every
//! ambiguous or malformed framing gets 400 and a closed connection (FIN), and the counting
//! backend behind weir receives nothing at all — not the request, not what was smuggled in its
//! body. A normal request on a fresh connection afterwards still works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, http_config};
use weir_testkit::{Ending, H1Client, HttpBackend, raw_exchange, read_response};

/// A request that would reach the backend if the framing were read the smuggler's way.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `bytes` on a fresh connection and checks weir answers 400, closes with FIN, logs a
/// 400 with no upstream status, and the backend received nothing.
async fn refused(name: &str, bytes: &[u8]) {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let (data, ending) = raw_exchange(h.addr, bytes, Duration::from_secs(10)).await;
    let r = read_response(&data)
        .await
        .unwrap_or_else(|e| panic!("{name}: no HTTP answer ({e}): {data:?}"));
    assert_eq!(r.status, 400, "{name}: {r:?}");
    assert!(r.closes(), "{name}: {r:?}");
    assert_eq!(ending, Ending::Fin, "{name}: closed with FIN");

    let rec = h.http_record().await;
    assert_eq!(
        (rec.status, rec.upstream_status),
        (400, None),
        "{name}: {rec:?}"
    );
    assert_eq!(rec.end_phase, weir_core::end::EndPhase::Request, "{name}");

    // Give anything that slipped through time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        (
            backend.requests(),
            backend.unanswered(),
            backend.connections()
        ),
        (0, 0, 0),
        "{name}: the backend must receive nothing: {:?}",
        backend.request_log()
    );

    // A normal request on a fresh connection still works.
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/after", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "b0\n"), "{name}");
    assert_eq!(backend.requests(), 1, "{name}");
    assert_eq!(backend.requests_for("/after"), 1, "{name}");
}

#[tokio::test]
async fn content_length_then_transfer_encoding() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("CL then TE", req.as_bytes()).await;
}

#[tokio::test]
async fn transfer_encoding_then_content_length() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("TE then CL", req.as_bytes()).await;
}

#[tokio::test]
async fn two_different_content_lengths() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    refused("two Content-Lengths", req.as_bytes()).await;
}

#[tokio::test]
async fn content_length_list() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0, {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    refused("Content-Length list", req.as_bytes()).await;
}

#[tokio::test]
async fn bad_chunk_size() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("bad chunk size", req.as_bytes()).await;
}

#[tokio::test]
async fn chunk_size_overflow() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nab\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("chunk size overflow", req.as_bytes()).await;
}

#[tokio::test]
async fn obs_fold() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"
    );
    refused("obs-fold", req.as_bytes()).await;
}

#[tokio::test]
async fn chunked_combined_with_another_coding() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("gzip, chunked", req.as_bytes()).await;
}

#[tokio::test]
async fn chunked_not_last() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("chunked, identity", req.as_bytes()).await;
}

#[tokio::test]
async fn nul_in_a_header_value() {
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n{SMUGGLED}");
    refused("NUL in a value", req.as_bytes()).await;
}

#[tokio::test]
async fn bare_cr_in_a_header_value() {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n{SMUGGLED}"
    );
    refused("bare CR in a value", req.as_bytes()).await;
}

#[tokio::test]
async fn space_before_the_colon() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    refused("space before the colon", req.as_bytes()).await;
}

#[tokio::test]
async fn unknown_http_version() {
    let req = format!("GET / HTTP/9.9\r\nHost: t\r\n\r\n{SMUGGLED}");
    refused("HTTP/9.9", req.as_bytes()).await;
}

#[tokio::test]
async fn a_body_that_looks_like_a_head_is_body() {
    let backend = HttpBackend::start("b0").await;
    let h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let inner = "GET /x HTTP/1.1\r\nHost: b\r\n";
    let req = format!(
        "POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}GET /second HTTP/1.1\r\nHost: t\r\n\r\n",
        inner.len()
    );
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let first = client.send_raw(req.as_bytes()).await.unwrap();
    let second = client.read_response().await.unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    let seen: Vec<String> = backend
        .request_log()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(
        seen,
        ["/first", "/second"],
        "the body's bytes are not a request"
    );
}

#[tokio::test]
async fn the_head_after_a_chunked_body_is_checked_too() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let req = format!(
        "POST /first HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let first = client.send_raw(req.as_bytes()).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    let second = client.read_response().await.unwrap();
    assert_eq!(second.status, 400, "{second:?}");
    assert!(second.closes(), "{second:?}");
    let (_, ending) = client.read_to_end().await;
    assert_eq!(ending, Ending::Fin);

    let first_rec = h.http_record().await;
    assert_eq!(first_rec.status, 200, "{first_rec:?}");
    let second_rec = h.http_record().await;
    assert_eq!(
        (second_rec.status, second_rec.end_reason),
        (400, Some("te_and_cl")),
        "{second_rec:?}"
    );
    let seen: Vec<String> = backend
        .request_log()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(
        seen,
        ["/first"],
        "only the first request reaches the server"
    );
}
