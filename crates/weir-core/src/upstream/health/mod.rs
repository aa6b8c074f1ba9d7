//! Active health checking: one task per server probes it every `interval` (plus jitter) and
//! flips it up or down after `healthy_threshold` / `unhealthy_threshold` consecutive results.
//!
//! Each state change is logged once, with the server, the old and new state, and the probe
//! result that decided it. How a probe talks to a server — and closes without a reset — is in
//! [`probe`].

pub mod probe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use weir_config::{CheckKind, HealthCheck};

use super::health_state::{Health, HealthTracker};
use super::select::with_thread_rng;
use super::{ServerState, Upstream};
use probe::{HttpProbe, Probe, ProbeKind};

/// Starts a check task for every server of `upstream` (none when the kind is `none`).
pub fn spawn_checks(upstream: &Upstream, stop: &CancellationToken, tasks: &TaskTracker) {
    let check = &upstream.config.health_check;
    if check.kind == CheckKind::None {
        for server in &upstream.servers {
            server.set_healthy(true);
        }
        return;
    }
    for server in &upstream.servers {
        let target = probe_target(server.address, check);
        let probe = Probe {
            kind: match &check.kind {
                CheckKind::Http(http) => ProbeKind::Http(HttpProbe::new(http, target)),
                CheckKind::Tcp | CheckKind::None => ProbeKind::Tcp,
            },
            timeout: check.timeout.min(check.interval),
            source: check.source,
        };
        let task = CheckTask {
            server: server.clone(),
            target,
            probe,
            check: check.clone(),
        };
        tasks.spawn(task.run(stop.clone()));
    }
}

fn probe_target(address: SocketAddr, check: &HealthCheck) -> SocketAddr {
    match check.port {
        Some(port) => SocketAddr::new(address.ip(), port),
        None => address,
    }
}

struct CheckTask {
    server: Arc<ServerState>,
    target: SocketAddr,
    probe: Probe,
    check: HealthCheck,
}

impl CheckTask {
    async fn run(self, stop: CancellationToken) {
        let mut tracker =
            HealthTracker::new(self.check.healthy_threshold, self.check.unhealthy_threshold);
        // Spread the first probes of many servers over one interval's jitter.
        let mut wait = jitter(self.check.jitter);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                result = probe::run(&self.probe, self.target) => result,
            };
            let was = tracker.state();
            match tracker.record(result.ok) {
                Some(now) => self.flip(was, now, &result.detail),
                None => debug!(
                    group = %self.server.group, server = %self.server.name,
                    ok = result.ok, detail = %result.detail, "health probe"
                ),
            }
            wait = self.check.interval + jitter(self.check.jitter);
        }
    }

    fn flip(&self, was: Health, now: Health, detail: &str) {
        self.server.set_healthy(now == Health::Up);
        let (group, server, address) = (&self.server.group, &self.server.name, self.server.address);
        let (from, to) = (state_name(was), state_name(now));
        match now {
            Health::Up => {
                info!(target: "weir::health", %group, %server, %address, from, to, reason = %detail, "server is up")
            }
            Health::Down => {
                warn!(target: "weir::health", %group, %server, %address, from, to, reason = %detail, "server is down")
            }
        }
    }
}

fn state_name(health: Health) -> &'static str {
    match health {
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// A random delay in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(with_thread_rng(|rng| rng.next_u64()) % (nanos + 1))
}
