//! Loading errors: each names the file and says what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn error(config: &Tls) -> String {
    server_config(config).unwrap_err().to_string()
}

#[test]
fn loading_errors_name_the_file() {
    let dir = TempDir::new();
    let a = generate(&["a.test"]);
    let b = generate(&["b.test"]);
    let good = files(&dir, "a", &a);

    assert!(error(&tls(Vec::new(), TlsVersion::Tls12)).contains("no certificates configured"));

    let missing = dir.0.join("missing.pem");
    let msg = error(&tls(
        vec![CertificateFiles {
            cert: missing.clone(),
            key: good.key.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert!(
        msg.starts_with(&format!(
            "certificate file {}: cannot read: ",
            missing.display()
        )),
        "{msg}"
    );

    let msg = error(&tls(
        vec![CertificateFiles {
            cert: good.cert.clone(),
            key: missing.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert!(
        msg.starts_with(&format!("key file {}: cannot read: ", missing.display())),
        "{msg}"
    );

    // A key where the certificate should be.
    let msg = error(&tls(
        vec![CertificateFiles {
            cert: good.key.clone(),
            key: good.key.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert_eq!(
        msg,
        format!(
            "certificate file {}: no PEM certificate found",
            good.key.display()
        )
    );

    let msg = error(&tls(
        vec![CertificateFiles {
            cert: good.cert.clone(),
            key: good.cert.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert!(
        msg.starts_with(&format!(
            "key file {}: no PEM private key found",
            good.cert.display()
        )),
        "{msg}"
    );

    let garbled = dir.write(
        "garbled.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let msg = error(&tls(
        vec![CertificateFiles {
            cert: garbled.clone(),
            key: good.key.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert!(
        msg.starts_with(&format!(
            "certificate file {}: invalid PEM",
            garbled.display()
        )),
        "{msg}"
    );

    let not_x509 = dir.write(
        "notx509.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let msg = error(&tls(
        vec![CertificateFiles {
            cert: not_x509.clone(),
            key: good.key.clone(),
        }],
        TlsVersion::Tls12,
    ));
    assert!(
        msg.starts_with(&format!(
            "certificate file {}: not a valid X.509 certificate",
            not_x509.display()
        )),
        "{msg}"
    );

    let other_key = dir.write("b.key", &b.key_pem);
    let msg = error(&tls(
        vec![
            good.clone(),
            CertificateFiles {
                cert: good.cert.clone(),
                key: other_key.clone(),
            },
        ],
        TlsVersion::Tls12,
    ));
    assert_eq!(
        msg,
        format!(
            "certificate {} does not match its key {}",
            good.cert.display(),
            other_key.display()
        )
    );

    assert!(server_config(&tls(vec![good], TlsVersion::Tls13)).is_ok());
}
