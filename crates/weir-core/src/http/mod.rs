//! HTTP and HTTPS listeners: weir as a layer-7 load balancer.
//!
//! - [`conn`]: one client connection — TLS, then the engine for its protocol, then the close.
//! - [`h1`]: weir's own HTTP/1 engine, which serves every HTTP/1 client connection: framing
//!   checks, forwarding, upgrades (WebSocket) and its own pool of server sockets.
//! - [`client_io`]: the client stream, and an HTTP/2 connection's stream as hyper sees it.
//! - [`service`]: what a listener's requests share, and the request path of HTTP/2 clients
//!   (served by hyper) — route, pick, pool, send, retry, respond.
//! - [`exchange`] and [`body`]: one HTTP/2 request's state and how its end is recorded.
//! - [`pool`]: keep-alive connections to servers for HTTP/2 clients' requests (hyper's client).
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
