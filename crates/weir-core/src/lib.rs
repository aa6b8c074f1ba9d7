//! weir's data path: listeners, forwarding, server selection, health checks, end records and
//! the access log.
//!
//! Where things live:
//! - [`listener`]: listening sockets and the accept loop.
//! - [`l4`]: TCP forwarding ([`l4::forward`] is the copy loop, idle timeout and half-close).
//! - [`http`]: HTTP and HTTPS listeners (guard, service, pool, upgrades); [`tls`]: certificates
//!   by SNI, ALPN, resumption.
//! - [`limits`]: ACLs, connection and request limits.
//! - [`upstream`]: groups at run time — selection, connect with retries, health checks.
//! - [`end`]: the end record (who ended a connection, how, in which phase).
//! - [`access_log`]: where records go.
//! - [`runtime`]: a running instance and its shutdown; [`workers`]: the worker threads.

pub mod access_log;
mod clock;
pub mod end;
pub mod http;
pub mod l4;
pub mod limits;
pub mod listener;
pub mod net;
pub mod runtime;
pub mod tls;
pub mod upstream;
pub mod workers;

pub use runtime::{Proxy, ShutdownReport, StartError};
