//! Forwarding bytes both ways between a client and a server, and telling how it ended.
//!
//! One task drives both directions. Each moves its bytes by copy through user space, or, once
//! it proves to be bulk TCP, through a kernel pipe with splice(2) (see `direction.rs`). Two
//! plain TCP sockets of a `tcp` listener start in the worker's io_uring engine instead
//! ([`forward_tcp`], `net::ring`), which moves small messages with no system call each and
//! hands bulk back to those paths; the rules below hold on every path. A FIN
//! from one side becomes `shutdown(Write)` toward the other while the opposite direction keeps
//! flowing (half-close mirrored); when the opposite direction is already done, the close that
//! follows at once carries the FIN instead, one syscall fewer. A reset from one side is passed
//! on as a reset to the other when `propagate_reset` is set. No byte in either direction for
//! `idle_timeout` — or the shutdown grace running out — makes weir close both sides itself,
//! with FIN unless configured otherwise. The first abnormal event (reset, error, timeout,
//! shutdown) is what the end record names; when there is none, the side that sent the first
//! FIN ended the connection.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weir_config::CloseMode;

use super::direction::{Fault, Half, Side};
use crate::end::{End, EndHow, EndPhase};
use crate::net::close::Endpoint;
use crate::net::ring::{self, DirectionState};
use tokio::net::TcpStream;

/// How long weir waits for a peer's FIN after sending its own when it closes a connection.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Forwarding settings, from the listener.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// No byte either way for this long ends the connection.
    pub idle_timeout: Duration,
    /// How weir closes on idle timeout or shutdown.
    pub idle_close: CloseMode,
    /// Pass a reset on to the other side.
    pub propagate_reset: bool,
    /// Splice bulk transfers between plain TCP sockets (see `direction.rs`); endpoints that
    /// are not plain sockets are copied whatever this says.
    pub splice: bool,
}

/// What forwarding did, and what is left to close.
pub struct Forwarded<C, S> {
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes read from the server.
    pub bytes_out: u64,
    /// Of `bytes_in`, those moved through a kernel pipe with splice(2) rather than copied
    /// through user space.
    pub spliced_in: u64,
    /// Of `bytes_out`, those moved through a kernel pipe.
    pub spliced_out: u64,
    /// How the connection ended.
    pub end: End,
    /// When it ended (before any closing work).
    pub ended_at: Instant,
    /// Sockets still to close, and how.
    pub closing: Closing<C, S>,
}

/// Closing work left after the end was decided. Run it after logging, so the record's
/// duration is the connection's and not the close's.
pub struct Closing<C, S> {
    /// `None`: closed already (see [`forward_tcp`]).
    client: Option<(C, CloseStyle)>,
    server: Option<(S, CloseStyle)>,
}

/// How one socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseStyle {
    /// Nothing left to say: both directions are done (or the socket is already dead).
    Drop,
    /// FIN, drain, close.
    Graceful,
    /// RST.
    Reset,
}

impl<C: Endpoint, S: Endpoint> Closing<C, S> {
    /// Closes both sides as decided, concurrently.
    pub async fn run(self) {
        let graceful = |side: Option<CloseStyle>| side == Some(CloseStyle::Graceful);
        if graceful(self.client.as_ref().map(|c| c.1))
            || graceful(self.server.as_ref().map(|s| s.1))
        {
            // Waiting for a peer's FIN takes timers: on the heap, only while it runs, so that
            // they take no room in every connection's future.
            Box::pin(async {
                tokio::join!(close_as(self.client), close_as(self.server));
            })
            .await;
        } else {
            // Both sides ended, or one is reset: nothing to wait for.
            close_now(self.client);
            close_now(self.server);
        }
    }
}

/// Closes a socket at once: reset, or dropped (not reached for a graceful close, which waits
/// in [`close_as`]).
fn close_now<E: Endpoint>(side: Option<(E, CloseStyle)>) {
    let Some((stream, style)) = side else {
        return;
    };
    match style {
        CloseStyle::Reset => stream.close_with_reset(),
        CloseStyle::Drop | CloseStyle::Graceful => drop(stream),
    }
}

async fn close_as<E: Endpoint>(side: Option<(E, CloseStyle)>) {
    let Some((stream, style)) = side else {
        return;
    };
    match style {
        CloseStyle::Drop => drop(stream),
        CloseStyle::Reset => stream.close_with_reset(),
        CloseStyle::Graceful => {
            stream.close_gracefully(CLOSE_LINGER).await;
        }
    }
}

/// What stopped the copy loop.
enum Stop {
    Done,
    Fault(Fault),
    Idle,
    Shutdown,
}

/// Forwards between `client` and `server` until both directions are done or something ends
/// the connection (`shutdown`, ready when the shutdown grace is over, among them). Closing is
/// left to the caller (see [`Forwarded::closing`]).
///
/// A connection spends its life in this future, so it is built to stay small: not an
/// `async fn` (which would keep `client` and `server` twice, as arguments and as locals), and
/// the state the poll loop works on in one place it borrows.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
pub fn forward<C: Endpoint, S: Endpoint>(
    client: C,
    server: S,
    config: &ForwardConfig,
    shutdown: impl Future<Output = ()> + Unpin,
) -> impl Future<Output = Forwarded<C, S>> {
    forward_from(client, server, config, shutdown, Resume::default())
}

/// Where forwarding starts from: nothing moved yet, or where the io_uring engine left it.
#[derive(Debug, Default)]
struct Resume {
    up: DirectionState,
    down: DirectionState,
    first_fin: Option<Side>,
}

#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
fn forward_from<C: Endpoint, S: Endpoint>(
    client: C,
    server: S,
    config: &ForwardConfig,
    shutdown: impl Future<Output = ()> + Unpin,
    resume: Resume,
) -> impl Future<Output = Forwarded<C, S>> {
    let may_splice = config.splice && client.as_tcp().is_some() && server.as_tcp().is_some();
    let mut pump = Pump {
        client,
        server,
        up: Half::resumed(Side::Client, may_splice, resume.up),
        down: Half::resumed(Side::Server, may_splice, resume.down),
        first_fin: resume.first_fin,
        shutdown,
    };
    async move {
        let mut idle = std::pin::pin!(tokio::time::sleep(config.idle_timeout));
        let mut last_activity = Instant::now();
        let stop = poll_fn(|cx| {
            if let Poll::Ready(stop) = pump.poll(cx) {
                return Poll::Ready(stop);
            }
            if pump.moved() {
                last_activity = Instant::now();
            }
            poll_idle(cx, idle.as_mut(), last_activity, config.idle_timeout)
        })
        .await;
        let ended_at = Instant::now();
        let Pump {
            client,
            server,
            up,
            down,
            first_fin,
            ..
        } = pump;
        let counts = Counts {
            bytes_in: up.bytes,
            bytes_out: down.bytes,
            spliced_in: up.spliced,
            spliced_out: down.spliced,
        };
        finish(
            stop,
            first_fin,
            Some((client, server)),
            counts,
            ended_at,
            config,
        )
    }
}

/// Bytes moved each way.
struct Counts {
    bytes_in: u64,
    bytes_out: u64,
    spliced_in: u64,
    spliced_out: u64,
}

/// What forwarding did, from what stopped it: the end to record and how each side closes.
/// `sockets` is `None` when they are closed already (see [`forward_tcp`]).
fn finish<C, S>(
    stop: Stop,
    first_fin: Option<Side>,
    sockets: Option<(C, S)>,
    counts: Counts,
    ended_at: Instant,
    config: &ForwardConfig,
) -> Forwarded<C, S> {
    let (end, client_style, server_style) = match stop {
        Stop::Done => {
            let side = first_fin.unwrap_or(Side::Client);
            let end = End::new(side.end_by(), EndHow::Fin, EndPhase::Tunnel);
            (end, CloseStyle::Drop, CloseStyle::Drop)
        }
        Stop::Fault(fault) => {
            let end = End::new(fault.side.end_by(), fault.how, EndPhase::Tunnel);
            let other = if fault.how == EndHow::Rst && config.propagate_reset {
                CloseStyle::Reset
            } else {
                CloseStyle::Graceful
            };
            match fault.side {
                Side::Client => (end, CloseStyle::Drop, other),
                Side::Server => (end, other, CloseStyle::Drop),
            }
        }
        Stop::Idle => {
            let end = End::weir(EndHow::Timeout, EndPhase::Tunnel, "idle_timeout");
            let style = close_style(config.idle_close);
            (end, style, style)
        }
        Stop::Shutdown => {
            let end = End::weir(EndHow::Shutdown, EndPhase::Tunnel, "shutdown");
            let style = close_style(config.idle_close);
            (end, style, style)
        }
    };
    let (client, server) = match sockets {
        Some((client, server)) => (Some((client, client_style)), Some((server, server_style))),
        None => (None, None),
    };
    Forwarded {
        bytes_in: counts.bytes_in,
        bytes_out: counts.bytes_out,
        spliced_in: counts.spliced_in,
        spliced_out: counts.spliced_out,
        end,
        ended_at,
        closing: Closing { client, server },
    }
}

/// [`forward`] for two plain TCP sockets: through the worker's io_uring engine when it has
/// one (see [`crate::net::ring`]), handing back to the copy and splice paths when it says so;
/// on those paths from the start otherwise. An error is the engine's (the sockets could not
/// leave or rejoin tokio's reactor, or the ring failed): the sockets are then closed already.
///
/// Either way the forwarding future is boxed: a connection's future then carries only what it
/// started with, not the larger of the two.
pub fn forward_tcp<F: Future<Output = ()> + Unpin>(
    client: TcpStream,
    server: TcpStream,
    config: &ForwardConfig,
    shutdown: F,
) -> impl Future<Output = io::Result<Forwarded<TcpStream, TcpStream>>> {
    use futures_util::FutureExt;
    use futures_util::future::Either;
    if ring::enabled() {
        Either::Left(Box::pin(through_engine(client, server, config, shutdown)))
    } else {
        Either::Right(Box::pin(forward(client, server, config, shutdown).map(Ok)))
    }
}

async fn through_engine<F: Future<Output = ()> + Unpin>(
    client: TcpStream,
    server: TcpStream,
    config: &ForwardConfig,
    mut shutdown: F,
) -> io::Result<Forwarded<TcpStream, TcpStream>> {
    // Out of the reactor while the engine holds them: a registered socket would wake it for
    // every segment.
    let (client, server) = (client.into_std()?, server.into_std()?);
    let mut tunnel = match ring::start(client, server) {
        Ok(tunnel) => tunnel,
        Err((client, server)) => {
            let (client, server) = (TcpStream::from_std(client)?, TcpStream::from_std(server)?);
            return Ok(Box::pin(forward(client, server, config, shutdown)).await);
        }
    };
    let mut idle = std::pin::pin!(tokio::time::sleep(config.idle_timeout));
    let mut asked: Option<Stop> = None;
    let ended = poll_fn(|cx| {
        loop {
            if let Poll::Ready(ended) = tunnel.poll_end(cx) {
                return Poll::Ready(ended);
            }
            if asked.is_some() {
                return Poll::Pending;
            }
            if Pin::new(&mut shutdown).poll(cx).is_ready() {
                asked = Some(Stop::Shutdown);
            } else {
                let last_activity = tunnel.last_activity().unwrap_or_else(Instant::now);
                if poll_idle(cx, idle.as_mut(), last_activity, config.idle_timeout).is_pending() {
                    return Poll::Pending;
                }
                asked = Some(Stop::Idle);
            }
            // Ended where it is; the engine wakes this task when nothing is in flight.
            tunnel.stop();
        }
    })
    .await?;
    let ended_at = Instant::now();
    drop(tunnel);
    let [up, down] = ended.directions;
    let side_of = |side: usize| {
        if side == ring::CLIENT {
            Side::Client
        } else {
            Side::Server
        }
    };
    let first_fin = ended.first_fin.map(side_of);
    let counts = Counts {
        bytes_in: up.bytes,
        bytes_out: down.bytes,
        spliced_in: 0,
        spliced_out: 0,
    };
    let stop = match ended.outcome {
        ring::Outcome::Done => {
            // Both FINs passed on, both receive queues read to the end: the closes send
            // nothing but what is due, and need no reactor.
            drop((ended.client, ended.server));
            return Ok(finish(
                Stop::Done,
                first_fin,
                None,
                counts,
                ended_at,
                config,
            ));
        }
        ring::Outcome::HandBack => {
            let resume = Resume {
                up,
                down,
                first_fin,
            };
            let (client, server) = (
                TcpStream::from_std(ended.client)?,
                TcpStream::from_std(ended.server)?,
            );
            // Boxed, so that a tunnel's own future stays small while the engine holds it.
            return Ok(Box::pin(forward_from(client, server, config, shutdown, resume)).await);
        }
        ring::Outcome::Fault { side, how } => Stop::Fault(Fault {
            side: side_of(side),
            how,
        }),
        ring::Outcome::Stopped => asked.unwrap_or(Stop::Shutdown),
    };
    let sockets = (
        TcpStream::from_std(ended.client)?,
        TcpStream::from_std(ended.server)?,
    );
    Ok(finish(
        stop,
        first_fin,
        Some(sockets),
        counts,
        ended_at,
        config,
    ))
}

/// Both sockets and both directions, for the poll loop.
struct Pump<C, S, F> {
    client: C,
    server: S,
    up: Half,
    down: Half,
    /// The side whose FIN came first.
    first_fin: Option<Side>,
    shutdown: F,
}

impl<C: Endpoint, S: Endpoint, F: Future<Output = ()> + Unpin> Pump<C, S, F> {
    /// Moves bytes both ways: `Ready` with what stopped it, `Pending` while both directions
    /// go on (the idle timer is the caller's).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        if Pin::new(&mut self.shutdown).poll(cx).is_ready() {
            return Poll::Ready(Stop::Shutdown);
        }
        let (up, down) = (&mut self.up, &mut self.down);
        let up_state = if up.shut {
            Poll::Ready(Ok(()))
        } else {
            up.poll_copy(cx, &mut self.client, &mut self.server, down.shut)
        };
        if let Poll::Ready(Err(fault)) = up_state {
            return Poll::Ready(Stop::Fault(fault));
        }
        let down_state = if down.shut {
            Poll::Ready(Ok(()))
        } else {
            down.poll_copy(cx, &mut self.server, &mut self.client, up.shut)
        };
        if let Poll::Ready(Err(fault)) = down_state {
            return Poll::Ready(Stop::Fault(fault));
        }
        for half in [&*up, &*down] {
            if half.eof && self.first_fin.is_none() {
                self.first_fin = Some(half.src);
            }
        }
        if up.shut && down.shut {
            return Poll::Ready(Stop::Done);
        }
        Poll::Pending
    }

    /// Whether some byte moved since the last call.
    fn moved(&mut self) -> bool {
        std::mem::take(&mut self.up.moved) | std::mem::take(&mut self.down.moved)
    }
}

/// How weir closes both sides itself (idle timeout, shutdown).
fn close_style(mode: CloseMode) -> CloseStyle {
    match mode {
        CloseMode::Fin => CloseStyle::Graceful,
        CloseMode::Rst => CloseStyle::Reset,
    }
}

/// Pending until the connection has been idle for `timeout`; moves the timer forward lazily
/// (only when it fires) instead of on every read.
fn poll_idle(
    cx: &mut Context<'_>,
    mut idle: Pin<&mut Sleep>,
    last_activity: Instant,
    timeout: Duration,
) -> Poll<Stop> {
    loop {
        ready!(idle.as_mut().poll(cx));
        let deadline = last_activity + timeout;
        if deadline <= Instant::now() {
            return Poll::Ready(Stop::Idle);
        }
        idle.as_mut().reset(deadline);
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
