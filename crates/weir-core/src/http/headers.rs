//! Headers between an HTTP/2 client and a server, as hyper's header maps: forwarding headers,
//! hop-by-hop removal, keep-alive hints. (The HTTP/1 engine writes heads itself, in
//! [`super::h1::head`].)
//!
//! Runs on every request and response, so the common case allocates nothing it does not have
//! to: removing an absent header is a lookup, a single `Connection` header is taken out of the
//! map without copying, and the client address is formatted on the stack.
//!
//! Read what you need from a server's response (e.g. [`keep_alive_timeout`]) *before*
//! [`prepare_response`] removes it.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use super::h1::head;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_CLIENT_PROTOCOL: HeaderName =
    HeaderName::from_static("x-forwarded-client-protocol");

/// What weir knows about the client side of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (the TCP peer).
    pub addr: SocketAddr,
    /// The port of the listener that accepted the connection.
    pub local_port: u16,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The HTTP version the client spoke.
    pub version: Version,
}

/// Prepares a request's headers for the server. Removes hop-by-hop headers (`Connection` and
/// every header it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade`); `Connection` cannot remove `Host` or `Content-Length`.
/// Then appends the client IP to `X-Forwarded-For` (after any existing values,
/// comma-separated) and sets — replacing what the client sent — `X-Forwarded-Proto`
/// (`http`|`https`), `X-Forwarded-Port` (the listener's port), `X-Real-IP` (IPv6 without
/// brackets; IPv4-mapped IPv6 as plain IPv4) and `X-Forwarded-Client-Protocol` (`HTTP/1.0`,
/// `HTTP/1.1`, `HTTP/2`…). `Host` is left untouched.
pub fn prepare_request(headers: &mut HeaderMap, client: &ClientInfo) {
    remove_hop_by_hop(headers);

    let ip = IpText::new(client.addr.ip());
    let ip = ip.as_str();

    append_forwarded_for(headers, ip);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(client.local_port));
    if let Ok(value) = HeaderValue::from_str(ip) {
        headers.insert(X_REAL_IP, value);
    }
    headers.insert(
        X_FORWARDED_CLIENT_PROTOCOL,
        HeaderValue::from_static(version_name(client.version)),
    );
}

/// Prepares a response's headers for the client: removes hop-by-hop headers as
/// [`prepare_request`] does.
pub fn prepare_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if let http::header::Entry::Occupied(entry) = headers.entry(CONNECTION) {
        // Usually one value: taken out without allocating; only extra values go to a Vec.
        let (_, mut drain) = entry.remove_entry_mult();
        let first = drain.next();
        let rest: Vec<HeaderValue> = drain.collect();
        for value in first.iter().chain(rest.iter()) {
            for token in tokens(value) {
                let keep = token.eq_ignore_ascii_case(HOST.as_str())
                    || token.eq_ignore_ascii_case(CONTENT_LENGTH.as_str());
                if !keep {
                    // Looked up by &str: no allocation; an invalid name finds nothing.
                    headers.remove(token);
                }
            }
        }
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(TE);
    headers.remove(TRAILER);
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: &str) {
    if !headers.contains_key(X_FORWARDED_FOR) {
        if let Ok(value) = HeaderValue::from_str(ip) {
            headers.insert(X_FORWARDED_FOR, value);
        }
        return;
    }
    let mut joined: Vec<u8> = Vec::with_capacity(64);
    for value in headers.get_all(X_FORWARDED_FOR) {
        let value = head::trim_list(value.as_bytes());
        if !value.is_empty() {
            joined.extend_from_slice(value);
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(ip.as_bytes());
    // The parts were valid header values, so the join is too; if not, keep only the client IP.
    let value =
        HeaderValue::from_maybe_shared(Bytes::from(joined)).or_else(|_| HeaderValue::from_str(ip));
    match value {
        Ok(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        Err(_) => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
}

/// The version as headers and the access log write it (`HTTP/1.1`, `HTTP/2`…).
pub fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The `timeout=N` parameter of `Keep-Alive` (any case, any order, optional spaces and
/// quotes, over several headers) as a duration; `None` if absent or not a whole number.
pub fn keep_alive_timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(KEEP_ALIVE)
        .iter()
        .find_map(|value| head::keep_alive_timeout(value.as_bytes()))
}

/// Whether a `Connection` header holds `token` (ASCII case-insensitive, comma lists, several
/// headers).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|value| tokens(value).any(|t| t.eq_ignore_ascii_case(token)))
}

/// A header value as it may appear in logs: `"[redacted]"` for `Authorization`,
/// `Proxy-Authorization`, `Cookie` and `Set-Cookie`, otherwise the value (invalid UTF-8
/// replaced).
pub fn redact(name: &HeaderName, value: &HeaderValue) -> String {
    if name == AUTHORIZATION || name == PROXY_AUTHORIZATION || name == COOKIE || name == SET_COOKIE
    {
        "[redacted]".to_string()
    } else {
        String::from_utf8_lossy(value.as_bytes()).into_owned()
    }
}

/// The non-empty comma-separated elements of a header value, trimmed of spaces and tabs
/// (values that are not UTF-8 have none).
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// An IP address in text form, on the stack: IPv6 without brackets, IPv4-mapped IPv6 as plain
/// IPv4.
///
/// Made for each proxied HTTP/1 request (a connection does not keep one): IPv4, the common
/// case, is written digit by digit rather than through `fmt`.
pub(crate) struct IpText {
    buf: [u8; 46],
    len: u8,
}

impl IpText {
    /// Formats `ip`.
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            buf: [0; 46],
            len: 0,
        };
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            // 45 bytes hold any IPv6 text form; writing cannot fail.
            v6 => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    /// Appends one ASCII byte (at most 15 for IPv4: no bounds to check beyond the array's).
    fn push(&mut self, byte: u8) {
        self.buf[usize::from(self.len)] = byte;
        self.len += 1;
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let dest = self.buf.get_mut(start..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = u8::try_from(end).map_err(|_| std::fmt::Error)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
