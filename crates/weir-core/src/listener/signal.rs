//! Shutdown as a connection sees it, without a lock on the request path.
//!
//! `CancellationToken` takes a mutex shared by every connection each time it is checked or
//! polled. A busy HTTP connection checks for shutdown several times per request, so weir gives
//! each connection a [`Watch`] instead: the shutdown state is one atomic, and the connection's
//! waker sits in a slot of a registry of wakers. The registry is locked only when a connection
//! first waits and when it ends (and when its task's waker changes, which a task's does not),
//! and once at shutdown to wake everyone; it is split by worker thread, so workers opening
//! connections at the same time do not take the same lock. A watch allocates nothing: it keeps
//! its slot's place and a copy of the waker it put there, to tell when that changes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::workers;

const STOPPING: u8 = 1;
const FORCED: u8 = 2;

/// Registries of wakers: one per worker, up to this many (then workers share).
const SHARDS: usize = 16;

/// The shutdown state of a runtime's connections.
#[derive(Default)]
pub struct Signal {
    /// 0 running, then [`STOPPING`], then [`FORCED`].
    state: AtomicU8,
    wakers: [Mutex<Slots>; SHARDS],
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Signal {
    /// Shutdown began: finish what is running, take nothing new.
    pub fn stop(&self) {
        self.raise(STOPPING);
    }

    /// The grace is over: close now.
    pub fn force(&self) {
        self.raise(FORCED);
    }

    fn raise(&self, to: u8) {
        if self.state.fetch_max(to, Ordering::AcqRel) >= to {
            return;
        }
        for shard in &self.wakers {
            let wakers = shard.lock().unwrap_or_else(|p| p.into_inner());
            for waker in wakers.slots.iter().flatten() {
                waker.wake_by_ref();
            }
        }
    }

    /// A watch for one connection (its task must be the only one polling it).
    pub fn watch(self: &Arc<Self>) -> Watch {
        Watch {
            signal: self.clone(),
            registered: None,
        }
    }
}

/// Which stage of shutdown a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Shutdown began.
    Stopping,
    /// The grace is over.
    Forced,
}

/// One connection's view of [`Signal`].
pub struct Watch {
    signal: Arc<Signal>,
    /// Where this connection's waker is in the registry, and a copy of that waker; `None`
    /// until the connection first waits.
    registered: Option<(Slot, Waker)>,
}

/// A place in the registry: shard, then slot.
#[derive(Clone, Copy)]
struct Slot {
    shard: u32,
    index: u32,
}

impl Watch {
    fn state(&self) -> u8 {
        self.signal.state.load(Ordering::Acquire)
    }

    /// Whether shutdown began.
    pub fn stopping(&self) -> bool {
        self.state() >= STOPPING
    }

    /// Ready once the grace is over.
    pub fn poll_force(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_shutdown(cx, false).map(|_| ())
    }

    /// Ready once the grace is over, or, with `stop`, once shutdown began.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>, stop: bool) -> Poll<Shutdown> {
        let level = if stop { STOPPING } else { FORCED };
        if let Some(seen) = self.seen(level) {
            return Poll::Ready(seen);
        }
        self.register(cx.waker());
        // Raised between the first check and the registration: seen here.
        match self.seen(level) {
            Some(seen) => Poll::Ready(seen),
            None => Poll::Pending,
        }
    }

    fn seen(&self, level: u8) -> Option<Shutdown> {
        match self.state() {
            state if state < level => None,
            FORCED => Some(Shutdown::Forced),
            _ => Some(Shutdown::Stopping),
        }
    }

    /// Puts `waker` in this connection's slot, unless it is there already.
    fn register(&mut self, waker: &Waker) {
        if let Some((_, current)) = &self.registered
            && current.will_wake(waker)
        {
            return;
        }
        let shard = match &self.registered {
            Some((slot, _)) => slot.shard as usize,
            None => workers::current() % SHARDS,
        };
        let mut wakers = self.signal.wakers[shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let index = match &self.registered {
            Some((slot, _)) => slot.index as usize,
            None => match wakers.free.pop() {
                Some(index) => index,
                None => {
                    wakers.slots.push(None);
                    wakers.slots.len() - 1
                }
            },
        };
        if let Some(entry) = wakers.slots.get_mut(index) {
            *entry = Some(waker.clone());
        }
        drop(wakers);
        let slot = Slot {
            shard: shard as u32,
            // File descriptors run out long before 4 billion connections.
            index: u32::try_from(index).unwrap_or(u32::MAX),
        };
        self.registered = Some((slot, waker.clone()));
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some((slot, _)) = self.registered.take() else {
            return;
        };
        let mut wakers = self.signal.wakers[slot.shard as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let index = slot.index as usize;
        if let Some(entry) = wakers.slots.get_mut(index) {
            *entry = None;
            wakers.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn wakes_the_waiting_connections() {
        let signal = Arc::new(Signal::default());
        let mut a = signal.watch();
        let b = signal.watch();
        let (saw_stop, stop_seen) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(async move {
            let stage = poll_fn(|cx| a.poll_shutdown(cx, true)).await;
            assert_eq!(stage, Shutdown::Stopping);
            let forced = {
                let noop = &mut Context::from_waker(std::task::Waker::noop());
                a.poll_force(noop).is_ready()
            };
            let _ = saw_stop.send(forced);
            poll_fn(|cx| a.poll_force(cx)).await;
        });
        tokio::task::yield_now().await;
        assert!(!b.stopping());
        signal.stop();
        assert!(b.stopping());
        let wait = std::time::Duration::from_secs(5);
        let forced_early = tokio::time::timeout(wait, stop_seen).await;
        assert!(matches!(forced_early, Ok(Ok(false))), "stop is not force");
        signal.force();
        assert!(matches!(
            tokio::time::timeout(wait, waiting).await,
            Ok(Ok(()))
        ));
    }

    #[test]
    fn slots_are_taken_on_the_first_wait_and_reused() {
        let signal = Arc::new(Signal::default());
        let noop = &mut Context::from_waker(Waker::noop());
        // Off a worker thread, every watch is in the first shard.
        let slots = |signal: &Signal| {
            let wakers = signal.wakers[0].lock().unwrap_or_else(|p| p.into_inner());
            (wakers.slots.len(), wakers.free.len())
        };
        let mut a = signal.watch();
        assert_eq!(
            slots(&signal),
            (0, 0),
            "a watch that never waited has no slot"
        );
        assert!(a.poll_force(noop).is_pending());
        assert!(a.poll_force(noop).is_pending());
        let mut b = signal.watch();
        assert!(b.poll_force(noop).is_pending());
        assert_eq!(slots(&signal), (2, 0));
        drop(b);
        let mut c = signal.watch();
        assert!(c.poll_force(noop).is_pending());
        assert_eq!(slots(&signal), (2, 0));
        drop((a, c));
        assert_eq!(slots(&signal), (2, 2));
    }
}
