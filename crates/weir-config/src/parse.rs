//! The schema's entry point: TOML text to a [`Draft`], then validation and lint.
//!
//! Owns the document root and the small top-level sections (`[runtime]`, `[log]`, `[admin]`),
//! plus the pieces listeners and groups share (names, `tcp_keepalive`). Listeners live in
//! `listener.rs`, groups in `group.rs`, health checks in `health.rs`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::addr::parse_socket_addr;
use crate::group::{GroupSite, read_group};
use crate::listener::{ListenerSite, read_listener};
use crate::reader::{Table, Zero};
use crate::sink::Sink;
use crate::value::type_error;
use crate::{AccessLogTarget, Admin, Config, Diagnostics, Loaded, Log, LogFormat, Runtime};
use crate::{TcpKeepalive, lint, validate};

/// A config as read, before cross-checks: the model (with placeholders where a key was bad or
/// missing, which then always comes with an error) and where each part was written.
pub(crate) struct Draft {
    /// The model being built.
    pub config: Config,
    /// Positions of `config.listeners[i]`.
    pub listeners: Vec<ListenerSite>,
    /// Positions of `config.groups[i]`.
    pub groups: Vec<GroupSite>,
}

/// Parses, validates and lints `source`.
pub(crate) fn parse(source: &str, origin: &str) -> Result<Loaded, Diagnostics> {
    let mut sink = Sink::new(source, origin);
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        // Schema errors on a tree the parser had to patch up would mostly be echoes of the
        // syntax errors ("missing key" for a line that did not parse), so stop here.
        for err in syntax_errors {
            let message = format!("TOML syntax error: {}", err.message());
            let hint = "see https://toml.io for the file format";
            match err.span() {
                Some(span) => sink.error(&span, "", message, hint),
                None => sink.error_unplaced(message, hint),
            }
        }
        return Err(Diagnostics(sink.finish()));
    }
    let mut draft = read_document(root.get_ref(), &mut sink);
    validate::check(&draft, &mut sink);
    if sink.has_errors() {
        return Err(Diagnostics(sink.finish()));
    }
    lint::check(&mut draft, &mut sink);
    Ok(Loaded {
        config: draft.config,
        warnings: sink.finish(),
    })
}

fn read_document(root: &DeTable<'_>, sink: &mut Sink<'_>) -> Draft {
    let mut t = Table::new(root, 0..0, String::new());
    let mut draft = Draft {
        config: Config::default(),
        listeners: Vec::new(),
        groups: Vec::new(),
    };
    if let Some(runtime) = t.table(sink, "runtime") {
        draft.config.runtime = read_runtime(sink, runtime);
    }
    if let Some(log) = t.table(sink, "log") {
        draft.config.log = read_log(sink, log);
    }
    if let Some(admin) = t.table(sink, "admin") {
        draft.config.admin = read_admin(sink, admin);
    }
    for table in t.array_of_tables(sink, "listener") {
        let (listener, site) = read_listener(sink, table);
        draft.config.listeners.push(listener);
        draft.listeners.push(site);
    }
    for table in t.array_of_tables(sink, "group") {
        let (group, site) = read_group(sink, table);
        draft.config.groups.push(group);
        draft.groups.push(site);
    }
    t.finish(sink);
    draft
}

fn read_runtime(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Runtime {
    let mut runtime = Runtime::default();
    if let Some(workers) = t.integer(sink, "workers", 1..=1024) {
        runtime.workers = usize::try_from(workers.into_inner()).ok();
    }
    if let Some(grace) = t.duration(sink, "shutdown_grace", Zero::Allowed) {
        runtime.shutdown_grace = grace.into_inner();
    }
    if let Some(io_uring) = t.boolean(sink, "io_uring") {
        runtime.io_uring = io_uring;
    }
    t.finish(sink);
    runtime
}

fn read_log(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Log {
    let mut log = Log::default();
    if let Some(access) = t.string(sink, "access") {
        log.access = match *access.get_ref() {
            "off" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            "" => {
                sink.error(
                    &access.span(),
                    &t.key_path("access"),
                    "must not be empty",
                    "use \"off\", \"stdout\", \"stderr\" or a file path",
                );
                AccessLogTarget::default()
            }
            path => AccessLogTarget::File(PathBuf::from(path)),
        };
    }
    let formats = [("json", LogFormat::Json), ("text", LogFormat::Text)];
    if let Some(format) = t.choice(sink, "format", &formats) {
        log.format = format.into_inner();
    }
    t.finish(sink);
    log
}

fn read_admin(sink: &mut Sink<'_>, mut t: Table<'_, '_>) -> Option<Admin> {
    t.require(sink, "listen", "listen = \"127.0.0.1:9900\"");
    let listen =
        t.string(sink, "listen")
            .and_then(|text| match parse_socket_addr(text.get_ref(), true) {
                Ok(addr) => Some(Spanned::new(text.span(), addr)),
                Err(why) => {
                    let hint = "write an IP address and port, e.g. \"127.0.0.1:9900\"";
                    sink.error(
                        &text.span(),
                        &t.key_path("listen"),
                        format!("invalid address: {why}"),
                        hint,
                    );
                    None
                }
            });
    let token_file = t.string(sink, "token_file").and_then(|path| {
        if path.get_ref().is_empty() {
            let hint = "give the path of a file holding the bearer token";
            sink.error(
                &path.span(),
                &t.key_path("token_file"),
                "must not be empty",
                hint,
            );
            return None;
        }
        Some(PathBuf::from(path.into_inner()))
    });
    let listen_key = t.key_path("listen");
    t.finish(sink);
    let listen = listen?;
    if !listen.get_ref().ip().is_loopback() && token_file.is_none() {
        sink.error(
            &listen.span(),
            &listen_key,
            format!(
                "the admin API on non-loopback address {} needs a token",
                listen.get_ref()
            ),
            "set token_file = \"/etc/weir/admin.token\", or listen on 127.0.0.1",
        );
    }
    Some(Admin {
        listen: listen.into_inner(),
        token_file,
    })
}

// === Shared by listeners and groups ===

/// Reads a `name` that must be present, non-empty and made of `[A-Za-z0-9_.-]` (names appear
/// in metrics labels, logs and admin URLs). Returns it with its span when valid.
pub(crate) fn read_name<'t>(
    sink: &mut Sink<'_>,
    t: &mut Table<'t, '_>,
    example: &str,
) -> Option<Spanned<&'t str>> {
    t.require(sink, "name", example);
    let name = t.string(sink, "name")?;
    let bad = if name.get_ref().is_empty() {
        Some("must not be empty".to_string())
    } else if !name
        .get_ref()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Some(format!(
            "\"{}\" may only contain letters, digits, '_', '.' and '-'",
            name.get_ref()
        ))
    } else {
        None
    };
    match bad {
        Some(message) => {
            sink.error(
                &name.span(),
                &t.key_path("name"),
                message,
                format!("e.g. {example}"),
            );
            None
        }
        None => Some(name),
    }
}

/// Reads `tcp_keepalive`: `false` (off, the default), `true` (default timings) or a table
/// `{ idle, interval, count }` whose missing keys take their defaults.
///
/// Returns the setting with the span it was written at, or `None` when absent or invalid.
pub(crate) fn read_keepalive(
    sink: &mut Sink<'_>,
    t: &mut Table<'_, '_>,
) -> Option<Spanned<Option<TcpKeepalive>>> {
    let value = t.get("tcp_keepalive")?;
    let path = t.key_path("tcp_keepalive");
    let setting = match value.get_ref() {
        DeValue::Boolean(false) => None,
        DeValue::Boolean(true) => Some(TcpKeepalive::default()),
        DeValue::Table(entries) => {
            let mut k = Table::new(entries, value.span(), path);
            let mut keepalive = TcpKeepalive::default();
            let errors_before = sink.error_count();
            if let Some(idle) = keepalive_seconds(sink, &mut k, "idle") {
                keepalive.idle = idle;
            }
            if let Some(interval) = keepalive_seconds(sink, &mut k, "interval") {
                keepalive.interval = interval;
            }
            if let Some(count) = k.integer(sink, "count", 1..=127) {
                keepalive.count = u32::try_from(count.into_inner()).unwrap_or(keepalive.count);
            }
            k.finish(sink);
            if sink.error_count() > errors_before {
                return None;
            }
            Some(keepalive)
        }
        _ => {
            type_error(
                sink,
                value,
                &path,
                "a table { idle, interval, count } or true/false",
            );
            return None;
        }
    };
    Some(Spanned::new(value.span(), setting))
}

/// The kernel takes keep-alive times in whole seconds, 1 to 32767 (Linux `MAX_TCP_KEEPIDLE`).
fn keepalive_seconds(
    sink: &mut Sink<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
) -> Option<Duration> {
    let d = t.duration(sink, key, Zero::Refused)?;
    let secs = d.get_ref().as_secs();
    if d.get_ref().subsec_nanos() != 0 || !(1..=32767).contains(&secs) {
        sink.error(
            &d.span(),
            &t.key_path(key),
            "must be a whole number of seconds between 1s and 32767s",
            "the kernel sets TCP keep-alive timings in seconds",
        );
        return None;
    }
    Some(d.into_inner())
}
