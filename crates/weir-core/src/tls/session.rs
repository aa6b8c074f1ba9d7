//! Session resumption limited to the listener's `session_lifetime`.
//!
//! rustls offers two stores and neither knows our lifetime: the ring ticketer rotates its keys
//! every 6 hours and tells clients 12 hours, and the in-memory session cache keeps entries until
//! it evicts them. Both are wrapped here:
//!
//! - [`LifetimeTicketer`] reports `session_lifetime` as the ticket lifetime (the hint clients
//!   use to drop tickets) and refuses tickets older than that. The inner ticketer still rotates
//!   and erases its keys, so a lifetime beyond ~6 hours is cut short by rotation.
//! - [`LifetimeSessionStore`] (TLS 1.2 session IDs) refuses and drops entries older than
//!   `session_lifetime`.
//!
//! Both stamp the issue time (Unix seconds, 8 bytes big-endian) in front of the session data;
//! for tickets the stamp is inside the encryption, so clients can neither read nor change it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::{ProducesTickets, StoresServerSessions};

/// The longest ticket lifetime TLS 1.3 allows (RFC 8446 §4.6.1): 7 days.
const MAX_LIFETIME_SECS: u32 = 7 * 24 * 60 * 60;

/// `lifetime` as whole seconds for the wire: at least 1, at most 7 days.
pub fn lifetime_secs(lifetime: Duration) -> u32 {
    let secs = lifetime.as_secs().min(u64::from(MAX_LIFETIME_SECS));
    u32::try_from(secs).unwrap_or(MAX_LIFETIME_SECS).max(1)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stamp(now: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The data behind a stamp no older than `lifetime` seconds; `None` if expired or malformed.
fn unstamp(mut stamped: Vec<u8>, now: u64, lifetime: u32) -> Option<Vec<u8>> {
    let (issued, _) = stamped.split_first_chunk::<8>()?;
    let issued = u64::from_be_bytes(*issued);
    // A clock that went backwards makes the age 0, not a huge number.
    if now.saturating_sub(issued) >= u64::from(lifetime) {
        return None;
    }
    stamped.drain(..8);
    Some(stamped)
}

/// Stateless tickets valid for `session_lifetime`, encrypted by an inner ticketer.
#[derive(Debug)]
pub struct LifetimeTicketer {
    inner: Arc<dyn ProducesTickets>,
    lifetime: u32,
}

impl LifetimeTicketer {
    /// Wraps `inner` (e.g. `rustls::crypto::ring::Ticketer::new()`), reporting and enforcing
    /// `lifetime` (rounded down to seconds, at least 1 s, at most 7 days).
    pub fn new(inner: Arc<dyn ProducesTickets>, lifetime: Duration) -> Self {
        LifetimeTicketer {
            inner,
            lifetime: lifetime_secs(lifetime),
        }
    }

    fn encrypt_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        self.inner.encrypt(&stamp(now, plain))
    }

    fn decrypt_at(&self, cipher: &[u8], now: u64) -> Option<Vec<u8>> {
        unstamp(self.inner.decrypt(cipher)?, now, self.lifetime)
    }
}

impl ProducesTickets for LifetimeTicketer {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, now_secs())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, now_secs())
    }
}

/// A server-side session store (TLS 1.2 session IDs) whose entries expire after
/// `session_lifetime`.
#[derive(Debug)]
pub struct LifetimeSessionStore {
    inner: Arc<dyn StoresServerSessions>,
    lifetime: u32,
}

impl LifetimeSessionStore {
    /// Wraps `inner` (e.g. a bounded `ServerSessionMemoryCache`).
    pub fn new(inner: Arc<dyn StoresServerSessions>, lifetime: Duration) -> Self {
        LifetimeSessionStore {
            inner,
            lifetime: lifetime_secs(lifetime),
        }
    }

    fn get_at(&self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        let stamped = self.inner.get(key)?;
        let value = unstamp(stamped, now, self.lifetime);
        if value.is_none() {
            // Expired: drop it now rather than waiting for eviction.
            self.inner.take(key);
        }
        value
    }

    fn take_at(&self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        unstamp(self.inner.take(key)?, now, self.lifetime)
    }
}

impl StoresServerSessions for LifetimeSessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, stamp(now_secs(), &value))
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_at(key, now_secs())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.take_at(key, now_secs())
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rustls::server::ServerSessionMemoryCache;

    fn ticketer(lifetime: Duration) -> LifetimeTicketer {
        LifetimeTicketer::new(rustls::crypto::ring::Ticketer::new().unwrap(), lifetime)
    }

    #[test]
    fn reports_the_configured_lifetime() {
        assert_eq!(ticketer(Duration::from_secs(300)).lifetime(), 300);
        assert_eq!(ticketer(Duration::from_millis(90_999)).lifetime(), 90);
        assert_eq!(ticketer(Duration::from_millis(10)).lifetime(), 1);
        assert_eq!(
            ticketer(Duration::from_secs(30 * 24 * 3600)).lifetime(),
            MAX_LIFETIME_SECS
        );
        let t = ticketer(Duration::from_secs(300));
        assert!(t.enabled());
        // The inner ticketer's own, longer lifetime is not what clients are told.
        assert_ne!(
            rustls::crypto::ring::Ticketer::new().unwrap().lifetime(),
            300
        );
    }

    #[test]
    fn tickets_round_trip_until_they_expire() {
        let t = ticketer(Duration::from_secs(300));
        let cipher = t.encrypt_at(b"session", 1_000).unwrap();
        assert!(!cipher.windows(7).any(|w| w == b"session"), "encrypted");
        assert_eq!(t.decrypt_at(&cipher, 1_000).unwrap(), b"session");
        assert_eq!(t.decrypt_at(&cipher, 1_299).unwrap(), b"session");
        assert_eq!(t.decrypt_at(&cipher, 1_300), None);
        // Clock stepped back: still valid.
        assert_eq!(t.decrypt_at(&cipher, 900).unwrap(), b"session");
        // Through the trait, with the real clock.
        let fresh = t.encrypt(b"now").unwrap();
        assert_eq!(t.decrypt(&fresh).unwrap(), b"now");
        // Tampered or foreign tickets do not decrypt.
        let mut bad = cipher.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(t.decrypt_at(&bad, 1_000), None);
        assert_eq!(t.decrypt_at(b"short", 1_000), None);
        assert_eq!(
            ticketer(Duration::from_secs(300)).decrypt_at(&cipher, 1_000),
            None
        );
    }

    #[test]
    fn session_store_expires_entries() {
        let store =
            LifetimeSessionStore::new(ServerSessionMemoryCache::new(16), Duration::from_secs(60));
        assert!(store.can_cache());
        assert!(store.put(b"id".to_vec(), b"value".to_vec()));
        assert_eq!(store.get(b"id").unwrap(), b"value");
        let now = now_secs();
        assert_eq!(store.get_at(b"id", now + 59).unwrap(), b"value");
        assert_eq!(store.get_at(b"id", now + 61), None);
        // The expired entry was dropped.
        assert_eq!(store.get_at(b"id", now), None);

        assert!(store.put(b"t".to_vec(), b"once".to_vec()));
        assert_eq!(store.take_at(b"t", now + 61), None);
        assert!(store.put(b"t".to_vec(), b"once".to_vec()));
        assert_eq!(store.take(b"t").unwrap(), b"once");
        assert_eq!(store.take(b"t"), None);
        assert_eq!(store.get(b"missing"), None);
    }
}
