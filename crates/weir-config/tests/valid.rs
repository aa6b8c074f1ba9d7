//! Valid configs parse to exactly the model they describe, with defaults where keys are left out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_config::{
    AccessLogTarget, Admin, Algorithm, CheckKind, CloseMode, Config, Group, HealthCheck, HttpCheck,
    Listener, LogFormat, Protocol, Runtime, Server, StatusMatch, TcpKeepalive, parse,
};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Every key the schema knows, each away from its default.
const FULL: &str = r#"
[runtime]
workers = 4
shutdown_grace = "10s"

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
tcp_keepalive = { idle = "30s", interval = "5s", count = 4 }
backlog = 4096

[[listener]]
name = "range.v6"
protocol = "tcp"
bind = "[::1]:7000-7002"
group = "app"
tcp_keepalive = true

[[group]]
name = "app"
algorithm = "least_conn"
connect_timeout = "2s"
retries = 3
tcp_keepalive = { count = 3 }
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
    let loaded = parse(FULL, "full.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let web = Listener {
        name: "web".into(),
        protocol: Protocol::Tcp,
        bind: vec![addr("0.0.0.0:8080")],
        group: "app".into(),
        idle_timeout: Duration::from_secs(600),
        idle_close: CloseMode::Rst,
        propagate_reset: false,
        tcp_keepalive: Some(TcpKeepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            count: 4,
        }),
        backlog: 4096,
    };
    let mut range = Listener::new(
        "range.v6",
        Protocol::Tcp,
        vec![addr("[::1]:7000"), addr("[::1]:7001"), addr("[::1]:7002")],
        "app",
    );
    range.tcp_keepalive = Some(TcpKeepalive::default());

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
    };

    let expected = Config {
        runtime: Runtime {
            workers: Some(4),
            shutdown_grace: Duration::from_secs(10),
        },
        log: weir_config::Log {
            access: AccessLogTarget::File(PathBuf::from("/var/log/weir/access.log")),
            format: LogFormat::Text,
        },
        admin: Some(Admin {
            listen: addr("0.0.0.0:9900"),
            token_file: Some(PathBuf::from("/etc/weir/admin.token")),
        }),
        listeners: vec![web, range],
        groups: vec![app],
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
