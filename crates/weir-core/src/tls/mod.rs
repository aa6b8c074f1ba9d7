//! TLS for https listeners: certificates by SNI, ALPN, versions, resumption.
//!
//! - [`server_config`] turns a listener's `[listener.tls]` into a rustls [`ServerConfig`]:
//!   every certificate loaded from its PEM files and checked against its key, chosen per
//!   connection by the client's SNI name ([`SniResolver`]), ALPN `h2` then `http/1.1`, TLS 1.2
//!   and 1.3 (or 1.3 only) and resumption valid for `session_lifetime` ([`session`]).
//! - [`detect`] tells a TLS ClientHello from plain HTTP sent to an https port and answers the
//!   latter with a readable 400.
//! - [`describe`] names what a connection negotiated, for logs.
//!
//! Cryptography is always rustls' ring provider, passed explicitly: nothing here reads or sets
//! the process-wide default provider.

pub mod detect;
pub mod resolver;
pub mod session;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ParsedCertificate, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ProtocolVersion, ServerConfig, ServerConnection};
use weir_config::{Tls, TlsVersion};

pub use detect::{FirstBytes, classify, peek_first_bytes, reject_plain_http};
pub use resolver::SniResolver;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN list [`server_config`] offers, in preference order: `h2`, then `http/1.1`.
pub const DEFAULT_ALPN: &[&[u8]] = &[ALPN_H2, ALPN_HTTP1];

/// TLS 1.2 sessions kept for session-ID resumption (the cache evicts beyond this).
const SESSION_CACHE_SIZE: usize = 4096;

/// A problem loading TLS material; names the file and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `certificates` is empty.
    #[error("no certificates configured: an https listener needs at least one")]
    NoCertificates,
    /// The certificate file could not be read.
    #[error("certificate file {}: cannot read: {error}", path.display())]
    CertRead {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The certificate file holds malformed PEM.
    #[error("certificate file {}: invalid PEM: {detail}", path.display())]
    CertPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("certificate file {}: no PEM certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The first certificate in the file is not a usable X.509 certificate.
    #[error("certificate file {}: not a valid X.509 certificate: {detail}", path.display())]
    CertInvalid {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key file could not be read.
    #[error("key file {}: cannot read: {error}", path.display())]
    KeyRead {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The key file holds malformed PEM.
    #[error("key file {}: invalid PEM: {detail}", path.display())]
    KeyPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// The key file holds no private key section.
    #[error("key file {}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of a kind the crypto provider cannot sign with.
    #[error("key file {}: unsupported private key: {detail}", path.display())]
    KeyUnsupported {
        /// The file.
        path: PathBuf,
        /// What the provider said.
        detail: String,
    },
    /// The key is not the private half of the certificate's public key.
    #[error("certificate {} does not match its key {}", cert.display(), key.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration (not expected with the built-in choices).
    #[error("cannot set up TLS: {detail}")]
    Setup {
        /// What rustls said.
        detail: String,
    },
}

/// Builds the rustls server config for a listener, offering [`DEFAULT_ALPN`].
///
/// Every certificate is loaded from its PEM files and chosen per connection by SNI (see
/// [`SniResolver`]); versions are TLS 1.2 and 1.3, or 1.3 only; sessions resume for
/// `session_lifetime`, both from a bounded stateful cache (TLS 1.2 session IDs) and from
/// stateless tickets (see [`session`]).
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_alpn(tls, DEFAULT_ALPN)
}

/// Same as [`server_config`] with the ALPN list given, in preference order (e.g. only
/// [`ALPN_HTTP1`] when a listener disables h2). An empty list disables ALPN.
pub fn server_config_with_alpn(tls: &Tls, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keys = tls
        .certificates
        .iter()
        .map(|files| load_certified_key(&files.cert, &files.key, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let resolver = SniResolver::new(keys)?;

    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(session::LifetimeSessionStore::new(
        ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
        tls.session_lifetime,
    ));
    let ticketer = rustls::crypto::ring::Ticketer::new().map_err(setup)?;
    config.ticketer = Arc::new(session::LifetimeTicketer::new(
        ticketer,
        tls.session_lifetime,
    ));
    Ok(Arc::new(config))
}

/// A TLS protocol version, as logs name it. One byte: every https connection keeps one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiatedVersion {
    /// TLS 1.0.
    V1_0,
    /// TLS 1.1.
    V1_1,
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
    /// Not one weir names (rustls negotiates only 1.2 and 1.3).
    Unknown,
    /// No version chosen yet: the handshake is not over.
    None,
}

impl NegotiatedVersion {
    /// `TLSv1.3` etc.
    pub fn as_str(self) -> &'static str {
        match self {
            NegotiatedVersion::V1_0 => "TLSv1.0",
            NegotiatedVersion::V1_1 => "TLSv1.1",
            NegotiatedVersion::V1_2 => "TLSv1.2",
            NegotiatedVersion::V1_3 => "TLSv1.3",
            NegotiatedVersion::Unknown => "unknown",
            NegotiatedVersion::None => "none",
        }
    }
}

/// The negotiated protocol of an accepted connection: `(NegotiatedVersion::V1_3, Some(b"h2"))`.
///
/// The version is [`NegotiatedVersion::None`] before the handshake has chosen one.
pub fn describe(conn: &ServerConnection) -> (NegotiatedVersion, Option<&[u8]>) {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => NegotiatedVersion::V1_3,
        Some(ProtocolVersion::TLSv1_2) => NegotiatedVersion::V1_2,
        Some(ProtocolVersion::TLSv1_1) => NegotiatedVersion::V1_1,
        Some(ProtocolVersion::TLSv1_0) => NegotiatedVersion::V1_0,
        Some(_) => NegotiatedVersion::Unknown,
        None => NegotiatedVersion::None,
    };
    (version, conn.alpn_protocol())
}

fn setup(err: rustls::Error) -> TlsError {
    TlsError::Setup {
        detail: err.to_string(),
    }
}

/// Loads one certificate chain (leaf first) and its key, and checks they belong together.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_chain(cert_path)?;
    let key = load_key(key_path)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|err| TlsError::KeyUnsupported {
                path: key_path.to_path_buf(),
                detail: err.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key that cannot report its public half is accepted, as rustls itself does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        Err(err) => Err(TlsError::CertInvalid {
            path: cert_path.to_path_buf(),
            detail: err.to_string(),
        }),
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|error| TlsError::CertRead {
        path: path.to_path_buf(),
        error,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::CertPem {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    };
    if let Err(err) = ParsedCertificate::try_from(leaf) {
        return Err(TlsError::CertInvalid {
            path: path.to_path_buf(),
            detail: err.to_string(),
        });
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|error| TlsError::KeyRead {
        path: path.to_path_buf(),
        error,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::KeyPem {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}
