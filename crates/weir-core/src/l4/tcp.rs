//! One TCP connection through a `tcp` listener: connect to a server (with retries), forward,
//! record how it ended, close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::forward::{CLOSE_LINGER, ForwardConfig, forward};
use crate::access_log::RecordSink;
use crate::end::{ConnRecord, End, EndHow, EndPhase, Record};
use crate::limits::Refusal;
use crate::net::close::close_gracefully;
use crate::upstream::Upstream;
use crate::upstream::connect::connect;

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
    /// Serves one accepted connection to its end, then writes its record.
    pub async fn serve(&self, client: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let started = Instant::now();
        // TCP_NODELAY and keep-alive come from the listening socket (see `bind_tcp`).
        let mut record = self.new_record(peer);

        let connected = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                self.finish(record, started, Instant::now(),
                    End::weir(EndHow::Shutdown, EndPhase::Connect, "shutdown"));
                close_gracefully(client, CLOSE_LINGER).await;
                return;
            }
            connected = connect(&self.upstream, peer.ip()) => connected,
        };
        let conn = match connected {
            Ok(conn) => conn,
            Err(failed) => {
                record.retries = failed.retries;
                if let Some(server) = failed
                    .last_server
                    .and_then(|i| self.upstream.servers.get(i))
                {
                    record.server = Some(server.name.clone());
                    record.server_addr = Some(server.address);
                }
                self.finish(record, started, Instant::now(), failed.end);
                close_gracefully(client, CLOSE_LINGER).await;
                return;
            }
        };
        let server = &self.upstream.servers[conn.server];
        record.server = Some(server.name.clone());
        record.server_addr = Some(server.address);
        record.retries = conn.retries;
        record.connect_time = Some(conn.connect_time);

        let forwarded = forward(client, conn.stream, &self.forward, shutdown.cancelled()).await;
        record.bytes_in = forwarded.bytes_in;
        record.bytes_out = forwarded.bytes_out;
        if forwarded.spliced_in | forwarded.spliced_out != 0 {
            server
                .spliced_in
                .fetch_add(forwarded.spliced_in, Ordering::Relaxed);
            server
                .spliced_out
                .fetch_add(forwarded.spliced_out, Ordering::Relaxed);
        }
        self.finish(record, started, forwarded.ended_at, forwarded.end);
        forwarded.closing.run().await;
        drop(conn.guard);
    }

    /// Closes a connection the listener's ACL or limits turned away: FIN right after accept,
    /// logged as a policy close.
    pub async fn refuse(&self, client: TcpStream, peer: SocketAddr, refusal: Refusal) {
        let started = Instant::now();
        let record = self.new_record(peer);
        let end = End::weir(EndHow::Policy, EndPhase::Accept, refusal.reason());
        self.finish(record, started, Instant::now(), end);
        close_gracefully(client, CLOSE_LINGER).await;
    }

    fn new_record(&self, peer: SocketAddr) -> ConnRecord {
        ConnRecord::accepted(self.listener.clone(), peer, self.upstream.shared_name())
    }

    fn finish(&self, mut record: ConnRecord, started: Instant, ended: Instant, end: End) {
        record.duration = ended.saturating_duration_since(started);
        record.end(end);
        self.sink.record(Record::Tcp(record));
    }
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
        let serve = service.serve(client, addr, CancellationToken::new());
        let size = std::mem::size_of_val(&serve);
        eprintln!("TcpService::serve future: {size} bytes");
        assert!(size < 4096, "the connection future is {size} bytes");
    }
}
