//! Choosing a certificate by the client's SNI name.
//!
//! The names a certificate serves are read from the certificate itself (its subject alternative
//! names, wildcards included) by rustls-webpki, the same check a client makes. Decisions are
//! cached per name in a small bounded map, so a stream of made-up names costs at most a
//! recomputation, never unbounded memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// Names whose decision is remembered; the map is emptied when it reaches this size.
const CACHE_LIMIT: usize = 1024;

/// Certificates with the names each is valid for, read from the certificate itself.
///
/// For each SNI name the first certificate valid for it is chosen; with no SNI name or no
/// match, the first certificate (the default).
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Lower-cased SNI name → index into `keys`.
    cache: Mutex<HashMap<Box<str>, usize>>,
}

impl SniResolver {
    /// A resolver over `keys`, in configuration order; the first is the default.
    pub fn new(keys: Vec<Arc<CertifiedKey>>) -> Result<Self, TlsError> {
        if keys.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        Ok(SniResolver {
            keys,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Index of the certificate served for this SNI name (`None`: the client sent none).
    pub fn index_for(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name else {
            return 0;
        };
        let name = name.to_ascii_lowercase();
        if let Some(&index) = self.lock_cache().get(name.as_str()) {
            return index;
        }
        let index = self.first_valid_for(&name).unwrap_or(0);
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(name.into_boxed_str(), index);
        index
    }

    /// The certificate served for this SNI name.
    pub fn key_for(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        self.keys.get(self.index_for(server_name))
    }

    fn first_valid_for(&self, name: &str) -> Option<usize> {
        let server_name = ServerName::try_from(name).ok()?;
        self.keys.iter().position(|key| {
            key.end_entity_cert()
                .ok()
                .and_then(|der| ParsedCertificate::try_from(der).ok())
                .is_some_and(|cert| rustls::client::verify_server_name(&cert, &server_name).is_ok())
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, usize>> {
        // The map holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.lock_cache().len()
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.key_for(client_hello.server_name()).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let der =
            rustls::pki_types::PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        let signing = provider.key_provider.load_private_key(der.into()).unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        ))
    }

    fn resolver() -> SniResolver {
        SniResolver::new(vec![
            key(&["a.test"]),
            key(&["*.b.test"]),
            key(&["c.test", "x.b.test"]),
        ])
        .unwrap()
    }

    #[test]
    fn names_wildcards_and_default() {
        let r = resolver();
        assert_eq!(r.index_for(None), 0);
        assert_eq!(r.index_for(Some("a.test")), 0);
        assert_eq!(r.index_for(Some("A.Test")), 0);
        // The first valid certificate wins: *.b.test comes before the exact x.b.test.
        assert_eq!(r.index_for(Some("x.b.test")), 1);
        assert_eq!(r.index_for(Some("y.b.test")), 1);
        assert_eq!(r.index_for(Some("c.test")), 2);
        // A wildcard covers exactly one label, and not the bare domain.
        assert_eq!(r.index_for(Some("b.test")), 0);
        assert_eq!(r.index_for(Some("z.y.b.test")), 0);
        assert_eq!(r.index_for(Some("unknown.test")), 0);
        assert_eq!(r.index_for(Some("not a name")), 0);
        // Cached answers are the same.
        assert_eq!(r.index_for(Some("y.b.test")), 1);
        assert_eq!(r.index_for(Some("unknown.test")), 0);
    }

    #[test]
    fn cache_is_bounded() {
        let r = resolver();
        for i in 0..3 * CACHE_LIMIT {
            let name = format!("n{i}.b.test");
            assert_eq!(r.index_for(Some(&name)), 1);
            assert!(r.cached() <= CACHE_LIMIT);
        }
        assert!(r.cached() >= 1);
    }

    #[test]
    fn empty_is_an_error() {
        let err = SniResolver::new(Vec::new()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates));
    }
}
