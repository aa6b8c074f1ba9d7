//! One HTTP/1 client connection, from its first byte to its close.
//!
//! The connection's task does all the work of each exchange itself: it reads the request head
//! into a pooled buffer, checks it and writes the server's head in one pass
//! ([`super::head`]), takes a pooled server socket (or connects), sends, reads the
//! response head the same way and streams the body back. There is no HTTP library, channel or
//! second task between client and server, and no header map: a keep-alive request costs the
//! four system calls of moving its bytes and little else.
//!
//! Timers: between requests the connection may be idle for the listener's `idle_timeout`; a
//! request head must be complete within `request_header_timeout` of its first byte (else 408);
//! the server's response head must come within the group's `request_timeout` (else 504); a
//! body that makes no progress for `idle_timeout` ends the exchange. Shutdown closes idle
//! connections at once and lets a running exchange finish with `Connection: close`; when the
//! grace runs out every connection closes.
//!
//! Every close is FIN after draining (`net::close`); every exchange writes one record.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio::time::Sleep;
use tracing::{debug, warn};

use super::buf::{BUF_SIZE, Buf, OutBuf};
use super::chunk::{ChunkError, ChunkScanner};
use super::head::{
    self, ClientConnection, Forwarded, Framing, HeadLimits, MAX_HEADERS, write_answer,
};
use crate::end::{End, EndBy, EndHow, EndPhase, HttpRecord, Record};
use crate::http::client_io::ClientStream;
use crate::http::exchange::new_record;
use crate::http::headers::IpText;
use crate::http::route::{Route, redirect_location};
use crate::http::service::{HttpGroup, HttpService};
use crate::http::validate::Reject;
use crate::l4::forward::CLOSE_LINGER;
use crate::limits::Refusal;
use crate::listener::signal::{Shutdown, Signal, Watch};
use crate::net::batch;
use crate::net::close::drain_and_close;
use crate::net::is_reset;
use crate::tls::NegotiatedVersion;
use crate::upstream::connect::connect_one;

#[path = "tunnel.rs"]
mod tunnel;

/// Request bodies up to this size are read completely before the request is sent: a malformed
/// body never reaches a server, and the request can be sent again after a stale connection.
const BUFFERED_BODY: usize = 64 * 1024;

/// Largest response head weir takes from a server.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Bodies move through buffers of up to this size: 48 KiB, not 64, because a 64 KiB write on
/// loopback leaves as one full segment and a 53-byte one (see `l4::direction`).
const BODY_CHUNK: usize = 48 * 1024;

/// Room for what weir adds to a request head (`X-Forwarded-*`, `X-Real-IP`, framing): about
/// 270 bytes with IPv6 addresses; a head that needs more grows its buffer.
const FORWARDING_ROOM: usize = 320;

/// How an HTTP/2 client with prior knowledge starts (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// First byte of a TLS record carrying a handshake: a ClientHello sent to a plain port.
const TLS_HANDSHAKE: u8 = 0x16;

/// What weir knows about a client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts {
    /// Client address.
    pub peer: SocketAddr,
    /// Listener port the client connected to.
    pub local_port: u16,
    /// The TLS version, on https.
    pub tls_version: Option<NegotiatedVersion>,
    /// Why the listener's ACL or limits turned this connection away, if they did: its first
    /// request is answered 403 or 503 and the connection closes.
    pub refusal: Option<Refusal>,
}

/// A connection that turned out to be HTTP/2 with prior knowledge: the stream and the bytes
/// already read from it, for the HTTP/2 server.
pub struct H2Handoff<S> {
    /// The client stream.
    pub stream: S,
    /// Bytes read before the preface was recognised.
    pub read: Vec<u8>,
}

/// Serves an HTTP/1 connection to its end and closes it, or hands it to `on_h2` when it
/// speaks HTTP/2 (with the connection's facts and shutdown signal).
///
/// The future lives in every connection's task, so it is built to stay small: not an
/// `async fn` (which would keep each argument twice, as argument and as local), everything the
/// connection owns kept once, where it was passed in, and everything but the read loop (an
/// exchange, the close, a tunnel, HTTP/2) on the heap while it runs. The caller spawns this
/// future as it is, with no block of its own around it, for the same reason.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep `stream` twice"
)]
pub fn serve<S, H, F>(
    svc: Arc<HttpService>,
    mut stream: S,
    facts: ConnFacts,
    signal: Arc<Signal>,
    on_h2: H,
) -> impl Future<Output = ()> + Send + 'static
where
    S: ClientStream + 'static,
    H: FnOnce(H2Handoff<S>, ConnFacts, Arc<Signal>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    async move {
        let (finish, rbuf, watch) = {
            let timer = std::pin::pin!(tokio::time::sleep_until(Instant::now() + svc.idle_timeout));
            let mut conn = Conn {
                svc: &svc,
                client: &mut stream,
                rbuf: Buf::new(),
                facts: &facts,
                watch: signal.watch(),
                timer,
                requests: 0,
            };
            let finish = conn.run().await;
            (finish, conn.rbuf, conn.watch)
        };
        let closing = match ending(finish, stream, rbuf, watch) {
            Ending::H2(handoff) => return on_h2(handoff, facts, signal).await,
            Ending::Done => return,
            Ending::Closing(closing) => closing,
        };
        // One await for every close, on the heap: the close's timers and a tunnel are large,
        // and locals kept across several awaits would each take room in every connection.
        Box::pin(closing.run(&svc, facts.peer)).await;
    }
}

/// What becomes of a client connection once its loop ended.
enum Ending<S> {
    /// Handed over to the HTTP/2 server.
    H2(H2Handoff<S>),
    /// Closed already, or gone.
    Done,
    /// Work left to do.
    Closing(Closing<S>),
}

/// Closing work left after a client connection's loop.
enum Closing<S> {
    /// Close with FIN (after this answer, if any), draining what the client still sends.
    Close(S, Option<OutBuf>),
    /// Forward bytes both ways (`rbuf` holds the client's first tunnelled bytes), then close.
    Tunnel(Box<tunnel::Tunnel>, S, Buf, Watch),
}

fn ending<S: ClientStream>(finish: Finish, client: S, rbuf: Buf, watch: Watch) -> Ending<S> {
    match finish {
        Finish::H2 => Ending::H2(H2Handoff {
            stream: client,
            read: rbuf.filled().to_vec(),
        }),
        // The client is gone (reset, error): nothing to say.
        Finish::Gone => Ending::Done,
        Finish::CloseQuiet if rbuf.is_empty() => match client.close_if_quiet() {
            Ok(()) => Ending::Done,
            Err(client) => Ending::Closing(Closing::Close(client, None)),
        },
        Finish::CloseQuiet => Ending::Closing(Closing::Close(client, None)),
        Finish::Close(answer) => Ending::Closing(Closing::Close(client, answer)),
        Finish::Tunnel(tunnel) => Ending::Closing(Closing::Tunnel(tunnel, client, rbuf, watch)),
    }
}

impl<S: ClientStream> Closing<S> {
    async fn run(self, svc: &HttpService, peer: SocketAddr) {
        match self {
            Closing::Close(client, answer) => close_client(client, answer).await,
            Closing::Tunnel(tunnel, client, rbuf, watch) => {
                tunnel.run(svc, client, rbuf, peer, watch).await;
            }
        }
    }
}

/// Writes a last answer, if any, then FIN and drain.
async fn close_client<S: ClientStream>(mut client: S, answer: Option<OutBuf>) {
    if let Some(answer) = answer {
        let _ = tokio::time::timeout(CLOSE_LINGER, client.write_all(answer.bytes())).await;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, client.shutdown()).await;
    drain_and_close(client.into_tcp(), CLOSE_LINGER).await;
}

/// How the connection loop ended.
enum Finish {
    /// Close with FIN, after writing this answer if there is one.
    Close(Option<OutBuf>),
    /// The client asked to close and was answered: close at once if it sent nothing more
    /// (RFC 9112 §9.6: a client that sent `close` sends no further request), else as `Close`.
    CloseQuiet,
    /// Already closed (or unusable): drop it.
    Gone,
    /// The client speaks HTTP/2.
    H2,
    /// An upgraded connection: forward bytes both ways.
    Tunnel(Box<tunnel::Tunnel>),
}

/// What comes after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// The client asked for the close (see [`Finish::CloseQuiet`]).
    CloseQuiet,
    Gone,
    /// The server switched protocols: both sides become a tunnel.
    Tunnel(Box<tunnel::Tunnel>),
}

/// Why a wait ended before its future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// The deadline passed.
    Timeout,
    /// Shutdown began (only for waits that watch it).
    Stopped,
    /// The shutdown grace is over.
    Forced,
}

/// Waits for `fut` until `deadline`, watching the end of the shutdown grace (and, with
/// `stop`, its start).
///
/// One timer per connection serves every wait. It is moved only when a wait needs an earlier
/// deadline than the one it is set for; when it fires for a deadline that is no longer
/// current, it is set again. So a busy connection, whose deadlines all lie a timeout ahead,
/// rarely touches the timer wheel.
///
/// `fut` must be `Unpin` (a `poll_fn`, or a future pinned by the caller with
/// `std::pin::pin!`): the wait is then `fut` and a few words, where an `async fn` would keep
/// `fut` twice.
fn within<'a, 'p, F: Future + Unpin>(
    timer: &'a mut Pin<&'p mut Sleep>,
    watch: &'a mut Watch,
    deadline: Instant,
    stop: bool,
    fut: F,
) -> Within<'a, 'p, F> {
    Within {
        timer,
        watch,
        deadline,
        stop,
        fut,
    }
}

/// The future of [`within`].
struct Within<'a, 'p, F> {
    timer: &'a mut Pin<&'p mut Sleep>,
    watch: &'a mut Watch,
    deadline: Instant,
    stop: bool,
    fut: F,
}

impl<F: Future + Unpin> Future for Within<'_, '_, F> {
    type Output = Result<F::Output, Interrupt>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = Pin::new(&mut this.fut).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        poll_interrupt(cx, this.timer, this.watch, this.deadline, this.stop).map(Err)
    }
}

/// What ends a wait before its future: the end of the shutdown grace, the start of shutdown
/// (with `stop`), or `deadline`. `Pending` while none has come.
fn poll_interrupt(
    cx: &mut Context<'_>,
    timer: &mut Pin<&mut Sleep>,
    watch: &mut Watch,
    deadline: Instant,
    stop: bool,
) -> Poll<Interrupt> {
    match watch.poll_shutdown(cx, stop) {
        Poll::Ready(Shutdown::Forced) => return Poll::Ready(Interrupt::Forced),
        Poll::Ready(Shutdown::Stopping) => return Poll::Ready(Interrupt::Stopped),
        Poll::Pending => {}
    }
    loop {
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(()) if Instant::now() >= deadline => {
                return Poll::Ready(Interrupt::Timeout);
            }
            // Set for an older, earlier deadline: move it.
            Poll::Ready(()) => timer.as_mut().reset(deadline),
        }
    }
}

struct Conn<'a, 'p, S> {
    svc: &'a HttpService,
    client: &'p mut S,
    /// Bytes from the client not used yet.
    rbuf: Buf,
    facts: &'a ConnFacts,
    /// Shutdown: finish the exchange and close; close now once the grace is over.
    watch: Watch,
    /// The connection's one timer (see [`within`]).
    timer: Pin<&'p mut Sleep>,
    requests: u32,
}

/// A request head, checked and routed, with the head to send written.
struct Prepared {
    /// Head bytes in the read buffer.
    head_len: usize,
    /// What to do with it.
    action: Action,
    /// The record, when records are wanted; boxed, so that without an access log an
    /// exchange's state (kept twice by each `async fn` it is passed to) stays small.
    record: Option<Box<HttpRecord>>,
}

enum Action {
    /// weir answers itself.
    Answer {
        status: StatusCode,
        end: End,
        close: bool,
        location: Option<String>,
    },
    /// To a server of `group`.
    Forward(Outbound),
}

/// A request on its way to a server.
struct Outbound {
    group: Arc<HttpGroup>,
    /// The server the persistence cookie pins, if it may take the request.
    pinned: Option<usize>,
    /// The head to send.
    out: OutBuf,
    framing: Framing,
    http10: bool,
    keep_alive: bool,
    idempotent: bool,
    head_method: bool,
    expect_continue: bool,
    /// `Some(protocol)` for an upgrade request.
    upgrade: Option<&'static str>,
}

/// The request body as read before sending.
struct BodyStart {
    /// Body bytes at the front of the read buffer.
    buffered: usize,
    /// Whether they are the whole body.
    complete: bool,
    /// Position in a chunked body after the buffered bytes.
    chunks: Option<ChunkScanner>,
    /// Length still to come after the buffered bytes (length-framed bodies).
    remaining: u64,
    /// Length-framed body bytes streamed after the buffered ones.
    streamed: u64,
}

impl BodyStart {
    /// Body bytes received from the client so far (data bytes, for a chunked body).
    fn received(&self) -> u64 {
        match &self.chunks {
            Some(scanner) => scanner.data_len(),
            None => self.buffered as u64 + self.streamed,
        }
    }
}

/// The state of one exchange: its record and timings.
struct Exchange {
    record: Option<Box<HttpRecord>>,
    /// When the exchange started (read only when there is a record).
    started: Option<Instant>,
    sent_at: Option<Instant>,
    bytes_in: u64,
    bytes_out: u64,
}

impl Exchange {
    fn note(&mut self, f: impl FnOnce(&mut HttpRecord)) {
        if let Some(record) = &mut self.record {
            f(record);
        }
    }

    fn finish(mut self, sink: &dyn crate::access_log::RecordSink, end: End) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let now = Instant::now();
        record.end(end);
        record.request_time = self
            .started
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        record.upstream_response_time = self.sent_at.map(|t| now.duration_since(t));
        record.bytes_in = self.bytes_in;
        record.bytes_out = self.bytes_out;
        sink.record(Record::Http(*record));
    }
}

/// Where a wait for a request head is.
struct HeadRead {
    /// Until the head's first byte, the end of the idle timeout; from then on, the end of the
    /// head timeout.
    deadline: Instant,
    /// The head's first byte came.
    started: bool,
    /// The socket was ready (or need not be waited for): a read is under way.
    reading: bool,
}

/// Outcome of waiting for a request head. Short-lived and moved once, so the large variant
/// stays inline rather than costing an allocation per request.
#[allow(clippy::large_enum_variant)]
enum HeadWait {
    Ready(Prepared),
    /// The client closed or reset between requests, or went quiet for `idle_timeout`.
    Quiet,
    /// Shutdown while idle.
    Stopped,
    /// The client's bytes are refused: answer and close.
    Refused(Reject, Option<Box<HttpRecord>>),
    /// A TLS ClientHello on a plain port: close without an answer.
    TlsOnPlain,
    /// The head did not complete in time: 408.
    HeadTimeout,
    H2,
}

/// Outcome of trying to parse what the buffer holds (inline, like [`HeadWait`]).
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Partial,
    Ready(Prepared),
    /// Refused, with the record when the head could be read.
    Refused(Reject, Option<Box<HttpRecord>>),
}

impl<S: ClientStream> Conn<'_, '_, S> {
    /// Serves requests until the connection ends. Not an `async fn`, which would keep `self`
    /// twice in the state every connection holds.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would keep `self` twice"
    )]
    fn run(&mut self) -> impl Future<Output = Finish> + '_ {
        async move {
            loop {
                let idle_deadline = Instant::now() + self.svc.idle_timeout;
                let prepared = match self.read_head(idle_deadline).await {
                    HeadWait::Ready(prepared) => prepared,
                    HeadWait::Quiet | HeadWait::Stopped => return Finish::Close(None),
                    HeadWait::H2 => return Finish::H2,
                    HeadWait::TlsOnPlain => {
                        warn!(peer = %self.facts.peer, "protocol mismatch: TLS sent to a plain HTTP port; closing");
                        self.log_rejected(None, End::client_error("tls_on_plain_port"));
                        return Finish::Close(None);
                    }
                    HeadWait::Refused(reject, Some(record)) => {
                        let mut record = *record;
                        record.status = reject.status.as_u16();
                        record.end(End::client_error(reject.reason));
                        self.svc.sink.record(Record::Http(record));
                        return Finish::Close(Some(answer(reject.status, true, None)));
                    }
                    HeadWait::Refused(reject, None) => {
                        self.log_rejected(Some(reject.status), End::client_error(reject.reason));
                        return Finish::Close(Some(answer(reject.status, true, None)));
                    }
                    HeadWait::HeadTimeout => {
                        let end =
                            End::weir(EndHow::Timeout, EndPhase::Request, "request_header_timeout");
                        self.log_rejected(Some(StatusCode::REQUEST_TIMEOUT), end);
                        return Finish::Close(Some(answer(
                            StatusCode::REQUEST_TIMEOUT,
                            true,
                            None,
                        )));
                    }
                };
                // An exchange's state lives on the heap only while it runs: an idle connection
                // keeps just the loop's.
                match Box::pin(self.exchange(prepared)).await {
                    Next::KeepAlive => {}
                    Next::Close => return Finish::Close(None),
                    Next::CloseQuiet => return Finish::CloseQuiet,
                    Next::Gone => return Finish::Gone,
                    Next::Tunnel(tunnel) => return Finish::Tunnel(tunnel),
                }
            }
        }
    }

    /// Waits for a complete request head and prepares it. Reads within the idle timer until
    /// the head's first byte, then within the head timer; shutdown ends only an idle wait.
    ///
    /// Every idle connection waits here, so the wait is a poll function over the connection
    /// and two small values, rather than an `async fn`, which would keep its own copies of
    /// what it uses and the future of each wait inside it.
    fn read_head(&mut self, idle_deadline: Instant) -> impl Future<Output = HeadWait> + Unpin {
        let mut head = HeadRead {
            deadline: idle_deadline,
            started: false,
            reading: false,
        };
        poll_fn(move |cx| self.poll_head(cx, &mut head))
    }

    fn poll_head(&mut self, cx: &mut Context<'_>, head: &mut HeadRead) -> Poll<HeadWait> {
        let svc = self.svc;
        loop {
            if !head.reading {
                if !self.rbuf.is_empty()
                    && let Some(wait) = self.look_at_head(head)
                {
                    return Poll::Ready(wait);
                }
                if !head.started && self.rbuf.is_empty() {
                    // Wait for the socket before taking a buffer: an idle connection holds none.
                    // Shutdown ends this wait.
                    match self.client.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Poll::Ready(HeadWait::Quiet),
                        Poll::Pending => {
                            let watch = &mut self.watch;
                            return poll_interrupt(cx, &mut self.timer, watch, head.deadline, true)
                                .map(|interrupt| match interrupt {
                                    Interrupt::Timeout => HeadWait::Quiet,
                                    Interrupt::Stopped | Interrupt::Forced => HeadWait::Stopped,
                                });
                        }
                    }
                }
                head.reading = true;
            }
            let limit = svc.settings.max_header_size.max(BUF_SIZE);
            match self.rbuf.poll_recv_from(cx, &mut *self.client, limit) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(HeadWait::Quiet),
                Poll::Ready(Ok(_)) => head.reading = false,
                Poll::Pending => {
                    let watch = &mut self.watch;
                    return poll_interrupt(cx, &mut self.timer, watch, head.deadline, false).map(
                        |interrupt| match interrupt {
                            Interrupt::Timeout if head.started => HeadWait::HeadTimeout,
                            Interrupt::Timeout => HeadWait::Quiet,
                            Interrupt::Stopped | Interrupt::Forced => HeadWait::Stopped,
                        },
                    );
                }
            }
        }
    }

    /// Looks at the bytes received so far: what to do with them, or `None` when more are
    /// needed (with the head timer started once a head has begun).
    fn look_at_head(&mut self, head: &mut HeadRead) -> Option<HeadWait> {
        let settings = &self.svc.settings;
        let first = self.requests == 0;
        let bytes = self.rbuf.filled();
        if first && bytes[0] == TLS_HANDSHAKE && self.facts.tls_version.is_none() {
            return Some(HeadWait::TlsOnPlain);
        }
        if first && self.facts.tls_version.is_none() && bytes[0] == b'P' {
            let n = bytes.len().min(H2_PREFACE.len());
            if bytes[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return Some(HeadWait::H2);
                }
                // Not enough bytes to tell yet.
                self.start_head_timer(head);
                return None;
            }
        }
        match self.prepare() {
            Parsed::Ready(prepared) => Some(HeadWait::Ready(prepared)),
            Parsed::Refused(reject, record) => Some(HeadWait::Refused(reject, record)),
            Parsed::Partial => {
                if self.rbuf.len() >= settings.max_header_size {
                    let reject = head_too_large(self.rbuf.filled(), settings.max_uri_length);
                    return Some(HeadWait::Refused(reject, None));
                }
                self.start_head_timer(head);
                None
            }
        }
    }

    /// The head has begun: from now on it must be complete within `request_header_timeout`.
    fn start_head_timer(&self, head: &mut HeadRead) {
        if !head.started {
            head.started = true;
            head.deadline = Instant::now() + self.svc.settings.request_header_timeout;
        }
    }

    /// Parses the head in the buffer; when complete, checks it, routes it and writes the head
    /// for the server.
    fn prepare(&mut self) -> Parsed {
        let svc = self.svc;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(self.rbuf.filled()) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => {
                return Parsed::Refused(
                    Reject {
                        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        reason: "too_many_headers",
                    },
                    None,
                );
            }
            Err(_) => {
                return Parsed::Refused(
                    Reject {
                        status: StatusCode::BAD_REQUEST,
                        reason: "malformed_head",
                    },
                    None,
                );
            }
        };
        if head_len > svc.settings.max_header_size {
            let reject = head_too_large(self.rbuf.filled(), svc.settings.max_uri_length);
            return Parsed::Refused(reject, None);
        }
        self.requests += 1;
        let limits = HeadLimits {
            max_uri_length: svc.settings.max_uri_length,
            max_body_size: svc.settings.max_body_size,
        };
        let checked = head::check_request(&req, &limits);
        let mut record = svc.sink.wants_records().then(|| {
            let mut record = new_record(&svc.listener, svc.tls, self.facts.peer);
            record.tls_version = self.facts.tls_version.map(NegotiatedVersion::as_str);
            record.http_version = if req.version == Some(0) {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            };
            record.method = req.method.unwrap_or("-").to_string();
            Box::new(record)
        });
        let req_info = match checked {
            Ok(info) => info,
            Err(reject) => {
                if let Some(record) = &mut record {
                    let target = req.path.unwrap_or("");
                    record.path = match svc.settings.log_query {
                        true => target.to_string(),
                        false => target.split('?').next().unwrap_or("").to_string(),
                    };
                }
                self.rbuf.consume(head_len);
                return Parsed::Refused(reject, record);
            }
        };
        let host = req_info.host();
        if let Some(record) = &mut record {
            record.host = host.as_deref().map(str::to_owned);
            record.path = if svc.settings.log_query {
                req_info.origin_target().to_string()
            } else {
                req_info.path().to_string()
            };
        }
        let answer = |status, end, close| Action::Answer {
            status,
            end,
            close,
            location: None,
        };
        let has_body = req_info.framing != Framing::Empty;
        let refused = self
            .facts
            .refusal
            .or_else(|| svc.gate.admit_request().err());
        if let Some(refusal) = refused {
            let status = match refusal {
                Refusal::Acl => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let phase = if self.facts.refusal.is_some() {
                EndPhase::Accept
            } else {
                EndPhase::Request
            };
            let end = End::weir(EndHow::Policy, phase, refusal.reason());
            // A refused connection closes after its answer; a refused request does not.
            let close = self.facts.refusal.is_some() || has_body || !req_info.keep_alive;
            return ready(head_len, answer(status, end, close), record);
        }
        let (route, rule_rate) = svc.router.route_with_rate(host.as_deref(), req_info.path());
        let close_after_answer = has_body || !req_info.keep_alive;
        if rule_rate.is_some_and(|rate| !rate.admit()) {
            let end = End::weir(EndHow::Policy, EndPhase::Request, Refusal::RuleQps.reason());
            return ready(
                head_len,
                answer(StatusCode::SERVICE_UNAVAILABLE, end, close_after_answer),
                record,
            );
        }
        let group_index = match route {
            Route::Group(index) => index,
            Route::Default => svc.default_group,
            Route::Redirect(rule) => {
                let scheme = if svc.tls { "https" } else { "http" };
                let location =
                    redirect_location(rule, scheme, req_info.authority(), req_info.origin_target());
                let status =
                    StatusCode::from_u16(rule.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                let action = Action::Answer {
                    status,
                    end: End::weir(EndHow::Done, EndPhase::Request, "redirect"),
                    close: close_after_answer,
                    location: Some(location),
                };
                return ready(head_len, action, record);
            }
        };
        let Some(group) = svc.groups.get(group_index).cloned() else {
            let end = End::weir(EndHow::Error, EndPhase::Request, "no_group");
            return ready(
                head_len,
                answer(StatusCode::BAD_GATEWAY, end, close_after_answer),
                record,
            );
        };
        if let Some(record) = &mut record {
            record.group = Some(group.upstream.name().to_string());
        }
        let pinned = group.persist.as_ref().and_then(|persist| {
            persist
                .pinned_in(
                    req.headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
                        .map(|h| h.value),
                )
                .filter(|&server| group.eligible(server))
        });
        let upgrade = req_info.upgrade.then(|| {
            let websocket = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("upgrade")
                    && h.value.trim_ascii().eq_ignore_ascii_case(b"websocket")
            });
            if websocket { "websocket" } else { "tunnel" }
        });
        // Held until the response comes (the request may be sent again): a buffer of its own,
        // with room for weir's forwarding headers. (A pooled one is 16 KiB, and a burst of
        // exchanges waiting on their servers would each keep one.)
        let mut out = OutBuf::with_capacity(head_len + FORWARDING_ROOM);
        let ip = IpText::new(self.facts.peer.ip());
        let forwarded = Forwarded {
            ip: ip.as_str(),
            local_port: self.facts.local_port,
            tls: svc.tls,
        };
        head::write_request(
            &mut out,
            &req,
            &req_info,
            &forwarded,
            group.persist.as_ref(),
        );
        let outbound = Outbound {
            pinned,
            out,
            framing: req_info.framing,
            http10: req_info.http10,
            keep_alive: req_info.keep_alive,
            idempotent: req_info.idempotent(),
            head_method: req_info.method == "HEAD",
            expect_continue: req_info.expect_continue,
            upgrade,
            group,
        };
        ready(head_len, Action::Forward(outbound), record)
    }

    /// Runs one exchange: weir's own answer, or a round trip to a server.
    async fn exchange(&mut self, prepared: Prepared) -> Next {
        self.rbuf.consume(prepared.head_len);
        // The clock is read for the record's timings only when there is a record.
        let timed = prepared.record.is_some();
        let exchange = Exchange {
            record: prepared.record,
            started: timed.then(Instant::now),
            sent_at: None,
            bytes_in: 0,
            bytes_out: 0,
        };
        let outbound = match prepared.action {
            Action::Answer {
                status,
                end,
                close,
                location,
            } => {
                let close = close || self.closing();
                return self
                    .respond(exchange, status, end, close, location.as_deref())
                    .await;
            }
            Action::Forward(outbound) => outbound,
        };
        self.forward(exchange, outbound).await
    }

    /// Whether this connection ends after the current exchange regardless of the request.
    fn closing(&mut self) -> bool {
        self.watch.stopping() || self.requests >= self.svc.settings.max_requests_per_connection
    }

    /// Reads the start of the request body: all of it up to [`BUFFERED_BODY`], as long as it
    /// keeps coming within the head timeout. `Err` is the answer to a malformed or oversized
    /// body, or the client's end.
    async fn read_body_start(&mut self, outbound: &Outbound) -> Result<BodyStart, BodyFail> {
        let mut chunks = match outbound.framing {
            Framing::Chunked => Some(ChunkScanner::new(self.svc.settings.max_body_size)),
            _ => None,
        };
        let total = match outbound.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        if outbound.framing == Framing::Empty {
            return Ok(BodyStart {
                buffered: 0,
                complete: true,
                chunks,
                remaining: 0,
                streamed: 0,
            });
        }
        let mut scanned = 0;
        let mut sent_continue = false;
        let deadline = Instant::now() + self.svc.settings.request_header_timeout;
        loop {
            let have = self.rbuf.len();
            let (buffered, complete) = match &mut chunks {
                Some(scanner) => {
                    let bytes = &self.rbuf.filled()[scanned..];
                    let used = scanner.feed(bytes, |_| {}).map_err(BodyFail::Chunk)?;
                    scanned += used;
                    (scanned, scanner.is_done())
                }
                None => {
                    let buffered = (have as u64).min(total) as usize;
                    (buffered, buffered as u64 == total)
                }
            };
            if complete || buffered >= BUFFERED_BODY {
                return Ok(BodyStart {
                    buffered,
                    complete,
                    chunks,
                    remaining: total.saturating_sub(buffered as u64),
                    streamed: 0,
                });
            }
            // HTTP/1.0 clients never get a 1xx (RFC 9110 §10.1.1, §15.2).
            if outbound.expect_continue && !outbound.http10 && !sent_continue && buffered == 0 {
                sent_continue = true;
                if let Err(fail) = self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await {
                    return Err(match fail {
                        WriteFail::Io(how) => BodyFail::Client(how),
                        WriteFail::Timeout => BodyFail::Client(EndHow::Timeout),
                        WriteFail::Forced => BodyFail::Forced,
                    });
                }
            }
            let limit = scanned.max(BUFFERED_BODY) + BUF_SIZE;
            let read = self.rbuf.recv_from(&mut *self.client, limit);
            match within(&mut self.timer, &mut self.watch, deadline, false, read).await {
                Err(Interrupt::Stopped | Interrupt::Forced) => return Err(BodyFail::Forced),
                // Slow body: send what there is and stream the rest.
                Err(Interrupt::Timeout) => {
                    return Ok(BodyStart {
                        buffered,
                        complete: false,
                        chunks,
                        remaining: total.saturating_sub(buffered as u64),
                        streamed: 0,
                    });
                }
                Ok(Ok(0)) => return Err(BodyFail::Client(EndHow::Fin)),
                Ok(Err(err)) => return Err(BodyFail::Client(io_how(&err))),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends the request to a server (retrying where SPEC §4 allows), then streams the
    /// response back.
    async fn forward(&mut self, mut exchange: Exchange, mut outbound: Outbound) -> Next {
        let body = match self.read_body_start(&outbound).await {
            Ok(body) => body,
            Err(fail) => return self.body_failed(exchange, fail).await,
        };
        exchange.bytes_in = body.received();
        // The head and the buffered body go out in one write.
        outbound.out.put(&self.rbuf.filled()[..body.buffered]);
        self.rbuf.consume(body.buffered);
        let group = outbound.group.clone();
        let config = &group.upstream.config;
        let replayable = body.complete && outbound.idempotent;
        let mut tried: Vec<usize> = Vec::new();
        let mut pinned = outbound.pinned;
        let mut failures: u32 = 0;
        let mut stale_retry_used = false;
        // An upgrade gets a connection of its own.
        let upgrade = outbound.upgrade.is_some();
        let mut force_fresh = upgrade;
        let mut last_failure: Option<End> = None;
        let mut sbuf = Buf::new();
        let mut body = body;
        loop {
            let Some(server) = pinned
                .take()
                .or_else(|| group.upstream.pick_next(self.facts.peer.ip(), &tried))
            else {
                let end = last_failure.unwrap_or(End::weir(
                    EndHow::Error,
                    EndPhase::Connect,
                    "no_server",
                ));
                exchange.note(|r| r.retries = failures.saturating_sub(1));
                return self
                    .answer_failure(exchange, StatusCode::BAD_GATEWAY, end, &body)
                    .await;
            };
            let state = group.upstream.servers[server].clone();
            exchange.note(|r| {
                r.server = Some(state.name.to_string());
                r.server_addr = Some(state.address);
            });
            let connect_started = exchange.record.is_some().then(Instant::now);
            let pooled = if std::mem::replace(&mut force_fresh, upgrade) {
                None
            } else {
                group.h1_pool.checkout(server, &self.svc.tasks)
            };
            let reused = pooled.is_some();
            let mut stream = match pooled {
                Some(stream) => stream,
                None => match connect_one(&state, config).await {
                    Ok(stream) => stream,
                    Err(end) => {
                        tried.push(server);
                        failures += 1;
                        last_failure = Some(end);
                        if failures > config.retries {
                            exchange.note(|r| r.retries = failures - 1);
                            return self
                                .answer_failure(exchange, StatusCode::BAD_GATEWAY, end, &body)
                                .await;
                        }
                        continue;
                    }
                },
            };
            let connect_time = match connect_started {
                Some(started) if !reused => started.elapsed(),
                _ => Duration::ZERO,
            };
            exchange.note(|r| r.upstream_connect_time = Some(connect_time));
            let guard = state.open_connection();
            let sent_at = Instant::now();
            exchange.sent_at = Some(sent_at);
            let deadline = sent_at + config.request_timeout;
            let sent = self
                .send_request(
                    &stream,
                    outbound.out.bytes(),
                    &mut body,
                    &mut sbuf,
                    deadline,
                )
                .await;
            exchange.bytes_in = body.received();
            let early = match sent {
                Ok(early) => early,
                Err(SendFail::Client(how)) => {
                    close_server(stream, &self.svc.tasks);
                    let end = End::new(EndBy::Client, how, EndPhase::Request);
                    exchange.finish(&*self.svc.sink, end);
                    return Next::Gone;
                }
                Err(SendFail::Chunk(err)) => {
                    close_server(stream, &self.svc.tasks);
                    return self.body_failed(exchange, BodyFail::Chunk(err)).await;
                }
                Err(SendFail::Forced) => {
                    close_server(stream, &self.svc.tasks);
                    let end = End::weir(EndHow::Shutdown, EndPhase::Request, "shutdown");
                    exchange.finish(&*self.svc.sink, end);
                    return Next::Close;
                }
                Err(SendFail::Timeout) => {
                    close_server(stream, &self.svc.tasks);
                    let end = End::weir(EndHow::Timeout, EndPhase::Response, "request_timeout");
                    exchange.note(|r| r.retries = failures);
                    return self
                        .answer_failure(exchange, StatusCode::GATEWAY_TIMEOUT, end, &body)
                        .await;
                }
                Err(SendFail::Server(how)) => {
                    // The server closed or reset before any response byte: the stale
                    // keep-alive race when the connection was reused.
                    release_server(stream, how, &self.svc.tasks);
                    if reused && !stale_retry_used && replayable {
                        stale_retry_used = true;
                        failures += 1;
                        pinned = Some(server);
                        force_fresh = true;
                        continue;
                    }
                    let mut end = End::new(EndBy::Upstream, how, EndPhase::Response);
                    if reused {
                        end.reason = Some("reused_connection_closed");
                    }
                    exchange.note(|r| r.retries = failures);
                    return self
                        .answer_failure(exchange, StatusCode::BAD_GATEWAY, end, &body)
                        .await;
                }
            };
            exchange.note(|r| r.retries = failures);
            let next = self
                .relay_response(
                    &mut exchange,
                    &outbound,
                    &mut stream,
                    &mut sbuf,
                    deadline,
                    server,
                    early,
                )
                .await;
            return match next {
                Relayed::Done {
                    server_reusable,
                    keep_alive_hint,
                    client_next,
                    end,
                } => {
                    if server_reusable && sbuf.is_empty() {
                        group
                            .h1_pool
                            .checkin(server, stream, keep_alive_hint, &self.svc.tasks);
                    } else {
                        close_server(stream, &self.svc.tasks);
                    }
                    exchange.finish(&*self.svc.sink, end);
                    client_next
                }
                Relayed::Retry { how } => {
                    release_server(stream, how, &self.svc.tasks);
                    if reused && !stale_retry_used && replayable {
                        stale_retry_used = true;
                        failures += 1;
                        pinned = Some(server);
                        force_fresh = true;
                        sbuf = Buf::new();
                        continue;
                    }
                    let mut end = End::new(EndBy::Upstream, how, EndPhase::Response);
                    if reused {
                        end.reason = Some("reused_connection_closed");
                    }
                    exchange.note(|r| r.retries = failures);
                    self.answer_failure(exchange, StatusCode::BAD_GATEWAY, end, &body)
                        .await
                }
                Relayed::Switched => {
                    exchange.finish(
                        &*self.svc.sink,
                        End::new(EndBy::Upstream, EndHow::Done, EndPhase::Response),
                    );
                    Next::Tunnel(Box::new(tunnel::Tunnel {
                        server: stream,
                        state,
                        group: group.upstream.shared_name(),
                        protocol: outbound.upgrade.unwrap_or("tunnel"),
                        connect_time,
                        _guard: guard,
                    }))
                }
                Relayed::Answer { status, end } => {
                    close_server(stream, &self.svc.tasks);
                    self.answer_failure(exchange, status, end, &body).await
                }
                Relayed::Failed { end, client_next } => {
                    match end.by {
                        EndBy::Upstream => release_server(stream, end.how, &self.svc.tasks),
                        _ => close_server(stream, &self.svc.tasks),
                    }
                    exchange.finish(&*self.svc.sink, end);
                    client_next
                }
            };
        }
    }

    /// weir answers for a request it could not forward. The connection closes when the
    /// request body was not read to its end (or the request asked for it).
    async fn answer_failure(
        &mut self,
        exchange: Exchange,
        status: StatusCode,
        end: End,
        body: &BodyStart,
    ) -> Next {
        let close = !body.complete || self.closing();
        self.respond(exchange, status, end, close, None).await
    }

    /// Writes weir's own answer and the exchange's record; `close` adds `Connection: close`
    /// and ends the connection after it.
    ///
    /// The future is on the heap: weir's own answers are rare next to forwarded requests, and
    /// inline, the answer's buffer would be room in every exchange's future.
    fn respond<'s>(
        &'s mut self,
        mut exchange: Exchange,
        status: StatusCode,
        end: End,
        close: bool,
        location: Option<&'s str>,
    ) -> Pin<Box<impl Future<Output = Next> + 's>> {
        Box::pin(async move {
            exchange.note(|r| r.status = status.as_u16());
            let out = answer(status, close, location);
            let written = self.write_client(out.bytes()).await;
            exchange.finish(&*self.svc.sink, end);
            match written {
                Err(fail) => fail.next(),
                Ok(()) if close => Next::Close,
                Ok(()) => Next::KeepAlive,
            }
        })
    }

    /// A request body that could not be read: answered (400, 413) or the client is gone.
    async fn body_failed(&mut self, exchange: Exchange, fail: BodyFail) -> Next {
        let (status, end) = match fail {
            BodyFail::Chunk(ChunkError::Malformed) => {
                (StatusCode::BAD_REQUEST, End::client_error("bad_chunk"))
            }
            BodyFail::Chunk(ChunkError::TooLarge) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                End::client_error("body_too_large"),
            ),
            BodyFail::Client(how) => {
                exchange.finish(
                    &*self.svc.sink,
                    End::new(EndBy::Client, how, EndPhase::Request),
                );
                return Next::Gone;
            }
            BodyFail::Forced => {
                let end = End::weir(EndHow::Shutdown, EndPhase::Request, "shutdown");
                exchange.finish(&*self.svc.sink, end);
                return Next::Close;
            }
        };
        self.respond(exchange, status, end, true, None).await
    }

    /// Writes the head and buffered body, then streams the rest of the body from the client.
    /// Watches the server while doing so: a server that answers before the body is complete
    /// stops the upload (`Ok(true)`; the response bytes are in `sbuf`).
    async fn send_request(
        &mut self,
        server: &TcpStream,
        first: &[u8],
        body: &mut BodyStart,
        sbuf: &mut Buf,
        deadline: Instant,
    ) -> Result<bool, SendFail> {
        if write_server_bytes(
            server,
            first,
            sbuf,
            deadline,
            &mut self.timer,
            &mut self.watch,
        )
        .await?
        {
            return Ok(true);
        }
        if body.complete {
            return Ok(false);
        }
        // Stream the rest: each read from the client goes to the server as it is.
        let idle = self.svc.idle_timeout;
        loop {
            let have = self.rbuf.len();
            if have > 0 {
                let take = match &mut body.chunks {
                    Some(scanner) => {
                        let used = scanner
                            .feed(self.rbuf.filled(), |_| {})
                            .map_err(SendFail::Chunk)?;
                        if scanner.is_done() {
                            body.complete = true;
                        }
                        used
                    }
                    None => {
                        let take = (have as u64).min(body.remaining) as usize;
                        body.remaining -= take as u64;
                        body.streamed += take as u64;
                        if body.remaining == 0 {
                            body.complete = true;
                        }
                        take
                    }
                };
                let bytes = &self.rbuf.filled()[..take];
                // The body's own progress keeps the exchange alive.
                let write_deadline = Instant::now() + idle;
                let early = write_server_bytes(
                    server,
                    bytes,
                    sbuf,
                    write_deadline,
                    &mut self.timer,
                    &mut self.watch,
                )
                .await?;
                self.rbuf.consume(take);
                if early {
                    return Ok(true);
                }
                if body.complete {
                    return Ok(false);
                }
            }
            let read_deadline = Instant::now() + idle;
            let (client, rbuf) = (&mut *self.client, &mut self.rbuf);
            let step = std::pin::pin!(async {
                tokio::select! {
                    biased;
                    ready = server.readable() => Step::Server(ready.is_ok()),
                    read = rbuf.recv_from(client, BODY_CHUNK) => Step::Client(read),
                }
            });
            match within(&mut self.timer, &mut self.watch, read_deadline, false, step).await {
                Err(Interrupt::Timeout) => return Err(SendFail::Client(EndHow::Timeout)),
                Err(_) => return Err(SendFail::Forced),
                Ok(Step::Server(ready)) => {
                    if ready && poke_server(server, sbuf)? {
                        return Ok(true);
                    }
                }
                Ok(Step::Client(Ok(0))) => return Err(SendFail::Client(EndHow::Fin)),
                Ok(Step::Client(Err(err))) => {
                    return Err(SendFail::Client(io_how(&err)));
                }
                Ok(Step::Client(Ok(_))) => {}
            }
        }
    }

    /// Reads the response head (and any 1xx before it), writes the client's head and streams
    /// the body.
    #[allow(clippy::too_many_arguments)]
    async fn relay_response(
        &mut self,
        exchange: &mut Exchange,
        outbound: &Outbound,
        server: &mut TcpStream,
        sbuf: &mut Buf,
        deadline: Instant,
        server_index: usize,
        early: bool,
    ) -> Relayed {
        let mut out = OutBuf::new();
        let mut got_bytes = !sbuf.is_empty();
        loop {
            // Parse what we have.
            if !sbuf.is_empty() {
                match self.response_head(sbuf, outbound, &mut out, exchange, server_index, early) {
                    RespParse::Partial => {
                        if sbuf.len() >= MAX_RESPONSE_HEAD {
                            return Relayed::Answer {
                                status: StatusCode::BAD_GATEWAY,
                                end: upstream_error("response_head_too_large"),
                            };
                        }
                    }
                    RespParse::Invalid(reason) => {
                        return Relayed::Answer {
                            status: StatusCode::BAD_GATEWAY,
                            end: upstream_error(reason),
                        };
                    }
                    RespParse::Informational { len } => {
                        sbuf.consume(len);
                        if !outbound.http10
                            && let Err(fail) = self.write_client(out.bytes()).await
                        {
                            return Relayed::Failed {
                                end: fail.end(EndPhase::Response),
                                client_next: fail.next(),
                            };
                        }
                        out.clear();
                        continue;
                    }
                    RespParse::Switch { len } => {
                        sbuf.consume(len);
                        out.put(sbuf.filled());
                        sbuf.consume(sbuf.len());
                        if let Err(fail) = self.write_client(out.bytes()).await {
                            return Relayed::Failed {
                                end: fail.end(EndPhase::Response),
                                client_next: fail.next(),
                            };
                        }
                        return Relayed::Switched;
                    }
                    RespParse::Final(fin) => {
                        if exchange.record.is_some() {
                            let header_time = exchange.sent_at.map(|t| t.elapsed());
                            exchange.note(|r| r.upstream_header_time = header_time);
                        }
                        return self.relay_body(exchange, server, sbuf, out, fin).await;
                    }
                }
            }
            let read = sbuf.read_socket(server, MAX_RESPONSE_HEAD);
            match within(&mut self.timer, &mut self.watch, deadline, false, read).await {
                Err(Interrupt::Stopped | Interrupt::Forced) => {
                    return Relayed::Failed {
                        end: End::weir(EndHow::Shutdown, EndPhase::Response, "shutdown"),
                        client_next: Next::Close,
                    };
                }
                Err(Interrupt::Timeout) => {
                    return Relayed::Answer {
                        status: StatusCode::GATEWAY_TIMEOUT,
                        end: End::weir(EndHow::Timeout, EndPhase::Response, "request_timeout"),
                    };
                }
                Ok(Ok(0)) if !got_bytes => return Relayed::Retry { how: EndHow::Fin },
                Ok(Err(err)) if !got_bytes => {
                    return Relayed::Retry { how: io_how(&err) };
                }
                Ok(Ok(0)) => {
                    return Relayed::Answer {
                        status: StatusCode::BAD_GATEWAY,
                        end: End::new(EndBy::Upstream, EndHow::Fin, EndPhase::Response),
                    };
                }
                Ok(Err(err)) => {
                    return Relayed::Answer {
                        status: StatusCode::BAD_GATEWAY,
                        end: End::new(EndBy::Upstream, io_how(&err), EndPhase::Response),
                    };
                }
                Ok(Ok(_)) => got_bytes = true,
            }
        }
    }

    /// Parses a response head in `sbuf`; writes what the client gets into `out`.
    fn response_head(
        &mut self,
        sbuf: &Buf,
        outbound: &Outbound,
        out: &mut OutBuf,
        exchange: &mut Exchange,
        server: usize,
        early: bool,
    ) -> RespParse {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(sbuf.filled()) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return RespParse::Partial,
            Err(_) => return RespParse::Invalid("invalid_response"),
        };
        let info = match head::check_response(&resp, outbound.head_method) {
            Ok(info) => info,
            Err(reason) => return RespParse::Invalid(reason),
        };
        let persist = outbound.group.persist.as_ref().map(|p| (p, server));
        if info.status == 101 && outbound.upgrade.is_some() {
            let status = info.status;
            exchange.note(|r| {
                r.status = status;
                r.upstream_status = Some(status);
            });
            head::write_response(out, &resp, false, ClientConnection::Upgrade, persist);
            return RespParse::Switch { len };
        }
        if (100..200).contains(&info.status) {
            if info.status == 101 {
                return RespParse::Invalid("unexpected_switching_protocols");
            }
            head::write_response(out, &resp, false, ClientConnection::KeepAlive, None);
            return RespParse::Informational { len };
        }
        let status = info.status;
        exchange.note(|r| {
            r.status = status;
            r.upstream_status = Some(status);
        });
        let dechunk = info.framing == Framing::Chunked && outbound.http10;
        let close_client = !outbound.keep_alive
            || early
            || dechunk
            || info.framing == Framing::UntilClose
            || self.closing();
        let connection = match (close_client, outbound.http10) {
            (true, _) => ClientConnection::Close,
            (false, true) => ClientConnection::KeepAlive10,
            (false, false) => ClientConnection::KeepAlive,
        };
        let chunked_out = info.framing == Framing::Chunked && !dechunk;
        head::write_response(out, &resp, chunked_out, connection, persist);
        RespParse::Final(FinalHead {
            len,
            framing: info.framing,
            dechunk,
            server_reusable: info.reusable && !early && outbound.upgrade.is_none(),
            keep_alive_hint: info.keep_alive_hint,
            client_next: match (close_client, early || self.closing()) {
                (false, _) => Next::KeepAlive,
                // The client asked, and left nothing half-sent.
                (true, false) if !outbound.keep_alive => Next::CloseQuiet,
                (true, _) => Next::Close,
            },
        })
    }

    /// Sends the client its head and streams the body from the server.
    async fn relay_body(
        &mut self,
        exchange: &mut Exchange,
        server: &mut TcpStream,
        sbuf: &mut Buf,
        mut out: OutBuf,
        fin: FinalHead,
    ) -> Relayed {
        sbuf.consume(fin.len);
        let idle = self.svc.idle_timeout;
        let mut remaining = match fin.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut chunks = (fin.framing == Framing::Chunked).then(|| ChunkScanner::new(u64::MAX));
        let mut done = matches!(fin.framing, Framing::Empty);
        let mut first = true;
        loop {
            // Move what the buffer holds into `out` (the first time after the head).
            if !sbuf.is_empty() && !done {
                let bytes = sbuf.filled();
                let used = match (&mut chunks, fin.dechunk) {
                    (Some(scanner), dechunk) => {
                        let mut data = 0u64;
                        let used = match scanner.feed(bytes, |range| {
                            data += range.len() as u64;
                            if dechunk {
                                out.put(&bytes[range]);
                            }
                        }) {
                            Ok(used) => used,
                            Err(_) => {
                                return Relayed::Failed {
                                    end: upstream_error("bad_chunk"),
                                    client_next: Next::Close,
                                };
                            }
                        };
                        if !dechunk {
                            out.put(&bytes[..used]);
                        }
                        exchange.bytes_out += data;
                        done = scanner.is_done();
                        used
                    }
                    (None, _) if fin.framing == Framing::UntilClose => {
                        out.put(bytes);
                        exchange.bytes_out += bytes.len() as u64;
                        bytes.len()
                    }
                    (None, _) => {
                        let take = (bytes.len() as u64).min(remaining) as usize;
                        out.put(&bytes[..take]);
                        remaining -= take as u64;
                        exchange.bytes_out += take as u64;
                        done = remaining == 0;
                        take
                    }
                };
                sbuf.consume(used);
            }
            if !out.bytes().is_empty() || first {
                first = false;
                if let Err(fail) = self.write_client(out.bytes()).await {
                    return Relayed::Failed {
                        end: fail.end(EndPhase::Response),
                        client_next: fail.next(),
                    };
                }
                out.clear();
            }
            if done {
                if fin.dechunk {
                    // Nothing to flush: weir's own framing ended with the data.
                }
                return Relayed::Done {
                    server_reusable: fin.server_reusable,
                    keep_alive_hint: fin.keep_alive_hint,
                    client_next: fin.client_next,
                    end: End::new(EndBy::Upstream, EndHow::Done, EndPhase::Response),
                };
            }
            let read = sbuf.read_socket(server, BODY_CHUNK);
            let deadline = Instant::now() + idle;
            match within(&mut self.timer, &mut self.watch, deadline, false, read).await {
                Err(Interrupt::Stopped | Interrupt::Forced) => {
                    return Relayed::Failed {
                        end: End::weir(EndHow::Shutdown, EndPhase::Response, "shutdown"),
                        client_next: Next::Close,
                    };
                }
                Err(Interrupt::Timeout) => {
                    return Relayed::Failed {
                        end: End::weir(EndHow::Timeout, EndPhase::Response, "idle_timeout"),
                        client_next: Next::Close,
                    };
                }
                Ok(Ok(0)) if fin.framing == Framing::UntilClose => {
                    return Relayed::Done {
                        server_reusable: false,
                        keep_alive_hint: None,
                        client_next: Next::Close,
                        end: End::new(EndBy::Upstream, EndHow::Done, EndPhase::Response),
                    };
                }
                Ok(Ok(0)) => {
                    return Relayed::Failed {
                        end: End::new(EndBy::Upstream, EndHow::Fin, EndPhase::Response),
                        client_next: Next::Close,
                    };
                }
                Ok(Err(err)) => {
                    return Relayed::Failed {
                        end: End::new(EndBy::Upstream, io_how(&err), EndPhase::Response),
                        client_next: Next::Close,
                    };
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Writes to the client and flushes (TLS), within the listener's `idle_timeout`.
    async fn write_client(&mut self, bytes: &[u8]) -> Result<(), WriteFail> {
        let client = &mut *self.client;
        let write = std::pin::pin!(async {
            let mut rest = bytes;
            while !rest.is_empty() {
                match poll_fn(|cx| client.poll_send(cx, rest)).await? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => rest = &rest[n..],
                }
            }
            client.flush().await
        });
        let deadline = Instant::now() + self.svc.idle_timeout;
        match within(&mut self.timer, &mut self.watch, deadline, false, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(WriteFail::Io(io_how(&err))),
            Err(Interrupt::Timeout) => Err(WriteFail::Timeout),
            Err(_) => Err(WriteFail::Forced),
        }
    }

    /// Records a request refused before it could be read.
    fn log_rejected(&self, status: Option<StatusCode>, end: End) {
        let facts = self.facts;
        self.svc
            .log_rejected(facts.peer, facts.tls_version, status, end);
    }
}

/// What happened first while a body streamed to the server.
enum Step {
    /// The server became readable (it may be answering early).
    Server(bool),
    /// A read from the client.
    Client(io::Result<usize>),
}

/// Why sending a request stopped.
enum SendFail {
    /// The client's side failed (how), while weir read the body.
    Client(EndHow),
    /// The chunked body was malformed.
    Chunk(ChunkError),
    /// The server closed or reset before any response byte.
    Server(EndHow),
    /// `request_timeout` ran out while sending.
    Timeout,
    Forced,
}

/// Why reading the start of a body stopped.
enum BodyFail {
    Chunk(ChunkError),
    Client(EndHow),
    Forced,
}

/// Why a write to the client failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFail {
    /// The client's side failed (reset, error).
    Io(EndHow),
    /// No progress for `idle_timeout`.
    Timeout,
    /// The shutdown grace is over.
    Forced,
}

impl WriteFail {
    /// The end it makes of the exchange, in `phase`.
    fn end(self, phase: EndPhase) -> End {
        match self {
            WriteFail::Io(how) => End::new(EndBy::Client, how, phase),
            WriteFail::Timeout => End::weir(EndHow::Timeout, phase, "idle_timeout"),
            WriteFail::Forced => End::weir(EndHow::Shutdown, phase, "shutdown"),
        }
    }

    /// What the client connection can still do.
    fn next(self) -> Next {
        match self {
            WriteFail::Forced => Next::Close,
            _ => Next::Gone,
        }
    }
}

/// The response head, ready to go.
struct FinalHead {
    len: usize,
    framing: Framing,
    dechunk: bool,
    server_reusable: bool,
    keep_alive_hint: Option<Duration>,
    client_next: Next,
}

enum RespParse {
    Partial,
    Invalid(&'static str),
    Informational {
        len: usize,
    },
    /// `101 Switching Protocols` to an upgrade request.
    Switch {
        len: usize,
    },
    Final(FinalHead),
}

enum Relayed {
    /// The response went out whole.
    Done {
        server_reusable: bool,
        keep_alive_hint: Option<Duration>,
        client_next: Next,
        end: End,
    },
    /// The server closed before any response byte: maybe the stale keep-alive race.
    Retry { how: EndHow },
    /// The server switched protocols and the client has its 101.
    Switched,
    /// No response went out: weir answers.
    Answer { status: StatusCode, end: End },
    /// The response broke off after its head went out.
    Failed { end: End, client_next: Next },
}

/// Writes `bytes` to the server. When the server's buffer is full, waits for it to drain —
/// and if the server has started answering meanwhile, stops (`Ok(true)`) with the answer's
/// first bytes in `sbuf`.
///
/// Small writes (a request head, a short body) join the worker's batch of sends (see
/// [`crate::net::batch`]): weir is then not preempted by each server it wakes.
async fn write_server_bytes(
    server: &TcpStream,
    mut bytes: &[u8],
    sbuf: &mut Buf,
    deadline: Instant,
    timer: &mut Pin<&mut Sleep>,
    watch: &mut Watch,
) -> Result<bool, SendFail> {
    let mut unsent = Vec::new();
    if let Some(mut ticket) = batch::queue(server.as_raw_fd(), bytes) {
        // A flush comes when the worker next goes idle, or after a few dozen more sends.
        poll_fn(|cx| ticket.poll(cx, &mut unsent))
            .await
            .map_err(|err| SendFail::Server(io_how(&err)))?;
        bytes = &unsent;
    }
    while !bytes.is_empty() {
        match crate::net::try_send(server, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let interest = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
                let ready = std::pin::pin!(server.ready(interest));
                let ready = within(timer, watch, deadline, false, ready).await;
                match ready {
                    Err(Interrupt::Timeout) => return Err(SendFail::Timeout),
                    Err(_) => return Err(SendFail::Forced),
                    Ok(Err(err)) => return Err(SendFail::Server(io_how(&err))),
                    Ok(Ok(ready)) => {
                        if ready.is_readable() && poke_server(server, sbuf)? {
                            return Ok(true);
                        }
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(SendFail::Server(io_how(&err))),
        }
    }
    Ok(false)
}

/// Reads what the server sent while weir was still sending: `Ok(true)` when it is the start
/// of a response.
fn poke_server(server: &TcpStream, sbuf: &mut Buf) -> Result<bool, SendFail> {
    match sbuf.try_read_from(server, MAX_RESPONSE_HEAD) {
        Ok(0) => Err(SendFail::Server(EndHow::Fin)),
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(err) => Err(SendFail::Server(io_how(&err))),
    }
}

fn ready(head_len: usize, action: Action, record: Option<Box<HttpRecord>>) -> Parsed {
    Parsed::Ready(Prepared {
        head_len,
        action,
        record,
    })
}

/// The refusal for a head that outgrew `max_header_size`: 414 when the request line alone is
/// longer than `max_uri_length`, else 431.
fn head_too_large(bytes: &[u8], max_uri_length: usize) -> Reject {
    let line_end = bytes.iter().position(|&b| b == b'\n');
    if line_end.is_none_or(|end| end > max_uri_length) && bytes.len() > max_uri_length {
        return Reject {
            status: StatusCode::URI_TOO_LONG,
            reason: "uri_too_long",
        };
    }
    Reject {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason: "header_too_large",
    }
}

/// weir's own answer, ready to write.
fn answer(status: StatusCode, close: bool, location: Option<&str>) -> OutBuf {
    let mut out = OutBuf::new();
    write_answer(&mut out, status, close, location);
    out
}

/// A server's protocol error. Reasons are for weir's own ends, so the record has none; the
/// debug log says what was wrong.
fn upstream_error(what: &'static str) -> End {
    debug!(what, "invalid response from server");
    End::new(EndBy::Upstream, EndHow::Error, EndPhase::Response)
}

/// How an I/O error ended a side: a reset, or another error.
fn io_how(err: &io::Error) -> EndHow {
    if is_reset(err) {
        EndHow::Rst
    } else {
        EndHow::Error
    }
}

/// Closes a server connection that cannot be reused: FIN after draining, on the tracker.
fn close_server(stream: TcpStream, tasks: &tokio_util::task::TaskTracker) {
    tasks.spawn(crate::net::close::close_gracefully(stream, CLOSE_LINGER));
}

/// Lets go of a server connection the server ended (`how`): a reset one is dropped (nothing
/// is left to say, and its buffers are gone); any other is closed with FIN after draining, so
/// no unread byte turns the close into a reset.
fn release_server(stream: TcpStream, how: EndHow, tasks: &tokio_util::task::TaskTracker) {
    debug!(?how, "server connection ended");
    match how {
        EndHow::Rst => drop(stream),
        _ => close_server(stream, tasks),
    }
}
