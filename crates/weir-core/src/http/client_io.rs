//! The client stream: [`ClientStream`], what both HTTP engines need of a TCP or TLS stream,
//! and [`ClientIo`], an HTTP/2 client connection as hyper sees it.
//!
//! [`ClientIo`] wraps the client stream (plain TCP or TLS) so that:
//! - bytes weir already read from it (the HTTP/2 preface of a prior-knowledge client, read by
//!   the HTTP/1 engine while it looked at the connection) are handed to hyper first;
//! - weir keeps a handle on the stream while hyper drives it, so the connection loop can take
//!   it back when hyper is done or dropped, and close with FIN after draining, never leaving
//!   unread bytes behind.
//!
//! The stream sits behind a mutex, but only the connection's own task ever locks it (hyper's
//! polls and weir's loop run in the same task), so it is never contended.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use std::time::Duration;

use crate::net::close::{CloseOutcome, Endpoint, close_stream_gracefully, close_with_reset};

/// A client stream: TCP, or TLS over TCP.
pub trait ClientStream: Endpoint + AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket underneath, to drain it before closing.
    fn into_tcp(self) -> TcpStream;

    /// Ready when a read may find bytes (or the end). Lets an idle connection wait without
    /// holding a read buffer; a stream that may hold decrypted bytes of its own is always
    /// ready.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Closes at once when the client has sent nothing more (a plain close then sends FIN,
    /// never RST); otherwise gives the stream back for a close with drain.
    fn close_if_quiet(self) -> Result<(), Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

impl ClientStream for TcpStream {
    fn close_if_quiet(self) -> Result<(), Self> {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self).peek(&mut probe) {
            // Bytes are waiting: closing now would reset.
            Ok(n) if n > 0 => Err(self),
            // Nothing (or already the client's FIN, or an error): the close sends FIN.
            _ => Ok(()),
        }
    }

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
}

/// The client stream handed to hyper (wrap it in `TokioIo`). [`ClientIo::handle`] gives weir
/// its own handle.
pub struct ClientIo<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

impl<S: ClientStream> ClientIo<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self::with_prefix(stream, Vec::new())
    }

    /// Wraps `stream`, whose first bytes were already read: `prefix` is read first.
    pub fn with_prefix(stream: S, prefix: Vec<u8>) -> Self {
        ClientIo {
            shared: Arc::new(Mutex::new(Inner {
                stream,
                prefix,
                prefix_at: 0,
            })),
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
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stream, once every other handle (hyper's) is gone.
    pub fn into_stream(self) -> Result<S, Self> {
        match Arc::try_unwrap(self.shared) {
            Ok(inner) => Ok(inner.into_inner().unwrap_or_else(|p| p.into_inner()).stream),
            Err(shared) => Err(ClientIo { shared }),
        }
    }
}

impl<S: ClientStream> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        if inner.prefix_at < inner.prefix.len() {
            let n = buf.remaining().min(inner.prefix.len() - inner.prefix_at);
            let at = inner.prefix_at;
            buf.put_slice(&inner.prefix[at..at + n]);
            inner.prefix_at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut inner.stream).poll_read(cx, buf)
    }
}

impl<S: ClientStream> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.lock().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().stream).poll_shutdown(cx)
    }
}
