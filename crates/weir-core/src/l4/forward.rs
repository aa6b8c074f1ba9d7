//! Forwarding bytes both ways between a client and a server, and telling how it ended.
//!
//! One task drives both directions. Each moves its bytes by copy through user space, or, once
//! it proves to be bulk TCP, through a kernel pipe with splice(2) (see `direction.rs`). A FIN
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
    client: (C, CloseStyle),
    server: (S, CloseStyle),
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
        if self.client.1 == CloseStyle::Graceful || self.server.1 == CloseStyle::Graceful {
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
fn close_now<E: Endpoint>((stream, style): (E, CloseStyle)) {
    match style {
        CloseStyle::Reset => stream.close_with_reset(),
        CloseStyle::Drop | CloseStyle::Graceful => drop(stream),
    }
}

async fn close_as<E: Endpoint>((stream, style): (E, CloseStyle)) {
    match style {
        CloseStyle::Drop => drop(stream),
        CloseStyle::Reset => stream.close_with_reset(),
        CloseStyle::Graceful => {
            stream.close_gracefully(CLOSE_LINGER).await;
        }
    }
}

/// Whether an I/O error means the peer reset the connection.
pub fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
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
    let may_splice = config.splice && client.as_tcp().is_some() && server.as_tcp().is_some();
    let mut pump = Pump {
        client,
        server,
        up: Half::new(Side::Client, may_splice),
        down: Half::new(Side::Server, may_splice),
        first_fin: None,
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
        let (end, closing) = match stop {
            Stop::Done => {
                let side = first_fin.unwrap_or(Side::Client);
                let end = End::new(side.end_by(), EndHow::Fin, EndPhase::Tunnel);
                (
                    end,
                    ((client, CloseStyle::Drop), (server, CloseStyle::Drop)),
                )
            }
            Stop::Fault(fault) => {
                let end = End::new(fault.side.end_by(), fault.how, EndPhase::Tunnel);
                let other = if fault.how == EndHow::Rst && config.propagate_reset {
                    CloseStyle::Reset
                } else {
                    CloseStyle::Graceful
                };
                let (client_style, server_style) = match fault.side {
                    Side::Client => (CloseStyle::Drop, other),
                    Side::Server => (other, CloseStyle::Drop),
                };
                (end, ((client, client_style), (server, server_style)))
            }
            Stop::Idle => {
                let end = End::weir(EndHow::Timeout, EndPhase::Tunnel, "idle_timeout");
                (end, close_both(client, server, config.idle_close))
            }
            Stop::Shutdown => {
                let end = End::weir(EndHow::Shutdown, EndPhase::Tunnel, "shutdown");
                (end, close_both(client, server, config.idle_close))
            }
        };
        Forwarded {
            bytes_in: up.bytes,
            bytes_out: down.bytes,
            spliced_in: up.spliced,
            spliced_out: down.spliced,
            end,
            ended_at,
            closing: Closing {
                client: closing.0,
                server: closing.1,
            },
        }
    }
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

fn close_both<C, S>(client: C, server: S, mode: CloseMode) -> ((C, CloseStyle), (S, CloseStyle)) {
    let style = match mode {
        CloseMode::Fin => CloseStyle::Graceful,
        CloseMode::Rst => CloseStyle::Reset,
    };
    ((client, style), (server, style))
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
