//! A worker's small sends, made together: one `io_uring_enter(2)` for every send its tasks
//! queued since it last went idle.
//!
//! Why: a proxy sharing a core with a server (or any busy neighbour) is preempted at the end of
//! the `send(2)` that wakes that neighbour. With one `send` per forwarded request, the two take
//! turns request by request, two context switches each. Measured on the benchmark's TCP
//! request/response scenario, weir was switched out 0.74 times per request; when it was not
//! (an experiment at a higher priority), it spent 16 % less CPU per request and forwarded 24 %
//! more. Sends made in one system call are all made before the preemption, and the neighbour
//! then finds the whole batch waiting.
//!
//! How: [`queue`] copies the bytes into a slot of the thread's batch and returns a [`Ticket`];
//! the task waits on it. The worker's runtime calls [`flush`] just before it parks (tokio's
//! `on_thread_park`), and [`queue`] flushes by itself once [`MAX_QUEUED`] sends wait, so a
//! worker that never goes idle still sends. A flush submits every queued send with
//! `MSG_DONTWAIT` (the kernel then answers `EAGAIN` instead of waiting for room) and waits for
//! all the completions, which a non-blocking send on a socket gives at once, before it returns;
//! so a send is never in flight once the flush is over. A send that took only part of its
//! bytes, or none, hands the rest back to its task, which sends it with `send(2)` as before.
//!
//! Batching is per thread and off unless [`enable`] turned it on (the workers do, when the
//! kernel has io_uring and `runtime.io_uring` is not off); elsewhere [`queue`] says no and the
//! caller sends directly.

// Unsafe code (as in `ring.rs`, the only other place): handing the kernel pointers to bytes
// that must outlive the system call, which `flush` guarantees by reaping every completion
// before it returns.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::task::{Context, Poll, Waker, ready};

use io_uring::{IoUring, opcode, types};

/// Most bytes a batched send carries. Bigger writes are bulk: one system call more or less is
/// nothing next to their copy, and they go straight to `send(2)`.
pub const MAX_BYTES: usize = 8 * 1024;

/// Sends queued before a batch is made without waiting for the worker to go idle; also the
/// ring's size, so a batch always fits.
const MAX_QUEUED: usize = 64;

/// One queued (or just made) send.
struct Slot {
    fd: RawFd,
    bytes: Vec<u8>,
    state: State,
    waker: Option<Waker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No ticket holds the slot.
    Free,
    /// Waiting for the next flush.
    Queued,
    /// Made: bytes taken (`>= 0`) or an errno (`< 0`), as the kernel answered.
    Done(i32),
}

/// The thread's batch: the ring and the slots of the sends it carries.
struct Batch {
    /// `None` once a submission failed: the thread then sends directly.
    ring: Option<IoUring>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    queued: Vec<usize>,
    /// The tasks a flush wakes; kept, like `queued`, so a flush allocates nothing.
    wakers: Vec<Waker>,
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Turns batching on for this thread. Its runtime must call [`flush`] before it parks, or
/// queued sends wait for the next [`MAX_QUEUED`]th.
pub fn enable() -> io::Result<()> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(MAX_QUEUED as u32)
        // Kernels before 6.0 refuse the flags, which only save work.
        .or_else(|_| IoUring::new(MAX_QUEUED as u32))?;
    BATCH.with(|batch| {
        *batch.borrow_mut() = Some(Batch {
            ring: Some(ring),
            slots: Vec::new(),
            free: Vec::new(),
            queued: Vec::new(),
            wakers: Vec::new(),
        });
    });
    Ok(())
}

/// Whether this thread batches its small sends.
pub fn enabled() -> bool {
    BATCH.with(|batch| {
        batch
            .borrow()
            .as_ref()
            .is_some_and(|batch| batch.ring.is_some())
    })
}

/// Queues a send of `bytes` (at most [`MAX_BYTES`]) on the socket `fd` for the thread's next
/// batch. `None` when the thread does not batch: send directly.
///
/// The caller must keep the socket open while it holds the ticket (dropping the ticket first
/// takes a send that is still queued out of the batch).
pub fn queue(fd: RawFd, bytes: &[u8]) -> Option<Ticket> {
    queue_vectored(fd, &[IoSlice::new(bytes)])
}

/// [`queue`] for bytes in pieces (a request head and its body): they are gathered into one
/// send.
pub fn queue_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> Option<Ticket> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    if len == 0 || len > MAX_BYTES {
        return None;
    }
    let (ticket, full) = BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        let batch = batch.as_mut().filter(|batch| batch.ring.is_some())?;
        let index = batch.free.pop().unwrap_or(batch.slots.len());
        let ticket = Ticket {
            slot: u32::try_from(index + 1).ok().and_then(NonZeroU32::new)?,
        };
        if index == batch.slots.len() {
            batch.slots.push(Slot {
                fd,
                bytes: Vec::new(),
                state: State::Free,
                waker: None,
            });
        }
        let slot = &mut batch.slots[index];
        slot.fd = fd;
        slot.bytes.clear();
        for b in bufs {
            slot.bytes.extend_from_slice(b);
        }
        slot.state = State::Queued;
        batch.queued.push(index);
        Some((ticket, batch.queued.len() >= MAX_QUEUED))
    })?;
    if full {
        flush();
    }
    Some(ticket)
}

/// Makes every queued send, in one system call, and wakes the tasks waiting on them.
pub fn flush() {
    let mut wakers = BATCH.with(|batch| match batch.borrow_mut().as_mut() {
        Some(batch) if !batch.queued.is_empty() => {
            batch.make();
            std::mem::take(&mut batch.wakers)
        }
        _ => Vec::new(),
    });
    if wakers.is_empty() {
        return;
    }
    // Woken outside the borrow, then the vector goes back for the next flush.
    for waker in wakers.drain(..) {
        waker.wake();
    }
    BATCH.with(|batch| {
        if let Some(batch) = batch.borrow_mut().as_mut() {
            batch.wakers = wakers;
        }
    });
}

impl Batch {
    /// Submits the queued sends, waits for all their completions and records them; leaves the
    /// wakers of their tasks in `wakers`.
    fn make(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        {
            let mut submission = ring.submission();
            for &index in &self.queued {
                let slot = &self.slots[index];
                let entry = opcode::Send::new(
                    types::Fd(slot.fd),
                    slot.bytes.as_ptr(),
                    slot.bytes.len() as u32,
                )
                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                .build()
                .user_data(index as u64);
                // SAFETY: the bytes are the slot's, which is neither written nor freed before
                // this function returns (`queue` and `Ticket::drop` run on this thread, never
                // during a flush), and this function returns only once the kernel has
                // completed every submitted send (below), or the ring is gone. The fd is the
                // open socket of the task holding the ticket: a ticket dropped before the
                // flush took its send out of `queued`. `queued` never holds more than the
                // ring's size, so the push cannot fail; if it did, the send would stay
                // `Queued` and be reported unsent below.
                if unsafe { submission.push(&entry) }.is_err() {
                    break;
                }
            }
        }
        // The first call submits; each wait is for the completions not seen yet (a
        // non-blocking send completes inside the submission, so normally there are none).
        let mut waiting = ring.submission().len();
        let mut submitted = false;
        while waiting > 0 {
            match ring.submit_and_wait(waiting) {
                Ok(_) => submitted = true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    tracing::warn!(%err, "io_uring submission failed: this worker sends directly from now on");
                    break;
                }
            }
            for completion in ring.completion() {
                if let Some(slot) = usize::try_from(completion.user_data())
                    .ok()
                    .and_then(|index| self.slots.get_mut(index))
                {
                    slot.state = State::Done(completion.result());
                    waiting -= 1;
                }
            }
        }
        if waiting > 0 {
            // Dropping the ring drops what it still holds; the thread sends directly now.
            self.ring = None;
        }
        for index in self.queued.drain(..) {
            let slot = &mut self.slots[index];
            if slot.state == State::Queued {
                // Not submitted: the task sends the bytes itself. Submitted but never seen to
                // complete: whether the bytes left is unknown, and resending could repeat
                // them, so the send fails.
                slot.state = State::Done(if submitted { -libc::EIO } else { 0 });
            }
            self.wakers.extend(slot.waker.take());
        }
    }
}

/// Bytes owed to one socket, written before anything newer: a send queued in the batch, then
/// whatever it did not take or an earlier write left. Owing nothing, it holds no buffer.
#[derive(Debug, Default)]
pub struct Owed {
    ticket: Option<Ticket>,
    unsent: Vec<u8>,
}

impl Owed {
    /// Owes a send queued with [`queue`] or [`queue_vectored`].
    pub fn queued(&mut self, ticket: Ticket) {
        self.ticket = Some(ticket);
    }

    /// Owes `bytes`, which a write did not take.
    pub fn keep(&mut self, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
    }

    /// Whether a send waits in the batch.
    pub fn is_queued(&self) -> bool {
        self.ticket.is_some()
    }

    /// Waits for the queued send, then writes what is still owed with `write`; Ready(Ok) once
    /// nothing is. A write that takes nothing fails with `WriteZero`.
    pub fn poll_settle(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        if let Some(ticket) = &mut self.ticket {
            let made = ready!(ticket.poll(cx, &mut self.unsent));
            self.ticket = None;
            made?;
        }
        while !self.unsent.is_empty() {
            let n = ready!(write(cx, &self.unsent))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent.drain(..n.min(self.unsent.len()));
        }
        if self.unsent.capacity() > 0 {
            // Rare (the socket's buffer was full): no buffer kept for the next time.
            self.unsent = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

/// A send queued by [`queue`]. Not to be moved to another thread (connection tasks never are:
/// each worker runs a current-thread runtime).
#[derive(Debug)]
pub struct Ticket {
    /// The slot's index + 1: an `Option<Ticket>` takes 4 bytes, which an [`Owed`] finds room
    /// for in its padding.
    slot: NonZeroU32,
}

impl Ticket {
    fn index(&self) -> usize {
        self.slot.get() as usize - 1
    }

    /// Waits for the send to be made. Bytes it did not take (all of them when the socket's
    /// buffer was full, or none at all when batching failed) are appended to `unsent`, for the
    /// caller to send itself. An error is the socket's, as `send(2)` would have reported it.
    pub fn poll(&mut self, cx: &mut Context<'_>, unsent: &mut Vec<u8>) -> Poll<io::Result<()>> {
        BATCH.with(|batch| {
            let mut batch = batch.borrow_mut();
            let Some(slot) = batch
                .as_mut()
                .and_then(|batch| batch.slots.get_mut(self.index()))
            else {
                return Poll::Ready(Err(io::Error::other("send batch gone")));
            };
            match slot.state {
                State::Queued => {
                    if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        slot.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                State::Done(result) if result >= 0 || result == -libc::EAGAIN => {
                    let taken = usize::try_from(result).unwrap_or(0);
                    if let Some(rest) = slot.bytes.get(taken..) {
                        unsent.extend_from_slice(rest);
                    }
                    Poll::Ready(Ok(()))
                }
                State::Done(errno) => Poll::Ready(Err(io::Error::from_raw_os_error(-errno))),
                State::Free => Poll::Ready(Err(io::Error::other("send ticket already used"))),
            }
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // `try_with`: a ticket dropped as the thread ends finds the batch already gone.
        let _ = BATCH.try_with(|batch| {
            let Ok(mut batch) = batch.try_borrow_mut() else {
                return;
            };
            let Some(batch) = batch.as_mut() else {
                return;
            };
            let Some(slot) = batch.slots.get_mut(self.index()) else {
                return;
            };
            if slot.state == State::Queued {
                batch.queued.retain(|&index| index != self.index());
            }
            slot.state = State::Free;
            slot.waker = None;
            if slot.bytes.capacity() > MAX_BYTES {
                slot.bytes = Vec::new();
            }
            batch.free.push(self.index());
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::*;

    /// Runs `test` as a worker does: batching on, a flush each time the runtime parks. Where
    /// the kernel (or a seccomp filter) refuses io_uring, checks instead what a worker then
    /// does: it queues nothing, so every send is made directly.
    fn on_a_worker<F: Future<Output = ()>>(test: F) {
        if let Err(err) = enable() {
            let (ours, _peer) = pair();
            assert!(!enabled());
            assert!(queue(ours.as_raw_fd(), b"direct").is_none());
            eprintln!("no io_uring here ({err}): checked the direct fallback only");
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flush)
            .build()
            .unwrap();
        runtime.block_on(test)
    }

    /// A connected pair of blocking sockets: (ours, the peer).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (ours, peer)
    }

    /// What the peer has to read right now.
    fn readable_now(peer: &TcpStream) -> Vec<u8> {
        peer.set_nonblocking(true).unwrap();
        let mut got = vec![0; 64 * 1024];
        let n = (&*peer).read(&mut got).unwrap_or(0);
        peer.set_nonblocking(false).unwrap();
        got.truncate(n);
        got
    }

    async fn made(mut ticket: Ticket) -> io::Result<Vec<u8>> {
        let mut unsent = Vec::new();
        poll_fn(|cx| ticket.poll(cx, &mut unsent)).await?;
        Ok(unsent)
    }

    #[test]
    fn queued_sends_wait_for_the_worker_to_go_idle_then_all_go_out() {
        on_a_worker(async {
            let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
            let tickets: Vec<_> = pairs
                .iter()
                .enumerate()
                .map(|(i, (ours, _))| queue(ours.as_raw_fd(), format!("request {i}").as_bytes()))
                .map(Option::unwrap)
                .collect();
            for (_, peer) in &pairs {
                assert_eq!(readable_now(peer), b"", "sent before the worker went idle");
            }
            for ticket in tickets {
                assert_eq!(made(ticket).await.unwrap(), b"", "every byte taken");
            }
            for (i, (_, peer)) in pairs.iter().enumerate() {
                let mut got = vec![0; format!("request {i}").len()];
                (&*peer).read_exact(&mut got).unwrap();
                assert_eq!(got, format!("request {i}").as_bytes());
            }
        });
    }

    #[test]
    fn a_full_batch_goes_out_without_waiting_for_idle() {
        on_a_worker(async {
            let pairs: Vec<_> = (0..MAX_QUEUED).map(|_| pair()).collect();
            let tickets: Vec<_> = pairs
                .iter()
                .map(|(ours, _)| queue(ours.as_raw_fd(), b"x").unwrap())
                .collect();
            // No await yet: the runtime has not parked.
            for (_, peer) in &pairs {
                assert_eq!(readable_now(peer), b"x");
            }
            for ticket in tickets {
                assert_eq!(made(ticket).await.unwrap(), b"");
            }
        });
    }

    #[test]
    fn a_dropped_ticket_takes_its_send_out_of_the_batch() {
        on_a_worker(async {
            let (dropped, dropped_peer) = pair();
            let (kept, kept_peer) = pair();
            drop(queue(dropped.as_raw_fd(), b"never").unwrap());
            let ticket = queue(kept.as_raw_fd(), b"sent").unwrap();
            made(ticket).await.unwrap();
            let mut got = [0; 4];
            (&kept_peer).read_exact(&mut got).unwrap();
            assert_eq!(&got, b"sent");
            assert_eq!(readable_now(&dropped_peer), b"");
            // The freed slot serves the next send.
            let ticket = queue(dropped.as_raw_fd(), b"later").unwrap();
            made(ticket).await.unwrap();
            let mut got = [0; 5];
            (&dropped_peer).read_exact(&mut got).unwrap();
            assert_eq!(&got, b"later");
        });
    }

    #[test]
    fn bytes_a_full_socket_cannot_take_come_back() {
        on_a_worker(async {
            let (ours, _peer) = pair();
            ours.set_nonblocking(true).unwrap();
            let chunk = vec![7u8; 64 * 1024];
            while (&ours).write(&chunk).is_ok() {}
            let ticket = queue(ours.as_raw_fd(), b"no room").unwrap();
            assert_eq!(made(ticket).await.unwrap(), b"no room");
        });
    }

    #[test]
    fn a_reset_peer_is_the_sends_error() {
        on_a_worker(async {
            let (ours, peer) = pair();
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer);
            // The reset has arrived once a read reports it.
            let err = (&ours).read(&mut [0; 1]).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET));
            let ticket = queue(ours.as_raw_fd(), b"too late").unwrap();
            let err = made(ticket).await.unwrap_err();
            assert!(
                matches!(
                    err.raw_os_error(),
                    Some(libc::ECONNRESET) | Some(libc::EPIPE)
                ),
                "{err}"
            );
        });
    }

    #[test]
    fn only_a_batching_thread_queues_and_only_small_sends() {
        let (ours, _peer) = pair();
        let fd = ours.as_raw_fd();
        std::thread::spawn(move || {
            assert!(!enabled());
            assert!(queue(fd, b"direct").is_none());
        })
        .join()
        .unwrap();
        if enable().is_err() {
            assert!(!enabled() && queue(fd, b"direct").is_none());
            return;
        }
        assert!(enabled());
        assert!(queue(fd, &vec![0; MAX_BYTES + 1]).is_none());
        assert!(queue(fd, b"").is_none());
        assert!(queue(fd, &vec![0; MAX_BYTES]).is_some());
    }
}
