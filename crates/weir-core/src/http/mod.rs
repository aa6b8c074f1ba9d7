//! HTTP and HTTPS listeners: weir as a layer-7 load balancer.
//!
//! - [`conn`]: one client connection — TLS, hyper, timers, weir's own answers, the close.
//! - [`client_io`]: the client stream, and an HTTP/2 connection's stream as hyper sees it.
//! - [`h1`]: weir's own HTTP/1 engine, which serves every HTTP/1 client connection.
//! - [`service`]: the request path — route, pick, pool, send, retry, respond.
//! - [`exchange`] and [`body`]: one request's state and how its end is recorded.
//! - [`pool`]: keep-alive connections to servers.
//! - [`route`], [`headers`], [`validate`], [`persistence`]: the pure rules.

pub mod body;
pub mod client_io;
pub mod conn;
pub mod exchange;
pub mod h1;
pub mod headers;
pub mod persistence;
pub mod pool;
pub mod route;
pub mod service;
pub mod validate;
