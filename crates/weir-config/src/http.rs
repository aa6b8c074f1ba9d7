//! The keys only `http` and `https` listeners have: request limits, `http2`, `tls`, and the
//! routing rules (`[[listener.rule]]`, read by `rule.rs`). On a `tcp` or `udp` listener each of
//! these keys is an error that names the protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::reader::{Table, Value, Zero};
use crate::rule::{GroupRef, RuleQps, read_rules};
use crate::sink::{Sink, Span};
use crate::value::expect_table;
use crate::{
    CertificateFiles, Http2Limits, HttpSettings, Protocol, Tls, TlsVersion, format_duration,
};

/// Where a listener's HTTP parts were written, for validation and lint.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpSite {
    /// The `request_header_timeout` value, when written.
    pub request_header_timeout: Option<Span>,
    /// The `tunnel_idle_timeout` value, when written.
    pub tunnel_idle_timeout: Option<Span>,
    /// The `group` of each rule that sends to a group.
    pub rule_groups: Vec<GroupRef>,
    /// The `qps` of each rule that sets one.
    pub rule_qps: Vec<RuleQps>,
}

/// Keys of a listener that only mean something for `http` and `https`.
const HTTP_KEYS: [&str; 10] = [
    "request_header_timeout",
    "max_requests_per_connection",
    "max_header_size",
    "max_uri_length",
    "max_body_size",
    "tunnel_idle_timeout",
    "log_query",
    "http2",
    "tls",
    "rule",
];

const TLS_VERSIONS: [(&str, TlsVersion); 2] =
    [("1.2", TlsVersion::Tls12), ("1.3", TlsVersion::Tls13)];

/// Longest `tls.session_lifetime` (RFC 8446 caps ticket lifetimes at 7 days; a day is plenty).
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Reads the HTTP keys of a listener whose `protocol` was read as `protocol` (`None` when it
/// is missing or invalid, already reported: then which keys apply is unknown and they are
/// only marked as known). Returns the settings for `http` and `https`, `None` otherwise.
pub(crate) fn read_http_keys(
    sink: &mut Sink<'_>,
    t: &mut Table<'_, '_>,
    protocol: Option<&Spanned<Protocol>>,
    site: &mut HttpSite,
) -> Option<HttpSettings> {
    let Some(protocol) = protocol else {
        for key in HTTP_KEYS {
            t.get(key);
        }
        return None;
    };
    let kind = *protocol.get_ref();
    if matches!(kind, Protocol::Tcp | Protocol::Udp) {
        for key in HTTP_KEYS {
            refuse(sink, t, key, kind);
        }
        return None;
    }

    let mut http = HttpSettings::default();
    if let Some(d) = t.duration(sink, "request_header_timeout", Zero::Refused) {
        site.request_header_timeout = Some(d.span());
        http.request_header_timeout = d.into_inner();
    }
    if let Some(n) = t.integer(sink, "max_requests_per_connection", 1..=100_000) {
        http.max_requests_per_connection =
            u32::try_from(n.into_inner()).unwrap_or(http.max_requests_per_connection);
    }
    if let Some(n) = t.size(sink, "max_header_size", 1 << 10..=1 << 20) {
        http.max_header_size = usize::try_from(n.into_inner()).unwrap_or(http.max_header_size);
    }
    if let Some(n) = t.size(sink, "max_uri_length", 256..=64 << 10) {
        http.max_uri_length = usize::try_from(n.into_inner()).unwrap_or(http.max_uri_length);
    }
    if let Some(n) = t.size(sink, "max_body_size", 1..=1 << 40) {
        http.max_body_size = n.into_inner();
    }
    if let Some(d) = t.duration(sink, "tunnel_idle_timeout", Zero::Refused) {
        site.tunnel_idle_timeout = Some(d.span());
        http.tunnel_idle_timeout = d.into_inner();
    }
    if let Some(log_query) = t.boolean(sink, "log_query") {
        http.log_query = log_query;
    }
    if let Some(table) = t.table(sink, "http2") {
        http.http2 = read_http2(sink, table);
    }
    if kind == Protocol::Https {
        if let Some(table) = t.table(sink, "tls") {
            http.tls = read_tls(sink, table);
        } else if t.key_span("tls").is_none() {
            sink.error(
                &protocol.span(),
                &t.key_path("tls"),
                "an https listener needs TLS settings: a [listener.tls] table with its certificates",
                "add [listener.tls] with certificates = [{ cert = \"site.pem\", key = \"site.key\" }], \
                 or use protocol = \"http\"",
            );
        }
    } else {
        refuse(sink, t, "tls", kind);
    }
    http.rules = read_rules(sink, t, &mut site.rule_groups, &mut site.rule_qps);
    Some(http)
}

/// Reports `key` when it is present on a listener of protocol `kind`, which does not take it.
fn refuse(sink: &mut Sink<'_>, t: &mut Table<'_, '_>, key: &'static str, kind: Protocol) {
    let (Some(_), Some(at)) = (t.get(key), t.key_span(key)) else {
        return;
    };
    let (applies, fix) = match (key, kind) {
        ("tls", Protocol::Http) => (
            "https listeners",
            "set protocol = \"https\" to terminate TLS here, or remove `tls`".to_string(),
        ),
        ("tls", _) => (
            "https listeners",
            format!(
                "weir does not terminate TLS on {} listeners; use protocol = \"https\", or remove `tls`",
                kind.as_str()
            ),
        ),
        _ => (
            "http and https listeners",
            format!("set protocol = \"http\" or \"https\", or remove `{key}`"),
        ),
    };
    sink.error(
        &at,
        &t.key_path(key),
        format!(
            "`{key}` only applies to {applies}; this listener is protocol = \"{}\"",
            kind.as_str()
        ),
        fix,
    );
}

/// Reads `http2 = { ... }` / `[listener.http2]`.
fn read_http2(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Http2Limits {
    let mut limits = Http2Limits::default();
    if let Some(n) = t.integer(sink, "max_concurrent_streams", 1..=10_000) {
        limits.max_concurrent_streams =
            u32::try_from(n.into_inner()).unwrap_or(limits.max_concurrent_streams);
    }
    if let Some(n) = t.integer(sink, "max_pending_reset_streams", 1..=10_000) {
        limits.max_pending_reset_streams =
            usize::try_from(n.into_inner()).unwrap_or(limits.max_pending_reset_streams);
    }
    if let Some(n) = t.integer(sink, "max_local_error_reset_streams", 1..=10_000) {
        limits.max_local_error_reset_streams =
            usize::try_from(n.into_inner()).unwrap_or(limits.max_local_error_reset_streams);
    }
    t.finish(sink);
    limits
}

/// Reads `[listener.tls]`. Relative certificate paths resolve against the config file's
/// directory, so a config works wherever weir is started from.
fn read_tls(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Option<Tls> {
    let mut certificates = Vec::new();
    t.require(
        sink,
        "certificates",
        "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]",
    );
    if let Some(list) = t.array(sink, "certificates") {
        if list.get_ref().is_empty() {
            sink.error(
                &list.span(),
                &t.key_path("certificates"),
                "an https listener needs at least one certificate",
                "add e.g. { cert = \"/etc/weir/site.pem\", key = \"/etc/weir/site.key\" }",
            );
        }
        for (i, value) in list.get_ref().iter().enumerate() {
            let path = format!("{}[{i}]", t.key_path("certificates"));
            certificates.extend(read_certificate(sink, value, path));
        }
    }
    let mut min_version = TlsVersion::Tls12;
    if let Some(version) = t.choice(sink, "min_version", &TLS_VERSIONS) {
        min_version = version.into_inner();
    }
    let mut session_lifetime = Duration::from_secs(300);
    if let Some(d) = t.duration(sink, "session_lifetime", Zero::Refused) {
        if *d.get_ref() < Duration::from_secs(1) || *d.get_ref() > MAX_SESSION_LIFETIME {
            sink.error(
                &d.span(),
                &t.key_path("session_lifetime"),
                format!(
                    "must be between 1s and 24h, found {}",
                    format_duration(*d.get_ref())
                ),
                "resumed sessions skip a full handshake; \"300s\" to \"24h\" is usual",
            );
        } else {
            session_lifetime = d.into_inner();
        }
    }
    t.finish(sink);
    Some(Tls {
        certificates,
        min_version,
        session_lifetime,
    })
}

/// Reads one `{ cert = "...", key = "..." }`; `None` when it is not a valid entry.
fn read_certificate(
    sink: &mut Sink<'_>,
    value: &Value<'_>,
    path: String,
) -> Option<CertificateFiles> {
    if let Some(text) = value.get_ref().as_str() {
        sink.error(
            &value.span(),
            &path,
            format!("expected a table, found string \"{text}\""),
            "write each certificate as a table: { cert = \"site.pem\", key = \"site.key\" }",
        );
        return None;
    }
    let mut t = expect_table(sink, value, path)?;
    let origin = sink.origin();
    let file = |sink: &mut Sink<'_>, t: &mut Table<'_, '_>, key: &'static str| {
        let example = if key == "cert" {
            "cert = \"site.pem\""
        } else {
            "key = \"site.key\""
        };
        t.require(sink, key, example);
        let text = t.string(sink, key)?;
        if text.get_ref().trim().is_empty() {
            sink.error(
                &text.span(),
                &t.key_path(key),
                "must not be empty",
                "give the path of a PEM file",
            );
            return None;
        }
        Some(resolve(origin, text.get_ref()))
    };
    let cert = file(sink, &mut t, "cert");
    let key = file(sink, &mut t, "key");
    t.finish(sink);
    Some(CertificateFiles {
        cert: cert?,
        key: key?,
    })
}

/// `file` as written when absolute, else relative to the directory of the config at `origin`.
fn resolve(origin: &str, file: &str) -> PathBuf {
    let file = Path::new(file);
    match Path::new(origin).parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file() {
        let at = |origin: &str, file: &str| resolve(origin, file).display().to_string();
        assert_eq!(at("/etc/weir/weir.toml", "a.pem"), "/etc/weir/a.pem");
        assert_eq!(at("/etc/weir/weir.toml", "/srv/a.pem"), "/srv/a.pem");
        assert_eq!(at("conf/weir.toml", "tls/a.pem"), "conf/tls/a.pem");
        assert_eq!(at("weir.toml", "a.pem"), "a.pem");
        assert_eq!(at("", "a.pem"), "a.pem");
    }
}
