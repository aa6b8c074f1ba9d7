//! Session resumption (TLS 1.3 tickets, TLS 1.2 tickets and session IDs) and the lifetime
//! clients are told.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12Resumption};

use super::*;

/// A client session store that remembers what the server told it about each session.
#[derive(Debug)]
struct Recording {
    inner: ClientSessionMemoryCache,
    seen: Mutex<Vec<String>>,
}

impl ClientSessionStore for Recording {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.seen.lock().unwrap().push(format!("{value:?}"));
        self.inner.set_tls12_session(name, value);
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name);
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.seen.lock().unwrap().push(format!("{value:?}"));
        self.inner.insert_tls13_ticket(name, value);
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// Connects twice with one session store; returns both handshake kinds and what was stored.
async fn twice(
    versions: &[&'static rustls::SupportedProtocolVersion],
    tls12: Tls12Resumption,
) -> (Vec<Option<HandshakeKind>>, Vec<String>) {
    let dir = TempDir::new();
    let a = generate(&["a.test"]);
    let config = tls(vec![files(&dir, "a", &a)], TlsVersion::Tls12);
    let addr = serve(server_config(&config).unwrap()).await;
    let store = Arc::new(Recording {
        inner: ClientSessionMemoryCache::new(32),
        seen: Mutex::new(Vec::new()),
    });
    let mut client = client(&[&a], versions);
    client.resumption = Resumption::store(store.clone()).tls12_resumption(tls12);
    let client = Arc::new(client);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        kinds.push(connect(addr, &client, "a.test").await.unwrap().kind);
    }
    let seen = store.seen.lock().unwrap().clone();
    (kinds, seen)
}

#[tokio::test]
async fn tls13_resumes_with_a_ticket_of_our_lifetime() {
    let only13 = &[&rustls::version::TLS13][..];
    let (kinds, seen) = twice(only13, Tls12Resumption::SessionIdOrTickets).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
    assert!(!seen.is_empty());
    // The lifetime the client was told is session_lifetime, not the ticketer's 12 hours.
    assert!(
        seen.iter().all(|s| s.contains("lifetime_secs: 300")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn tls12_resumes_with_tickets() {
    let (kinds, seen) = twice(ONLY_12, Tls12Resumption::SessionIdOrTickets).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
    assert!(
        seen.iter().any(|s| s.contains("lifetime_secs: 300")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn tls12_resumes_with_session_ids() {
    // No tickets: the server's stateful cache is what resumes the session.
    let (kinds, _) = twice(ONLY_12, Tls12Resumption::SessionIdOnly).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
}
