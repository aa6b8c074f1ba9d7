//! Keep-alive connections to the servers of a group for HTTP/2 clients' requests (HTTP/1.1,
//! hyper's client; the HTTP/1 engine pools raw sockets in [`super::h1::pool`]).
//!
//! Each server has a stack of idle connections (most recently used first: a warm
//! connection is the least likely to be closed by the server); a full stack
//! (`pool.max_idle_per_server`) drops its oldest to take a newer one. A connection is idle for at
//! most its own idle timeout: the group's `pool.idle_timeout`, lowered below the server's
//! `Keep-Alive: timeout=N` hint when it sends one, so weir stops using a connection before the
//! server closes it — the stale keep-alive race. Expired connections are dropped at checkout
//! and by a periodic sweep; dropping one lets its driver task close it with FIN after draining.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::body::ReqBody;
use crate::l4::forward::CLOSE_LINGER;
use crate::net::batched::BatchedStream;
use crate::net::close::close_gracefully;

/// A connection to a server: the handle to send requests on, and a token its driver cancels
/// when the connection is gone.
pub struct Sender {
    /// Sends requests.
    pub send: http1::SendRequest<ReqBody>,
    /// Cancelled when the connection has ended (the server closed it, or weir dropped it).
    pub closed: CancellationToken,
}

impl Sender {
    fn is_closed(&self) -> bool {
        self.send.is_closed() || self.closed.is_cancelled()
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
    timeout: Duration,
}

/// The pool of one group: a stack of idle connections per server.
pub struct GroupPool {
    servers: Vec<Mutex<VecDeque<Idle>>>,
    idle_timeout: Duration,
    max_idle: usize,
}

impl GroupPool {
    /// An empty pool for `servers` servers.
    pub fn new(servers: usize, config: &weir_config::Pool) -> Self {
        GroupPool {
            servers: (0..servers).map(|_| Mutex::new(VecDeque::new())).collect(),
            idle_timeout: config.idle_timeout,
            max_idle: config.max_idle_per_server,
        }
    }

    /// An idle connection to `server` that is still open and within its idle time.
    pub fn checkout(&self, server: usize) -> Option<Sender> {
        let slot = self.servers.get(server)?;
        let now = Instant::now();
        let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop_back() {
            if conn.sender.is_closed() || now.duration_since(conn.since) >= conn.timeout {
                continue; // dropped: its driver closes it
            }
            if conn.sender.send.is_ready() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Returns a connection after a complete exchange. `keep_alive_hint` is the server's
    /// `Keep-Alive: timeout=N`, if it sent one.
    pub fn checkin(&self, server: usize, sender: Sender, keep_alive_hint: Option<Duration>) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let timeout = idle_timeout(self.idle_timeout, keep_alive_hint);
        if timeout.is_zero() {
            return;
        }
        let Some(slot) = self.servers.get(server) else {
            return;
        };
        let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            // Keep the warmest: drop the oldest.
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
            timeout,
        });
    }

    /// Drops connections past their idle time (their drivers close them with FIN).
    pub fn sweep(&self) {
        let now = Instant::now();
        for slot in &self.servers {
            let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < c.timeout);
        }
    }

    /// Drops every idle connection (shutdown).
    pub fn clear(&self) {
        for slot in &self.servers {
            slot.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// The idle time of one connection: the pool's, kept below the server's keep-alive timeout
/// with a margin (a quarter of it, at most a second) for the request already on its way.
pub fn idle_timeout(pool: Duration, hint: Option<Duration>) -> Duration {
    match hint {
        Some(hint) => pool.min(hint.saturating_sub((hint / 4).min(Duration::from_secs(1)))),
        None => pool,
    }
}

/// Opens an HTTP/1.1 connection on an already connected socket and starts its driver, which
/// closes the socket with FIN (after draining) once the connection is done — when the server
/// closes it, or when weir drops the last handle to it.
pub async fn handshake(
    stream: TcpStream,
    tasks: &TaskTracker,
    server: SocketAddr,
) -> Result<Sender, hyper::Error> {
    let (send, mut conn) = http1::Builder::new()
        .max_buf_size(256 * 1024)
        .handshake::<_, ReqBody>(TokioIo::new(BatchedStream::new(stream)))
        .await?;
    let closed = CancellationToken::new();
    let driver_closed = closed.clone();
    tasks.spawn(async move {
        if let Err(err) = poll_fn(|cx| conn.poll_without_shutdown(cx)).await {
            debug!(%server, %err, "server connection ended with an error");
        }
        driver_closed.cancel();
        let stream = conn.into_parts().io.into_inner().into_inner();
        close_gracefully(stream, CLOSE_LINGER).await;
    });
    Ok(Sender { send, closed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_stays_below_the_servers_hint() {
        let pool = Duration::from_secs(30);
        assert_eq!(idle_timeout(pool, None), pool);
        assert_eq!(
            idle_timeout(pool, Some(Duration::from_secs(1))),
            Duration::from_millis(750)
        );
        assert_eq!(
            idle_timeout(pool, Some(Duration::from_secs(5))),
            Duration::from_secs(4)
        );
        assert_eq!(idle_timeout(pool, Some(Duration::from_secs(60))), pool);
        assert_eq!(
            idle_timeout(pool, Some(Duration::from_secs(20))),
            Duration::from_secs(19)
        );
        assert_eq!(idle_timeout(pool, Some(Duration::ZERO)), Duration::ZERO);
    }
}
