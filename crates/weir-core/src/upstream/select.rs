//! Picks a server among a group's eligible servers; no I/O.
//!
//! [`eligible`] decides which servers of a group may take new connections,
//! [`Schedule::new`] compiles a selection plan for that set with the group's
//! [`Algorithm`], and [`Schedule::pick`] chooses one server per connection
//! attempt without taking a lock. The caller rebuilds the schedule whenever
//! health, draining or weights change.
//!
//! Also here: the stable hashes used for source-IP affinity ([`hash_ip`],
//! [`hash_bytes`]) and a small PRNG ([`Rng`], [`with_thread_rng`]).

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use weir_config::Algorithm;

use super::maglev::{DEFAULT_TABLE_SIZE, MaglevTable};

/// Longest precomputed smooth-WRR cycle; larger weight sums are scaled down.
const WRR_MAX_CYCLE: u64 = 100_000;

/// Budget of `cycle length × members` steps for building a WRR cycle, so that
/// very large groups get a shorter (coarser) cycle instead of a slow rebuild.
const WRR_BUILD_BUDGET: u64 = 20_000_000;

/// One server of a group as the balancer sees it when a schedule is built.
#[derive(Debug, Clone, Copy)]
pub struct ServerView<'a> {
    /// Stable identity of the server (its configured address); maglev hashes it.
    pub key: &'a str,
    /// Configured weight; 0 takes the server out of rotation.
    pub weight: u32,
    /// Used only when no primary server is eligible.
    pub backup: bool,
    /// Current health-check verdict.
    pub healthy: bool,
    /// Draining: keeps its connections, takes no new ones.
    pub draining: bool,
}

impl ServerView<'_> {
    fn available(&self) -> bool {
        self.healthy && !self.draining && self.weight > 0
    }
}

/// Indices (into `servers`) that may take new connections: healthy, not
/// draining, weight > 0 primaries; when there is none, the healthy
/// non-draining weight > 0 backups; else empty.
pub fn eligible(servers: &[ServerView<'_>]) -> Vec<usize> {
    let pick = |backup: bool| -> Vec<usize> {
        servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.backup == backup && s.available())
            .map(|(i, _)| i)
            .collect()
    };
    let primaries = pick(false);
    if primaries.is_empty() {
        pick(true)
    } else {
        primaries
    }
}

/// The algorithm-specific part of a schedule.
enum Plan {
    Rr,
    /// Member positions in smooth-WRR order, one full cycle.
    Wrr(Vec<u32>),
    LeastConn,
    /// Slots map to member positions.
    Maglev(MaglevTable),
    Random2,
}

/// A compiled, immutable selection plan for one eligible set.
///
/// `Send + Sync`; [`Schedule::pick`] takes `&self` and never locks: the only
/// mutable state is a relaxed atomic cursor (round-robin position, tie
/// rotation). Rebuild it whenever health, draining or weights change.
pub struct Schedule {
    algorithm: Algorithm,
    /// Server indices (into the group's list), in the order given.
    members: Vec<usize>,
    /// Weight of each member (same positions as `members`), at least 1.
    weights: Vec<u64>,
    plan: Plan,
    cursor: AtomicUsize,
}

impl Schedule {
    /// Builds the plan. `servers` is the group's full list (for keys and
    /// weights); `members` the eligible indices (see [`eligible`]).
    ///
    /// Indices outside `servers` are dropped. A member of weight 0 counts as
    /// weight 1 (`eligible` never yields one).
    pub fn new(algorithm: Algorithm, servers: &[ServerView<'_>], members: &[usize]) -> Schedule {
        let members: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&m| m < servers.len())
            .collect();
        let weights: Vec<u64> = members
            .iter()
            .map(|&m| u64::from(servers[m].weight.max(1)))
            .collect();
        let plan = match algorithm {
            Algorithm::Rr => Plan::Rr,
            Algorithm::Wrr => Plan::Wrr(wrr_cycle(&weights)),
            Algorithm::LeastConn => Plan::LeastConn,
            Algorithm::Maglev => Plan::Maglev(maglev_table(servers, &members, &weights)),
            Algorithm::Random2 => Plan::Random2,
        };
        Schedule {
            algorithm,
            members,
            weights,
            plan,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Goes on from where `previous` (the plan this one replaces) was in its rotation.
    pub fn continue_from(&self, previous: &Schedule) {
        self.cursor
            .store(previous.cursor.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// True when there is no member: every pick returns `None`.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member server indices (into the group's list).
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// The algorithm this schedule was built for.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Picks a server index (into the group's list).
    ///
    /// `client` is `hash_ip(client ip)` (used by maglev only). `exclude` lists
    /// server indices not to return (already tried). `load(i)` is the number
    /// of active connections of server `i` (least_conn, random2). Returns
    /// `None` when every member is excluded or there is none.
    pub fn pick(
        &self,
        client: u64,
        exclude: &[usize],
        load: &dyn Fn(usize) -> u64,
        rng: &mut Rng,
    ) -> Option<usize> {
        let usable = |pos: usize| !exclude.contains(&self.members[pos]);
        let pos = match &self.plan {
            Plan::Rr => self.pick_rr(&usable),
            Plan::Wrr(cycle) => self.pick_cycle(cycle, &usable),
            Plan::LeastConn => self.pick_least_conn(&usable, load),
            Plan::Maglev(table) => pick_maglev(table, client, &usable),
            Plan::Random2 => self.pick_random2(&usable, load, rng),
        }?;
        Some(self.members[pos])
    }

    fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    fn pick_rr(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next_cursor() % n;
        (0..n).map(|k| (start + k) % n).find(|&pos| usable(pos))
    }

    fn pick_cycle(&self, cycle: &[u32], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = cycle.len();
        if len == 0 {
            return None;
        }
        let start = self.next_cursor() % len;
        (0..len)
            .map(|k| cycle[(start + k) % len] as usize)
            .find(|&pos| usable(pos))
    }

    fn pick_least_conn(
        &self,
        usable: &dyn Fn(usize) -> bool,
        load: &dyn Fn(usize) -> u64,
    ) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next_cursor() % n;
        let mut best: Option<(usize, u64)> = None;
        for pos in (0..n).map(|k| (start + k) % n).filter(|&pos| usable(pos)) {
            let l = load(self.members[pos]);
            if best.is_none_or(|(b, bl)| self.lighter(pos, l, b, bl)) {
                best = Some((pos, l));
            }
        }
        best.map(|(pos, _)| pos)
    }

    fn pick_random2(
        &self,
        usable: &dyn Fn(usize) -> bool,
        load: &dyn Fn(usize) -> u64,
        rng: &mut Rng,
    ) -> Option<usize> {
        let n = self.members.len();
        let count = (0..n).filter(|&pos| usable(pos)).count();
        let nth = |i: usize| (0..n).filter(|&pos| usable(pos)).nth(i);
        match count {
            0 => None,
            1 => nth(0),
            _ => {
                let a = rng.below(count);
                let mut b = rng.below(count - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a)?, nth(b)?);
                let (la, lb) = (load(self.members[a]), load(self.members[b]));
                Some(if self.lighter(b, lb, a, la) { b } else { a })
            }
        }
    }

    /// True when member `a` with load `la` is strictly less loaded, relative
    /// to weight, than member `b` with load `lb`: `la / wa < lb / wb`.
    fn lighter(&self, a: usize, la: u64, b: usize, lb: u64) -> bool {
        let (wa, wb) = (self.weights[a], self.weights[b]);
        u128::from(la) * u128::from(wb) < u128::from(lb) * u128::from(wa)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("algorithm", &self.algorithm)
            .field("members", &self.members)
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

/// `table[client % M]`, then forward through the table to the first usable
/// member.
fn pick_maglev(table: &MaglevTable, client: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    let len = table.len();
    if len == 0 {
        return None;
    }
    let start = (client % len as u64) as usize;
    (0..len)
        .map(|k| table.slot(start + k))
        .find(|&pos| usable(pos))
}

fn maglev_table(servers: &[ServerView<'_>], members: &[usize], weights: &[u64]) -> MaglevTable {
    let entries: Vec<(&str, u32)> = members
        .iter()
        .zip(weights)
        .map(|(&m, &w)| (servers[m].key, u32::try_from(w).unwrap_or(u32::MAX)))
        .collect();
    MaglevTable::new(&entries, DEFAULT_TABLE_SIZE)
}

/// One full smooth-WRR cycle (nginx): each step every member's current
/// value grows by its weight, the largest wins and loses the total.
fn wrr_cycle(weights: &[u64]) -> Vec<u32> {
    let weights = wrr_weights(weights);
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        cycle.push(best as u32);
    }
    cycle
}

/// Weights reduced by their gcd and, when the sum exceeds the cycle cap,
/// scaled down proportionally (each staying ≥ 1).
fn wrr_weights(weights: &[u64]) -> Vec<u64> {
    let n = weights.len() as u64;
    let cap = (WRR_BUILD_BUDGET / n.max(1)).clamp(n, WRR_MAX_CYCLE.max(n));
    let sum: u64 = weights.iter().sum();
    let scaled: Vec<u64> = if sum > cap {
        let scale = |w: u64| (u128::from(w) * u128::from(cap) / u128::from(sum)) as u64;
        weights.iter().map(|&w| scale(w).max(1)).collect()
    } else {
        weights.to_vec()
    };
    let g = scaled.iter().copied().fold(0, gcd).max(1);
    scaled.iter().map(|&w| w / g).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Small, fast, non-cryptographic PRNG (splitmix64), seedable for tests.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-high: bias below 2^-64 × n, irrelevant here.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

thread_local! {
    static THREAD_RNG_STATE: Cell<u64> = Cell::new(thread_seed());
}

/// A per-thread seed from the wall clock and the thread id.
fn thread_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let thread =
        BuildHasherDefault::<DefaultHasher>::default().hash_one(std::thread::current().id());
    mix64(nanos ^ thread.rotate_left(32))
}

/// Runs `f` with a thread-local [`Rng`] (seeded once per thread from time +
/// thread id).
pub fn with_thread_rng<R>(f: impl FnOnce(&mut Rng) -> R) -> R {
    THREAD_RNG_STATE.with(|state| {
        let mut rng = Rng::new(state.get());
        let out = f(&mut rng);
        state.set(rng.state);
        out
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The splitmix64 finaliser: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stable 64-bit hash of an IP address: the same on every process and node
/// (FNV-1a over the address octets, finished with the splitmix64 mixer).
/// IPv4-mapped IPv6 addresses hash like their IPv4 form.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}

/// Stable 64-bit hash of bytes (the function behind [`hash_ip`]), used for
/// maglev permutations.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_bytes_seeded(0, bytes)
}

/// [`hash_bytes`] with the FNV offset basis perturbed by `seed`: an
/// independent stable hash for each seed (0 gives [`hash_bytes`]).
pub fn hash_bytes_seeded(seed: u64, bytes: &[u8]) -> u64 {
    let fnv = bytes.iter().fold(FNV_OFFSET ^ seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    mix64(fnv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn view(key: &str, weight: u32) -> ServerView<'_> {
        ServerView {
            key,
            weight,
            backup: false,
            healthy: true,
            draining: false,
        }
    }

    const KEYS: [&str; 12] = [
        "10.0.0.1:80",
        "10.0.0.2:80",
        "10.0.0.3:80",
        "10.0.0.4:80",
        "10.0.0.5:80",
        "10.0.0.6:80",
        "10.0.0.7:80",
        "10.0.0.8:80",
        "10.0.0.9:80",
        "10.0.0.10:80",
        "10.0.0.11:80",
        "10.0.0.12:80",
    ];

    fn weighted(weights: &[u32]) -> Vec<ServerView<'static>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| view(KEYS[i], w))
            .collect()
    }

    fn schedule(algorithm: Algorithm, servers: &[ServerView<'_>]) -> Schedule {
        Schedule::new(algorithm, servers, &eligible(servers))
    }

    fn no_load(_: usize) -> u64 {
        0
    }

    /// Picks `n` times with no exclusion and no load; counts per server.
    fn counts(s: &Schedule, servers: usize, n: usize) -> Vec<usize> {
        let mut rng = Rng::new(1);
        let mut c = vec![0; servers];
        for _ in 0..n {
            c[s.pick(0, &[], &no_load, &mut rng).unwrap()] += 1;
        }
        c
    }

    fn picks(s: &Schedule, n: usize) -> Vec<usize> {
        let mut rng = Rng::new(1);
        (0..n)
            .map(|_| s.pick(0, &[], &no_load, &mut rng).unwrap())
            .collect()
    }

    // ---- eligible ----

    #[test]
    fn eligible_excludes_unhealthy_draining_and_weight_zero() {
        let mut s = weighted(&[1, 1, 1, 0]);
        s[0].healthy = false;
        s[1].draining = true;
        assert_eq!(eligible(&s), vec![2]);
    }

    #[test]
    fn eligible_uses_backups_only_without_primaries() {
        let mut s = weighted(&[1, 1, 1, 1]);
        s[2].backup = true;
        s[3].backup = true;
        assert_eq!(eligible(&s), vec![0, 1]);
        s[0].healthy = false;
        assert_eq!(eligible(&s), vec![1]);
        s[1].draining = true;
        assert_eq!(eligible(&s), vec![2, 3]);
        s[1].draining = false;
        s[1].weight = 0;
        s[3].healthy = false;
        assert_eq!(eligible(&s), vec![2]);
    }

    #[test]
    fn eligible_empty_when_nothing_is_eligible() {
        let mut s = weighted(&[1, 1]);
        s[1].backup = true;
        s[0].healthy = false;
        s[1].draining = true;
        assert!(eligible(&s).is_empty());
        assert!(eligible(&[]).is_empty());
        let sched = schedule(Algorithm::Wrr, &s);
        assert!(sched.is_empty());
        assert_eq!(sched.pick(0, &[], &no_load, &mut Rng::new(1)), None);
    }

    #[test]
    fn empty_schedules_pick_nothing() {
        for algorithm in ALL {
            let s = Schedule::new(algorithm, &[], &[]);
            assert!(s.is_empty());
            assert_eq!(s.pick(9, &[], &no_load, &mut Rng::new(1)), None);
        }
    }

    #[test]
    fn out_of_range_members_are_dropped() {
        let servers = weighted(&[1, 1]);
        let s = Schedule::new(Algorithm::Rr, &servers, &[1, 5]);
        assert_eq!(s.members(), &[1]);
    }

    const ALL: [Algorithm; 5] = [
        Algorithm::Rr,
        Algorithm::Wrr,
        Algorithm::LeastConn,
        Algorithm::Maglev,
        Algorithm::Random2,
    ];

    #[test]
    fn every_algorithm_honours_exclusion() {
        let servers = weighted(&[1, 2, 3, 4]);
        for algorithm in ALL {
            let s = schedule(algorithm, &servers);
            let mut rng = Rng::new(3);
            for client in 0..200u64 {
                let got = s.pick(client, &[0, 2, 3], &no_load, &mut rng);
                assert_eq!(got, Some(1), "{algorithm:?}");
                let got = s.pick(client, &[0, 1, 2, 3], &no_load, &mut rng);
                assert_eq!(got, None, "{algorithm:?}");
            }
        }
    }

    #[test]
    fn schedule_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Schedule>();
    }

    // ---- rr ----

    #[test]
    fn rr_spreads_evenly_ignoring_weights() {
        let servers = weighted(&[1, 5, 10]);
        let s = schedule(Algorithm::Rr, &servers);
        assert_eq!(counts(&s, 3, 3000), vec![1000, 1000, 1000]);
        assert_eq!(picks(&s, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rr_exclusion_skips() {
        let servers = weighted(&[1, 1, 1]);
        let s = schedule(Algorithm::Rr, &servers);
        let mut rng = Rng::new(1);
        let got: Vec<usize> = (0..6)
            .map(|_| s.pick(0, &[1], &no_load, &mut rng).unwrap())
            .collect();
        // Turns that would have gone to 1 walk forward to 2.
        assert_eq!(got, vec![0, 2, 2, 0, 2, 2]);
        assert_eq!(s.pick(0, &[0, 1, 2], &no_load, &mut rng), None);
    }

    // ---- wrr ----

    fn assert_shares(weights: &[u32], picks_n: usize) -> Vec<f64> {
        let servers = weighted(weights);
        let s = schedule(Algorithm::Wrr, &servers);
        let c = counts(&s, weights.len(), picks_n);
        let total: u32 = weights.iter().sum();
        let shares: Vec<f64> = c.iter().map(|&x| x as f64 / picks_n as f64).collect();
        for (i, &w) in weights.iter().enumerate() {
            let want = f64::from(w) / f64::from(total);
            assert!(
                (shares[i] - want).abs() < 0.01,
                "weights {weights:?}: server {i} got {} want {want}",
                shares[i]
            );
        }
        shares
    }

    #[test]
    fn wrr_shares_follow_weights() {
        let a = assert_shares(&[5, 3, 2], 10_000);
        let b = assert_shares(&[1, 10, 100], 10_000);
        let c = assert_shares(&[7, 13, 1, 40], 10_000);
        eprintln!("wrr shares 5/3/2: {a:?}; 1/10/100: {b:?}; 7/13/1/40: {c:?}");
    }

    #[test]
    fn wrr_is_smooth() {
        let servers = weighted(&[5, 1, 1]);
        let s = schedule(Algorithm::Wrr, &servers);
        let seq = picks(&s, 70);
        // nginx's canonical sequence for 5/1/1: a a b a c a a.
        assert_eq!(&seq[..7], &[0, 0, 1, 0, 2, 0, 0]);
        let longest = seq
            .chunk_by(|a, b| a == b)
            .map(|run| run.len())
            .max()
            .unwrap();
        // Plain (non-smooth) WRR would send 5 in a row; across the cycle
        // boundary smooth WRR gives at most "a a | a a".
        assert!(longest <= 4, "run of {longest}: {seq:?}");
    }

    #[test]
    fn wrr_reduces_by_gcd() {
        let servers = weighted(&[500, 300, 200]);
        let s = schedule(Algorithm::Wrr, &servers);
        match &s.plan {
            Plan::Wrr(cycle) => assert_eq!(cycle.len(), 10),
            _ => panic!("not wrr"),
        }
    }

    #[test]
    fn wrr_caps_the_cycle_and_keeps_light_servers() {
        let servers = weighted(&[1_000_000, 3_000_000, 1]);
        let s = schedule(Algorithm::Wrr, &servers);
        let len = match &s.plan {
            Plan::Wrr(cycle) => cycle.len(),
            _ => panic!("not wrr"),
        };
        assert!(len as u64 <= WRR_MAX_CYCLE + 3, "{len}");
        let c = counts(&s, 3, len);
        assert!(c[2] >= 1, "{c:?}");
        let share = c[1] as f64 / len as f64;
        assert!((share - 0.75).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn wrr_exclusion_skips() {
        let servers = weighted(&[5, 3, 2]);
        let s = schedule(Algorithm::Wrr, &servers);
        let mut rng = Rng::new(1);
        let mut c = [0usize; 3];
        for _ in 0..1000 {
            c[s.pick(0, &[0], &no_load, &mut rng).unwrap()] += 1;
        }
        assert_eq!(c[0], 0);
        assert!(c[1] > c[2], "{c:?}");
    }

    // ---- least_conn ----

    #[test]
    fn least_conn_picks_least_loaded() {
        let servers = weighted(&[1, 1, 1]);
        let s = schedule(Algorithm::LeastConn, &servers);
        let loads = [5u64, 2, 9];
        let load = |i: usize| loads[i];
        let mut rng = Rng::new(1);
        for _ in 0..10 {
            assert_eq!(s.pick(0, &[], &load, &mut rng), Some(1));
        }
        assert_eq!(s.pick(0, &[1], &load, &mut rng), Some(0));
    }

    #[test]
    fn least_conn_respects_weights() {
        // load 4 at weight 2 (ratio 2) beats load 3 at weight 1 (ratio 3).
        let servers = weighted(&[1, 2]);
        let s = schedule(Algorithm::LeastConn, &servers);
        let loads = [3u64, 4];
        let load = |i: usize| loads[i];
        let mut rng = Rng::new(1);
        for _ in 0..4 {
            assert_eq!(s.pick(0, &[], &load, &mut rng), Some(1));
        }
    }

    #[test]
    fn least_conn_ties_rotate() {
        let servers = weighted(&[1, 1, 1, 1]);
        let s = schedule(Algorithm::LeastConn, &servers);
        assert_eq!(counts(&s, 4, 400), vec![100; 4]);
        // Equal ratios with different weights are ties too.
        let servers = weighted(&[1, 2]);
        let s = schedule(Algorithm::LeastConn, &servers);
        let loads = [2u64, 4];
        let mut rng = Rng::new(1);
        let mut c = [0; 2];
        for _ in 0..10 {
            c[s.pick(0, &[], &|i| loads[i], &mut rng).unwrap()] += 1;
        }
        assert_eq!(c, [5, 5]);
    }

    #[test]
    fn least_conn_huge_loads_do_not_overflow() {
        let servers = weighted(&[u32::MAX, 1]);
        let s = schedule(Algorithm::LeastConn, &servers);
        let loads = [u64::MAX, u64::MAX / 2];
        let mut rng = Rng::new(1);
        assert_eq!(s.pick(0, &[], &|i| loads[i], &mut rng), Some(0));
    }

    // ---- random2 ----

    #[test]
    fn random2_lightest_wins_whenever_drawn() {
        let servers = weighted(&[1, 1, 1]);
        let s = schedule(Algorithm::Random2, &servers);
        let loads = [0u64, 100, 100];
        let load = |i: usize| loads[i];
        let mut rng = Rng::new(42);
        let mut draws = Rng::new(42);
        let mut zero = 0;
        for _ in 0..3000 {
            // Replay the two draws to know whether server 0 was among them.
            let a = draws.below(3);
            let mut b = draws.below(2);
            if b >= a {
                b += 1;
            }
            let got = s.pick(0, &[], &load, &mut rng).unwrap();
            if a == 0 || b == 0 {
                assert_eq!(got, 0);
                zero += 1;
            } else {
                assert_ne!(got, 0);
            }
        }
        // Server 0 is in 2 of the 3 possible pairs.
        let share = f64::from(zero) / 3000.0;
        assert!(share > 0.5, "{share}");
        assert!((share - 2.0 / 3.0).abs() < 0.05, "{share}");
    }

    #[test]
    fn random2_tie_goes_to_first_drawn_and_draws_are_distinct() {
        let servers = weighted(&[1, 1]);
        let s = schedule(Algorithm::Random2, &servers);
        let mut rng = Rng::new(5);
        let mut draws = Rng::new(5);
        for _ in 0..100 {
            let a = draws.below(2);
            draws.below(1);
            assert_eq!(s.pick(0, &[], &no_load, &mut rng), Some(a));
        }
    }

    #[test]
    fn random2_spreads_without_load() {
        let servers = weighted(&[1, 1, 1, 1]);
        let s = schedule(Algorithm::Random2, &servers);
        let c = counts(&s, 4, 40_000);
        for &x in &c {
            assert!((9_000..11_000).contains(&x), "{c:?}");
        }
    }

    #[test]
    fn random2_respects_weights() {
        let servers = weighted(&[1, 4]);
        let s = schedule(Algorithm::Random2, &servers);
        let loads = [1u64, 3];
        let mut rng = Rng::new(1);
        assert_eq!(s.pick(0, &[], &|i| loads[i], &mut rng), Some(1));
    }

    // ---- maglev ----

    fn clients(n: usize, seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| hash_ip(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))))
            .collect()
    }

    fn maglev_picks(s: &Schedule, cs: &[u64]) -> Vec<usize> {
        let mut rng = Rng::new(1);
        cs.iter()
            .map(|&c| s.pick(c, &[], &no_load, &mut rng).unwrap())
            .collect()
    }

    #[test]
    fn maglev_is_stable_across_builds_and_member_order() {
        let servers = weighted(&[1, 1, 1, 1, 1]);
        let a = Schedule::new(Algorithm::Maglev, &servers, &[0, 1, 2, 3, 4]);
        let b = Schedule::new(Algorithm::Maglev, &servers, &[0, 1, 2, 3, 4]);
        let c = Schedule::new(Algorithm::Maglev, &servers, &[3, 1, 4, 0, 2]);
        let cs = clients(20_000, 1);
        let pa = maglev_picks(&a, &cs);
        assert_eq!(pa, maglev_picks(&b, &cs));
        assert_eq!(pa, maglev_picks(&c, &cs));
        // Same client, repeated picks: same server (no cursor involved).
        assert_eq!(pa, maglev_picks(&a, &cs));
        // And the servers listed in a different order in the group.
        let mut reordered = servers.clone();
        reordered.reverse();
        let d = schedule(Algorithm::Maglev, &reordered);
        let pd = maglev_picks(&d, &cs);
        for (x, y) in pa.iter().zip(&pd) {
            assert_eq!(servers[*x].key, reordered[*y].key);
        }
    }

    /// Fraction of clients whose server changes when server `removed` goes
    /// down (the clients of `removed` included: they must move).
    fn moved_fraction(n: usize, removed: usize, cs: &[u64]) -> f64 {
        let mut servers = weighted(&vec![1; n]);
        let before = maglev_picks(&schedule(Algorithm::Maglev, &servers), cs);
        servers[removed].healthy = false;
        let after = maglev_picks(&schedule(Algorithm::Maglev, &servers), cs);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(!after.contains(&removed));
        moved as f64 / cs.len() as f64
    }

    #[test]
    fn maglev_removal_moves_at_most_1_2_over_n() {
        let cs = clients(100_000, 2);
        for n in [5, 10] {
            let worst = (0..n)
                .map(|r| moved_fraction(n, r, &cs))
                .fold(0.0, f64::max);
            eprintln!(
                "maglev N={n}: worst moved fraction {worst:.4} (1/N = {:.4})",
                1.0 / n as f64
            );
            assert!(worst <= 1.2 / n as f64, "N={n}: {worst}");
        }
    }

    #[test]
    fn maglev_exclusion_walks_forward_and_keeps_others() {
        let servers = weighted(&[1, 1, 1, 1]);
        let s = schedule(Algorithm::Maglev, &servers);
        let cs = clients(5_000, 3);
        let plain = maglev_picks(&s, &cs);
        let mut rng = Rng::new(1);
        for (&c, &p) in cs.iter().zip(&plain) {
            let got = s.pick(c, &[2], &no_load, &mut rng).unwrap();
            assert_ne!(got, 2);
            if p != 2 {
                assert_eq!(got, p);
            }
        }
    }

    #[test]
    fn maglev_weighted_client_shares() {
        let servers = weighted(&[1, 2, 3]);
        let s = schedule(Algorithm::Maglev, &servers);
        let cs = clients(60_000, 4);
        let mut c = [0usize; 3];
        for p in maglev_picks(&s, &cs) {
            c[p] += 1;
        }
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = c[i] as f64 / cs.len() as f64;
            assert!((got - want).abs() < 0.02, "{c:?}");
        }
    }

    // ---- hashes and rng ----

    #[test]
    fn hash_ip_known_values() {
        assert_eq!(hash_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))), HASH_V4);
        assert_eq!(hash_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), HASH_V6_LOOPBACK);
        assert_eq!(hash_bytes(b""), HASH_EMPTY);
    }

    // Computed independently (Python) from the definition: FNV-1a 64 over the
    // octets, then the splitmix64 finaliser.
    const HASH_V4: u64 = 2_161_984_699_633_912_267;
    const HASH_V6_LOOPBACK: u64 = 1_943_224_462_512_969_956;
    const HASH_EMPTY: u64 = 17_665_956_581_633_026_203;

    #[test]
    fn hash_ip_v4_mapped_equals_v4() {
        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        let mapped = v4.to_ipv6_mapped();
        assert_eq!(hash_ip(IpAddr::V4(v4)), hash_ip(IpAddr::V6(mapped)));
        // An IPv4-compatible (not mapped) address is a different address.
        assert_ne!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V6(v4.to_ipv6_compatible()))
        );
        assert_ne!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8)))
        );
    }

    #[test]
    fn seeded_hashes_differ() {
        assert_eq!(hash_bytes_seeded(0, b"abc"), hash_bytes(b"abc"));
        assert_ne!(hash_bytes_seeded(1, b"abc"), hash_bytes(b"abc"));
    }

    #[test]
    fn rng_is_deterministic_and_below_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.next_u64(), Rng::new(8).next_u64());
        let mut c = [0usize; 5];
        for _ in 0..50_000 {
            c[a.below(5)] += 1;
        }
        assert!(c.iter().all(|&x| (9_000..11_000).contains(&x)), "{c:?}");
        assert_eq!(a.below(0), 0);
        assert_eq!(a.below(1), 0);
    }

    #[test]
    fn thread_rng_advances() {
        let x = with_thread_rng(|r| r.next_u64());
        let y = with_thread_rng(|r| r.next_u64());
        assert_ne!(x, y);
        let other = std::thread::spawn(|| with_thread_rng(|r| r.next_u64()))
            .join()
            .unwrap();
        assert_ne!(other, x);
    }
}
