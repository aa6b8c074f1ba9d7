//! One direction of a forwarded connection: read from one side, write to the other, pass the
//! FIN on, and blame a failure on the side it came from.
//!
//! Bytes take one of two paths. Every direction starts on the copy path: a read of at most
//! [`READ_CHUNK`] bytes into the thread's scratch buffer, written straight on — or, when the
//! read is small and the destination a server's plain socket, queued for the worker's batch
//! of sends (see [`crate::net::batch`]), which the direction waits for before it reads
//! again. Only when the destination cannot take them all does the rest go into a buffer of
//! the connection's own, freed once it has drained — so an idle connection holds no buffer,
//! and a new one allocates nothing to start. When the listener asks for it (`splice = true`),
//! both ends are plain TCP sockets and a read fills the whole chunk (the sender outruns us,
//! which request/response traffic does not do), the direction moves to the splice path for
//! good: socket → kernel pipe → socket, no copy through user space (see
//! [`crate::net::splice`]). Pipe setup costs a few syscalls, paid back within the first few
//! bulk reads; small messages never pay it.
//!
//! Splicing is off by default because where it was measured it cost more than it saved. One
//! iperf3 stream through weir, weir and the iperf3 server sharing one core: copying, 19.5
//! Gbit/s for 220 µs of weir CPU per MiB and 145 of the server's; splicing, 11 Gbit/s for 270
//! and 450. The machine's congestion control is BBR, which paces each socket with TCP's own
//! timers when no `fq` qdisc does (loopback has none): a splice hands TCP many pages at once
//! and most of them wait for a pacing timer, while a copy of at most [`READ_CHUNK`] bytes goes
//! out as one segment at once. With cubic, splicing ran at 50 Gbit/s for 80 µs/MiB
//! (copying: 26 Gbit/s, 200 µs/MiB) — hence the listener setting, for hosts where that holds.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tracing::debug;

use crate::end::{EndBy, EndHow};
use crate::net::batch::{self, Owed};
use crate::net::close::Endpoint;
use crate::net::is_reset;
use crate::net::splice::Pipe;
use crate::net::with_scratch;

/// Most bytes one read takes on the copy path. Below the loopback MSS (65,483 bytes) so that a
/// read passed on in one write leaves no runt segment behind a full one: with 64 KiB reads each
/// write became a full segment and a 53-byte one, and one bulk stream ran 40 % slower. Larger
/// reads are worse when TCP paces with its own timers (BBR, no `fq`): with 128 to 512 KiB
/// reads one stream fell from 19.5 to 13-15 Gbit/s and weir's CPU per MiB rose by a quarter,
/// each write's later segments waiting for TCP's pacing timer; 32 KiB cost 5 % more per MiB.
const READ_CHUNK: usize = 48 * 1024;

/// Which side a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

impl Side {
    pub(super) fn end_by(self) -> EndBy {
        match self {
            Side::Client => EndBy::Client,
            Side::Server => EndBy::Upstream,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// A failure in one direction, blamed on the side it came from.
pub(super) struct Fault {
    pub(super) side: Side,
    pub(super) how: EndHow,
}

impl Fault {
    fn io(side: Side, err: &io::Error) -> Fault {
        Fault {
            side,
            how: if is_reset(err) {
                EndHow::Rst
            } else {
                EndHow::Error
            },
        }
    }

    /// A write that took nothing: the destination is unusable.
    fn write_zero(side: Side) -> Fault {
        Fault {
            side,
            how: EndHow::Error,
        }
    }
}

/// How a direction moves its bytes.
enum Path {
    /// read(2) into the scratch buffer, write(2) on; may still become [`Path::Splice`].
    Copy,
    /// Copy for good: an end is not a plain TCP socket, or no pipe could be made.
    CopyOnly,
    /// Through a kernel pipe with splice(2).
    Splice(Pipe),
}

/// One direction: from `src` to the other side.
pub(super) struct Half {
    /// The side bytes are read from.
    pub(super) src: Side,
    path: Path,
    /// Copy path: a send queued for the worker's batch (see [`crate::net::batch`]), and bytes
    /// read but not yet written (only while a write is stalled); written before anything else.
    owed: Owed,
    /// `src` sent its FIN.
    pub(super) eof: bool,
    /// The FIN was passed on: the destination's write side is shut, or its close (which
    /// follows at once, both directions being done) sends the FIN.
    pub(super) shut: bool,
    /// Bytes read from `src`.
    pub(super) bytes: u64,
    /// Of those, bytes that went through the pipe.
    pub(super) spliced: u64,
    /// Some byte moved since the flag was last taken (for the idle timer).
    pub(super) moved: bool,
}

impl Half {
    /// A direction reading from `src`; `may_splice` when both ends are plain TCP sockets.
    pub(super) fn new(src: Side, may_splice: bool) -> Self {
        Half {
            src,
            path: if may_splice {
                Path::Copy
            } else {
                Path::CopyOnly
            },
            owed: Owed::default(),
            eof: false,
            shut: false,
            bytes: 0,
            spliced: 0,
            moved: false,
        }
    }

    /// A direction picking up where the io_uring engine left it: `state.bytes` read, and
    /// maybe the FIN seen and passed on.
    pub(super) fn resumed(
        src: Side,
        may_splice: bool,
        state: crate::net::ring::DirectionState,
    ) -> Self {
        Half {
            eof: state.eof,
            shut: state.shut,
            bytes: state.bytes,
            ..Half::new(src, may_splice)
        }
    }

    fn dst(&self) -> Side {
        self.src.other()
    }

    /// Moves bytes until `src` is at EOF and the FIN is passed on (Ready(Ok)), or a fault.
    /// `other_done`: the opposite direction has finished, so the destination is closed as
    /// soon as this one is, and when it is a plain TCP socket its close carries the FIN — no
    /// `shutdown(2)` needed (its receive queue is empty: the opposite direction read it to
    /// EOF, so the close sends FIN, not RST).
    pub(super) fn poll_copy<R: Endpoint, W: Endpoint>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        other_done: bool,
    ) -> Poll<Result<(), Fault>> {
        loop {
            ready!(self.poll_flush(cx, dst))?;
            if self.eof {
                if !self.shut {
                    if !(other_done && dst.as_tcp().is_some())
                        && let Err(err) = ready!(Pin::new(&mut *dst).poll_shutdown(cx))
                    {
                        return Poll::Ready(Err(Fault::io(self.dst(), &err)));
                    }
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            match (&mut self.path, src.as_tcp()) {
                (Path::Splice(pipe), Some(src)) => match ready!(pipe.poll_fill(cx, src)) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.bytes += n as u64;
                        self.spliced += n as u64;
                        self.moved = true;
                    }
                    Err(err) => return Poll::Ready(Err(Fault::io(self.src, &err))),
                },
                _ => ready!(self.poll_read_through(cx, src, dst))?,
            }
        }
    }

    /// Writes what this direction holds — stalled copy bytes first, then the pipe — until
    /// nothing is left.
    fn poll_flush<W: Endpoint>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<Result<(), Fault>> {
        let dst_side = self.dst();
        let moved = &mut self.moved;
        let settled = ready!(self.owed.poll_settle(cx, |cx, bytes| {
            let written = dst.poll_send(cx, bytes);
            if let Poll::Ready(Ok(1..)) = written {
                *moved = true;
            }
            written
        }));
        if let Err(err) = settled {
            return Poll::Ready(Err(Fault::io(dst_side, &err)));
        }
        if let (Path::Splice(pipe), Some(dst)) = (&mut self.path, dst.as_tcp()) {
            while !pipe.is_empty() {
                match ready!(pipe.poll_drain(cx, dst)) {
                    Ok(0) => return Poll::Ready(Err(Fault::write_zero(dst_side))),
                    Ok(_) => self.moved = true,
                    Err(err) => return Poll::Ready(Err(Fault::io(dst_side, &err))),
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads once into the scratch buffer and writes what it can; keeps the rest pending.
    fn poll_read_through<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
    ) -> Poll<Result<(), Fault>>
    where
        R: Endpoint,
        W: Endpoint,
    {
        with_scratch(|scratch| {
            let len = scratch.len().min(READ_CHUNK);
            let buf = &mut scratch[..len];
            let n = match ready!(src.poll_recv(cx, buf)) {
                Ok(n) => n,
                Err(err) => return Poll::Ready(Err(Fault::io(self.src, &err))),
            };
            if n == 0 {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            self.bytes += n as u64;
            self.moved = true;
            if n == buf.len() && matches!(self.path, Path::Copy) {
                // Bulk. The bytes just read (and any left pending) go out before the pipe's.
                self.path = match Pipe::new() {
                    Ok(pipe) => Path::Splice(pipe),
                    Err(err) => {
                        debug!(%err, "no pipe for splicing: this direction keeps copying");
                        Path::CopyOnly
                    }
                };
            }
            // Only toward the server: a send there may wake a process on weir's own core (the
            // preemption batching avoids); the client is the far side, and its answer goes out
            // at once. Measured on `tcp_rr` (6 interleaved rounds): batching both ways cost
            // weir 0.5 µs more per request and the backend 0.3 less, and lost 3 % of the
            // requests/s. (`queue` declines bulk reads, above `batch::MAX_BYTES`.)
            if self.src == Side::Client
                && let Some(tcp) = dst.as_tcp()
                && let Some(ticket) = batch::queue(tcp.as_raw_fd(), &buf[..n])
            {
                // Made at the worker's next flush; `poll_flush` waits for it.
                self.owed.queued(ticket);
                return Poll::Ready(Ok(()));
            }
            let mut written = 0;
            while written < n {
                match self.poll_write(cx, dst, &buf[written..n]) {
                    Poll::Ready(Ok(k)) => written += k,
                    Poll::Ready(Err(fault)) => return Poll::Ready(Err(fault)),
                    Poll::Pending => {
                        self.owed.keep(&buf[written..n]);
                        return Poll::Pending;
                    }
                }
            }
            Poll::Ready(Ok(()))
        })
    }

    fn poll_write<W: Endpoint>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        bytes: &[u8],
    ) -> Poll<Result<usize, Fault>> {
        match ready!(dst.poll_send(cx, bytes)) {
            Ok(0) => Poll::Ready(Err(Fault::write_zero(self.dst()))),
            Ok(n) => {
                self.moved = true;
                Poll::Ready(Ok(n))
            }
            Err(err) => Poll::Ready(Err(Fault::io(self.dst(), &err))),
        }
    }
}
