//! The client side of an HTTP connection as hyper sees it.
//!
//! [`ClientIo`] wraps the client stream (plain TCP or TLS) so that:
//! - on HTTP/1 connections, every byte read passes the [`H1Guard`] before hyper sees it; a
//!   refused request is withheld and hyper gets a read error instead;
//! - weir keeps a handle on the stream while hyper drives it, so the connection loop can take
//!   it back when hyper is done or dropped — to answer 408 or a refused request itself, and to
//!   close with FIN after draining, never leaving unread bytes behind;
//! - the connection's activity (a request head started) is visible to the connection loop.
//!
//! The stream sits behind a mutex, but only the connection's own task ever locks it (hyper's
//! polls and weir's loop run in the same task), so it is never contended.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use std::time::Duration;

use super::h1_guard::{H1Guard, Reject};
use crate::net::close::{CloseOutcome, Endpoint, close_stream_gracefully, close_with_reset};

/// A client stream: TCP, or TLS over TCP.
pub trait ClientStream: Endpoint + AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket underneath, to drain it before closing.
    fn into_tcp(self) -> TcpStream;

    /// Ready when a read may find bytes (or the end). Lets an idle connection wait without
    /// holding a read buffer; a stream that may hold decrypted bytes of its own is always
    /// ready.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ClientStream for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl ClientStream for TlsStream {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }

    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Endpoint for TlsStream {
    fn close_gracefully(self, linger: Duration) -> impl Future<Output = CloseOutcome> + Send {
        close_stream_gracefully(self, linger)
    }

    fn close_with_reset(self) {
        close_with_reset(self.into_inner().0);
    }
}

struct Inner<S> {
    stream: S,
    /// Bytes read from the stream before hyper took it, handed to hyper first.
    prefix: Vec<u8>,
    prefix_at: usize,
    guard: Option<H1Guard>,
    refused: Option<Reject>,
    /// When the head now being received started, if one is.
    head_started: Option<Instant>,
}

struct Shared<S> {
    inner: Mutex<Inner<S>>,
    /// Woken when a request head starts arriving, so the connection loop arms its timer.
    head_start: tokio::sync::Notify,
    /// Once weir answers itself, hyper's writes are swallowed.
    muted: AtomicBool,
}

/// The client stream handed to hyper (wrap it in `TokioIo`). Cloning gives weir its handle.
pub struct ClientIo<S> {
    shared: Arc<Shared<S>>,
}

impl<S: ClientStream> ClientIo<S> {
    /// Wraps `stream`; `guard` is set for HTTP/1 connections.
    pub fn new(stream: S, guard: Option<H1Guard>) -> Self {
        Self::with_prefix(stream, guard, Vec::new())
    }

    /// Wraps `stream`, whose first bytes were already read: `prefix` is read first.
    pub fn with_prefix(stream: S, guard: Option<H1Guard>, prefix: Vec<u8>) -> Self {
        ClientIo {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    stream,
                    prefix,
                    prefix_at: 0,
                    guard,
                    refused: None,
                    head_started: None,
                }),
                head_start: tokio::sync::Notify::new(),
                muted: AtomicBool::new(false),
            }),
        }
    }

    /// A second handle on the same stream (weir's, next to hyper's).
    pub fn handle(&self) -> ClientIo<S> {
        ClientIo {
            shared: self.shared.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // Poisoning would need a panic inside a poll of this same task; recover the data.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request the guard refused, if any.
    pub fn refused(&self) -> Option<Reject> {
        self.lock().refused
    }

    /// When the request head being received started (`None` between requests).
    pub fn head_started(&self) -> Option<Instant> {
        self.lock().head_started
    }

    /// Resolves when a request head starts arriving (a partial head was read).
    pub async fn head_start(&self) {
        self.shared.head_start.notified().await;
    }

    /// Lets the guard check the stream again after a declined upgrade.
    pub fn resume_guard(&self) {
        if let Some(guard) = &mut self.lock().guard {
            guard.resume();
        }
    }

    /// Stops hyper's writes from reaching the client (weir answers itself from now on).
    pub fn mute(&self) {
        self.shared.muted.store(true, Ordering::Release);
    }

    /// The stream, once every other handle (hyper's, an upgrade's) is gone.
    pub fn into_stream(self) -> Result<S, Self> {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => Ok(shared
                .inner
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .stream),
            Err(shared) => Err(ClientIo { shared }),
        }
    }
}

fn refused_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "request refused by weir")
}

impl<S: ClientStream> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inner = this.lock();
        if inner.refused.is_some() {
            return Poll::Ready(Err(refused_error()));
        }
        let before = buf.filled().len();
        if inner.prefix_at < inner.prefix.len() {
            let n = buf.remaining().min(inner.prefix.len() - inner.prefix_at);
            let at = inner.prefix_at;
            buf.put_slice(&inner.prefix[at..at + n]);
            inner.prefix_at += n;
        } else if let Err(err) = ready!(Pin::new(&mut inner.stream).poll_read(cx, buf)) {
            return Poll::Ready(Err(err));
        }
        let Inner {
            guard,
            refused,
            head_started,
            ..
        } = &mut *inner;
        let Some(guard) = guard else {
            return Poll::Ready(Ok(()));
        };
        let was_mid_head = guard.mid_head();
        match guard.feed(&buf.filled()[before..]) {
            Ok(()) => {
                match (was_mid_head, guard.mid_head()) {
                    (false, true) => {
                        *head_started = Some(Instant::now());
                        this.shared.head_start.notify_one();
                    }
                    (_, false) => *head_started = None,
                    (true, true) => {}
                }
                Poll::Ready(Ok(()))
            }
            Err(reject) => {
                // Withhold the bytes: hyper never sees the refused request, and nothing hyper
                // writes or shuts down from now on reaches the client — weir answers itself.
                buf.set_filled(before);
                *refused = Some(reject);
                drop(inner);
                this.mute();
                Poll::Ready(Err(refused_error()))
            }
        }
    }
}

impl<S: ClientStream> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.muted.load(Ordering::Acquire) {
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.lock().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.muted.load(Ordering::Acquire) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.lock().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.muted.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.lock().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.muted.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.lock().stream).poll_shutdown(cx)
    }
}
