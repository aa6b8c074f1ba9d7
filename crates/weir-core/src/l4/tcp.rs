//! One TCP connection through a `tcp` listener: connect to a server (with retries), forward,
//! record how it ended, close.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::forward::{CLOSE_LINGER, Closing, ForwardConfig, Forwarded, forward_tcp};
use crate::access_log::RecordSink;
use crate::end::{ConnRecord, End, EndHow, EndPhase, Record};
use crate::limits::{ConnPermit, Refusal};
use crate::listener::signal::Signal;
use crate::net::close::close_gracefully;
use crate::upstream::Upstream;
use crate::upstream::connect::{ConnectFailed, Connected, connect};

/// Everything a `tcp` listener's connections share.
pub struct TcpService {
    /// Listener name (for records).
    pub listener: Arc<str>,
    /// The group connections go to.
    pub upstream: Arc<Upstream>,
    /// Forwarding settings.
    pub forward: ForwardConfig,
    /// Where end records go.
    pub sink: Arc<dyn RecordSink>,
}

impl TcpService {
    /// Serves one accepted connection to its end, then writes its record. `admitted` is what
    /// the listener's ACL and limits said of it (see [`TcpService::refuse`]).
    ///
    /// The future is what `spawn` allocates for every connection, so it is kept small: not an
    /// `async fn` (which would keep every argument twice, as argument and as local), the
    /// record built when the connection has ended rather than carried through it, the
    /// bookkeeping in plain functions (a value an `async` body borrows is kept across its
    /// later awaits), and the rare paths (a refusal, no server, a close that waits for a
    /// peer) on the heap.
    pub fn serve(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        signal: &Arc<Signal>,
        admitted: Result<ConnPermit, Refusal>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let signal = signal.clone();
        async move {
            let permit = match admitted {
                Ok(permit) => permit,
                Err(refusal) => return Box::pin(self.refuse(client, peer, refusal)).await,
            };
            let began = Began::now();
            // TCP_NODELAY and keep-alive come from the listening socket (see `bind_tcp`).
            let mut watch = signal.watch();
            let connected = tokio::select! {
                biased;
                _ = poll_fn(|cx| watch.poll_force(cx)) => None,
                connected = connect(&self.upstream, peer.ip()) => Some(connected),
            };
            // Locals of the forwarding stage end with this block, so that they take no room
            // while the closing runs.
            let (closing, guard) = {
                let Some(Connected {
                    stream,
                    server,
                    connect_time,
                    retries,
                    guard,
                }) = self.connected(connected, peer, began)
                else {
                    Box::pin(close_gracefully(client, CLOSE_LINGER)).await;
                    return;
                };
                let forced = poll_fn(|cx| watch.poll_force(cx));
                let served = Served {
                    server,
                    connect_time,
                    retries,
                };
                match forward_tcp(client, stream, &self.forward, forced).await {
                    Ok(forwarded) => (self.forwarded(forwarded, peer, began, served), guard),
                    Err(err) => {
                        // The io_uring engine failed under this connection, whose sockets are
                        // closed already.
                        tracing::warn!(%err, "forwarding failed");
                        self.lost(peer, began, served);
                        return;
                    }
                }
            };
            closing.run().await;
            drop((guard, watch, permit));
        }
    }

    /// The connection to a server, or `None` when there is none (every connect failed, or
    /// `connected` is `None`: shutdown came first), recorded.
    fn connected(
        &self,
        connected: Option<Result<Connected, ConnectFailed>>,
        peer: SocketAddr,
        began: Began,
    ) -> Option<Connected> {
        let end = match connected {
            Some(Ok(conn)) => return Some(conn),
            Some(Err(failed)) => {
                let mut record = self.new_record(peer, began);
                record.retries = failed.retries;
                if let Some(server) = failed
                    .last_server
                    .and_then(|i| self.upstream.servers.get(i))
                {
                    record.server = Some(server.name.clone());
                    record.server_addr = Some(server.address);
                }
                self.finish(record, began, Instant::now(), failed.end);
                return None;
            }
            None => End::weir(EndHow::Shutdown, EndPhase::Connect, "shutdown"),
        };
        self.finish(self.new_record(peer, began), began, Instant::now(), end);
        None
    }

    /// Records a connection whose forwarding failed inside weir (see `forward_tcp`).
    fn lost(&self, peer: SocketAddr, began: Began, served: Served) {
        let record = self.served_record(peer, began, &served);
        let end = End::weir(EndHow::Error, EndPhase::Tunnel, "io_uring");
        self.finish(record, began, Instant::now(), end);
    }

    /// A record for a connection `served` by one of the group's servers.
    fn served_record(&self, peer: SocketAddr, began: Began, served: &Served) -> ConnRecord {
        let server = &self.upstream.servers[served.server];
        let mut record = self.new_record(peer, began);
        record.server = Some(server.name.clone());
        record.server_addr = Some(server.address);
        record.retries = served.retries;
        record.connect_time = Some(served.connect_time);
        record
    }

    /// Records a forwarded connection; returns its closing work.
    fn forwarded(
        &self,
        forwarded: Forwarded<TcpStream, TcpStream>,
        peer: SocketAddr,
        began: Began,
        served: Served,
    ) -> Closing<TcpStream, TcpStream> {
        let server = &self.upstream.servers[served.server];
        if forwarded.spliced_in | forwarded.spliced_out != 0 {
            let (spliced_in, spliced_out) = (forwarded.spliced_in, forwarded.spliced_out);
            server.spliced_in.fetch_add(spliced_in, Ordering::Relaxed);
            server.spliced_out.fetch_add(spliced_out, Ordering::Relaxed);
        }
        let mut record = self.served_record(peer, began, &served);
        record.bytes_in = forwarded.bytes_in;
        record.bytes_out = forwarded.bytes_out;
        self.finish(record, began, forwarded.ended_at, forwarded.end);
        forwarded.closing
    }

    /// Closes a connection the listener's ACL or limits turned away: FIN right after accept,
    /// logged as a policy close.
    pub async fn refuse(&self, client: TcpStream, peer: SocketAddr, refusal: Refusal) {
        let began = Began::now();
        let record = self.new_record(peer, began);
        let end = End::weir(EndHow::Policy, EndPhase::Accept, refusal.reason());
        self.finish(record, began, Instant::now(), end);
        close_gracefully(client, CLOSE_LINGER).await;
    }

    fn new_record(&self, peer: SocketAddr, began: Began) -> ConnRecord {
        let mut record =
            ConnRecord::accepted(self.listener.clone(), peer, self.upstream.shared_name());
        record.time = began.time;
        record
    }

    fn finish(&self, mut record: ConnRecord, began: Began, ended: Instant, end: End) {
        record.duration = ended.saturating_duration_since(began.started);
        record.end(end);
        self.sink.record(Record::Tcp(record));
    }
}

/// When a connection began: wall-clock time for its record, and the start of its duration.
#[derive(Clone, Copy)]
struct Began {
    time: SystemTime,
    started: Instant,
}

impl Began {
    fn now() -> Began {
        Began {
            time: SystemTime::now(),
            started: Instant::now(),
        }
    }
}

/// Which server served a connection, for its record.
struct Served {
    server: usize,
    connect_time: Duration,
    retries: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::access_log::ChannelSink;
    use crate::upstream::ServerState;

    /// Every connection's future is allocated by `spawn` and moved around; it must not carry
    /// buffers (they live per thread, or on the heap only while needed).
    #[tokio::test]
    async fn a_connection_future_carries_no_buffers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let group = weir_config::Group::new("g", vec![weir_config::Server::new(addr)]);
        let upstream = Upstream::new(group, |g, s| {
            Arc::new(ServerState::new(g, &s.name, s.address))
        });
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let service = TcpService {
            listener: "l".into(),
            upstream: Arc::new(upstream),
            forward: ForwardConfig {
                idle_timeout: std::time::Duration::from_secs(1),
                idle_close: weir_config::CloseMode::Fin,
                propagate_reset: true,
                splice: false,
            },
            sink: Arc::new(ChannelSink(tx)),
        };
        let client = TcpStream::connect(addr).await.unwrap();
        let gate = Arc::new(crate::limits::Gate::default());
        let admitted = gate.admit_connection(addr.ip());
        let serve = Arc::new(service).serve(client, addr, &Default::default(), admitted);
        let size = std::mem::size_of_val(&serve);
        eprintln!("TcpService::serve future: {size} bytes");
        // 656 bytes in a release build today (a 768-byte task cell), a little more in a debug
        // one. Past about 780 bytes the task cell (128-byte aligned) grows to 896 bytes, and
        // every connection with it.
        assert!(size < 768, "the connection future is {size} bytes");
    }
}
