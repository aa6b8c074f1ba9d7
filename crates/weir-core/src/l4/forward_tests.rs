//! `forward` called directly on socket pairs: which path bulk bytes take, by endpoint kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use weir_testkit::{blob_bytes, fnv1a64, loopback_pair};

use super::*;
use crate::end::EndBy;
use crate::net::close::{CloseOutcome, close_stream_gracefully};

const MIB: usize = 1024 * 1024;

fn config() -> ForwardConfig {
    ForwardConfig {
        idle_timeout: Duration::from_secs(30),
        idle_close: CloseMode::Fin,
        propagate_reset: true,
        splice: true,
    }
}

/// A byte stream that is not a TCP socket (as a TLS stream or an upgraded connection is not).
struct NotTcp(DuplexStream);

impl AsyncRead for NotTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NotTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Endpoint for NotTcp {
    fn close_gracefully(self, linger: Duration) -> impl Future<Output = CloseOutcome> + Send {
        close_stream_gracefully(self, linger)
    }

    fn close_with_reset(self) {}
}

/// Sends `len` bytes from `client_peer` (then FIN) and reads them all at `server_peer`;
/// returns the hash the server side read.
async fn upload<C, S>(mut client_peer: C, mut server_peer: S, len: usize) -> u64
where
    C: AsyncWrite + Unpin + Send + 'static,
    S: AsyncRead + Unpin,
{
    let writer = tokio::spawn(async move {
        client_peer.write_all(&blob_bytes(len, 2)).await.unwrap();
        client_peer.shutdown().await.unwrap();
        client_peer
    });
    let mut got = Vec::with_capacity(len);
    server_peer.read_to_end(&mut got).await.unwrap();
    drop(writer.await.unwrap());
    fnv1a64(&got)
}

#[tokio::test]
async fn bulk_between_tcp_sockets_is_spliced() {
    let (client_peer, client) = loopback_pair().await.unwrap();
    let (server_peer, server) = loopback_pair().await.unwrap();
    let forwarding = tokio::spawn(async move {
        let forwarded = forward(client, server, &config(), std::future::pending()).await;
        (forwarded.bytes_in, forwarded.spliced_in, forwarded.end)
    });
    let (client_rd, client_wr) = client_peer.into_split();
    let (mut server_rd, server_wr) = server_peer.into_split();
    let hash = upload(client_wr, &mut server_rd, 8 * MIB).await;
    assert_eq!(hash, fnv1a64(&blob_bytes(8 * MIB, 2)));
    drop((server_wr, client_rd)); // the server's FIN ends the other direction
    let (bytes_in, spliced_in, end) = forwarding.await.unwrap();
    assert_eq!(bytes_in, 8 * MIB as u64);
    assert!(spliced_in > 7 * MIB as u64, "spliced: {spliced_in}");
    assert_eq!((end.by, end.how), (EndBy::Client, EndHow::Fin));
}

#[tokio::test]
async fn bulk_from_a_stream_that_is_not_tcp_is_copied() {
    let (client_peer, client) = tokio::io::duplex(256 * 1024);
    let (server_peer, server) = loopback_pair().await.unwrap();
    let forwarding = tokio::spawn(async move {
        let forwarded = forward(NotTcp(client), server, &config(), std::future::pending()).await;
        (
            forwarded.bytes_in,
            forwarded.spliced_in,
            forwarded.spliced_out,
        )
    });
    let (client_rd, client_wr) = tokio::io::split(client_peer);
    let (mut server_rd, server_wr) = server_peer.into_split();
    let hash = upload(client_wr, &mut server_rd, 8 * MIB).await;
    assert_eq!(hash, fnv1a64(&blob_bytes(8 * MIB, 2)));
    drop((server_wr, client_rd));
    let (bytes_in, spliced_in, spliced_out) = forwarding.await.unwrap();
    assert_eq!(bytes_in, 8 * MIB as u64);
    assert_eq!((spliced_in, spliced_out), (0, 0));
}
