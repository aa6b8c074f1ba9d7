//! Connecting to a group: pick, connect under `connect_timeout`, and on refusal or timeout try
//! another server, never the same one twice in a row (SPEC §3, §4).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::time::error::Elapsed;
use tracing::debug;

use super::{ActiveGuard, ServerState, Upstream};
use crate::end::{End, EndBy, EndHow, EndPhase};
use crate::net::sockopt;

/// A connection to a server, counted against it while held.
pub struct Connected {
    /// The connected socket (TCP_NODELAY set, keep-alive as configured).
    pub stream: TcpStream,
    /// Index of the server in [`Upstream::servers`].
    pub server: usize,
    /// Time the successful connect took.
    pub connect_time: Duration,
    /// Failed attempts before this one.
    pub retries: u32,
    /// Keeps the server's active count while the connection lives.
    pub guard: ActiveGuard,
}

/// Why connecting failed, as an end record, with the attempts made.
pub struct ConnectFailed {
    /// The end to record.
    pub end: End,
    /// Failed attempts (the first try counts as a retry only if another followed).
    pub retries: u32,
    /// The server last tried, if any.
    pub last_server: Option<usize>,
}

/// Connects to a server of `upstream` for `client`, with up to `retries` further tries.
///
/// Every `tcp` connection waits in this future before it is forwarded, so it is kept small:
/// not an `async fn` (which would keep its arguments twice), each attempt in [`connect_one`].
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
pub fn connect(
    upstream: &Upstream,
    client: IpAddr,
) -> impl Future<Output = Result<Connected, ConnectFailed>> + Send + '_ {
    async move {
        let config = &upstream.config;
        let mut tried: Vec<usize> = Vec::new();
        let mut last_failure: Option<(usize, End)> = None;
        for attempt in 0..=config.retries {
            let Some(index) = upstream.pick_next(client, &tried) else {
                break;
            };
            tried.push(index);
            let server = &upstream.servers[index];
            let guard = server.open_connection();
            let started = Instant::now();
            let end = match connect_one(server, config).await {
                Ok(stream) => {
                    return Ok(Connected {
                        stream,
                        server: index,
                        connect_time: started.elapsed(),
                        retries: attempt,
                        guard,
                    });
                }
                Err(end) => end,
            };
            debug!(group = %config.name, server = %server.name, how = %end.how, "connect failed");
            last_failure = Some((index, end));
        }
        let retries = tried.len().saturating_sub(1) as u32;
        Err(match last_failure {
            Some((index, end)) => ConnectFailed {
                end,
                retries,
                last_server: Some(index),
            },
            None => ConnectFailed {
                end: End::weir(EndHow::Error, EndPhase::Connect, "no_server"),
                retries,
                last_server: None,
            },
        })
    }
}

/// Connects to one server of a group: a socket with TCP_NODELAY (and keep-alive as
/// configured), connected within the group's connect timeout, or the end record of the
/// failure, counted in the server's `connect_failures`.
///
/// Not an `async fn`, which would keep its arguments twice: every `tcp` connection and every
/// new HTTP/1 server connection waits in this future.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
pub(crate) fn connect_one<'a>(
    server: &'a ServerState,
    config: &'a weir_config::Group,
) -> impl Future<Output = Result<TcpStream, End>> + Send + 'a {
    async move {
        let failed = |end: End| {
            server
                .connect_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            end
        };
        let stream = match start_connect(server.address, config.tcp_keepalive.as_ref()) {
            Ok(stream) => stream,
            Err(err) => return Err(failed(connect_error_end(&err))),
        };
        let ready =
            tokio::time::timeout(config.connect_timeout, stream.ready(Interest::WRITABLE)).await;
        handshake_outcome(&stream, ready).map_err(failed)?;
        Ok(stream)
    }
}

/// Starts a non-blocking connect: the socket, with TCP_NODELAY and keep-alive as configured,
/// registered with the runtime, its handshake under way.
fn start_connect(
    addr: SocketAddr,
    keepalive: Option<&weir_config::TcpKeepalive>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(keepalive) = keepalive {
        sockopt::set_keepalive(&socket, keepalive)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    TcpStream::from_std(socket.into())
}

/// How a started connect ended, from the socket's writability (or the timeout). The outcome
/// is read from SO_ERROR only when the readiness says the connect failed: a failed connect
/// leaves the socket closed, which epoll reports as a hang-up (with the error), while a
/// completed handshake is plain writability. So the common case costs no getsockopt(2),
/// which tokio's `TcpSocket::connect` always makes.
fn handshake_outcome(
    stream: &TcpStream,
    ready: Result<io::Result<Ready>, Elapsed>,
) -> Result<(), End> {
    let ready = match ready {
        Ok(Ok(ready)) => ready,
        Ok(Err(err)) => return Err(connect_error_end(&err)),
        Err(_) => {
            return Err(End::weir(
                EndHow::Timeout,
                EndPhase::Connect,
                "connect_timeout",
            ));
        }
    };
    if ready.is_write_closed() {
        match stream.take_error() {
            Ok(Some(err)) | Err(err) => return Err(connect_error_end(&err)),
            Ok(None) => {}
        }
    }
    Ok(())
}

/// Maps a connect error to an end: a refusal is the server's answer; anything else is an error
/// on the way to it.
fn connect_error_end(err: &io::Error) -> End {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            End::new(EndBy::Upstream, EndHow::Refused, EndPhase::Connect)
        }
        io::ErrorKind::ConnectionReset => End::new(EndBy::Upstream, EndHow::Rst, EndPhase::Connect),
        io::ErrorKind::TimedOut => End::weir(EndHow::Timeout, EndPhase::Connect, "connect_timeout"),
        _ => End::new(EndBy::Upstream, EndHow::Error, EndPhase::Connect),
    }
}
