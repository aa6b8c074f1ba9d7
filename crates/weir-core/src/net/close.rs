//! Closing TCP connections the way weir promises: FIN, never an accidental RST.
//!
//! A kernel sends RST instead of FIN when a socket is closed while its receive buffer still holds
//! unread bytes (RFC 2525 §2.17), or when SO_LINGER is set to zero. So an orderly close is:
//! shut down the write side (FIN), read and discard whatever the peer still sends until its FIN,
//! then close with an empty receive buffer. [`close_gracefully`] does that under a deadline;
//! [`close_with_reset`] is the one deliberate exception.
//!
//! Whoever sends the first FIN keeps the TIME_WAIT state (60 s on Linux). That is accepted:
//! TIME_WAIT sockets are per (source, destination) pair, so they do not exhaust ports.
//!
//! If the peer keeps sending past the deadline, the last read empties the buffer as far as it
//! can; a peer that ignores our FIN and floods us can still leave bytes behind, and then the
//! kernel resets — that is the peer's doing, and the end record says `timeout`.

use std::future::poll_fn;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::SockRef;

use super::{SCRATCH_SIZE, with_scratch};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Most reads of the final, non-blocking emptying of the receive buffer (1 MiB at most, more
/// than a default receive buffer holds), so a flooding peer cannot keep us there.
const FINAL_READS: usize = 64;

/// How an orderly close ended from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The peer answered with its own FIN: a clean close on both sides.
    PeerFin,
    /// The peer reset the connection (or it failed with another error) before its FIN.
    PeerRst,
    /// The peer neither closed nor reset within the linger time; we closed anyway, after
    /// emptying the receive buffer.
    TimedOut,
}

/// Orderly close: `shutdown(Write)` sends FIN; then read and discard whatever the peer still
/// sends until its FIN, a reset, or `linger` elapses; then drop the socket, whose receive buffer
/// is empty at that point, so the kernel has no reason to send RST. Never SO_LINGER 0.
pub async fn close_gracefully(mut stream: TcpStream, linger: Duration) -> CloseOutcome {
    // A failed shutdown (the peer already reset, say) is not a reason to skip the drain: the
    // reads below report what happened.
    let _ = stream.shutdown().await;
    drain_and_close(stream, linger).await
}

/// Same as [`close_gracefully`], for a stream whose write side was already shut down (the
/// shutdown is skipped).
pub async fn drain_and_close(stream: TcpStream, linger: Duration) -> CloseOutcome {
    let outcome = tokio::time::timeout(linger, discard_until_end(&stream))
        .await
        .unwrap_or(CloseOutcome::TimedOut);
    // After the peer's FIN nothing more can arrive, and after a reset the kernel has already
    // discarded the buffer; only a timeout can leave bytes behind.
    if outcome == CloseOutcome::TimedOut {
        with_scratch(|scratch| empty_receive_buffer(&stream, scratch));
    }
    outcome
    // `stream` is dropped here: close(2) with an empty receive buffer sends FIN (if not sent
    // yet) and nothing else.
}

/// Abortive close, only where weir means to reset (propagating a peer's reset, or an operator
/// asking for RST): SO_LINGER 0, then close, so the kernel sends RST and discards its buffers.
pub fn close_with_reset(stream: TcpStream) {
    // If the option cannot be set the socket is closed normally: a FIN instead of the RST.
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A byte stream weir can close the way it promises: FIN and drain, or a deliberate RST.
pub trait Endpoint: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Orderly close: FIN, read and discard until the peer's FIN or `linger`, then close.
    fn close_gracefully(self, linger: Duration) -> impl Future<Output = CloseOutcome> + Send;
    /// Abortive close where the stream can do it; an orderly-as-possible drop otherwise.
    fn close_with_reset(self);
    /// The plain TCP socket under this stream, when bytes written to the socket are the
    /// stream's bytes (no TLS, no framing): forwarding may then move them with splice(2)
    /// and let a close send the FIN. `None` (the default) keeps the generic copy path.
    fn as_tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// Reads once into `buf`: `Ok(0)` at the end of the stream. Plain TCP reads with
    /// [`crate::net::poll_recv`].
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if let Some(tcp) = self.as_tcp() {
            return crate::net::poll_recv(tcp, cx, buf);
        }
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(self).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    }

    /// Writes once from `bytes`, returning how many were taken. Plain TCP writes with
    /// [`crate::net::poll_send`].
    fn poll_send(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(tcp) = self.as_tcp() {
            return crate::net::poll_send(tcp, cx, bytes);
        }
        Pin::new(self).poll_write(cx, bytes)
    }
}

impl Endpoint for TcpStream {
    fn close_gracefully(self, linger: Duration) -> impl Future<Output = CloseOutcome> + Send {
        close_gracefully(self, linger)
    }

    fn close_with_reset(self) {
        close_with_reset(self);
    }

    fn as_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

/// Orderly close of any stream (a TLS stream, an upgraded connection): shut down the write
/// side, then read and discard until the peer's end or `linger`.
pub async fn close_stream_gracefully<S>(mut stream: S, linger: Duration) -> CloseOutcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(linger, stream.shutdown()).await;
    let mut scratch = vec![0u8; SCRATCH_SIZE];
    tokio::time::timeout(linger, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) => return CloseOutcome::PeerFin,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return CloseOutcome::PeerRst,
            }
        }
    })
    .await
    .unwrap_or(CloseOutcome::TimedOut)
}

/// Reads and discards until the peer's FIN or an error. Waits for readiness and reads into
/// the thread's scratch buffer, so the future holds no buffer of its own.
async fn discard_until_end(stream: &TcpStream) -> CloseOutcome {
    loop {
        // A poll rather than `readable()`, whose future is a hundred bytes larger: this one
        // lives in every close.
        if poll_fn(|cx| stream.poll_read_ready(cx)).await.is_err() {
            return CloseOutcome::PeerRst;
        }
        let verdict = with_scratch(|scratch| {
            loop {
                match stream.try_read(scratch) {
                    Ok(0) => return Some(CloseOutcome::PeerFin),
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                        return Some(CloseOutcome::TimedOut);
                    }
                    Err(_) => return Some(CloseOutcome::PeerRst),
                }
            }
        });
        if let Some(outcome) = verdict {
            return outcome;
        }
    }
}

/// One last non-blocking read loop before the drop, for bytes that arrived after the last
/// read. It calls `recv(2)` on the socket directly (it is non-blocking under tokio): tokio's
/// `try_read` answers `WouldBlock` from its cached readiness without asking the kernel, which
/// could leave bytes behind.
fn empty_receive_buffer(stream: &TcpStream, scratch: &mut [u8]) {
    let socket = SockRef::from(stream);
    for _ in 0..FINAL_READS {
        match (&*socket).read(scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use weir_testkit::{Backend, Behavior, Ending, Mode, RecordingBackend};

    const WAIT: Duration = Duration::from_secs(5);

    async fn backend(behavior: Behavior) -> Backend {
        Backend::builder().behavior(behavior).start().await
    }

    #[tokio::test]
    async fn peer_that_keeps_sending_then_fins_gets_no_rst() {
        // 8 MiB is far more than the socket buffers hold, so the peer is still sending when
        // our FIN arrives and keeps sending while we drain.
        let peer = backend(Behavior::SendThenFin(vec![b'x'; 8 << 20])).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        assert_eq!(close_gracefully(stream, WAIT).await, CloseOutcome::PeerFin);
        assert!(peer.wait_for_endings(1, WAIT).await);
        assert_eq!(peer.endings(), vec![Ending::Fin]);
    }

    #[tokio::test]
    async fn silent_peer_sees_fin() {
        let peer = RecordingBackend::start(Mode::Silent).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        assert_eq!(close_gracefully(stream, WAIT).await, CloseOutcome::PeerFin);
        assert!(peer.wait_for_endings(1, WAIT).await);
        assert_eq!(peer.counts().rst, 0);
        assert_eq!(peer.endings(), vec![Ending::Fin]);
    }

    #[tokio::test]
    async fn banner_is_discarded_and_peer_sees_fin() {
        let peer = RecordingBackend::start(Mode::Banner(b"220 smtp ready\r\n".to_vec())).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        assert_eq!(close_gracefully(stream, WAIT).await, CloseOutcome::PeerFin);
        assert!(peer.wait_for_endings(1, WAIT).await);
        assert_eq!(peer.endings(), vec![Ending::Fin]);
    }

    #[tokio::test]
    async fn peer_that_never_closes_times_out() {
        let peer = backend(Behavior::Hang).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        let linger = Duration::from_millis(100);
        assert_eq!(
            close_gracefully(stream, linger).await,
            CloseOutcome::TimedOut
        );
    }

    #[tokio::test]
    async fn peer_reset_is_reported() {
        let peer = backend(Behavior::ResetOnAccept).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        assert_eq!(close_gracefully(stream, WAIT).await, CloseOutcome::PeerRst);
    }

    #[tokio::test]
    async fn drain_and_close_after_our_own_shutdown() {
        let peer = backend(Behavior::Echo).await;
        let mut stream = TcpStream::connect(peer.addr()).await.unwrap();
        stream.write_all(b"echo me").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(drain_and_close(stream, WAIT).await, CloseOutcome::PeerFin);
        assert!(peer.wait_for_endings(1, WAIT).await);
        assert_eq!(peer.endings(), vec![Ending::Fin]);
    }

    #[tokio::test]
    async fn close_with_reset_resets() {
        let peer = RecordingBackend::start(Mode::Silent).await;
        let stream = TcpStream::connect(peer.addr()).await.unwrap();
        assert!(peer.wait_accepted(1, WAIT).await);
        close_with_reset(stream);
        assert!(peer.wait_for_endings(1, WAIT).await);
        assert_eq!(peer.endings(), vec![Ending::Rst]);
    }

    #[tokio::test]
    async fn final_read_empties_what_arrived() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        peer.write_all(&[7u8; 40_000]).await.unwrap();
        peer.shutdown().await.unwrap();
        ours.readable().await.unwrap();
        with_scratch(|scratch| empty_receive_buffer(&ours, scratch));
        let mut rest = [0u8; 1];
        assert_eq!(ours.try_read(&mut rest).unwrap(), 0, "only the FIN is left");
    }
}
