#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_uri_length: 64,
    max_body_size: 1000,
};

/// Parses `raw` and runs the request checks on it.
fn check(raw: &str) -> Result<Framing, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    assert!(req.parse(raw.as_bytes()).unwrap().is_complete(), "{raw}");
    check_request(&req, &LIMITS).map(|r| r.framing)
}

fn reason(raw: &str) -> &'static str {
    check(raw).unwrap_err().reason
}

#[test]
fn framing_is_read_from_the_head() {
    assert_eq!(
        check("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap(),
        Framing::Empty
    );
    assert_eq!(
        check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap(),
        Framing::Length(5)
    );
    assert_eq!(
        check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap(),
        Framing::Chunked
    );
}

#[test]
fn ambiguous_framing_is_refused() {
    assert_eq!(
        reason(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        "te_and_cl"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
        "duplicate_content_length"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
        "bad_content_length"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        "bad_transfer_encoding"
    );
    assert_eq!(
        reason("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "bad_transfer_encoding"
    );
}

#[test]
fn framing_is_refused_whatever_the_header_order_or_repetition() {
    assert_eq!(
        reason(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        ),
        "te_and_cl"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"),
        "duplicate_content_length"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n"),
        "bad_content_length"
    );
    assert_eq!(
        reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        "bad_content_length"
    );
    assert_eq!(
        reason(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        "bad_transfer_encoding"
    );
    // Surrounding spaces are not part of the value.
    assert_eq!(
        check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  7 \r\n\r\n").unwrap(),
        Framing::Length(7)
    );
}

#[test]
fn hosts_are_checked() {
    assert_eq!(reason("GET / HTTP/1.1\r\n\r\n"), "missing_host");
    assert!(check("GET / HTTP/1.0\r\n\r\n").is_ok());
    assert_eq!(
        reason("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        "multiple_host"
    );
    assert_eq!(reason("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), "bad_host");
    assert_eq!(
        reason("GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n"),
        "host_mismatch"
    );
    assert!(check("GET http://a.test:80/x HTTP/1.1\r\nHost: A.test\r\n\r\n").is_ok());
}

#[test]
fn limits_give_their_own_status() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(64));
    assert_eq!(check(&long).unwrap_err().status, StatusCode::URI_TOO_LONG);
    let big = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n";
    assert_eq!(
        check(big).unwrap_err().status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let connect = "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
    assert_eq!(
        check(connect).unwrap_err().status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// The head a server gets for `raw`.
fn forwarded(raw: &str, persist: Option<&Persist>) -> String {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(raw.as_bytes()).unwrap();
    let info = check_request(&req, &LIMITS).unwrap();
    let mut out = OutBuf::new();
    let fwd = Forwarded {
        ip: "192.0.2.9",
        local_port: 8080,
        tls: false,
    };
    write_request(&mut out, &req, &info, &fwd, persist);
    String::from_utf8(out.bytes().to_vec()).unwrap()
}

#[test]
fn the_server_gets_an_origin_form_head_without_hop_by_hop_headers() {
    let head = forwarded(
        "GET http://a.test/p?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret\r\n\
         X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-For: , 198.51.100.2,\r\nX-Real-IP: 6.6.6.6\r\nAccept: */*\r\n\r\n",
        None,
    );
    assert_eq!(
        head,
        "GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\
         x-forwarded-for: 203.0.113.7, 198.51.100.2, 192.0.2.9\r\nx-forwarded-proto: http\r\n\
         x-forwarded-port: 8080\r\nx-real-ip: 192.0.2.9\r\nx-forwarded-client-protocol: HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn chunked_framing_and_upgrades_are_written_by_weir() {
    let head = forwarded(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        None,
    );
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    let head = forwarded(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        None,
    );
    assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    // Upgrade without Connection: upgrade is just a hop-by-hop header.
    let head = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        None,
    );
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
}

/// Parses a response head and writes the client's version of it.
fn relayed(raw: &str, head_request: bool, connection: ClientConnection) -> (Response, String) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(raw.as_bytes()).unwrap();
    let info = check_response(&resp, head_request).unwrap();
    let mut out = OutBuf::new();
    write_response(
        &mut out,
        &resp,
        info.framing == Framing::Chunked,
        connection,
        None,
    );
    (info, String::from_utf8(out.bytes().to_vec()).unwrap())
}

#[test]
fn response_framing_and_reuse() {
    let (info, head) = relayed(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n",
        false,
        ClientConnection::KeepAlive,
    );
    assert_eq!(info.framing, Framing::Length(3));
    assert!(info.reusable);
    assert_eq!(info.keep_alive_hint, Some(Duration::from_secs(5)));
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");

    let (info, head) = relayed(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        false,
        ClientConnection::Close,
    );
    assert_eq!(info.framing, Framing::Chunked);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );

    let (info, _) = relayed("HTTP/1.1 200 OK\r\n\r\n", false, ClientConnection::Close);
    assert_eq!(info.framing, Framing::UntilClose);
    assert!(!info.reusable);
    let (info, _) = relayed(
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        true,
        ClientConnection::KeepAlive,
    );
    assert_eq!(info.framing, Framing::Empty, "a HEAD response has no body");
    let (info, _) = relayed(
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        false,
        ClientConnection::KeepAlive,
    );
    assert!(!info.reusable, "HTTP/1.0 without keep-alive closes");
}

#[test]
fn conflicting_response_lengths_are_invalid() {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
        .unwrap();
    assert_eq!(
        check_response(&resp, false).unwrap_err(),
        "conflicting_content_length"
    );
}

#[test]
fn weir_answers_are_complete_messages() {
    let mut out = OutBuf::new();
    write_answer(&mut out, StatusCode::SERVICE_UNAVAILABLE, true, None);
    let text = String::from_utf8(out.bytes().to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "503 Service Unavailable\n");
    assert!(head.contains(&format!("content-length: {}", body.len())));
    assert!(head.contains("retry-after: "));
    assert!(head.ends_with("connection: close"));
}
