//! Server groups at run time: live server state, selection, connecting with retries, health.
//!
//! An [`Upstream`] is one configured group compiled for the data path. Picking a server reads
//! an immutable [`Schedule`] through an `ArcSwap`; the schedule is rebuilt only when a
//! server's health or drain state changes, so the per-connection path takes no lock.

pub mod connect;
pub mod health;
pub mod health_state;
pub mod maglev;
pub mod select;
pub mod server;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use weir_config::Group;

pub use select::Schedule;
pub use server::{ActiveGuard, ServerState};

use select::{ServerView, eligible, hash_ip, with_thread_rng};
use server::eligibility_epoch;

/// A schedule and the eligibility epoch it was built at.
struct Compiled {
    epoch: u64,
    schedule: Schedule,
}

/// One server group, ready for the data path.
pub struct Upstream {
    /// The group as configured.
    pub config: Group,
    /// Live state of each server, in config order (indices match `config.servers`).
    pub servers: Vec<Arc<ServerState>>,
    name: Arc<str>,
    compiled: ArcSwap<Compiled>,
    rebuild: Mutex<()>,
}

impl Upstream {
    /// Compiles `config`, reusing live state from `state_for` (keyed by server name) so health
    /// and counters survive a reload.
    pub fn new(
        config: Group,
        state_for: impl Fn(&str, &weir_config::Server) -> Arc<ServerState>,
    ) -> Self {
        let servers: Vec<_> = config
            .servers
            .iter()
            .map(|s| state_for(&config.name, s))
            .collect();
        let compiled = compile(&config, &servers);
        Upstream {
            name: config.name.as_str().into(),
            config,
            servers,
            compiled: ArcSwap::from_pointee(compiled),
            rebuild: Mutex::new(()),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's name, shared (for records, without copying it).
    pub fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Picks a server for a client, skipping `exclude` (servers already tried). Returns an
    /// index into [`Upstream::servers`].
    pub fn pick(&self, client: IpAddr, exclude: &[usize]) -> Option<usize> {
        let compiled = self.current();
        let client_hash = hash_ip(client);
        let load = |i: usize| self.servers.get(i).map_or(u64::MAX, |s| s.active());
        with_thread_rng(|rng| compiled.schedule.pick(client_hash, exclude, &load, rng))
    }

    /// The next server to try after `tried` (in order): one not tried yet; failing that, any
    /// but the last one tried — never the same server twice in a row.
    pub fn pick_next(&self, client: IpAddr, tried: &[usize]) -> Option<usize> {
        self.pick(client, tried).or_else(|| {
            tried
                .last()
                .and_then(|last| self.pick(client, std::slice::from_ref(last)))
        })
    }

    fn current(&self) -> arc_swap::Guard<Arc<Compiled>> {
        let epoch = eligibility_epoch();
        let compiled = self.compiled.load();
        if compiled.epoch == epoch {
            return compiled;
        }
        // Stale: one caller rebuilds, the others keep using what they loaded meanwhile.
        if let Ok(_guard) = self.rebuild.try_lock() {
            let previous = self.compiled.load();
            if previous.epoch != eligibility_epoch() {
                let next = compile(&self.config, &self.servers);
                // The epoch is global: a change in another group rebuilds this one too, and
                // its rotation must go on where it was rather than start over.
                next.schedule.continue_from(&previous.schedule);
                self.compiled.store(Arc::new(next));
            }
            return self.compiled.load();
        }
        compiled
    }
}

fn compile(config: &Group, servers: &[Arc<ServerState>]) -> Compiled {
    // Read the epoch first: a change racing with this build bumps it again, and the next pick
    // rebuilds.
    let epoch = eligibility_epoch();
    let views: Vec<ServerView<'_>> = config
        .servers
        .iter()
        .zip(servers)
        .map(|(cfg, state)| ServerView {
            key: &cfg.name,
            weight: cfg.weight,
            backup: cfg.backup,
            healthy: state.is_healthy(),
            draining: state.is_draining(),
        })
        .collect();
    let members = eligible(&views);
    Compiled {
        epoch,
        schedule: Schedule::new(config.algorithm, &views, &members),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn group(name: &str, ports: &[u16]) -> Upstream {
        let servers = ports
            .iter()
            .map(|&p| weir_config::Server::new(std::net::SocketAddr::from(([127, 0, 0, 1], p))))
            .collect();
        let mut config = Group::new(name, servers);
        config.algorithm = weir_config::Algorithm::Rr;
        Upstream::new(config, |g, s| {
            Arc::new(ServerState::new(g, &s.name, s.address))
        })
    }

    /// The eligibility epoch is global: a server of another group going down rebuilds every
    /// group's schedule, and round robin must not start over because of it.
    #[test]
    fn another_groups_health_change_does_not_restart_the_rotation() {
        let a = group("a", &[1, 2, 3]);
        let b = group("b", &[4]);
        let client = IpAddr::from([127, 0, 0, 1]);
        let mut picks = vec![a.pick(client, &[]).unwrap()];
        for _ in 0..4 {
            let healthy = b.servers[0].is_healthy();
            b.servers[0].set_healthy(!healthy);
            picks.push(a.pick(client, &[]).unwrap());
        }
        let first = picks[0];
        let expected: Vec<usize> = (0..5).map(|k| (first + k) % 3).collect();
        assert_eq!(picks, expected);
    }
}
