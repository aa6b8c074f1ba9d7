//! Socket-level helpers shared by listeners, forwarding and health checks.

pub mod batch;
pub mod batched;
pub mod close;
pub mod ring;
pub mod sockopt;
pub mod splice;

use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll, ready};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Whether an I/O error means the peer reset the connection (or, for a write, had already
/// gone: a broken pipe is a reset it sent earlier).
pub fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Size of the per-thread scratch buffer.
pub const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Runs `f` with the thread's scratch buffer: bytes read and written on in the same poll, or
/// discarded. Never held across an `.await`, so no connection's future carries a buffer. If
/// the buffer is somehow in use (a nested call), `f` gets a fresh one instead.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; SCRATCH_SIZE]),
    })
}

/// `recv(2)` on a socket without waiting: [`TcpStream::try_read`] (`WouldBlock` when tokio
/// has seen nothing arrive, without a system call), with two differences.
/// - A read that fills less than `buf` emptied the socket, and tokio is told to forget its
///   readiness, as its own `poll_read` does. `try_read` leaves it set, so the next attempt
///   on the socket costs a `recv` that finds nothing: for a pooled server connection, the
///   check at checkout that it is still quiet, once per request.
/// - The system call is rustix's, direct: glibc's `recv` is a thread cancellation point and
///   wraps every call in two atomic updates that weir, which never cancels threads, has no
///   use for.
pub fn try_recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    try_io_partial(stream, Interest::READABLE, len, || {
        rustix::net::recv(stream, &mut *buf, RecvFlags::empty()).map(|(n, _)| n)
    })
}

/// `send(2)` without waiting, as [`try_recv`] reads: a write that takes less than `bytes`
/// filled the socket's buffer and clears tokio's readiness; `MSG_NOSIGNAL`, as the standard
/// library sends.
pub fn try_send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    try_io_partial(stream, Interest::WRITABLE, bytes.len(), || {
        rustix::net::send(stream, bytes, SendFlags::NOSIGNAL)
    })
}

/// Runs `io`, a system call moving up to `len` bytes, through tokio's `try_io`; when it moves
/// fewer, the socket is drained (or its buffer full) and tokio forgets `interest`'s readiness.
fn try_io_partial(
    stream: &TcpStream,
    interest: Interest,
    len: usize,
    mut io: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    let mut partial = None;
    let moved = stream.try_io(interest, || {
        let n = io()?;
        if 0 < n && n < len {
            // `WouldBlock` is how tokio is told; the count is returned below.
            partial = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    partial.map_or(moved, Ok)
}

/// Reads once from a socket, waiting until it is readable: `TcpStream`'s `poll_read`, through
/// [`try_recv`].
pub fn poll_recv(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    poll_attempt(
        cx,
        |cx| stream.poll_read_ready(cx),
        || try_recv(stream, buf),
    )
}

/// Writes once to a socket, waiting until it is writable: `TcpStream`'s `poll_write`, through
/// [`try_send`].
pub fn poll_send(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> Poll<io::Result<usize>> {
    poll_attempt(
        cx,
        |cx| stream.poll_write_ready(cx),
        || try_send(stream, bytes),
    )
}

/// Waits for readiness, then `attempt`s; again while the attempt would block (tokio has then
/// cleared the readiness, so the next wait is a real one).
fn poll_attempt(
    cx: &mut Context<'_>,
    mut poll_ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut attempt: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(poll_ready(cx))?;
        match attempt() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_testkit::loopback_pair;

    use super::*;

    /// After a read that emptied the socket, tokio answers `WouldBlock` from its own state until
    /// the reactor sees new bytes: a quiet pooled connection is checked without a system call.
    #[tokio::test]
    async fn a_read_that_drains_the_socket_forgets_readiness() {
        let (peer, ours) = loopback_pair().await.unwrap();
        peer.try_write(b"abc").unwrap();
        ours.readable().await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(try_recv(&ours, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        // New bytes are in the socket, but the reactor has not run since (no await): a read
        // must not reach the kernel. (`TcpStream::try_read` would return them.)
        peer.try_write(b"def").unwrap();
        let err = ours.try_read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // Once the reactor has seen them, they are read.
        ours.readable().await.unwrap();
        assert_eq!(try_recv(&ours, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"def");
    }

    /// A read that fills the whole buffer may have left bytes behind: readiness stays.
    #[tokio::test]
    async fn a_full_read_keeps_readiness() {
        let (peer, ours) = loopback_pair().await.unwrap();
        peer.try_write(b"abcdef").unwrap();
        ours.readable().await.unwrap();
        let mut buf = [0u8; 3];
        assert_eq!(try_recv(&ours, &mut buf).unwrap(), 3);
        assert_eq!(try_recv(&ours, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"def");
    }

    #[tokio::test]
    async fn sends_and_receives_through_the_poll_functions() {
        let (peer, ours) = loopback_pair().await.unwrap();
        let sent = std::future::poll_fn(|cx| poll_send(&ours, cx, b"hello")).await;
        assert_eq!(sent.unwrap(), 5);
        let mut buf = [0u8; 8];
        let got = std::future::poll_fn(|cx| poll_recv(&peer, cx, &mut buf)).await;
        assert_eq!(got.unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        drop(ours);
        let end = std::future::poll_fn(|cx| poll_recv(&peer, cx, &mut buf)).await;
        assert_eq!(end.unwrap(), 0, "the end of the stream");
    }
}
