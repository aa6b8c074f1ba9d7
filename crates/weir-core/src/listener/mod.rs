//! Listening sockets and the accept loop.
//!
//! The loop logs and survives accept errors (EMFILE included: it backs off instead of
//! spinning), runs one task per connection, and on stop drains the kernel's accept queue before
//! closing the socket — closing a listener with queued connections would make the kernel reset
//! them.

pub mod signal;

pub use signal::Signal;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span, warn};
use weir_config::TcpKeepalive;

use crate::http::conn::{ConnTask, HttpEntry};
use crate::l4::tcp::TcpService;
use crate::limits::Gate;
use crate::net::sockopt;

/// How long the accept loop pauses after running out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a TCP listening socket (SO_REUSEADDR, IPv6-only for IPv6 addresses), with the
/// options every accepted socket should have: TCP_NODELAY, and keep-alive when given. Linux
/// copies them to each accepted socket, so they cost one setsockopt(2) per listener instead
/// of one per connection.
///
/// With `reuse_port`, several sockets share the address (one per worker) and the kernel
/// spreads new connections across them.
pub fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    keepalive: Option<&TcpKeepalive>,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = listening_socket(addr)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    if let Some(keepalive) = keepalive {
        sockopt::set_keepalive(&socket, keepalive)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Fails as [`bind_tcp`] would without SO_REUSEPORT when another socket listens on `addr`.
/// The probe only binds, never listens, so no connection can land on it.
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    listening_socket(addr)?.bind(&addr.into())
}

/// A TCP socket for a listener on `addr`: SO_REUSEADDR, IPv6-only for IPv6 addresses.
fn listening_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Tokens and tracker a listener's connections share with the runtime.
#[derive(Clone)]
pub struct Lifecycle {
    /// Cancelled when weir stops accepting (SIGTERM, or the listener removed).
    pub stop_accepting: CancellationToken,
    /// Cancelled when the shutdown grace has run out: open connections close now.
    pub force_close: CancellationToken,
    /// Tracks every connection task.
    pub connections: TaskTracker,
    /// The same shutdown, for connections that check it on every request.
    pub signal: Arc<Signal>,
}

/// What a listener does with each connection.
#[derive(Clone)]
pub enum Service {
    /// Layer-4 forwarding.
    Tcp(Arc<TcpService>),
    /// HTTP or HTTPS.
    Http(Arc<HttpEntry>),
}

impl Service {
    fn name(&self) -> &str {
        match self {
            Service::Tcp(tcp) => &tcp.listener,
            Service::Http(http) => &http.service.listener,
        }
    }
}

/// Accepts connections until `stop_accepting`, then drains the accept queue and returns.
pub async fn accept_loop(
    listener: TcpListener,
    service: Service,
    gate: Arc<Gate>,
    life: Lifecycle,
) {
    // Every connection's local port is the listener's.
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        tokio::select! {
            biased;
            _ = life.stop_accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&service, &gate, &life, stream, peer, port),
                Err(err) => on_accept_error(service.name(), err).await,
            },
        }
    }
    // Connections already in the kernel's queue were accepted by the kernel on our behalf:
    // serve them rather than let close() reset them.
    loop {
        match try_accept(&listener) {
            Some(Ok((stream, peer))) => {
                spawn_connection(&service, &gate, &life, stream, peer, port)
            }
            Some(Err(err)) if is_resource_error(&err) => break,
            Some(Err(_)) => continue,
            None => break,
        }
    }
}

/// Spawns a connection's task, inside a span when debug logging is on (a span entered on
/// every poll costs even when nobody looks).
fn spawn_traced<F>(life: &Lifecycle, service: &Service, peer: SocketAddr, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if tracing::enabled!(tracing::Level::DEBUG) {
        let span = debug_span!("conn", listener = %service.name(), %peer);
        life.connections.spawn(task.instrument(span));
    } else {
        life.connections.spawn(task);
    }
}

fn spawn_connection(
    service: &Service,
    gate: &Arc<Gate>,
    life: &Lifecycle,
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
) {
    let admitted = gate.admit_connection(peer.ip());
    match service {
        Service::Tcp(tcp) => {
            let task = tcp.clone().serve(stream, peer, &life.signal, admitted);
            spawn_traced(life, service, peer, task);
        }
        // Plain and https connections are tasks of their own kind, each of its own size.
        Service::Http(http) => match http.clone().serve(stream, peer, port, life, admitted) {
            ConnTask::Plain(plain) => spawn_traced(life, service, peer, plain),
            ConnTask::Tls(tls) => spawn_traced(life, service, peer, tls),
        },
    }
}

fn is_resource_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn on_accept_error(listener: &str, err: io::Error) {
    if is_resource_error(&err) {
        warn!(listener, %err, "accept failed: out of resources; pausing accepts briefly");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    } else {
        // ECONNABORTED and friends concern one connection that is already gone.
        debug!(listener, %err, "accept failed");
    }
}

/// Accepts one connection if one is queued, without waiting.
fn try_accept(listener: &TcpListener) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match listener.poll_accept(&mut cx) {
        std::task::Poll::Ready(accepted) => Some(accepted),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use socket2::SockRef;

    /// weir sets TCP_NODELAY and keep-alive on listening sockets only: this holds only while
    /// the kernel copies them to accepted sockets.
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_options() {
        let keepalive = TcpKeepalive {
            idle: Duration::from_secs(42),
            interval: Duration::from_secs(7),
            count: 5,
        };
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener =
            TcpListener::from_std(bind_tcp(addr, 16, Some(&keepalive), false).unwrap()).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), keepalive.idle);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), keepalive.interval);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), keepalive.count);
    }
}
