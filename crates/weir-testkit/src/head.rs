//! Reading HTTP/1.x request heads off a stream, just enough for test backends: find the blank
//! line that ends a head. Request bodies are not parsed (the backends only see body-less requests).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::ending::{Ending, of_error};

/// Bytes kept while looking for the end of a head; older bytes are dropped beyond this.
const MAX_HEAD: usize = 64 * 1024;

/// What reading for the next head found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A complete head was read (and consumed from the buffer).
    Head,
    /// The connection ended before a complete head.
    End(Ending),
}

/// Buffers bytes between heads, so pipelined requests are each seen.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Reads until the buffer holds a complete head, or the connection ends.
    pub(crate) async fn next_head(&mut self, stream: &mut TcpStream) -> Next {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find_head_end(&self.buf) {
                self.buf.drain(..end);
                return Next::Head;
            }
            if self.buf.len() > MAX_HEAD {
                let keep = self.buf.len() - 3;
                self.buf.drain(..keep);
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Next::End(Ending::Fin),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) => return Next::End(of_error(&err)),
            }
        }
    }
}

/// The index just past the first `\r\n\r\n`, if any.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|pos| pos + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
