//! Checks across tables, after every table was read on its own: unique names, group
//! references (of listeners and of their rules) that resolve, listeners that do not bind the same socket, servers listed once.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::Protocol;
use crate::parse::Draft;
use crate::reader::join;
use crate::sink::{Sink, Span};
use crate::suggest::suggest;

/// Runs every cross-table check on `draft`, reporting to `sink`.
pub(crate) fn check(draft: &Draft, sink: &mut Sink<'_>) {
    let listener_names = draft
        .config
        .listeners
        .iter()
        .zip(&draft.listeners)
        .filter_map(|(l, site)| Some((l.name.as_str(), site.name.clone()?, site.path.as_str())));
    unique_names(sink, "listener", listener_names);
    let group_names = draft
        .config
        .groups
        .iter()
        .zip(&draft.groups)
        .filter_map(|(g, site)| Some((g.name.as_str(), site.name.clone()?, site.path.as_str())));
    unique_names(sink, "group", group_names);
    group_references(draft, sink);
    bind_conflicts(draft, sink);
    unique_servers(draft, sink);
}

/// Reports the second and later uses of each name.
fn unique_names<'a>(
    sink: &mut Sink<'_>,
    what: &str,
    names: impl Iterator<Item = (&'a str, Span, &'a str)>,
) {
    let mut first: HashMap<&str, Span> = HashMap::new();
    for (name, span, path) in names {
        if let Some(earlier) = first.get(name) {
            let line = sink.line_of(earlier);
            sink.error(
                &span,
                &join(path, "name"),
                format!("duplicate {what} name \"{name}\""),
                format!(
                    "the first {what} named \"{name}\" is at line {line}; names must be unique"
                ),
            );
        } else {
            first.insert(name, span);
        }
    }
}

/// Every listener's `group`, and every rule's, names a defined group.
fn group_references(draft: &Draft, sink: &mut Sink<'_>) {
    let defined: Vec<&str> = draft
        .config
        .groups
        .iter()
        .zip(&draft.groups)
        .filter(|(_, site)| site.name.is_some())
        .map(|(g, _)| g.name.as_str())
        .collect();
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        if let Some(at) = &site.group {
            let key = join(&site.path, "group");
            group_reference(sink, &defined, &listener.group, at, &key);
        }
        for rule in &site.http.rule_groups {
            group_reference(sink, &defined, &rule.name, &rule.at, &rule.key);
        }
    }
}

/// Reports `wanted` (written at `at`, under `key`) unless it is one of the `defined` groups.
fn group_reference(sink: &mut Sink<'_>, defined: &[&str], wanted: &str, at: &Span, key: &str) {
    if defined.contains(&wanted) {
        return;
    }
    let hint = match (defined.is_empty(), suggest(wanted, defined)) {
        (true, _) => format!("no [[group]] is defined; add one with name = \"{wanted}\""),
        (false, Some(near)) => {
            format!(
                "did you mean \"{near}\"? defined groups: {}",
                defined.join(", ")
            )
        }
        (false, None) => format!("defined groups: {}", defined.join(", ")),
    };
    sink.error(at, key, format!("group \"{wanted}\" is not defined"), hint);
}

/// No two listeners of the same transport bind the same socket, after port ranges are
/// expanded. A wildcard address (`0.0.0.0`, `[::]`) covers every address of its family on that
/// port. Port 0 asks the kernel for a fresh port each time, so it never conflicts.
fn bind_conflicts(draft: &Draft, sink: &mut Sink<'_>) {
    let mut bound: HashMap<u16, Vec<(usize, SocketAddr)>> = HashMap::new();
    for (j, (listener, site)) in draft
        .config
        .listeners
        .iter()
        .zip(&draft.listeners)
        .enumerate()
    {
        let Some((at, _)) = &site.bind else { continue };
        let udp = listener.protocol == Protocol::Udp;
        let mut reported: Vec<usize> = Vec::new();
        for addr in listener.bind.iter().filter(|a| a.port() != 0) {
            let earlier = bound.get(&addr.port()).into_iter().flatten();
            for &(i, other) in earlier {
                let other_udp = draft
                    .config
                    .listeners
                    .get(i)
                    .map(|l| l.protocol == Protocol::Udp);
                if other_udp != Some(udp) || !overlaps(*addr, other) || reported.contains(&i) {
                    continue;
                }
                reported.push(i);
                let Some(other_site) = draft.listeners.get(i) else {
                    continue;
                };
                let message = if *addr == other {
                    format!("{addr} is already bound by {}", other_site.path)
                } else {
                    format!(
                        "{addr} overlaps {other} bound by {} (a wildcard address covers every local address)",
                        other_site.path
                    )
                };
                let (other_at, other_text) = other_site.bind.clone().unwrap_or_default();
                sink.error(
                    at,
                    &join(&site.path, "bind"),
                    message,
                    format!(
                        "{} binds \"{other_text}\" at line {}; give each listener its own port",
                        other_site.path,
                        sink.line_of(&other_at)
                    ),
                );
            }
        }
        for addr in listener.bind.iter().filter(|a| a.port() != 0) {
            bound.entry(addr.port()).or_default().push((j, *addr));
        }
    }
}

fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Within a group, each address is listed once and each server name is used once (names key
/// health state and counters across reloads).
fn unique_servers(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        let mut addresses: HashMap<SocketAddr, Span> = HashMap::new();
        let mut names: HashMap<&str, Span> = HashMap::new();
        for (server, server_site) in group.servers.iter().zip(&site.servers) {
            if let Some(at) = &server_site.address {
                if let Some(first) = addresses.get(&server.address) {
                    let line = sink.line_of(first);
                    sink.error(
                        at,
                        &join(&server_site.path, "address"),
                        format!("{} is listed twice in {}", server.address, site.path),
                        format!("it first appears at line {line}; list each server once"),
                    );
                    // Its default name is the same address: one report is enough.
                    continue;
                }
                addresses.insert(server.address, at.clone());
            }
            let Some(at) = &server_site.name else {
                continue;
            };
            if let Some(first) = names.get(server.name.as_str()) {
                let line = sink.line_of(first);
                sink.error(
                    at,
                    &join(&server_site.path, "name"),
                    format!("duplicate server name \"{}\" in {}", server.name, site.path),
                    format!("the first server with this name is at line {line}; names must be unique within a group"),
                );
            } else {
                names.insert(server.name.as_str(), at.clone());
            }
        }
    }
}
