//! `[group.health_check]`: probe kind, timings, thresholds, and the HTTP-only request keys.

use toml::de::DeValue;

use crate::addr::parse_ip;
use crate::reader::{Table, Value, Zero};
use crate::sink::{Sink, Span};
use crate::unsupported;
use crate::value::{expect_integer, type_error};
use crate::{CheckKind, HealthCheck, HttpCheck, StatusMatch};

/// Where a health check's timings were written, for the timeout-above-interval lint.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthSite {
    /// The `interval` value, when written.
    pub interval: Option<Span>,
    /// The `timeout` value, when written.
    pub timeout: Option<Span>,
}

/// `kind` as written; `Udp` parses but is refused (see `unsupported.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Tcp,
    Http,
    Udp,
}

const KINDS: [(&str, Kind); 4] = [
    ("tcp", Kind::Tcp),
    ("http", Kind::Http),
    ("udp", Kind::Udp),
    ("none", Kind::None),
];

/// Keys that only mean something for `kind = "http"`.
const HTTP_KEYS: [&str; 4] = ["path", "method", "host", "expect_status"];

/// Reads a `health_check` table. Missing keys take [`HealthCheck::default`] values, except
/// that `timeout` defaults to at most `interval` and `jitter` to a tenth of `interval`.
pub(crate) fn read_health_check(
    sink: &mut Sink<'_>,
    mut t: Table<'_, '_>,
) -> (HealthCheck, HealthSite) {
    let mut check = HealthCheck::default();
    let mut site = HealthSite::default();

    let kind = t.choice(sink, "kind", &KINDS);
    let written_kind = kind.as_ref().map(|k| *k.get_ref());
    if let Some(kind) = kind.as_ref().filter(|k| *k.get_ref() == Kind::Udp) {
        unsupported::health_check_udp(sink, &kind.span(), &t.key_path("kind"));
    }
    if let Some(interval) = t.duration(sink, "interval", Zero::Refused) {
        site.interval = Some(interval.span());
        check.interval = interval.into_inner();
    }
    if let Some(timeout) = t.duration(sink, "timeout", Zero::Refused) {
        site.timeout = Some(timeout.span());
        check.timeout = timeout.into_inner();
    } else {
        // The default timeout follows a short interval down; a written one is linted instead.
        check.timeout = check.timeout.min(check.interval);
    }
    if let Some(n) = t.integer(sink, "healthy_threshold", 1..=100) {
        check.healthy_threshold = u32::try_from(n.into_inner()).unwrap_or(check.healthy_threshold);
    }
    if let Some(n) = t.integer(sink, "unhealthy_threshold", 1..=100) {
        check.unhealthy_threshold =
            u32::try_from(n.into_inner()).unwrap_or(check.unhealthy_threshold);
    }
    check.jitter = match t.duration(sink, "jitter", Zero::Allowed) {
        Some(jitter) => jitter.into_inner(),
        None => check.interval / 10,
    };
    if let Some(port) = t.integer(sink, "port", 1..=65535) {
        check.port = u16::try_from(port.into_inner()).ok();
    }
    if let Some(source) = t.string(sink, "source") {
        match parse_ip(source.get_ref()) {
            Ok(ip) => check.source = Some(ip),
            Err(why) => sink.error(
                &source.span(),
                &t.key_path("source"),
                why,
                "give the local IP address probes should come from, e.g. \"10.0.0.5\"",
            ),
        }
    }

    check.kind = match written_kind {
        Some(Kind::Http) => CheckKind::Http(read_http(sink, &mut t)),
        // `kind` is there but invalid (already reported): which keys apply is unknown.
        None if t.key_span("kind").is_some() => {
            for key in HTTP_KEYS {
                t.get(key);
            }
            CheckKind::Tcp
        }
        other => {
            refuse_http_keys(sink, &mut t, other);
            match other {
                Some(Kind::None) => CheckKind::None,
                _ => CheckKind::Tcp,
            }
        }
    };
    t.finish(sink);
    (check, site)
}

/// Reports each HTTP-only key present on a check that is not `kind = "http"`.
fn refuse_http_keys(sink: &mut Sink<'_>, t: &mut Table<'_, '_>, kind: Option<Kind>) {
    let kind_text = match kind {
        Some(Kind::None) => "\"none\"",
        Some(Kind::Udp) => "\"udp\"",
        Some(_) => "\"tcp\"",
        None => "\"tcp\" (the default)",
    };
    for key in HTTP_KEYS {
        let (Some(_), Some(at)) = (t.get(key), t.key_span(key)) else {
            continue;
        };
        sink.error(
            &at,
            &t.key_path(key),
            format!(
                "`{key}` only applies to kind = \"http\" checks; this check is kind = {kind_text}"
            ),
            format!("set kind = \"http\", or remove `{key}`"),
        );
    }
}

/// Reads the request keys of an HTTP check.
fn read_http(sink: &mut Sink<'_>, t: &mut Table<'_, '_>) -> HttpCheck {
    let mut http = HttpCheck::default();
    if let Some(path) = t.string(sink, "path") {
        let text = *path.get_ref();
        if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let hint = "write an absolute path without spaces, e.g. \"/healthz\"";
            sink.error(
                &path.span(),
                &t.key_path("path"),
                format!("\"{text}\" must start with '/' and contain no spaces"),
                hint,
            );
        } else {
            http.path = text.to_string();
        }
    }
    if let Some(method) = t.string(sink, "method") {
        let text = *method.get_ref();
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_')
        {
            let hint = format!(
                "e.g. method = \"{}\"",
                if text.is_empty() {
                    "GET".to_string()
                } else {
                    text.to_ascii_uppercase()
                }
            );
            sink.error(
                &method.span(),
                &t.key_path("method"),
                format!("\"{text}\" is not an uppercase HTTP method"),
                hint,
            );
        } else {
            http.method = text.to_string();
        }
    }
    if let Some(host) = t.string(sink, "host") {
        let text = *host.get_ref();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let hint = "give a host name such as \"app.example.com\", or leave `host` out to send the server's address";
            sink.error(
                &host.span(),
                &t.key_path("host"),
                "must be a non-empty host name without spaces",
                hint,
            );
        } else {
            http.host = Some(text.to_string());
        }
    }
    if let Some(list) = t.array(sink, "expect_status") {
        let path = t.key_path("expect_status");
        if list.get_ref().is_empty() {
            let hint = "e.g. expect_status = [\"2xx\", \"3xx\"]";
            sink.error(&list.span(), &path, "needs at least one status", hint);
        } else {
            let errors_before = sink.error_count();
            let statuses: Vec<StatusMatch> = list
                .get_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, value)| read_status(sink, value, &format!("{path}[{i}]")))
                .collect();
            if sink.error_count() == errors_before {
                http.expect_status = statuses;
            }
        }
    }
    http
}

/// One `expect_status` entry: `"2xx"`, `"200-299"`, `"204"` or `204`.
fn read_status(sink: &mut Sink<'_>, value: &Value<'_>, path: &str) -> Option<StatusMatch> {
    let text = match value.get_ref() {
        DeValue::Integer(_) => {
            let code = expect_integer(sink, value, path, 100..=599)?;
            return u16::try_from(code).ok().map(StatusMatch::Code);
        }
        DeValue::String(text) => text,
        _ => {
            type_error(
                sink,
                value,
                path,
                "a status class like \"2xx\", a code like 204 or a range like \"200-299\"",
            );
            return None;
        }
    };
    match parse_status(text) {
        Ok(status) => Some(status),
        Err(why) => {
            sink.error(
                &value.span(),
                path,
                why,
                "write a class like \"2xx\", a code like 204 or a range like \"200-299\"",
            );
            None
        }
    }
}

fn parse_status(text: &str) -> Result<StatusMatch, String> {
    let code = |s: &str| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) && s.len() == 3 => Ok(n),
            _ => Err(format!("\"{s}\" is not an HTTP status code (100 to 599)")),
        }
    };
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        return match class.parse::<u8>() {
            Ok(c @ 1..=5) if class.len() == 1 => Ok(StatusMatch::Class(c)),
            _ => Err(format!(
                "status class \"{text}\" is not valid; classes run from 1xx to 5xx"
            )),
        };
    }
    if let Some((lo, hi)) = text.split_once('-') {
        let (lo, hi) = (code(lo.trim())?, code(hi.trim())?);
        if lo > hi {
            return Err(format!("the status range \"{text}\" ends before it starts"));
        }
        return Ok(StatusMatch::Range(lo, hi));
    }
    code(text).map(StatusMatch::Code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_status_forms() {
        assert_eq!(parse_status("2xx").unwrap(), StatusMatch::Class(2));
        assert_eq!(parse_status("5XX").unwrap(), StatusMatch::Class(5));
        assert_eq!(parse_status("204").unwrap(), StatusMatch::Code(204));
        assert_eq!(
            parse_status("200-299").unwrap(),
            StatusMatch::Range(200, 299)
        );
    }

    #[test]
    fn explains_bad_statuses() {
        let cases = [
            ("6xx", "classes run from 1xx to 5xx"),
            ("0xx", "classes run from 1xx to 5xx"),
            ("22xx", "classes run from 1xx to 5xx"),
            ("600", "not an HTTP status code"),
            ("099", "not an HTTP status code"),
            ("ok", "not an HTTP status code"),
            ("299-200", "ends before it starts"),
            ("200-700", "\"700\" is not an HTTP status code"),
        ];
        for (text, want) in cases {
            let err = parse_status(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
