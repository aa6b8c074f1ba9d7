//! `[[group]]` and its `servers`: one table to a [`Group`] and the positions validation and
//! lint need. The `[group.health_check]` table is read by `health.rs`.

use std::net::{Ipv4Addr, SocketAddr};

use crate::addr::parse_socket_addr;
use crate::health::{HealthSite, read_health_check};
use crate::parse::{read_keepalive, read_name};
use crate::reader::{Table, Value, Zero};
use crate::sink::{Sink, Span};
use crate::value::expect_table;
use crate::{Algorithm, Group, Server};

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
    t.finish(sink);
    (group, site)
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
