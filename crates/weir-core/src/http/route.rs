//! Host/path rules → a group or a redirect; first match wins.
//!
//! A [`Router`] is compiled once per config from a listener's rules and shared by every
//! connection. Matching is a linear scan in rule order: listeners have tens of rules, each test
//! is a string comparison, and the scan keeps "first match wins" obvious. (If configs with
//! thousands of host rules appear, index exact hosts in a map and keep the scan for the rest.)
//!
//! Hosts are handled in one normal form everywhere: lowercase, no port, no trailing dot, and
//! IPv6 literals *without* their brackets (`[::1]:8080` → `::1`), so a rule or a log line never
//! has to care which header the host came from.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use std::sync::Arc;

use weir_config::{HostMatch, PathMatch, Redirect, Rule, RuleAction};

use crate::limits::Rate;

/// The compiled rules of one listener. `Send + Sync`; build it once per config.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    host: Option<HostPattern>,
    path: Option<PathMatch>,
    target: Target,
    /// The rule's own `qps` limit.
    rate: Option<Arc<Rate>>,
}

/// A host matcher in normal form (lowercase, no trailing dot).
#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// The suffix with its leading dot.
    Suffix(String),
}

#[derive(Debug, Clone)]
enum Target {
    Group(usize),
    Redirect(Redirect),
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// To the group with this index in the runtime's group list.
    Group(usize),
    /// Answer with this redirect (see [`redirect_location`]).
    Redirect(&'a Redirect),
    /// No rule matched: the listener's default group.
    Default,
}

impl Router {
    /// Compiles `rules` (in order). `group_index` maps a group name to its index in the runtime's
    /// group list; names were validated, but a rule whose group does not resolve is dropped
    /// rather than sent somewhere else.
    pub fn new(rules: &[Rule], group_index: impl Fn(&str) -> Option<usize>) -> Router {
        let rules = rules
            .iter()
            .filter_map(|rule| {
                let target = match &rule.action {
                    RuleAction::Group(name) => Target::Group(group_index(name)?),
                    RuleAction::Redirect(redirect) => Target::Redirect(redirect.clone()),
                };
                let host = rule.host.as_ref().map(|h| match h {
                    HostMatch::Exact(name) => HostPattern::Exact(normal_pattern(name)),
                    HostMatch::Wildcard(suffix) => HostPattern::Suffix(normal_pattern(suffix)),
                });
                Some(Compiled {
                    host,
                    path: rule.path.clone(),
                    target,
                    rate: rule.qps.map(|qps| Arc::new(Rate::new(qps))),
                })
            })
            .collect();
        Router { rules }
    }

    /// The route of a request. `host` is the normal-form host (see [`host_of`]), `None` when the
    /// request has none — rules with a host condition then never match; `path` is the request
    /// path without the query.
    pub fn route(&self, host: Option<&str>, path: &str) -> Route<'_> {
        self.route_with_rate(host, path).0
    }

    /// Like [`Router::route`], with the matching rule's `qps` limit, if it has one.
    pub fn route_with_rate(&self, host: Option<&str>, path: &str) -> (Route<'_>, Option<&Rate>) {
        for rule in &self.rules {
            if rule.matches(host, path) {
                let route = match &rule.target {
                    Target::Group(index) => Route::Group(*index),
                    Target::Redirect(redirect) => Route::Redirect(redirect),
                };
                return (route, rule.rate.as_deref());
            }
        }
        (Route::Default, None)
    }
}

impl Compiled {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(HostPattern::Exact(want)), Some(host)) => host.eq_ignore_ascii_case(want),
            (Some(HostPattern::Suffix(suffix)), Some(host)) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        };
        host_ok
            && match &self.path {
                None => true,
                Some(PathMatch::Prefix(prefix)) => path.as_bytes().starts_with(prefix.as_bytes()),
                Some(PathMatch::Exact(exact)) => path == exact,
            }
    }
}

fn normal_pattern(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// The request's host in normal form: the URI authority if present (HTTP/2 `:authority`,
/// absolute-form targets), else the first `Host` header. The port is stripped, ASCII is
/// lowercased, one trailing dot is removed, and IPv6 literals lose their brackets
/// (`[::1]:8080` → `::1`). `None` when there is no host, or it is not a valid host name or IP
/// literal (a bad authority does not fall back to `Host`).
pub fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return normal_host(authority.host()).map(Cow::into_owned);
    }
    let value = headers.get(http::header::HOST)?.to_str().ok()?;
    let (host, _) = split_authority(value)?;
    normal_host(host).map(Cow::into_owned)
}

/// Splits `host[:port]` (no userinfo) into the host — IPv6 literals keep their brackets — and
/// the port. `None` when the shape is wrong (unbalanced brackets, non-numeric or too large
/// port, a colon in an unbracketed host). An empty port (`host:`) counts as no port.
pub(crate) fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let rest = &authority[end..];
        if rest.is_empty() {
            (&authority[..end], None)
        } else {
            (&authority[..end], Some(rest.strip_prefix(':')?))
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Brings a host (IPv6 literals bracketed, no port) to normal form; `None` if it is not a
/// plausible host: letters, digits, `-`, `.`, `_`, or a bracketed IPv6 address.
pub(crate) fn normal_host(host: &str) -> Option<Cow<'_, str>> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        inner.parse::<Ipv6Addr>().ok()?;
        return Some(lowercase(inner));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    valid.then(|| lowercase(host))
}

/// `s` in ASCII lowercase, copied only when it has an uppercase letter: most clients send
/// hosts in lowercase, and every request looks at its host.
fn lowercase(s: &str) -> Cow<'_, str> {
    match s.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(s.to_ascii_lowercase()),
        false => Cow::Borrowed(s),
    }
}

/// The default port of `scheme` (`http` 80, `https` 443).
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

/// The `Location` of a redirect: `scheme://host[:port]path?query`, taking the request's own
/// values where the rule leaves them unset. The port is omitted when it is the scheme's default
/// (80/443), and when the rule changes the scheme but sets no port the request's port is dropped
/// (`http://a:8080/x` → `https://a/x`, the usual HTTP → HTTPS case). `request_authority` is
/// `host[:port]` as the client sent it (userinfo, if any, is never copied); an empty
/// `path_and_query`, or one that is not origin-form (`*`), becomes `/`.
pub fn redirect_location(
    rule: &Redirect,
    request_scheme: &str,
    request_authority: &str,
    path_and_query: &str,
) -> String {
    let scheme = rule.scheme.as_deref().unwrap_or(request_scheme);
    let authority = request_authority
        .rsplit_once('@')
        .map_or(request_authority, |(_, rest)| rest);
    let (request_host, request_port) = split_authority(authority).unwrap_or((authority, None));
    let scheme_changed = !scheme.eq_ignore_ascii_case(request_scheme);
    let port = match rule.port {
        Some(port) => Some(port),
        None if scheme_changed => None,
        None => request_port,
    };
    let port = port.filter(|&p| Some(p) != default_port(scheme));
    let host = rule.host.as_deref().unwrap_or(request_host);
    let bracket = host.contains(':') && !host.starts_with('[');
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };

    let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 12);
    out.extend(scheme.chars().map(|c| c.to_ascii_lowercase()));
    out.push_str("://");
    if bracket {
        out.push('[');
    }
    out.push_str(host);
    if bracket {
        out.push(']');
    }
    if let Some(port) = port {
        // Writing to a String cannot fail.
        let _ = write!(out, ":{port}");
    }
    out.push_str(path);
    out
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
