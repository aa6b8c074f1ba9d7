//! Idle keep-alive connections to the servers of a group, as plain sockets.
//!
//! A pooled connection is just its socket: no task watches it and it holds no buffer. Each
//! server has a stack of them, most recently used first (a warm connection is the least
//! likely to be closed by the server); a full stack (`pool.max_idle_per_server`) closes its
//! oldest to take a newer one. A connection is idle for at most its own idle timeout:
//! the group's `pool.idle_timeout`, kept below the server's `Keep-Alive: timeout=N` hint, so
//! weir stops using a connection before the server closes it — the stale keep-alive race.
//!
//! Checkout looks at the socket without a system call in the common case: the reactor
//! already knows whether anything arrived since the last response. A connection the server
//! has closed (or that has unexpected bytes) is closed by weir with FIN, never reused.
//! Expired connections are closed by a periodic sweep, also with FIN after draining.
//!
//! Each worker thread has its own stacks: a socket is watched by the reactor of the worker
//! that opened it, and a connection served on one worker never waits on another's.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::http::pool::idle_timeout;
use crate::l4::forward::CLOSE_LINGER;
use crate::net::close::close_gracefully;
use crate::workers;

struct Idle {
    stream: TcpStream,
    since: Instant,
    timeout: Duration,
}

impl Idle {
    /// Within its idle time, and nothing heard from the server.
    fn usable(&self, now: Instant) -> bool {
        now.duration_since(self.since) < self.timeout && is_quiet(&self.stream)
    }
}

/// The HTTP/1 pool of one group: per worker, a stack of idle sockets per server.
pub struct RawPool {
    /// Worker `w`'s stack for server `s` is at `w * servers + s`.
    stacks: Vec<Mutex<VecDeque<Idle>>>,
    servers: usize,
    idle_timeout: Duration,
    max_idle: usize,
}

impl RawPool {
    /// An empty pool for `servers` servers and `workers` worker threads.
    pub fn new(servers: usize, workers: usize, config: &weir_config::Pool) -> Self {
        RawPool {
            stacks: (0..servers * workers.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            servers,
            idle_timeout: config.idle_timeout,
            max_idle: config.max_idle_per_server,
        }
    }

    /// The calling worker's stack for `server`.
    fn stack(&self, server: usize) -> Option<&Mutex<VecDeque<Idle>>> {
        if server >= self.servers {
            return None;
        }
        let workers = self.stacks.len() / self.servers;
        self.stacks
            .get(workers::current() % workers * self.servers + server)
    }

    /// An idle connection to `server` that is still open and within its idle time.
    /// Connections found closed or expired are closed on `tasks`.
    pub fn checkout(&self, server: usize, tasks: &TaskTracker) -> Option<TcpStream> {
        let slot = self.stack(server)?;
        let now = Instant::now();
        loop {
            let conn = slot.lock().unwrap_or_else(|p| p.into_inner()).pop_back()?;
            if conn.usable(now) {
                return Some(conn.stream);
            }
            tasks.spawn(close_gracefully(conn.stream, CLOSE_LINGER));
        }
    }

    /// Returns a connection after a complete exchange. `keep_alive_hint` is the server's
    /// `Keep-Alive: timeout=N`, if it sent one. A connection the pool cannot keep is closed
    /// on `tasks`.
    pub fn checkin(
        &self,
        server: usize,
        stream: TcpStream,
        keep_alive_hint: Option<Duration>,
        tasks: &TaskTracker,
    ) {
        let timeout = idle_timeout(self.idle_timeout, keep_alive_hint);
        let slot = match self.stack(server) {
            Some(slot) if self.max_idle > 0 && !timeout.is_zero() => slot,
            _ => {
                tasks.spawn(close_gracefully(stream, CLOSE_LINGER));
                return;
            }
        };
        let evicted = {
            let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
            let evicted = if idle.len() >= self.max_idle {
                idle.pop_front()
            } else {
                None
            };
            idle.push_back(Idle {
                stream,
                since: Instant::now(),
                timeout,
            });
            evicted
        };
        if let Some(oldest) = evicted {
            tasks.spawn(close_gracefully(oldest.stream, CLOSE_LINGER));
        }
    }

    /// Closes the calling worker's connections past their idle time or closed by their
    /// server.
    pub fn sweep(&self, tasks: &TaskTracker) {
        let now = Instant::now();
        for server in 0..self.servers {
            let Some(slot) = self.stack(server) else {
                continue;
            };
            let stale: VecDeque<Idle> = {
                let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
                if idle.is_empty() {
                    continue;
                }
                let (keep, stale) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|c| c.usable(now));
                *idle = keep;
                stale
            };
            for conn in stale {
                tasks.spawn(close_gracefully(conn.stream, CLOSE_LINGER));
            }
        }
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self, tasks: &TaskTracker) {
        for slot in &self.stacks {
            let idle = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
            for conn in idle {
                tasks.spawn(close_gracefully(conn.stream, CLOSE_LINGER));
            }
        }
    }

    /// Idle connections to `server` held, on all workers (for tests).
    pub fn idle(&self, server: usize) -> usize {
        if server >= self.servers {
            return 0;
        }
        self.stacks
            .iter()
            .skip(server)
            .step_by(self.servers)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Whether an idle connection has nothing to say: no bytes, no FIN, no error. A read is only
/// attempted when the reactor has seen the socket become readable since the last read, so a
/// quiet connection costs no system call here (responses are read with `net::try_recv`,
/// which leaves no stale readiness behind).
fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    match stream.try_read(&mut probe) {
        Err(err) => err.kind() == io::ErrorKind::WouldBlock,
        // A FIN (0) or unexpected bytes: either way it cannot carry a request.
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, mpsc};

    use super::*;
    use crate::workers::Workers;

    /// Runs `f` on the worker behind `handle` and returns its result.
    fn on<T: Send + 'static>(
        handle: &tokio::runtime::Handle,
        f: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().unwrap()
    }

    #[test]
    fn a_worker_reuses_only_the_connections_it_opened() {
        let workers = Workers::start(2, true).unwrap();
        let handles = workers.handles();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let pool = Arc::new(RawPool::new(1, 2, &weir_config::Pool::default()));
        let tasks = TaskTracker::new();

        let (p, t) = (pool.clone(), tasks.clone());
        on(&handles[0], async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            p.checkin(0, stream, None, &t);
        });
        let _accepted = server.accept().unwrap();
        assert_eq!(pool.idle(0), 1);

        let (p, t) = (pool.clone(), tasks.clone());
        let other = on(&handles[1], async move { p.checkout(0, &t).is_some() });
        assert!(!other, "worker 1 does not take worker 0's connection");
        let (p, t) = (pool.clone(), tasks.clone());
        let own = on(&handles[0], async move { p.checkout(0, &t).is_some() });
        assert!(own, "worker 0 reuses its own connection");
        assert_eq!(pool.idle(0), 0);
        workers.stop();
    }

    #[test]
    fn a_full_stack_closes_its_oldest_with_fin_and_hands_out_the_newest() {
        use std::io::Read;

        let workers = Workers::start(1, true).unwrap();
        let handle = workers.handles()[0].clone();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let config = weir_config::Pool {
            max_idle_per_server: 2,
            ..weir_config::Pool::default()
        };
        let pool = Arc::new(RawPool::new(1, 1, &config));
        let tasks = TaskTracker::new();

        // Three connections checked in, oldest first; the server side of each, in order.
        let mut accepted = Vec::new();
        for _ in 0..3 {
            let (p, t) = (pool.clone(), tasks.clone());
            on(&handle, async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                p.checkin(0, stream, None, &t);
            });
            accepted.push(server.accept().unwrap().0);
        }
        assert_eq!(pool.idle(0), 2);

        let oldest = &mut accepted[0];
        oldest
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let read = oldest.read(&mut [0u8; 16]);
        assert_eq!(read.unwrap(), 0, "the oldest is closed with FIN");

        let (p, t) = (pool.clone(), tasks.clone());
        let newest = on(&handle, async move {
            let stream = p.checkout(0, &t).unwrap();
            stream.local_addr().unwrap()
        });
        assert_eq!(newest, accepted[2].peer_addr().unwrap(), "newest first");
        workers.stop();
    }
}
