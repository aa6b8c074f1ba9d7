//! `[[listener.rule]]`: which requests a rule matches (`host`, `path` or `path_prefix`) and
//! where they go (`group`, or a `redirect`). Whether a rule's group exists is checked later,
//! with the other references (`validate.rs`).

use crate::reader::Table;
use crate::sink::{Sink, Span};
use crate::{HostMatch, PathMatch, Redirect, Rule, RuleAction};

/// A rule's `group = "..."`, kept for validation to resolve.
#[derive(Debug, Clone)]
pub(crate) struct GroupRef {
    /// The key in messages: `listener "web".rule[0].group`.
    pub key: String,
    /// The group named.
    pub name: String,
    /// The `group` value.
    pub at: Span,
}

/// A rule's `qps = N`, kept for lint to compare with the listener's `limits.qps`.
#[derive(Debug, Clone)]
pub(crate) struct RuleQps {
    /// The key in messages: `listener "web".rule[0].qps`.
    pub key: String,
    /// The limit.
    pub qps: u32,
    /// The `qps` value.
    pub at: Span,
}

const SCHEMES: [(&str, &str); 2] = [("http", "http"), ("https", "https")];

const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Reads the listener's `rule` entries, in file order. A rule with an error is left out (the
/// error stops the config anyway); group references go to `refs`, `qps` limits to `limits`.
pub(crate) fn read_rules(
    sink: &mut Sink<'_>,
    t: &mut Table<'_, '_>,
    refs: &mut Vec<GroupRef>,
    limits: &mut Vec<RuleQps>,
) -> Vec<Rule> {
    t.array_of_tables(sink, "rule")
        .into_iter()
        .filter_map(|table| read_rule(sink, table, refs, limits))
        .collect()
}

fn read_rule(
    sink: &mut Sink<'_>,
    mut t: Table<'_, '_>,
    refs: &mut Vec<GroupRef>,
    limits: &mut Vec<RuleQps>,
) -> Option<Rule> {
    let errors_before = sink.error_count();
    let host = t.string(sink, "host").and_then(|host| {
        parse_host_pattern(host.get_ref())
            .map_err(|why| {
                let hint = "write a host name such as \"api.example.com\", or \"*.example.com\" \
                            for every name under example.com";
                sink.error(&host.span(), &t.key_path("host"), why, hint);
            })
            .ok()
    });
    let mut path = None;
    for (key, make) in [
        ("path_prefix", PathMatch::Prefix as fn(String) -> PathMatch),
        ("path", PathMatch::Exact),
    ] {
        let Some(text) = t.string(sink, key) else {
            continue;
        };
        match check_path(text.get_ref()) {
            Ok(()) => path = Some(make(text.get_ref().to_string())),
            Err(why) => {
                let hint = "write the path from its leading '/', e.g. \"/api/\"";
                sink.error(&text.span(), &t.key_path(key), why, hint);
            }
        }
    }
    if let Some(later) = later_of(&t, "path", "path_prefix") {
        sink.error(
            &later.1,
            &t.key_path(later.0),
            "a rule matches either `path` (exactly) or `path_prefix`, not both",
            "keep `path` for one exact path, or `path_prefix` for everything under it",
        );
    }

    let group = t.string(sink, "group");
    let redirect = t
        .table(sink, "redirect")
        .and_then(|table| read_redirect(sink, table));
    let action = match (group, redirect) {
        (Some(group), None) if t.key_span("redirect").is_none() => {
            refs.push(GroupRef {
                key: t.key_path("group"),
                name: group.get_ref().to_string(),
                at: group.span(),
            });
            Some(RuleAction::Group(group.get_ref().to_string()))
        }
        (None, Some(redirect)) if t.key_span("group").is_none() => {
            Some(RuleAction::Redirect(redirect))
        }
        _ => None,
    };
    if let Some(later) = later_of(&t, "group", "redirect") {
        sink.error(
            &later.1,
            &t.key_path(later.0),
            "a rule either sends to a `group` or answers with a `redirect`, not both",
            "split it into two rules, or remove one of the two keys",
        );
    } else if t.key_span("group").is_none() && t.key_span("redirect").is_none() {
        sink.error(
            t.span(),
            t.path(),
            "a rule needs a `group` to send matching requests to, or a `redirect`",
            "add group = \"app\", or e.g. redirect = { scheme = \"https\" }",
        );
    }
    let qps = t.integer(sink, "qps", 1..=10_000_000).and_then(|n| {
        let qps = u32::try_from(*n.get_ref()).ok()?;
        limits.push(RuleQps {
            key: t.key_path("qps"),
            qps,
            at: n.span(),
        });
        Some(qps)
    });
    t.finish(sink);
    let action = action?;
    (sink.error_count() == errors_before).then_some(Rule {
        host,
        path,
        action,
        qps,
    })
}

/// When both `a` and `b` are written, the one written later, with where its key is.
pub(crate) fn later_of(
    t: &Table<'_, '_>,
    a: &'static str,
    b: &'static str,
) -> Option<(&'static str, Span)> {
    let (at_a, at_b) = (t.key_span(a)?, t.key_span(b)?);
    Some(if at_a.start > at_b.start {
        (a, at_a)
    } else {
        (b, at_b)
    })
}

/// Reads `redirect = { scheme, host, port, status }`.
fn read_redirect(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Option<Redirect> {
    let errors_before = sink.error_count();
    let mut redirect = Redirect {
        scheme: None,
        host: None,
        port: None,
        status: 301,
    };
    if let Some(scheme) = t.choice(sink, "scheme", &SCHEMES) {
        redirect.scheme = Some(scheme.get_ref().to_string());
    }
    if let Some(host) = t.string(sink, "host") {
        let checked = if host.get_ref().contains('*') {
            Err(format!(
                "\"{}\": a redirect goes to one host and cannot contain '*'",
                host.get_ref()
            ))
        } else {
            check_host_name(host.get_ref(), host.get_ref())
        };
        match checked {
            Ok(name) => redirect.host = Some(name),
            Err(why) => {
                let hint = "give the host name to redirect to, e.g. \"www.example.com\"; the \
                            port goes in `port`";
                sink.error(&host.span(), &t.key_path("host"), why, hint);
            }
        }
    }
    if let Some(port) = t.integer(sink, "port", 1..=65535) {
        redirect.port = u16::try_from(port.into_inner()).ok();
    }
    if let Some(status) = t.integer(sink, "status", 0..=999) {
        match u16::try_from(*status.get_ref()) {
            Ok(code) if REDIRECT_STATUSES.contains(&code) => redirect.status = code,
            _ => sink.error(
                &status.span(),
                &t.key_path("status"),
                format!(
                    "a redirect status must be 301, 302, 303, 307 or 308, found {}",
                    status.get_ref()
                ),
                "301 and 308 are permanent, 302, 303 and 307 temporary; 307 and 308 keep the \
                 method and body",
            ),
        }
    }
    if ["scheme", "host", "port"]
        .iter()
        .all(|key| t.key_span(key).is_none())
    {
        sink.error(
            t.span(),
            t.path(),
            "a redirect needs at least one of `scheme`, `host` or `port`",
            "with none it would send clients back to the URL they asked for; e.g. \
             redirect = { scheme = \"https\" }",
        );
    }
    t.finish(sink);
    (sink.error_count() == errors_before).then_some(redirect)
}

/// A rule's `host`: `"api.example.com"` or `"*.example.com"`, lowercased.
pub(crate) fn parse_host_pattern(text: &str) -> Result<HostMatch, String> {
    if text == "*" {
        return Err("\"*\" alone is not a pattern; leave `host` out to match every host".into());
    }
    match text.strip_prefix("*.") {
        Some("") => Err(format!(
            "\"{text}\" has nothing after the wildcard; write e.g. \"*.example.com\""
        )),
        Some(suffix) => {
            check_host_name(suffix, text).map(|name| HostMatch::Wildcard(format!(".{name}")))
        }
        None => check_host_name(text, text).map(HostMatch::Exact),
    }
}

/// Checks a host name (`name`, part of `whole` as written) and lowercases it: labels of
/// letters, digits, '-' and '_', separated by single dots.
fn check_host_name(name: &str, whole: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.contains('*') {
        return Err(format!(
            "\"{whole}\": a wildcard may only be the whole first label, as in \"*.example.com\""
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("\"{whole}\" contains a space"));
    }
    let port = name
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()));
    if let Some((host, port)) = port {
        return Err(format!(
            "\"{whole}\" has a port (\":{port}\"); write the host alone, \"{}\"",
            whole.strip_suffix(&format!(":{port}")).unwrap_or(host)
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "\"{whole}\" contains '{c}'; host names are letters, digits, '-' and '.'"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!(
            "\"{whole}\" has an empty label (a dot at the start or end, or two in a row)"
        ));
    }
    if name.len() > 253 || name.split('.').any(|label| label.len() > 63) {
        return Err(format!(
            "\"{whole}\" is too long for a host name (63 characters a label, 253 in all)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// A rule's `path` or `path_prefix`: absolute, no spaces, no query or fragment.
fn check_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("\"{text}\" must start with '/'"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{text}\" must not contain spaces or control characters"
        ));
    }
    if let Some(c) = text.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "\"{text}\" contains '{c}'; rules match the path alone, without query or fragment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_host_patterns() {
        assert_eq!(
            parse_host_pattern("API.Example.com").unwrap(),
            HostMatch::Exact("api.example.com".into())
        );
        assert_eq!(
            parse_host_pattern("*.Example.com").unwrap(),
            HostMatch::Wildcard(".example.com".into())
        );
        assert_eq!(
            parse_host_pattern("localhost").unwrap(),
            HostMatch::Exact("localhost".into())
        );
        assert_eq!(
            parse_host_pattern("*.internal_svc").unwrap(),
            HostMatch::Wildcard(".internal_svc".into())
        );
    }

    #[test]
    fn explains_bad_host_patterns() {
        let cases = [
            ("", "must not be empty"),
            ("*", "leave `host` out"),
            ("*.", "nothing after the wildcard"),
            ("a.*.com", "the whole first label"),
            ("*example.com", "the whole first label"),
            ("**.example.com", "the whole first label"),
            ("api example.com", "contains a space"),
            (
                "api.example.com:8080",
                "has a port (\":8080\"); write the host alone, \"api.example.com\"",
            ),
            ("api/v1", "contains '/'"),
            ("[::1]", "contains '['"),
            ("a:b", "contains ':'"),
            ("a..b", "empty label"),
            ("example.com.", "empty label"),
            (".example.com", "empty label"),
        ];
        for (text, want) in cases {
            let err = parse_host_pattern(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(parse_host_pattern(&long).unwrap_err().contains("too long"));
    }

    #[test]
    fn checks_paths() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/v1/").is_ok());
        assert!(
            check_path("v1")
                .unwrap_err()
                .contains("must start with '/'")
        );
        assert!(check_path("/a b").unwrap_err().contains("spaces"));
        assert!(check_path("/a?x=1").unwrap_err().contains("without query"));
    }
}
