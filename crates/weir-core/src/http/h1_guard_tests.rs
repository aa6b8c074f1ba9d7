//! Tests of the HTTP/1 framing guard: what it lets through, what it refuses, and that it
//! follows message boundaries whatever way the bytes are split.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn limits() -> GuardLimits {
    GuardLimits {
        max_header_size: 1024,
        max_uri_length: 128,
        max_body_size: 1000,
    }
}

/// Feeds `input` whole, and also split at every position, and one byte at a time; all three
/// must agree.
fn verdict(input: &[u8]) -> Result<(), Reject> {
    let mut whole = H1Guard::new(limits());
    let expected = whole.feed(input);
    for split in 1..input.len() {
        let mut g = H1Guard::new(limits());
        let got = g
            .feed(&input[..split])
            .and_then(|()| g.feed(&input[split..]));
        assert_eq!(
            got,
            expected,
            "split at {split} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let mut g = H1Guard::new(limits());
    let bytewise = input
        .iter()
        .try_for_each(|b| g.feed(std::slice::from_ref(b)));
    assert_eq!(bytewise, expected, "byte by byte");
    expected
}

fn reason(input: &[u8]) -> &'static str {
    verdict(input).expect_err("refused").reason
}

#[test]
fn ordinary_requests_pass() {
    assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    assert_eq!(
        verdict(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
        Ok(())
    );
    assert_eq!(
        verdict(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        Ok(())
    );
    assert_eq!(verdict(b"GET / HTTP/1.0\r\n\r\n"), Ok(()));
}

#[test]
fn pipelined_requests_are_followed_across_bodies() {
    let two = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(verdict(two), Ok(()));
    // A body whose bytes look like a smuggled head are body bytes, not a head.
    let body_looks_like_head =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 26\r\n\r\nGET /x HTTP/1.1\r\nHost: b\r\n";
    assert_eq!(verdict(body_looks_like_head), Ok(()));
    // The head after a chunked body is checked too.
    let then_bad = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                     POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(reason(then_bad), "te_and_cl");
}

#[test]
fn smuggling_shapes_are_refused() {
    assert_eq!(reason(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"), "te_and_cl");
    assert_eq!(reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"), "te_and_cl");
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"),
        "duplicate_content_length"
    );
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n"),
        "duplicate_content_length"
    );
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n"),
        "bad_content_length"
    );
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        "bad_transfer_encoding"
    );
    assert_eq!(reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), "bad_transfer_encoding");
    assert_eq!(
        reason(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "bad_transfer_encoding"
    );
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        "bad_chunk"
    );
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX"),
        "bad_chunk"
    );
    assert_eq!(reason(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"), "bad_chunk");
}

#[test]
fn malformed_heads_are_refused() {
    // obs-fold, NUL and a bare CR in a header value, a space before the colon.
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
        "malformed_head"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
        "malformed_head"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
        "malformed_head"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        "malformed_head"
    );
    assert_eq!(reason(b"GET / HTTP/9.9\r\n\r\n"), "malformed_head");
}

#[test]
fn limits_give_their_own_statuses() {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(200));
    let r = verdict(long_uri.as_bytes()).unwrap_err();
    assert_eq!(
        (r.status, r.reason),
        (StatusCode::URI_TOO_LONG, "uri_too_long")
    );

    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(2000)
    );
    let r = verdict(big_head.as_bytes()).unwrap_err();
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let r = verdict(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n").unwrap_err();
    assert_eq!(
        (r.status, r.reason),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );

    let chunks = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n";
    assert_eq!(verdict(chunks), Ok(()), "1000 bytes is the limit");
    let over = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n";
    assert_eq!(
        verdict(over).unwrap_err().status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn upgrades_connect_and_http2_pass_through() {
    let mut g = H1Guard::new(limits());
    let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(g.feed(ws), Ok(()));
    assert!(g.is_passthrough());
    assert_eq!(g.feed(b"\x81\x85binary websocket frame \0\0"), Ok(()));
    g.resume();
    assert!(!g.is_passthrough());
    assert_eq!(g.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));

    let mut g = H1Guard::new(limits());
    assert_eq!(
        g.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"),
        Ok(())
    );
    assert!(g.is_passthrough());
}

#[test]
fn a_refused_connection_stays_refused() {
    let mut g = H1Guard::new(limits());
    let first =
        g.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(first.is_err());
    assert_eq!(g.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), first);
}

#[test]
fn mid_head_tells_a_started_request() {
    let mut g = H1Guard::new(limits());
    assert!(!g.mid_head());
    g.feed(b"GE").unwrap();
    assert!(g.mid_head());
    g.feed(b"T / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert!(!g.mid_head());
}
