//! `[[listener]]`: one table to a [`Listener`] and the positions validation and lint need.
//! The keys only `http` and `https` listeners take are read by `http.rs`.

use crate::acl::{read_acl, read_limits};
use crate::addr::parse_bind;
use crate::http::{HttpSite, read_http_keys};
use crate::parse::{read_keepalive, read_name};
use crate::reader::{Table, Zero};
use crate::sink::{Sink, Span};
use crate::unsupported;
use crate::{CloseMode, HTTP_IDLE_TIMEOUT, Listener, Protocol};

/// Where a listener's parts were written. A field is `Some` only when its value was valid.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenerSite {
    /// The listener in messages: `listener "web"` or `listener[0]`.
    pub path: String,
    /// The `[[listener]]` header.
    pub header: Span,
    /// The `name` value.
    pub name: Option<Span>,
    /// The `bind` value, with the text as written.
    pub bind: Option<(Span, String)>,
    /// The `group` value.
    pub group: Option<Span>,
    /// The `idle_timeout` value, when written.
    pub idle_timeout: Option<Span>,
    /// The `tcp_keepalive` value, when written.
    pub keepalive: Option<Span>,
    /// The `acl.allow` list, when the listener has an allow list.
    pub acl_allow: Option<Span>,
    /// Positions of the HTTP keys (`http` and `https` listeners).
    pub http: HttpSite,
}

const PROTOCOLS: [(&str, Protocol); 4] = [
    ("tcp", Protocol::Tcp),
    ("udp", Protocol::Udp),
    ("http", Protocol::Http),
    ("https", Protocol::Https),
];

const CLOSE_MODES: [(&str, CloseMode); 2] = [("fin", CloseMode::Fin), ("rst", CloseMode::Rst)];

/// Reads one `[[listener]]` table. Problems go to `sink`; the returned listener then holds
/// placeholders where a value was bad or missing.
pub(crate) fn read_listener(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> (Listener, ListenerSite) {
    let mut listener = Listener::new("", Protocol::Tcp, Vec::new(), "");
    let mut site = ListenerSite {
        path: t.path().to_string(),
        header: t.span().clone(),
        ..ListenerSite::default()
    };

    if let Some(name) = read_name(sink, &mut t, "name = \"web\"") {
        site.name = Some(name.span());
        listener.name = name.get_ref().to_string();
    }

    t.require(sink, "protocol", "protocol = \"tcp\"");
    let protocol = t.choice(sink, "protocol", &PROTOCOLS);
    if let Some(protocol) = &protocol {
        listener.protocol = *protocol.get_ref();
        if matches!(listener.protocol, Protocol::Http | Protocol::Https) {
            listener.idle_timeout = HTTP_IDLE_TIMEOUT;
        }
        unsupported::listener_protocol(
            sink,
            listener.protocol,
            &protocol.span(),
            &t.key_path("protocol"),
        );
    }

    t.require(sink, "bind", "bind = \"0.0.0.0:8080\"");
    if let Some(text) = t.string(sink, "bind") {
        let key = t.key_path("bind");
        match parse_bind(text.get_ref()) {
            Ok(bind)
                if bind.is_range()
                    && matches!(listener.protocol, Protocol::Http | Protocol::Https) =>
            {
                sink.error(
                    &text.span(),
                    &key,
                    format!(
                        "a port range is only allowed for tcp and udp listeners, not {}",
                        listener.protocol.as_str()
                    ),
                    "give one port, e.g. \"0.0.0.0:8080\"",
                );
            }
            Ok(bind) => {
                listener.bind = bind.addrs();
                site.bind = Some((text.span(), text.get_ref().to_string()));
            }
            Err(why) => sink.error(
                &text.span(),
                &key,
                format!("invalid bind address: {why}"),
                "write \"ip:port\", \"[ipv6]:port\", or for tcp and udp a range \"ip:7000-7010\"",
            ),
        }
    }

    t.require(sink, "group", "group = \"app\"");
    if let Some(group) = t.string(sink, "group") {
        site.group = Some(group.span());
        listener.group = group.get_ref().to_string();
    }

    if let Some(idle) = t.duration(sink, "idle_timeout", Zero::Refused) {
        site.idle_timeout = Some(idle.span());
        listener.idle_timeout = idle.into_inner();
    }
    if let Some(mode) = t.choice(sink, "idle_close", &CLOSE_MODES) {
        listener.idle_close = mode.into_inner();
    }
    if let Some(propagate) = t.boolean(sink, "propagate_reset") {
        listener.propagate_reset = propagate;
    }
    match protocol.as_ref().map(|p| *p.get_ref()) {
        Some(Protocol::Tcp) => {
            if let Some(splice) = t.boolean(sink, "splice") {
                listener.splice = splice;
            }
        }
        Some(kind) => {
            if let (Some(_), Some(at)) = (t.get("splice"), t.key_span("splice")) {
                sink.error(
                    &at,
                    &t.key_path("splice"),
                    format!(
                        "`splice` only applies to tcp listeners; this listener is protocol = \"{}\"",
                        kind.as_str()
                    ),
                    "remove it: tunnels through http listeners are copied",
                );
            }
        }
        None => {
            t.get("splice");
        }
    }
    if let Some(keepalive) = read_keepalive(sink, &mut t) {
        site.keepalive = Some(keepalive.span());
        listener.tcp_keepalive = keepalive.into_inner();
    }
    if let Some(backlog) = t.integer(sink, "backlog", 1..=65535) {
        listener.backlog = u32::try_from(backlog.into_inner()).unwrap_or(listener.backlog);
    }
    if let Some((acl, allow_at)) = read_acl(sink, &mut t) {
        listener.acl = Some(acl);
        site.acl_allow = allow_at;
    }
    listener.limits = read_limits(sink, &mut t, protocol.as_ref().map(|p| *p.get_ref()));
    listener.http = read_http_keys(sink, &mut t, protocol.as_ref(), &mut site.http);
    t.finish(sink);
    (listener, site)
}
