//! One client connection of an `http`/`https` listener, from accept to close.
//!
//! https: peek at the first bytes (plain HTTP gets a readable 400, not a reset), then the TLS
//! handshake. Then the protocol decides who serves the connection:
//! - HTTP/1 (plain, or TLS without ALPN `h2`): weir's own engine, [`h1::serve::serve`], to
//!   the end of the connection;
//! - HTTP/2 (ALPN `h2`, or a plain connection the HTTP/1 engine found starting with the
//!   HTTP/2 preface, handed over with the bytes it read): hyper's HTTP/2 server on a
//!   [`ClientIo`], while weir closes a connection idle for `idle_timeout` (GOAWAY first),
//!   sends GOAWAY on shutdown and closes what is left when the shutdown grace is over. When hyper is done,
//!   weir takes the stream back and closes with FIN after draining what the client still
//!   sends.
//!
//! The version is chosen before hyper sees the connection, so hyper's HTTP/2 builder is used
//! directly rather than hyper-util's `auto` (which would only sniff the preface again).

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::client_io::{ClientIo, ClientStream};
use super::exchange::Activity;
use super::h1;
use super::h1::serve::ConnFacts;
use super::service::{ConnInfo, HttpService};
use crate::end::End;
use crate::l4::forward::CLOSE_LINGER;
use crate::limits::{ConnPermit, Refusal};
use crate::listener::Lifecycle;
use crate::listener::signal::{Shutdown, Signal};
use crate::net::close::{close_gracefully, drain_and_close};
use crate::tls::NegotiatedVersion;
use crate::tls::detect::{FirstBytes, peek_first_bytes, reject_plain_http};

/// An `http`/`https` listener's connection handling.
pub struct HttpEntry {
    /// The request path.
    pub service: Arc<HttpService>,
    /// TLS, for https.
    pub tls: Option<TlsAcceptor>,
    /// hyper, for HTTP/2 clients.
    builder: http2::Builder<TokioExecutor>,
}

impl HttpEntry {
    /// Prepares connection handling for a listener.
    pub fn new(service: Arc<HttpService>, tls: Option<TlsAcceptor>) -> Self {
        let settings = &service.settings;
        let h2 = settings.http2;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(h2.max_concurrent_streams)
            .max_pending_accept_reset_streams(h2.max_pending_reset_streams)
            .max_local_error_reset_streams(h2.max_local_error_reset_streams)
            .max_header_list_size(settings.max_header_size.min(u32::MAX as usize) as u32);
        HttpEntry {
            service,
            tls,
            builder,
        }
    }

    /// Serves one accepted connection to its end; `admitted` is what the listener's ACL and
    /// limits said of it (a refused connection is answered 403 or 503, then closed).
    ///
    /// The future is what `spawn` allocates for every connection, so it is kept small: for
    /// plain HTTP it is the HTTP/1 engine's own future, with nothing around it that would hold
    /// the stream a second time (HTTP/2 with prior knowledge starts on the heap from there);
    /// https is a pointer to its state on the heap.
    pub fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        local_port: u16,
        life: &Lifecycle,
        admitted: Result<ConnPermit, Refusal>,
    ) -> ConnTask<
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = ()> + Send + 'static,
    > {
        let (permit, refusal) = match admitted {
            Ok(permit) => (Some(permit), None),
            Err(refusal) => (None, Some(refusal)),
        };
        let facts = ConnFacts {
            peer,
            local_port,
            tls_version: None,
            refusal,
        };
        // The HTTP engines watch shutdown through `signal` alone.
        let signal = life.signal.clone();
        // TCP_NODELAY comes from the listening socket.
        match &self.tls {
            None => {
                let service = self.service.clone();
                // The permit is held by whichever engine serves the connection last.
                let on_h2 = move |h2: h1::serve::H2Handoff<TcpStream>, facts, signal| {
                    Box::pin(async move {
                        let io = ClientIo::with_prefix(h2.stream, h2.read);
                        self.run(io, &facts, &signal).await;
                        drop(permit);
                    })
                };
                ConnTask::Plain(h1::serve::serve(service, stream, facts, signal, on_h2))
            }
            // TLS state is large: only https connections carry it.
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                ConnTask::Tls(Box::pin(async move {
                    self.serve_tls(acceptor, stream, facts, signal).await;
                    drop(permit);
                }))
            }
        }
    }

    async fn serve_tls(
        &self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        facts: ConnFacts,
        signal: Arc<Signal>,
    ) {
        let peer = facts.peer;
        let header_timeout = self.service.settings.request_header_timeout;
        match peek_first_bytes(&stream, header_timeout).await {
            Ok(FirstBytes::PlainHttp) => {
                let end = End::client_error("plain_http_on_tls_port");
                let status = Some(StatusCode::BAD_REQUEST);
                self.service.log_rejected(peer, None, status, end);
                reject_plain_http(stream).await;
                return;
            }
            Ok(_) => {}
            Err(err) => {
                debug!(%peer, %err, "connection ended before TLS");
                return;
            }
        }
        let accepted =
            tokio::time::timeout(header_timeout, acceptor.accept(stream).into_fallible()).await;
        let tls_stream = match accepted {
            Ok(Ok(tls_stream)) => tls_stream,
            Ok(Err((err, stream))) => {
                debug!(%peer, %err, "TLS handshake failed");
                close_gracefully(stream, CLOSE_LINGER).await;
                return;
            }
            Err(_) => {
                // The handshake future owns the socket and is dropped here. It had read until
                // the socket would block before parking, so the receive buffer is empty and the
                // close sends FIN — unless bytes arrived in this very instant, the race every
                // close has.
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let (version, alpn) = crate::tls::describe(tls_stream.get_ref().1);
        let facts = ConnFacts {
            tls_version: Some(version),
            ..facts
        };
        if alpn == Some(b"h2".as_slice()) {
            let io = ClientIo::new(tls_stream);
            Box::pin(self.run(io, &facts, &signal)).await;
            return;
        }
        // Prior-knowledge HTTP/2 is only recognised on plain connections.
        let on_h2 = |_, _, _| std::future::ready(());
        h1::serve::serve(self.service.clone(), tls_stream, facts, signal, on_h2).await;
    }

    /// Serves an HTTP/2 connection with hyper until it ends, is idle for `idle_timeout` (then
    /// GOAWAY, and the close at most [`CLOSE_LINGER`] later), or shutdown forces it closed;
    /// then closes with FIN after draining what the client still sends.
    async fn run<S: ClientStream>(&self, io: ClientIo<S>, facts: &ConnFacts, signal: &Arc<Signal>) {
        let peer = facts.peer;
        let handle = io.handle();
        let info = Arc::new(ConnInfo {
            client: peer,
            local_port: facts.local_port,
            tls_version: facts.tls_version.map(NegotiatedVersion::as_str),
            activity: Arc::new(Activity::new()),
            refusal: facts.refusal,
        });
        let mut watch = signal.watch();
        let activity = info.activity.clone();
        let service = self.service.clone();
        let svc = service_fn(move |req| {
            let service = service.clone();
            let info = info.clone();
            // Boxed: hyper moves each request's future into a task of its own, and a pointer
            // is cheaper to move than the request's whole state (several KiB).
            Box::pin(async move { Ok::<_, Infallible>(service.handle(&info, req).await) })
        });
        let idle_timeout = self.service.idle_timeout;
        let mut draining = false;
        // Once an idle connection got GOAWAY: when weir closes it if hyper has not by then (a
        // client that never answers the GOAWAY's PING).
        let mut idle_close_at: Option<Instant> = None;
        // The connection lives in this block only: once it ends, hyper's handle on the stream
        // is gone and weir can take the stream back.
        let stop = {
            let conn = self.builder.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            loop {
                // Idle: no request in flight since `idle_since`. Busy: look again later.
                let deadline = idle_close_at.unwrap_or_else(|| {
                    activity
                        .idle_since()
                        .map_or_else(|| Instant::now() + idle_timeout, |idle| idle + idle_timeout)
                });
                tokio::select! {
                    biased;
                    result = conn.as_mut() => {
                        if let Err(err) = result {
                            debug!(%peer, %err, "client connection ended with an error");
                        }
                        break Stop::Finished;
                    }
                    shutdown = poll_fn(|cx| watch.poll_shutdown(cx, !draining)) => {
                        if shutdown == Shutdown::Forced {
                            break Stop::Forced;
                        }
                        // GOAWAY: streams in flight finish, no new ones are accepted.
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        let now = Instant::now();
                        if idle_close_at.take().is_some() && activity.idle_since().is_some() {
                            break Stop::Idle;
                        }
                        // (A stream that raced the GOAWAY is still served; hyper closes after
                        // it, or the idle timer starts again.)
                        if activity.idle_since().is_some_and(|t| t + idle_timeout <= now) {
                            // GOAWAY first, so the client knows no request was lost; hyper
                            // closes once the client has seen it.
                            idle_close_at = Some(now + CLOSE_LINGER);
                            if !draining {
                                draining = true;
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                    }
                }
            }
        };
        debug!(?stop, "connection loop done");
        let Ok(mut stream) = handle.into_stream() else {
            // Not reached: hyper's handle went with the connection future.
            debug!("client stream still shared");
            return;
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, stream.shutdown()).await;
        drain_and_close(stream.into_tcp(), CLOSE_LINGER).await;
    }
}

/// A connection's task, to spawn: plain and https connections are futures of different
/// types and sizes, and each is spawned as it is (a common enum around them would make every
/// plain connection's task larger).
pub enum ConnTask<P, T> {
    /// Plain HTTP: the HTTP/1 engine's future.
    Plain(P),
    /// https: TLS, then HTTP/1 or HTTP/2, on the heap.
    Tls(T),
}

/// Why the connection loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Finished,
    Forced,
    Idle,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    /// The connection future is allocated by `spawn` for every client connection.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let service = HttpService::new(
            "l".into(),
            weir_config::HttpSettings::default(),
            Duration::from_secs(60),
            Vec::new(),
            0,
            |_| None,
            Arc::new(crate::access_log::ChannelSink(tx)),
            tokio_util::task::TaskTracker::new(),
            Arc::new(crate::limits::Gate::default()),
        );
        let entry = Arc::new(HttpEntry::new(Arc::new(service), None));
        let client = TcpStream::connect(addr).await.unwrap();
        let life = Lifecycle {
            stop_accepting: Default::default(),
            force_close: Default::default(),
            connections: Default::default(),
            signal: Default::default(),
        };
        let gate = Arc::new(crate::limits::Gate::default());
        let admitted = gate.admit_connection(addr.ip());
        let ConnTask::Plain(serve) = entry.serve(client, addr, addr.port(), &life, admitted) else {
            panic!("a plain listener's connection is served as plain HTTP");
        };
        let size = std::mem::size_of_val(&serve);
        eprintln!("plain HTTP connection future: {size} bytes");
        // 384 bytes in a release build today (a 512-byte task cell), 392 in a debug one: an
        // idle HTTP/1 connection holds only its read loop (TLS, HTTP/2, each exchange and the
        // close live on the heap while they run). A regression guard: past 400 bytes the task
        // cell (128-byte aligned) grows to 640 bytes, and every idle connection with it (see
        // `-Zprint-type-sizes`; idle memory per connection is tracked by the benchmark).
        assert!(size <= 400, "the connection future is {size} bytes");
    }
}
