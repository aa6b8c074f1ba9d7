//! The end record: who ended a connection, how, and in which phase (SPEC §8).
//!
//! A record is built as the connection goes — the handler fills in the server, the connect
//! time and the byte counts as they happen, and the first event that ends the connection is
//! written once with [`ConnRecord::end`]. Nothing is reconstructed afterwards.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Who ended a connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndBy {
    /// The client (downstream) side.
    Client,
    /// The server (upstream) side.
    Upstream,
    /// weir itself: a timeout, a policy, a shutdown, an internal error.
    Weir,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndHow {
    /// Normal completion (an HTTP exchange that finished as it should).
    Done,
    /// An orderly close: the side sent FIN (a zero-length read).
    Fin,
    /// An abortive close: the side sent RST (ECONNRESET / EPIPE).
    Rst,
    /// A timer ran out (see the reason for which one).
    Timeout,
    /// The server refused the connection (ECONNREFUSED).
    Refused,
    /// Any other I/O or protocol error.
    Error,
    /// An access-control or limit decision.
    Policy,
    /// weir was shutting down.
    Shutdown,
}

/// The phase the connection was in when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndPhase {
    /// Before or right after accept (ACL, limits).
    Accept,
    /// During a TLS handshake.
    Tls,
    /// Reading a request from the client.
    Request,
    /// Connecting to a server.
    Connect,
    /// Waiting for or reading a server's response.
    Response,
    /// Forwarding bytes both ways (TCP, WebSocket).
    Tunnel,
    /// Idle between requests on a keep-alive connection.
    Idle,
}

macro_rules! display_as_serde_name {
    ($($ty:ty => { $($variant:ident = $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// The name used in logs and metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_serde_name! {
    EndBy => { Client = "client", Upstream = "upstream", Weir = "weir" }
    EndHow => {
        Done = "done", Fin = "fin", Rst = "rst", Timeout = "timeout", Refused = "refused",
        Error = "error", Policy = "policy", Shutdown = "shutdown",
    }
    EndPhase => {
        Accept = "accept", Tls = "tls", Request = "request", Connect = "connect",
        Response = "response", Tunnel = "tunnel", Idle = "idle",
    }
}

/// Who ended it, how, where, and (for weir-side ends) why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct End {
    /// Who.
    pub by: EndBy,
    /// How.
    pub how: EndHow,
    /// In which phase.
    pub phase: EndPhase,
    /// A short reason for weir-side ends (`idle_timeout`, `connect_timeout`, `shutdown`…).
    pub reason: Option<&'static str>,
}

impl End {
    /// An end without a reason (client or upstream ends).
    pub const fn new(by: EndBy, how: EndHow, phase: EndPhase) -> Self {
        End {
            by,
            how,
            phase,
            reason: None,
        }
    }

    /// A weir-side end with its reason.
    pub const fn weir(how: EndHow, phase: EndPhase, reason: &'static str) -> Self {
        End {
            by: EndBy::Weir,
            how,
            phase,
            reason: Some(reason),
        }
    }

    /// A request the client got wrong (bytes weir refuses), with why.
    pub const fn client_error(reason: &'static str) -> Self {
        End {
            by: EndBy::Client,
            how: EndHow::Error,
            phase: EndPhase::Request,
            reason: Some(reason),
        }
    }
}

/// Everything the access log says about one TCP connection.
///
/// The names are shared with the listener and the group (`Arc<str>`), so a record costs no
/// allocation: it is built for every connection, whether or not the log is on.
#[derive(Debug, Clone, Serialize)]
pub struct ConnRecord {
    /// Wall-clock time the connection was accepted (RFC 3339 in the log).
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
    /// Listener name.
    pub listener: Arc<str>,
    /// Always `"tcp"` for now; the field leaves room for other kinds.
    pub protocol: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// Group the connection was sent to.
    pub group: Arc<str>,
    /// Name of the server that served it, if a connect succeeded.
    pub server: Option<Arc<str>>,
    /// Address of that server.
    pub server_addr: Option<SocketAddr>,
    /// Connect attempts that failed before the one that succeeded (or before giving up).
    pub retries: u32,
    /// Time spent connecting to the server that served the connection.
    #[serde(serialize_with = "ser_opt_secs")]
    pub connect_time: Option<Duration>,
    /// Time from accept to the end.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Bytes received from the client (and sent on to the server).
    pub bytes_in: u64,
    /// Bytes received from the server (and sent on to the client).
    pub bytes_out: u64,
    /// Who ended the connection.
    pub end_by: EndBy,
    /// How.
    pub end_how: EndHow,
    /// In which phase.
    pub end_phase: EndPhase,
    /// Why, for weir-side ends.
    pub end_reason: Option<&'static str>,
}

impl ConnRecord {
    /// A record for a connection just accepted; the end fields are provisional until [`end`].
    ///
    /// [`end`]: ConnRecord::end
    pub fn accepted(listener: Arc<str>, client: SocketAddr, group: Arc<str>) -> Self {
        ConnRecord {
            time: SystemTime::now(),
            listener,
            protocol: "tcp",
            client,
            group,
            server: None,
            server_addr: None,
            retries: 0,
            connect_time: None,
            duration: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            end_by: EndBy::Weir,
            end_how: EndHow::Error,
            end_phase: EndPhase::Accept,
            end_reason: None,
        }
    }

    /// Writes the end fields.
    pub fn end(&mut self, end: End) {
        self.end_by = end.by;
        self.end_how = end.how;
        self.end_phase = end.phase;
        self.end_reason = end.reason;
    }

    /// The end fields as one value.
    pub fn ending(&self) -> End {
        End {
            by: self.end_by,
            how: self.end_how,
            phase: self.end_phase,
            reason: self.end_reason,
        }
    }
}

/// Everything the access log says about one HTTP request (or one rejected request head).
#[derive(Debug, Clone, Serialize)]
pub struct HttpRecord {
    /// Wall-clock time the request head was complete (or the connection accepted, for
    /// requests rejected before that).
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
    /// Listener name.
    pub listener: String,
    /// `"http"` or `"https"`.
    pub protocol: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub http_version: &'static str,
    /// `TLSv1.2` / `TLSv1.3` on https listeners.
    pub tls_version: Option<&'static str>,
    /// Request method (`-` when the head could not be parsed).
    pub method: String,
    /// Host the request named (authority or Host header), if any.
    pub host: Option<String>,
    /// Request path; the query string only when the listener logs it.
    pub path: String,
    /// Status the client got; 0 when weir closed the connection without an answer (a TLS
    /// handshake sent to a plain HTTP port).
    pub status: u16,
    /// Status the server sent, `-` when no response came from a server.
    #[serde(serialize_with = "ser_upstream_status")]
    pub upstream_status: Option<u16>,
    /// Group the request was routed to.
    pub group: Option<String>,
    /// Server that answered (or was last tried).
    pub server: Option<String>,
    /// Its address.
    pub server_addr: Option<SocketAddr>,
    /// Failed attempts (connect failures, a stale pooled connection) before the last one.
    pub retries: u32,
    /// Time from the complete request head to the end of the response.
    #[serde(serialize_with = "ser_secs")]
    pub request_time: Duration,
    /// Time connecting to the server (0 on a reused connection); none without a server.
    #[serde(serialize_with = "ser_opt_secs")]
    pub upstream_connect_time: Option<Duration>,
    /// Time until the server's response head.
    #[serde(serialize_with = "ser_opt_secs")]
    pub upstream_header_time: Option<Duration>,
    /// Time until the server's response body ended.
    #[serde(serialize_with = "ser_opt_secs")]
    pub upstream_response_time: Option<Duration>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Who ended the request.
    pub end_by: EndBy,
    /// How.
    pub end_how: EndHow,
    /// In which phase.
    pub end_phase: EndPhase,
    /// Why, for weir-side ends.
    pub end_reason: Option<&'static str>,
}

impl HttpRecord {
    /// Writes the end fields.
    pub fn end(&mut self, end: End) {
        self.end_by = end.by;
        self.end_how = end.how;
        self.end_phase = end.phase;
        self.end_reason = end.reason;
    }
}

/// One access-log record.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A TCP connection (tcp listeners, and tunnels after an HTTP upgrade).
    Tcp(ConnRecord),
    /// An HTTP request.
    Http(HttpRecord),
}

fn ser_upstream_status<S: serde::Serializer>(
    status: &Option<u16>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match status {
        Some(code) => s.serialize_u16(*code),
        None => s.serialize_str("-"),
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Seconds with microsecond precision, as NGINX and HAProxy logs write durations.
    s.serialize_f64((d.as_micros() as f64) / 1e6)
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_secs(d, s),
        None => s.serialize_none(),
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::clock::Rfc3339(*t))
}
