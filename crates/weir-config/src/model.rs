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
    /// Whether each worker forwards its `tcp` listeners' connections through one io_uring, and
    /// makes its other small sends together in one io_uring system call when it goes idle
    /// (where the kernel has io_uring).
    pub io_uring: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            workers: None,
            shutdown_grace: Duration::from_secs(30),
            io_uring: true,
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
    /// Close a connection after this long with no byte in either direction (default 900 s for
    /// `tcp` and `udp`; [`HTTP_IDLE_TIMEOUT`] for `http` and `https`, where it is the client
    /// keep-alive idle time between requests).
    pub idle_timeout: Duration,
    /// How an idle or shut-down connection is closed (default FIN).
    pub idle_close: CloseMode,
    /// Pass a reset received from one side on as a reset to the other (default true).
    pub propagate_reset: bool,
    /// `tcp` listeners: move bulk transfers socket → kernel pipe → socket with splice(2)
    /// instead of copying them through weir's memory (default false).
    pub splice: bool,
    /// TCP keep-alive on client sockets; `None` leaves the kernel default (off).
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Listen backlog (default 1024).
    pub backlog: u32,
    /// HTTP settings: `Some` for `http` and `https` listeners, `None` for `tcp` and `udp`.
    pub http: Option<HttpSettings>,
    /// Who may connect (`acl = { allow = [...] }` or `{ deny = [...] }`); `None` lets everyone in.
    pub acl: Option<Acl>,
    /// Connection and request limits (`limits = { ... }`).
    pub limits: Limits,
}

/// A listener's access-control list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    /// Only clients in these networks may connect.
    Allow(Vec<IpNet>),
    /// Clients in these networks may not connect.
    Deny(Vec<IpNet>),
}

impl Acl {
    /// Whether `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        match self {
            Acl::Allow(nets) => nets.iter().any(|n| n.contains(ip)),
            Acl::Deny(nets) => !nets.iter().any(|n| n.contains(ip)),
        }
    }
}

/// An IPv4 or IPv6 network in CIDR form (`"10.0.0.0/8"`, `"2001:db8::/32"`; a bare address is
/// a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A listener's limits (`limits = { max_connections = 10000, cps = 2000, qps = 5000 }`). Over a
/// limit, HTTP gets 503 with `Retry-After`; TCP connections are closed with FIN right after
/// accept and logged as a policy close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Concurrent client connections.
    pub max_connections: Option<u32>,
    /// New connections per second.
    pub cps: Option<u32>,
    /// Requests per second (http/https only).
    pub qps: Option<u32>,
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
            idle_timeout: match protocol {
                Protocol::Http | Protocol::Https => HTTP_IDLE_TIMEOUT,
                Protocol::Tcp | Protocol::Udp => Duration::from_secs(900),
            },
            idle_close: CloseMode::Fin,
            propagate_reset: true,
            splice: false,
            tcp_keepalive: None,
            backlog: 1024,
            http: match protocol {
                Protocol::Http | Protocol::Https => Some(HttpSettings::default()),
                Protocol::Tcp | Protocol::Udp => None,
            },
            acl: None,
            limits: Limits::default(),
        }
    }
}

/// Default `idle_timeout` of `http`/`https` listeners: the client keep-alive idle time.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings only `http` and `https` listeners have. On those listeners `idle_timeout` is the
/// client keep-alive idle time between requests (default [`HTTP_IDLE_TIMEOUT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Time a client has to send a complete request head (default 10 s), then 408.
    pub request_header_timeout: Duration,
    /// Requests served on one client connection before `Connection: close` (default 1000,
    /// as NGINX's `keepalive_requests`).
    pub max_requests_per_connection: u32,
    /// Largest request head, request line and headers together (default 64 KiB), then 431.
    pub max_header_size: usize,
    /// Longest request target (default 8 KiB), then 414.
    pub max_uri_length: usize,
    /// Largest request body (default 100 MiB), then 413.
    pub max_body_size: u64,
    /// Idle timeout of a WebSocket or other upgraded tunnel (default 300 s).
    pub tunnel_idle_timeout: Duration,
    /// Whether the access log keeps the query string (default false: it may hold secrets).
    pub log_query: bool,
    /// HTTP/2 limits toward clients.
    pub http2: Http2Limits,
    /// TLS: `Some` exactly for `https` listeners.
    pub tls: Option<Tls>,
    /// Routing rules in file order; the first match wins, else the listener's group.
    pub rules: Vec<Rule>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            request_header_timeout: Duration::from_secs(10),
            max_requests_per_connection: 1000,
            max_header_size: 64 * 1024,
            max_uri_length: 8 * 1024,
            max_body_size: 100 * 1024 * 1024,
            tunnel_idle_timeout: Duration::from_secs(300),
            log_query: false,
            http2: Http2Limits::default(),
            tls: None,
            rules: Vec::new(),
        }
    }
}

/// HTTP/2 limits (`[listener.http2]`), set explicitly rather than left to library defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Concurrent streams per connection (default 100).
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before their handler ran, before the connection is closed
    /// (rapid-reset protection, CVE-2023-44487; default 50).
    pub max_pending_reset_streams: usize,
    /// Streams weir may reset for protocol errors before it closes the connection (default 50).
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: 100,
            max_pending_reset_streams: 50,
            max_local_error_reset_streams: 50,
        }
    }
}

/// TLS settings of an `https` listener (`[listener.tls]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// Certificates; the first is the default when no other matches the client's SNI name.
    /// The names each one serves are read from the certificate itself.
    pub certificates: Vec<CertificateFiles>,
    /// Oldest TLS version accepted (default 1.2).
    pub min_version: TlsVersion,
    /// How long a session ticket or cached session stays valid for resumption (default 300 s).
    pub session_lifetime: Duration,
}

/// One certificate chain and its private key, PEM files (`{ cert = "...", key = "..." }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `[[listener.rule]]`: which requests it matches and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Host to match (the request's authority without port); `None` matches any host.
    pub host: Option<HostMatch>,
    /// Path to match; `None` matches any path.
    pub path: Option<PathMatch>,
    /// What to do with a match.
    pub action: RuleAction,
    /// Requests per second this rule admits (`qps = 200`); over it, 503.
    pub qps: Option<u32>,
}

/// How a rule matches the host. Comparisons ignore ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `host = "api.example.com"`.
    Exact(String),
    /// `host = "*.example.com"`: any name ending in `.example.com` (not `example.com` itself);
    /// holds the suffix with its leading dot.
    Wildcard(String),
}

/// How a rule matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `path_prefix = "/v1/"`.
    Prefix(String),
    /// `path = "/login"`.
    Exact(String),
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// `group = "api"`: send the request to this group (validated to exist).
    Group(String),
    /// `redirect = { scheme = "https", host = "...", port = 443, status = 308 }`: answer with a
    /// redirect keeping path and query; unset parts keep the request's.
    Redirect(Redirect),
}

/// A redirect rule's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// New scheme (`http` or `https`).
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port (omitted from the URL when it is the scheme's default).
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308 (default 301).
    pub status: u16,
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
    /// HTTP: time a server has to start its response (default 60 s), then 504.
    pub request_timeout: Duration,
    /// HTTP: keep-alive connections to the servers (`pool = { ... }`).
    pub pool: Pool,
    /// HTTP: session persistence (`persistence = { ... }`); `None` when not configured.
    pub persistence: Option<Persistence>,
}

/// Pool of idle keep-alive connections to each server of a group (HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Close a pooled connection after this long unused (default 30 s); lowered automatically
    /// below a server's `Keep-Alive: timeout=N`.
    pub idle_timeout: Duration,
    /// Idle connections kept per server (default 1024; per worker thread for HTTP/1 clients).
    pub max_idle_per_server: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle_timeout: Duration::from_secs(30),
            max_idle_per_server: 1024,
        }
    }
}

/// HTTP session persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// `mode = "cookie_insert"`: weir sets `cookie` naming the server on every response.
    CookieInsert {
        /// Cookie name.
        cookie: String,
        /// Cookie lifetime (`Max-Age`); `None` makes it a session cookie.
        timeout: Option<Duration>,
    },
    /// `mode = "cookie_rewrite"`: the server sets `cookie`; weir prefixes its value with the
    /// server id on the way out and strips the prefix on the way in.
    CookieRewrite {
        /// Cookie name.
        cookie: String,
    },
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
            request_timeout: Duration::from_secs(60),
            pool: Pool::default(),
            persistence: None,
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
