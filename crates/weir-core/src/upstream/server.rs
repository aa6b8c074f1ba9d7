//! Live state of one server: health, draining, active connections and counters.
//!
//! State is keyed by (group, server name) and lives outside the config snapshot, so a reload
//! that keeps a server keeps its health and counters. Every change that can alter which
//! servers are eligible bumps a process-wide epoch; groups rebuild their selection schedule
//! lazily when they see a new epoch, so the pick path never takes a lock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bumped on every health or drain change of any server.
static ELIGIBILITY_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The current eligibility epoch.
pub(crate) fn eligibility_epoch() -> u64 {
    ELIGIBILITY_EPOCH.load(Ordering::Acquire)
}

fn bump_epoch() {
    ELIGIBILITY_EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// Live state of one server.
#[derive(Debug)]
pub struct ServerState {
    /// Group the server belongs to.
    pub group: String,
    /// The server's stable name within its group (shared with the records that name it).
    pub name: Arc<str>,
    /// Where it listens.
    pub address: SocketAddr,
    healthy: AtomicBool,
    draining: AtomicBool,
    active: AtomicU64,
    /// Connections handed to this server.
    pub connections: AtomicU64,
    /// Connect attempts that failed (refused, timed out, other errors).
    pub connect_failures: AtomicU64,
    /// Bytes from clients to this server that went through a kernel pipe (splice) rather
    /// than through weir's memory.
    pub spliced_in: AtomicU64,
    /// Bytes from this server to clients that went through a kernel pipe.
    pub spliced_out: AtomicU64,
}

impl ServerState {
    /// A server assumed healthy until its first check says otherwise.
    pub fn new(group: &str, name: &str, address: SocketAddr) -> Self {
        ServerState {
            group: group.to_string(),
            name: name.into(),
            address,
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            active: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            spliced_in: AtomicU64::new(0),
            spliced_out: AtomicU64::new(0),
        }
    }

    /// Whether the last health verdict was "up".
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records a health verdict; returns whether it changed anything.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::AcqRel) != healthy;
        if changed {
            bump_epoch();
        }
        changed
    }

    /// Whether the server is draining (no new connections).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts or stops draining; returns whether it changed anything.
    pub fn set_draining(&self, draining: bool) -> bool {
        let changed = self.draining.swap(draining, Ordering::AcqRel) != draining;
        if changed {
            bump_epoch();
        }
        changed
    }

    /// Connections currently open to this server.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn open_connection(self: &std::sync::Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }
}

/// Keeps a server's active-connection count up while a connection to it is open.
#[derive(Debug)]
pub struct ActiveGuard(std::sync::Arc<ServerState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
