//! A worker's forwarding engine: TCP tunnels whose bytes move through one io_uring, with no
//! `recv`/`send` system calls and no readiness bookkeeping per message.
//!
//! Why: on the benchmark's TCP request/response scenario the proxy's core is saturated by
//! proxy + server, so what a request costs that core sets the rate. A throwaway forwarder built
//! this way (`bench/uring-forwarder/`) cost 10.0 µs per request there against weir's 10.6 with
//! tokio's readiness and three system calls per request.
//!
//! How: each socket of a tunnel has a multishot receive armed, which takes buffers from a ring
//! shared by the worker's tunnels (`register_buf_ring`); each received buffer is sent to the
//! other socket by a send on the same ring, and goes back to the buffer ring when the send is
//! complete. The ring runs its work only when entered (`DEFER_TASKRUN`), and tells tokio's
//! reactor it has some through an eventfd: one task per worker ([`drive`]) waits on it, then
//! enters the ring, reaps the completions and queues what follows, without waiting.
//!
//! A tunnel's sockets leave tokio's reactor while the engine holds them (a socket still
//! registered wakes the reactor for every segment: 3-4 % of the request rate, measured), and
//! the engine owns them until every operation on them has completed, so a connection task
//! dropped at any moment never leaves an operation for a file descriptor number that has been
//! reused.
//!
//! The connection's task sleeps meanwhile, and wakes when the tunnel has ended: a FIN both
//! ways, a fault (blamed on the side it came from, as the copy path does), a stop it asked for
//! (idle timeout, shutdown), or bulk — a receive that fills a whole buffer — which goes back
//! to the copy and splice paths, built for it.

// Handing the kernel pointers into the engine's buffers, which live as long as the thread.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

use io_uring::types::CancelBuilder;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::end::EndHow;

/// Bytes per buffer. A receive that fills one is bulk, handed back to the copy path.
const BUFFER_SIZE: usize = 16 * 1024;

/// Buffers in the ring (a power of two). Pages are touched only where bytes land, so a worker
/// serving small messages touches the first page of each.
const BUFFER_COUNT: u16 = 512;

/// The buffer group of the ring.
const GROUP: u16 = 0;

/// Buffers queued toward one socket past which its source's receive is cancelled, until they
/// have gone.
const MAX_QUEUED: usize = 4;

/// Submission queue entries.
const RING_ENTRIES: u32 = 1024;

/// Rounds [`drive`] makes in one poll before it lets other tasks run.
const ROUNDS_PER_POLL: usize = 8;

/// What a completion is for (the low bits of its user data).
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;
const OP_CANCEL: u64 = 3;

/// The client's socket of a tunnel (and the direction that reads it).
pub const CLIENT: usize = 0;
/// The server's socket of a tunnel (and the direction that reads it).
pub const SERVER: usize = 1;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides sent their FIN, and each was passed on ([`Ended::first_fin`] says whose
    /// came first).
    Done,
    /// An error on `side`.
    Fault {
        /// [`CLIENT`] or [`SERVER`].
        side: usize,
        /// A reset, or another error.
        how: EndHow,
    },
    /// Stopped as asked ([`Tunnel::stop`]).
    Stopped,
    /// The copy path is to take over, everything received having been passed on: a receive
    /// filled a whole buffer (bulk, which the copy and splice paths are built for), or found
    /// none left (the engine's buffers are all held, by tunnels whose destinations are slow
    /// to take them; this one then does without).
    HandBack,
}

/// One direction of a tunnel, from socket `src` to the other, as it was when the tunnel ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectionState {
    /// Bytes received from `src` (and sent on, unless the tunnel ended on a fault or a stop).
    pub bytes: u64,
    /// `src` sent its FIN.
    pub eof: bool,
    /// The FIN was passed on (or will be by the close: the other direction was done).
    pub shut: bool,
}

/// A tunnel that has ended: its sockets back, and what happened.
#[derive(Debug)]
pub struct Ended {
    /// The client's socket, non-blocking, outside tokio's reactor.
    pub client: TcpStream,
    /// The server's socket, likewise.
    pub server: TcpStream,
    /// How the tunnel ended.
    pub outcome: Outcome,
    /// Client → server, then server → client.
    pub directions: [DirectionState; 2],
    /// The side whose FIN came first, if one came.
    pub first_fin: Option<usize>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Numbers the engines, so that a tunnel finds its own.
static ENGINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets up this thread's engine; [`drive`] must then run on this thread's runtime.
pub fn enable() -> io::Result<()> {
    let engine = Engine::new()?;
    ENGINE.with(|cell| *cell.borrow_mut() = Some(engine));
    Ok(())
}

/// Whether this thread has a working engine.
pub fn enabled() -> bool {
    ENGINE.with(|cell| cell.borrow().as_ref().is_some_and(|engine| !engine.failed))
}

/// Hands `client` and `server` (non-blocking, out of tokio's reactor) to this thread's engine.
/// Without an engine, the sockets come back.
pub fn start(client: TcpStream, server: TcpStream) -> Result<Tunnel, (TcpStream, TcpStream)> {
    ENGINE.with(|cell| match cell.borrow_mut().as_mut() {
        Some(engine) if !engine.failed => Ok(engine.start(client, server)),
        _ => Err((client, server)),
    })
}

/// Runs this thread's engine until the thread ends: enters the ring when the eventfd says
/// there is work, or a tunnel queued some.
pub async fn drive() {
    let Some(eventfd) = ENGINE.with(|cell| {
        cell.borrow()
            .as_ref()
            .and_then(|engine| engine.eventfd.try_clone().ok())
    }) else {
        return;
    };
    // SAFETY: the AsyncFd owns the descriptor (a duplicate of the engine's), which nothing
    // else closes.
    let eventfd = match unsafe { AsyncFd::register(eventfd) } {
        Ok(fd) => fd,
        Err(err) => {
            tracing::warn!(%err, "io_uring engine: cannot watch its eventfd; forwarding copies");
            disable();
            return;
        }
    };
    std::future::poll_fn(|cx| {
        // Clears the eventfd before the rounds: work signalled during them shows next time.
        if let Poll::Ready(Ok(mut ready)) = eventfd.poll_read_ready(cx) {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(eventfd.get_ref(), &mut count);
            ready.clear_ready();
            // Registers the waker again for the next signal.
            let _ = eventfd.poll_read_ready(cx);
        }
        let busy = ENGINE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(engine) => {
                if !engine
                    .driver
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    engine.driver = Some(cx.waker().clone());
                }
                engine.rounds()
            }
            None => Err(()),
        });
        match busy {
            Err(()) => {
                disable();
                Poll::Ready(())
            }
            Ok(true) => {
                // More to do: after the other tasks.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(false) => Poll::Pending,
        }
    })
    .await;
}

/// After a ring failure: every tunnel ends with an error (its task closes its sockets), and
/// new connections take the copy path.
fn disable() {
    let wakers = ENGINE.with(|cell| {
        cell.borrow_mut()
            .as_mut()
            .map(Engine::fail)
            .unwrap_or_default()
    });
    for waker in wakers {
        waker.wake();
    }
}

/// A tunnel, as its connection task holds it. Dropping it stops the tunnel; the engine closes
/// the sockets once nothing is in flight on them.
///
/// Like the connection tasks that hold them, a tunnel stays on its worker's thread; one
/// that did not would find no tunnel of its engine there (see [`Tunnel::poll_end`]).
#[derive(Debug)]
pub struct Tunnel {
    engine: u64,
    slot: u32,
    generation: u32,
}

impl Tunnel {
    /// Ready once the tunnel has ended.
    pub fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Ended>> {
        ENGINE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let Some(engine) = cell.as_mut() else {
                return Poll::Ready(Err(io::Error::other("io_uring engine gone")));
            };
            let Some(state) = engine.tunnel_of(self) else {
                return Poll::Ready(Err(io::Error::other("tunnel gone")));
            };
            if !state.finished() {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(
                engine
                    .take(self.slot)
                    .ok_or_else(|| io::Error::other("tunnel ended without an outcome")),
            )
        })
    }

    /// When a byte last moved, to within one round of the engine.
    pub fn last_activity(&self) -> Option<Instant> {
        ENGINE.with(|cell| {
            cell.borrow_mut()
                .as_mut()
                .and_then(|engine| engine.tunnel_of(self))
                .map(|state| state.last_activity)
        })
    }

    /// Ends the tunnel where it is: nothing more is received, sends under way complete.
    pub fn stop(&mut self) {
        ENGINE.with(|cell| {
            if let Some(engine) = cell.borrow_mut().as_mut()
                && engine.tunnel_of(self).is_some()
            {
                engine.stop(self.slot);
            }
        });
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        ENGINE.with(|cell| {
            if let Ok(mut cell) = cell.try_borrow_mut()
                && let Some(engine) = cell.as_mut()
                && engine.tunnel_of(self).is_some()
            {
                engine.abandon(self.slot, self.generation);
            }
        });
    }
}

/// A buffer's bytes on their way to a socket.
#[derive(Debug, Clone, Copy)]
struct Queued {
    bid: u16,
    /// Bytes of it already sent.
    sent: u32,
    len: u32,
}

#[derive(Debug, Default)]
struct Direction {
    /// The multishot receive on the source is armed (its last completion said more follow).
    receiving: bool,
    /// Its receive was cancelled for backpressure, to be armed again once `queue` is empty.
    paused: bool,
    /// Buffers received and not yet sent; the first one's send may be in flight.
    queue: VecDeque<Queued>,
    /// A send of `queue`'s first buffer is in flight.
    sending: bool,
    state: DirectionState,
}

#[derive(Debug)]
struct State {
    generation: u32,
    fds: [OwnedFd; 2],
    /// Client → server (reads `CLIENT`), server → client (reads `SERVER`).
    directions: [Direction; 2],
    /// Set once the tunnel is ending: nothing more is received.
    outcome: Option<Outcome>,
    first_fin: Option<usize>,
    /// Cancellations in flight.
    cancels: u32,
    waker: Option<Waker>,
    /// When a byte last moved (as of the engine's round).
    last_activity: Instant,
    /// Its task dropped the tunnel: the engine closes the sockets when it has finished.
    abandoned: bool,
}

impl State {
    fn in_flight(&self) -> bool {
        self.cancels > 0 || self.directions.iter().any(|d| d.receiving || d.sending)
    }

    fn finished(&self) -> bool {
        self.outcome.is_some() && !self.in_flight()
    }
}

struct Engine {
    id: u64,
    ring: IoUring,
    buffers: Buffers,
    eventfd: OwnedFd,
    slots: Vec<Option<State>>,
    free: Vec<u32>,
    next_generation: u32,
    completions: Vec<(u64, i32, u32)>,
    wakers: Vec<Waker>,
    /// The [`drive`] task, woken when a tunnel queues work.
    driver: Option<Waker>,
    /// When the current round began: a tunnel's last activity, read once per round.
    now: Instant,
    /// A submission failed: no operation is queued any more, and [`drive`] stops.
    failed: bool,
}

impl Engine {
    /// Wakes [`drive`] to submit what was just queued.
    fn kick(&mut self) {
        if let Some(driver) = &self.driver {
            driver.wake_by_ref();
        }
    }

    fn new() -> io::Result<Engine> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            // Flags deferred work left after an enter: the kernel runs a few dozen items per
            // call and signals the eventfd only when the list was empty.
            .setup_taskrun_flag()
            .build(RING_ENTRIES)?;
        let buffers = Buffers::register(&ring)?;
        // SAFETY: eventfd(2) returns a new descriptor (or -1), which the OwnedFd then owns.
        let eventfd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Engine {
            id: ENGINES.fetch_add(1, Ordering::Relaxed),
            ring,
            buffers,
            eventfd,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            completions: Vec::with_capacity(RING_ENTRIES as usize),
            wakers: Vec::new(),
            driver: None,
            now: Instant::now(),
            failed: false,
        })
    }

    /// The tunnel `handle` stands for, if it is this engine's and still here.
    fn tunnel_of(&mut self, handle: &Tunnel) -> Option<&mut State> {
        if handle.engine != self.id {
            return None;
        }
        self.tunnel(handle.slot, handle.generation)
    }

    fn tunnel(&mut self, slot: u32, generation: u32) -> Option<&mut State> {
        self.slots
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|state| state.generation == generation)
    }

    fn start(&mut self, client: TcpStream, server: TcpStream) -> Tunnel {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        let generation = self.next_generation;
        self.slots[slot as usize] = Some(State {
            generation,
            fds: [OwnedFd::from(client), OwnedFd::from(server)],
            directions: Default::default(),
            outcome: None,
            first_fin: None,
            cancels: 0,
            waker: None,
            last_activity: Instant::now(),
            abandoned: false,
        });
        for side in [CLIENT, SERVER] {
            self.arm_receive(slot, side);
        }
        self.kick();
        Tunnel {
            engine: self.id,
            slot,
            generation,
        }
    }

    /// Takes a finished tunnel's sockets and outcome out of its slot.
    fn take(&mut self, slot: u32) -> Option<Ended> {
        let state = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        let [client, server] = state.fds;
        Some(Ended {
            client: TcpStream::from(client),
            server: TcpStream::from(server),
            outcome: state.outcome?,
            directions: [state.directions[0].state, state.directions[1].state],
            first_fin: state.first_fin,
        })
    }

    /// Ends a tunnel its task asked to stop (checked to be this engine's).
    fn stop(&mut self, slot: u32) {
        self.end(slot, Outcome::Stopped);
        self.kick();
    }

    fn abandon(&mut self, slot: u32, generation: u32) {
        let Some(state) = self.tunnel(slot, generation) else {
            return;
        };
        state.abandoned = true;
        state.waker = None;
        if state.outcome.is_none() {
            self.end(slot, Outcome::Stopped);
        }
        self.reap_if_abandoned(slot);
        self.kick();
    }

    /// A finished, abandoned tunnel: its sockets are closed, its slot freed.
    fn reap_if_abandoned(&mut self, slot: u32) {
        let Some(state) = self.slots[slot as usize].as_ref() else {
            return;
        };
        if state.abandoned
            && state.finished()
            && let Some(mut state) = self.slots[slot as usize].take()
        {
            for direction in &mut state.directions {
                for queued in direction.queue.drain(..) {
                    self.buffers.give_back(queued.bid);
                }
            }
            self.free.push(slot);
            // The sockets close here.
        }
    }

    /// The tunnel is ending with `outcome` (unless it already is): nothing more is received.
    /// A hand-back keeps what is queued, to be sent before the copy path takes over; every other end
    /// drops it.
    fn end(&mut self, slot: u32, outcome: Outcome) {
        let Some(state) = self.slots[slot as usize].as_mut() else {
            return;
        };
        if state.outcome.is_some() {
            return;
        }
        state.outcome = Some(outcome);
        let generation = state.generation;
        let mut cancels = [false; 2];
        for side in [CLIENT, SERVER] {
            let direction = &mut state.directions[side];
            cancels[side] = direction.receiving;
            if outcome != Outcome::HandBack {
                // Queued bytes are dropped; a send in flight completes first.
                let keep = usize::from(direction.sending);
                for queued in direction.queue.drain(keep..) {
                    self.buffers.give_back(queued.bid);
                }
            }
            direction.paused = false;
        }
        for side in [CLIENT, SERVER] {
            if cancels[side] {
                self.cancel_receive(slot, generation, side);
            }
        }
        self.wake_if_finished(slot);
    }

    fn cancel_receive(&mut self, slot: u32, generation: u32, side: usize) {
        if let Some(state) = self.slots[slot as usize].as_mut() {
            state.cancels += 1;
        }
        let target = user_data(OP_RECV, slot, generation, side, 0);
        let entry = opcode::AsyncCancel2::new(CancelBuilder::user_data(target))
            .build()
            .user_data(user_data(OP_CANCEL, slot, generation, side, 0));
        self.push(entry);
    }

    fn arm_receive(&mut self, slot: u32, side: usize) {
        let Some(state) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let fd = state.fds[side].as_raw_fd();
        state.directions[side].receiving = true;
        let entry = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(user_data(OP_RECV, slot, state.generation, side, 0));
        self.push(entry);
    }

    /// Sends the first queued buffer toward the other socket of `src`'s direction.
    fn send_next(&mut self, slot: u32, src: usize) {
        let Some(state) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let direction = &mut state.directions[src];
        if direction.sending {
            return;
        }
        let Some(&queued) = direction.queue.front() else {
            return;
        };
        let fd = state.fds[1 - src].as_raw_fd();
        direction.sending = true;
        let bytes = self.buffers.bytes(queued.bid, queued.sent, queued.len);
        let entry = opcode::Send::new(types::Fd(fd), bytes, queued.len - queued.sent)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OP_SEND, slot, state.generation, src, queued.bid));
        self.push(entry);
    }

    fn push(&mut self, entry: squeue::Entry) {
        if self.failed {
            return;
        }
        loop {
            // SAFETY: the buffers a send points into are the engine's, never freed while the
            // thread lives, and a buffer goes back to the ring only after its send completed;
            // the fds are the tunnels' own, closed only once nothing is in flight on them.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::warn!(%err, "io_uring engine: submission failed; forwarding copies from now on");
                    // The entry is lost: every tunnel ends (see `rounds`).
                    self.failed = true;
                    self.kick();
                    return;
                }
            }
        }
    }

    /// Enters the ring and handles what completed, up to [`ROUNDS_PER_POLL`] times while
    /// there is something; whether there may be more.
    fn rounds(&mut self) -> Result<bool, ()> {
        for _ in 0..ROUNDS_PER_POLL {
            if self.failed {
                return Err(());
            }
            let queued = self.ring.submission().len() as u32;
            // SAFETY: no signal mask is passed.
            let entered = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
            };
            match entered {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {}
                Err(err) => {
                    tracing::warn!(%err, "io_uring engine failed; forwarding copies from now on");
                    return Err(());
                }
            }
            self.now = Instant::now();
            self.completions.clear();
            self.completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if self.completions.is_empty() {
                self.flush_wakers();
                // Work the kernel left for the next enter: after the other tasks.
                return Ok(self.ring.submission().taskrun());
            }
            for i in 0..self.completions.len() {
                let (data, result, flags) = self.completions[i];
                self.complete(data, result, flags);
            }
            self.flush_wakers();
        }
        Ok(true)
    }

    fn flush_wakers(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (op, slot, generation, side, bid) = parse_user_data(data);
        let live = self.tunnel(slot, generation).is_some();
        if !live {
            // A buffer a stale receive took goes back.
            if op == OP_RECV
                && let Some(bid) = cqueue::buffer_select(flags)
            {
                self.buffers.give_back(bid);
            }
            return;
        }
        match op {
            OP_RECV => self.received(slot, side, result, flags),
            OP_SEND => self.sent(slot, side, bid, result),
            OP_CANCEL => {
                if let Some(state) = self.slots[slot as usize].as_mut() {
                    state.cancels = state.cancels.saturating_sub(1);
                }
            }
            _ => {}
        }
        self.wake_if_finished(slot);
        self.reap_if_abandoned(slot);
    }

    fn state(&mut self, slot: u32) -> Option<&mut State> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn received(&mut self, slot: u32, src: usize, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let Some(state) = self.state(slot) else {
            return;
        };
        if !more {
            state.directions[src].receiving = false;
        }
        let outcome = state.outcome;
        if result > 0 {
            let Some(bid) = bid else {
                // A receive that read always takes a buffer; without one, nothing to pass on.
                return;
            };
            if outcome.is_some_and(|o| o != Outcome::HandBack) {
                // Ending: what arrives now is not passed on.
                self.buffers.give_back(bid);
                return;
            }
            let now = self.now;
            let Some(state) = self.state(slot) else {
                return;
            };
            state.last_activity = now;
            let direction = &mut state.directions[src];
            direction.queue.push_back(Queued {
                bid,
                sent: 0,
                len: result as u32,
            });
            direction.state.bytes += result as u64;
            let queued = direction.queue.len();
            let receiving = direction.receiving;
            self.send_next(slot, src);
            if result as usize >= BUFFER_SIZE {
                self.end(slot, Outcome::HandBack);
            } else if outcome.is_some() {
                // Handing back: the copy path takes over once this has gone.
            } else if queued >= MAX_QUEUED && receiving {
                if let Some(state) = self.state(slot) {
                    state.directions[src].paused = true;
                    let generation = state.generation;
                    self.cancel_receive(slot, generation, src);
                }
            } else if !more {
                self.rearm(slot, src);
            }
            return;
        }
        if let Some(bid) = bid {
            self.buffers.give_back(bid);
        }
        match result {
            0 => {
                if let Some(state) = self.state(slot) {
                    state.directions[src].state.eof = true;
                    state.first_fin.get_or_insert(src);
                }
                self.pass_fin(slot, src);
            }
            err if err == -libc::ENOBUFS => self.end(slot, Outcome::HandBack),
            err if err == -libc::ECANCELED => {
                // Cancelled for an end (nothing more to do), or for backpressure: armed again
                // once the queue has gone (or now, if it has).
                let Some(state) = self.state(slot) else {
                    return;
                };
                let direction = &mut state.directions[src];
                if direction.paused && !direction.sending && direction.queue.is_empty() {
                    direction.paused = false;
                    self.rearm(slot, src);
                }
            }
            err => self.end(
                slot,
                Outcome::Fault {
                    side: src,
                    how: how(err),
                },
            ),
        }
    }

    /// Arms `src`'s receive again unless the tunnel is ending or the direction is done.
    fn rearm(&mut self, slot: u32, src: usize) {
        let Some(state) = self.slots[slot as usize].as_ref() else {
            return;
        };
        let direction = &state.directions[src];
        if state.outcome.is_none()
            && !direction.receiving
            && !direction.state.eof
            && !direction.paused
        {
            self.arm_receive(slot, src);
        }
    }

    fn sent(&mut self, slot: u32, src: usize, bid: u16, result: i32) {
        let now = self.now;
        let Some(state) = self.state(slot) else {
            return;
        };
        if result > 0 {
            state.last_activity = now;
        }
        let direction = &mut state.directions[src];
        direction.sending = false;
        let Some(front) = direction.queue.front_mut() else {
            return;
        };
        debug_assert_eq!(front.bid, bid, "sends complete in queue order");
        let ending = state.outcome.is_some_and(|o| o != Outcome::HandBack);
        if result > 0 && !ending {
            front.sent += result as u32;
            if front.sent < front.len {
                // The rest goes next.
                self.send_next(slot, src);
                return;
            }
        }
        let done = front.bid;
        direction.queue.pop_front();
        let drained = direction.queue.is_empty();
        self.buffers.give_back(done);
        if result <= 0 {
            let how = if result == 0 {
                EndHow::Error
            } else {
                how(result)
            };
            self.end(slot, Outcome::Fault { side: 1 - src, how });
            return;
        }
        if !drained {
            self.send_next(slot, src);
            return;
        }
        let Some(state) = self.state(slot) else {
            return;
        };
        let direction = &mut state.directions[src];
        if direction.state.eof {
            self.pass_fin(slot, src);
        } else if direction.paused && !direction.receiving {
            direction.paused = false;
            self.rearm(slot, src);
        }
    }

    /// `src` sent its FIN: once what it sent before has gone, the FIN goes on (a
    /// `shutdown(Write)` of the destination, or the close that follows at once when the
    /// other direction is done), and when both directions are, the tunnel is.
    fn pass_fin(&mut self, slot: u32, src: usize) {
        let Some(state) = self.slots[slot as usize].as_mut() else {
            return;
        };
        if state.outcome.is_some_and(|o| o != Outcome::HandBack) {
            return;
        }
        let other_done = state.directions[1 - src].state.shut;
        let direction = &state.directions[src];
        if direction.state.shut || direction.sending || !direction.queue.is_empty() {
            return;
        }
        if !other_done
            && let Err(err) =
                rustix::net::shutdown(&state.fds[1 - src], rustix::net::Shutdown::Write)
        {
            let how = how_err(&err.into());
            self.end(slot, Outcome::Fault { side: 1 - src, how });
            return;
        }
        state.directions[src].state.shut = true;
        if other_done {
            self.end(slot, Outcome::Done);
        }
    }

    fn wake_if_finished(&mut self, slot: u32) {
        if let Some(state) = self.slots[slot as usize].as_mut()
            && state.finished()
            && let Some(waker) = state.waker.take()
        {
            self.wakers.push(waker);
        }
    }

    /// The ring failed: every tunnel ends with an error, as if nothing were in flight (the
    /// kernel's references keep a closed socket alive for an operation it still holds, and
    /// nothing new is queued), and the tasks to wake are returned.
    fn fail(&mut self) -> Vec<Waker> {
        self.failed = true;
        let mut wakers = Vec::new();
        for state in self.slots.iter_mut().flatten() {
            state.outcome.get_or_insert(Outcome::Fault {
                side: CLIENT,
                how: EndHow::Error,
            });
            state.cancels = 0;
            for direction in &mut state.directions {
                direction.receiving = false;
                direction.sending = false;
            }
            wakers.extend(state.waker.take());
        }
        // Abandoned tunnels close their sockets now.
        for slot in 0..self.slots.len() as u32 {
            self.reap_if_abandoned(slot);
        }
        wakers
    }
}

/// `io_uring_enter` flag: run deferred work and reap completions.
const ENTER_GETEVENTS: u32 = 1;

/// User data: op (4 bits), side (1 bit), buffer id (16 bits), slot (24 bits), generation
/// (19 bits). A generation tells a completion for a slot's earlier tunnel from its current one.
const GENERATION_MASK: u32 = (1 << 19) - 1;

fn user_data(op: u64, slot: u32, generation: u32, side: usize, bid: u16) -> u64 {
    op | (side as u64) << 4
        | u64::from(bid) << 5
        | u64::from(slot & 0xff_ffff) << 21
        | u64::from(generation & GENERATION_MASK) << 45
}

fn parse_user_data(data: u64) -> (u64, u32, u32, usize, u16) {
    (
        data & 0xf,
        (data >> 21 & 0xff_ffff) as u32,
        (data >> 45) as u32 & GENERATION_MASK,
        (data >> 4 & 1) as usize,
        (data >> 5 & 0xffff) as u16,
    )
}

/// A failed receive or send (`-errno`): a reset, or another error.
fn how(result: i32) -> EndHow {
    how_err(&io::Error::from_raw_os_error(-result))
}

fn how_err(err: &io::Error) -> EndHow {
    if crate::net::is_reset(err) {
        EndHow::Rst
    } else {
        EndHow::Error
    }
}

/// The provided buffers: [`BUFFER_COUNT`] buffers of [`BUFFER_SIZE`] bytes, and the ring
/// through which the kernel takes them.
struct Buffers {
    /// Never freed: the kernel may hold a receive into it until the ring is gone, which
    /// happens only as the thread ends.
    memory: &'static mut [u8],
    ring: *mut u8,
    tail: u16,
}

impl Buffers {
    fn register(uring: &IoUring) -> io::Result<Buffers> {
        let ring_bytes = BUFFER_COUNT as usize * 16;
        // SAFETY: a fresh anonymous mapping, page-aligned as the kernel requires; it is never
        // unmapped (the kernel may use it as long as the ring exists).
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping holds BUFFER_COUNT entries and outlives the ring.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, BUFFER_COUNT, GROUP, 0)?;
        }
        let mut buffers = Buffers {
            memory: Box::leak(vec![0; BUFFER_SIZE * BUFFER_COUNT as usize].into_boxed_slice()),
            ring: ring.cast(),
            tail: 0,
        };
        for bid in 0..BUFFER_COUNT {
            buffers.give_back(bid);
        }
        Ok(buffers)
    }

    /// A pointer to buffer `bid`'s bytes from `from` to `to`.
    fn bytes(&mut self, bid: u16, from: u32, to: u32) -> *const u8 {
        let start = bid as usize * BUFFER_SIZE;
        self.memory[start + from as usize..start + to as usize].as_ptr()
    }

    /// Puts buffer `bid` back in the ring.
    fn give_back(&mut self, bid: u16) {
        let addr = self.memory[bid as usize * BUFFER_SIZE..].as_ptr() as u64;
        // SAFETY: entry `tail % BUFFER_COUNT` lies inside the mapping; an io_uring_buf is
        // {addr: u64, len: u32, bid: u16, resv: u16}, and entry 0's `resv` is the tail, which
        // these writes leave alone.
        unsafe {
            let entry = self
                .ring
                .add((self.tail & (BUFFER_COUNT - 1)) as usize * 16);
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(BUFFER_SIZE as u32);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the ring's tail is entry 0's `resv` field, 2-byte aligned; the kernel reads
        // the entries up to it once it sees the store.
        let tail = unsafe { &*self.ring.add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tunnels", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_keeps_every_field_at_its_extremes() {
        for (op, slot, generation, side, bid) in [
            (OP_RECV, 0, 0, CLIENT, 0),
            (OP_SEND, 0xff_ffff, GENERATION_MASK, SERVER, u16::MAX),
            (OP_CANCEL, 12_345, 77, SERVER, BUFFER_COUNT - 1),
        ] {
            let data = user_data(op, slot, generation, side, bid);
            assert_eq!(parse_user_data(data), (op, slot, generation, side, bid));
        }
    }

    #[test]
    fn failed_sends_and_receives_are_resets_only_when_the_peer_reset() {
        assert_eq!(how(-libc::ECONNRESET), EndHow::Rst);
        assert_eq!(how(-libc::EPIPE), EndHow::Rst);
        assert_eq!(how(-libc::ETIMEDOUT), EndHow::Error);
    }
}
