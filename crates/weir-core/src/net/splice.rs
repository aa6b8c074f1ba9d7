//! Moving bytes from one TCP socket to another through a kernel pipe with splice(2): the
//! bytes go socket → pipe → socket and never enter weir's memory.
//!
//! A [`Pipe`] is one direction's buffer: bytes spliced in and not yet spliced out are that
//! direction's pending data. The pipe is non-blocking and never registered with the reactor;
//! readiness comes from the two sockets, through tokio (`poll_*_ready`, then `try_io`, which
//! forgets the readiness when the call would block). That only works because a `WouldBlock`
//! always speaks about the socket, never the pipe:
//!
//! - the pipe is filled only when it is empty, so a splice into it that would block means the
//!   source socket has nothing to read;
//! - it is emptied before it is filled again, and a splice out of a non-empty pipe that would
//!   block means the destination socket cannot take more.
//!
//! SIGPIPE: the kernel does not pass MSG_NOSIGNAL when it splices into a socket, so a peer
//! that is gone raises SIGPIPE. Rust's runtime ignores SIGPIPE at start, so the call fails with
//! EPIPE instead, like a `send(MSG_NOSIGNAL)` does.

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll, ready};

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Capacity asked for each pipe. A larger pipe moves more per call (fewer wake-ups and
/// syscalls per MiB); pages are only referenced while bytes sit in it, so an empty pipe costs
/// its slot array (40 bytes per 4 KiB page of capacity: 2.5 KiB), not its capacity.
const PIPE_SIZE: usize = 256 * 1024;

/// A pipe's capacity when the kernel refuses a bigger one (the default on Linux).
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// SPLICE_F_MOVE is a hint (pages are moved, not copied, where the kernel can); NONBLOCK keeps
/// the pipe side from blocking whatever the sockets' own flags.
const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// One direction's kernel pipe, and how many bytes it holds.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    held: usize,
    /// Most bytes one fill asks for.
    capacity: usize,
}

impl Pipe {
    /// A new, empty, non-blocking pipe of [`PIPE_SIZE`] bytes (the default size if the kernel
    /// refuses that, e.g. over the per-user limit on pipe memory).
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let capacity = fcntl_setpipe_size(&write, PIPE_SIZE).unwrap_or(DEFAULT_PIPE_SIZE);
        Ok(Pipe {
            read,
            write,
            held: 0,
            capacity,
        })
    }

    /// Bytes waiting in the pipe.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether the pipe is empty.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Splices what `src` has to read into the (empty) pipe, waiting for `src` to be readable.
    /// `Ready(Ok(0))` is the peer's FIN.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, src: &TcpStream) -> Poll<io::Result<usize>> {
        debug_assert!(self.is_empty(), "a pipe is filled only when empty");
        loop {
            ready!(src.poll_read_ready(cx))?;
            let moved = src.try_io(Interest::READABLE, || {
                Ok(splice(src, None, &self.write, None, self.capacity, FLAGS)?)
            });
            match moved {
                Ok(n) => {
                    self.held += n;
                    return Poll::Ready(Ok(n));
                }
                Err(err) if retry(&err) => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Splices bytes from the (non-empty) pipe into `dst`, waiting for `dst` to be writable.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, dst: &TcpStream) -> Poll<io::Result<usize>> {
        loop {
            ready!(dst.poll_write_ready(cx))?;
            let moved = dst.try_io(Interest::WRITABLE, || {
                Ok(splice(&self.read, None, dst, None, self.held, FLAGS)?)
            });
            match moved {
                Ok(n) => {
                    self.held = self.held.saturating_sub(n);
                    return Poll::Ready(Ok(n));
                }
                Err(err) if retry(&err) => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// `WouldBlock`: tokio has cleared the readiness, so the next `poll_*_ready` waits for the
/// socket; `Interrupted`: just try again.
fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
