//! Warnings about a valid config: settings that load but are probably not what was meant.
//!
//! Lint never refuses a config. It runs only once validation passed, so every name resolves
//! and every value is in range. Where weir adjusts a value (a health-check timeout above its
//! interval) the adjustment happens here, next to the warning that announces it.

use crate::format_duration;
use crate::parse::Draft;
use crate::reader::join;
use crate::sink::Sink;

/// Runs every lint on `draft`, adjusting the model where a warning says weir will.
pub(crate) fn check(draft: &mut Draft, sink: &mut Sink<'_>) {
    health_timeout_above_interval(draft, sink);
    unused_groups(draft, sink);
    groups_without_primary(draft, sink);
    keepalive_after_idle_timeout(draft, sink);
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

/// A group no listener points at takes no traffic (and still gets health-checked).
fn unused_groups(draft: &Draft, sink: &mut Sink<'_>) {
    for (group, site) in draft.config.groups.iter().zip(&draft.groups) {
        if draft.config.listeners.iter().any(|l| l.group == group.name) {
            continue;
        }
        let at = site.name.as_ref().unwrap_or(&site.header);
        sink.warn(
            at,
            &site.path,
            format!("group \"{}\" is not used by any listener", group.name),
            "point a listener's `group` at it, or remove it",
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
