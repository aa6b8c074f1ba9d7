//! WebSocket and any other HTTP/1.1 Upgrade: the request goes to a server on a fresh
//! connection; on `101 Switching Protocols` both sides become a byte tunnel with its own idle
//! timeout, forwarded like a TCP connection and recorded like one (`end_phase` = tunnel).
//! A server that declines the upgrade answers like any request, and the client connection
//! goes on as HTTP/1.

use std::sync::Arc;

use http::{Response, StatusCode};
use hyper::client::conn::http1;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::debug;

use super::body::{ReqBody, RespBody};
use super::exchange::{Exchange, UpstreamLeg};
use super::headers;
use super::service::{ConnInfo, HttpGroup, HttpService, UpstreamHead};
use crate::end::{ConnRecord, End, EndBy, EndHow, EndPhase, Record};
use crate::l4::forward::{CLOSE_LINGER, ForwardConfig, forward};
use crate::net::close::{CloseOutcome, Endpoint, close_stream_gracefully};
use crate::upstream::connect::connect_one;

/// One side of an upgraded tunnel.
type Tunnel = TokioIo<Upgraded>;

impl Endpoint for Tunnel {
    fn close_gracefully(
        self,
        linger: std::time::Duration,
    ) -> impl Future<Output = CloseOutcome> + Send {
        close_stream_gracefully(self, linger)
    }

    fn close_with_reset(self) {
        // The socket is inside hyper's upgraded stream: it closes when dropped.
        drop(self);
    }
}

impl HttpService {
    /// Handles an upgrade request (no body is expected with it).
    pub(super) async fn upgrade(
        &self,
        conn: &ConnInfo,
        mut exchange: Exchange,
        group: Arc<HttpGroup>,
        mut parts: http::request::Parts,
        client_upgrade: OnUpgrade,
    ) -> Response<RespBody> {
        let pinned = self.prepare_request(conn, &group, &mut parts, true);
        let protocol = match parts.headers.get(http::header::UPGRADE) {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"websocket") => "websocket",
            _ => "tunnel",
        };
        let head = UpstreamHead::new(parts);

        let config = &group.upstream.config;
        let mut tried = Vec::new();
        let mut pinned = pinned;
        let mut last = End::weir(EndHow::Error, EndPhase::Connect, "no_server");
        let (server, stream, connect_time) = loop {
            if tried.len() > config.retries as usize {
                return exchange.respond(StatusCode::BAD_GATEWAY, last, false);
            }
            let Some(server) = pinned
                .take()
                .or_else(|| group.upstream.pick_next(conn.client.ip(), &tried))
            else {
                return exchange.respond(StatusCode::BAD_GATEWAY, last, false);
            };
            let state = &group.upstream.servers[server];
            exchange.note(|r| {
                r.server = Some(state.name.clone());
                r.server_addr = Some(state.address);
            });
            let started = Instant::now();
            match connect_one(
                state.address,
                config.connect_timeout,
                config.tcp_keepalive.as_ref(),
            )
            .await
            {
                Ok(stream) => break (server, stream, started.elapsed()),
                Err(end) => {
                    tried.push(server);
                    last = end;
                }
            }
        };
        exchange.note(|r| {
            r.retries = tried.len() as u32;
            r.upstream_connect_time = Some(connect_time);
        });
        let state = group.upstream.servers[server].clone();
        let address = state.address;
        let handshake = http1::Builder::new()
            .handshake::<_, ReqBody>(TokioIo::new(stream))
            .await;
        let Ok((mut sender, driver)) = handshake else {
            let end = End::new(EndBy::Upstream, EndHow::Error, EndPhase::Connect);
            return exchange.respond(StatusCode::BAD_GATEWAY, end, false);
        };
        self.tasks.spawn(async move {
            if let Err(err) = driver.with_upgrades().await {
                debug!(server = %address, %err, "upgrade connection ended with an error");
            }
        });
        let guard = state.open_connection();
        let sent_at = Instant::now();
        let sent = tokio::time::timeout(
            config.request_timeout,
            sender.send_request(head.into_request(ReqBody::Empty)),
        )
        .await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                let how = if super::body::err_is_reset(&err) {
                    EndHow::Rst
                } else {
                    EndHow::Fin
                };
                let end = End::new(EndBy::Upstream, how, EndPhase::Response);
                return exchange.respond(StatusCode::BAD_GATEWAY, end, false);
            }
            Err(_) => {
                let end = End::weir(EndHow::Timeout, EndPhase::Response, "request_timeout");
                return exchange.respond(StatusCode::GATEWAY_TIMEOUT, end, false);
            }
        };
        let status = response.status();
        exchange.note(|r| {
            r.status = status.as_u16();
            r.upstream_status = Some(status.as_u16());
            r.upstream_header_time = Some(sent_at.elapsed());
        });
        if status != StatusCode::SWITCHING_PROTOCOLS {
            // Declined: an ordinary response; the client connection stays HTTP/1.
            (conn.resume_guard)();
            let leg = UpstreamLeg {
                group: group.clone(),
                server,
                sender: None,
                keep_alive_hint: None,
                sent_at,
                _guard: guard,
            };
            let (mut parts, body) = response.into_parts();
            headers::prepare_response(&mut parts.headers, false);
            exchange.upstream = Some(leg);
            return Response::from_parts(parts, RespBody::upstream(body, Some(Box::new(exchange))));
        }

        let server_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        headers::prepare_response(&mut parts.headers, true);
        if let Some(persist) = &group.persist {
            persist.on_response(&mut parts.headers, server);
        }
        let tunnel = TunnelStart {
            listener: self.listener.clone(),
            client: conn.client,
            group: group.upstream.name().to_string(),
            server: state.name.clone(),
            server_addr: address,
            protocol,
            connect_time,
            forward: ForwardConfig {
                idle_timeout: self.settings.tunnel_idle_timeout,
                idle_close: weir_config::CloseMode::Fin,
                propagate_reset: true,
                // Upgraded streams are not plain sockets: always copied.
                splice: false,
            },
        };
        let sink = self.sink.clone();
        let force_close = conn.force_close.clone();
        self.tasks.spawn(async move {
            let _guard = guard;
            tunnel
                .run(client_upgrade, server_upgrade, sink, force_close)
                .await;
        });
        exchange.end = End::new(EndBy::Upstream, EndHow::Done, EndPhase::Response);
        Response::from_parts(
            parts,
            RespBody::full(bytes::Bytes::new(), Some(Box::new(exchange))),
        )
    }
}

/// What a tunnel needs once both sides have switched protocols.
struct TunnelStart {
    listener: String,
    client: std::net::SocketAddr,
    group: String,
    server: String,
    server_addr: std::net::SocketAddr,
    protocol: &'static str,
    connect_time: std::time::Duration,
    forward: ForwardConfig,
}

impl TunnelStart {
    async fn run(
        self,
        client: OnUpgrade,
        server: OnUpgrade,
        sink: Arc<dyn crate::access_log::RecordSink>,
        force_close: tokio_util::sync::CancellationToken,
    ) {
        let started = Instant::now();
        let mut record = ConnRecord::accepted(&self.listener, self.client, &self.group);
        record.protocol = self.protocol;
        record.server = Some(self.server.clone());
        record.server_addr = Some(self.server_addr);
        record.connect_time = Some(self.connect_time);
        let (client, server) =
            match tokio::time::timeout(CLOSE_LINGER * 5, async { tokio::join!(client, server) })
                .await
            {
                Ok((Ok(client), Ok(server))) => (TokioIo::new(client), TokioIo::new(server)),
                _ => {
                    record.end(End::weir(EndHow::Error, EndPhase::Tunnel, "upgrade_failed"));
                    record.duration = started.elapsed();
                    sink.record(&Record::Tcp(record));
                    return;
                }
            };
        let forwarded = forward(client, server, &self.forward, &force_close).await;
        record.bytes_in = forwarded.bytes_in;
        record.bytes_out = forwarded.bytes_out;
        record.duration = forwarded.ended_at.saturating_duration_since(started);
        let mut end = forwarded.end;
        if end.reason == Some("idle_timeout") {
            end.reason = Some("tunnel_idle_timeout");
        }
        record.end(end);
        sink.record(&Record::Tcp(record));
        forwarded.closing.run().await;
    }
}
