//! Warnings about a valid config: settings that load but are probably not what was meant.
//!
//! Lint never refuses a config. It runs only once validation passed, so every name resolves
//! and every value is in range. Where weir adjusts a value (a health-check timeout above its
//! interval) the adjustment happens here, next to the warning that announces it.

use std::time::Duration;

use crate::parse::Draft;
use crate::reader::join;
use crate::sink::Sink;
use crate::{Acl, Listener, Protocol, RuleAction, format_duration};

/// Runs every lint on `draft`, adjusting the model where a warning says weir will.
pub(crate) fn check(draft: &mut Draft, sink: &mut Sink<'_>) {
    health_timeout_above_interval(draft, sink);
    unused_groups(draft, sink);
    groups_without_primary(draft, sink);
    keepalive_after_idle_timeout(draft, sink);
    header_timeout_above_idle_timeout(draft, sink);
    short_tunnel_idle_timeout(draft, sink);
    long_pool_idle_timeout(draft, sink);
    persistence_behind_tcp(draft, sink);
    allow_list_admitting_everyone(draft, sink);
    rule_qps_above_listener_qps(draft, sink);
}

/// A probe cannot usefully outlive the next one: clamp the timeout to the interval.
fn health_timeout_above_interval(draft: &mut Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter_mut().zip(&draft.groups) {
        let check = &mut group.health_check;
        let Some(at) = &site.health.timeout else {
            continue;
        };
        if check.timeout <= check.interval {
            continue;
        }
        sink.warn(
            at,
            &join(&site.path, "health_check.timeout"),
            "timeout above interval; weir uses the interval as the timeout",
            format!(
                "timeout is {} but interval is {}; set timeout to {} or less",
                format_duration(check.timeout),
                format_duration(check.interval),
                format_duration(check.interval)
            ),
        );
        check.timeout = check.interval;
    }
}

/// A group no listener or rule points at takes no traffic (and still gets health-checked).
fn unused_groups(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        let routed = |l: &Listener| {
            l.http
                .iter()
                .flat_map(|http| &http.rules)
                .any(|rule| matches!(&rule.action, RuleAction::Group(name) if *name == group.name))
        };
        let mut listeners = draft.config.listeners.iter();
        if listeners.any(|l| l.group == group.name || routed(l)) {
            continue;
        }
        let at = site.name.as_ref().unwrap_or(&site.header);
        sink.warn(
            at,
            &site.path,
            format!("group \"{}\" is not used by any listener", group.name),
            "point a listener's or a rule's `group` at it, or remove it",
        );
    }
}

/// Only backups, or only weight 0: nothing takes traffic while all is well.
fn groups_without_primary(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        if group.servers.iter().any(|s| !s.backup && s.weight > 0) {
            continue;
        }
        let at = site.servers_at.as_ref().unwrap_or(&site.header);
        sink.warn(
            at,
            &join(&site.path, "servers"),
            "no server is a primary with weight above 0: every server is a backup or has weight 0",
            "backups take traffic only when no primary is healthy, and weight 0 takes no new \
             connections; give at least one server backup = false and a weight of 1 or more",
        );
    }
}

/// Keep-alive probes start after `tcp_keepalive.idle`; if the idle timeout closes the
/// connection first, they never fire.
fn keepalive_after_idle_timeout(draft: &Draft, sink: &mut Sink<'_>) {
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        let Some(keepalive) = &listener.tcp_keepalive else {
            continue;
        };
        if listener.idle_timeout >= keepalive.idle {
            continue;
        }
        let (at, key) = match &site.idle_timeout {
            Some(at) => (at, "idle_timeout"),
            None => (
                site.keepalive.as_ref().unwrap_or(&site.header),
                "tcp_keepalive",
            ),
        };
        sink.warn(
            at,
            &join(&site.path, key),
            format!(
                "idle_timeout ({}) is shorter than tcp_keepalive.idle ({}); keep-alive probes never fire",
                format_duration(listener.idle_timeout),
                format_duration(keepalive.idle)
            ),
            "lower tcp_keepalive.idle below idle_timeout, or raise idle_timeout",
        );
    }
}

/// A client that sends nothing is closed by whichever of the two fires first; a header
/// timeout above the idle timeout only ever applies to a client trickling its request head.
fn header_timeout_above_idle_timeout(draft: &Draft, sink: &mut Sink<'_>) {
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        let Some(http) = &listener.http else { continue };
        if http.request_header_timeout <= listener.idle_timeout {
            continue;
        }
        let (at, key) = match (&site.http.request_header_timeout, &site.idle_timeout) {
            (Some(at), _) => (at, "request_header_timeout"),
            (None, Some(at)) => (at, "idle_timeout"),
            (None, None) => (&site.header, ""),
        };
        sink.warn(
            at,
            &join(&site.path, key),
            format!(
                "request_header_timeout ({}) is longer than idle_timeout ({}); the idle timeout \
                 closes a silent client first",
                format_duration(http.request_header_timeout),
                format_duration(listener.idle_timeout)
            ),
            "the header timeout is the tighter limit on slow request heads; set it at or below \
             idle_timeout",
        );
    }
}

/// WebSocket clients and servers usually ping every 30 to 60 s.
fn short_tunnel_idle_timeout(draft: &Draft, sink: &mut Sink<'_>) {
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        let (Some(http), Some(at)) = (&listener.http, &site.http.tunnel_idle_timeout) else {
            continue;
        };
        if http.tunnel_idle_timeout >= Duration::from_secs(30) {
            continue;
        }
        sink.warn(
            at,
            &join(&site.path, "tunnel_idle_timeout"),
            format!(
                "tunnel_idle_timeout ({}) is shorter than common WebSocket heartbeats (30–60 s): \
                 tunnels will be cut while idle between pings",
                format_duration(http.tunnel_idle_timeout)
            ),
            "raise it to 60s or more, or make sure both ends ping more often",
        );
    }
}

/// The stale keep-alive race: reusing a pooled connection just as the server closes it.
fn long_pool_idle_timeout(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        let Some(at) = &site.pool_idle_timeout else {
            continue;
        };
        if group.pool.idle_timeout < Duration::from_secs(60) {
            continue;
        }
        sink.warn(
            at,
            &join(&site.path, "pool.idle_timeout"),
            format!(
                "pool.idle_timeout is {}, but many servers close idle keep-alive connections after \
                 5–75 s; a pool idle timeout at or above the server's lets weir reuse a \
                 connection the server is closing — the stale keep-alive race",
                format_duration(group.pool.idle_timeout)
            ),
            "weir lowers it automatically when a server sends Keep-Alive: timeout=N, but set it \
             below your servers' keep-alive timeout",
        );
    }
}

/// Cookies need HTTP; a tcp listener sending to the group ignores `persistence`.
fn persistence_behind_tcp(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        let Some(at) = &site.persistence else {
            continue;
        };
        let tcp =
            draft.config.listeners.iter().find(|l| {
                l.group == group.name && matches!(l.protocol, Protocol::Tcp | Protocol::Udp)
            });
        let Some(listener) = tcp else { continue };
        sink.warn(
            at,
            &join(&site.path, "persistence"),
            "persistence only applies to http/https listeners; tcp listeners can use \
             algorithm = \"maglev\"",
            format!(
                "listener \"{}\" is protocol = \"{}\" and ignores it; maglev keeps each client \
                 address on the same server",
                listener.name,
                listener.protocol.as_str()
            ),
        );
    }
}

/// An allow list with `0.0.0.0/0` (and `::/0` when clients can come over IPv6) filters nothing.
fn allow_list_admitting_everyone(draft: &Draft, sink: &mut Sink<'_>) {
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        let (Some(Acl::Allow(nets)), Some(at)) = (&listener.acl, &site.acl_allow) else {
            continue;
        };
        let everything = |v4: bool| nets.iter().any(|n| n.prefix == 0 && n.addr.is_ipv4() == v4);
        // IPv4 clients reach IPv4 sockets, and a dual-stack `[::]` one as IPv4-mapped
        // addresses, which match IPv4 networks.
        let v4_clients = listener
            .bind
            .iter()
            .any(|a| a.is_ipv4() || a.ip().is_unspecified());
        let v6_clients = listener.bind.iter().any(|a| a.is_ipv6());
        if (v4_clients && !everything(true)) || (v6_clients && !everything(false)) {
            continue;
        }
        sink.warn(
            at,
            &join(&site.path, "acl.allow"),
            "this allow list admits every client",
            "list only the networks that should connect, or remove `acl`",
        );
    }
}

/// A rule cannot admit more requests per second than its listener does.
fn rule_qps_above_listener_qps(draft: &Draft, sink: &mut Sink<'_>) {
    for (listener, site) in draft.config.listeners.iter().zip(&draft.listeners) {
        let Some(limit) = listener.limits.qps else {
            continue;
        };
        for rule in site.http.rule_qps.iter().filter(|r| r.qps > limit) {
            sink.warn(
                &rule.at,
                &rule.key,
                format!(
                    "rule qps ({}) is above the listener's limits.qps ({limit}); the listener \
                     limit is reached first",
                    rule.qps
                ),
                format!("lower the rule's qps to {limit} or less, or raise limits.qps"),
            );
        }
    }
}
