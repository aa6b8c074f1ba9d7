//! Headers between client and server (SPEC §3): the forwarding headers for IPv4 and IPv6
//! clients, hop-by-hop headers removed both ways, Host kept, HTTP/2 clients reaching the server
//! as HTTP/1.1 with Host from `:authority`, and the cap on requests per client connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Harness, NO_CHECK, echoed, http_config, web_config, within};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use weir_testkit::{Ending, H1Client, HttpBackend};

/// Sends `raw` on a fresh connection to `h` and returns the head the backend received.
async fn echoed_head(h: &Harness, raw: &str) -> String {
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = within(10, client.send_raw(raw.as_bytes())).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
}

#[tokio::test]
async fn forwarding_headers_for_an_ipv4_client() {
    let backend = HttpBackend::start("b0").await;
    let h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let port = h.addr.port().to_string();

    // A client that sends none.
    let head = echoed_head(
        &h,
        "GET /headers HTTP/1.1\r\nHost: example.test:8080\r\n\r\n",
    )
    .await;
    assert_eq!(
        echoed(&head, "x-forwarded-for"),
        vec!["127.0.0.1"],
        "{head}"
    );
    assert_eq!(echoed(&head, "x-real-ip"), vec!["127.0.0.1"], "{head}");
    assert_eq!(echoed(&head, "x-forwarded-proto"), vec!["http"], "{head}");
    assert_eq!(
        echoed(&head, "x-forwarded-port"),
        vec![port.clone()],
        "{head}"
    );
    assert_eq!(
        echoed(&head, "x-forwarded-client-protocol"),
        vec!["HTTP/1.1"],
        "{head}"
    );
    assert_eq!(
        echoed(&head, "host"),
        vec!["example.test:8080"],
        "Host kept: {head}"
    );
    assert!(head.starts_with("GET /headers HTTP/1.1\r\n"), "{head}");

    // A client behind other proxies, and one lying about itself: X-Forwarded-For is appended
    // to, the rest is replaced.
    let head = echoed_head(
        &h,
        "GET /headers HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-For: 198.51.100.2, 192.0.2.1\r\nX-Real-IP: 6.6.6.6\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\
         X-Forwarded-Client-Protocol: HTTP/3\r\n\r\n",
    )
    .await;
    assert_eq!(
        echoed(&head, "x-forwarded-for"),
        vec!["203.0.113.7, 198.51.100.2, 192.0.2.1, 127.0.0.1"],
        "{head}"
    );
    assert_eq!(echoed(&head, "x-real-ip"), vec!["127.0.0.1"], "{head}");
    assert_eq!(echoed(&head, "x-forwarded-proto"), vec!["http"], "{head}");
    assert_eq!(echoed(&head, "x-forwarded-port"), vec![port], "{head}");
    assert_eq!(
        echoed(&head, "x-forwarded-client-protocol"),
        vec!["HTTP/1.1"],
        "{head}"
    );

    // An HTTP/1.0 client is named as such, and reaches the server as HTTP/1.1.
    let head = echoed_head(&h, "GET /headers HTTP/1.0\r\nHost: example.test\r\n\r\n").await;
    assert_eq!(
        echoed(&head, "x-forwarded-client-protocol"),
        vec!["HTTP/1.0"],
        "{head}"
    );
    assert!(head.starts_with("GET /headers HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn forwarding_headers_for_an_ipv6_client() {
    let backend = HttpBackend::start("b0").await;
    let h = Harness::start(&web_config(
        "http",
        "[::1]:0",
        &[backend.addr()],
        "",
        "",
        NO_CHECK,
    ))
    .await;
    assert!(h.addr.is_ipv6());
    let head = echoed_head(
        &h,
        "GET /headers HTTP/1.1\r\nHost: [::1]\r\nX-Forwarded-For: 2001:db8::7\r\n\r\n",
    )
    .await;
    assert_eq!(
        echoed(&head, "x-forwarded-for"),
        vec!["2001:db8::7, ::1"],
        "{head}"
    );
    assert_eq!(
        echoed(&head, "x-real-ip"),
        vec!["::1"],
        "no brackets: {head}"
    );
    assert_eq!(echoed(&head, "x-forwarded-proto"), vec!["http"], "{head}");
    assert_eq!(
        echoed(&head, "x-forwarded-port"),
        vec![h.addr.port().to_string()],
        "{head}"
    );
    assert_eq!(echoed(&head, "host"), vec!["[::1]"], "{head}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    // The server announces Keep-Alive: timeout=…, which is about weir's connection to it.
    let backend = HttpBackend::builder()
        .name("b0")
        .keep_alive_hint(30)
        .start()
        .await;
    let h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = within(
        10,
        client.send_raw(
            b"GET /headers HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Foo, x-bar\r\n\
              X-Foo: secret\r\nX-Bar: also\r\nX-Kept: yes\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
              Proxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let head = r.text();
    for name in [
        "x-foo",
        "x-bar",
        "keep-alive",
        "te",
        "proxy-connection",
        "trailer",
    ] {
        assert!(
            echoed(&head, name).is_empty(),
            "{name} reached the server: {head}"
        );
    }
    for value in echoed(&head, "connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-foo"),
            "the client's Connection header is not passed on: {head}"
        );
    }
    assert_eq!(echoed(&head, "x-kept"), vec!["yes"], "{head}");
    assert_eq!(echoed(&head, "host"), vec!["example.test"], "{head}");

    // The server's Keep-Alive does not reach the client.
    assert_eq!(r.header("x-backend"), Some("b0"));
    assert_eq!(r.header("keep-alive"), None, "{r:?}");
}

#[tokio::test]
async fn an_http2_client_reaches_the_server_as_http11_with_host_from_authority() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    // HTTP/2 with prior knowledge on the plain port.
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("http://example.test:8080/headers?x=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within(10, sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = within(10, response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let head = String::from_utf8_lossy(&body).into_owned();
    assert!(
        head.starts_with("GET /headers?x=1 HTTP/1.1\r\n"),
        "origin-form target over HTTP/1.1: {head}"
    );
    assert_eq!(echoed(&head, "host"), vec!["example.test:8080"], "{head}");
    assert_eq!(
        echoed(&head, "x-forwarded-client-protocol"),
        vec!["HTTP/2"],
        "{head}"
    );
    assert_eq!(echoed(&head, "x-forwarded-proto"), vec!["http"], "{head}");
    let rec = h.http_record().await;
    assert_eq!((rec.http_version, rec.status), ("HTTP/2", 200));
    assert_eq!(rec.host.as_deref(), Some("example.test"));
}

#[tokio::test]
async fn the_third_response_closes_with_max_requests_per_connection_3() {
    let backend = HttpBackend::start("b0").await;
    let h = Harness::start(&http_config(
        &[backend.addr()],
        "max_requests_per_connection = 3",
        "",
        NO_CHECK,
    ))
    .await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    for i in 1..=3 {
        let r = within(10, client.get(&format!("/{i}"), &[])).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.closes(), i == 3, "request {i}: {r:?}");
    }
    let (rest, ending) = within(10, client.read_to_end()).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(ending, Ending::Fin, "weir closes after the third with FIN");
    assert_eq!(backend.requests(), 3);

    // A new connection gets three more.
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let r = within(10, client.get("/again", &[])).await.unwrap();
    assert!(!r.closes());
}
