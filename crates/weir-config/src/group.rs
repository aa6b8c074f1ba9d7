//! `[[group]]` and its `servers`, `pool` and `persistence`: one table to a [`Group`] and the
//! positions validation and lint need. The `[group.health_check]` table is read by `health.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use crate::addr::parse_socket_addr;
use crate::health::{HealthSite, read_health_check};
use crate::parse::{read_keepalive, read_name};
use crate::reader::{Table, Value, Zero};
use crate::sink::{Sink, Span};
use crate::value::expect_table;
use crate::{Algorithm, Group, Persistence, Pool, Server};

/// Where a group's parts were written. A field is `Some` only when its value was valid.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupSite {
    /// The group in messages: `group "app"` or `group[0]`.
    pub path: String,
    /// The `[[group]]` header.
    pub header: Span,
    /// The `name` value.
    pub name: Option<Span>,
    /// The `servers` array.
    pub servers_at: Option<Span>,
    /// Positions of `servers[i]`, one per entry of the group's `servers`.
    pub servers: Vec<ServerSite>,
    /// Positions inside `health_check`.
    pub health: HealthSite,
    /// The `pool.idle_timeout` value, when written.
    pub pool_idle_timeout: Option<Span>,
    /// The `persistence` value, when written and valid.
    pub persistence: Option<Span>,
}

/// Where one server was written.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSite {
    /// The server in messages: `group "app".servers[1]`.
    pub path: String,
    /// The `name` value, or the `address` value when the name defaults to it.
    pub name: Option<Span>,
    /// The `address` value, when valid.
    pub address: Option<Span>,
}

const ALGORITHMS: [(&str, Algorithm); 5] = [
    ("rr", Algorithm::Rr),
    ("wrr", Algorithm::Wrr),
    ("least_conn", Algorithm::LeastConn),
    ("maglev", Algorithm::Maglev),
    ("random2", Algorithm::Random2),
];

/// `persistence.mode` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CookieInsert,
    CookieRewrite,
}

const MODES: [(&str, Mode); 2] = [
    ("cookie_insert", Mode::CookieInsert),
    ("cookie_rewrite", Mode::CookieRewrite),
];

/// Reads one `[[group]]` table. Problems go to `sink`; the returned group then holds
/// placeholders where a value was bad or missing.
pub(crate) fn read_group(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> (Group, GroupSite) {
    let mut group = Group::new("", Vec::new());
    let mut site = GroupSite {
        path: t.path().to_string(),
        header: t.span().clone(),
        ..GroupSite::default()
    };

    if let Some(name) = read_name(sink, &mut t, "name = \"app\"") {
        site.name = Some(name.span());
        group.name = name.get_ref().to_string();
    }
    if let Some(algorithm) = t.choice(sink, "algorithm", &ALGORITHMS) {
        group.algorithm = algorithm.into_inner();
    }

    t.require(
        sink,
        "servers",
        "servers = [{ address = \"10.0.0.11:8000\" }]",
    );
    if let Some(servers) = t.array(sink, "servers") {
        site.servers_at = Some(servers.span());
        if servers.get_ref().is_empty() {
            sink.error(
                &servers.span(),
                &t.key_path("servers"),
                "a group needs at least one server",
                "add e.g. { address = \"10.0.0.11:8000\" }",
            );
        }
        for (i, value) in servers.get_ref().iter().enumerate() {
            let path = format!("{}[{i}]", t.key_path("servers"));
            if let Some((server, server_site)) = read_server(sink, value, path) {
                group.servers.push(server);
                site.servers.push(server_site);
            }
        }
    }

    if let Some(timeout) = t.duration(sink, "connect_timeout", Zero::Refused) {
        group.connect_timeout = timeout.into_inner();
    }
    if let Some(retries) = t.integer(sink, "retries", 0..=10) {
        group.retries = u32::try_from(retries.into_inner()).unwrap_or(group.retries);
    }
    if let Some(keepalive) = read_keepalive(sink, &mut t) {
        group.tcp_keepalive = keepalive.into_inner();
    }
    if let Some(table) = t.table(sink, "health_check") {
        let (health_check, health_site) = read_health_check(sink, table);
        group.health_check = health_check;
        site.health = health_site;
    }
    if let Some(timeout) = t.duration(sink, "request_timeout", Zero::Refused) {
        group.request_timeout = timeout.into_inner();
    }
    if let Some(table) = t.table(sink, "pool") {
        let (pool, idle_at) = read_pool(sink, table);
        group.pool = pool;
        site.pool_idle_timeout = idle_at;
    }
    if let Some(table) = t.table(sink, "persistence") {
        let at = table.span().clone();
        group.persistence = read_persistence(sink, table);
        site.persistence = group.persistence.as_ref().map(|_| at);
    }
    t.finish(sink);
    (group, site)
}

/// Reads `pool = { idle_timeout, max_idle_per_server }`, with where `idle_timeout` is.
fn read_pool(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> (Pool, Option<Span>) {
    let mut pool = Pool::default();
    let mut idle_at = None;
    if let Some(idle) = t.duration(sink, "idle_timeout", Zero::Refused) {
        idle_at = Some(idle.span());
        pool.idle_timeout = idle.into_inner();
    }
    if let Some(n) = t.integer(sink, "max_idle_per_server", 0..=10_000) {
        pool.max_idle_per_server =
            usize::try_from(n.into_inner()).unwrap_or(pool.max_idle_per_server);
    }
    t.finish(sink);
    (pool, idle_at)
}

/// Reads `persistence = { mode, cookie, timeout }`; `None` when anything in it is wrong.
fn read_persistence(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Option<Persistence> {
    let errors_before = sink.error_count();
    t.require(sink, "mode", "mode = \"cookie_insert\"");
    let mode = t.choice(sink, "mode", &MODES).map(Spanned::into_inner);
    t.require(sink, "cookie", "cookie = \"SERVERID\"");
    let cookie = t.string(sink, "cookie").and_then(|name| {
        check_cookie_name(name.get_ref())
            .map_err(|why| {
                let hint = "use letters, digits and !#$%&'*+-.^_`|~, e.g. \"SERVERID\"";
                sink.error(&name.span(), &t.key_path("cookie"), why, hint);
            })
            .ok()
    });
    let timeout = match mode {
        Some(Mode::CookieRewrite) => {
            if let (Some(_), Some(at)) = (t.get("timeout"), t.key_span("timeout")) {
                sink.error(
                    &at,
                    &t.key_path("timeout"),
                    "`timeout` only applies to mode = \"cookie_insert\"; with \"cookie_rewrite\" \
                     the server's cookie keeps the lifetime the server gives it",
                    "remove `timeout`",
                );
            }
            None
        }
        // Read even when `mode` is invalid, so a bad timeout is reported too.
        _ => cookie_timeout(sink, &mut t),
    };
    t.finish(sink);
    if sink.error_count() > errors_before {
        return None;
    }
    match (mode?, cookie?) {
        (Mode::CookieInsert, cookie) => Some(Persistence::CookieInsert { cookie, timeout }),
        (Mode::CookieRewrite, cookie) => Some(Persistence::CookieRewrite { cookie }),
    }
}

/// The cookie's `Max-Age`, which is in whole seconds.
fn cookie_timeout(sink: &mut Sink<'_>, t: &mut Table<'_, '_>) -> Option<Duration> {
    let d = t.duration(sink, "timeout", Zero::Refused)?;
    if d.get_ref().subsec_nanos() != 0 {
        sink.error(
            &d.span(),
            &t.key_path("timeout"),
            "must be a whole number of seconds",
            "a cookie's Max-Age is in seconds; leave `timeout` out for a session cookie",
        );
        return None;
    }
    Some(d.into_inner())
}

/// A cookie name must be an RFC 6265 token: visible ASCII without separators.
fn check_cookie_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the cookie name must not be empty".to_string());
    }
    let bad = name
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "()<>@,;:\\\"/[]?={}".contains(c));
    match bad {
        None => Ok(name.to_string()),
        Some(c) => {
            let what = match c {
                ' ' => "a space".to_string(),
                '"' => "a quote".to_string(),
                c if c.is_control() => "a control character".to_string(),
                c if !c.is_ascii() => format!("the non-ASCII character '{c}'"),
                c => format!("'{c}'"),
            };
            Err(format!(
                "\"{name}\" is not a valid cookie name: it contains {what} (names are RFC 6265 tokens)"
            ))
        }
    }
}

/// Reads one entry of `servers`; `None` when it is not a table at all.
fn read_server(
    sink: &mut Sink<'_>,
    value: &Value<'_>,
    path: String,
) -> Option<(Server, ServerSite)> {
    if let Some(text) = value.get_ref().as_str() {
        sink.error(
            &value.span(),
            &path,
            format!("expected a table, found string \"{text}\""),
            format!("write each server as a table: {{ address = \"{text}\" }}"),
        );
        return None;
    }
    let mut t = expect_table(sink, value, path)?;
    // Placeholder until the address is read; an invalid address always comes with an error.
    let mut server = Server::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let mut site = ServerSite {
        path: t.path().to_string(),
        ..ServerSite::default()
    };

    t.require(sink, "address", "address = \"10.0.0.11:8000\"");
    if let Some(text) = t.string(sink, "address") {
        // The name defaults to the address as written, so it stays stable across reloads.
        server.name = text.get_ref().to_string();
        match parse_socket_addr(text.get_ref(), false) {
            Ok(addr) => {
                server.address = addr;
                site.address = Some(text.span());
                site.name = Some(text.span());
            }
            Err(why) => sink.error(
                &text.span(),
                &t.key_path("address"),
                format!("invalid address: {why}"),
                "write an IP address and port, e.g. \"10.0.0.11:8000\" or \"[2001:db8::1]:8000\"",
            ),
        }
    }
    if let Some(weight) = t.integer(sink, "weight", 0..=1000) {
        server.weight = u32::try_from(weight.into_inner()).unwrap_or(server.weight);
    }
    if let Some(backup) = t.boolean(sink, "backup") {
        server.backup = backup;
    }
    if let Some(name) = t.string(sink, "name") {
        if name.get_ref().trim().is_empty() {
            sink.error(
                &name.span(),
                &t.key_path("name"),
                "must not be empty",
                "leave `name` out to name the server after its address",
            );
        } else {
            server.name = name.get_ref().to_string();
            site.name = Some(name.span());
        }
    }
    t.finish(sink);
    Some((server, site))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn cookie_names_are_tokens() {
        for good in ["SERVERID", "weir_srv", "a-b.c", "x!#$%&'*+^`|~"] {
            assert_eq!(check_cookie_name(good).unwrap(), good);
        }
        let cases = [
            ("", "must not be empty"),
            ("my cookie", "contains a space"),
            ("a=b", "contains '='"),
            ("a;b", "contains ';'"),
            ("a,b", "contains ','"),
            ("\"id\"", "contains a quote"),
            ("a\tb", "a control character"),
            ("caf\u{e9}", "non-ASCII"),
        ];
        for (name, want) in cases {
            let err = check_cookie_name(name).unwrap_err();
            assert!(err.contains(want), "{name:?}: {err}");
        }
    }
}
