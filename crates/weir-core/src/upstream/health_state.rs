//! Consecutive-result thresholds that turn probe results into up/down.
//!
//! A [`HealthTracker`] holds one server's health as seen by the active
//! checker: `rise` consecutive successes bring a down server up, `fall`
//! consecutive failures take an up server down. Pure state, no I/O.

/// Health of a server as decided by the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The server may take new connections.
    Up,
    /// The server is out of rotation.
    Down,
}

/// Turns a stream of probe results into up/down transitions.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    state: Health,
    initial: bool,
    successes: u32,
    failures: u32,
}

impl HealthTracker {
    /// `rise` consecutive successes bring a Down server Up; `fall` consecutive
    /// failures take an Up server Down (both ≥ 1; a 0 is treated as 1).
    pub fn new(rise: u32, fall: u32) -> Self {
        HealthTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Up,
            initial: true,
            successes: 0,
            failures: 0,
        }
    }

    /// The current state (Up, unconfirmed, before the first result).
    pub fn state(&self) -> Health {
        self.state
    }

    /// True until the first result arrives.
    pub fn is_initial(&self) -> bool {
        self.initial
    }

    /// Records one probe result; returns `Some(new_state)` exactly when the
    /// state flips.
    ///
    /// The state starts Up but unconfirmed: the very first result decides at
    /// once (a first failure → Down immediately and is reported as a flip; a
    /// first success confirms Up, no flip).
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        if self.initial {
            return self.record_first(ok);
        }
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == Health::Down && self.successes >= self.rise {
                return Some(self.flip(Health::Up));
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == Health::Up && self.failures >= self.fall {
                return Some(self.flip(Health::Down));
            }
        }
        None
    }

    fn record_first(&mut self, ok: bool) -> Option<Health> {
        self.initial = false;
        if ok {
            None
        } else {
            Some(self.flip(Health::Down))
        }
    }

    fn flip(&mut self, to: Health) -> Health {
        self.state = to;
        self.successes = 0;
        self.failures = 0;
        to
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn feed(t: &mut HealthTracker, results: &[bool]) -> Vec<Option<Health>> {
        results.iter().map(|&ok| t.record(ok)).collect()
    }

    #[test]
    fn starts_up_and_initial() {
        let t = HealthTracker::new(2, 3);
        assert_eq!(t.state(), Health::Up);
        assert!(t.is_initial());
    }

    #[test]
    fn first_success_confirms_up_without_flip() {
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.record(true), None);
        assert!(!t.is_initial());
        assert_eq!(t.state(), Health::Up);
    }

    #[test]
    fn first_failure_goes_down_at_once() {
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.record(false), Some(Health::Down));
        assert!(!t.is_initial());
        assert_eq!(t.state(), Health::Down);
    }

    #[test]
    fn fall_threshold_takes_down() {
        let mut t = HealthTracker::new(2, 3);
        t.record(true);
        let got = feed(&mut t, &[false, false, false, false]);
        assert_eq!(got, vec![None, None, Some(Health::Down), None]);
        assert_eq!(t.state(), Health::Down);
    }

    #[test]
    fn rise_threshold_brings_up() {
        let mut t = HealthTracker::new(2, 3);
        t.record(false);
        let got = feed(&mut t, &[true, true, true]);
        assert_eq!(got, vec![None, Some(Health::Up), None]);
        assert_eq!(t.state(), Health::Up);
    }

    #[test]
    fn interleaved_results_reset_counters() {
        let mut t = HealthTracker::new(3, 3);
        t.record(true);
        // Never three failures in a row: stays up.
        let got = feed(&mut t, &[false, false, true, false, false, true, false]);
        assert!(got.iter().all(Option::is_none));
        assert_eq!(t.state(), Health::Up);
        let got = feed(&mut t, &[false, false]);
        assert_eq!(got, vec![None, Some(Health::Down)]);
        // Never three successes in a row: stays down.
        let got = feed(&mut t, &[true, true, false, true, true, false]);
        assert!(got.iter().all(Option::is_none));
        assert_eq!(t.state(), Health::Down);
        let got = feed(&mut t, &[true, true, true]);
        assert_eq!(got, vec![None, None, Some(Health::Up)]);
    }

    #[test]
    fn thresholds_of_one_flip_on_every_change() {
        let mut t = HealthTracker::new(1, 1);
        let got = feed(&mut t, &[true, false, false, true, true, false]);
        let want = vec![
            None,
            Some(Health::Down),
            None,
            Some(Health::Up),
            None,
            Some(Health::Down),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut t = HealthTracker::new(0, 0);
        t.record(true);
        assert_eq!(t.record(false), Some(Health::Down));
        assert_eq!(t.record(true), Some(Health::Up));
    }
}
