//! Tests of the request checks: one per rule, and ordinary requests that must pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http::{HeaderName, HeaderValue, Request};

const LIMITS: Limits = Limits {
    max_uri_length: 64,
    max_body_size: 1000,
};

fn head(
    method: &str,
    uri: &str,
    version: Version,
    headers: &[(&str, &[u8])],
) -> http::request::Parts {
    let mut req = Request::builder().method(method).uri(uri).version(version);
    for (name, value) in headers {
        req = req.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    req.body(()).unwrap().into_parts().0
}

fn h1(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> http::request::Parts {
    head(method, uri, Version::HTTP_11, headers)
}

fn check(parts: &http::request::Parts) -> Result<(), (u16, &'static str)> {
    check_request(parts, &LIMITS).map_err(|r| (r.status.as_u16(), r.reason))
}

#[test]
fn ordinary_requests_accepted() {
    assert_eq!(check(&h1("GET", "/x?y=1", &[("host", b"a.com")])), Ok(()));
    let post = [("host", &b"a.com:8080"[..]), ("content-length", b"1000")];
    assert_eq!(check(&h1("POST", "/upload", &post)), Ok(()));
    let chunked = [("host", &b"a.com"[..]), ("transfer-encoding", b"Chunked")];
    assert_eq!(check(&h1("POST", "/upload", &chunked)), Ok(()));
    let h2 = head("GET", "https://a.com/x", Version::HTTP_2, &[]);
    assert_eq!(check(&h2), Ok(()));
    let h10 = head("GET", "/", Version::HTTP_10, &[]);
    assert_eq!(check(&h10), Ok(()));
    let abs = [("host", &b"A.com:80"[..])];
    assert_eq!(check(&h1("GET", "http://a.com/x", &abs)), Ok(()));
    assert_eq!(check(&h1("GET", "/", &[("host", b"")])), Ok(()));
    let obs_text = [("host", &b"a.com"[..]), ("x-name", b"caf\xc3\xa9\tok")];
    assert_eq!(check(&h1("GET", "/", &obs_text)), Ok(()));
}

#[test]
fn te_and_cl_rejected() {
    let h = [
        ("host", &b"a"[..]),
        ("content-length", b"5"),
        ("transfer-encoding", b"chunked"),
    ];
    assert_eq!(check(&h1("POST", "/", &h)), Err((400, "te_and_cl")));
}

#[test]
fn transfer_encoding_other_than_chunked_rejected() {
    for te in [
        &b"gzip, chunked"[..],
        b"chunked, chunked",
        b"identity",
        b"chunked ",
        b"",
    ] {
        let h = [("host", &b"a"[..]), ("transfer-encoding", te)];
        assert_eq!(
            check(&h1("POST", "/", &h)),
            Err((400, "bad_transfer_encoding")),
            "{te:?}"
        );
    }
}

#[test]
fn several_transfer_encoding_headers_rejected() {
    let h = [
        ("host", &b"a"[..]),
        ("transfer-encoding", b"chunked"),
        ("transfer-encoding", b"chunked"),
    ];
    assert_eq!(
        check(&h1("POST", "/", &h)),
        Err((400, "bad_transfer_encoding"))
    );
}

#[test]
fn transfer_encoding_outside_http11_rejected() {
    let h = [("transfer-encoding", &b"chunked"[..])];
    let h10 = head("POST", "/", Version::HTTP_10, &h);
    assert_eq!(check(&h10), Err((400, "bad_transfer_encoding")));
}

#[test]
fn duplicate_content_length_rejected() {
    let h = [
        ("host", &b"a"[..]),
        ("content-length", b"5"),
        ("content-length", b"5"),
    ];
    assert_eq!(
        check(&h1("POST", "/", &h)),
        Err((400, "duplicate_content_length"))
    );
}

#[test]
fn content_length_not_plain_decimal_rejected() {
    for cl in [&b"5, 5"[..], b"+5", b"-1", b"0x10", b" 5", b"5.0", b""] {
        let h = [("host", &b"a"[..]), ("content-length", cl)];
        assert_eq!(
            check(&h1("POST", "/", &h)),
            Err((400, "bad_content_length")),
            "{cl:?}"
        );
    }
}

#[test]
fn body_over_limit_is_413() {
    for cl in [&b"1001"[..], b"99999999999999999999999"] {
        let h = [("host", &b"a"[..]), ("content-length", cl)];
        assert_eq!(check(&h1("POST", "/", &h)), Err((413, "body_too_large")));
    }
}

#[test]
fn long_uri_is_414() {
    let path = format!("/{}", "a".repeat(63));
    assert_eq!(check(&h1("GET", &path, &[("host", b"a")])), Ok(()));
    let query = format!("/?{}", "a".repeat(63));
    assert_eq!(
        check(&h1("GET", &query, &[("host", b"a")])),
        Err((414, "uri_too_long"))
    );
    // Absolute-form counts the whole target: 7 + 5 + 53 = 65.
    let abs = format!("http://a.com/{}", "a".repeat(52));
    assert_eq!(
        check(&h1("GET", &abs, &[("host", b"a.com")])),
        Err((414, "uri_too_long"))
    );
    // HTTP/2 counts :path only.
    let h2 = head(
        "GET",
        &format!("https://a.com/{}", "a".repeat(60)),
        Version::HTTP_2,
        &[],
    );
    assert_eq!(check(&h2), Ok(()));
}

#[test]
fn control_bytes_in_header_values_rejected() {
    // `HeaderValue` cannot be built with these bytes without `unsafe`, so the predicate the
    // check uses is tested on raw bytes.
    for value in [
        &b"a\x00b"[..],
        b"a\rb",
        b"a\nb",
        b"a\x01",
        b"\x1b[31m",
        b"del\x7f",
    ] {
        assert!(has_control_byte(value), "{value:?}");
    }
    for value in [
        &b""[..],
        b"plain",
        b"tab\there",
        b"caf\xc3\xa9",
        b"\x80\xff",
        b"~ !",
    ] {
        assert!(!has_control_byte(value), "{value:?}");
    }
}

#[test]
fn http11_without_host_rejected() {
    assert_eq!(check(&h1("GET", "/", &[])), Err((400, "missing_host")));
}

#[test]
fn multiple_host_rejected() {
    let h = [("host", &b"a"[..]), ("host", b"b")];
    assert_eq!(check(&h1("GET", "/", &h)), Err((400, "multiple_host")));
    let h = [("host", &b"a"[..]), ("host", b"a")];
    assert_eq!(check(&h1("GET", "/", &h)), Err((400, "multiple_host")));
}

#[test]
fn invalid_host_rejected() {
    for host in [&b"a b"[..], b"a.com:x", b"user@a.com", b"[::1", b"a/b"] {
        let h = [("host", host)];
        assert_eq!(
            check(&h1("GET", "/", &h)),
            Err((400, "bad_host")),
            "{host:?}"
        );
    }
}

#[test]
fn absolute_form_authority_differing_from_host_rejected() {
    let cases = [
        ("http://a.com/x", &b"b.com"[..]),
        ("http://a.com/x", b"a.com:8080"),
        ("http://a.com:8080/x", b"a.com"),
        ("https://a.com/x", b"a.com:80"),
        ("http://a.com/x", b""),
    ];
    for (uri, host) in cases {
        assert_eq!(
            check(&h1("GET", uri, &[("host", host)])),
            Err((400, "host_mismatch")),
            "{uri}"
        );
    }
    let h2 = head(
        "GET",
        "https://a.com/",
        Version::HTTP_2,
        &[("host", b"b.com")],
    );
    assert_eq!(check(&h2), Err((400, "host_mismatch")));
}

#[test]
fn connect_is_405() {
    let parts = h1("CONNECT", "a.com:443", &[("host", b"a.com:443")]);
    assert_eq!(check(&parts), Err((405, "connect_not_supported")));
}

#[test]
fn limits_from_settings() {
    let settings = weir_config::HttpSettings::default();
    let limits = Limits::from(&settings);
    assert_eq!(limits.max_uri_length, 8 * 1024);
    assert_eq!(limits.max_body_size, 100 * 1024 * 1024);
}
