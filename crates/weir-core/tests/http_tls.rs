//! HTTPS listeners end to end (SPEC §3): certificates picked by SNI, HTTP/2 and HTTP/1.1 chosen
//! by ALPN (each reaching the server as HTTP/1.1), TLS session resumption, and the two protocol
//! mismatches — plain HTTP to the https port gets a readable 400 then FIN; a TLS ClientHello to
//! the http port is closed with FIN (no reset) and logged as a protocol mismatch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    CertFiles, Harness, NO_CHECK, TempDir, echoed, http_config, make_cert, tls_client, tls_connect,
    tls_table, web_config, within,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::HandshakeKind;
use rustls::client::{ClientSessionMemoryCache, Resumption};
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Ending, H1Client, HttpBackend, raw_exchange, read_response};

/// An https listener with certificates for `a.test` (the default) and `b.test`.
struct Site {
    _dir: TempDir,
    a: CertFiles,
    b: CertFiles,
    backend: HttpBackend,
    h: Harness,
}

async fn site() -> Site {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a", &["a.test"]);
    let b = make_cert(&dir, "b", &["b.test", "*.b.test"]);
    let backend = HttpBackend::start("b0").await;
    let cfg = web_config(
        "https",
        "127.0.0.1:0",
        &[backend.addr()],
        &tls_table(&[&a, &b]),
        "",
        NO_CHECK,
    );
    let h = Harness::start(&cfg).await;
    Site {
        _dir: dir,
        a,
        b,
        backend,
        h,
    }
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let mut s = site().await;
    let config = Arc::new(tls_client(&[&s.a, &s.b], &[b"http/1.1"]));
    for (name, cert) in [("a.test", &s.a), ("b.test", &s.b), ("www.b.test", &s.b)] {
        let tls = tls_connect(s.h.addr, &config, name).await;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(peer, cert.der, "SNI {name} gets its certificate");
        // And the connection works end to end.
        let mut client = H1Client::new(tls);
        let r = within(10, client.get("/", &[&format!("Host: {name}")]))
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b0\n"), "{name}");
        let rec = s.h.http_record().await;
        assert_eq!(rec.protocol, "https");
        assert_eq!(rec.tls_version, Some("TLSv1.3"));
        assert_eq!(rec.host.as_deref(), Some(name));
    }
    assert_eq!(s.backend.requests(), 3);
}

#[tokio::test]
async fn alpn_http11_end_to_end() {
    let mut s = site().await;
    let config = Arc::new(tls_client(&[&s.a], &[b"http/1.1"]));
    let tls = tls_connect(s.h.addr, &config, "a.test").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut client = H1Client::new(tls);
    let r = within(10, client.get("/headers", &["Host: a.test"]))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let head = r.text();
    assert!(head.starts_with("GET /headers HTTP/1.1\r\n"), "{head}");
    assert_eq!(echoed(&head, "x-forwarded-proto"), vec!["https"], "{head}");
    assert_eq!(
        echoed(&head, "x-forwarded-client-protocol"),
        vec!["HTTP/1.1"],
        "{head}"
    );
    let rec = s.h.http_record().await;
    assert_eq!((rec.http_version, rec.status), ("HTTP/1.1", 200));
    assert_eq!(s.backend.requests_for("/headers"), 1);
}

#[tokio::test]
async fn alpn_h2_end_to_end_reaches_the_server_as_http11() {
    let mut s = site().await;
    let config = Arc::new(tls_client(&[&s.a], &[b"h2", b"http/1.1"]));
    let tls = tls_connect(s.h.addr, &config, "a.test").await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "weir prefers h2"
    );
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/headers", "/status/404", "/"] {
        let request = http::Request::get(format!("https://a.test{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = within(10, sender.send_request(request)).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let status = response.status().as_u16();
        let body = within(10, response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        match path {
            "/headers" => {
                assert_eq!(status, 200);
                assert!(body.starts_with("GET /headers HTTP/1.1\r\n"), "{body}");
                assert_eq!(echoed(&body, "host"), vec!["a.test"], "{body}");
                assert_eq!(
                    echoed(&body, "x-forwarded-client-protocol"),
                    vec!["HTTP/2"],
                    "{body}"
                );
            }
            "/status/404" => assert_eq!((status, body.as_str()), (404, "404\n")),
            _ => assert_eq!((status, body.as_str()), (200, "b0\n")),
        }
        let rec = s.h.http_record().await;
        assert_eq!(
            (rec.http_version, rec.status),
            ("HTTP/2", status),
            "{rec:?}"
        );
        assert_eq!(rec.upstream_status, Some(status));
    }
    assert_eq!(s.backend.requests(), 3);
}

#[tokio::test]
async fn a_client_without_alpn_speaks_http11() {
    let mut s = site().await;
    let config = Arc::new(tls_client(&[&s.a], &[]));
    let tls = tls_connect(s.h.addr, &config, "a.test").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let mut client = H1Client::new(tls);
    let r = within(10, client.get("/", &["Host: a.test"]))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rec = s.h.http_record().await;
    assert_eq!(rec.http_version, "HTTP/1.1");
}

#[tokio::test]
async fn a_second_connection_resumes_the_tls_session() {
    let mut s = site().await;
    let mut config = tls_client(&[&s.a], &[b"http/1.1"]);
    config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(32)));
    let config = Arc::new(config);
    let mut kinds = Vec::new();
    for i in 0..2 {
        let tls = tls_connect(s.h.addr, &config, "a.test").await;
        kinds.push(tls.get_ref().1.handshake_kind());
        let mut client = H1Client::new(tls);
        // Reading the answer also takes in the session tickets sent after the handshake.
        let r = within(10, client.get(&format!("/{i}"), &["Host: a.test"]))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let _ = s.h.http_record().await;
        let mut tls = client.into_inner();
        tokio::io::AsyncWriteExt::shutdown(&mut tls).await.unwrap();
    }
    assert_eq!(
        kinds,
        vec![Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
    assert_eq!(s.backend.requests(), 2);
}

#[tokio::test]
async fn plain_http_to_the_https_port_gets_a_readable_400_then_fin() {
    let mut s = site().await;
    let (data, ending) = raw_exchange(
        s.h.addr,
        b"GET /login?next=/ HTTP/1.1\r\nHost: a.test:8443\r\nUser-Agent: curl\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let r = read_response(&data).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.closes());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = r.text();
    assert!(
        text.contains("https://a.test:8443/login?next=/"),
        "the answer says where to go: {text:?}"
    );
    assert_eq!(ending, Ending::Fin, "FIN, not a reset");
    let rec = s.h.http_record().await;
    assert_eq!((rec.status, rec.upstream_status), (400, None));
    assert_eq!(rec.end_reason, Some("plain_http_on_tls_port"));
    assert_eq!(s.backend.connections(), 0);
}

#[tokio::test]
async fn a_tls_client_hello_to_the_http_port_is_closed_with_fin() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    // A real ClientHello, as a browser pointed at https://…:port of a plain port sends it.
    let config = Arc::new(tls_client(&[], &[b"h2", b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");

    let (data, ending) = raw_exchange(h.addr, &hello, Duration::from_secs(10)).await;
    assert_eq!(ending, Ending::Fin, "closed with FIN, no reset");
    assert!(
        data.is_empty(),
        "nothing is written back: {:?}",
        String::from_utf8_lossy(&data)
    );
    let rec = h.http_record().await;
    assert_eq!(rec.end_reason, Some("tls_on_plain_port"), "{rec:?}");
    assert_eq!(rec.status, 0, "no answer was written: {rec:?}");
    assert_eq!(
        (rec.end_by, rec.end_how, rec.end_phase, rec.upstream_status),
        (EndBy::Client, EndHow::Error, EndPhase::Request, None),
        "{rec:?}"
    );
    assert_eq!(backend.connections(), 0);
}
