//! The validated configuration: plain data, immutable once built.
//!
//! Everything here has already passed validation: durations are positive, references resolve,
//! names are unique. The data path compiles this into its runtime snapshot; nothing downstream
//! re-checks it. Types can also be built in code (see `weir proxy`), so every struct with
//! defaults implements [`Default`] with the same values the file format documents.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Process-wide settings (`[runtime]`).
    pub runtime: Runtime,
    /// Logging (`[log]`).
    pub log: Log,
    /// Admin API (`[admin]`); `None` when the section is absent.
    pub admin: Option<Admin>,
    /// Listeners in file order (`[[listener]]`).
    pub listeners: Vec<Listener>,
    /// Server groups in file order (`[[group]]`).
    pub groups: Vec<Group>,
}

impl Config {
    /// The group with this name, if any.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// How long open connections may run on after SIGTERM/SIGINT before weir closes them.
    pub shutdown_grace: Duration,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            workers: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Log {
    /// Where access-log records go.
    pub access: AccessLogTarget,
    /// How access-log records are written.
    pub format: LogFormat,
}

/// Destination of the access log (`log.access`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AccessLogTarget {
    /// `"off"`: no access log at all (nothing is formatted).
    Off,
    /// `"stdout"` (the default).
    #[default]
    Stdout,
    /// `"stderr"`.
    Stderr,
    /// Any other string: a file path, appended to.
    File(PathBuf),
}

/// Format of access-log records (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// `key=value` pairs, one record per line.
    Text,
}

/// `[admin]`: the admin API, metrics and status page.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Address the admin API listens on.
    pub listen: SocketAddr,
    /// File holding the bearer token; required when `listen` is not loopback.
    pub token_file: Option<PathBuf>,
}

/// Protocol spoken by a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Layer-4 TCP forwarding.
    Tcp,
    /// Layer-4 UDP sessions.
    Udp,
    /// Plain HTTP/1.x and HTTP/2 (prior knowledge).
    Http,
    /// HTTP over TLS.
    Https,
}

impl Protocol {
    /// The name used in the config file and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// How weir closes a connection it decides to end (idle timeout, shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseMode {
    /// Orderly: FIN, drain what the peer still sends, then close (the default).
    #[default]
    Fin,
    /// Abortive: RST (SO_LINGER 0). Only when an operator asks for it.
    Rst,
}

/// TCP keep-alive probes on a socket (`tcp_keepalive = { idle, interval, count }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for TcpKeepalive {
    fn default() -> Self {
        TcpKeepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            count: 6,
        }
    }
}

/// `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Protocol spoken on the socket.
    pub protocol: Protocol,
    /// Addresses to bind: one per port when `bind` gives a port range.
    pub bind: Vec<SocketAddr>,
    /// Name of the default server group (validated to exist).
    pub group: String,
    /// Close a connection after this long with no byte in either direction (default 900 s).
    pub idle_timeout: Duration,
    /// How an idle or shut-down connection is closed (default FIN).
    pub idle_close: CloseMode,
    /// Pass a reset received from one side on as a reset to the other (default true).
    pub propagate_reset: bool,
    /// TCP keep-alive on client sockets; `None` leaves the kernel default (off).
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Listen backlog (default 1024).
    pub backlog: u32,
}

impl Listener {
    /// A listener with every optional field at its default.
    pub fn new(
        name: impl Into<String>,
        protocol: Protocol,
        bind: Vec<SocketAddr>,
        group: impl Into<String>,
    ) -> Self {
        Listener {
            name: name.into(),
            protocol,
            bind,
            group: group.into(),
            idle_timeout: Duration::from_secs(900),
            idle_close: CloseMode::Fin,
            propagate_reset: true,
            tcp_keepalive: None,
            backlog: 1024,
        }
    }
}

/// Server-selection algorithm of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Round robin, weights ignored.
    Rr,
    /// Smooth weighted round robin (the default).
    #[default]
    Wrr,
    /// Fewest active connections relative to weight.
    LeastConn,
    /// Source-IP consistent hashing with a Maglev lookup table.
    Maglev,
    /// Power of two random choices.
    Random2,
}

impl Algorithm {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rr => "rr",
            Algorithm::Wrr => "wrr",
            Algorithm::LeastConn => "least_conn",
            Algorithm::Maglev => "maglev",
            Algorithm::Random2 => "random2",
        }
    }
}

/// `[[group]]`: a set of servers and how to use them.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// How a server is picked.
    pub algorithm: Algorithm,
    /// The servers, in file order (at least one).
    pub servers: Vec<Server>,
    /// Active health checking.
    pub health_check: HealthCheck,
    /// Time allowed for a TCP connect to a server (default 5 s).
    pub connect_timeout: Duration,
    /// Further servers tried after a refused or timed-out connect (default 2).
    pub retries: u32,
    /// TCP keep-alive on server sockets; `None` leaves the kernel default (off).
    pub tcp_keepalive: Option<TcpKeepalive>,
}

impl Group {
    /// A group with every optional field at its default.
    pub fn new(name: impl Into<String>, servers: Vec<Server>) -> Self {
        Group {
            name: name.into(),
            algorithm: Algorithm::default(),
            servers,
            health_check: HealthCheck::default(),
            connect_timeout: Duration::from_secs(5),
            retries: 2,
            tcp_keepalive: None,
        }
    }
}

/// One server of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Stable identity within the group: the `name` key, or the address as written.
    /// Health state and counters are keyed by it, so they survive a reload.
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative weight, 0..=1000 (default 1). Weight 0 takes no new connections.
    pub weight: u32,
    /// Used only when no primary server is healthy.
    pub backup: bool,
}

impl Server {
    /// A primary server of weight 1 named after its address.
    pub fn new(address: SocketAddr) -> Self {
        Server {
            name: address.to_string(),
            address,
            weight: 1,
            backup: false,
        }
    }
}

/// `[group.health_check]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// What a probe does.
    pub kind: CheckKind,
    /// Time between probes of one server (default 2 s).
    pub interval: Duration,
    /// Time one probe may take (default 2 s, never above `interval`).
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up (default 3).
    pub healthy_threshold: u32,
    /// Consecutive failures that take an up server down (default 3).
    pub unhealthy_threshold: u32,
    /// Random delay added to each interval, up to this much (default: a tenth of `interval`).
    pub jitter: Duration,
    /// Probe this port instead of the server's.
    pub port: Option<u16>,
    /// Bind probes to this source address, so servers can recognise check traffic.
    pub source: Option<IpAddr>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            jitter: Duration::from_millis(200),
            port: None,
            source: None,
        }
    }
}

/// What a health probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// No active checks: servers are always considered healthy.
    None,
    /// A TCP connect, then an orderly close.
    Tcp,
    /// An HTTP/1.1 request with `Connection: close`; the status decides.
    Http(HttpCheck),
}

/// Parameters of an HTTP health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// Request method (default `GET`).
    pub method: String,
    /// Request target (default `/`).
    pub path: String,
    /// `Host` header; `None` uses the server's address.
    pub host: Option<String>,
    /// Statuses that count as healthy (default `2xx` and `3xx`).
    pub expect_status: Vec<StatusMatch>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            method: "GET".to_string(),
            path: "/".to_string(),
            host: None,
            expect_status: vec![StatusMatch::Class(2), StatusMatch::Class(3)],
        }
    }
}

/// One entry of `expect_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// `"2xx"`: every status whose first digit is this.
    Class(u8),
    /// `"204"` or `204`: exactly this status.
    Code(u16),
    /// `"200-299"`: an inclusive range.
    Range(u16, u16),
}

impl StatusMatch {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Class(c) => status / 100 == u16::from(c),
            StatusMatch::Code(c) => status == c,
            StatusMatch::Range(lo, hi) => (lo..=hi).contains(&status),
        }
    }
}
