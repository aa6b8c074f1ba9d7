//! weir test kit: loopback backends that record how every connection ended, scriptable backends
//! that can FIN, RST, hang or stream data, and small client helpers.
//!
//! Everything binds `127.0.0.1:0` (an ephemeral port on loopback) and nothing else. Each backend
//! runs as spawned tokio tasks and stops when dropped: its accept loop and every connection task
//! are aborted, which closes their sockets.
//!
//! The point of the kit is weir's promise that it never creates RST noise, so the backends tell a
//! FIN (a zero-length read) from a RST (`ECONNRESET`) and keep their own closes clean: they only
//! close after reading to the end, so the kernel never has a reason to reset on their behalf.

pub mod client;
pub mod ending;
mod head;
pub mod http;
pub mod raw;
pub mod recording;
pub mod script;
mod server;
mod unresponsive;

pub use client::{connect_and_fin, connect_and_reset, loopback_pair, read_to_end_classified};
pub use ending::{Ending, classify};
pub use http::{
    H1Client, HttpBackend, HttpBackendBuilder, RawResponse, SeenRequest, raw_exchange,
    read_response,
};
pub use raw::{RawBackend, RawConn, RawRequest};
pub use recording::{Counts, Mode, RecordingBackend};
pub use script::{
    Backend, BackendBuilder, Behavior, UnresponsiveListener, blob_bytes, fnv1a64, refusing_addr,
    unresponsive_listener,
};
