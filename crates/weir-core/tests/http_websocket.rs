//! WebSocket (HTTP/1.1 Upgrade) through http and https listeners: the 101 is passed on, a
//! 1 MiB message comes back intact, and the tunnel's end is recorded like a TCP connection's —
//! including its own idle timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_core::end::{EndBy, EndHow, EndPhase, Record};
use weir_testkit::{Ending, blob_bytes, fnv1a64};

/// A server that answers an Upgrade request with 101 and then echoes bytes until EOF.
async fn upgrade_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                assert!(head.contains("upgrade: websocket"), "{head}");
                assert!(head.contains("connection: upgrade"), "{head}");
                s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                )
                .await
                .unwrap();
                let (mut rd, mut wr) = s.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    addr
}

fn config(backend: SocketAddr, protocol: &str, tls: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"lb\"\nprotocol = \"{protocol}\"\nbind = \"127.0.0.1:0\"\ngroup = \"g\"\n{extra}\n{tls}\n\
         [[group]]\nname = \"g\"\nservers = [{{ address = \"{backend}\" }}]\n[group.health_check]\nkind = \"none\"\n"
    )
}

const UPGRADE: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Sends the upgrade, checks the 101, then pushes `message` through and reads it back.
async fn echo_through<S: AsyncRead + AsyncWrite + Unpin>(stream: S, message: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    wr.write_all(UPGRADE).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        rd.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_lowercase().contains("upgrade: websocket"), "{head}");
    let len = message.len();
    let writer = async {
        wr.write_all(message).await.unwrap();
        wr
    };
    let reader = async {
        let mut back = vec![0u8; len];
        rd.read_exact(&mut back).await.unwrap();
        back
    };
    let (mut wr, back) = tokio::join!(writer, reader);
    wr.shutdown().await.unwrap();
    let mut rest = Vec::new();
    rd.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    back
}

async fn tunnel_record(h: &mut Harness) -> weir_core::end::ConnRecord {
    loop {
        match h.any_record().await {
            Record::Tcp(r) => return r,
            Record::Http(r) => assert_eq!(r.status, 101, "{r:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_echo_through_an_http_listener() {
    let backend = upgrade_echo_server().await;
    let mut h = Harness::start(&config(backend, "http", "", "")).await;
    let message = blob_bytes(1 << 20, 3);
    let client = TcpStream::connect(h.addr).await.unwrap();
    let back = echo_through(client, &message).await;
    assert_eq!(fnv1a64(&back), fnv1a64(&message), "1 MiB came back intact");

    let r = tunnel_record(&mut h).await;
    assert_eq!(r.protocol, "websocket");
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (EndBy::Client, EndHow::Fin, EndPhase::Tunnel),
        "{r:?}"
    );
    assert_eq!((r.bytes_in, r.bytes_out), (1 << 20, 1 << 20));
}

#[tokio::test]
async fn websocket_echo_through_an_https_listener() {
    let backend = upgrade_echo_server().await;
    let (tls_section, connector) = tls_fixture();
    let mut h = Harness::start(&config(backend, "https", &tls_section, "")).await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let message = blob_bytes(1 << 20, 4);
    let back = echo_through(tls, &message).await;
    assert_eq!(fnv1a64(&back), fnv1a64(&message));
    let r = tunnel_record(&mut h).await;
    assert_eq!(
        (r.end_phase, r.bytes_in),
        (EndPhase::Tunnel, 1 << 20),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_with_fin_and_recorded() {
    let backend = upgrade_echo_server().await;
    let mut h = Harness::start(&config(
        backend,
        "http",
        "",
        "tunnel_idle_timeout = \"300ms\"",
    ))
    .await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(UPGRADE).await.unwrap();
    let (data, ending) = weir_testkit::read_to_end_classified(&mut client).await;
    assert!(String::from_utf8_lossy(&data).starts_with("HTTP/1.1 101"));
    assert_eq!(ending, Ending::Fin, "weir closes an idle tunnel with FIN");
    let r = tunnel_record(&mut h).await;
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (EndBy::Weir, EndHow::Timeout, EndPhase::Tunnel),
        "{r:?}"
    );
    assert_eq!(r.end_reason, Some("tunnel_idle_timeout"));
}

/// A self-signed certificate for `localhost` written to a temp dir, the `[listener.tls]`
/// section naming it, and a client that trusts it.
fn tls_fixture() -> (String, tokio_rustls::TlsConnector) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir =
        std::env::temp_dir().join(format!("weir-ws-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let section = format!(
        "[listener.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cert_path.display(),
        key_path.display()
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (section, tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn a_declined_upgrade_is_an_ordinary_response() {
    // A server that answers the upgrade with 400 and keeps serving HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno\n")
                        .await;
                }
            });
        }
    });
    let mut h = Harness::start(&config(backend, "http", "", "")).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(UPGRADE).await.unwrap();
    let mut reply = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 400"));
    let r = h.http_record().await;
    assert_eq!((r.status, r.upstream_status), (400, Some(400)));
    // The connection is still HTTP: a plain request on it is answered.
    client
        .write_all(b"GET /again HTTP/1.1\r\nHost: example\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 400"));
}
