//! [`Backend`]: a scriptable loopback backend for data-path tests (echo, greet with its name,
//! answer HTTP, stream a blob, swallow and hash, reset, hang), plus addresses that refuse or
//! never answer connections, for connect-failure tests.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ending::{Ending, of_error};
use crate::head::{HeadReader, Next};
use crate::server::{Server, Tally, drain};

/// Size of the read buffer and of each chunk written by [`Behavior::Blob`] (a multiple of 8,
/// so chunks line up with [`blob_bytes`]).
const CHUNK: usize = 16 * 1024;

/// What a [`Backend`] does with each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Echoes bytes until EOF, then shuts down its write side (FIN) and closes.
    Echo,
    /// Writes `"{name}\n"` on accept, then reads until EOF and closes (FIN).
    Greet,
    /// Reads an HTTP/1.x request head, answers `200` with body `"{name}\n"` and
    /// `Connection: close`, shuts down its write side, drains to EOF and closes.
    HttpName,
    /// Writes these bytes, shuts down its write side (FIN), then reads until EOF.
    SendThenFin(Vec<u8>),
    /// Echoes until it has received at least this many bytes, then resets (SO_LINGER 0). If the
    /// peer ends first, it closes with FIN.
    ResetAfter(usize),
    /// Accepts, then resets at once.
    ResetOnAccept,
    /// Accepts and never reads or writes; the socket is held until the backend is dropped.
    Hang,
    /// Reads until EOF, counting bytes and hashing them (FNV-1a, 64 bits). With `reply_hash`,
    /// then writes `"{len} {hash:016x}\n"`; either way it then closes with FIN.
    Sink {
        /// Whether to write the length and hash back after EOF.
        reply_hash: bool,
    },
    /// Waits for EOF (the client half-closes after its request), then writes `len` bytes of
    /// [`blob_bytes`]`(len, seed)` and closes with FIN.
    Blob {
        /// Bytes to send.
        len: usize,
        /// Seed of the pseudo-random data.
        seed: u64,
    },
}

/// Builds a [`Backend`]: `Backend::builder().name("s1").behavior(Behavior::Greet).start().await`.
#[derive(Debug, Clone)]
pub struct BackendBuilder {
    name: String,
    behavior: Behavior,
}

impl BackendBuilder {
    /// The backend's name, used by [`Behavior::Greet`] and [`Behavior::HttpName`]
    /// (default `"backend"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// What the backend does with each connection (default [`Behavior::Echo`]).
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Starts the backend on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (use [`BackendBuilder::try_start`] to handle that).
    pub async fn start(self) -> Backend {
        match self.try_start().await {
            Ok(backend) => backend,
            Err(err) => panic!("weir-testkit: cannot bind 127.0.0.1:0: {err}"),
        }
    }

    /// Starts the backend on `127.0.0.1:0`, returning the bind error if any.
    pub async fn try_start(self) -> io::Result<Backend> {
        let tally = Tally::new();
        let name: Arc<str> = Arc::from(self.name.as_str());
        let behavior = Arc::new(self.behavior);
        let conn_name = Arc::clone(&name);
        let server = Server::start(Arc::clone(&tally), move |stream, tally| {
            serve(stream, Arc::clone(&behavior), Arc::clone(&conn_name), tally)
        })
        .await?;
        Ok(Backend {
            name,
            server,
            tally,
        })
    }
}

/// A running scriptable backend. Stops when dropped: accepted connections are aborted and closed;
/// connections still in the accept queue are reset by the kernel (see [`Backend::wait_accepted`]).
#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    server: Server,
    tally: Arc<Tally>,
}

impl Backend {
    /// A builder with name `"backend"` and [`Behavior::Echo`].
    pub fn builder() -> BackendBuilder {
        BackendBuilder {
            name: "backend".to_string(),
            behavior: Behavior::Echo,
        }
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.tally.accepted()
    }

    /// How each connection the peer ended did end, from the backend's side (FIN or RST), in
    /// order of completion. Connections the backend reset itself, and hanging ones, are absent.
    pub fn endings(&self) -> Vec<Ending> {
        self.tally.endings()
    }

    /// Waits until at least `n` connections were accepted; `false` if `timeout` passed first.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_accepted(n, timeout).await
    }

    /// Waits until at least `n` endings were recorded; `false` if `timeout` passed first.
    pub async fn wait_for_endings(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_ended(n, timeout).await
    }
}

/// Serves one connection and records how the peer ended it, when it did.
async fn serve(mut stream: TcpStream, behavior: Arc<Behavior>, name: Arc<str>, tally: Arc<Tally>) {
    let ending = match &*behavior {
        Behavior::Echo => echo(&mut stream).await,
        Behavior::Greet => {
            write_then_drain(&mut stream, format!("{name}\n").as_bytes(), false).await
        }
        Behavior::HttpName => http_name(&mut stream, &name).await,
        Behavior::SendThenFin(bytes) => write_then_drain(&mut stream, bytes, true).await,
        Behavior::ResetAfter(limit) => reset_after(stream, *limit).await,
        Behavior::ResetOnAccept => {
            reset(stream);
            None
        }
        Behavior::Hang => {
            let _held = stream;
            std::future::pending::<()>().await;
            None
        }
        Behavior::Sink { reply_hash } => sink(&mut stream, *reply_hash).await,
        Behavior::Blob { len, seed } => blob(&mut stream, *len, *seed).await,
    };
    if let Some(ending) = ending {
        tally.record(ending);
    }
}

/// Sets SO_LINGER 0 and drops the stream: the kernel sends RST.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// A write failed: keep reading what the peer may still hold, so the socket closes empty.
async fn after_write_error(stream: &mut TcpStream, err: &io::Error) -> Option<Ending> {
    let _ = drain(stream).await;
    Some(of_error(err))
}

async fn echo(stream: &mut TcpStream) -> Option<Ending> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => return Some(of_error(&err)),
        };
        if let Err(err) = stream.write_all(&buf[..n]).await {
            return after_write_error(stream, &err).await;
        }
    }
    let _ = stream.shutdown().await;
    Some(Ending::Fin)
}

async fn write_then_drain(stream: &mut TcpStream, bytes: &[u8], fin_first: bool) -> Option<Ending> {
    if let Err(err) = stream.write_all(bytes).await {
        return after_write_error(stream, &err).await;
    }
    let shut = if fin_first {
        stream.shutdown().await
    } else {
        Ok(())
    };
    if let Err(err) = shut {
        return after_write_error(stream, &err).await;
    }
    Some(drain(stream).await)
}

async fn http_name(stream: &mut TcpStream, name: &str) -> Option<Ending> {
    if let Next::End(ending) = HeadReader::default().next_head(stream).await {
        return Some(ending);
    }
    let body = format!("{name}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    write_then_drain(stream, response.as_bytes(), true).await
}

async fn reset_after(mut stream: TcpStream, limit: usize) -> Option<Ending> {
    let mut buf = vec![0u8; CHUNK];
    let mut seen = 0usize;
    while seen < limit {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                let _ = stream.shutdown().await;
                return Some(Ending::Fin);
            }
            Ok(n) => n,
            Err(err) => return Some(of_error(&err)),
        };
        seen += n;
        if let Err(err) = stream.write_all(&buf[..n]).await {
            return after_write_error(&mut stream, &err).await;
        }
    }
    reset(stream);
    None
}

async fn sink(stream: &mut TcpStream, reply_hash: bool) -> Option<Ending> {
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0usize;
    let mut hash = Fnv1a64::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                hash.update(&buf[..n]);
            }
            Err(err) => return Some(of_error(&err)),
        }
    }
    if reply_hash {
        let reply = format!("{len} {:016x}\n", hash.finish());
        let _ = stream.write_all(reply.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
    Some(Ending::Fin)
}

async fn blob(stream: &mut TcpStream, len: usize, seed: u64) -> Option<Ending> {
    let ending = drain(stream).await;
    if ending != Ending::Fin {
        return Some(ending);
    }
    let mut source = BlobSource::new(seed);
    let mut chunk = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let take = left.min(CHUNK);
        source.fill(&mut chunk[..take]);
        if let Err(err) = stream.write_all(&chunk[..take]).await {
            return Some(of_error(&err));
        }
        left -= take;
    }
    let _ = stream.shutdown().await;
    Some(Ending::Fin)
}

// === data helpers ===

/// `len` bytes of deterministic pseudo-random data (SplitMix64, little-endian words), the same
/// bytes [`Behavior::Blob`] sends.
pub fn blob_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    BlobSource::new(seed).fill(&mut out);
    out
}

/// SplitMix64 output, 8 bytes per step. `fill` must be called with lengths that are multiples
/// of 8 except for the last call, so chunked output equals [`blob_bytes`].
struct BlobSource {
    state: u64,
}

impl BlobSource {
    fn new(seed: u64) -> Self {
        BlobSource { state: seed }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for word in out.chunks_mut(8) {
            let bytes = self.next_word().to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// The 64-bit FNV-1a hash of `bytes`, as [`Behavior::Sink`] reports it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = Fnv1a64::new();
    hash.update(bytes);
    hash.finish()
}

/// Incremental FNV-1a, 64 bits.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// === addresses that do not serve ===

/// An address on loopback where nothing listens: connects fail with `ECONNREFUSED`. (Bound to
/// `127.0.0.1:0`, then released; another test could in principle take the port again.)
///
/// # Panics
///
/// If no loopback port can be bound.
pub async fn refusing_addr() -> SocketAddr {
    match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
        Ok(listener) => match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("weir-testkit: no local address: {err}"),
        },
        Err(err) => panic!("weir-testkit: cannot bind 127.0.0.1:0: {err}"),
    }
}

pub use crate::unresponsive::{UnresponsiveListener, unresponsive_listener};
