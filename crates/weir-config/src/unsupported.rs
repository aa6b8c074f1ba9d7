//! Features the schema already knows but this build cannot run yet.
//!
//! The config format is settled ahead of the data path, so these values parse and are then
//! refused here, in one place. When weir-core gains a feature, delete its check (and its
//! malformed-config test case) and nothing else changes.

use crate::Protocol;
use crate::sink::{Sink, Span};

/// Refuses listener protocols the data path does not implement yet (`udp`).
pub(crate) fn listener_protocol(sink: &mut Sink<'_>, protocol: Protocol, at: &Span, key: &str) {
    if protocol != Protocol::Udp {
        return;
    }
    sink.error(
        at,
        key,
        format!(
            "listener protocol \"{}\" is not supported yet by this build",
            protocol.as_str()
        ),
        "tcp, http and https listeners run in this version; udp is coming",
    );
}

/// Refuses `health_check.kind = "udp"` (UDP probes are not implemented yet).
pub(crate) fn health_check_udp(sink: &mut Sink<'_>, at: &Span, key: &str) {
    sink.error(
        at,
        key,
        "health check kind \"udp\" is not supported yet by this build",
        "use kind = \"none\" for UDP servers until UDP probes land",
    );
}
