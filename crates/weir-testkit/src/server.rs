//! Plumbing shared by the backends: binding on loopback, the accept loop, the tally of accepted
//! connections and endings, and the guard that stops everything when a backend is dropped.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::ending::{Ending, classify};

/// Size of the scratch buffer used to read and discard.
const SCRATCH: usize = 16 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What a backend has seen so far; shared between the handle and its connection tasks.
#[derive(Debug)]
pub(crate) struct Tally {
    endings: Mutex<Vec<Ending>>,
    ended: watch::Sender<usize>,
    accepted: watch::Sender<usize>,
    requests: AtomicUsize,
}

impl Tally {
    pub(crate) fn new() -> Arc<Tally> {
        Arc::new(Tally {
            endings: Mutex::new(Vec::new()),
            ended: watch::Sender::new(0),
            accepted: watch::Sender::new(0),
            requests: AtomicUsize::new(0),
        })
    }

    /// Records how one connection ended and wakes whoever waits for endings.
    pub(crate) fn record(&self, ending: Ending) {
        self.endings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ending);
        self.ended.send_modify(|n| *n += 1);
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn endings(&self) -> Vec<Ending> {
        self.endings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) async fn wait_ended(&self, n: usize, timeout: Duration) -> bool {
        wait_at_least(&self.ended, n, timeout).await
    }

    pub(crate) async fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        wait_at_least(&self.accepted, n, timeout).await
    }
}

async fn wait_at_least(counter: &watch::Sender<usize>, n: usize, timeout: Duration) -> bool {
    let mut rx = counter.subscribe();
    matches!(
        tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await,
        Ok(Ok(_))
    )
}

/// A running accept loop; dropping it aborts the loop and, with it, every connection task.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves every accepted connection with `handler` in its own task.
    pub(crate) async fn start<F, Fut>(tally: Arc<Tally>, handler: F) -> io::Result<Server>
    where
        F: Fn(TcpStream, Arc<Tally>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, tally, handler));
        Ok(Server { addr, task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts until aborted. The connection tasks live in a `JoinSet` owned by this future, so
/// aborting the loop drops the set, which aborts them too.
async fn accept_loop<F, Fut>(listener: TcpListener, tally: Arc<Tally>, handler: F)
where
    F: Fn(TcpStream, Arc<Tally>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tally.accepted.send_modify(|n| *n += 1);
                    conns.spawn(handler(stream, Arc::clone(&tally)));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Reads and discards until the peer's FIN or an error, and says which.
pub(crate) async fn drain(stream: &mut TcpStream) -> Ending {
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        if let Some(ending) = classify(stream.read(&mut scratch).await) {
            return ending;
        }
    }
}
