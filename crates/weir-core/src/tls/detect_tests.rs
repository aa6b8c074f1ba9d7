//! Tests for [`super`]: classification tables, peeking and the plain-HTTP answer over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_testkit::loopback_pair;

use super::*;

#[test]
fn classify_table() {
    use FirstBytes::*;
    let cases: &[(&[u8], FirstBytes)] = &[
        // TLS records: handshake type, SSL 3.0 / TLS 1.0-1.3 record versions.
        (&[0x16, 0x03, 0x01, 0x02, 0x00], TlsHandshake),
        (&[0x16, 0x03, 0x00], TlsHandshake),
        (&[0x16, 0x03, 0x03], TlsHandshake),
        (&[0x16, 0x03, 0x04], TlsHandshake),
        (&[0x16, 0x03, 0x05], Unknown),
        (&[0x16, 0x02, 0x01], Unknown),
        (&[0x17, 0x03, 0x03], Unknown), // application data, not a handshake
        (&[0x80, 0x2e, 0x01], Unknown), // SSLv2-style hello
        // Partial TLS prefixes: best answer so far.
        (&[0x16], TlsHandshake),
        (&[0x16, 0x03], TlsHandshake),
        (&[0x16, 0x01], Unknown),
        // Methods.
        (b"GET / HTTP/1.1\r\n", PlainHttp),
        (b"POST /x HTTP/1.1\r\n", PlainHttp),
        (b"HEAD / HTTP/1.0\r\n", PlainHttp),
        (b"PUT /", PlainHttp),
        (b"DELETE /", PlainHttp),
        (b"OPTIONS * HTTP/1.1", PlainHttp),
        (b"PATCH /", PlainHttp),
        (b"CONNECT a:443 HTTP/1.1", PlainHttp),
        (b"TRACE /", PlainHttp),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PlainHttp),
        (b"GET ", PlainHttp),
        // Partial methods: best answer so far.
        (b"G", PlainHttp),
        (b"GE", PlainHttp),
        (b"GET", PlainHttp),
        (b"OPTION", PlainHttp),
        // Junk and near misses.
        (b"", Unknown),
        (b"get / HTTP/1.1", Unknown),
        (b"GETS / HTTP/1.1", Unknown),
        (b"GET/ HTTP/1.1", Unknown),
        (b"FOO / HTTP/1.1", Unknown),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Unknown),
        (b"\r\nGET /", Unknown),
        (&[0x00, 0x00, 0x00], Unknown),
    ];
    for (prefix, want) in cases {
        assert_eq!(classify(prefix), *want, "classify({prefix:?})");
    }
}

#[test]
fn decide_waits_only_on_ambiguous_prefixes() {
    assert_eq!(decide(b""), None);
    assert_eq!(decide(&[0x16, 0x03]), None);
    assert_eq!(decide(b"PO"), None);
    assert_eq!(decide(b"POST"), None);
    assert_eq!(decide(b"POST "), Some(FirstBytes::PlainHttp));
    assert_eq!(decide(b"X"), Some(FirstBytes::Unknown));
    assert_eq!(decide(&[0x16, 0x03, 0x03]), Some(FirstBytes::TlsHandshake));
}

#[test]
fn response_names_the_https_url_when_safe() {
    let ok = response_for(b"GET /a/b?c=1 HTTP/1.1\r\nhost: example.test:8443\r\n\r\n");
    let ok = String::from_utf8(ok).unwrap();
    assert!(ok.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{ok}");
    assert!(ok.contains("\r\nConnection: close\r\n"), "{ok}");
    assert!(ok.contains("\r\nContent-Type: text/plain"), "{ok}");
    assert!(
        ok.ends_with("Use https://example.test:8443/a/b?c=1 instead.\n"),
        "{ok}"
    );
    let body = ok.split("\r\n\r\n").nth(1).unwrap();
    assert!(ok.contains(&format!("Content-Length: {}\r\n", body.len())));

    for head in [
        &b"GET /x HTTP/1.1\r\nHost: evil<script>\r\n\r\n"[..],
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a", // unfinished head
        b"\xff\xfe\r\n\r\n",
        b"",
    ] {
        let text = String::from_utf8(response_for(head)).unwrap();
        assert!(text.ends_with("Use an https:// URL instead.\n"), "{text}");
    }
}

#[tokio::test]
async fn peek_waits_for_enough_bytes_and_consumes_nothing() {
    let (mut client, mut server) = loopback_pair().await.unwrap();
    let hello = [0x16u8, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    let writer = tokio::spawn(async move {
        client.write_all(&hello[..1]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(&hello[1..]).await.unwrap();
        client
    });
    let got = peek_first_bytes(&server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::TlsHandshake);
    let _client = writer.await.unwrap();
    let mut all = [0u8; 10];
    server.read_exact(&mut all).await.unwrap();
    assert_eq!(all, hello, "peeking consumed nothing");

    let (mut client, server) = loopback_pair().await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let got = peek_first_bytes(&server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::PlainHttp);

    let (mut client, server) = loopback_pair().await.unwrap();
    client.write_all(b"\x00\x01junk").await.unwrap();
    let got = peek_first_bytes(&server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::Unknown);
}

#[tokio::test]
async fn peek_gives_its_best_answer_on_timeout_or_close() {
    let (client, server) = loopback_pair().await.unwrap();
    let start = Instant::now();
    let got = peek_first_bytes(&server, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::Unknown);
    assert!(start.elapsed() >= Duration::from_millis(90));
    drop(client);
    let got = peek_first_bytes(&server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::Unknown, "closed without a byte");

    let (mut client, server) = loopback_pair().await.unwrap();
    client.write_all(b"GE").await.unwrap();
    let start = Instant::now();
    let got = peek_first_bytes(&server, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(got, FirstBytes::PlainHttp);
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// Sends `request`, reads the answer to EOF (an error such as ECONNRESET fails the test), then
/// closes its own side. Returns the answer and how long the server took to finish after that.
async fn exchange(request: Vec<u8>) -> (String, Duration) {
    let (mut client, server) = loopback_pair().await.unwrap();
    let server = tokio::spawn(reject_plain_http(server));
    let (mut rd, mut wr) = client.split();
    let (written, answer) = tokio::join!(wr.write_all(&request), async {
        let mut answer = Vec::new();
        let result = rd.read_to_end(&mut answer).await;
        (result, answer)
    });
    written.expect("request written without a reset");
    let (result, answer) = answer;
    result.expect("answer read to a clean EOF, not a reset");
    let mut more = [0u8; 16];
    assert_eq!(client.read(&mut more).await.unwrap(), 0, "EOF again");
    // The server only half-closed: it still reads (and discards) what we send...
    tokio::time::sleep(Duration::from_millis(20)).await;
    client
        .write_all(b"late bytes")
        .await
        .expect("server still reading");
    // ...and never reset the connection (a RST after our EOF would leave a socket error).
    assert!(client.take_error().unwrap().is_none(), "no reset");
    client.shutdown().await.unwrap();
    let fin_sent = Instant::now();
    server.await.unwrap();
    (String::from_utf8(answer).unwrap(), fin_sent.elapsed())
}

fn assert_rejected(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(answer.contains("\r\nContent-Type: text/plain"), "{answer}");
    assert!(
        answer.contains(
            "\r\n\r\nThis port speaks HTTPS; the request was sent as plain HTTP. Use https://"
        ),
        "{answer}"
    );
}

#[tokio::test]
async fn plain_http_gets_a_400_then_fin() {
    let (answer, wait) =
        exchange(b"GET /hello HTTP/1.1\r\nHost: weir.test:8443\r\n\r\n".to_vec()).await;
    assert_rejected(&answer);
    assert!(
        answer.ends_with("Use https://weir.test:8443/hello instead.\n"),
        "{answer}"
    );
    assert!(
        wait < Duration::from_secs(1),
        "server closed on our FIN: {wait:?}"
    );
}

#[tokio::test]
async fn plain_http_with_a_body_is_drained_not_reset() {
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: weir.test\r\nContent-Length: 262144\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 256 * 1024));
    let (answer, wait) = exchange(request).await;
    assert_rejected(&answer);
    assert!(
        answer.ends_with("Use https://weir.test/upload instead.\n"),
        "{answer}"
    );
    assert!(
        wait < Duration::from_secs(1),
        "server closed on our FIN: {wait:?}"
    );
}

#[tokio::test]
async fn unfinished_head_is_answered_at_eof() {
    let (mut client, server) = loopback_pair().await.unwrap();
    let server = tokio::spawn(reject_plain_http(server));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("Use an https:// URL instead.\n"),
        "{answer}"
    );
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap()
        .unwrap();
}
