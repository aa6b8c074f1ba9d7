//! Valid configs parse to exactly the model they describe, with defaults where keys are left out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_config::{
    AccessLogTarget, Acl, Admin, Algorithm, CertificateFiles, CheckKind, CloseMode, Config, Group,
    HTTP_IDLE_TIMEOUT, HealthCheck, HostMatch, Http2Limits, HttpCheck, HttpSettings, IpNet, Limits,
    Listener, LogFormat, PathMatch, Persistence, Pool, Protocol, Redirect, Rule, RuleAction,
    Runtime, Server, StatusMatch, TcpKeepalive, Tls, TlsVersion, parse,
};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn net(addr: &str, prefix: u8) -> IpNet {
    IpNet {
        addr: addr.parse().unwrap(),
        prefix,
    }
}

/// Every key the schema knows, each away from its default.
const FULL: &str = r#"
[runtime]
workers = 4
shutdown_grace = "10s"
io_uring = false

[log]
access = "/var/log/weir/access.log"
format = "text"

[admin]
listen = "0.0.0.0:9900"
token_file = "/etc/weir/admin.token"

[[listener]]
name = "web"
protocol = "tcp"
bind = "0.0.0.0:8080"
group = "app"
idle_timeout = "10m"
idle_close = "rst"
propagate_reset = false
splice = true
tcp_keepalive = { idle = "30s", interval = "5s", count = 4 }
backlog = 4096
acl = { deny = ["192.0.2.0/24", "2001:db8::/32"] }
limits = { max_connections = 10000, cps = 2000 }

[[listener]]
name = "range.v6"
protocol = "tcp"
bind = "[::1]:7000-7002"
group = "app"
tcp_keepalive = true

[[listener]]
name = "secure"
protocol = "https"
bind = "0.0.0.0:8443"
group = "app"
idle_timeout = "2m"
idle_close = "rst"
backlog = 512
request_header_timeout = "5s"
max_requests_per_connection = 1000
max_header_size = "32KiB"
max_uri_length = "4KB"
max_body_size = "1GiB"
tunnel_idle_timeout = "10m"
log_query = true
http2 = { max_concurrent_streams = 250, max_pending_reset_streams = 20, max_local_error_reset_streams = 10 }
acl = { allow = ["10.0.0.0/8", "192.168.0.0/16", "::1", "2001:db8::/32"] }

  [listener.tls]
  certificates = [
    { cert = "/srv/tls/a.pem", key = "/srv/tls/a.key" },
    { cert = "b.pem", key = "keys/b.key" },
  ]
  min_version = "1.3"
  session_lifetime = "1h"

  [listener.limits]
  max_connections = 10000
  cps = 2000
  qps = 5000

  [[listener.rule]]
  host = "API.example.com"
  path_prefix = "/v1/"
  group = "api"
  qps = 200

  [[listener.rule]]
  host = "*.Example.org"
  path = "/login"
  group = "app"

  [[listener.rule]]
  path_prefix = "/old/"
  redirect = { scheme = "https", host = "www.example.com", port = 443, status = 308 }

  [[listener.rule]]
  host = "example.net"
  redirect = { host = "example.com" }

[[group]]
name = "api"
request_timeout = "2m"
pool = { max_idle_per_server = 0 }
persistence = { mode = "cookie_insert", cookie = "SERVERID", timeout = "1h" }
servers = [{ address = "10.0.1.1:9000" }]

[[group]]
name = "app"
algorithm = "least_conn"
connect_timeout = "2s"
retries = 3
tcp_keepalive = { count = 3 }
request_timeout = "30s"
pool = { idle_timeout = "20s", max_idle_per_server = 16 }
servers = [
  { address = "10.0.0.11:8000", weight = 100 },
  { address = "10.0.0.12:8000", weight = 0, backup = true, name = "spare" },
  { address = "[2001:db8::1]:8000" },
]

  [group.health_check]
  kind = "http"
  path = "/healthz"
  method = "HEAD"
  host = "app.example.com"
  expect_status = ["2xx", "301-302", 404, "418"]
  interval = "5s"
  timeout = "1500ms"
  healthy_threshold = 2
  unhealthy_threshold = 4
  jitter = "250ms"
  port = 9000
  source = "10.0.0.5"
"#;

#[test]
fn a_config_with_every_key_parses_to_the_exact_model() {
    // Relative certificate paths resolve against the directory of the file they are in.
    let loaded = parse(FULL, "/etc/weir/full.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let web = Listener {
        name: "web".into(),
        protocol: Protocol::Tcp,
        bind: vec![addr("0.0.0.0:8080")],
        group: "app".into(),
        idle_timeout: Duration::from_secs(600),
        idle_close: CloseMode::Rst,
        propagate_reset: false,
        splice: true,
        tcp_keepalive: Some(TcpKeepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            count: 4,
        }),
        backlog: 4096,
        http: None,
        acl: Some(Acl::Deny(vec![net("192.0.2.0", 24), net("2001:db8::", 32)])),
        limits: Limits {
            max_connections: Some(10_000),
            cps: Some(2000),
            qps: None,
        },
    };
    let mut range = Listener::new(
        "range.v6",
        Protocol::Tcp,
        vec![addr("[::1]:7000"), addr("[::1]:7001"), addr("[::1]:7002")],
        "app",
    );
    range.tcp_keepalive = Some(TcpKeepalive::default());

    let secure = Listener {
        name: "secure".into(),
        protocol: Protocol::Https,
        bind: vec![addr("0.0.0.0:8443")],
        group: "app".into(),
        idle_timeout: Duration::from_secs(120),
        idle_close: CloseMode::Rst,
        propagate_reset: true,
        splice: false,
        tcp_keepalive: None,
        backlog: 512,
        http: Some(HttpSettings {
            request_header_timeout: Duration::from_secs(5),
            max_requests_per_connection: 1000,
            max_header_size: 32 * 1024,
            max_uri_length: 4000,
            max_body_size: 1 << 30,
            tunnel_idle_timeout: Duration::from_secs(600),
            log_query: true,
            http2: Http2Limits {
                max_concurrent_streams: 250,
                max_pending_reset_streams: 20,
                max_local_error_reset_streams: 10,
            },
            tls: Some(Tls {
                certificates: vec![
                    CertificateFiles {
                        cert: PathBuf::from("/srv/tls/a.pem"),
                        key: PathBuf::from("/srv/tls/a.key"),
                    },
                    CertificateFiles {
                        cert: PathBuf::from("/etc/weir/b.pem"),
                        key: PathBuf::from("/etc/weir/keys/b.key"),
                    },
                ],
                min_version: TlsVersion::Tls13,
                session_lifetime: Duration::from_secs(3600),
            }),
            rules: vec![
                Rule {
                    host: Some(HostMatch::Exact("api.example.com".into())),
                    path: Some(PathMatch::Prefix("/v1/".into())),
                    action: RuleAction::Group("api".into()),
                    qps: Some(200),
                },
                Rule {
                    host: Some(HostMatch::Wildcard(".example.org".into())),
                    path: Some(PathMatch::Exact("/login".into())),
                    action: RuleAction::Group("app".into()),
                    qps: None,
                },
                Rule {
                    host: None,
                    path: Some(PathMatch::Prefix("/old/".into())),
                    action: RuleAction::Redirect(Redirect {
                        scheme: Some("https".into()),
                        host: Some("www.example.com".into()),
                        port: Some(443),
                        status: 308,
                    }),
                    qps: None,
                },
                Rule {
                    host: Some(HostMatch::Exact("example.net".into())),
                    path: None,
                    action: RuleAction::Redirect(Redirect {
                        scheme: None,
                        host: Some("example.com".into()),
                        port: None,
                        status: 301,
                    }),
                    qps: None,
                },
            ],
        }),
        acl: Some(Acl::Allow(vec![
            net("10.0.0.0", 8),
            net("192.168.0.0", 16),
            net("::1", 128),
            net("2001:db8::", 32),
        ])),
        limits: Limits {
            max_connections: Some(10_000),
            cps: Some(2000),
            qps: Some(5000),
        },
    };

    let mut api = Group::new("api", vec![Server::new(addr("10.0.1.1:9000"))]);
    api.request_timeout = Duration::from_secs(120);
    api.pool = Pool {
        max_idle_per_server: 0,
        ..Pool::default()
    };
    api.persistence = Some(Persistence::CookieInsert {
        cookie: "SERVERID".into(),
        timeout: Some(Duration::from_secs(3600)),
    });

    let app = Group {
        name: "app".into(),
        algorithm: Algorithm::LeastConn,
        servers: vec![
            Server {
                name: "10.0.0.11:8000".into(),
                address: addr("10.0.0.11:8000"),
                weight: 100,
                backup: false,
            },
            Server {
                name: "spare".into(),
                address: addr("10.0.0.12:8000"),
                weight: 0,
                backup: true,
            },
            Server {
                name: "[2001:db8::1]:8000".into(),
                address: addr("[2001:db8::1]:8000"),
                weight: 1,
                backup: false,
            },
        ],
        health_check: HealthCheck {
            kind: CheckKind::Http(HttpCheck {
                method: "HEAD".into(),
                path: "/healthz".into(),
                host: Some("app.example.com".into()),
                expect_status: vec![
                    StatusMatch::Class(2),
                    StatusMatch::Range(301, 302),
                    StatusMatch::Code(404),
                    StatusMatch::Code(418),
                ],
            }),
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(1500),
            healthy_threshold: 2,
            unhealthy_threshold: 4,
            jitter: Duration::from_millis(250),
            port: Some(9000),
            source: Some("10.0.0.5".parse().unwrap()),
        },
        connect_timeout: Duration::from_secs(2),
        retries: 3,
        tcp_keepalive: Some(TcpKeepalive {
            count: 3,
            ..TcpKeepalive::default()
        }),
        request_timeout: Duration::from_secs(30),
        pool: Pool {
            idle_timeout: Duration::from_secs(20),
            max_idle_per_server: 16,
        },
        persistence: None,
    };

    let expected = Config {
        runtime: Runtime {
            workers: Some(4),
            shutdown_grace: Duration::from_secs(10),
            io_uring: false,
        },
        log: weir_config::Log {
            access: AccessLogTarget::File(PathBuf::from("/var/log/weir/access.log")),
            format: LogFormat::Text,
        },
        admin: Some(Admin {
            listen: addr("0.0.0.0:9900"),
            token_file: Some(PathBuf::from("/etc/weir/admin.token")),
        }),
        listeners: vec![web, range, secure],
        groups: vec![api, app],
    };
    assert_eq!(loaded.config, expected);
}

const MINIMAL: &str = r#"
[[listener]]
name = "db"
protocol = "tcp"
bind = "127.0.0.1:0"
group = "pg"

[[group]]
name = "pg"
servers = [{ address = "127.0.0.1:5432" }]
"#;

#[test]
fn a_minimal_config_gets_every_default() {
    let loaded = parse(MINIMAL, "minimal.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let expected = Config {
        runtime: Runtime::default(),
        log: weir_config::Log::default(),
        admin: None,
        listeners: vec![Listener::new(
            "db",
            Protocol::Tcp,
            vec![addr("127.0.0.1:0")],
            "pg",
        )],
        groups: vec![Group::new("pg", vec![Server::new(addr("127.0.0.1:5432"))])],
    };
    assert_eq!(loaded.config, expected);

    // The documented defaults, spelled out once so a change to them is a visible decision.
    let listener = &loaded.config.listeners[0];
    assert_eq!(listener.idle_timeout, Duration::from_secs(900));
    assert_eq!(listener.idle_close, CloseMode::Fin);
    assert!(listener.propagate_reset);
    assert_eq!(listener.tcp_keepalive, None);
    assert_eq!(listener.backlog, 1024);
    assert_eq!(listener.acl, None);
    assert_eq!(listener.limits, Limits::default());
    assert_eq!(
        (
            listener.limits.max_connections,
            listener.limits.cps,
            listener.limits.qps
        ),
        (None, None, None)
    );
    let group = &loaded.config.groups[0];
    assert_eq!(group.algorithm, Algorithm::Wrr);
    assert_eq!(group.connect_timeout, Duration::from_secs(5));
    assert_eq!(group.retries, 2);
    assert_eq!(group.servers[0].weight, 1);
    assert_eq!(group.health_check.kind, CheckKind::Tcp);
    assert_eq!(group.health_check.interval, Duration::from_secs(2));
    assert_eq!(group.health_check.timeout, Duration::from_secs(2));
    assert_eq!(group.health_check.jitter, Duration::from_millis(200));
    assert_eq!(
        loaded.config.runtime.shutdown_grace,
        Duration::from_secs(30)
    );
    assert_eq!(loaded.config.log.access, AccessLogTarget::Stdout);
    assert_eq!(loaded.config.log.format, LogFormat::Json);
}

const MINIMAL_HTTP: &str = r#"
[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:0"
group = "pg"
"#;

#[test]
fn a_minimal_http_listener_gets_every_default() {
    let source = format!("{MINIMAL}{MINIMAL_HTTP}");
    let loaded = parse(&source, "minimal.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let [tcp, http] = loaded.config.listeners.as_slice() else {
        panic!("{:?}", loaded.config.listeners);
    };
    assert_eq!(
        *http,
        Listener::new("web", Protocol::Http, vec![addr("127.0.0.1:0")], "pg")
    );

    // The documented defaults, spelled out once so a change to them is a visible decision.
    assert_eq!(http.idle_timeout, HTTP_IDLE_TIMEOUT);
    assert_eq!(http.idle_timeout, Duration::from_secs(60));
    assert_eq!(tcp.idle_timeout, Duration::from_secs(900));
    assert_eq!(tcp.http, None);
    let settings = http.http.as_ref().unwrap();
    assert_eq!(*settings, HttpSettings::default());
    assert_eq!(settings.request_header_timeout, Duration::from_secs(10));
    assert_eq!(settings.max_requests_per_connection, 1000);
    assert_eq!(settings.max_header_size, 64 * 1024);
    assert_eq!(settings.max_uri_length, 8 * 1024);
    assert_eq!(settings.max_body_size, 100 * 1024 * 1024);
    assert_eq!(settings.tunnel_idle_timeout, Duration::from_secs(300));
    assert!(!settings.log_query);
    assert_eq!(settings.http2.max_concurrent_streams, 100);
    assert_eq!(settings.http2.max_pending_reset_streams, 50);
    assert_eq!(settings.http2.max_local_error_reset_streams, 50);
    assert_eq!(settings.tls, None);
    assert!(settings.rules.is_empty());
    let group = &loaded.config.groups[0];
    assert_eq!(group.request_timeout, Duration::from_secs(60));
    assert_eq!(group.pool.idle_timeout, Duration::from_secs(30));
    assert_eq!(group.pool.max_idle_per_server, 1024);
    assert_eq!(group.persistence, None);
}

#[test]
fn http_variants_parse() {
    let source = format!(
        "{MINIMAL_HTTP}max_header_size = \"1MiB\"\nmax_uri_length = \"256B\"\n\
         max_body_size = \"1TiB\"\n\
         [listener.http2]\nmax_concurrent_streams = 1\n\
         [[listener.rule]]\nredirect = {{ scheme = \"https\" }}\n\
         [[group]]\nname = \"pg\"\nservers = [{{ address = \"127.0.0.1:5432\" }}]\n\
         persistence = {{ mode = \"cookie_rewrite\", cookie = \"JSESSIONID\" }}\n\
         [[group]]\nname = \"other\"\nservers = [{{ address = \"127.0.0.1:5433\" }}]\n\
         persistence = {{ mode = \"cookie_insert\", cookie = \"s\" }}\n\
         [[listener]]\nname = \"tls\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         group = \"other\"\ntls = {{ certificates = [{{ cert = \"c.pem\", key = \"k.pem\" }}] }}\n"
    );
    let loaded = parse(&source, "weir.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let http = loaded.config.listeners[0].http.as_ref().unwrap();
    assert_eq!(http.max_header_size, 1 << 20);
    assert_eq!(http.max_uri_length, 256);
    assert_eq!(http.max_body_size, 1 << 40);
    assert_eq!(http.http2.max_concurrent_streams, 1);
    assert_eq!(http.http2.max_pending_reset_streams, 50);
    let redirect = Redirect {
        scheme: Some("https".into()),
        host: None,
        port: None,
        status: 301,
    };
    assert_eq!(
        http.rules,
        [Rule {
            host: None,
            path: None,
            action: RuleAction::Redirect(redirect),
            qps: None,
        }]
    );
    let groups = &loaded.config.groups;
    assert_eq!(
        groups[0].persistence,
        Some(Persistence::CookieRewrite {
            cookie: "JSESSIONID".into()
        })
    );
    assert_eq!(
        groups[1].persistence,
        Some(Persistence::CookieInsert {
            cookie: "s".into(),
            timeout: None
        })
    );
    // A config file without a directory: relative paths stay as written; defaults fill the rest.
    let tls = loaded.config.listeners[1]
        .http
        .as_ref()
        .unwrap()
        .tls
        .clone();
    let tls = tls.unwrap();
    assert_eq!(tls.certificates[0].cert, PathBuf::from("c.pem"));
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(tls.session_lifetime, Duration::from_secs(300));
}

#[test]
fn health_check_defaults_follow_the_interval() {
    let source =
        format!("{MINIMAL}\n  [group.health_check]\n  kind = \"http\"\n  interval = \"1s\"\n");
    let loaded = parse(&source, "t.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let check = &loaded.config.groups[0].health_check;
    assert_eq!(check.kind, CheckKind::Http(HttpCheck::default()));
    // The default 2 s timeout would exceed a 1 s interval: it follows the interval down.
    assert_eq!(check.timeout, Duration::from_secs(1));
    assert_eq!(check.jitter, Duration::from_millis(100));
}

#[test]
fn small_variants_parse() {
    let source = MINIMAL
        .replace(
            "bind = \"127.0.0.1:0\"",
            "bind = \"127.0.0.1:7000-7000\"\ntcp_keepalive = false",
        )
        .replace("name = \"pg\"", "name = \"pg\"\nalgorithm = \"maglev\"");
    let source = format!(
        "{source}\n[log]\naccess = \"off\"\n[admin]\nlisten = \"[::1]:9900\"\n[runtime]\nshutdown_grace = \"0s\"\n\
         [group.health_check]\nkind = \"none\"\n"
    );
    let config = parse(&source, "t.toml").unwrap().config;
    assert_eq!(config.listeners[0].bind, [addr("127.0.0.1:7000")]);
    assert_eq!(config.listeners[0].tcp_keepalive, None);
    assert_eq!(config.groups[0].algorithm, Algorithm::Maglev);
    assert_eq!(config.groups[0].health_check.kind, CheckKind::None);
    assert_eq!(config.log.access, AccessLogTarget::Off);
    assert_eq!(config.runtime.shutdown_grace, Duration::ZERO);
    assert!(
        config.runtime.io_uring,
        "sends are batched unless told otherwise"
    );
    let admin = config.admin.unwrap();
    assert_eq!((admin.listen, admin.token_file), (addr("[::1]:9900"), None));
}

#[test]
fn an_empty_file_is_a_valid_config_with_nothing_in_it() {
    let loaded = parse("", "empty.toml").unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("weir-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let loaded = weir_config::load(&path).unwrap();
    assert_eq!(loaded.config.listeners[0].name, "db");

    let missing = dir.join("absent.toml");
    let err = weir_config::load(&missing).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("absent.toml: error: cannot read the config file"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
