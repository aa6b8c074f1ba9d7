//! Lint: warnings on configs that load but are probably not what was meant. A warning never
//! refuses the config, and each one is positioned like an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weir_config::{Loaded, Severity, parse};

fn load(source: &str) -> Loaded {
    match parse(source, "lint.toml") {
        Ok(loaded) => loaded,
        Err(diagnostics) => panic!("expected the config to load:\n{diagnostics}"),
    }
}

/// `(line, column, key, message)` of each warning.
fn warnings(loaded: &Loaded) -> Vec<(usize, usize, String, String)> {
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning)
    );
    loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.column, w.key.clone(), w.message.clone()))
        .collect()
}

const LISTENER: &str = r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
"#;

#[test]
fn health_check_timeout_above_interval_is_clamped() {
    let source = format!(
        r#"{LISTENER}
[[group]]
name = "app"
servers = [{{ address = "10.0.0.1:80" }}]
  [group.health_check]
  interval = "2s"
  timeout = "5s"
"#
    );
    let loaded = load(&source);
    assert_eq!(
        warnings(&loaded),
        [(
            12,
            13,
            "group \"app\".health_check.timeout".to_string(),
            "timeout above interval; weir uses the interval as the timeout".to_string()
        )]
    );
    assert_eq!(
        loaded.warnings[0].hint,
        "timeout is 5s but interval is 2s; set timeout to 2s or less"
    );
    let check = &loaded.config.groups[0].health_check;
    assert_eq!(check.timeout, Duration::from_secs(2));
    assert_eq!(check.interval, Duration::from_secs(2));
}

#[test]
fn a_timeout_equal_to_the_interval_is_fine() {
    let source = format!(
        "{LISTENER}[[group]]\nname = \"app\"\nservers = [{{ address = \"10.0.0.1:80\" }}]\n\
         health_check = {{ interval = \"3s\", timeout = \"3s\" }}\n"
    );
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn a_group_no_listener_uses() {
    let source = format!(
        r#"{LISTENER}
[[group]]
name = "app"
servers = [{{ address = "10.0.0.1:80" }}]

[[group]]
name = "spare"
servers = [{{ address = "10.0.0.2:80" }}]
"#
    );
    let loaded = load(&source);
    assert_eq!(
        warnings(&loaded),
        [(
            12,
            8,
            "group \"spare\"".to_string(),
            "group \"spare\" is not used by any listener".to_string()
        )]
    );
    assert_eq!(loaded.config.groups.len(), 2);
}

#[test]
fn a_group_with_only_backups_or_zero_weights() {
    let source = format!(
        r#"{LISTENER}
[[group]]
name = "app"
servers = [
  {{ address = "10.0.0.1:80", backup = true }},
  {{ address = "10.0.0.2:80", weight = 0 }},
]
"#
    );
    let loaded = load(&source);
    let found = warnings(&loaded);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (9, 11));
    assert_eq!(found[0].2, "group \"app\".servers");
    assert!(
        found[0]
            .3
            .contains("no server is a primary with weight above 0"),
        "{found:?}"
    );
    assert_eq!(loaded.config.groups[0].servers.len(), 2);
}

#[test]
fn a_primary_with_weight_silences_the_backup_warning() {
    let source = format!(
        "{LISTENER}[[group]]\nname = \"app\"\nservers = [{{ address = \"10.0.0.1:80\", backup = true }}, \
         {{ address = \"10.0.0.2:80\" }}]\n"
    );
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn idle_timeout_shorter_than_keepalive_idle() {
    let source = r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
idle_timeout = "30s"
tcp_keepalive = true

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
"#;
    let loaded = load(source);
    assert_eq!(
        warnings(&loaded),
        [(
            6,
            16,
            "listener \"web\".idle_timeout".to_string(),
            "idle_timeout (30s) is shorter than tcp_keepalive.idle (1m); keep-alive probes never fire"
                .to_string()
        )]
    );
    assert!(loaded.config.listeners[0].tcp_keepalive.is_some());
}

#[test]
fn keepalive_idle_above_the_default_idle_timeout_points_at_the_keepalive() {
    let source = r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
tcp_keepalive = { idle = "1h" }

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
"#;
    let found = warnings(&load(source));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (6, 17));
    assert_eq!(found[0].2, "listener \"web\".tcp_keepalive");
}

#[test]
fn warnings_come_out_in_source_order_and_render_as_warnings() {
    let source = r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
idle_timeout = "10s"
tcp_keepalive = true

[[group]]
name = "unused"
servers = [{ address = "10.0.0.1:80", backup = true }]

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
health_check = { interval = "1s", timeout = "3s" }
"#;
    let loaded = load(source);
    let lines: Vec<usize> = loaded.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [6, 10, 11, 16]);
    let text = loaded.warnings[1].to_string();
    assert!(
        text.starts_with("lint.toml:10:8: warning: group \"unused\": group \"unused\" is not used"),
        "{text}"
    );
}

const HTTP_LISTENER: &str = r#"[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:8080"
group = "app"
"#;

const APP: &str = r#"
[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
"#;

#[test]
fn a_tunnel_idle_timeout_shorter_than_websocket_heartbeats() {
    let source = format!("{HTTP_LISTENER}tunnel_idle_timeout = \"10s\"\n{APP}");
    let loaded = load(&source);
    assert_eq!(
        warnings(&loaded),
        [(
            6,
            23,
            "listener \"web\".tunnel_idle_timeout".to_string(),
            "tunnel_idle_timeout (10s) is shorter than common WebSocket heartbeats (30–60 s): \
             tunnels will be cut while idle between pings"
                .to_string()
        )]
    );
    let http = loaded.config.listeners[0].http.as_ref().unwrap();
    assert_eq!(http.tunnel_idle_timeout, Duration::from_secs(10));
    // 30 s is as short as a tunnel can be without the warning.
    let source = format!("{HTTP_LISTENER}tunnel_idle_timeout = \"30s\"\n{APP}");
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn a_pool_idle_timeout_at_or_above_a_minute() {
    let source = format!("{HTTP_LISTENER}{APP}pool = {{ idle_timeout = \"60s\" }}\n");
    let loaded = load(&source);
    let found = warnings(&loaded);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (10, 25));
    assert_eq!(found[0].2, "group \"app\".pool.idle_timeout");
    assert!(
        found[0].3.starts_with(
            "pool.idle_timeout is 1m, but many servers close idle keep-alive connections after \
             5–75 s"
        ),
        "{found:?}"
    );
    assert!(
        found[0].3.contains("the stale keep-alive race"),
        "{found:?}"
    );
    assert!(
        loaded.warnings[0]
            .hint
            .contains("set it below your servers' keep-alive timeout"),
        "{:?}",
        loaded.warnings[0]
    );
    let source = format!("{HTTP_LISTENER}{APP}pool = {{ idle_timeout = \"59s\" }}\n");
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn a_request_header_timeout_above_the_idle_timeout() {
    // The default http idle_timeout is 60 s.
    let source = format!("{HTTP_LISTENER}request_header_timeout = \"2m\"\n{APP}");
    let found = warnings(&load(&source));
    assert_eq!(
        found,
        [(
            6,
            26,
            "listener \"web\".request_header_timeout".to_string(),
            "request_header_timeout (2m) is longer than idle_timeout (1m); the idle timeout \
             closes a silent client first"
                .to_string()
        )]
    );
    // A written idle_timeout below the default header timeout is pointed at instead.
    let source = format!("{HTTP_LISTENER}idle_timeout = \"5s\"\n{APP}");
    let found = warnings(&load(&source));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (6, 16));
    assert_eq!(found[0].2, "listener \"web\".idle_timeout");
}

#[test]
fn persistence_on_a_group_behind_a_tcp_listener() {
    let source = format!(
        "{LISTENER}{APP}persistence = {{ mode = \"cookie_insert\", cookie = \"SERVERID\" }}\n"
    );
    let loaded = load(&source);
    assert_eq!(
        warnings(&loaded),
        [(
            10,
            15,
            "group \"app\".persistence".to_string(),
            "persistence only applies to http/https listeners; tcp listeners can use \
             algorithm = \"maglev\""
                .to_string()
        )]
    );
    assert!(
        loaded.warnings[0]
            .hint
            .starts_with("listener \"web\" is protocol = \"tcp\""),
        "{:?}",
        loaded.warnings[0]
    );
    // The same group behind an http listener is what persistence is for.
    let source = format!(
        "{HTTP_LISTENER}{APP}persistence = {{ mode = \"cookie_insert\", cookie = \"SERVERID\" }}\n"
    );
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn a_group_used_only_by_a_rule_is_used() {
    let source = format!(
        "{HTTP_LISTENER}rule = [{{ path_prefix = \"/api/\", group = \"api\" }}]\n{APP}\
         [[group]]\nname = \"api\"\nservers = [{{ address = \"10.0.0.2:80\" }}]\n"
    );
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn an_allow_list_that_admits_every_client() {
    // 127.0.0.1:8080 only takes IPv4 clients: 0.0.0.0/0 alone admits all of them.
    let source = format!("{LISTENER}acl = {{ allow = [\"0.0.0.0/0\"] }}\n{APP}");
    assert_eq!(
        warnings(&load(&source)),
        [(
            6,
            17,
            "listener \"web\".acl.allow".to_string(),
            "this allow list admits every client".to_string()
        )]
    );
    // On [::] IPv6 clients come too, and need ::/0 as well.
    let dual = LISTENER.replace("127.0.0.1:8080", "[::]:8080");
    let source = format!("{dual}acl = {{ allow = [\"0.0.0.0/0\"] }}\n{APP}");
    assert!(load(&source).warnings.is_empty());
    let source =
        format!("{dual}acl = {{ allow = [\"10.0.0.0/8\", \"0.0.0.0/0\", \"::/0\"] }}\n{APP}");
    assert_eq!(warnings(&load(&source)).len(), 1);
    // A deny list, or an allow list that leaves someone out, is what an acl is for.
    let source = format!("{LISTENER}acl = {{ deny = [\"0.0.0.0/0\"] }}\n{APP}");
    assert!(load(&source).warnings.is_empty());
    let source = format!("{LISTENER}acl = {{ allow = [\"0.0.0.0/1\", \"128.0.0.0/2\"] }}\n{APP}");
    assert!(load(&source).warnings.is_empty());
}

#[test]
fn a_rule_qps_above_the_listener_qps() {
    let source = format!(
        "{HTTP_LISTENER}limits = {{ qps = 100 }}\n\
         [[listener.rule]]\npath_prefix = \"/api/\"\ngroup = \"app\"\nqps = 500\n\
         [[listener.rule]]\npath_prefix = \"/b/\"\ngroup = \"app\"\nqps = 100\n{APP}"
    );
    let loaded = load(&source);
    assert_eq!(
        warnings(&loaded),
        [(
            10,
            7,
            "listener \"web\".rule[0].qps".to_string(),
            "rule qps (500) is above the listener's limits.qps (100); the listener limit is \
             reached first"
                .to_string()
        )]
    );
    assert_eq!(
        loaded.warnings[0].hint,
        "lower the rule's qps to 100 or less, or raise limits.qps"
    );
    // Without a listener qps, a rule's qps stands alone.
    let source = format!(
        "{HTTP_LISTENER}[[listener.rule]]\npath_prefix = \"/api/\"\ngroup = \"app\"\nqps = 500\n{APP}"
    );
    assert!(load(&source).warnings.is_empty());
}
