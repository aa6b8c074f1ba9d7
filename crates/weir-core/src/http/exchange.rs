//! One request/response exchange of an HTTP/2 client as it goes: its record, the server
//! connection it holds, and what happens when the response body ends — the record is written,
//! the connection returns to the pool (or is dropped), the server's in-flight count drops, the
//! client connection learns it is idle again. [`new_record`] is shared with the HTTP/1 engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::time::Instant;

use super::body::{BodyEnd, Completion, RespBody};
use super::pool::Sender;
use super::service::HttpGroup;
use crate::access_log::RecordSink;
use crate::end::{End, EndBy, EndHow, EndPhase, HttpRecord, Record};
use crate::limits::RETRY_AFTER;
use crate::upstream::ActiveGuard;

/// Activity of a client connection, shared by its requests and its connection loop.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `origin` when the connection last became idle.
    idle_since_ms: AtomicU64,
}

impl Activity {
    /// A new connection, idle.
    pub fn new() -> Self {
        Activity {
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// A request started.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request ended.
    pub fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = self.origin.elapsed().as_millis() as u64;
            self.idle_since_ms.store(ms, Ordering::Release);
        }
    }

    /// When the connection became idle, or `None` while a request is in flight.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.origin + Duration::from_millis(ms))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// The server side of an exchange, held until the response body ends.
pub struct UpstreamLeg {
    /// The group.
    pub group: Arc<HttpGroup>,
    /// Server index in the group.
    pub server: usize,
    /// The connection, returned to the pool after a complete exchange when it may be reused.
    pub sender: Option<Sender>,
    /// The server's `Keep-Alive: timeout=N`.
    pub keep_alive_hint: Option<Duration>,
    /// When the request was sent (for `upstream_response_time`).
    pub sent_at: Instant,
    /// Counts the request against the server while it runs.
    pub _guard: ActiveGuard,
}

/// Bytes of the request body.
pub enum BytesIn {
    /// Known up front.
    Known(u64),
    /// Counted as they stream.
    Counted(Arc<AtomicU64>),
}

/// The request's completion: everything to do when its response body ends.
pub struct Exchange {
    activity: Arc<Activity>,
    sink: Arc<dyn RecordSink>,
    /// The record, when records are wanted (boxed: the exchange lives in every request
    /// future's state, and a smaller future is cheaper to move and to spawn).
    pub record: Option<Box<HttpRecord>>,
    started: Instant,
    /// The end when the body completes normally.
    pub end: End,
    /// The server side, if the response came from a server.
    pub upstream: Option<UpstreamLeg>,
    /// Request body bytes.
    pub bytes_in: BytesIn,
}

impl Exchange {
    /// Starts an exchange; `record` is `None` when the sink does not want records.
    pub fn new(
        activity: Arc<Activity>,
        sink: Arc<dyn RecordSink>,
        record: Option<HttpRecord>,
    ) -> Self {
        Exchange {
            activity,
            sink,
            record: record.map(Box::new),
            started: Instant::now(),
            end: End::new(EndBy::Upstream, EndHow::Done, EndPhase::Response),
            upstream: None,
            bytes_in: BytesIn::Known(0),
        }
    }

    /// Edits the record, if there is one.
    pub fn note(&mut self, f: impl FnOnce(&mut HttpRecord)) {
        if let Some(record) = &mut self.record {
            f(record);
        }
    }

    /// weir's own answer: `status` with a one-line plain-text body, ending the exchange with
    /// `end`. `close` adds `Connection: close`.
    pub fn respond(mut self, status: StatusCode, end: End, close: bool) -> Response<RespBody> {
        self.end = end;
        self.note(|r| r.status = status.as_u16());
        let body = format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error")
        );
        let mut response = Response::new(RespBody::full(Bytes::from(body), Some(Box::new(self))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl Completion for Exchange {
    fn complete(mut self: Box<Self>, body_end: BodyEnd, bytes_out: u64) {
        let now = Instant::now();
        let end = match body_end {
            BodyEnd::Complete => self.end,
            BodyEnd::UpstreamFailed { reset } => End::new(
                EndBy::Upstream,
                if reset { EndHow::Rst } else { EndHow::Fin },
                EndPhase::Response,
            ),
            BodyEnd::Abandoned => End::new(EndBy::Client, EndHow::Error, EndPhase::Response),
        };
        let sent_at = self.upstream.as_ref().map(|leg| leg.sent_at);
        if let Some(mut leg) = self.upstream.take()
            && let Some(sender) = leg.sender.take()
            && body_end == BodyEnd::Complete
        {
            leg.group
                .pool
                .checkin(leg.server, sender, leg.keep_alive_hint);
        }
        let bytes_in = match &self.bytes_in {
            BytesIn::Known(n) => *n,
            BytesIn::Counted(counter) => counter.load(Ordering::Relaxed),
        };
        let started = self.started;
        if let Some(mut record) = self.record.take() {
            record.end(end);
            record.request_time = now.duration_since(started);
            record.upstream_response_time = sent_at.map(|t| now.duration_since(t));
            record.bytes_in = bytes_in;
            record.bytes_out = bytes_out;
            self.sink.record(Record::Http(*record));
        }
        self.activity.end();
    }
}

/// A fresh record for a request on `listener` from `client`.
pub fn new_record(listener: &str, tls: bool, client: std::net::SocketAddr) -> HttpRecord {
    HttpRecord {
        time: SystemTime::now(),
        listener: listener.to_string(),
        protocol: if tls { "https" } else { "http" },
        client,
        http_version: "HTTP/1.1",
        tls_version: None,
        method: "-".to_string(),
        host: None,
        path: String::new(),
        status: 0,
        upstream_status: None,
        group: None,
        server: None,
        server_addr: None,
        retries: 0,
        request_time: Duration::ZERO,
        upstream_connect_time: None,
        upstream_header_time: None,
        upstream_response_time: None,
        bytes_in: 0,
        bytes_out: 0,
        end_by: EndBy::Weir,
        end_how: EndHow::Error,
        end_phase: EndPhase::Request,
        end_reason: None,
    }
}
