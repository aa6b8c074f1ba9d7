//! Request checks hyper does not do, for HTTP/2 clients' requests: smuggling-shaped and
//! ambiguous requests get 400 before anything reaches a server. [`Reject`] is shared with the
//! HTTP/1 engine, whose own checks are in [`super::h1::head`].
//!
//! [`check_request`] runs on a request head hyper already parsed. The checks are cheap (one pass
//! over the header bytes, a few lookups) and ordered so the answer is the most specific one:
//! 405 for CONNECT, 414 for a long target, then the 400s, then 413 for a declared body over the
//! limit (a body without Content-Length is the caller's to count).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, StatusCode, Version};

use super::route::{default_port, normal_host, split_authority};

/// Why a request is refused: the status to answer and a short snake_case tag for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The status weir answers with.
    pub status: StatusCode,
    /// Short tag for logs: `te_and_cl`, `bad_transfer_encoding`, `duplicate_content_length`,
    /// `bad_content_length`, `bad_header_value`, `missing_host`, `multiple_host`, `bad_host`,
    /// `host_mismatch`, `uri_too_long`, `body_too_large`, `connect_not_supported`.
    pub reason: &'static str,
}

/// The limits [`check_request`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target: path and query, or the whole absolute-form target (then 414).
    pub max_uri_length: usize,
    /// Largest `Content-Length` accepted (then 413).
    pub max_body_size: u64,
}

impl From<&weir_config::HttpSettings> for Limits {
    fn from(settings: &weir_config::HttpSettings) -> Self {
        Limits {
            max_uri_length: settings.max_uri_length,
            max_body_size: settings.max_body_size,
        }
    }
}

const fn reject(status: StatusCode, reason: &'static str) -> Reject {
    Reject { status, reason }
}

const fn bad(reason: &'static str) -> Reject {
    reject(StatusCode::BAD_REQUEST, reason)
}

/// Checks a request head that hyper accepted. `Err` carries the answer to send instead of
/// forwarding (the caller closes the connection after it for framing errors).
pub fn check_request(parts: &http::request::Parts, limits: &Limits) -> Result<(), Reject> {
    if parts.method == Method::CONNECT {
        return Err(reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect_not_supported",
        ));
    }
    if target_len(parts) > limits.max_uri_length {
        return Err(reject(StatusCode::URI_TOO_LONG, "uri_too_long"));
    }
    if parts
        .headers
        .values()
        .any(|value| has_control_byte(value.as_bytes()))
    {
        return Err(bad("bad_header_value"));
    }
    check_host(parts)?;
    let declared = check_framing(parts)?;
    if declared.is_some_and(|len| len > limits.max_body_size) {
        return Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    }
    Ok(())
}

/// Whether a header value holds a control byte: below 0x20 other than HTAB (NUL, CR, LF…), or
/// DEL. Defence in depth: `HeaderValue`'s safe constructors and hyper's parser (httparse) refuse
/// these already, but hyper builds values unchecked and a future parser might not.
fn has_control_byte(value: &[u8]) -> bool {
    value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Length of the request target as the client sent it: the whole URI for an HTTP/1
/// absolute-form target, else path and query (HTTP/2 `:path`).
fn target_len(parts: &http::request::Parts) -> usize {
    let uri = &parts.uri;
    let path = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) if parts.version != Version::HTTP_2 => {
            scheme.len() + 3 + authority.as_str().len() + path
        }
        _ => path,
    }
}

fn check_host(parts: &http::request::Parts) -> Result<(), Reject> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("multiple_host"));
    }
    let Some(host) = host else {
        return match parts.version {
            Version::HTTP_11 => Err(bad("missing_host")),
            _ => Ok(()),
        };
    };
    // An empty Host is allowed (RFC 9112 §3.2: the target has no authority).
    if host.is_empty() {
        return match parts.uri.authority() {
            Some(_) => Err(bad("host_mismatch")),
            None => Ok(()),
        };
    }
    let (host_name, host_port) = host
        .to_str()
        .ok()
        .and_then(split_authority)
        .and_then(|(name, port)| Some((normal_host(name)?, port)))
        .ok_or(bad("bad_host"))?;
    if let Some(authority) = parts.uri.authority() {
        // Absolute-form (or HTTP/2 :authority) next to Host: both must name the same place,
        // default ports counting as absent.
        let scheme = parts.uri.scheme_str().unwrap_or("http");
        let default = default_port(scheme);
        let same_host = normal_host(authority.host()).is_some_and(|name| name == host_name);
        let same_port = authority.port_u16().or(default) == host_port.or(default);
        if !(same_host && same_port) {
            return Err(bad("host_mismatch"));
        }
    }
    Ok(())
}

/// Checks Transfer-Encoding and Content-Length; returns the declared body length, if any.
fn check_framing(parts: &http::request::Parts) -> Result<Option<u64>, Reject> {
    let headers = &parts.headers;
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    let has_cl = headers.contains_key(CONTENT_LENGTH);
    if has_te && has_cl {
        return Err(bad("te_and_cl"));
    }
    if has_te {
        let mut values = headers.get_all(TRANSFER_ENCODING).iter();
        let chunked = values
            .next()
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        // Only HTTP/1.1 has chunked framing: in HTTP/1.0 the framing is faulty (RFC 9112 §6.1)
        // and in HTTP/2 the header is forbidden.
        if !chunked || values.next().is_some() || parts.version != Version::HTTP_11 {
            return Err(bad("bad_transfer_encoding"));
        }
        return Ok(None);
    }
    if !has_cl {
        return Ok(None);
    }
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(bad("duplicate_content_length"));
    }
    let digits = first.map_or(&b""[..], |v| v.as_bytes());
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad("bad_content_length"));
    }
    // All digits: a value too big for u64 is over any limit.
    let len = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Ok(Some(len))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
