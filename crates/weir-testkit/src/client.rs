//! Client-side helpers: end a connection with RST or FIN on purpose, and read a stream to its
//! end while telling how it ended.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ending::{Ending, classify};

/// Two connected loopback sockets: (the end that connected, the end that was accepted).
pub async fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let connected = TcpStream::connect(listener.local_addr()?).await?;
    let (accepted, _) = listener.accept().await?;
    Ok((connected, accepted))
}

/// Connects to `addr`, then closes with SO_LINGER 0: the peer sees a reset (`ECONNRESET`).
pub async fn connect_and_reset(addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    reset(stream)
}

/// Closes `stream` abortively (SO_LINGER 0, then close): the kernel sends RST.
pub fn reset(stream: TcpStream) -> io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

/// Connects to `addr`, shuts down the write side (FIN), reads and discards until the peer ends
/// the connection, and says how it did. The socket is closed with an empty receive buffer.
pub async fn connect_and_fin(addr: SocketAddr) -> io::Result<Ending> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.shutdown().await?;
    let (_, ending) = read_to_end_classified(&mut stream).await;
    Ok(ending)
}

/// Reads until the peer's FIN or an error; returns the bytes read and how the stream ended.
/// Accepts a stream or a `&mut` to one.
pub async fn read_to_end_classified<S: AsyncRead + Unpin>(mut stream: S) -> (Vec<u8>, Ending) {
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk).await;
        if let Ok(n) = read {
            data.extend_from_slice(&chunk[..n]);
        }
        if let Some(ending) = classify(read) {
            return (data, ending);
        }
    }
}
