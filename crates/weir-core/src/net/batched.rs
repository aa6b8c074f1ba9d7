//! A server socket for hyper's client whose small writes join the worker's batch of sends
//! (see [`crate::net::batch`]), as the HTTP/1 engine's and TCP forwarding's writes do.
//!
//! Without it, the HTTP/2 listener's requests went out one `send` each, and the backend each
//! one woke on weir's core preempted weir: 0.9 preemptions per request on `h2`.
//!
//! A small write is queued and reported written at once; the bytes are still owned by the
//! batch, so the next write, a flush or a shutdown first waits for that send to be made (the
//! worker's next idle moment), then writes whatever it did not take. Order is kept: nothing
//! reaches the socket before the queued bytes do.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::batch::{self, Owed};

/// A connected server socket whose writes of up to [`batch::MAX_BYTES`] are batched.
#[derive(Debug)]
pub struct BatchedStream {
    stream: TcpStream,
    /// The queued send and what it left, written before anything else.
    owed: Owed,
}

impl BatchedStream {
    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> Self {
        BatchedStream {
            stream,
            owed: Owed::default(),
        }
    }

    /// The socket, for closing: a send still queued is dropped unmade (the connection is over,
    /// its bytes would reach nobody who waits for them).
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    /// Waits for the queued send and writes what it left; Ready(Ok) once nothing is owed.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = &mut self.stream;
        self.owed
            .poll_settle(cx, |cx, bytes| Pin::new(&mut *stream).poll_write(cx, bytes))
    }

    /// Queues `bufs` for the worker's next batch; false when they are not batched (too large,
    /// or batching is off on this thread).
    fn queue(&mut self, bufs: &[IoSlice<'_>]) -> bool {
        match batch::queue_vectored(self.stream.as_raw_fd(), bufs) {
            Some(ticket) => {
                self.owed.queued(ticket);
                true
            }
            None => false,
        }
    }
}

impl AsyncRead for BatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_settle(cx))?;
        if self.queue(&[IoSlice::new(buf)]) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_settle(cx))?;
        if self.queue(bufs) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_settle(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_settle(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A batched stream and its peer.
    async fn pair() -> (BatchedStream, TcpStream) {
        let (ours, peer) = weir_testkit::loopback_pair().await.unwrap();
        (BatchedStream::new(ours), peer)
    }

    /// Runs `test` on a current-thread runtime whose worker batches its sends, as weir's
    /// workers do (where io_uring is refused, sends go out directly and the test still holds).
    fn on_batching_worker<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(batch::flush)
            .build()
            .unwrap();
        if let Err(err) = batch::enable() {
            eprintln!("no io_uring here ({err}): writes go out directly");
        }
        runtime.block_on(test());
    }

    #[test]
    fn small_and_large_writes_arrive_whole_and_in_order() {
        on_batching_worker(|| async {
            let (mut stream, mut peer) = pair().await;
            let mut sent = Vec::new();
            for i in 0..50u32 {
                // small (batched), vectored (gathered) and large (direct) writes, mixed
                let small = format!("request {i}\r\n").into_bytes();
                stream.write_all(&small).await.unwrap();
                sent.extend_from_slice(&small);
                let head = format!("head {i};");
                let body = vec![b'a' + (i % 26) as u8; 100];
                let slices = [IoSlice::new(head.as_bytes()), IoSlice::new(&body)];
                let n = stream.write_vectored(&slices).await.unwrap();
                let all = [head.as_bytes(), &body[..]].concat();
                stream.write_all(&all[n..]).await.unwrap();
                sent.extend_from_slice(&all);
                if i % 10 == 0 {
                    let large = vec![b'0' + (i % 10) as u8; 20_000];
                    stream.write_all(&large).await.unwrap();
                    sent.extend_from_slice(&large);
                }
            }
            stream.shutdown().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), sent.len());
            assert!(got == sent, "bytes arrived out of order");
        });
    }

    #[test]
    fn a_flush_waits_for_the_queued_send() {
        on_batching_worker(|| async {
            let (mut stream, mut peer) = pair().await;
            stream.write_all(b"ping").await.unwrap();
            // Queued, not yet made, where the worker batches.
            assert_eq!(stream.owed.is_queued(), batch::enabled());
            stream.flush().await.unwrap();
            // Flushed: the bytes are on the socket, without the writer doing anything more.
            let mut buf = [0u8; 4];
            peer.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            assert!(!stream.owed.is_queued());
        });
    }

    #[test]
    fn a_reset_peer_fails_the_next_write() {
        on_batching_worker(|| async {
            let (mut stream, peer) = pair().await;
            socket2::SockRef::from(&peer)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
            drop(peer);
            // The reset has arrived once a read reports it; the next send then fails.
            let err = stream.read(&mut [0; 1]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            // Batched, the send's failure shows at the flush; sent directly, at the write.
            let sent = async {
                stream.write_all(b"data").await?;
                stream.flush().await
            };
            let err = sent.await.unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{err}"
            );
        });
    }
}
