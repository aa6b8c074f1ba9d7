//! HTTP/1 heads, raw: checking a client's request head, writing the head a server gets,
//! reading a server's response head and writing the head the client gets.
//!
//! Heads are parsed once, by httparse, straight from the connection's read buffer, and the
//! forwarded head is written into an output buffer in the same pass — header names and values
//! are copied as they came, nothing is put into a map. Hop-by-hop headers (`Connection` and
//! every header it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`) stop at weir; weir writes its own framing and connection
//! headers.
//!
//! The request checks are those of a careful proxy (RFC 9112 §6.3, §3.2): one unambiguous
//! framing — `Transfer-Encoding: chunked` alone on HTTP/1.1, or one `Content-Length` —
//! else 400 (request smuggling lives in the gap between two parsers' repairs); one valid
//! `Host`, agreeing with an absolute-form target; no control bytes in values.

use std::borrow::Cow;
use std::time::Duration;

use http::StatusCode;

use super::buf::OutBuf;
use crate::http::persistence::{CookieEdit, Persist};
use crate::http::route::{default_port, normal_host, split_authority};
use crate::http::validate::Reject;

/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes (responses only).
    UntilClose,
}

/// Limits on a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target (then 414).
    pub max_uri_length: usize,
    /// Largest declared body (then 413).
    pub max_body_size: u64,
}

const fn reject(status: StatusCode, reason: &'static str) -> Reject {
    Reject { status, reason }
}

const fn bad(reason: &'static str) -> Reject {
    reject(StatusCode::BAD_REQUEST, reason)
}

/// What the checks learned about a request head.
#[derive(Debug, Clone)]
pub struct Request<'h> {
    /// Method as sent.
    pub method: &'h str,
    /// Target as sent.
    pub target: &'h str,
    /// Whether the client spoke HTTP/1.0.
    pub http10: bool,
    /// The body's framing.
    pub framing: Framing,
    /// The `Host` header's value, if there is one.
    pub host_header: Option<&'h str>,
    /// For an absolute-form target: its authority (`host[:port]`, userinfo removed) and the
    /// offset in `target` where its path starts.
    pub absolute: Option<(&'h str, usize)>,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `Upgrade` with `Connection: upgrade`.
    pub upgrade: bool,
}

impl<'h> Request<'h> {
    /// Path and query in origin form (`/` for an absolute-form target without a path).
    pub fn origin_target(&self) -> &'h str {
        match self.absolute {
            Some((_, start)) => match &self.target[start..] {
                "" => "/",
                rest => rest,
            },
            None => self.target,
        }
    }

    /// The path, without the query.
    pub fn path(&self) -> &'h str {
        let target = self.origin_target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// The request's host in normal form (see `route::host_of`).
    pub fn host(&self) -> Option<Cow<'h, str>> {
        if let Some((authority, _)) = self.absolute {
            let (host, _) = split_authority(authority)?;
            return normal_host(host);
        }
        let (host, _) = split_authority(self.host_header?)?;
        normal_host(host)
    }

    /// The host as the client sent it, for redirects: the authority or the `Host` header.
    pub fn authority(&self) -> &'h str {
        self.absolute
            .map(|(authority, _)| authority)
            .or(self.host_header)
            .unwrap_or("")
    }

    /// Whether the method may be sent twice (RFC 9110 §9.2.2).
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }
}

/// Checks a parsed request head. `Err` is the answer to send instead of forwarding; the
/// connection closes after it.
pub fn check_request<'h>(
    req: &httparse::Request<'_, 'h>,
    limits: &HeadLimits,
) -> Result<Request<'h>, Reject> {
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    if target.len() > limits.max_uri_length {
        return Err(reject(StatusCode::URI_TOO_LONG, "uri_too_long"));
    }
    let http10 = req.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut transfer_encodings = 0;
    let mut chunked = false;
    let mut host_header: Option<&'h str> = None;
    let mut hosts = 0;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut has_upgrade = false;
    let mut expect_continue = false;
    for header in req.headers.iter() {
        let value = header.value;
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("bad_header_value"));
        }
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_decimal(value).ok_or(bad("bad_content_length"))?;
            if content_length.is_some() {
                return Err(bad("duplicate_content_length"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings += 1;
            chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host_header = std::str::from_utf8(value).ok();
            if host_header.is_none() {
                return Err(bad("bad_host"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    if transfer_encodings > 0 {
        if content_length.is_some() {
            return Err(bad("te_and_cl"));
        }
        if transfer_encodings > 1 || !chunked || http10 {
            return Err(bad("bad_transfer_encoding"));
        }
    }
    if content_length.is_some_and(|len| len > limits.max_body_size) {
        return Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    }
    if method == "CONNECT" {
        return Err(reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect_not_supported",
        ));
    }
    let absolute = match target.as_bytes().first() {
        Some(b'/') => None,
        Some(b'*') if target == "*" => None,
        _ => Some(absolute_form(target).ok_or(bad("bad_target"))?),
    };
    if hosts > 1 {
        return Err(bad("multiple_host"));
    }
    check_host(host_header, absolute, http10, target)?;
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(len)) => Framing::Length(len),
    };
    Ok(Request {
        method,
        target,
        http10,
        framing,
        host_header,
        absolute,
        keep_alive: if http10 {
            conn_keep_alive && !conn_close
        } else {
            !conn_close
        },
        expect_continue,
        upgrade: has_upgrade && conn_upgrade,
    })
}

/// Splits an absolute-form target (`scheme://authority[/path…]`): the authority without
/// userinfo, and where the path starts.
fn absolute_form(target: &str) -> Option<(&str, usize)> {
    let (scheme, rest) = target.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let authority_start = scheme.len() + 3;
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return None;
    }
    Some((authority, authority_start + authority_len))
}

fn check_host(
    host: Option<&str>,
    absolute: Option<(&str, usize)>,
    http10: bool,
    target: &str,
) -> Result<(), Reject> {
    let Some(host) = host else {
        return if http10 {
            Ok(())
        } else {
            Err(bad("missing_host"))
        };
    };
    // An empty Host is allowed when the target has no authority (RFC 9112 §3.2).
    if host.is_empty() {
        return match absolute {
            Some(_) => Err(bad("host_mismatch")),
            None => Ok(()),
        };
    }
    let (host_name, host_port) = split_authority(host)
        .and_then(|(name, port)| Some((normal_host(name)?, port)))
        .ok_or(bad("bad_host"))?;
    if let Some((authority, _)) = absolute {
        let scheme = target.split_once("://").map_or("http", |(s, _)| s);
        let default = default_port(scheme);
        let (name, port) = split_authority(authority).ok_or(bad("bad_target"))?;
        let same_host = normal_host(name).is_some_and(|name| name == host_name);
        let same_port = port.or(default) == host_port.or(default);
        if !(same_host && same_port) {
            return Err(bad("host_mismatch"));
        }
    }
    Ok(())
}

/// What weir adds about the client when it forwards a request.
pub struct Forwarded<'a> {
    /// The client's IP in text form (IPv4-mapped IPv6 as plain IPv4).
    pub ip: &'a str,
    /// The listener port the client connected to.
    pub local_port: u16,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// Writes the head the server gets: origin-form target, HTTP/1.1, the client's headers
/// without hop-by-hop ones (and without weir's persistence cookie), weir's framing, then
/// `X-Forwarded-For` (appended to), `X-Forwarded-Proto`, `X-Forwarded-Port`, `X-Real-IP` and
/// `X-Forwarded-Client-Protocol` (replacing what the client sent).
pub fn write_request(
    out: &mut OutBuf,
    head: &httparse::Request<'_, '_>,
    req: &Request<'_>,
    forwarded: &Forwarded<'_>,
    persist: Option<&Persist>,
) {
    out.put(req.method.as_bytes());
    out.put(b" ");
    out.put(req.origin_target().as_bytes());
    out.put(b" HTTP/1.1\r\n");
    let named = ConnectionNames::of(head.headers);
    let mut xff_seen = false;
    for header in head.headers.iter() {
        let name = header.name;
        if is_hop_by_hop(name) && !(req.upgrade && name.eq_ignore_ascii_case("upgrade")) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff_seen = true;
            continue;
        }
        if is_replaced_forwarding(name)
            || (req.expect_continue && name.eq_ignore_ascii_case("expect"))
            || named.names(name)
        {
            continue;
        }
        if let Some(persist) = persist
            && name.eq_ignore_ascii_case("cookie")
        {
            match persist.strip_value(header.value) {
                CookieEdit::Keep => {}
                CookieEdit::Drop => continue,
                CookieEdit::Replace(value) => {
                    put_header(out, name.as_bytes(), &value);
                    continue;
                }
            }
        }
        put_header(out, name.as_bytes(), header.value);
    }
    if req.host_header.is_none()
        && let Some((authority, _)) = req.absolute
    {
        put_header(out, b"host", authority.as_bytes());
    }
    if req.framing == Framing::Chunked {
        out.put(b"transfer-encoding: chunked\r\n");
    }
    if req.upgrade {
        out.put(b"connection: upgrade\r\n");
    }
    out.put(b"x-forwarded-for: ");
    if xff_seen {
        for header in head.headers.iter() {
            if header.name.eq_ignore_ascii_case("x-forwarded-for") {
                let value = trim_list(header.value);
                if !value.is_empty() {
                    out.put(value);
                    out.put(b", ");
                }
            }
        }
    }
    out.put(forwarded.ip.as_bytes());
    out.put(if forwarded.tls {
        b"\r\nx-forwarded-proto: https\r\nx-forwarded-port: "
    } else {
        b"\r\nx-forwarded-proto: http\r\nx-forwarded-port: "
    });
    out.put_u64(u64::from(forwarded.local_port));
    out.put(b"\r\nx-real-ip: ");
    out.put(forwarded.ip.as_bytes());
    out.put(if req.http10 {
        b"\r\nx-forwarded-client-protocol: HTTP/1.0\r\n\r\n"
    } else {
        b"\r\nx-forwarded-client-protocol: HTTP/1.1\r\n\r\n"
    });
}

/// What weir needs from a server's response head.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub reusable: bool,
    /// The server's `Keep-Alive: timeout=N`.
    pub keep_alive_hint: Option<Duration>,
}

/// Reads a parsed response head. `head_request` and `upgrade` say what the request was.
/// `Err` means the response is invalid (weir answers 502).
pub fn check_response(
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<Response, &'static str> {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut te: Option<bool> = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut keep_alive_hint = None;
    for header in resp.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_decimal(value).ok_or("bad_content_length")?;
            if content_length.is_some_and(|l| l != len) {
                return Err("conflicting_content_length");
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: chunked means chunked framing, anything else means the
            // body runs until the server closes (RFC 9112 §6.3).
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            te = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("keep-alive") {
            keep_alive_hint = keep_alive_hint.or_else(|| keep_alive_timeout(value));
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else {
        match (te, content_length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(len)) => Framing::Length(len),
            (None, None) => Framing::UntilClose,
        }
    };
    let reusable = !close && (!http10 || keep_alive) && framing != Framing::UntilClose;
    Ok(Response {
        status,
        framing,
        reusable,
        keep_alive_hint,
    })
}

/// How weir frames the response toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConnection {
    /// `Connection: close`: the connection ends after this response.
    Close,
    /// HTTP/1.1 keep-alive (no header needed).
    KeepAlive,
    /// HTTP/1.0 keep-alive: `Connection: keep-alive`.
    KeepAlive10,
    /// `101 Switching Protocols`: `Connection: upgrade` and the server's `Upgrade`.
    Upgrade,
}

/// Writes the head the client gets: `HTTP/1.1`, the server's status and reason, its headers
/// without hop-by-hop ones, persistence, then framing and `Connection`. `chunked` says the body
/// goes to the client chunked (the server's chunks, passed on).
pub fn write_response(
    out: &mut OutBuf,
    head: &httparse::Response<'_, '_>,
    chunked: bool,
    connection: ClientConnection,
    persist: Option<(&Persist, usize)>,
) {
    out.put(b"HTTP/1.1 ");
    out.put_u64(u64::from(head.code.unwrap_or(0)));
    out.put(b" ");
    out.put(head.reason.unwrap_or("").as_bytes());
    out.put(b"\r\n");
    let upgrade = connection == ClientConnection::Upgrade;
    let named = ConnectionNames::of(head.headers);
    let te = head
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    for header in head.headers.iter() {
        let name = header.name;
        if (is_hop_by_hop(name) && !(upgrade && name.eq_ignore_ascii_case("upgrade")))
            || named.names(name)
            || (te && name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        if let Some((persist, server)) = persist
            && name.eq_ignore_ascii_case("set-cookie")
            && let Some(value) = persist.rewrite_set_cookie(header.value, server)
        {
            put_header(out, name.as_bytes(), &value);
            continue;
        }
        put_header(out, name.as_bytes(), header.value);
    }
    if let Some((persist, server)) = persist
        && let Some(value) = persist.inserted(server)
    {
        put_header(out, b"set-cookie", value.as_bytes());
    }
    if chunked {
        out.put(b"transfer-encoding: chunked\r\n");
    }
    out.put(match connection {
        ClientConnection::Close => b"connection: close\r\n\r\n".as_slice(),
        ClientConnection::KeepAlive => b"\r\n",
        ClientConnection::KeepAlive10 => b"connection: keep-alive\r\n\r\n",
        ClientConnection::Upgrade => b"connection: upgrade\r\n\r\n",
    });
}

/// weir's own answer: `status`, a one-line text body, `Retry-After` on 503, and
/// `Connection: close` when `close`; an optional `Location`.
pub fn write_answer(out: &mut OutBuf, status: StatusCode, close: bool, location: Option<&str>) {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = u64::from(status.as_u16());
    out.put(b"HTTP/1.1 ");
    out.put_u64(code);
    out.put(b" ");
    out.put(reason.as_bytes());
    out.put(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    // "NNN " + reason + "\n"
    out.put_u64(4 + reason.len() as u64 + 1);
    out.put(b"\r\n");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        out.put(b"retry-after: ");
        out.put_u64(crate::limits::RETRY_AFTER.as_secs());
        out.put(b"\r\n");
    }
    if let Some(location) = location {
        put_header(out, b"location", location.as_bytes());
    }
    if close {
        out.put(b"connection: close\r\n");
    }
    out.put(b"\r\n");
    out.put_u64(code);
    out.put(b" ");
    out.put(reason.as_bytes());
    out.put(b"\n");
}

/// The headers named by `Connection` tokens, to be removed with it (`close`, `keep-alive`,
/// `upgrade`, `Host` and `Content-Length` are never removed this way).
struct ConnectionNames<'h> {
    values: [&'h [u8]; 4],
    count: usize,
}

impl<'h> ConnectionNames<'h> {
    fn of(headers: &[httparse::Header<'h>]) -> Self {
        let mut names = ConnectionNames {
            values: [&[]; 4],
            count: 0,
        };
        for header in headers {
            if header.name.eq_ignore_ascii_case("connection") && names.count < names.values.len() {
                names.values[names.count] = header.value;
                names.count += 1;
            }
        }
        names
    }

    fn names(&self, name: &str) -> bool {
        // `Host` and `Content-Length` cannot be removed this way; `Upgrade` follows its own
        // rule (kept exactly for an upgrade request).
        if self.count == 0
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return false;
        }
        self.values[..self.count]
            .iter()
            .any(|value| tokens(value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    // Cheap first cut on the length: most header names are none of these.
    matches!(name.len(), 2 | 7 | 10 | 16 | 17) && HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn is_replaced_forwarding(name: &str) -> bool {
    name.len() >= 9
        && (name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-port")
            || name.eq_ignore_ascii_case("x-real-ip")
            || name.eq_ignore_ascii_case("x-forwarded-client-protocol"))
}

fn put_header(out: &mut OutBuf, name: &[u8], value: &[u8]) {
    out.put(name);
    out.put(b": ");
    out.put(value);
    out.put(b"\r\n");
}

/// The non-empty comma-separated elements of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A list value without leading or trailing blanks and commas.
pub(crate) fn trim_list(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b','] = bytes {
        bytes = rest;
    }
    bytes
}

/// The `timeout=N` parameter of one `Keep-Alive` value.
pub(crate) fn keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    tokens(value).find_map(|param| {
        let eq = param.iter().position(|&b| b == b'=')?;
        if !param[..eq].trim_ascii().eq_ignore_ascii_case(b"timeout") {
            return None;
        }
        let secs = param[eq + 1..].trim_ascii();
        let secs = match secs {
            [b'"', inner @ .., b'"'] => inner,
            _ => secs,
        };
        parse_decimal(secs).map(Duration::from_secs)
    })
}

/// A decimal number of at most 19 digits, surrounding blanks allowed.
pub fn parse_decimal(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
