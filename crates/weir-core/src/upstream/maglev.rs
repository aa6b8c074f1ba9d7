//! Maglev consistent-hashing lookup table (Eisenbud et al., NSDI 2016), weighted.
//!
//! Every entry (a server key and its weight) gets a permutation of the table
//! slots from two stable hashes of its key (`offset`, `skip`); entries then
//! take turns claiming their next free preferred slot until the table is full.
//! Weights decide how often an entry takes a turn: in each round an entry's
//! credit grows by `w / w_max` and it takes a turn whenever the credit reaches 1.
//!
//! The table depends only on the keys and weights: entries are put in a
//! canonical order (by key, then weight) before filling, so two nodes with the
//! same configuration build identical tables whatever order they list the
//! servers in. Pure computation, no I/O.

use std::fmt;

use super::select::{hash_bytes, hash_bytes_seeded};

/// Default table size: a prime well above 100 × any sensible group size.
pub const DEFAULT_TABLE_SIZE: usize = 65537;

/// Marks a slot nobody has claimed yet while the table is being filled.
const EMPTY: u32 = u32::MAX;

/// Seed of the second key hash (the permutation's `skip`).
const SKIP_SEED: u64 = 0x5bd1_e995_9e37_79b9;

/// An immutable Maglev lookup table: slot → index of an entry.
#[derive(Clone)]
pub struct MaglevTable {
    slots: Vec<u32>,
}

/// One entry's walk through its permutation of the slots.
struct Permutation {
    next: u64,
    skip: u64,
}

impl Permutation {
    fn new(key: &str, size: u64) -> Self {
        let offset = hash_bytes(key.as_bytes()) % size;
        let skip = hash_bytes_seeded(SKIP_SEED, key.as_bytes()) % (size - 1) + 1;
        Permutation { next: offset, skip }
    }

    /// The entry's next preferred slot (each slot once per `size` calls when
    /// `size` is prime).
    fn advance(&mut self, size: u64) -> usize {
        let slot = self.next;
        self.next = (self.next + self.skip) % size;
        // `slot < size`, and `size` came from a usize.
        slot as usize
    }
}

impl MaglevTable {
    /// Builds the table for `entries` (server key, weight).
    ///
    /// `size` is rounded up to the next prime (at least 2) so that every
    /// permutation visits every slot; use [`DEFAULT_TABLE_SIZE`]. An entry of
    /// weight 0 gets no slot, unless every weight is 0, in which case all count
    /// as 1. With no entries the table is empty.
    pub fn new(entries: &[(&str, u32)], size: usize) -> Self {
        let entries = &entries[..entries.len().min(EMPTY as usize)];
        if entries.is_empty() {
            return MaglevTable { slots: Vec::new() };
        }
        let size = next_prime(size.max(2));
        let order = canonical_order(entries);
        let weights = effective_weights(entries, &order);
        let slots = fill(entries, &order, &weights, size);
        MaglevTable { slots }
    }

    /// The entry (index into the `entries` given to [`MaglevTable::new`]) that
    /// owns `hash`. Returns 0 on an empty table: check [`MaglevTable::is_empty`].
    pub fn lookup(&self, hash: u64) -> usize {
        match self.len() {
            0 => 0,
            len => self.slot((hash % len as u64) as usize),
        }
    }

    /// Number of slots (0 when there were no entries).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the table has no slots (built from no entries).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry owning slot `i` (taken modulo [`MaglevTable::len`]); 0 on an
    /// empty table.
    pub fn slot(&self, i: usize) -> usize {
        match self.len() {
            0 => 0,
            len => self.slots[i % len] as usize,
        }
    }
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Entry indices sorted by (key, weight): the fill order, independent of the
/// order the caller listed them in.
fn canonical_order(entries: &[(&str, u32)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].cmp(&entries[b]));
    order
}

/// Weights in canonical order; all 1 when every weight is 0.
fn effective_weights(entries: &[(&str, u32)], order: &[usize]) -> Vec<u64> {
    let all_zero = entries.iter().all(|&(_, w)| w == 0);
    order
        .iter()
        .map(|&i| if all_zero { 1 } else { u64::from(entries[i].1) })
        .collect()
}

/// Fills `size` slots: rounds of turns, an entry's credit growing by its
/// weight and a turn costing `w_max`.
fn fill(entries: &[(&str, u32)], order: &[usize], weights: &[u64], size: usize) -> Vec<u32> {
    let size64 = size as u64;
    let w_max = weights.iter().copied().max().unwrap_or(1);
    let mut perms: Vec<Permutation> = order
        .iter()
        .map(|&i| Permutation::new(entries[i].0, size64))
        .collect();
    let mut credit = vec![0u64; order.len()];
    let mut slots = vec![EMPTY; size];
    let mut filled = 0;
    while filled < size {
        for (k, &entry) in order.iter().enumerate() {
            credit[k] += weights[k];
            if credit[k] < w_max {
                continue;
            }
            credit[k] -= w_max;
            claim(&mut slots, &mut perms[k], entry as u32, size64);
            filled += 1;
            if filled == size {
                break;
            }
        }
    }
    slots
}

/// Gives `entry` the first free slot of its permutation. Terminates because
/// the caller only asks while a slot is free and a prime-size permutation
/// visits every slot.
fn claim(slots: &mut [u32], perm: &mut Permutation, entry: u32, size: u64) {
    loop {
        let slot = perm.advance(size);
        if slots[slot] == EMPTY {
            slots[slot] = entry;
            return;
        }
    }
}

/// The smallest prime ≥ `n` (n ≥ 2).
fn next_prime(n: usize) -> usize {
    (n..).find(|&c| is_prime(c)).unwrap_or(n)
}

// `usize::is_multiple_of` needs Rust 1.87; the workspace declares 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn is_prime(n: usize) -> bool {
    if n < 4 {
        return n >= 2;
    }
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::select::{Rng, hash_ip};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect()
    }

    fn equal(keys: &[String]) -> Vec<(&str, u32)> {
        keys.iter().map(|k| (k.as_str(), 1)).collect()
    }

    fn clients(n: usize, seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| hash_ip(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))))
            .collect()
    }

    fn slot_counts(t: &MaglevTable, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for i in 0..t.len() {
            counts[t.slot(i)] += 1;
        }
        counts
    }

    #[test]
    fn primes() {
        assert_eq!(next_prime(2), 2);
        assert_eq!(next_prime(8), 11);
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(DEFAULT_TABLE_SIZE), DEFAULT_TABLE_SIZE);
        assert!(!is_prime(9) && !is_prime(1) && is_prime(97));
    }

    #[test]
    fn size_is_rounded_to_a_prime_and_every_slot_filled() {
        let k = keys(3);
        let t = MaglevTable::new(&equal(&k), 100);
        assert_eq!(t.len(), 101);
        assert!((0..t.len()).all(|i| t.slot(i) < 3));
    }

    #[test]
    fn empty_table() {
        let t = MaglevTable::new(&[], DEFAULT_TABLE_SIZE);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(42), 0);
    }

    #[test]
    fn equal_weights_get_equal_slots() {
        let k = keys(7);
        let t = MaglevTable::new(&equal(&k), DEFAULT_TABLE_SIZE);
        let counts = slot_counts(&t, 7);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "{counts:?}");
    }

    #[test]
    fn same_table_whatever_the_entry_order() {
        let k = keys(6);
        let fwd = equal(&k);
        let mut rev = fwd.clone();
        rev.reverse();
        let a = MaglevTable::new(&fwd, DEFAULT_TABLE_SIZE);
        let b = MaglevTable::new(&rev, DEFAULT_TABLE_SIZE);
        for i in 0..a.len() {
            assert_eq!(fwd[a.slot(i)].0, rev[b.slot(i)].0);
        }
    }

    #[test]
    fn known_layout_is_stable() {
        // Guards the table against accidental changes (hash, permutation,
        // fill order): nodes of different versions must still agree.
        let k = keys(3);
        let t = MaglevTable::new(&equal(&k), 13);
        let layout: Vec<usize> = (0..t.len()).map(|i| t.slot(i)).collect();
        assert_eq!(layout, KNOWN_LAYOUT);
    }

    const KNOWN_LAYOUT: [usize; 13] = [2, 1, 0, 0, 1, 2, 1, 0, 2, 2, 1, 0, 0];

    #[test]
    fn zero_weight_gets_no_slot_unless_all_zero() {
        let t = MaglevTable::new(&[("a", 1), ("b", 0)], 101);
        assert_eq!(slot_counts(&t, 2), vec![101, 0]);
        let t = MaglevTable::new(&[("a", 0), ("b", 0)], 101);
        let c = slot_counts(&t, 2);
        assert!(c[0].abs_diff(c[1]) <= 1, "{c:?}");
    }

    #[test]
    fn weighted_slot_shares() {
        let t = MaglevTable::new(&[("a", 1), ("b", 2), ("c", 3)], DEFAULT_TABLE_SIZE);
        let counts = slot_counts(&t, 3);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = counts[i] as f64 / t.len() as f64;
            assert!((got - want).abs() < 0.02, "entry {i}: {got} vs {want}");
        }
    }

    #[test]
    fn lookup_distribution_is_even() {
        for n in [3, 5, 10] {
            let k = keys(n);
            let t = MaglevTable::new(&equal(&k), DEFAULT_TABLE_SIZE);
            let mut counts = vec![0usize; n];
            let cs = clients(100_000, 7);
            for &c in &cs {
                counts[t.lookup(c)] += 1;
            }
            let want = cs.len() as f64 / n as f64;
            for &c in &counts {
                let rel = (c as f64 - want).abs() / want;
                assert!(rel < 0.05, "n={n}: {counts:?}");
            }
        }
    }

    /// Fraction of clients whose server changes when server `removed` leaves.
    fn moved_fraction(n: usize, removed: usize, cs: &[u64]) -> f64 {
        let k = keys(n);
        let all = equal(&k);
        let mut rest = all.clone();
        rest.remove(removed);
        let before = MaglevTable::new(&all, DEFAULT_TABLE_SIZE);
        let after = MaglevTable::new(&rest, DEFAULT_TABLE_SIZE);
        let moved = cs
            .iter()
            .filter(|&&c| all[before.lookup(c)].0 != rest[after.lookup(c)].0)
            .count();
        moved as f64 / cs.len() as f64
    }

    #[test]
    fn removing_a_server_moves_few_clients() {
        let cs = clients(100_000, 11);
        for n in [5, 10] {
            for removed in 0..n {
                let f = moved_fraction(n, removed, &cs);
                assert!(f >= 1.0 / n as f64 * 0.9, "n={n} removed={removed}: {f}");
                assert!(f <= 1.2 / n as f64, "n={n} removed={removed}: {f}");
            }
        }
    }
}
