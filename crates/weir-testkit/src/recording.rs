//! [`RecordingBackend`]: a TCP server that records, for every connection, how the peer ended it
//! (FIN or RST). It is the witness for weir's "no RST noise" promise: point weir's health checks
//! or proxied traffic at it, then assert `counts().rst == 0`.
//!
//! It sees resets that arrive before it has read the peer's FIN; a reset sent after that (to a
//! socket it already closed) is not visible here, which is why weir's end-to-end checks also
//! count RST segments on the wire.
//!
//! The backend itself never causes a reset: it only closes a socket after reading it to the end,
//! so its receive buffer is empty and the kernel sends FIN.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::ending::{Ending, of_error};
use crate::head::{HeadReader, Next};
use crate::server::{Server, Tally, drain};

/// The response of [`Mode::HttpClose`].
const CLOSE_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// The response of [`Mode::HttpKeepOpen`] and [`Mode::HttpBannerFirst`].
const KEEP_ALIVE_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

/// The greeting of [`Mode::HttpBannerFirst`].
const GREETING: &[u8] = b"220 hello\r\n";

/// How a [`RecordingBackend`] talks on each connection before it records the ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Never writes; reads until the peer ends the connection.
    Silent,
    /// Writes this banner right after accept (like SMTP, SSH or MySQL), then reads to the end.
    Banner(Vec<u8>),
    /// Reads one HTTP request head, answers `200` with `Connection: close`, shuts down its write
    /// side (FIN first), then reads until the peer's FIN or RST, which is what it records.
    HttpClose,
    /// Answers every request head with a keep-alive `200` and never closes first; records how
    /// the peer ended the connection.
    HttpKeepOpen,
    /// Writes `220 hello\r\n` first (a non-HTTP greeting), then behaves like
    /// [`Mode::HttpKeepOpen`].
    HttpBannerFirst,
}

/// How the connections accepted so far ended (or not yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Ended by the peer's FIN.
    pub fin: usize,
    /// Ended by a reset.
    pub rst: usize,
    /// Ended by another error.
    pub other: usize,
    /// Accepted and not ended yet.
    pub open: usize,
}

/// A loopback TCP server that records how every accepted connection ended.
///
/// Stops when dropped: accepted connections are closed (FIN, or RST if unread bytes remain);
/// connections still in the kernel's accept queue are reset by the kernel when the listener
/// closes, so wait for [`RecordingBackend::wait_accepted`] before dropping if that matters.
#[derive(Debug)]
pub struct RecordingBackend {
    server: Server,
    tally: Arc<Tally>,
}

impl RecordingBackend {
    /// Starts a backend on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (use [`RecordingBackend::try_start`] to handle that).
    pub async fn start(mode: Mode) -> RecordingBackend {
        match RecordingBackend::try_start(mode).await {
            Ok(backend) => backend,
            Err(err) => panic!("weir-testkit: cannot bind 127.0.0.1:0: {err}"),
        }
    }

    /// Starts a backend on `127.0.0.1:0`, returning the bind error if any.
    pub async fn try_start(mode: Mode) -> io::Result<RecordingBackend> {
        let tally = Tally::new();
        let mode = Arc::new(mode);
        let server = Server::start(Arc::clone(&tally), move |stream, tally| {
            serve(stream, Arc::clone(&mode), tally)
        })
        .await?;
        Ok(RecordingBackend { server, tally })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// How each completed connection ended, in order of completion.
    pub fn endings(&self) -> Vec<Ending> {
        self.tally.endings()
    }

    /// Endings by kind, plus the connections still open.
    pub fn counts(&self) -> Counts {
        let endings = self.tally.endings();
        let count = |kind| endings.iter().filter(|e| **e == kind).count();
        Counts {
            fin: count(Ending::Fin),
            rst: count(Ending::Rst),
            other: count(Ending::Other),
            open: self.tally.accepted().saturating_sub(endings.len()),
        }
    }

    /// Waits until at least `n` connections have ended; `false` if `timeout` passed first.
    pub async fn wait_for_endings(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_ended(n, timeout).await
    }

    /// Waits until at least `n` connections were accepted; `false` if `timeout` passed first.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_accepted(n, timeout).await
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.tally.accepted()
    }

    /// HTTP request heads seen so far (HTTP modes only).
    pub fn requests(&self) -> usize {
        self.tally.requests()
    }
}

/// Serves one connection in `mode` and records its ending.
async fn serve(mut stream: TcpStream, mode: Arc<Mode>, tally: Arc<Tally>) {
    let ending = match &*mode {
        Mode::Silent => drain(&mut stream).await,
        Mode::Banner(banner) => banner_then_drain(&mut stream, banner).await,
        Mode::HttpClose => http_close(&mut stream, &tally).await,
        Mode::HttpKeepOpen => http_keep_open(&mut stream, &tally).await,
        Mode::HttpBannerFirst => match stream.write_all(GREETING).await {
            Ok(()) => http_keep_open(&mut stream, &tally).await,
            Err(err) => finish_after_write_error(&mut stream, &err).await,
        },
    };
    tally.record(ending);
    // The stream is dropped here, after reading to the end: a FIN, never a RST.
}

async fn banner_then_drain(stream: &mut TcpStream, banner: &[u8]) -> Ending {
    match stream.write_all(banner).await {
        Ok(()) => drain(stream).await,
        Err(err) => finish_after_write_error(stream, &err).await,
    }
}

/// A write failed: the error says how the peer ended it, but keep reading what it may still
/// hold so the socket is closed with an empty receive buffer.
async fn finish_after_write_error(stream: &mut TcpStream, err: &io::Error) -> Ending {
    let ending = of_error(err);
    let _ = drain(stream).await;
    ending
}

async fn http_close(stream: &mut TcpStream, tally: &Tally) -> Ending {
    let mut heads = HeadReader::default();
    if let Next::End(ending) = heads.next_head(stream).await {
        return ending;
    }
    tally.count_request();
    if let Err(err) = stream.write_all(CLOSE_RESPONSE).await {
        return finish_after_write_error(stream, &err).await;
    }
    if let Err(err) = stream.shutdown().await {
        return finish_after_write_error(stream, &err).await;
    }
    drain(stream).await
}

async fn http_keep_open(stream: &mut TcpStream, tally: &Tally) -> Ending {
    let mut heads = HeadReader::default();
    loop {
        if let Next::End(ending) = heads.next_head(stream).await {
            return ending;
        }
        tally.count_request();
        if let Err(err) = stream.write_all(KEEP_ALIVE_RESPONSE).await {
            return finish_after_write_error(stream, &err).await;
        }
    }
}
