//! What an `http`/`https` listener's requests share ([`HttpService`], [`HttpGroup`]), and the
//! request path of HTTP/2 clients, whose requests hyper parses: check → route → pick a server
//! (cookie first) → pooled or new HTTP/1.1 connection (hyper's client) → send, retrying where
//! it is safe → stream the response back, recording the exchange as it goes. HTTP/1 clients
//! take the same steps in [`super::h1`].
//!
//! Retries follow SPEC §4: a refused or timed-out connect moves to another server; a request
//! that fails on a *reused* connection before any response byte (the stale keep-alive race) is
//! sent once more on a fresh connection when its method is idempotent and its body is in
//! memory; otherwise the client gets 502 and the record names the server's close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use weir_config::HttpSettings;

use super::body::{ReqBody, RespBody, err_is_reset};
use super::exchange::{Activity, BytesIn, Exchange, UpstreamLeg, new_record};
use super::headers::{self, ClientInfo};
use super::persistence::Persist;
use super::pool::{GroupPool, Sender, handshake};
use super::route::{Route, Router, host_of, redirect_location};
use super::validate::{Limits, check_request};
use crate::access_log::RecordSink;
use crate::end::{End, EndBy, EndHow, EndPhase, Record};
use crate::limits::{Gate, Refusal};
use crate::tls::NegotiatedVersion;
use crate::upstream::Upstream;
use crate::upstream::connect::connect_one;

/// Request bodies up to this size are read completely before the request is sent: a malformed
/// body never reaches a server, and the request can be retried.
const BUFFERED_BODY: usize = 64 * 1024;

/// One group as HTTP listeners use it.
pub struct HttpGroup {
    /// Selection, health, live state.
    pub upstream: Arc<Upstream>,
    /// Idle keep-alive connections for HTTP/2 clients' requests (hyper's client).
    pub pool: GroupPool,
    /// Idle keep-alive connections for HTTP/1 clients' requests.
    pub h1_pool: super::h1::pool::RawPool,
    /// Cookie persistence, if configured.
    pub persist: Option<Persist>,
}

impl HttpGroup {
    /// Builds the HTTP side of a group.
    pub fn new(upstream: Arc<Upstream>, workers: usize) -> Self {
        let config = &upstream.config;
        HttpGroup {
            pool: GroupPool::new(upstream.servers.len(), &config.pool),
            h1_pool: super::h1::pool::RawPool::new(upstream.servers.len(), workers, &config.pool),
            persist: config
                .persistence
                .as_ref()
                .map(|p| Persist::new(p, &config.name, &config.servers)),
            upstream,
        }
    }

    /// Whether `server` may take new requests: healthy, not draining, weight above zero.
    pub fn eligible(&self, server: usize) -> bool {
        let (Some(state), Some(cfg)) = (
            self.upstream.servers.get(server),
            self.upstream.config.servers.get(server),
        ) else {
            return false;
        };
        state.is_healthy() && !state.is_draining() && cfg.weight > 0
    }
}

/// Everything an HTTP listener's requests share.
pub struct HttpService {
    /// Listener name.
    pub listener: String,
    /// Whether the listener is https.
    pub tls: bool,
    /// The listener's HTTP settings.
    pub settings: HttpSettings,
    /// Client keep-alive idle time between requests (the listener's `idle_timeout`).
    pub idle_timeout: Duration,
    /// Host/path rules.
    pub router: Router,
    /// Every group, by runtime index.
    pub groups: Vec<Arc<HttpGroup>>,
    /// The listener's default group.
    pub default_group: usize,
    /// Where records go.
    pub sink: Arc<dyn RecordSink>,
    /// Server connection drivers and tunnels.
    pub tasks: TaskTracker,
    /// The listener's ACL and limits.
    pub gate: Arc<Gate>,
    limits: Limits,
}

/// Facts about the HTTP/2 client connection a request came on.
pub struct ConnInfo {
    /// Client address.
    pub client: SocketAddr,
    /// Listener port the client connected to.
    pub local_port: u16,
    /// `TLSv1.3` etc. on https.
    pub tls_version: Option<&'static str>,
    /// In-flight requests and idle time.
    pub activity: Arc<Activity>,
    /// Why the listener's ACL or limits turned this connection away, if they did: every
    /// request on it is answered 403 or 503.
    pub refusal: Option<Refusal>,
}

impl HttpService {
    /// Builds a listener's service.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        listener: String,
        settings: HttpSettings,
        idle_timeout: Duration,
        groups: Vec<Arc<HttpGroup>>,
        default_group: usize,
        group_index: impl Fn(&str) -> Option<usize>,
        sink: Arc<dyn RecordSink>,
        tasks: TaskTracker,
        gate: Arc<Gate>,
    ) -> Self {
        HttpService {
            listener,
            tls: settings.tls.is_some(),
            router: Router::new(&settings.rules, group_index),
            limits: Limits::from(&settings),
            settings,
            idle_timeout,
            groups,
            default_group,
            sink,
            tasks,
            gate,
        }
    }

    /// Records a request weir answered, or closed without an answer (`status` `None`,
    /// recorded as 0), before it could read it.
    pub(crate) fn log_rejected(
        &self,
        peer: SocketAddr,
        tls_version: Option<NegotiatedVersion>,
        status: Option<StatusCode>,
        end: End,
    ) {
        if !self.sink.wants_records() {
            return;
        }
        let mut record = new_record(&self.listener, self.tls, peer);
        record.tls_version = tls_version.map(NegotiatedVersion::as_str);
        record.status = status.map_or(0, |s| s.as_u16());
        record.end(end);
        self.sink.record(Record::Http(record));
    }

    /// Handles one request of an HTTP/2 client to its response. Never fails: every problem is
    /// an answer.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<RespBody> {
        conn.activity.begin();
        let record = self
            .sink
            .wants_records()
            .then(|| self.start_record(conn, &req));
        let exchange = Exchange::new(conn.activity.clone(), self.sink.clone(), record);
        let refused = conn.refusal.or_else(|| self.gate.admit_request().err());
        if let Some(refusal) = refused {
            let status = match refusal {
                Refusal::Acl => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let phase = if conn.refusal.is_some() {
                EndPhase::Accept
            } else {
                EndPhase::Request
            };
            let end = End::weir(EndHow::Policy, phase, refusal.reason());
            // A refused connection is closed after its answer; a refused request is not.
            return exchange.respond(status, end, conn.refusal.is_some());
        }
        self.proxy(conn, req, exchange).await
    }

    fn start_record(&self, conn: &ConnInfo, req: &Request<Incoming>) -> crate::end::HttpRecord {
        let mut record = new_record(&self.listener, self.tls, conn.client);
        record.tls_version = conn.tls_version;
        record.http_version = headers::version_name(req.version());
        record.method = req.method().as_str().to_string();
        record.host = host_of(req.uri(), req.headers());
        record.path = match (self.settings.log_query, req.uri().path_and_query()) {
            (true, Some(pq)) => pq.as_str().to_string(),
            _ => req.uri().path().to_string(),
        };
        record
    }

    async fn proxy(
        &self,
        conn: &ConnInfo,
        req: Request<Incoming>,
        exchange: Exchange,
    ) -> Response<RespBody> {
        let (mut parts, body) = req.into_parts();
        if let Err(reject) = check_request(&parts, &self.limits) {
            return exchange.respond(reject.status, End::client_error(reject.reason), true);
        }
        let host = host_of(&parts.uri, &parts.headers);
        let (route, rule_rate) = self
            .router
            .route_with_rate(host.as_deref(), parts.uri.path());
        if rule_rate.is_some_and(|rate| !rate.admit()) {
            let end = End::weir(EndHow::Policy, EndPhase::Request, Refusal::RuleQps.reason());
            return exchange.respond(StatusCode::SERVICE_UNAVAILABLE, end, false);
        }
        let group_index = match route {
            Route::Group(index) => index,
            Route::Default => self.default_group,
            Route::Redirect(rule) => return self.redirect(exchange, rule, &parts),
        };
        let Some(group) = self.groups.get(group_index).cloned() else {
            return exchange.respond(
                StatusCode::BAD_GATEWAY,
                End::weir(EndHow::Error, EndPhase::Request, "no_group"),
                false,
            );
        };
        let mut exchange = exchange;
        exchange.note(|r| r.group = Some(group.upstream.name().to_string()));
        let body = match self.read_body(body, &parts.headers).await {
            Ok((body, bytes_in)) => {
                exchange.bytes_in = bytes_in;
                body
            }
            Err(end) => return exchange.respond(StatusCode::BAD_REQUEST, end, true),
        };
        let pinned = self.prepare_request(conn, &group, &mut parts);
        let head = UpstreamHead::new(parts);
        self.send(exchange, group, head, body, pinned, conn.client)
            .await
    }

    /// Reads and strips the persistence cookie (returning the server it pins to, if that server
    /// may take the request) and rewrites the headers for the server.
    fn prepare_request(
        &self,
        conn: &ConnInfo,
        group: &HttpGroup,
        parts: &mut http::request::Parts,
    ) -> Option<usize> {
        let pinned = group.persist.as_ref().and_then(|persist| {
            let pinned = persist
                .pinned(&parts.headers)
                .filter(|&server| group.eligible(server));
            persist.strip_request(&mut parts.headers);
            pinned
        });
        let client = ClientInfo {
            addr: conn.client,
            local_port: conn.local_port,
            tls: self.tls,
            version: parts.version,
        };
        headers::prepare_request(&mut parts.headers, &client);
        pinned
    }

    fn redirect(
        &self,
        exchange: Exchange,
        rule: &weir_config::Redirect,
        parts: &http::request::Parts,
    ) -> Response<RespBody> {
        let scheme = if self.tls { "https" } else { "http" };
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let location = redirect_location(rule, scheme, &authority, pq);
        let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        let mut response = exchange.respond(
            status,
            End::weir(EndHow::Done, EndPhase::Request, "redirect"),
            false,
        );
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }

    /// Reads up to [`BUFFERED_BODY`] of the request body; a body that ends within it is sent
    /// whole, a longer one streams on after the buffered prefix.
    async fn read_body(
        &self,
        mut body: Incoming,
        headers: &http::HeaderMap,
    ) -> Result<(ReqBody, BytesIn), End> {
        if body.is_end_stream() && !headers.contains_key(header::TRANSFER_ENCODING) {
            return Ok((ReqBody::Empty, BytesIn::Known(0)));
        }
        let mut buffered = BytesMut::new();
        let deadline = Instant::now() + self.settings.request_header_timeout;
        loop {
            let frame = match tokio::time::timeout_at(
                deadline,
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)),
            )
            .await
            {
                Ok(frame) => frame,
                Err(_) => {
                    // Slow body: stop buffering and stream the rest.
                    return Ok(streamed(buffered.freeze(), body));
                }
            };
            match frame {
                None => {
                    let n = buffered.len() as u64;
                    return Ok((ReqBody::Full(Some(buffered.freeze())), BytesIn::Known(n)));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffered.extend_from_slice(&data);
                    }
                    if buffered.len() >= BUFFERED_BODY {
                        return Ok(streamed(buffered.freeze(), body));
                    }
                }
                Some(Err(err)) => {
                    let how = if err_is_reset(&err) {
                        EndHow::Rst
                    } else {
                        EndHow::Error
                    };
                    return Err(End::new(EndBy::Client, how, EndPhase::Request));
                }
            }
        }
    }

    /// Picks servers, connects or reuses, sends, and turns the outcome into the response.
    async fn send(
        &self,
        mut exchange: Exchange,
        group: Arc<HttpGroup>,
        head: UpstreamHead,
        body: ReqBody,
        pinned: Option<usize>,
        client: SocketAddr,
    ) -> Response<RespBody> {
        let config = &group.upstream.config;
        let idempotent = head.method.is_idempotent();
        let mut tried: Vec<usize> = Vec::new();
        let mut pinned = pinned;
        let mut failures: u32 = 0;
        let mut stale_retry_used = false;
        let mut force_fresh = false;
        let mut last_failure: Option<(usize, End)> = None;
        let mut body = Some(body);
        let mut head = Some(head);

        loop {
            let Some(server) = pinned
                .take()
                .or_else(|| group.upstream.pick_next(client.ip(), &tried))
            else {
                let end = last_failure.map(|(_, end)| end).unwrap_or(End::weir(
                    EndHow::Error,
                    EndPhase::Connect,
                    "no_server",
                ));
                exchange.note(|r| r.retries = failures.saturating_sub(1));
                return exchange.respond(StatusCode::BAD_GATEWAY, end, false);
            };
            let state = group.upstream.servers[server].clone();
            exchange.note(|r| {
                r.server = Some(state.name.to_string());
                r.server_addr = Some(state.address);
            });
            let connect_started = Instant::now();
            let pooled = if std::mem::take(&mut force_fresh) {
                None
            } else {
                group.pool.checkout(server)
            };
            let reused = pooled.is_some();
            let sender = match pooled {
                Some(sender) => sender,
                None => match self.connect(&group, server).await {
                    Ok(sender) => sender,
                    Err(end) => {
                        tried.push(server);
                        failures += 1;
                        last_failure = Some((server, end));
                        if failures > config.retries {
                            exchange.note(|r| r.retries = failures - 1);
                            return exchange.respond(StatusCode::BAD_GATEWAY, end, false);
                        }
                        continue;
                    }
                },
            };
            exchange.note(|r| {
                r.upstream_connect_time = Some(if reused {
                    Duration::ZERO
                } else {
                    connect_started.elapsed()
                })
            });

            let (Some(this_head), Some(this_body)) = (head.take(), body.take()) else {
                return exchange.respond(
                    StatusCode::BAD_GATEWAY,
                    End::weir(EndHow::Error, EndPhase::Response, "internal"),
                    false,
                );
            };
            // Keep a copy for the one stale-connection retry, only when it may happen.
            let replay = (reused && idempotent && !stale_retry_used)
                .then(|| this_body.replay().map(|b| (this_head.clone(), b)))
                .flatten();
            let guard = state.open_connection();
            let sent_at = Instant::now();
            let request = this_head.into_request(this_body);
            let (outcome, sender) = send_request(sender, request, config.request_timeout).await;
            match outcome {
                Err(_elapsed) => {
                    drop(sender); // the exchange is abandoned: the connection closes
                    let end = End::weir(EndHow::Timeout, EndPhase::Response, "request_timeout");
                    exchange.note(|r| r.retries = failures);
                    return exchange.respond(StatusCode::GATEWAY_TIMEOUT, end, false);
                }
                Ok(Ok(response)) => {
                    exchange.note(|r| {
                        r.retries = failures;
                        r.upstream_header_time = Some(sent_at.elapsed());
                    });
                    let leg = UpstreamLeg {
                        group: group.clone(),
                        server,
                        sender,
                        keep_alive_hint: None,
                        sent_at,
                        _guard: guard,
                    };
                    return self.respond_upstream(exchange, leg, response);
                }
                Ok(Err(mut err)) => {
                    if let Some(unsent) = err.take_message() {
                        // The connection was gone before anything was written: nothing was
                        // sent, so any request may go again, on another connection.
                        let (parts, unsent_body) = unsent.into_parts();
                        head = Some(UpstreamHead::new(parts));
                        body = Some(unsent_body);
                        pinned = Some(server);
                        force_fresh = true;
                        continue;
                    }
                    let how = send_error_how(err.error());
                    let end = End::new(EndBy::Upstream, how, EndPhase::Response);
                    // Only a closed or reset connection is the stale keep-alive race; an
                    // invalid response is not retried.
                    if how != EndHow::Error
                        && let Some((again_head, again_body)) = replay
                    {
                        // The stale keep-alive race: retry once on a fresh connection.
                        stale_retry_used = true;
                        failures += 1;
                        head = Some(again_head);
                        body = Some(again_body);
                        pinned = Some(server);
                        force_fresh = true;
                        continue;
                    }
                    exchange.note(|r| r.retries = failures);
                    let mut end = end;
                    if reused {
                        end.reason = Some("reused_connection_closed");
                    }
                    return exchange.respond(StatusCode::BAD_GATEWAY, end, false);
                }
            }
        }
    }

    async fn connect(&self, group: &HttpGroup, server: usize) -> Result<Sender, End> {
        let config = &group.upstream.config;
        let state = &group.upstream.servers[server];
        let stream = connect_one(state, config).await?;
        handshake(stream, &self.tasks, state.address)
            .await
            .map_err(|_| End::new(EndBy::Upstream, EndHow::Error, EndPhase::Connect))
    }

    fn respond_upstream(
        &self,
        mut exchange: Exchange,
        mut leg: UpstreamLeg,
        response: Response<Incoming>,
    ) -> Response<RespBody> {
        let (mut parts, body) = response.into_parts();
        let status = parts.status;
        exchange.note(|r| {
            r.status = status.as_u16();
            r.upstream_status = Some(status.as_u16());
        });
        let reusable =
            parts.version == Version::HTTP_11 && !headers::connection_has(&parts.headers, "close");
        leg.keep_alive_hint = headers::keep_alive_timeout(&parts.headers);
        if !reusable {
            leg.sender = None;
        }
        headers::prepare_response(&mut parts.headers);
        if let Some(persist) = &leg.group.persist {
            persist.on_response(&mut parts.headers, leg.server);
        }
        exchange.upstream = Some(leg);
        Response::from_parts(parts, RespBody::upstream(body, Some(Box::new(exchange))))
    }
}

/// A request head as sent to a server: HTTP/1.1, origin-form target, Host always present.
#[derive(Clone)]
pub(super) struct UpstreamHead {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl UpstreamHead {
    pub(super) fn new(mut parts: http::request::Parts) -> Self {
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        let uri = match parts.uri.path_and_query() {
            Some(pq) if parts.uri.authority().is_some() => {
                Uri::from_maybe_shared(Bytes::copy_from_slice(pq.as_str().as_bytes()))
                    .unwrap_or(parts.uri)
            }
            _ => parts.uri,
        };
        UpstreamHead {
            method: parts.method,
            uri,
            headers: parts.headers,
        }
    }

    pub(super) fn into_request(self, body: ReqBody) -> Request<ReqBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        *request.version_mut() = Version::HTTP_11;
        request
    }
}

fn streamed(prefix: Bytes, rest: Incoming) -> (ReqBody, BytesIn) {
    let received = Arc::new(AtomicU64::new(prefix.len() as u64));
    let body = ReqBody::Stream {
        prefix: (!prefix.is_empty()).then_some(prefix),
        rest,
        received: received.clone(),
    };
    (body, BytesIn::Counted(received))
}

/// How a server ended an exchange that failed before a complete response head: a reset, an
/// invalid response, or a close.
fn send_error_how(err: &hyper::Error) -> EndHow {
    if err_is_reset(err) {
        EndHow::Rst
    } else if err.is_parse() || err.is_parse_status() {
        EndHow::Error
    } else {
        EndHow::Fin
    }
}

/// Sends `request` on `sender` within `timeout`. hyper can lose a request handed to a
/// connection that closes at that very moment (it stays queued until the handle is dropped),
/// so the send also watches the connection's driver: when the connection is gone, the handle
/// is dropped, which hands a request that was never written back through `take_message`.
/// Returns the handle unless it had to be dropped.
async fn send_request(
    mut sender: Sender,
    request: Request<ReqBody>,
    timeout: Duration,
) -> (
    Result<
        Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ReqBody>>>,
        tokio::time::error::Elapsed,
    >,
    Option<Sender>,
) {
    let send = sender.send.try_send_request(request);
    let closed = sender.closed.clone();
    tokio::pin!(send);
    let mut sender = Some(sender);
    let outcome = tokio::time::timeout(timeout, async {
        tokio::select! {
            biased;
            result = &mut send => return result,
            _ = closed.cancelled() => {}
        }
        // The connection ended while the request was on its way: release it and let the
        // request come back (or its answer, if it made it).
        sender = None;
        send.await
    })
    .await;
    (outcome, sender)
}
