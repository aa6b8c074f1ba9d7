//! Every status code weir itself produces on HTTP listeners (SPEC §3), one test each, checking
//! what the client got on the wire and the record: `status`, `upstream_status` (`-` when no
//! response came from a server) and the end fields (SPEC §8). Also: responses that come from a
//! server keep the server's status in both fields.
//!
//! Not here yet: 403 (ACL) and 503 (limits, with `Retry-After`) — access control and limits
//! are a later issue (SPEC §7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Harness, NO_CHECK, TempDir, assert_http_end, eventually, http_config, make_cert, tls_table,
    web_config,
};
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Ending, H1Client, HttpBackend, raw_exchange, read_response, refusing_addr};

const WAIT: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh connection; returns the parsed answer and how weir ended it.
async fn exchange(h: &Harness, bytes: &[u8]) -> (weir_testkit::RawResponse, Ending) {
    let (data, ending) = raw_exchange(h.addr, bytes, WAIT).await;
    let response = read_response(&data)
        .await
        .unwrap_or_else(|e| panic!("no HTTP answer ({e}): {:?}", String::from_utf8_lossy(&data)));
    (response, ending)
}

/// weir's own answers are short plain text naming the status.
fn assert_plain_answer(r: &weir_testkit::RawResponse, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{r:?}"
    );
    assert!(r.text().starts_with(&status.to_string()), "{r:?}");
}

#[tokio::test]
async fn proxied_200_has_upstream_status_and_ends_done() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/hello?q=1", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        200,
        "200",
        (EndBy::Upstream, EndHow::Done, EndPhase::Response),
        None,
    );
    assert_eq!(rec.method, "GET");
    assert_eq!(
        rec.path, "/hello",
        "the query string is not logged by default"
    );
    assert_eq!(rec.server.as_deref(), Some("s0"));
    assert_eq!(rec.http_version, "HTTP/1.1");
    assert_eq!(rec.bytes_out, 3);
    assert!(rec.upstream_header_time.is_some() && rec.upstream_response_time.is_some());
}

#[tokio::test]
async fn proxied_404_keeps_the_servers_status() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/status/404", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "404\n"));
    // The connection stays usable after a 4xx from the server.
    let r = client.get("/status/500", &[]).await.unwrap();
    assert_eq!(r.status, 500);

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        404,
        "404",
        (EndBy::Upstream, EndHow::Done, EndPhase::Response),
        None,
    );
    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        500,
        "500",
        (EndBy::Upstream, EndHow::Done, EndPhase::Response),
        None,
    );
}

#[tokio::test]
async fn status_400_for_a_malformed_head() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    // obs-fold: a header continued on the next line (RFC 9112 §5.2: reject).
    let (r, ending) = exchange(&h, b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n").await;
    assert_plain_answer(&r, 400);
    assert!(r.closes(), "weir closes after a malformed request: {r:?}");
    assert_eq!(ending, Ending::Fin, "closed with FIN, not reset");

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        400,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("malformed_head"),
    );
    assert_eq!(backend.requests() + backend.connections(), 0);
}

#[tokio::test]
async fn status_400_for_an_invalid_request_hyper_accepts() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    // Well-formed HTTP/1.1 framing, but no Host (RFC 9112 §3.2: 400).
    let (r, ending) = exchange(&h, b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n").await;
    assert_plain_answer(&r, 400);
    assert!(r.closes(), "{r:?}");
    assert_eq!(ending, Ending::Fin);

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        400,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("missing_host"),
    );
    assert_eq!(rec.method, "GET");
    assert_eq!(backend.requests() + backend.connections(), 0);
}

#[tokio::test]
async fn status_400_for_plain_http_to_the_https_port() {
    let dir = TempDir::new();
    let cert = make_cert(&dir, "a", &["a.test"]);
    let backend = HttpBackend::start("b0").await;
    let cfg = web_config(
        "https",
        "127.0.0.1:0",
        &[backend.addr()],
        &tls_table(&[&cert]),
        "",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let (r, ending) = exchange(&h, b"GET /page HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(r.status, 400);
    let text = r.text();
    assert!(
        text.contains("HTTPS") && text.contains("https://a.test/page"),
        "a readable explanation: {text:?}"
    );
    assert_eq!(ending, Ending::Fin, "closed with FIN, not reset");

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        400,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("plain_http_on_tls_port"),
    );
    assert_eq!(rec.protocol, "https");
    assert_eq!(backend.requests() + backend.connections(), 0);
}

#[tokio::test]

async fn status_408_when_the_head_is_too_slow() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "request_header_timeout = \"300ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let started = Instant::now();
    // A head that never ends.
    let (r, ending) = exchange(&h, b"GET / HTTP/1.1\r\nHost: t\r\n").await;
    let took = started.elapsed();
    assert_plain_answer(&r, 408);
    assert_eq!(ending, Ending::Fin);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        408,
        "-",
        (EndBy::Weir, EndHow::Timeout, EndPhase::Request),
        Some("request_header_timeout"),
    );
    assert_eq!(backend.requests() + backend.connections(), 0);
}

#[tokio::test]
async fn status_413_when_the_declared_body_is_too_large() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "max_body_size = \"1KiB\"",
        "",
        NO_CHECK,
    ))
    .await;
    // Just within the limit: proxied.
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client
        .request("POST", "/echo", &[], &[b'x'; 1024])
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 1024));
    let rec = h.http_record().await;
    assert_eq!((rec.status, rec.bytes_in), (200, 1024));

    let (r, ending) = exchange(
        &h,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n",
    )
    .await;
    assert_plain_answer(&r, 413);
    assert_eq!(ending, Ending::Fin);
    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        413,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("body_too_large"),
    );
    assert_eq!(backend.requests(), 1, "only the first request was proxied");
}

#[tokio::test]
async fn status_413_when_a_chunked_body_grows_too_large() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "max_body_size = \"1KiB\"",
        "",
        NO_CHECK,
    ))
    .await;
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'y'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (r, ending) = exchange(&h, &req).await;
    assert_plain_answer(&r, 413);
    assert_eq!(ending, Ending::Fin);
    let rec = h.http_record().await;
    assert_eq!(
        (rec.status, upstream(&rec)),
        (413, "-".to_string()),
        "{rec:?}"
    );
    assert_eq!(backend.requests(), 0);
}

fn upstream(r: &weir_core::end::HttpRecord) -> String {
    common::upstream_status_text(r)
}

#[tokio::test]
async fn status_414_when_the_uri_is_too_long() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "max_uri_length = \"256B\"",
        "",
        NO_CHECK,
    ))
    .await;
    let path = format!("/{}", "a".repeat(400));
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let (r, ending) = exchange(&h, req.as_bytes()).await;
    assert_plain_answer(&r, 414);
    assert_eq!(ending, Ending::Fin);
    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        414,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("uri_too_long"),
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn status_431_when_the_headers_are_too_large() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "max_header_size = \"1KiB\"",
        "",
        NO_CHECK,
    ))
    .await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    let (r, ending) = exchange(&h, req.as_bytes()).await;
    assert_plain_answer(&r, 431);
    assert_eq!(ending, Ending::Fin);
    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        431,
        "-",
        (EndBy::Client, EndHow::Error, EndPhase::Request),
        Some("header_too_large"),
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn status_502_when_no_server_is_healthy() {
    let down = refusing_addr().await;
    let check = "kind = \"tcp\"\ninterval = \"100ms\"\nunhealthy_threshold = 1";
    let mut h = Harness::start(&http_config(&[down], "", "", check)).await;
    let server = h.proxy().upstream("g").unwrap().servers[0].clone();
    assert!(
        eventually(WAIT, || !server.is_healthy()).await,
        "weir marks the refusing server down"
    );
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/", &[]).await.unwrap();
    assert_plain_answer(&r, 502);
    assert!(!r.closes(), "a 502 does not end the client connection");

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        502,
        "-",
        (EndBy::Weir, EndHow::Error, EndPhase::Connect),
        Some("no_server"),
    );
}

#[tokio::test]
async fn status_502_when_every_connect_is_refused() {
    let (a, b) = (refusing_addr().await, refusing_addr().await);
    let mut h = Harness::start(&http_config(&[a, b], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/", &[]).await.unwrap();
    assert_plain_answer(&r, 502);

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        502,
        "-",
        (EndBy::Upstream, EndHow::Refused, EndPhase::Connect),
        None,
    );
    assert_eq!(rec.retries, 2, "retries default to 2: {rec:?}");
}

#[tokio::test]
async fn status_502_when_the_server_closes_before_responding() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/hangup", &[]).await.unwrap();
    assert_plain_answer(&r, 502);

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        502,
        "-",
        (EndBy::Upstream, EndHow::Fin, EndPhase::Response),
        None,
    );
    // A fresh connection that fails is not a stale keep-alive race: no retry.
    assert_eq!(backend.requests_for("/hangup"), 1);
    assert_eq!(rec.retries, 0);
}

#[tokio::test]

async fn status_502_when_the_server_answers_garbage() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = client.get("/garbage", &[]).await.unwrap();
    assert_plain_answer(&r, 502);
    assert!(
        !r.text().contains("not HTTP"),
        "the garbage is not passed on"
    );

    let rec = h.http_record().await;
    // An invalid response is a protocol error of the server, not an orderly close.
    assert_http_end(
        &rec,
        502,
        "-",
        (EndBy::Upstream, EndHow::Error, EndPhase::Response),
        None,
    );
    assert_eq!(backend.requests_for("/garbage"), 1);
}

#[tokio::test]
async fn status_504_when_the_server_is_too_slow() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "",
        "request_timeout = \"300ms\"",
        NO_CHECK,
    ))
    .await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let started = Instant::now();
    let r = client.get("/slow/2000", &[]).await.unwrap();
    let took = started.elapsed();
    assert_plain_answer(&r, 504);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1900),
        "{took:?}"
    );

    let rec = h.http_record().await;
    assert_http_end(
        &rec,
        504,
        "-",
        (EndBy::Weir, EndHow::Timeout, EndPhase::Response),
        Some("request_timeout"),
    );
    assert_eq!(backend.requests_for("/slow"), 1, "not retried");
    // The client connection still works.
    let r = client.get("/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
}
