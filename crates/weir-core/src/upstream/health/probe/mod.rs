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
use crate::net::is_reset;

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

mod http;
#[cfg(test)]
mod tests;

use http::http_probe;
