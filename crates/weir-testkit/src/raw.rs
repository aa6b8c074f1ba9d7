//! [`RawBackend`]: a loopback backend whose every connection runs the test's own script over a
//! [`RawConn`] — read a request (head, or head and body), write any bytes at all (1xx heads,
//! chunked or close-delimited bodies, conflicting framing, a body cut short), then close with
//! FIN or hold the socket without reading. For the responses no well-behaved backend sends.
//!
//! ```ignore
//! let backend = RawBackend::start(|mut conn| async move {
//!     if let Err(ending) = conn.read_request().await {
//!         return ending;
//!     }
//!     let _ = conn.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the close").await;
//!     conn.close().await
//! })
//! .await;
//! ```
//!
//! The script returns how the peer ended the connection, which [`RawBackend::endings`] lists.
//! [`RawConn::close`] keeps the backend's own closes clean (FIN, then read to the peer's FIN).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::ending::{Ending, of_error};
use crate::http::{Conn, Read, SeenRequest, parse_head};
use crate::server::{Server, Tally};

/// A request as a [`RawBackend`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Method, target and the head as received (request line and headers, CRLF-separated,
    /// without the blank line).
    pub seen: SeenRequest,
    /// The body, de-chunked (empty after [`RawConn::read_head`]).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Every value of header `name` (any case), trimmed.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.seen
            .head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// One connection of a [`RawBackend`], handed to the script.
pub struct RawConn {
    conn: Conn,
    tally: Arc<Tally>,
    /// Body framing of the last head read by [`RawConn::read_head`]: `Some(None)` chunked,
    /// `Some(Some(n))` a length, `None` no head pending.
    pending: Option<Option<usize>>,
}

impl RawConn {
    /// Reads the next request head and leaves its body unread (see [`RawConn::read_body`]).
    /// `Err` says how the connection ended first ([`Ending::Other`] for a head that does not
    /// parse).
    pub async fn read_head(&mut self) -> Result<RawRequest, Ending> {
        let head = match self.conn.head(None).await {
            Read::Got(head) => head,
            Read::End(ending) => return Err(ending),
            Read::Idle | Read::Bad => return Err(Ending::Other),
        };
        let parsed = parse_head(&head).ok_or(Ending::Other)?;
        self.tally.count_request();
        self.pending = Some((!parsed.chunked).then_some(parsed.content_length));
        Ok(RawRequest {
            seen: parsed.seen,
            body: Vec::new(),
        })
    }

    /// Reads the body of the head [`RawConn::read_head`] returned (`Content-Length` or
    /// chunked; empty when there is none).
    pub async fn read_body(&mut self) -> Result<Vec<u8>, Ending> {
        match self.pending.take() {
            Some(Some(len)) => self.conn.exact(len).await,
            Some(None) => self.conn.chunked().await,
            None => Ok(Vec::new()),
        }
    }

    /// Reads the next request, head and body.
    pub async fn read_request(&mut self) -> Result<RawRequest, Ending> {
        let mut request = self.read_head().await?;
        request.body = self.read_body().await?;
        Ok(request)
    }

    /// Writes `bytes` as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Ending> {
        self.conn.write(bytes).await
    }

    /// Closes from this side: FIN, then reads and discards until the peer's FIN or reset, so
    /// the socket closes with an empty receive buffer. Returns how the peer ended it.
    pub async fn close(mut self) -> Ending {
        let shut = self.conn.stream.shutdown().await;
        let ending = shut.err().map(|err| of_error(&err));
        loop {
            self.conn.buf.clear();
            if let Err(end) = self.conn.fill().await {
                return ending.unwrap_or(end);
            }
        }
    }

    /// Keeps the connection open and never reads or writes again; the socket closes when the
    /// backend is dropped.
    pub async fn hold(self) -> Ending {
        let _held = self;
        std::future::pending::<Ending>().await
    }

    /// The socket, for anything the helpers do not cover.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.conn.stream
    }
}

/// A running [`RawBackend`]; stops when dropped (its connections close).
#[derive(Debug)]
pub struct RawBackend {
    server: Server,
    tally: Arc<Tally>,
}

impl RawBackend {
    /// Starts a backend on `127.0.0.1:0` that runs `script` on every accepted connection.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (use [`RawBackend::try_start`] to handle that).
    pub async fn start<F, Fut>(script: F) -> RawBackend
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Ending> + Send + 'static,
    {
        match RawBackend::try_start(script).await {
            Ok(backend) => backend,
            Err(err) => panic!("weir-testkit: cannot bind 127.0.0.1:0: {err}"),
        }
    }

    /// Starts the backend, returning the bind error if any.
    pub async fn try_start<F, Fut>(script: F) -> io::Result<RawBackend>
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Ending> + Send + 'static,
    {
        let tally = Tally::new();
        let script = Arc::new(script);
        let server = Server::start(Arc::clone(&tally), move |stream, tally| {
            let script = Arc::clone(&script);
            async move {
                let _ = stream.set_nodelay(true);
                let conn = RawConn {
                    conn: Conn {
                        stream,
                        buf: Vec::new(),
                    },
                    tally: Arc::clone(&tally),
                    pending: None,
                };
                let ending = script(conn).await;
                tally.record(ending);
            }
        })
        .await?;
        Ok(RawBackend { server, tally })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.tally.accepted()
    }

    /// Request heads read so far, over all connections.
    pub fn requests(&self) -> usize {
        self.tally.requests()
    }

    /// How each finished script said its connection ended, in order of completion.
    pub fn endings(&self) -> Vec<Ending> {
        self.tally.endings()
    }

    /// Waits until at least `n` scripts have finished; `false` if `timeout` passed first.
    pub async fn wait_for_endings(&self, n: usize, timeout: Duration) -> bool {
        self.tally.wait_ended(n, timeout).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::http::{H1Client, raw_exchange, read_response};

    #[tokio::test]
    async fn runs_the_script_on_each_connection() {
        let backend = RawBackend::start(|mut conn| async move {
            let request = match conn.read_request().await {
                Ok(request) => request,
                Err(ending) => return ending,
            };
            let body = format!(
                "{} {} {:?}",
                request.seen.target,
                request.body.len(),
                request.headers_named("x-a")
            );
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            let reply = format!("{head}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
            let _ = conn.write(reply.as_bytes()).await;
            conn.close().await
        })
        .await;
        let mut client = H1Client::connect(backend.addr()).await.unwrap();
        let r = client
            .request("POST", "/p", &["X-A: 1"], b"hello")
            .await
            .unwrap();
        assert_eq!(r.text(), "/p 5 [\"1\"]");
        let (rest, ending) = client.read_to_end().await;
        assert_eq!((rest.len(), ending), (0, Ending::Fin));
        client.stream().shutdown().await.unwrap();

        let chunked = b"POST /q HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (bytes, ending) = raw_exchange(backend.addr(), chunked, Duration::from_secs(5)).await;
        assert_eq!(ending, Ending::Fin);
        assert_eq!(read_response(&bytes).await.unwrap().text(), "/q 3 []");
        assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
        assert_eq!((backend.connections(), backend.requests()), (2, 2));
        assert_eq!(backend.endings()[0], Ending::Fin);
    }
}
