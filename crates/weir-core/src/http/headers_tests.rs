//! Tests of forwarding headers, hop-by-hop removal and keep-alive parsing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn one(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

fn client(addr: &str, local_port: u16, tls: bool, version: Version) -> ClientInfo {
    ClientInfo {
        addr: addr.parse().unwrap(),
        local_port,
        tls,
        version,
    }
}

#[test]
fn forwarding_headers_ipv4_plain_h1() {
    let mut h = map(&[("host", "a.com")]);
    prepare_request(
        &mut h,
        &client("192.0.2.7:5555", 8080, false, Version::HTTP_11),
    );
    assert_eq!(one(&h, "x-forwarded-for").as_deref(), Some("192.0.2.7"));
    assert_eq!(one(&h, "x-real-ip").as_deref(), Some("192.0.2.7"));
    assert_eq!(one(&h, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(one(&h, "x-forwarded-port").as_deref(), Some("8080"));
    assert_eq!(
        one(&h, "x-forwarded-client-protocol").as_deref(),
        Some("HTTP/1.1")
    );
    assert_eq!(one(&h, "host").as_deref(), Some("a.com"));
}

#[test]
fn forwarding_headers_ipv6_tls_h2() {
    let mut h = map(&[]);
    prepare_request(
        &mut h,
        &client("[2001:db8::1]:443", 443, true, Version::HTTP_2),
    );
    assert_eq!(one(&h, "x-forwarded-for").as_deref(), Some("2001:db8::1"));
    assert_eq!(one(&h, "x-real-ip").as_deref(), Some("2001:db8::1"));
    assert_eq!(one(&h, "x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(one(&h, "x-forwarded-port").as_deref(), Some("443"));
    assert_eq!(
        one(&h, "x-forwarded-client-protocol").as_deref(),
        Some("HTTP/2")
    );
    assert!(h.get("host").is_none());
}

#[test]
fn forwarding_headers_h10_and_mapped_ipv4() {
    let mut h = map(&[]);
    let c = client("[::ffff:10.1.2.3]:1", 80, false, Version::HTTP_10);
    prepare_request(&mut h, &c);
    assert_eq!(one(&h, "x-real-ip").as_deref(), Some("10.1.2.3"));
    assert_eq!(
        one(&h, "x-forwarded-client-protocol").as_deref(),
        Some("HTTP/1.0")
    );
}

#[test]
fn forwarded_for_appended_and_client_values_replaced() {
    let mut h = map(&[
        ("x-forwarded-for", "203.0.113.1"),
        ("x-forwarded-for", "198.51.100.2, "),
        ("x-real-ip", "1.1.1.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "1"),
    ]);
    prepare_request(
        &mut h,
        &client("192.0.2.7:5555", 80, false, Version::HTTP_11),
    );
    assert_eq!(
        all(&h, "x-forwarded-for"),
        ["203.0.113.1, 198.51.100.2, 192.0.2.7"]
    );
    assert_eq!(all(&h, "x-real-ip"), ["192.0.2.7"]);
    assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
    assert_eq!(all(&h, "x-forwarded-port"), ["80"]);
}

#[test]
fn hop_by_hop_removed_including_connection_named() {
    let mut h = map(&[
        ("connection", "keep-alive, X-Secret"),
        ("connection", "x-other, close, host, content-length"),
        ("x-secret", "1"),
        ("x-other", "2"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("host", "a.com"),
        ("content-length", "3"),
        ("x-keep", "yes"),
    ]);
    prepare_response(&mut h);
    let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "host", "x-keep"]);
}

#[test]
fn request_hop_by_hop_removed_before_forwarding_headers_added() {
    let mut h = map(&[("connection", "x-forwarded-for"), ("te", "trailers")]);
    prepare_request(&mut h, &client("192.0.2.7:1", 80, false, Version::HTTP_11));
    assert_eq!(one(&h, "x-forwarded-for").as_deref(), Some("192.0.2.7"));
    assert!(h.get("connection").is_none() && h.get("te").is_none());
}

#[test]
fn upgrade_is_hop_by_hop() {
    let base = [
        ("connection", "keep-alive, Upgrade, x-hop"),
        ("upgrade", "websocket"),
        ("x-hop", "1"),
        ("sec-websocket-key", "k"),
    ];
    let mut h = map(&base);
    prepare_request(&mut h, &client("192.0.2.7:1", 80, false, Version::HTTP_2));
    assert!(h.get("connection").is_none() && h.get("upgrade").is_none());
    assert!(h.get("x-hop").is_none());
    assert!(h.get("sec-websocket-key").is_some());

    let mut h = map(&base);
    prepare_response(&mut h);
    assert!(h.get("connection").is_none() && h.get("upgrade").is_none());
    assert!(h.get("x-hop").is_none());
}

#[test]
fn keep_alive_timeout_table() {
    let cases: [(&[&str], Option<u64>); 12] = [
        (&["timeout=5"], Some(5)),
        (&["timeout=5, max=100"], Some(5)),
        (&["max=100, timeout=15"], Some(15)),
        (&["Timeout = 7 ,max=1"], Some(7)),
        (&["TIMEOUT=\"9\""], Some(9)),
        (&["max=100", "timeout=3"], Some(3)),
        (&["max=100"], None),
        (&["timeout="], None),
        (&["timeout=abc"], None),
        (&["timeout=-1"], None),
        (&["timeouts=5"], None),
        (&[], None),
    ];
    for (values, want) in cases {
        let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("keep-alive", *v)).collect();
        let got = keep_alive_timeout(&map(&pairs));
        assert_eq!(got, want.map(Duration::from_secs), "{values:?}");
    }
}

#[test]
fn connection_tokens() {
    let h = map(&[("connection", "keep-alive"), ("connection", " Foo ,CLOSE")]);
    assert!(connection_has(&h, "close"));
    assert!(connection_has(&h, "keep-alive"));
    assert!(!connection_has(&h, "clos"));
    assert!(!connection_has(&map(&[("x", "close")]), "close"));
}

#[test]
fn redact_credentials() {
    let v = HeaderValue::from_static("secret");
    for name in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE] {
        assert_eq!(redact(&name, &v), "[redacted]");
    }
    assert_eq!(redact(&HOST, &HeaderValue::from_static("a.com")), "a.com");
}

#[test]
fn ip_text_holds_the_longest_forms() {
    let text = |ip: &str| IpText::new(ip.parse().unwrap()).as_str().to_string();
    assert_eq!(text("192.168.100.200"), "192.168.100.200");
    for ip in [
        "0.0.0.0",
        "10.0.9.10",
        "127.0.0.1",
        "99.100.199.255",
        "203.0.113.7",
    ] {
        assert_eq!(text(ip), ip);
    }
    let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    assert_eq!(text(longest), longest);
    assert_eq!(text("::ffff:255.255.255.255"), "255.255.255.255");
    assert_eq!(text("::1"), "::1");
}
