//! [`HttpBackend`]: a hand-rolled HTTP/1.1 keep-alive server for end-to-end tests of weir's
//! `http`/`https` listeners, with full control over how its connections end; plus a small raw
//! HTTP/1 client ([`H1Client`], [`raw_exchange`], [`read_response`]).
//!
//! The backend reads request heads (and `Content-Length` or chunked bodies), answers each one by
//! its path, and keeps the connection open unless told otherwise:
//!
//! | path | answer |
//! |---|---|
//! | `/status/{code}` | that status, body `"{code}\n"` |
//! | `/slow/{ms}` | waits `ms` milliseconds, then `200` with body `"{name}\n"` |
//! | `/headers` | `200`, body = the request head as received (request line and headers, one per line, CRLF) |
//! | `/set-cookie/{name}/{value}` | `200` with `Set-Cookie: name=value; Path=/` |
//! | `/redirect` | `302` with `Location: /` |
//! | `/close` | `200` with `Connection: close`, then closes (FIN) |
//! | `/echo` | `200`, body = the request body |
//! | `/hangup` | no answer: closes (FIN) right after reading the request |
//! | `/garbage` | writes bytes that are not an HTTP response, then closes (FIN) |
//! | anything else | `200` with body `"{name}\n"` |
//!
//! Every answer carries `X-Backend: {name}` and `Content-Length`. A query parameter
//! `close_after_us=N` on any path makes the backend close the connection (FIN, without
//! `Connection: close` in the answer) `N` microseconds after answering — a connection that dies
//! while the client already holds it for reuse.
//!
//! Whenever the backend closes a connection itself it shuts down its write side first (FIN),
//! then reads until the peer's FIN, so it never leaves unread bytes behind and the kernel never
//! resets on its behalf: any [`Ending::Rst`] in [`HttpBackend::endings`] came from the peer.
//! Request heads that arrive after the backend closed its side are never answered; they are
//! counted by [`HttpBackend::unanswered`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::ending::{Ending, classify, of_error};
use crate::head::find_head_end;
use crate::server::{Server, Tally};

/// Largest request head the backend accepts before it gives up on a connection.
const MAX_HEAD: usize = 256 * 1024;

/// Largest request body the backend buffers.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What [`HttpBackendBuilder::start`] builds.
#[derive(Debug, Clone)]
pub struct HttpBackendBuilder {
    name: String,
    idle_close: Option<Duration>,
    keep_alive_hint: Option<u64>,
    close_after_response: bool,
}

impl HttpBackendBuilder {
    /// The backend's name: in `X-Backend` and in default bodies (default `"backend"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Closes a keep-alive connection (FIN, then drain until the peer's FIN) once it has been
    /// idle between requests for `idle`, without telling the client beforehand: the server
    /// side of the stale keep-alive race.
    pub fn idle_close(mut self, idle: Duration) -> Self {
        self.idle_close = Some(idle);
        self
    }

    /// Adds `Keep-Alive: timeout={secs}` to every answer, and closes connections idle for that
    /// long (unless [`idle_close`](Self::idle_close) sets another time).
    pub fn keep_alive_hint(mut self, secs: u64) -> Self {
        self.keep_alive_hint = Some(secs);
        self
    }

    /// Closes every connection (FIN) right after each answer, without `Connection: close` in
    /// it: a keep-alive connection that is already closing when the client reuses it.
    pub fn close_after_response(mut self) -> Self {
        self.close_after_response = true;
        self
    }

    /// Starts the backend on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (use [`HttpBackendBuilder::try_start`] to handle that).
    pub async fn start(self) -> HttpBackend {
        match self.try_start().await {
            Ok(backend) => backend,
            Err(err) => panic!("weir-testkit: cannot bind 127.0.0.1:0: {err}"),
        }
    }

    /// Starts the backend on `127.0.0.1:0`, returning the bind error if any.
    pub async fn try_start(self) -> io::Result<HttpBackend> {
        let idle = self
            .idle_close
            .or(self.keep_alive_hint.map(Duration::from_secs));
        let state = Arc::new(State {
            name: self.name,
            idle_close: idle,
            keep_alive_hint: self.keep_alive_hint,
            close_after_response: self.close_after_response,
            requests: watch::Sender::new(0),
            log: Mutex::new(Vec::new()),
            unanswered: Mutex::new(Vec::new()),
            unanswered_count: AtomicUsize::new(0),
        });
        let tally = Tally::new();
        let conn_state = Arc::clone(&state);
        let server = Server::start(Arc::clone(&tally), move |stream, tally| {
            serve(stream, Arc::clone(&conn_state), tally)
        })
        .await?;
        Ok(HttpBackend {
            server,
            tally,
            state,
        })
    }
}

/// One request as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// The request target as sent (`/path?query`).
    pub target: String,
    /// The head as received: request line and headers, CRLF-separated, without the blank line.
    pub head: String,
}

#[derive(Debug)]
struct State {
    name: String,
    idle_close: Option<Duration>,
    keep_alive_hint: Option<u64>,
    close_after_response: bool,
    requests: watch::Sender<usize>,
    log: Mutex<Vec<SeenRequest>>,
    unanswered: Mutex<Vec<SeenRequest>>,
    unanswered_count: AtomicUsize,
}

impl State {
    fn note(&self, request: SeenRequest) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        self.requests.send_modify(|n| *n += 1);
    }

    fn note_unanswered(&self, request: SeenRequest) {
        self.unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        self.unanswered_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running HTTP/1.1 test backend; stops when dropped.
#[derive(Debug)]
pub struct HttpBackend {
    server: Server,
    tally: Arc<Tally>,
    state: Arc<State>,
}

impl HttpBackend {
    /// A builder: `HttpBackend::builder().name("s1").idle_close(d).start().await`.
    pub fn builder() -> HttpBackendBuilder {
        HttpBackendBuilder {
            name: "backend".to_string(),
            idle_close: None,
            keep_alive_hint: None,
            close_after_response: false,
        }
    }

    /// A plain keep-alive backend named `name`.
    pub async fn start(name: &str) -> HttpBackend {
        HttpBackend::builder().name(name).start().await
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Request heads received and handled (answered, or deliberately not: `/hangup`).
    pub fn requests(&self) -> usize {
        *self.state.requests.borrow()
    }

    /// Handled requests whose target starts with `prefix`.
    pub fn requests_for(&self, prefix: &str) -> usize {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .count()
    }

    /// Every handled request, in arrival order.
    pub fn request_log(&self) -> Vec<SeenRequest> {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Request heads that arrived on a connection the backend had already closed (its FIN was
    /// sent): read and discarded, never answered.
    pub fn unanswered(&self) -> usize {
        self.state.unanswered_count.load(Ordering::Relaxed)
    }

    /// The unanswered requests, in arrival order.
    pub fn unanswered_log(&self) -> Vec<SeenRequest> {
        self.state
            .unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.tally.accepted()
    }

    /// How each ended connection ended, from the backend's side: the peer's FIN, or a reset.
    pub fn endings(&self) -> Vec<Ending> {
        self.tally.endings()
    }

    /// Connections ended by a reset from the peer.
    pub fn resets(&self) -> usize {
        self.endings().iter().filter(|e| **e == Ending::Rst).count()
    }

    /// Waits until at least `n` requests were handled; `false` if `timeout` passed first.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.state.requests.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await,
            Ok(Ok(_))
        )
    }

    /// Waits until at least `n` connections have ended; `false` if `timeout` passed first.
    pub async fn wait_for_endings(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_ended(n, timeout).await
    }

    /// Waits until every connection accepted so far has ended; `false` if `timeout` passed.
    pub async fn wait_all_ended(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = self.tally.accepted();
            if self.tally.endings().len() >= accepted {
                return true;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.tally.wait_ended(accepted, left).await {
                return self.tally.endings().len() >= self.tally.accepted();
            }
        }
    }
}

// === the connection ===

/// A client stream with its read buffer (also the base of [`crate::raw::RawConn`]).
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

/// How reading the next request went.
pub(crate) enum Read<T> {
    Got(T),
    /// The connection was idle for the idle-close time.
    Idle,
    /// The peer ended the connection (or it failed).
    End(Ending),
    /// The peer sent something the backend cannot parse.
    Bad,
}

impl Conn {
    /// Reads more bytes into the buffer; `Err` with how the connection ended.
    pub(crate) async fn fill(&mut self) -> Result<(), Ending> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk).await;
        if let Ok(n) = read {
            self.buf.extend_from_slice(&chunk[..n]);
        }
        match classify(read) {
            Some(ending) => Err(ending),
            None => Ok(()),
        }
    }

    pub(crate) async fn head(&mut self, idle: Option<Duration>) -> Read<Vec<u8>> {
        loop {
            if let Some(end) = find_head_end(&self.buf) {
                let head: Vec<u8> = self.buf.drain(..end).collect();
                return Read::Got(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Read::Bad;
            }
            let filled = match idle {
                Some(idle) if self.buf.is_empty() => {
                    match tokio::time::timeout(idle, self.fill()).await {
                        Ok(filled) => filled,
                        Err(_) => return Read::Idle,
                    }
                }
                _ => self.fill().await,
            };
            if let Err(ending) = filled {
                return Read::End(ending);
            }
        }
    }

    pub(crate) async fn exact(&mut self, n: usize) -> Result<Vec<u8>, Ending> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> Result<Vec<u8>, Ending> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(line[..pos].to_vec());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Ending::Other);
            }
            self.fill().await?;
        }
    }

    pub(crate) async fn chunked(&mut self) -> Result<Vec<u8>, Ending> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size_text = String::from_utf8_lossy(size_text);
            let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| Ending::Other)?;
            if size == 0 {
                // Trailer section, up to the blank line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(Ending::Other);
            }
            body.extend(self.exact(size).await?);
            if !self.line().await?.is_empty() {
                return Err(Ending::Other);
            }
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), Ending> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|err| of_error(&err))
    }

    /// Closes from this side: FIN, then reads until the peer's FIN, counting request heads
    /// that still arrive as unanswered. Returns how the peer ended the connection.
    async fn close(mut self, state: &State) -> Ending {
        let shut = self.stream.shutdown().await;
        let mut ending = None;
        if let Err(err) = shut {
            ending = Some(of_error(&err));
        }
        loop {
            while let Some(end) = find_head_end(&self.buf) {
                let head: Vec<u8> = self.buf.drain(..end).collect();
                if let Some(request) = parse_head(&head) {
                    state.note_unanswered(request.seen);
                }
            }
            if self.buf.len() > MAX_HEAD {
                self.buf.clear();
            }
            if let Err(end) = self.fill().await {
                return ending.unwrap_or(end);
            }
        }
    }
}

/// Serves one connection and records how it ended.
async fn serve(stream: TcpStream, state: Arc<State>, tally: Arc<Tally>) {
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        stream,
        buf: Vec::new(),
    };
    let ending = conn_loop(conn, &state).await;
    tally.record(ending);
    // The stream was dropped after reading to the end: a FIN, never a RST.
}

async fn conn_loop(mut conn: Conn, state: &State) -> Ending {
    loop {
        let head = match conn.head(state.idle_close).await {
            Read::Got(head) => head,
            Read::Idle | Read::Bad => return conn.close(state).await,
            Read::End(ending) => return ending,
        };
        let Some(request) = parse_head(&head) else {
            let _ = conn
                .write(&response(
                    state,
                    400,
                    "Bad Request",
                    &[],
                    b"bad request\n",
                    true,
                ))
                .await;
            return conn.close(state).await;
        };
        let body = if request.chunked {
            conn.chunked().await
        } else if request.content_length > MAX_BODY {
            Err(Ending::Other)
        } else {
            conn.exact(request.content_length).await
        };
        let body = match body {
            Ok(body) => body,
            Err(Ending::Other) => return conn.close(state).await,
            Err(ending) => return ending,
        };
        let target = request.seen.target.clone();
        let head_text = request.seen.head.clone();
        let client_close = request.close;
        state.note(request.seen);

        // `Connection: close` in the answer when the client asked for it (or `/close`); the
        // connection also closes after an answer without it in close-after-response mode.
        let mut close = client_close;
        let bytes = match route(&target) {
            Route::Hangup => return conn.close(state).await,
            Route::Garbage => {
                if let Err(ending) = conn.write(b"this is not HTTP\r\n\r\n").await {
                    return drain_after_error(conn, ending).await;
                }
                return conn.close(state).await;
            }
            Route::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let body = format!("{}\n", state.name);
                response(state, 200, "OK", &[], body.as_bytes(), close)
            }
            Route::Status(code) => {
                let body = format!("{code}\n");
                response(state, code, reason(code), &[], body.as_bytes(), close)
            }
            Route::Headers => response(state, 200, "OK", &[], head_text.as_bytes(), close),
            Route::SetCookie(name, value) => {
                let cookie = format!("Set-Cookie: {name}={value}; Path=/");
                let body = format!("{}\n", state.name);
                response(state, 200, "OK", &[&cookie], body.as_bytes(), close)
            }
            Route::Redirect => {
                let body = format!("{}\n", state.name);
                response(
                    state,
                    302,
                    "Found",
                    &["Location: /"],
                    body.as_bytes(),
                    close,
                )
            }
            Route::Close => {
                close = true;
                let body = format!("{}\n", state.name);
                response(state, 200, "OK", &[], body.as_bytes(), true)
            }
            Route::Echo => response(state, 200, "OK", &[], &body, close),
            Route::Name => {
                let body = format!("{}\n", state.name);
                response(state, 200, "OK", &[], body.as_bytes(), close)
            }
        };
        if let Err(ending) = conn.write(&bytes).await {
            return drain_after_error(conn, ending).await;
        }
        if let Some(delay) = close_after(&target) {
            sleep_precisely(delay).await;
            return conn.close(state).await;
        }
        if close || state.close_after_response {
            return conn.close(state).await;
        }
    }
}

/// A write failed: the error says how the peer ended it; read what it may still hold so the
/// socket closes with an empty receive buffer.
async fn drain_after_error(mut conn: Conn, ending: Ending) -> Ending {
    while conn.fill().await.is_ok() {
        conn.buf.clear();
    }
    ending
}

/// The `close_after_us` query parameter.
fn close_after(target: &str) -> Option<Duration> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "close_after_us")
            .then(|| value.parse().ok().map(Duration::from_micros))
            .flatten()
    })
}

/// Sleeps for `delay` with sub-millisecond precision (tokio's timers tick in milliseconds).
async fn sleep_precisely(delay: Duration) {
    if delay.is_zero() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
}

enum Route {
    Status(u16),
    Slow(u64),
    Headers,
    SetCookie(String, String),
    Redirect,
    Close,
    Echo,
    Hangup,
    Garbage,
    Name,
}

fn route(target: &str) -> Route {
    let path = target.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["status", code] => match code.parse::<u16>() {
            Ok(code) if (100..1000).contains(&code) => Route::Status(code),
            _ => Route::Name,
        },
        ["slow", ms] => ms.parse().map_or(Route::Name, Route::Slow),
        ["headers"] => Route::Headers,
        ["set-cookie", name, value] => Route::SetCookie(name.to_string(), value.to_string()),
        ["redirect"] => Route::Redirect,
        ["close"] => Route::Close,
        ["echo"] => Route::Echo,
        ["hangup"] => Route::Hangup,
        ["garbage"] => Route::Garbage,
        _ => Route::Name,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn response(
    state: &State,
    code: u16,
    reason: &str,
    extra: &[&str],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nX-Backend: {}\r\n", state.name);
    let bodiless = code == 204 || code == 304 || (100..200).contains(&code);
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(secs) = state.keep_alive_hint {
        head.push_str(&format!("Keep-Alive: timeout={secs}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !bodiless {
        out.extend_from_slice(body);
    }
    out
}

pub(crate) struct Parsed {
    pub(crate) seen: SeenRequest,
    pub(crate) content_length: usize,
    pub(crate) chunked: bool,
    pub(crate) close: bool,
}

/// Parses a request head (ending with the blank line); `None` if it is not one.
pub(crate) fn parse_head(head: &[u8]) -> Option<Parsed> {
    let text = String::from_utf8_lossy(head);
    let text = text.strip_suffix("\r\n\r\n").unwrap_or(&text);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut words = request_line.split(' ');
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let version = words.next()?;
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut content_length = 0;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    Some(Parsed {
        seen: SeenRequest {
            method,
            target,
            head: text.to_string(),
        },
        content_length,
        chunked,
        close,
    })
}

// === client side ===

/// An HTTP/1 response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (any case).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response says `Connection: close`.
    pub fn closes(&self) -> bool {
        self.headers_named("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A keep-alive HTTP/1 client over any stream (TCP, TLS): write raw requests, read responses.
#[derive(Debug)]
pub struct H1Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl H1Client<TcpStream> {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<H1Client<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(H1Client::new(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1Client<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> H1Client<S> {
        H1Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// The stream (e.g. to shut it down).
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream back (bytes buffered but not yet read as a response are lost).
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Writes `raw` as is and reads one response.
    pub async fn send_raw(&mut self, raw: &[u8]) -> io::Result<RawResponse> {
        self.stream.write_all(raw).await?;
        self.read_response().await
    }

    /// `GET path` with `Host: host` and extra header lines (`"Name: value"`).
    pub async fn get(&mut self, path: &str, extra: &[&str]) -> io::Result<RawResponse> {
        self.request("GET", path, extra, b"").await
    }

    /// A request with `Host: test` (unless `extra` has a Host) and a `Content-Length` body
    /// (when `body` is not empty, or the method is POST/PUT).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        extra: &[&str],
        body: &[u8],
    ) -> io::Result<RawResponse> {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !extra
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            head.push_str("Host: test\r\n");
        }
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.send_raw(&raw).await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn fill_some(&mut self) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            )),
            _ => Ok(()),
        }
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            self.fill_some().await?;
        }
    }

    /// Reads one response (skipping `100 Continue`).
    pub async fn read_response(&mut self) -> io::Result<RawResponse> {
        loop {
            let response = self.read_one().await?;
            if response.status != 100 {
                return Ok(response);
            }
        }
    }

    async fn read_one(&mut self) -> io::Result<RawResponse> {
        let status_line = self.line().await?;
        let mut words = status_line.splitn(3, ' ');
        let version = words.next().unwrap_or("").to_string();
        let status: u16 = words
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(&format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut response = RawResponse {
            status,
            version,
            headers,
            body: Vec::new(),
        };
        let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
        if bodiless {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = self.line().await?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| invalid(&format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill_some().await?;
                }
                response.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
            while self.buf.len() < len {
                self.fill_some().await?;
            }
            response.body = self.buf.drain(..len).collect();
        } else {
            // Delimited by the close.
            while self.fill().await? > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    /// Reads until the peer's FIN or an error (after the last response); returns the bytes
    /// left over and how the connection ended.
    pub async fn read_to_end(&mut self) -> (Vec<u8>, Ending) {
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).await;
            if let Ok(n) = read {
                self.buf.extend_from_slice(&chunk[..n]);
            }
            if let Some(ending) = classify(read) {
                return (std::mem::take(&mut self.buf), ending);
            }
        }
    }
}

/// Connects to `addr`, writes `bytes`, and reads until the peer's FIN, a reset, or `timeout`
/// (then [`Ending::Other`]). Returns what was read and how the connection ended. The write
/// side is left open, so a server that closes first is seen doing so.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> (Vec<u8>, Ending) {
    let run = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(err) => return (Vec::new(), of_error(&err)),
        };
        let _ = stream.set_nodelay(true);
        if let Err(err) = stream.write_all(bytes).await {
            let ending = of_error(&err);
            return (Vec::new(), ending);
        }
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = stream.read(&mut chunk).await;
            if let Ok(n) = read {
                data.extend_from_slice(&chunk[..n]);
            }
            if let Some(ending) = classify(read) {
                return (data, ending);
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => (Vec::new(), Ending::Other),
    }
}

/// Parses one HTTP/1 response from bytes (e.g. what [`raw_exchange`] read).
pub async fn read_response(bytes: &[u8]) -> io::Result<RawResponse> {
    let mut client = H1Client::new(Cursor {
        data: bytes.to_vec(),
        pos: 0,
    });
    client.read_response().await
}

/// An in-memory stream: reads from `data`, swallows writes.
struct Cursor {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Cursor {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let n = buf.remaining().min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Cursor {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn answers_by_path_and_keeps_the_connection() {
        let backend = HttpBackend::start("b1").await;
        let mut client = H1Client::connect(backend.addr()).await.unwrap();
        let r = client.get("/x", &[]).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b1\n"));
        assert_eq!(r.header("x-backend"), Some("b1"));
        let r = client.get("/status/404", &[]).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "404\n"));
        let r = client.get("/headers", &["X-A: 1"]).await.unwrap();
        assert_eq!(r.text(), "GET /headers HTTP/1.1\r\nHost: test\r\nX-A: 1");
        let r = client
            .request("POST", "/echo", &[], b"hello")
            .await
            .unwrap();
        assert_eq!(r.text(), "hello");
        let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = client.send_raw(chunked).await.unwrap();
        assert_eq!(r.text(), "abcde");
        let r = client.get("/set-cookie/a/b", &[]).await.unwrap();
        assert_eq!(r.header("set-cookie"), Some("a=b; Path=/"));
        let r = client.get("/redirect", &[]).await.unwrap();
        assert_eq!((r.status, r.header("location")), (302, Some("/")));
        assert_eq!(backend.connections(), 1);
        assert_eq!(backend.requests(), 7);
        assert_eq!(backend.requests_for("/status"), 1);
        let r = client.get("/close", &[]).await.unwrap();
        assert!(r.closes());
        let (rest, ending) = client.read_to_end().await;
        assert!(rest.is_empty());
        assert_eq!(ending, Ending::Fin);
        client.stream().shutdown().await.unwrap();
        assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
        assert_eq!(backend.endings(), vec![Ending::Fin]);
    }

    #[tokio::test]
    async fn idle_close_sends_fin_and_counts_late_requests() {
        let backend = HttpBackend::builder()
            .idle_close(Duration::from_millis(100))
            .start()
            .await;
        let mut client = H1Client::connect(backend.addr()).await.unwrap();
        client.get("/", &[]).await.unwrap();
        let (_, ending) = client.read_to_end().await;
        assert_eq!(ending, Ending::Fin);
        // A request written after the server's FIN is read and never answered.
        client
            .stream()
            .write_all(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        client.stream().shutdown().await.unwrap();
        assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
        assert_eq!(backend.endings(), vec![Ending::Fin]);
        assert_eq!(backend.unanswered(), 1);
        assert_eq!(backend.unanswered_log()[0].target, "/late");
        assert_eq!(backend.requests(), 1);
    }

    #[tokio::test]
    async fn keep_alive_hint_and_close_after_response() {
        let backend = HttpBackend::builder()
            .keep_alive_hint(7)
            .close_after_response()
            .start()
            .await;
        let mut client = H1Client::connect(backend.addr()).await.unwrap();
        let r = client.get("/", &[]).await.unwrap();
        assert_eq!(r.header("keep-alive"), Some("timeout=7"));
        assert!(!r.closes());
        let (_, ending) = client.read_to_end().await;
        assert_eq!(ending, Ending::Fin);
    }

    #[tokio::test]
    async fn a_reset_from_the_client_is_recorded() {
        let backend = HttpBackend::start("b").await;
        let mut client = H1Client::connect(backend.addr()).await.unwrap();
        client.get("/", &[]).await.unwrap();
        crate::client::reset(client.into_inner()).unwrap();
        assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
        assert_eq!(backend.resets(), 1);
    }

    #[tokio::test]
    async fn raw_exchange_reads_to_the_end() {
        let backend = HttpBackend::start("b").await;
        let (bytes, ending) = raw_exchange(
            backend.addr(),
            b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(ending, Ending::Fin);
        let r = read_response(&bytes).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "b\n"));
    }
}
