//! End-to-end tests: a TLS server built from [`server_config`] on loopback, rustls clients.
//!
//! Certificates are generated with rcgen at test time and written to a temporary directory.
//! This file holds the shared fixtures; the tests are in the submodules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weir_config::{CertificateFiles, Tls, TlsVersion};

use super::*;

mod errors;
mod handshake;
mod resumption;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `names` (the first is also the CN).
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn generate(names: &[&str]) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn files(dir: &TempDir, name: &str, cert: &TestCert) -> CertificateFiles {
    CertificateFiles {
        cert: dir.write(&format!("{name}.crt"), &cert.cert_pem),
        key: dir.write(&format!("{name}.key"), &cert.key_pem),
    }
}

fn tls(certificates: Vec<CertificateFiles>, min_version: TlsVersion) -> Tls {
    Tls {
        certificates,
        min_version,
        session_lifetime: Duration::from_secs(300),
    }
}

/// Serves TLS on 127.0.0.1: each connection gets "<version> <alpn or ->" and a close_notify.
async fn serve(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (version, alpn) = describe(tls.get_ref().1);
                let alpn = alpn.map_or("-".into(), |p| String::from_utf8_lossy(p).into_owned());
                let version = version.as_str();
                let _ = tls.write_all(format!("{version} {alpn}").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Everything the client saw of one connection.
#[derive(Debug)]
struct Outcome {
    peer: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    kind: Option<HandshakeKind>,
    server_says: String,
}

async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<Outcome> {
    let run = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?;
        let mut said = String::new();
        // Reading also processes the TLS 1.3 tickets sent after the handshake.
        tls.read_to_string(&mut said).await?;
        let conn = tls.get_ref().1;
        Ok(Outcome {
            peer: conn.peer_certificates().unwrap()[0].clone(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            kind: conn.handshake_kind(),
            server_says: said,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), run).await?
}

fn client(
    roots: &[&TestCert],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).unwrap();
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth()
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// Accepts any server certificate (signatures still checked): to see what an unknown name gets.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
