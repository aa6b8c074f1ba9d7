//! Certificates by SNI, ALPN and protocol versions, seen from a rustls client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn certificate_chosen_by_sni() {
    let dir = TempDir::new();
    let (a, b) = (generate(&["a.test"]), generate(&["*.b.test"]));
    let config = tls(
        vec![files(&dir, "a", &a), files(&dir, "b", &b)],
        TlsVersion::Tls12,
    );
    let addr = serve(server_config(&config).unwrap()).await;
    let verified = Arc::new(client(&[&a, &b], BOTH));

    assert_eq!(
        connect(addr, &verified, "a.test").await.unwrap().peer,
        a.der
    );
    assert_eq!(
        connect(addr, &verified, "x.b.test").await.unwrap().peer,
        b.der
    );

    // No SNI at all: the default (first) certificate, still valid for the name we expect.
    let mut no_sni = client(&[&a, &b], BOTH);
    no_sni.enable_sni = false;
    let got = connect(addr, &Arc::new(no_sni), "a.test").await.unwrap();
    assert_eq!(got.peer, a.der);

    // A name no certificate serves: the default too (so a verifying client rejects it).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let any = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    let any = Arc::new(any);
    assert_eq!(
        connect(addr, &any, "unknown.test").await.unwrap().peer,
        a.der
    );
    assert_eq!(connect(addr, &any, "b.test").await.unwrap().peer, a.der);
    assert_eq!(connect(addr, &any, "X.B.TEST").await.unwrap().peer, b.der);
    assert!(connect(addr, &verified, "unknown.test").await.is_err());

    // The default is whichever comes first in the configuration.
    let reversed = tls(
        vec![files(&dir, "b2", &b), files(&dir, "a2", &a)],
        TlsVersion::Tls12,
    );
    let addr = serve(server_config(&reversed).unwrap()).await;
    assert_eq!(
        connect(addr, &any, "unknown.test").await.unwrap().peer,
        b.der
    );
    assert_eq!(
        connect(addr, &verified, "a.test").await.unwrap().peer,
        a.der
    );
}

#[tokio::test]
async fn alpn_prefers_h2_then_http1() {
    let dir = TempDir::new();
    let a = generate(&["a.test"]);
    let config = tls(vec![files(&dir, "a", &a)], TlsVersion::Tls12);
    let addr = serve(server_config(&config).unwrap()).await;

    let mut both = client(&[&a], BOTH);
    both.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    let got = connect(addr, &Arc::new(both), "a.test").await.unwrap();
    assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(got.server_says, "TLSv1.3 h2");

    let mut http1 = client(&[&a], BOTH);
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = Arc::new(http1);
    let got = connect(addr, &http1, "a.test").await.unwrap();
    assert_eq!(got.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(got.server_says, "TLSv1.3 http/1.1");

    let got = connect(addr, &Arc::new(client(&[&a], BOTH)), "a.test")
        .await
        .unwrap();
    assert_eq!(got.alpn, None);
    assert_eq!(got.server_says, "TLSv1.3 -");

    // A listener without h2 answers http/1.1 even to a client preferring h2.
    let addr = serve(server_config_with_alpn(&config, &[ALPN_HTTP1]).unwrap()).await;
    let mut h2_first = client(&[&a], BOTH);
    h2_first.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let got = connect(addr, &Arc::new(h2_first), "a.test").await.unwrap();
    assert_eq!(got.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn tls12_and_tls13_and_min_version() {
    let dir = TempDir::new();
    let a = generate(&["a.test"]);
    let config = tls(vec![files(&dir, "a", &a)], TlsVersion::Tls12);
    let addr = serve(server_config(&config).unwrap()).await;
    let only13 = &[&rustls::version::TLS13][..];
    let got = connect(addr, &Arc::new(client(&[&a], ONLY_12)), "a.test")
        .await
        .unwrap();
    assert_eq!(got.server_says, "TLSv1.2 -");
    let got = connect(addr, &Arc::new(client(&[&a], only13)), "a.test")
        .await
        .unwrap();
    assert_eq!(got.server_says, "TLSv1.3 -");

    let strict = tls(vec![files(&dir, "a13", &a)], TlsVersion::Tls13);
    let addr = serve(server_config(&strict).unwrap()).await;
    let err = connect(addr, &Arc::new(client(&[&a], ONLY_12)), "a.test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    let got = connect(addr, &Arc::new(client(&[&a], BOTH)), "a.test")
        .await
        .unwrap();
    assert_eq!(got.server_says, "TLSv1.3 -");
}
