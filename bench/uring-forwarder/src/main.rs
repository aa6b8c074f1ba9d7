//! A minimal TCP forwarder driven by one io_uring, written to measure what a completion-based
//! engine would cost per request on `tcp_rr` — not a part of weir (see README.md).
//!
//! Every socket has a multishot receive armed, which takes buffers from a ring shared by all
//! connections; each received buffer is sent on to the other socket by a send in the same
//! ring, and goes back to the buffer ring when that send completes. With `DEFER_TASKRUN` the
//! receives run when the loop enters the kernel, so one `io_uring_enter` per round does every
//! receive, every send and every wait.
//!
//! Left out, as the measurement does not need them: half-close (the first EOF or error closes
//! both sockets), backpressure (a direction may have any number of sends in flight), timeouts.

use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// Bytes per buffer, and buffers in the ring (a power of two).
const BUF: usize = 4096;
const NBUF: u16 = 2048;
const GROUP: u16 = 7;

/// `io_uring_enter` flag: run deferred work and reap completions.
const ENTER_GETEVENTS: u32 = 1;

/// What a completion is for, in the low byte of its user data.
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;

fn user_data(op: u64, conn: usize, side: usize, bid: u16) -> u64 {
    op | (side as u64) << 8 | u64::from(bid) << 16 | (conn as u64) << 32
}

/// Provided buffers: `NBUF` buffers of `BUF` bytes and the ring that hands them to the kernel.
struct Buffers {
    memory: Vec<u8>,
    ring: *mut u8,
    tail: u16,
}

impl Buffers {
    fn register(uring: &IoUring) -> Buffers {
        // SAFETY: a fresh anonymous mapping, page-aligned as the kernel requires, never unmapped.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                NBUF as usize * 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ring, libc::MAP_FAILED, "mmap");
        // SAFETY: the mapping holds NBUF entries and outlives the ring.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, NBUF, GROUP, 0)
                .expect("register_buf_ring");
        }
        let mut buffers = Buffers {
            memory: vec![0; BUF * NBUF as usize],
            ring: ring.cast(),
            tail: 0,
        };
        for bid in 0..NBUF {
            buffers.give_back(bid);
        }
        buffers.publish();
        buffers
    }

    fn at(&mut self, bid: u16, offset: usize) -> *mut u8 {
        self.memory[bid as usize * BUF + offset..].as_mut_ptr()
    }

    /// Puts buffer `bid` back in the ring; the kernel sees it at the next [`Buffers::publish`].
    fn give_back(&mut self, bid: u16) {
        let addr = self.at(bid, 0) as u64;
        // SAFETY: entry `tail & (NBUF - 1)` is inside the mapping; an io_uring_buf is
        // {addr: u64, len: u32, bid: u16, resv: u16}.
        unsafe {
            let entry = self.ring.add((self.tail & (NBUF - 1)) as usize * 16);
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(BUF as u32);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the ring's tail is the `resv` field of its first entry.
        let tail = unsafe { &*self.ring.add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

fn push(uring: &mut IoUring, entry: squeue::Entry) {
    // SAFETY: every buffer an entry points at lives in `Buffers`, which outlives the ring.
    while unsafe { uring.submission().push(&entry) }.is_err() {
        uring.submit().expect("submit");
    }
}

fn recv(fd: RawFd, conn: usize, side: usize) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP)
        .build()
        .user_data(user_data(RECV, conn, side, 0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!(
            "usage: uring-forwarder LISTEN_ADDR SERVER_ADDR...  (UPROTO_EPOLL=1: wait in epoll)"
        );
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let servers = &args[2..];
    let mut uring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(1024)
        .expect("io_uring");
    let mut buffers = Buffers::register(&uring);
    // Bytes each buffer holds, and how many of them are sent.
    let mut held = vec![0u32; NBUF as usize];
    let mut sent = vec![0u32; NBUF as usize];
    let mut conns: Vec<[RawFd; 2]> = Vec::new();
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(user_data(ACCEPT, 0, 0, 0));
    push(&mut uring, accept.clone());

    // UPROTO_EPOLL: wait in epoll for an eventfd the ring signals, as a ring driven from
    // tokio's reactor would; otherwise wait in io_uring_enter itself.
    let via_epoll = std::env::var_os("UPROTO_EPOLL").is_some();
    // SAFETY: plain fd-creating calls; the fds live as long as the process.
    let (eventfd, epoll) = unsafe {
        let eventfd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
        let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, eventfd, &mut event);
        (eventfd, epoll)
    };
    if via_epoll {
        uring
            .submitter()
            .register_eventfd(eventfd)
            .expect("eventfd");
    }

    let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    loop {
        if via_epoll {
            let queued = uring.submission().len() as u32;
            // SAFETY: no signal mask passed.
            unsafe {
                uring
                    .submitter()
                    .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
                    .expect("enter");
            }
            if uring.completion().is_empty() {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
                let mut count = 0u64;
                // SAFETY: buffers sized as passed.
                unsafe {
                    libc::epoll_wait(epoll, events.as_mut_ptr(), 4, -1);
                    libc::read(eventfd, (&raw mut count).cast(), 8);
                }
                continue;
            }
        } else {
            uring.submit_and_wait(1).expect("submit_and_wait");
        }
        completions.clear();
        completions.extend(
            uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, res, flags) in &completions {
            let side = (data >> 8 & 0xff) as usize;
            let bid = (data >> 16 & 0xffff) as u16;
            let conn = (data >> 32) as usize;
            match data & 0xff {
                ACCEPT => {
                    if res >= 0 {
                        let server = TcpStream::connect(&servers[conns.len() % servers.len()])
                            .expect("connect");
                        server.set_nodelay(true).expect("nodelay");
                        let one: libc::c_int = 1;
                        // SAFETY: `res` is the accepted socket.
                        unsafe {
                            libc::setsockopt(
                                res,
                                libc::IPPROTO_TCP,
                                libc::TCP_NODELAY,
                                (&raw const one).cast(),
                                4,
                            );
                        }
                        let fds = [res, server.into_raw_fd()];
                        push(&mut uring, recv(fds[0], conns.len(), 0));
                        push(&mut uring, recv(fds[1], conns.len(), 1));
                        conns.push(fds);
                    }
                    if !cqueue::more(flags) {
                        push(&mut uring, accept.clone());
                    }
                }
                RECV => {
                    let fds = conns[conn];
                    if fds[0] < 0 {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            buffers.give_back(bid);
                        }
                        continue;
                    }
                    if res == -libc::ENOBUFS {
                        push(&mut uring, recv(fds[side], conn, side));
                        continue;
                    }
                    if res <= 0 {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            buffers.give_back(bid);
                        }
                        // SAFETY: both fds are this connection's, closed once.
                        unsafe {
                            libc::close(fds[0]);
                            libc::close(fds[1]);
                        }
                        conns[conn] = [-1, -1];
                        continue;
                    }
                    let bid = cqueue::buffer_select(flags).expect("a receive takes a buffer");
                    (held[bid as usize], sent[bid as usize]) = (res as u32, 0);
                    let send =
                        opcode::Send::new(types::Fd(fds[1 - side]), buffers.at(bid, 0), res as u32)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(user_data(SEND, conn, side, bid));
                    push(&mut uring, send);
                    if !cqueue::more(flags) {
                        push(&mut uring, recv(fds[side], conn, side));
                    }
                }
                SEND => {
                    let b = bid as usize;
                    let fds = conns[conn];
                    if res > 0 && fds[0] >= 0 && sent[b] + (res as u32) < held[b] {
                        // Short send: the rest goes next.
                        sent[b] += res as u32;
                        let send = opcode::Send::new(
                            types::Fd(fds[1 - side]),
                            buffers.at(bid, sent[b] as usize),
                            held[b] - sent[b],
                        )
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(data);
                        push(&mut uring, send);
                    } else {
                        buffers.give_back(bid);
                    }
                }
                _ => {}
            }
        }
        buffers.publish();
    }
}
