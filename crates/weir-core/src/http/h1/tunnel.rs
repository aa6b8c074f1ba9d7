//! Upgraded connections: WebSocket and any other HTTP/1.1 Upgrade.
//!
//! The upgrade request goes to a server on a connection of its own, like any request. On
//! `101 Switching Protocols` the client gets the 101 and both sides become a byte tunnel with
//! its own idle timeout (`tunnel_idle_timeout`), forwarded like a TCP connection and recorded
//! like one (`end_phase` = tunnel). A server that declines answers like any request, and the
//! client connection goes on as HTTP/1.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::super::buf::Buf;
use crate::end::{ConnRecord, End, EndHow, EndPhase, Record};
use crate::http::client_io::ClientStream;
use crate::http::service::HttpService;
use crate::l4::forward::{CLOSE_LINGER, ForwardConfig, forward};
use crate::listener::signal::Watch;
use crate::net::close::close_gracefully;
use crate::upstream::{ActiveGuard, ServerState};

/// A server connection that switched protocols, and what the tunnel's record needs.
pub(in crate::http::h1) struct Tunnel {
    pub(in crate::http::h1) server: TcpStream,
    pub(in crate::http::h1) state: Arc<ServerState>,
    pub(in crate::http::h1) group: Arc<str>,
    pub(in crate::http::h1) protocol: &'static str,
    pub(in crate::http::h1) connect_time: Duration,
    /// Counts the tunnel against the server while it runs.
    pub(in crate::http::h1) _guard: ActiveGuard,
}

impl Tunnel {
    /// Forwards bytes both ways until one side ends, then records the tunnel and closes.
    /// `early` holds bytes the client sent after its upgrade request: they are the server's.
    pub(in crate::http::h1) async fn run<S: ClientStream>(
        self,
        svc: &HttpService,
        client: S,
        early: Buf,
        peer: SocketAddr,
        mut watch: Watch,
    ) {
        let started = Instant::now();
        let mut record = ConnRecord::accepted(Arc::from(svc.listener.as_str()), peer, self.group);
        record.protocol = self.protocol;
        record.server = Some(self.state.name.clone());
        record.server_addr = Some(self.state.address);
        record.connect_time = Some(self.connect_time);
        let mut server = self.server;
        if !early.is_empty() {
            let sent = tokio::time::timeout(CLOSE_LINGER, server.write_all(early.filled())).await;
            if !matches!(sent, Ok(Ok(()))) {
                record.end(End::weir(EndHow::Error, EndPhase::Tunnel, "upgrade_failed"));
                record.duration = started.elapsed();
                svc.sink.record(Record::Tcp(record));
                client.close_gracefully(CLOSE_LINGER).await;
                close_gracefully(server, CLOSE_LINGER).await;
                return;
            }
        }
        drop(early);
        let config = ForwardConfig {
            idle_timeout: svc.settings.tunnel_idle_timeout,
            idle_close: weir_config::CloseMode::Fin,
            propagate_reset: true,
            // Tunnels carry messages, not bulk: the copy path (splice is a tcp listener's
            // choice).
            splice: false,
        };
        let forced = poll_fn(|cx| watch.poll_force(cx));
        let forwarded = forward(client, server, &config, forced).await;
        record.bytes_in = forwarded.bytes_in;
        record.bytes_out = forwarded.bytes_out;
        record.duration = forwarded.ended_at.saturating_duration_since(started);
        let mut end = forwarded.end;
        if end.reason == Some("idle_timeout") {
            end.reason = Some("tunnel_idle_timeout");
        }
        record.end(end);
        if svc.sink.wants_records() {
            svc.sink.record(Record::Tcp(record));
        }
        forwarded.closing.run().await;
    }
}
