//! Access control and limits (SPEC §7): who may connect, how many connections may be open,
//! how many new connections and requests per second are admitted.
//!
//! Rates use GCRA (the generic cell rate algorithm): one atomic "theoretical arrival time" per
//! limit, advanced with a compare-and-swap, so admitting a request takes no lock however many
//! workers share the limit. A burst of up to one second's worth is admitted at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use weir_config::{Acl, Limits};

/// A rate limit: `rate` admissions per second, bursts of up to `rate`.
#[derive(Debug)]
pub struct Rate {
    /// Nanoseconds between admissions at the steady rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run (the burst).
    tolerance: u64,
    /// Theoretical arrival time, in nanoseconds since `origin`.
    tat: AtomicU64,
    origin: Instant,
}

impl Rate {
    /// A limit of `per_second` admissions per second (at least 1).
    pub fn new(per_second: u32) -> Self {
        let per_second = u64::from(per_second.max(1));
        let interval = 1_000_000_000 / per_second;
        Rate {
            interval,
            tolerance: interval * (per_second - 1),
            tat: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// Admits one unit now, or says no.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    /// Admits one unit at `now` (tests drive the clock).
    pub fn admit_at(&self, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.origin).as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + self.interval,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

/// Why a connection or request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ACL does not admit the client.
    Acl,
    /// `max_connections` connections are open.
    Connections,
    /// Over `cps`.
    Cps,
    /// Over the listener's `qps`.
    Qps,
    /// Over a rule's `qps`.
    RuleQps,
}

impl Refusal {
    /// The reason written in the end record.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Acl => "acl",
            Refusal::Connections => "limit:connections",
            Refusal::Cps => "limit:cps",
            Refusal::Qps => "limit:qps",
            Refusal::RuleQps => "limit:rule_qps",
        }
    }
}

/// A listener's gate: ACL, open connections, connection and request rates.
#[derive(Debug, Default)]
pub struct Gate {
    acl: Option<Acl>,
    max_connections: Option<u32>,
    open: AtomicU32,
    cps: Option<Rate>,
    qps: Option<Rate>,
}

impl Gate {
    /// The gate for a listener's ACL and limits.
    pub fn new(acl: Option<Acl>, limits: &Limits) -> Self {
        Gate {
            acl,
            max_connections: limits.max_connections,
            open: AtomicU32::new(0),
            cps: limits.cps.map(Rate::new),
            qps: limits.qps.map(Rate::new),
        }
    }

    /// Admits a new connection from `ip`, counting it open until the permit is dropped.
    pub fn admit_connection(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        if let Some(acl) = &self.acl
            && !acl.permits(ip)
        {
            return Err(Refusal::Acl);
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = ConnPermit(self.clone());
        if self.max_connections.is_some_and(|max| open > max) {
            return Err(Refusal::Connections);
        }
        if self.cps.as_ref().is_some_and(|rate| !rate.admit()) {
            return Err(Refusal::Cps);
        }
        Ok(permit)
    }

    /// Admits one request against the listener's `qps`.
    pub fn admit_request(&self) -> Result<(), Refusal> {
        match &self.qps {
            Some(rate) if !rate.admit() => Err(Refusal::Qps),
            _ => Ok(()),
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

/// Counts a connection as open while it lives (even a refused one, until it is closed, so a
/// flood of refused connections still counts against `max_connections` while they close).
#[derive(Debug)]
pub struct ConnPermit(Arc<Gate>);

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a refused HTTP client is told to wait (`Retry-After`).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::net::Ipv4Addr;
    use weir_config::IpNet;

    #[test]
    fn a_rate_admits_its_burst_then_its_steady_rate() {
        let rate = Rate::new(10);
        let t0 = rate.origin;
        // A full second's worth at once, then nothing more at the same instant.
        assert_eq!((0..20).filter(|_| rate.admit_at(t0)).count(), 10);
        // One more every 100 ms.
        assert!(!rate.admit_at(t0 + Duration::from_millis(50)));
        assert!(rate.admit_at(t0 + Duration::from_millis(100)));
        assert!(!rate.admit_at(t0 + Duration::from_millis(150)));
        // After an idle second the burst is back.
        let later = t0 + Duration::from_secs(3);
        assert_eq!((0..20).filter(|_| rate.admit_at(later)).count(), 10);
    }

    #[test]
    fn over_ten_seconds_a_rate_admits_what_it_promises() {
        let rate = Rate::new(100);
        let t0 = rate.origin;
        // Offered 1000/s for 10 s: admitted = burst + 100/s × 10 s (± one).
        let admitted = (0..10_000u64)
            .filter(|i| rate.admit_at(t0 + Duration::from_micros(i * 1000)))
            .count();
        assert!((1099..=1101).contains(&admitted), "{admitted}");
    }

    #[test]
    fn gate_counts_connections_and_applies_the_acl() {
        let acl = Acl::Allow(vec![IpNet {
            addr: Ipv4Addr::new(127, 0, 0, 0).into(),
            prefix: 8,
        }]);
        let limits = Limits {
            max_connections: Some(2),
            ..Limits::default()
        };
        let gate = Arc::new(Gate::new(Some(acl), &limits));
        let local: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(
            gate.admit_connection("10.1.2.3".parse().unwrap())
                .unwrap_err(),
            Refusal::Acl
        );
        let a = gate.admit_connection(local).unwrap();
        let b = gate.admit_connection(local).unwrap();
        assert_eq!(
            gate.admit_connection(local).unwrap_err(),
            Refusal::Connections
        );
        assert_eq!(
            gate.open_connections(),
            2,
            "the refused one no longer counts once closed"
        );
        drop(a);
        let _c = gate.admit_connection(local).unwrap();
        drop(b);
    }
}
