//! One TCP connection through a `tcp` listener: connect to a server (with retries), forward,
//! record how it ended, close.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use weir_config::TcpKeepalive;

use super::forward::{CLOSE_LINGER, ForwardConfig, forward};
use crate::access_log::RecordSink;
use crate::end::{ConnRecord, End, EndHow, EndPhase, Record};
use crate::net::close::close_gracefully;
use crate::net::sockopt;
use crate::upstream::Upstream;
use crate::upstream::connect::connect;

/// Everything a `tcp` listener's connections share.
pub struct TcpService {
    /// Listener name (for records).
    pub listener: String,
    /// The group connections go to.
    pub upstream: Arc<Upstream>,
    /// Forwarding settings.
    pub forward: ForwardConfig,
    /// Keep-alive on client sockets.
    pub keepalive: Option<TcpKeepalive>,
    /// Where end records go.
    pub sink: Arc<dyn RecordSink>,
}

impl TcpService {
    /// Serves one accepted connection to its end, then writes its record.
    pub async fn serve(&self, client: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let started = Instant::now();
        let mut record = ConnRecord::accepted(&self.listener, peer, self.upstream.name());
        let _ = client.set_nodelay(true);
        if let Some(keepalive) = &self.keepalive
            && let Err(err) = sockopt::set_keepalive(&client, keepalive)
        {
            debug!(%peer, %err, "cannot set keep-alive on client socket");
        }

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

        let forwarded = forward(client, conn.stream, &self.forward, &shutdown).await;
        record.bytes_in = forwarded.bytes_in;
        record.bytes_out = forwarded.bytes_out;
        self.finish(record, started, forwarded.ended_at, forwarded.end);
        forwarded.closing.run().await;
        drop(conn.guard);
    }

    fn finish(&self, mut record: ConnRecord, started: Instant, ended: Instant, end: End) {
        record.duration = ended.saturating_duration_since(started);
        record.end(end);
        self.sink.record(&Record::Tcp(record));
    }
}
