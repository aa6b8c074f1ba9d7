//! Read buffers that exist only while there is something in them.
//!
//! A keep-alive connection spends most of its life waiting for the next request. It holds no
//! buffer while it waits: [`Buf`] takes one from a small per-thread stack when bytes arrive
//! and gives it back as soon as it is empty again, so an idle connection costs a few hundred
//! bytes and a busy thread reuses the same warm buffers instead of asking the allocator.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, ready};

use crate::http::client_io::ClientStream;

/// Size of a pooled buffer: a typical request or response head and a small body fit in one
/// read.
pub const BUF_SIZE: usize = 16 * 1024;

/// Most buffers a thread keeps for reuse.
const POOL_MAX: usize = 64;

thread_local! {
    /// Read buffers: initialized, `len == BUF_SIZE`.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Output buffers: empty, capacity `BUF_SIZE`.
    static OUT_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_pooled() -> Vec<u8> {
    POOL.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; BUF_SIZE])
}

fn give_back(buf: Vec<u8>) {
    if buf.len() != BUF_SIZE {
        return; // grown for a large head: let it go
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

/// A byte buffer with a read position: bytes `start..end` are received and not yet used.
#[derive(Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    /// An empty buffer holding no memory.
    pub fn new() -> Self {
        Buf::default()
    }

    /// The received, unused bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many unused bytes there are.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether there is nothing unused.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` bytes as used; an emptied buffer goes back to the thread's stack.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.release();
        }
    }

    /// Gives the memory back if nothing unused is left in it.
    pub fn release(&mut self) {
        if self.is_empty() && !self.data.is_empty() {
            give_back(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from the client into free space, growing the buffer up to `limit` bytes of
    /// unused data. Returns the number of bytes read (0 at end of stream, or when the buffer
    /// already holds `limit` bytes).
    ///
    /// The future is three words and `Unpin`: an `async fn` would keep its arguments twice
    /// (as arguments and as locals), and connections wait on it a lot.
    pub fn recv_from<S: ClientStream>(
        &mut self,
        stream: &mut S,
        limit: usize,
    ) -> impl Future<Output = io::Result<usize>> + Unpin {
        poll_fn(move |cx| self.poll_recv_from(cx, stream, limit))
    }

    /// [`Buf::recv_from`] as a poll.
    pub fn poll_recv_from<S: ClientStream>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        self.poll_fill(limit, |free| stream.poll_recv(cx, free))
    }

    /// Fills free space once with `recv`, growing the buffer up to `limit` bytes of unused
    /// data (`Ok(0)` when it already holds that many).
    fn poll_fill(
        &mut self,
        limit: usize,
        recv: impl FnOnce(&mut [u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if !self.make_room(limit) {
            return Poll::Ready(Ok(0));
        }
        let n = match recv(&mut self.data[self.end..]) {
            Poll::Ready(Ok(n)) => n,
            // Nothing came: an empty buffer goes back rather than wait with the connection.
            // (A socket's readiness can be a guess: tokio takes an accepted socket for
            // readable before the client has sent anything.)
            Poll::Pending => {
                self.release();
                return Poll::Pending;
            }
            Poll::Ready(Err(err)) => {
                self.release();
                return Poll::Ready(Err(err));
            }
        };
        self.end += n;
        if n == 0 {
            self.release();
        }
        Poll::Ready(Ok(n))
    }

    /// [`Buf::recv_from`] for a server socket, taking a buffer only once the socket is
    /// readable: an exchange waiting for its server holds none, so a burst of exchanges in
    /// flight does not take a buffer each (and leave them behind in the allocator once done).
    pub fn read_socket<'a>(
        &'a mut self,
        stream: &'a tokio::net::TcpStream,
        limit: usize,
    ) -> impl Future<Output = io::Result<usize>> + Unpin + 'a {
        poll_fn(move |cx| {
            ready!(stream.poll_read_ready(cx))?;
            // Readiness can be stale: the buffer then goes back as the read finds nothing.
            self.poll_fill(limit, |free| crate::net::poll_recv(stream, cx, free))
        })
    }

    /// Reads from a socket without waiting: `WouldBlock` when nothing is there.
    pub fn try_read_from(
        &mut self,
        stream: &tokio::net::TcpStream,
        limit: usize,
    ) -> io::Result<usize> {
        let read = self.poll_fill(limit, |free| {
            Poll::Ready(crate::net::try_recv(stream, free))
        });
        match read {
            Poll::Ready(read) => read,
            // Not reached: the read above never waits.
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Makes sure there is free space after `end`, keeping at most `limit` unused bytes;
    /// `false` when the unused bytes already reach `limit`.
    fn make_room(&mut self, limit: usize) -> bool {
        if self.len() >= limit {
            return false;
        }
        if self.data.is_empty() {
            self.data = take_pooled();
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.data.len() * 2).min(limit.max(self.data.len() + 1));
                self.data.resize(grown, 0);
            }
        }
        true
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if !self.data.is_empty() {
            give_back(std::mem::take(&mut self.data));
        }
    }
}

/// An output buffer from the same per-thread stack, for building heads.
pub struct OutBuf {
    data: Vec<u8>,
}

impl OutBuf {
    /// An empty output buffer (pooled memory).
    pub fn new() -> Self {
        let data = OUT_POOL
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE));
        OutBuf { data }
    }

    /// An empty output buffer of its own (not pooled), for bytes held across long waits.
    pub fn with_capacity(capacity: usize) -> Self {
        OutBuf {
            data: Vec::with_capacity(capacity),
        }
    }

    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Empties it for reuse.
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// Appends a decimal number.
    pub fn put_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

impl Default for OutBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OutBuf {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        if data.capacity() != BUF_SIZE {
            return; // grown past a pooled buffer: let it go
        }
        data.clear();
        OUT_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(data);
            }
        });
    }
}

impl std::fmt::Write for OutBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Reads from a byte slice, as a client that sent `input` would.
    async fn read_slice(buf: &mut Buf, input: &mut &[u8], limit: usize) -> usize {
        poll_fn(|_| {
            buf.poll_fill(limit, |free| {
                let n = input.len().min(free.len());
                free[..n].copy_from_slice(&input[..n]);
                *input = &input[n..];
                Poll::Ready(Ok(n))
            })
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn holds_memory_only_while_bytes_are_unused() {
        let mut buf = Buf::new();
        assert_eq!(buf.data.capacity(), 0);
        let mut input: &[u8] = b"hello world";
        assert_eq!(read_slice(&mut buf, &mut input, 1 << 20).await, 11);
        assert_eq!(buf.filled(), b"hello world");
        buf.consume(6);
        assert_eq!(buf.filled(), b"world");
        buf.consume(5);
        assert!(buf.is_empty());
        assert_eq!(buf.data.capacity(), 0, "an emptied buffer is given back");
    }

    /// An accepted socket is taken for readable before the client sends anything (tokio
    /// assumes it): the read that finds nothing must not keep a buffer while it waits.
    #[tokio::test]
    async fn a_read_that_finds_nothing_holds_no_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut buf = Buf::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let poll = buf.poll_recv_from(&mut cx, &mut accepted, BUF_SIZE);
        assert!(poll.is_pending());
        assert_eq!(
            buf.data.capacity(),
            0,
            "no buffer is kept while nothing came"
        );
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET")
            .await
            .unwrap();
        assert_eq!(buf.recv_from(&mut accepted, BUF_SIZE).await.unwrap(), 3);
        assert_eq!(buf.filled(), b"GET");
    }

    #[tokio::test]
    async fn grows_up_to_the_limit_and_no_further() {
        let big = vec![7u8; BUF_SIZE * 3];
        let mut input: &[u8] = &big;
        let mut buf = Buf::new();
        let limit = BUF_SIZE * 2 + 10;
        while read_slice(&mut buf, &mut input, limit).await > 0 {}
        assert_eq!(buf.len(), limit);
        buf.consume(limit - 1);
        assert_eq!(buf.filled(), &[7]);
        // After consuming, the unused tail moves to the front and reading goes on.
        assert!(read_slice(&mut buf, &mut input, limit).await > 0);
    }

    #[test]
    fn out_buf_writes_numbers() {
        let mut out = OutBuf::new();
        out.put_u64(0);
        out.put(b" ");
        out.put_u64(18_446_744_073_709_551_615);
        assert_eq!(out.bytes(), b"0 18446744073709551615");
    }
}
