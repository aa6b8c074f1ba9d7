//! Shutdown as a connection sees it, without a lock on the request path.
//!
//! `CancellationToken` takes a mutex shared by every connection each time it is checked or
//! polled. A busy HTTP connection checks for shutdown several times per request, so weir gives
//! each connection a [`Watch`] instead: the shutdown state is one atomic, and the connection's
//! waker sits in its own `AtomicWaker`. The registry of wakers is locked only when a connection
//! starts and ends, and once at shutdown to wake everyone; it is split by worker thread, so
//! workers opening connections at the same time do not take the same lock.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

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
    slots: Vec<Option<Arc<AtomicWaker>>>,
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
                waker.wake();
            }
        }
    }

    /// A watch for one connection (its task must be the only one polling it).
    pub fn watch(self: &Arc<Self>) -> Watch {
        let waker = Arc::new(AtomicWaker::new());
        let shard = workers::current() % SHARDS;
        let mut wakers = self.wakers[shard].lock().unwrap_or_else(|p| p.into_inner());
        let slot = match wakers.free.pop() {
            Some(slot) => {
                wakers.slots[slot] = Some(waker.clone());
                slot
            }
            None => {
                wakers.slots.push(Some(waker.clone()));
                wakers.slots.len() - 1
            }
        };
        Watch {
            signal: self.clone(),
            waker,
            shard,
            slot,
        }
    }
}

/// One connection's view of [`Signal`].
pub struct Watch {
    signal: Arc<Signal>,
    waker: Arc<AtomicWaker>,
    shard: usize,
    slot: usize,
}

impl Watch {
    fn state(&self) -> u8 {
        self.signal.state.load(Ordering::Acquire)
    }

    /// Whether shutdown began.
    pub fn stopping(&self) -> bool {
        self.state() >= STOPPING
    }

    /// Ready once shutdown began.
    pub fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_at(cx, STOPPING)
    }

    /// Ready once the grace is over.
    pub fn poll_force(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_at(cx, FORCED)
    }

    fn poll_at(&self, cx: &mut Context<'_>, level: u8) -> Poll<()> {
        if self.state() >= level {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Raised between the first check and the registration: seen here.
        if self.state() >= level {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut wakers = self.signal.wakers[self.shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = wakers.slots.get_mut(self.slot) {
            *slot = None;
            wakers.free.push(self.slot);
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
        let a = signal.watch();
        let b = signal.watch();
        let (saw_stop, stop_seen) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(async move {
            poll_fn(|cx| a.poll_stop(cx)).await;
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
    fn slots_are_reused() {
        let signal = Arc::new(Signal::default());
        let a = signal.watch();
        drop(signal.watch());
        let c = signal.watch();
        assert_eq!(
            signal.wakers[0].lock().map(|w| w.slots.len()).unwrap_or(0),
            2
        );
        drop((a, c));
        assert_eq!(
            signal.wakers[0].lock().map(|w| w.free.len()).unwrap_or(0),
            2
        );
    }
}
