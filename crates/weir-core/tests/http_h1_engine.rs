//! The HTTP/1 engine (`http::h1`) end to end, for the behaviours the other `http_*` tests do not
//! reach: HTTP/1.0 clients (de-chunking, `Connection: keep-alive`), `Expect: 100-continue`,
//! 1xx responses, bodies framed by the server's close, pipelining, large bodies both ways, a
//! server that answers before the upload is complete, a server that breaks off a body or
//! frames it ambiguously, server connection reuse, and persistence with `Connection: close`.
//!
//! Each test checks what the client got, what the server got, and the end record. Servers
//! that must misbehave are [`RawBackend`] scripts; well-behaved ones are [`HttpBackend`]s.
//! Every test runs under a time bound ([`within`]) so a hang fails instead of blocking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, NO_CHECK, assert_http_end, echoed, http_config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{
    Ending, H1Client, HttpBackend, RawBackend, RawRequest, blob_bytes, fnv1a64, raw_exchange,
    read_response, read_to_end_classified,
};

const WAIT: Duration = Duration::from_secs(10);

/// The end of a response relayed whole.
const DONE: (EndBy, EndHow, EndPhase) = (EndBy::Upstream, EndHow::Done, EndPhase::Response);

/// A proxy in front of one server, health checks off.
async fn proxy_for(server: std::net::SocketAddr) -> Harness {
    Harness::start(&http_config(&[server], "", "", NO_CHECK)).await
}

/// A backend that answers every request on a connection with `reply(request)` and keeps the
/// connection until the peer ends it.
async fn replying(reply: impl Fn(&RawRequest) -> Vec<u8> + Send + Sync + 'static) -> RawBackend {
    let reply = Arc::new(reply);
    RawBackend::start(move |mut conn| {
        let reply = Arc::clone(&reply);
        async move {
            loop {
                let request = match conn.read_request().await {
                    Ok(request) => request,
                    Err(ending) => return ending,
                };
                if let Err(ending) = conn.write(&reply(&request)).await {
                    return ending;
                }
            }
        }
    })
    .await
}

/// `data` as a chunked body, with chunk sizes taken in turn from `sizes`.
fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 16);
    let mut rest = data;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Sizes that straddle every buffer boundary weir has (16, 48 and 64 KiB).
const ODD_SIZES: &[usize] = &[1, 7, 4096, 65_537, 49_151, 100_003, 16_384, 3];

/// Reads one head (up to the blank line) byte by byte, so nothing after it is consumed.
async fn read_one_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "connection ended inside a head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

// === HTTP/1.0 clients ===

#[tokio::test]
async fn an_http10_client_gets_a_chunked_response_dechunked_and_framed_by_close() {
    within(30, async {
        let backend = replying(|_| {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec()
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;

        let (bytes, ending) =
            raw_exchange(h.addr, b"GET /c HTTP/1.0\r\nHost: t\r\n\r\n", WAIT).await;
        assert_eq!(ending, Ending::Fin, "{:?}", String::from_utf8_lossy(&bytes));
        let r = read_response(&bytes).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "{r:?}");
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
        assert_eq!(r.header("content-length"), None, "{r:?}");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        // Framed by the close: everything after the head is the data, no chunk syntax.
        assert_eq!(r.text(), "hello, world");
        assert_eq!(backend.requests(), 1);

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.http_version, "HTTP/1.0");
        assert_eq!(rec.bytes_out, 12, "data bytes, not chunk syntax: {rec:?}");
    })
    .await;
}

#[tokio::test]
async fn an_http10_client_gets_8_mib_of_chunks_dechunked_intact() {
    within(60, async {
        const LEN: usize = 8 << 20;
        let data = blob_bytes(LEN, 21);
        let body = chunked(&data, ODD_SIZES);
        let backend = replying(move |_| {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(&body);
            out
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;

        let (bytes, ending) =
            raw_exchange(h.addr, b"GET /big HTTP/1.0\r\nHost: t\r\n\r\n", WAIT * 3).await;
        assert_eq!(ending, Ending::Fin);
        let r = read_response(&bytes).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, LEN));
        assert_eq!(fnv1a64(&r.body), fnv1a64(&data));

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.bytes_out, LEN as u64);
    })
    .await;
}

#[tokio::test]
async fn an_http10_client_with_keep_alive_keeps_its_connection() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let mut h = proxy_for(backend.addr()).await;
        let mut client = H1Client::connect(h.addr).await.unwrap();

        let r = client
            .send_raw(b"GET /a HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.header("content-length"), Some("3"), "{r:?}");

        // The same connection carries a second request.
        let r = client
            .send_raw(b"GET /status/404 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "404\n"));
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");

        // Without keep-alive, HTTP/1.0 closes after the response.
        let r = client
            .send_raw(b"GET /b HTTP/1.0\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "{r:?}");
        let (rest, ending) = client.read_to_end().await;
        assert_eq!((rest.len(), ending), (0, Ending::Fin));

        let targets: Vec<String> = backend
            .request_log()
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(targets, ["/a", "/status/404", "/b"]);
        for (rec, status) in h.http_records(3).await.iter().zip([200, 404, 200]) {
            assert_http_end(rec, status, &status.to_string(), DONE, None);
            assert_eq!(rec.http_version, "HTTP/1.0");
        }
    })
    .await;
}

// === 100-continue and other 1xx ===

#[tokio::test]
async fn expect_100_continue_gets_100_then_the_response_and_the_server_gets_the_body() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let mut h = proxy_for(backend.addr()).await;
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                  Content-Length: 11\r\n\r\n",
            )
            .await
            .unwrap();
        // The body is sent only once the client has its 100.
        assert_eq!(
            read_one_head(&mut stream).await,
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
        stream.write_all(b"hello world").await.unwrap();
        let mut client = H1Client::new(stream);
        let r = client.read_response().await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello world"));

        let seen = backend.request_log();
        assert_eq!(seen.len(), 1);
        assert_eq!(echoed(&seen[0].head, "expect"), Vec::<String>::new());
        assert_eq!(echoed(&seen[0].head, "content-length"), ["11"]);

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!((rec.bytes_in, rec.bytes_out), (11, 11));

        // The connection goes on.
        let r = client.get("/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
    })
    .await;
}

/// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
/// request MUST ignore that expectation", and §15.2: no 1xx to an HTTP/1.0 client.
///
/// The body follows only once the server has the head: with a short `request_header_timeout`
/// weir stops waiting for the body and sends the head on, so whatever weir says about the
/// expectation it has said by then.
#[tokio::test]
async fn expect_100_continue_from_an_http10_client_gets_no_100() {
    within(30, async {
        let backend = hashing_backend().await;
        let h = Harness::start(&http_config(
            &[backend.addr()],
            "request_header_timeout = \"100ms\"",
            "",
            NO_CHECK,
        ))
        .await;
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream
            .write_all(
                b"POST /up HTTP/1.0\r\nHost: t\r\nExpect: 100-continue\r\n\
                  Content-Length: 5\r\n\r\n",
            )
            .await
            .unwrap();
        assert!(
            common::eventually(WAIT, || backend.requests() == 1).await,
            "the head reaches the server"
        );
        stream.write_all(b"hello").await.unwrap();
        let (bytes, ending) = read_to_end_classified(&mut stream).await;
        assert_eq!(ending, Ending::Fin);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
        let r = read_response(&bytes).await.unwrap();
        assert_eq!(r.text(), format!("5 {:016x}", fnv1a64(b"hello")));
    })
    .await;
}

/// The server sends an unsolicited 100 and a 103 Early Hints before its 200.
async fn early_hints_backend() -> RawBackend {
    replying(|_| {
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            .to_vec()
    })
    .await
}

#[tokio::test]
async fn an_http11_client_gets_the_servers_1xx_then_the_response() {
    within(30, async {
        let backend = early_hints_backend().await;
        let mut h = proxy_for(backend.addr()).await;
        let (bytes, ending) = raw_exchange(
            h.addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            WAIT,
        )
        .await;
        assert_eq!(ending, Ending::Fin);
        let text = String::from_utf8_lossy(&bytes);
        let interim = "HTTP/1.1 100 Continue\r\n\r\n\
                       HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
        assert!(text.starts_with(interim), "{text:?}");
        let r = read_response(&bytes[interim.len()..]).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        assert!(r.closes());

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.bytes_out, 2);
    })
    .await;
}

#[tokio::test]
async fn an_http10_client_gets_no_1xx() {
    within(30, async {
        let backend = early_hints_backend().await;
        let mut h = proxy_for(backend.addr()).await;
        let (bytes, ending) =
            raw_exchange(h.addr, b"GET / HTTP/1.0\r\nHost: t\r\n\r\n", WAIT).await;
        assert_eq!(ending, Ending::Fin);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
        assert!(
            !text.contains("Early Hints") && !text.contains("Link"),
            "{text:?}"
        );
        let r = read_response(&bytes).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
    })
    .await;
}

// === framing by close, pipelining ===

#[tokio::test]
async fn a_body_framed_by_the_servers_close_is_relayed_whole_and_not_pooled() {
    within(30, async {
        let data = blob_bytes(200_000, 5);
        let expected = data.clone();
        let backend = RawBackend::start(move |mut conn| {
            let data = data.clone();
            async move {
                loop {
                    let request = match conn.read_request().await {
                        Ok(request) => request,
                        Err(ending) => return ending,
                    };
                    if request.seen.target == "/until-close" {
                        let mut out =
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
                                .to_vec();
                        out.extend_from_slice(&data);
                        if let Err(ending) = conn.write(&out).await {
                            return ending;
                        }
                        return conn.close().await;
                    }
                    let body = format!("{} bytes", request.body.len());
                    let out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if let Err(ending) = conn.write(out.as_bytes()).await {
                        return ending;
                    }
                }
            }
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;

        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client.get("/until-close", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "{r:?}");
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body.len(), expected.len());
        assert_eq!(fnv1a64(&r.body), fnv1a64(&expected));
        let (rest, ending) = client.read_to_end().await;
        assert_eq!((rest.len(), ending), (0, Ending::Fin));
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.bytes_out, expected.len() as u64);
        // weir answered the server's FIN with its own.
        assert!(backend.wait_for_endings(1, WAIT).await);
        assert_eq!(backend.endings(), [Ending::Fin]);

        // A POST (never retried) works: it went over a new server connection, not the
        // closed one.
        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client.request("POST", "/after", &[], b"abc").await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "3 bytes"));
        assert_eq!(backend.connections(), 2);
        assert_eq!(backend.requests(), 2);
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.retries, 0);
    })
    .await;
}

#[tokio::test]
async fn three_pipelined_requests_get_three_responses_in_order() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let mut h = proxy_for(backend.addr()).await;
        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client
            .send_raw(
                b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n\
                  POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
                  GET /status/404 HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "201\n"));
        let r = client.read_response().await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        let r = client.read_response().await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "404\n"));
        // And the connection is still usable.
        let r = client.get("/", &[]).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));

        let targets: Vec<String> = backend
            .request_log()
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(targets, ["/status/201", "/echo", "/status/404", "/"]);
        assert_eq!(backend.connections(), 1);
        let records = h.http_records(4).await;
        let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [201, 200, 404, 200]);
        for rec in &records {
            assert_eq!((rec.end_by, rec.end_how, rec.end_phase), DONE);
        }
    })
    .await;
}

// === large bodies ===

/// A backend that answers each request with the length and FNV-1a hash of its body.
async fn hashing_backend() -> RawBackend {
    replying(|request| {
        let body = format!("{} {:016x}", request.body.len(), fnv1a64(&request.body));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

#[tokio::test]
async fn a_5_mib_upload_arrives_intact_with_content_length_and_chunked() {
    within(60, async {
        const LEN: usize = 5 << 20;
        let backend = hashing_backend().await;
        let mut h = proxy_for(backend.addr()).await;
        let data = blob_bytes(LEN, 9);
        let expected = format!("{LEN} {:016x}", fnv1a64(&data));
        let mut client = H1Client::connect(h.addr).await.unwrap();

        let r = client.request("POST", "/up", &[], &data).await.unwrap();
        assert_eq!((r.status, r.text()), (200, expected.clone()));
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);

        let mut raw = b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(&chunked(&data, ODD_SIZES));
        let r = client.send_raw(&raw).await.unwrap();
        assert_eq!((r.status, r.text()), (200, expected));
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);

        assert_eq!((backend.connections(), backend.requests()), (1, 2));
    })
    .await;
}

/// `bytes_in` is "request body bytes received from the client" (`end.rs`).
#[tokio::test]
async fn the_record_counts_every_byte_of_a_streamed_upload() {
    within(60, async {
        const LEN: usize = 5 << 20;
        let backend = hashing_backend().await;
        let mut h = proxy_for(backend.addr()).await;
        let data = blob_bytes(LEN, 10);
        let mut client = H1Client::connect(h.addr).await.unwrap();

        let r = client.request("POST", "/up", &[], &data).await.unwrap();
        assert_eq!(r.status, 200);
        let with_length = h.http_record().await.bytes_in;

        let mut raw =
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(&chunked(&data, ODD_SIZES));
        let r = client.send_raw(&raw).await.unwrap();
        assert_eq!(r.status, 200);
        let chunked = h.http_record().await.bytes_in;
        assert_eq!(
            (with_length, chunked),
            (LEN as u64, LEN as u64),
            "bytes_in of the Content-Length and the chunked upload"
        );
    })
    .await;
}

#[tokio::test]
async fn an_8_mib_download_arrives_intact_chunked_and_length_framed() {
    within(60, async {
        const LEN: usize = 8 << 20;
        let data = blob_bytes(LEN, 13);
        let body = chunked(&data, ODD_SIZES);
        let plain = data.clone();
        let backend = replying(move |request| {
            let mut out = if request.seen.target == "/chunked" {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes()
            };
            out.extend_from_slice(if request.seen.target == "/chunked" {
                &body
            } else {
                &plain
            });
            out
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;
        let mut client = H1Client::connect(h.addr).await.unwrap();

        let r = client.get("/chunked", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!((r.body.len(), fnv1a64(&r.body)), (LEN, fnv1a64(&data)));
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.bytes_out, LEN as u64);

        let r = client.get("/length", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(LEN.to_string().as_str()));
        assert_eq!((r.body.len(), fnv1a64(&r.body)), (LEN, fnv1a64(&data)));
        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.bytes_out, LEN as u64);

        assert_eq!((backend.connections(), backend.requests()), (1, 2));
    })
    .await;
}

// === servers that answer early, break off or frame badly ===

#[tokio::test]
async fn a_413_sent_while_the_client_uploads_reaches_it_and_weir_closes_with_fin() {
    within(60, async {
        const LEN: usize = 16 << 20;
        // The server reads the head only, answers 413 and never reads again.
        let backend = RawBackend::start(|mut conn| async move {
            if let Err(ending) = conn.read_head().await {
                return ending;
            }
            let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\
                           Connection: close\r\n\r\ntoo large";
            if let Err(ending) = conn.write(answer).await {
                return ending;
            }
            conn.hold().await
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;

        let stream = TcpStream::connect(h.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let upload = tokio::spawn(async move {
            let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n");
            write.write_all(head.as_bytes()).await?;
            let data = blob_bytes(LEN, 17);
            write.write_all(&data).await?;
            write.shutdown().await
        });
        let (bytes, ending) = read_to_end_classified(&mut read).await;
        let r = read_response(&bytes).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (413, "too large"));
        assert!(r.closes(), "{r:?}");
        assert_eq!(
            ending,
            Ending::Fin,
            "weir closes the client with FIN, not RST"
        );
        // The whole upload went out without a reset: weir read it to the end.
        upload.await.unwrap().unwrap();

        let rec = h.http_record().await;
        assert_http_end(&rec, 413, "413", DONE, None);
        assert_eq!(backend.requests(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_server_closing_mid_body_closes_the_client_with_fin() {
    within(30, async {
        let backend = RawBackend::start(|mut conn| async move {
            if let Err(ending) = conn.read_request().await {
                return ending;
            }
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            out.extend_from_slice(&[b'x'; 100]);
            if let Err(ending) = conn.write(&out).await {
                return ending;
            }
            conn.close().await
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;

        let (bytes, ending) =
            raw_exchange(h.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", WAIT).await;
        assert_eq!(ending, Ending::Fin, "{:?}", String::from_utf8_lossy(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head:?}");
        assert!(head.contains("Content-Length: 1000"), "{head:?}");
        assert_eq!(body, "x".repeat(100), "the 100 bytes the server sent");

        let rec = h.http_record().await;
        assert_http_end(
            &rec,
            200,
            "200",
            (EndBy::Upstream, EndHow::Fin, EndPhase::Response),
            None,
        );
        assert_eq!(rec.bytes_out, 100);
        assert!(backend.wait_for_endings(1, WAIT).await);
        assert_eq!(backend.endings(), [Ending::Fin]);
    })
    .await;
}

#[tokio::test]
async fn two_different_content_lengths_in_a_response_are_a_502() {
    within(30, async {
        let backend = RawBackend::start(|mut conn| async move {
            if let Err(ending) = conn.read_request().await {
                return ending;
            }
            let out = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
            if let Err(ending) = conn.write(out).await {
                return ending;
            }
            conn.close().await
        })
        .await;
        let mut h = proxy_for(backend.addr()).await;
        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client.get("/", &[]).await.unwrap();
        assert_eq!(r.status, 502, "{r:?}");
        assert!(!r.text().contains("hello"), "{r:?}");

        let rec = h.http_record().await;
        assert_http_end(
            &rec,
            502,
            "-",
            (EndBy::Upstream, EndHow::Error, EndPhase::Response),
            None,
        );
        assert_eq!(backend.requests(), 1, "not retried");
        // weir closes that server connection with FIN.
        assert!(backend.wait_for_endings(1, WAIT).await);
        assert_eq!(backend.endings(), [Ending::Fin]);
    })
    .await;
}

// === server connection reuse, persistence ===

#[tokio::test]
async fn sequential_requests_reuse_one_server_connection() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let mut h = proxy_for(backend.addr()).await;
        let mut client = H1Client::connect(h.addr).await.unwrap();
        for path in ["/one", "/two"] {
            let r = client.get(path, &[]).await.unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));
        }
        // A record comes after its server connection went back to the pool; then a second
        // client connection gets that same server connection.
        let mut records = h.http_records(2).await;
        let mut other = H1Client::connect(h.addr).await.unwrap();
        let r = other.get("/three", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        records.push(h.http_record().await);

        assert_eq!(backend.requests(), 3);
        assert_eq!(
            backend.connections(),
            1,
            "one server connection for all three"
        );
        for rec in &records {
            assert_http_end(rec, 200, "200", DONE, None);
            assert_eq!(rec.retries, 0);
        }
        // Connect time is 0 on a reused connection.
        assert_eq!(records[1].upstream_connect_time, Some(Duration::ZERO));
        assert_eq!(records[2].upstream_connect_time, Some(Duration::ZERO));
    })
    .await;
}

#[tokio::test]
async fn cookie_insert_with_connection_close_has_both_headers() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let mut h = Harness::start(&http_config(
            &[backend.addr()],
            "",
            r#"persistence = { mode = "cookie_insert", cookie = "SRV" }"#,
            NO_CHECK,
        ))
        .await;
        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client.get("/", &["Connection: close"]).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));
        assert!(r.closes(), "{r:?}");
        let cookies = r.headers_named("set-cookie");
        assert_eq!(cookies.len(), 1, "{r:?}");
        assert!(cookies[0].starts_with("SRV="), "{r:?}");
        let (rest, ending) = client.read_to_end().await;
        assert_eq!((rest.len(), ending), (0, Ending::Fin));

        let rec = h.http_record().await;
        assert_http_end(&rec, 200, "200", DONE, None);
        assert_eq!(rec.server.as_deref(), Some("s0"));
    })
    .await;
}

/// A client that asked for `Connection: close` is closed at once — with FIN, since it left
/// nothing unread. One that asked for it but pipelined another request anyway still gets a
/// FIN, not a reset: weir then drains before closing.
#[tokio::test]
async fn a_client_that_asked_to_close_gets_fin_with_or_without_stray_bytes() {
    within(30, async {
        let backend = HttpBackend::start("b0").await;
        let h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;

        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client.get("/", &["Connection: close"]).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "{r:?}");
        let (rest, ending) = client.read_to_end().await;
        assert_eq!((rest.len(), ending), (0, Ending::Fin));

        let mut client = H1Client::connect(h.addr).await.unwrap();
        let r = client
            .send_raw(
                b"GET /a HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n\
                  GET /b HTTP/1.1\r\nHost: test\r\n\r\n",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "{r:?}");
        let (rest, ending) = client.read_to_end().await;
        assert_eq!(
            (rest.len(), ending),
            (0, Ending::Fin),
            "the stray request is not answered"
        );
        assert_eq!(backend.requests_for("/b"), 0);
    })
    .await;
}
