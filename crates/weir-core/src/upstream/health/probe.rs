//! One health probe: connect, optionally ask over HTTP, and close with FIN.
//!
//! The close is the point (SPEC §5): a probe never leaves unread bytes in its receive buffer and
//! never sets SO_LINGER 0, so the kernel has no reason to send RST and a server that logs every
//! I/O error logs nothing from weir's checks.
//!
//! - `tcp`: the handshake completing is success; weir then sends the first FIN and drains until
//!   the server's FIN ([`close_gracefully`]). The TIME_WAIT state stays on weir's side: one socket
//!   per probe for 60 s, per destination, so no port exhaustion — the price of not resetting.
//! - `http`: the request says `Connection: close`, so the server is expected to close first and
//!   keep the TIME_WAIT; weir reads the response (discarding the body) and waits for that FIN. A
//!   server that keeps the connection open anyway gets weir's FIN and is drained until its own.
//! - On every failure (timeout, garbage, a banner instead of HTTP) the socket is still closed
//!   with FIN after draining. A probe takes at most `timeout` plus [`DRAIN_ALLOWANCE`].
//!
//! Known limit: a connect abandoned at the timeout leaves nothing behind, but if the server's
//! SYN-ACK arrives after that, the kernel answers it with RST (there is no socket any more).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};
use weir_config::{HttpCheck, StatusMatch, format_duration};

use crate::net::close::{CloseOutcome, close_gracefully};

/// Time a probe may spend closing after its deadline (or after a timeout) to drain the socket.
pub const DRAIN_ALLOWANCE: Duration = Duration::from_millis(100);

/// Largest response head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Most header lines parsed in a response head.
const MAX_HEADERS: usize = 64;

/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;

/// Bytes reserved for each read.
const READ_CHUNK: usize = 16 * 1024;

/// What to probe, compiled once per server from the config.
#[derive(Debug, Clone)]
pub struct Probe {
    /// TCP connect only, or an HTTP request.
    pub kind: ProbeKind,
    /// Time the probe may take, connect included.
    pub timeout: Duration,
    /// Source address to bind, so servers can recognise check traffic.
    pub source: Option<IpAddr>,
}

/// What a probe does once connected.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// The handshake completing is success.
    Tcp,
    /// An HTTP/1.1 request; the status decides.
    Http(HttpProbe),
}

/// A prebuilt HTTP/1.1 request and the statuses that count as healthy.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    request: Box<[u8]>,
    expect: Vec<StatusMatch>,
    head_request: bool,
}

impl HttpProbe {
    /// Builds the request for `target`: `Host` is `check.host` or the target address
    /// (`127.0.0.1:8080`, `[::1]:8080`), with `User-Agent: weir-health-check/<version>`,
    /// `Accept: */*` and `Connection: close`. Control characters and spaces, which validation
    /// rejects anyway, are dropped so they can never split the request. An empty
    /// `expect_status` means the default, `2xx` and `3xx`.
    pub fn new(check: &HttpCheck, target: SocketAddr) -> Self {
        let host = match &check.host {
            Some(host) => token(host),
            None => target.to_string(),
        };
        let method = token(&check.method);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-health-check/{version}\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n",
            path = token(&check.path),
            version = env!("CARGO_PKG_VERSION"),
        );
        let expect = if check.expect_status.is_empty() {
            vec![StatusMatch::Class(2), StatusMatch::Class(3)]
        } else {
            check.expect_status.clone()
        };
        HttpProbe {
            request: request.into_bytes().into_boxed_slice(),
            head_request: method.eq_ignore_ascii_case("HEAD"),
            expect,
        }
    }

    /// The request bytes sent on every probe.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Whether `status` counts as healthy.
    pub fn expects(&self, status: u16) -> bool {
        self.expect.iter().any(|m| m.matches(status))
    }
}

fn token(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect()
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the server passed.
    pub ok: bool,
    /// A short, human-readable reason: `connected`, `status 200`, `connection refused`,
    /// `timed out after 2s while connecting`, `status 503 not expected`, ...
    pub detail: String,
}

impl ProbeResult {
    fn pass(detail: impl Into<String>) -> Self {
        ProbeResult {
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(detail: impl Into<String>) -> Self {
        ProbeResult {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Runs `probe` against `target`. Never panics, never resets.
pub async fn run(probe: &Probe, target: SocketAddr) -> ProbeResult {
    let deadline = Instant::now() + probe.timeout;
    let stream = match connect(target, probe.source, deadline).await {
        Ok(stream) => stream,
        Err(failure) => return ProbeResult::fail(failure.detail(probe.timeout)),
    };
    match &probe.kind {
        ProbeKind::Tcp => tcp_probe(stream, deadline).await,
        ProbeKind::Http(http) => http_probe(stream, http, deadline, probe.timeout).await,
    }
}

// === failures ===

/// Where a probe was when it failed.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Connecting,
    Sending,
    Waiting,
    Body,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Sending => "sending the request",
            Phase::Waiting => "waiting for the response",
            Phase::Body => "reading the body",
        }
    }
}

/// Why a probe failed.
#[derive(Debug)]
enum Failure {
    TimedOut(Phase),
    Refused,
    Reset,
    Closed(Phase),
    Invalid,
    Io(Phase, io::Error),
    Source(String),
}

impl Failure {
    fn detail(&self, timeout: Duration) -> String {
        match self {
            Failure::TimedOut(phase) => format!(
                "timed out after {} while {}",
                format_duration(timeout),
                phase.describe()
            ),
            Failure::Refused => "connection refused".to_string(),
            Failure::Reset => "connection reset by server".to_string(),
            Failure::Closed(phase) => {
                format!("connection closed by server while {}", phase.describe())
            }
            Failure::Invalid => "invalid HTTP response".to_string(),
            Failure::Io(phase, err) => format!("error while {}: {err}", phase.describe()),
            Failure::Source(why) => why.clone(),
        }
    }
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Time left before `deadline`, but at least [`DRAIN_ALLOWANCE`] to close properly.
fn linger_until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(DRAIN_ALLOWANCE)
}

// === connect and TCP ===

async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    let socket = new_socket(target, source)?;
    match timeout_at(deadline, socket.connect(target)).await {
        Err(_) => Err(Failure::TimedOut(Phase::Connecting)),
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => Err(Failure::Refused),
        Ok(Err(err)) => Err(Failure::Io(Phase::Connecting, err)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

fn new_socket(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpSocket, Failure> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|err| Failure::Io(Phase::Connecting, err))?;
    if let Some(ip) = source {
        if ip.is_ipv4() != target.is_ipv4() {
            let why = format!("source address {ip} cannot reach {target}: address families differ");
            return Err(Failure::Source(why));
        }
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|err| Failure::Source(format!("cannot bind source address {ip}: {err}")))?;
    }
    Ok(socket)
}

async fn tcp_probe(stream: TcpStream, deadline: Instant) -> ProbeResult {
    match close_gracefully(stream, linger_until(deadline)).await {
        CloseOutcome::PeerRst => ProbeResult::pass("connected; the server reset on close"),
        CloseOutcome::PeerFin | CloseOutcome::TimedOut => ProbeResult::pass("connected"),
    }
}

// === HTTP ===

/// A connection being probed over HTTP, with the bytes read but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    /// The server's FIN or RST was read: nothing more can arrive.
    ended: bool,
}

impl Conn {
    /// Reads more bytes into `buf`; `Ok(0)` at the server's FIN.
    async fn fill(&mut self, phase: Phase) -> Result<usize, Failure> {
        self.buf.reserve(READ_CHUNK);
        match timeout_at(self.deadline, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(Failure::TimedOut(phase)),
            Ok(Ok(n)) => {
                self.ended = n == 0;
                Ok(n)
            }
            Ok(Err(err)) => {
                self.ended = true;
                Err(if is_reset(&err) {
                    Failure::Reset
                } else {
                    Failure::Io(phase, err)
                })
            }
        }
    }
}

async fn http_probe(
    stream: TcpStream,
    http: &HttpProbe,
    deadline: Instant,
    timeout: Duration,
) -> ProbeResult {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        deadline,
        ended: false,
    };
    let exchange = exchange(&mut conn, http).await;
    let (result, server_closes) = match exchange {
        Ok(head) if http.expects(head.status) => (
            ProbeResult::pass(format!("status {}", head.status)),
            head.server_closes,
        ),
        Ok(head) => {
            let detail = format!("status {} not expected", head.status);
            (ProbeResult::fail(detail), head.server_closes)
        }
        Err(failure) => (ProbeResult::fail(failure.detail(timeout)), false),
    };
    finish(conn, server_closes).await;
    result
}

/// Sends the request, reads the final response head and discards its body.
async fn exchange(conn: &mut Conn, http: &HttpProbe) -> Result<Head, Failure> {
    match timeout_at(conn.deadline, conn.stream.write_all(http.request())).await {
        Err(_) => return Err(Failure::TimedOut(Phase::Sending)),
        Ok(Err(err)) if is_reset(&err) => return Err(Failure::Reset),
        Ok(Err(err)) => return Err(Failure::Io(Phase::Sending, err)),
        Ok(Ok(())) => {}
    }
    for _ in 0..MAX_INTERIM {
        let head = read_head(conn, http.head_request).await?;
        if head.status == 101 || !(100..200).contains(&head.status) {
            discard_body(conn, head.framing).await?;
            return Ok(head);
        }
    }
    Err(Failure::Invalid)
}

/// Closes the probe's connection without a reset: nothing to do if the server already ended
/// it; otherwise wait for the server's FIN if it announced one, else send ours and drain.
async fn finish(conn: Conn, server_closes: bool) {
    if conn.ended {
        return; // Everything up to the server's FIN was read: dropping sends our FIN only.
    }
    let mut stream = conn.stream;
    if server_closes && await_server_fin(&mut stream, conn.deadline).await {
        return;
    }
    close_gracefully(stream, linger_until(conn.deadline)).await;
}

/// Reads and discards until the server ends the connection (`true`) or `deadline` (`false`).
async fn await_server_fin(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut scratch = [0u8; READ_CHUNK];
    loop {
        match timeout_at(deadline, stream.read(&mut scratch)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A parsed response head: the status and how its body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    /// The server said it will close (`Connection: close`, HTTP/1.0, or a body read to close).
    server_closes: bool,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

async fn read_head(conn: &mut Conn, head_request: bool) -> Result<Head, Failure> {
    loop {
        if let Some((head, len)) = parse_head(&conn.buf, head_request)? {
            conn.buf.drain(..len);
            return Ok(head);
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(Failure::Invalid);
        }
        if conn.fill(Phase::Waiting).await? == 0 {
            return Err(Failure::Closed(Phase::Waiting));
        }
    }
}

/// Parses a response head at the start of `buf`; `None` while incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(Head, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Invalid),
    };
    let status = response.code.ok_or(Failure::Invalid)?;
    let framing = framing(status, head_request, response.headers)?;
    let close = has_token(response.headers, "connection", "close");
    let keep_alive = has_token(response.headers, "connection", "keep-alive");
    let old = response.version == Some(0);
    let server_closes = close || (old && !keep_alive) || framing == Framing::UntilClose;
    let head = Head {
        status,
        framing,
        server_closes,
    };
    Ok(Some((head, len)))
}

/// RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; then Transfer-Encoding, then
/// Content-Length (all copies must agree), else read until close.
fn framing(
    status: u16,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Result<Framing, Failure> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    let mut encodings = headers_named(headers, "transfer-encoding").peekable();
    if encodings.peek().is_some() {
        let last = encodings.flat_map(|v| v.split(',')).last().unwrap_or("");
        let chunked = last.trim().eq_ignore_ascii_case("chunked");
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers_named(headers, "content-length") {
        let parsed: u64 = value.trim().parse().map_err(|_| Failure::Invalid)?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(Failure::Invalid);
        }
        length = Some(parsed);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn headers_named<'h>(
    headers: &'h [httparse::Header<'h>],
    name: &'static str,
) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(headers: &[httparse::Header<'_>], name: &'static str, token: &str) -> bool {
    headers_named(headers, name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads and discards the body as framed. `conn.buf` holds the bytes after the head.
async fn discard_body(conn: &mut Conn, framing: Framing) -> Result<(), Failure> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(len) => discard_length(conn, len).await,
        Framing::Chunked => discard_chunked(conn).await,
        Framing::UntilClose => loop {
            conn.buf.clear();
            if conn.fill(Phase::Body).await? == 0 {
                return Ok(());
            }
        },
    }
}

async fn discard_length(conn: &mut Conn, len: u64) -> Result<(), Failure> {
    let mut left = len;
    loop {
        let have = u64::try_from(conn.buf.len()).unwrap_or(u64::MAX);
        left = left.saturating_sub(have);
        conn.buf.clear();
        if left == 0 {
            return Ok(());
        }
        if conn.fill(Phase::Body).await? == 0 {
            return Err(Failure::Closed(Phase::Body));
        }
    }
}

async fn discard_chunked(conn: &mut Conn) -> Result<(), Failure> {
    let mut chunks = Chunked::default();
    loop {
        let done = chunks.feed(&conn.buf).map_err(|_| Failure::Invalid)?;
        conn.buf.clear();
        if done {
            return Ok(());
        }
        if conn.fill(Phase::Body).await? == 0 {
            return Err(Failure::Closed(Phase::Body));
        }
    }
}

// === chunked decoding (discarding) ===

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A malformed chunked body.
#[derive(Debug, PartialEq, Eq)]
struct BadChunk;

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Skips a chunked body, byte slice by byte slice, keeping only the current line.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

impl Chunked {
    /// Consumes `input`; `Ok(true)` once the last chunk and the trailers are through.
    fn feed(&mut self, mut input: &[u8]) -> Result<bool, BadChunk> {
        while !input.is_empty() && self.state != ChunkState::Done {
            if let ChunkState::Data(left) = self.state {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                input = &input[take..];
                let left = left - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left)
                };
                continue;
            }
            let Some(newline) = input.iter().position(|b| *b == b'\n') else {
                self.push_line(input)?;
                return Ok(false);
            };
            self.push_line(&input[..newline])?;
            input = &input[newline + 1..];
            let line = std::mem::take(&mut self.line);
            self.state = self.next_state(line.strip_suffix(b"\r").unwrap_or(&line))?;
        }
        Ok(self.state == ChunkState::Done)
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), BadChunk> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(BadChunk);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn next_state(&self, line: &[u8]) -> Result<ChunkState, BadChunk> {
        match self.state {
            ChunkState::Size => match chunk_size(line)? {
                0 => Ok(ChunkState::Trailer),
                size => Ok(ChunkState::Data(size)),
            },
            ChunkState::DataEnd if line.is_empty() => Ok(ChunkState::Size),
            ChunkState::Trailer if line.is_empty() => Ok(ChunkState::Done),
            ChunkState::Trailer => Ok(ChunkState::Trailer),
            ChunkState::DataEnd | ChunkState::Data(_) | ChunkState::Done => Err(BadChunk),
        }
    }
}

/// Parses `1a;ext=1` as 0x1a.
fn chunk_size(line: &[u8]) -> Result<u64, BadChunk> {
    let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let size = std::str::from_utf8(size).map_err(|_| BadChunk)?.trim();
    if size.is_empty() || size.len() > 16 {
        return Err(BadChunk);
    }
    u64::from_str_radix(size, 16).map_err(|_| BadChunk)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;
    use tokio::task::JoinSet;
    use weir_testkit::{
        Counts, Ending, Mode, RecordingBackend, read_to_end_classified, refusing_addr,
        unresponsive_listener,
    };

    use super::*;

    const PROBES: usize = 1000;
    const CONCURRENCY: usize = 16;
    const WAIT: Duration = Duration::from_secs(30);

    fn tcp() -> Probe {
        Probe {
            kind: ProbeKind::Tcp,
            timeout: Duration::from_secs(2),
            source: None,
        }
    }

    fn http(check: &HttpCheck, target: SocketAddr) -> Probe {
        Probe {
            kind: ProbeKind::Http(HttpProbe::new(check, target)),
            timeout: Duration::from_secs(2),
            source: None,
        }
    }

    /// Runs `n` probes, `CONCURRENCY` at a time, and returns every result.
    async fn run_many(probe: Probe, target: SocketAddr, n: usize) -> Vec<ProbeResult> {
        let probe = Arc::new(probe);
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (probe, next) = (Arc::clone(&probe), Arc::clone(&next));
            workers.spawn(async move {
                let mut results = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    results.push(run(&probe, target).await);
                }
                results
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(results) = workers.join_next().await {
            all.extend(results.unwrap());
        }
        all
    }

    /// Probes `backend` `PROBES` times and checks every connection ended with FIN.
    async fn thousand(backend: &RecordingBackend, probe: Probe, label: &str) -> Vec<ProbeResult> {
        let started = std::time::Instant::now();
        let results = run_many(probe, backend.addr(), PROBES).await;
        assert!(
            backend.wait_for_endings(PROBES, WAIT).await,
            "{label}: {:?}",
            backend.counts()
        );
        let counts = backend.counts();
        eprintln!(
            "{label}: {PROBES} probes, {counts:?}, {:.2?}",
            started.elapsed()
        );
        assert_eq!(
            counts,
            Counts {
                fin: PROBES,
                rst: 0,
                other: 0,
                open: 0
            },
            "{label}"
        );
        assert_eq!(results.len(), PROBES);
        results
    }

    fn all_ok(results: &[ProbeResult], detail: &str) {
        let bad: Vec<_> = results
            .iter()
            .filter(|r| !r.ok || r.detail != detail)
            .collect();
        assert!(
            bad.is_empty(),
            "{} unexpected results, e.g. {:?}",
            bad.len(),
            bad.first()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_tcp_probes_end_with_fin() {
        let backend = RecordingBackend::start(Mode::Silent).await;
        let results = thousand(&backend, tcp(), "tcp/silent").await;
        all_ok(&results, "connected");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_tcp_probes_of_a_banner_server_end_with_fin() {
        let banner = b"SSH-2.0-OpenSSH_9.6\r\n".to_vec();
        let backend = RecordingBackend::start(Mode::Banner(banner)).await;
        let results = thousand(&backend, tcp(), "tcp/banner").await;
        all_ok(&results, "connected");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_http_probes_of_a_closing_server_end_with_fin() {
        let backend = RecordingBackend::start(Mode::HttpClose).await;
        let probe = http(&HttpCheck::default(), backend.addr());
        let results = thousand(&backend, probe, "http/close").await;
        all_ok(&results, "status 200");
        assert_eq!(backend.requests(), PROBES);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_http_probes_of_a_keep_alive_server_end_with_fin() {
        let backend = RecordingBackend::start(Mode::HttpKeepOpen).await;
        let probe = http(&HttpCheck::default(), backend.addr());
        let results = thousand(&backend, probe, "http/keep-open").await;
        all_ok(&results, "status 200");
        assert_eq!(backend.requests(), PROBES);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_http_probes_of_a_banner_first_server_fail_but_end_with_fin() {
        let backend = RecordingBackend::start(Mode::HttpBannerFirst).await;
        let probe = http(&HttpCheck::default(), backend.addr());
        let results = thousand(&backend, probe, "http/banner-first").await;
        let bad: Vec<_> = results
            .iter()
            .filter(|r| r.ok || r.detail != "invalid HTTP response")
            .collect();
        assert!(
            bad.is_empty(),
            "{} unexpected, e.g. {:?}",
            bad.len(),
            bad.first()
        );
    }

    #[tokio::test]
    async fn refused_connect_fails() {
        let result = run(&tcp(), refusing_addr().await).await;
        assert_eq!(result, ProbeResult::fail("connection refused"));
    }

    #[tokio::test]
    async fn connect_that_hangs_times_out() {
        let (_held, addr) = unresponsive_listener().unwrap();
        let probe = Probe {
            timeout: Duration::from_millis(200),
            ..tcp()
        };
        let started = std::time::Instant::now();
        let result = run(&probe, addr).await;
        let took = started.elapsed();
        assert_eq!(
            result,
            ProbeResult::fail("timed out after 200ms while connecting")
        );
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn source_address_is_bound() {
        let backend = RecordingBackend::start(Mode::Silent).await;
        let source = Some(IpAddr::from([127, 0, 0, 1]));
        let result = run(&Probe { source, ..tcp() }, backend.addr()).await;
        assert_eq!(result, ProbeResult::pass("connected"));
        let v6 = Some("::1".parse().unwrap());
        let result = run(
            &Probe {
                source: v6,
                ..tcp()
            },
            backend.addr(),
        )
        .await;
        assert!(!result.ok);
        assert!(
            result.detail.contains("address families differ"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn request_bytes_are_exact() {
        let version = env!("CARGO_PKG_VERSION");
        let check = HttpCheck {
            path: "/healthz".to_string(),
            ..HttpCheck::default()
        };
        let probe = HttpProbe::new(&check, "127.0.0.1:8080".parse().unwrap());
        let expected = format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
             User-Agent: weir-health-check/{version}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(probe.request()), expected);

        let v6 = HttpProbe::new(&HttpCheck::default(), "[::1]:8080".parse().unwrap());
        assert!(
            v6.request()
                .starts_with(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n")
        );

        let named = HttpCheck {
            method: "HEAD".to_string(),
            host: Some("app.internal\r\nX-Evil: 1".to_string()),
            ..HttpCheck::default()
        };
        let named = HttpProbe::new(&named, "127.0.0.1:80".parse().unwrap());
        let expected = format!(
            "HEAD / HTTP/1.1\r\nHost: app.internalX-Evil:1\r\n\
             User-Agent: weir-health-check/{version}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(named.request()), expected);
        assert!(named.head_request);
    }

    #[test]
    fn expected_statuses() {
        let probe = HttpProbe::new(&HttpCheck::default(), "127.0.0.1:80".parse().unwrap());
        assert!(probe.expects(200) && probe.expects(302));
        assert!(!probe.expects(404) && !probe.expects(503));
        let check = HttpCheck {
            expect_status: vec![StatusMatch::Code(204), StatusMatch::Range(500, 502)],
            ..HttpCheck::default()
        };
        let probe = HttpProbe::new(&check, "127.0.0.1:80".parse().unwrap());
        assert!(probe.expects(204) && probe.expects(501));
        assert!(!probe.expects(200) && !probe.expects(503));
    }

    // === raw responses ===

    /// A server that answers each connection with `response` once it has read the request
    /// head, then closes with FIN (after draining), and reports how the probe ended it.
    async fn raw_server(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Ending>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
                head.push(byte[0]);
            }
            stream.write_all(response).await.unwrap();
            stream.shutdown().await.unwrap();
            read_to_end_classified(&mut stream).await.1
        });
        (addr, task)
    }

    async fn probe_raw(response: &'static [u8], check: &HttpCheck) -> ProbeResult {
        let (addr, server) = raw_server(response).await;
        let result = run(&http(check, addr), addr).await;
        assert_eq!(server.await.unwrap(), Ending::Fin, "{result:?}");
        result
    }

    #[tokio::test]
    async fn unexpected_status_fails() {
        let response = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
        let result = probe_raw(response, &HttpCheck::default()).await;
        assert_eq!(result, ProbeResult::fail("status 503 not expected"));
        let check = HttpCheck {
            expect_status: vec![StatusMatch::Code(503)],
            ..HttpCheck::default()
        };
        let result = probe_raw(response, &check).await;
        assert_eq!(result, ProbeResult::pass("status 503"));
    }

    #[tokio::test]
    async fn bodies_of_every_framing_are_read() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5;x=y\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n";
        let until_close = b"HTTP/1.0 204 No Content\r\n\r\n";
        let http10 = b"HTTP/1.0 200 OK\r\n\r\nbody until the server closes";
        let interim =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n";
        for (response, detail) in [
            (&chunked[..], "status 200"),
            (&until_close[..], "status 204"),
            (&http10[..], "status 200"),
            (&interim[..], "status 301"),
        ] {
            let response: &'static [u8] = response;
            let result = probe_raw(response, &HttpCheck::default()).await;
            assert_eq!(result, ProbeResult::pass(detail));
        }
    }

    #[tokio::test]
    async fn garbage_and_truncation_fail() {
        let garbage = probe_raw(b"SSH-2.0-x\r\n", &HttpCheck::default()).await;
        assert_eq!(garbage, ProbeResult::fail("invalid HTTP response"));
        let check = HttpCheck::default();
        let short = probe_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &check).await;
        let expected = "connection closed by server while reading the body";
        assert_eq!(short, ProbeResult::fail(expected));
        let empty = probe_raw(b"", &HttpCheck::default()).await;
        assert_eq!(
            empty,
            ProbeResult::fail("connection closed by server while waiting for the response")
        );
    }

    #[tokio::test]
    async fn silent_http_server_times_out_and_still_gets_fin() {
        let backend = RecordingBackend::start(Mode::Silent).await;
        let probe = Probe {
            timeout: Duration::from_millis(200),
            ..http(&HttpCheck::default(), backend.addr())
        };
        let result = run(&probe, backend.addr()).await;
        let expected = "timed out after 200ms while waiting for the response";
        assert_eq!(result, ProbeResult::fail(expected));
        assert!(backend.wait_for_endings(1, WAIT).await);
        assert_eq!(backend.endings(), vec![Ending::Fin]);
    }

    #[test]
    fn chunked_decoder_handles_split_input() {
        let body = b"4\r\nwiki\r\n5\r\npedia\r\nE; ext\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut chunks = Chunked::default();
            let first = chunks.feed(&body[..split]).unwrap();
            assert!(!first || split == body.len());
            assert!(chunks.feed(&body[split..]).unwrap(), "split at {split}");
        }
        assert_eq!(Chunked::default().feed(b"zz\r\n"), Err(BadChunk));
        assert_eq!(Chunked::default().feed(b"2\r\nabX\r\n"), Err(BadChunk));
        assert_eq!(
            Chunked::default().feed(b"11111111111111111\r\n"),
            Err(BadChunk)
        );
    }
}
