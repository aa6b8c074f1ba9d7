//! Worker threads: one single-threaded tokio runtime per thread, thread-per-core.
//!
//! Each worker accepts on its own listening sockets (SO_REUSEPORT spreads new connections
//! across them) and serves its connections to the end on the same thread, with its own
//! reactor, timers and pools of server connections. Nothing on the request path is shared
//! between workers but read-mostly state (configuration, server health) and atomic counters,
//! so workers never wait for each other; and a single-threaded scheduler wakes a task with
//! less bookkeeping than a work-stealing one (about a tenth of the CPU per proxied request
//! on loopback, measured).

use std::cell::Cell;
use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's worker number; 0 outside worker threads.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The number of the worker running the caller (0 when not on a worker thread).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Running worker threads.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// Starts `count` workers (at least one), named `weir-worker-N`; with `io_uring`, each
    /// batches its small sends (see [`crate::net::batch`]) where the kernel allows it.
    pub fn start(count: usize, io_uring: bool) -> io::Result<Workers> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // The sends this worker's tasks queued go out together as it goes idle.
                .on_thread_park(crate::net::batch::flush)
                .build()?;
            let (handle_tx, handle_rx) = mpsc::sync_channel(1);
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("weir-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    if io_uring && let Err(err) = crate::net::batch::enable() {
                        tracing::info!(%err, "no io_uring: this worker makes each send by itself");
                    }
                    if io_uring && let Err(err) = crate::net::ring::enable() {
                        tracing::info!(%err, "no io_uring engine: TCP forwarding copies");
                    }
                    let _ = handle_tx.send(runtime.handle().clone());
                    // Runs every task spawned onto this worker until told to stop.
                    let _ = runtime.block_on(async {
                        if crate::net::ring::enabled() {
                            tokio::spawn(crate::net::ring::drive());
                        }
                        stopped.await
                    });
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("a worker thread exited while starting"))?;
            workers.push(Worker {
                handle,
                stop,
                thread,
            });
        }
        Ok(Workers { workers })
    }

    /// Each worker's runtime, in worker order.
    pub fn handles(&self) -> Vec<Handle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }

    /// Stops every worker and waits for its thread; tasks still running are dropped.
    pub fn stop(self) {
        for worker in self.workers {
            let _ = worker.stop.send(());
            let _ = worker.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn each_worker_runs_its_tasks_on_its_own_numbered_thread() {
        let workers = Workers::start(2, true).unwrap();
        let seen: Vec<(usize, String)> = workers
            .handles()
            .iter()
            .map(|handle| {
                let (tx, rx) = mpsc::channel();
                handle.spawn(async move {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    tx.send((current(), name)).unwrap();
                });
                rx.recv().unwrap()
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, "weir-worker-0".to_owned()),
                (1, "weir-worker-1".to_owned())
            ]
        );
        workers.stop();
    }

    #[test]
    fn workers_batch_their_sends_unless_told_not_to() {
        for io_uring in [true, false] {
            let workers = Workers::start(1, io_uring).unwrap();
            let (tx, rx) = mpsc::channel();
            workers.handles()[0].spawn(async move {
                tx.send(crate::net::batch::enabled()).unwrap();
            });
            // Where the kernel refuses io_uring, workers send directly whatever the setting.
            let possible = crate::net::batch::enable().is_ok();
            assert_eq!(rx.recv().unwrap(), io_uring && possible);
            workers.stop();
        }
    }
}
