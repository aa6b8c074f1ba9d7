//! Telling TLS from plain HTTP by the first bytes, without consuming them.
//!
//! An https listener peeks at what a client sends first: a TLS handshake record goes on to the
//! TLS acceptor untouched; plain HTTP gets a readable `400` ([`reject_plain_http`]) instead of
//! a TLS alert a browser would show as gibberish.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// What a connection's first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record (`0x16 0x03 0x00..=0x04`): a ClientHello.
    TlsHandshake,
    /// An HTTP/1.x request line or the HTTP/2 preface (`PRI * HTTP/2.0`).
    PlainHttp,
    /// Anything else, or nothing at all.
    Unknown,
}

/// Request methods recognised as plain HTTP, each followed by a space.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
];

/// Bytes peeked at most: enough for the longest method and its space.
const PEEK_LEN: usize = 16;
/// Longest pause between peeks while waiting for more bytes.
const MAX_PEEK_PAUSE: Duration = Duration::from_millis(20);
/// Largest request head [`reject_plain_http`] reads before answering.
const MAX_HEAD: usize = 16 * 1024;
/// How long [`reject_plain_http`] waits for the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`reject_plain_http`] waits for the client's FIN after its own.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Classifies a prefix of the first bytes a client sent.
///
/// `0x16 0x03 0x0[0-4]` is a TLS handshake; a method token followed by a space (`GET`, `POST`,
/// `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `PATCH`, `CONNECT`, `TRACE`, `PRI`) is plain HTTP;
/// anything else is unknown. On a partial prefix this returns the best answer for what it has:
/// `[0x16]` is a TLS handshake, `b"GE"` plain HTTP, nothing at all unknown.
pub fn classify(prefix: &[u8]) -> FirstBytes {
    decide(prefix).unwrap_or(match prefix.first() {
        None => FirstBytes::Unknown,
        Some(0x16) => FirstBytes::TlsHandshake,
        Some(_) => FirstBytes::PlainHttp,
    })
}

/// The answer if `prefix` settles it; `None` while more bytes could still change it.
fn decide(prefix: &[u8]) -> Option<FirstBytes> {
    if prefix.is_empty() {
        return None;
    }
    if prefix[0] == 0x16 {
        let version_ok =
            prefix.get(1).is_none_or(|&b| b == 0x03) && prefix.get(2).is_none_or(|&b| b <= 0x04);
        return match (version_ok, prefix.len() >= 3) {
            (false, _) => Some(FirstBytes::Unknown),
            (true, true) => Some(FirstBytes::TlsHandshake),
            (true, false) => None,
        };
    }
    let mut could_be = false;
    for method in METHODS {
        if prefix.starts_with(method) {
            return Some(FirstBytes::PlainHttp);
        }
        could_be |= method.starts_with(prefix);
    }
    if could_be {
        None
    } else {
        Some(FirstBytes::Unknown)
    }
}

/// Peeks at the connection (never consuming) until [`classify`] can decide or `timeout` passes.
///
/// On timeout, or when the client closes early, the answer is [`classify`]'s best guess for
/// what arrived ([`FirstBytes::Unknown`] for nothing at all). Errors are socket errors.
pub async fn peek_first_bytes(stream: &TcpStream, timeout: Duration) -> io::Result<FirstBytes> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; PEEK_LEN];
    let mut seen = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(result) => result?,
            Err(_elapsed) => return Ok(classify(&buf[..seen])),
        };
        if n == 0 {
            // End of stream before any byte.
            return Ok(FirstBytes::Unknown);
        }
        seen = n;
        if let Some(answer) = decide(&buf[..n]) {
            return Ok(answer);
        }
        // Data is waiting, so peek would return at once: pause before looking again.
        let now = Instant::now();
        if now >= deadline {
            return Ok(classify(&buf[..n]));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PEEK_PAUSE);
    }
}

/// Answers plain HTTP sent to an HTTPS port, then closes without a reset.
///
/// Reads the request head (up to 16 KiB, 5 s), writes `HTTP/1.1 400 Bad Request` with
/// `Connection: close` and a `text/plain` body saying to use `https://`, then shuts down its
/// write side and reads and discards until the client's FIN (at most 3 s) before dropping the
/// socket, so no unread bytes turn the close into a reset.
pub async fn reject_plain_http(mut stream: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let _ = timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut head)).await;
    let response = response_for(&head);
    let written = timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("plain HTTP on an https port: could not send the 400");
    }
    let _ = timeout(DRAIN_TIMEOUT, drain(&mut stream)).await;
}

/// Reads until the end of the head (a blank line), EOF, an error or [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while head.len() < MAX_HEAD && head_end(head).is_none() {
        let want = buf.len().min(MAX_HEAD - head.len());
        match stream.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads and discards until EOF or an error.
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

fn head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"))
}

/// The 400 response, pointing at the https URL when the head names one safely.
fn response_for(head: &[u8]) -> Vec<u8> {
    let target = https_url(head).unwrap_or_else(|| "an https:// URL".to_string());
    let body = format!(
        "This port speaks HTTPS; the request was sent as plain HTTP. Use {target} instead.\n"
    );
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `https://{Host}{path}` from the request line and `Host` header, if both look sane.
fn https_url(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(&head[..head_end(head)?]).ok()?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut request_line = lines.next()?.split(' ');
    let path = request_line.nth(1)?;
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host").then(|| value.trim())
    })?;
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let path_ok =
        path.starts_with('/') && path.len() <= 2048 && path.bytes().all(|b| b.is_ascii_graphic());
    (host_ok && path_ok).then(|| format!("https://{host}{path}"))
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
