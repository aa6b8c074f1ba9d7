//! weir's own HTTP/1 proxy engine: client connections served and server connections driven
//! by the connection's task, heads parsed once and forwarded as bytes.
//!
//! - [`serve`]: one client connection — heads, bodies, retries, timers, records, the close.
//! - [`head`]: request checks and the heads written to server and client.
//! - [`chunk`]: following chunked bodies.
//! - [`pool`]: idle server sockets.
//! - [`buf`]: buffers that exist only while they hold bytes.
//! - `serve::tunnel`: upgrades (WebSocket).

pub mod buf;
pub mod chunk;
pub mod head;
pub mod pool;
pub mod serve;
