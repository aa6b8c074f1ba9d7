//! Socket-level helpers shared by listeners, forwarding and health checks.

pub mod close;
pub mod sockopt;
