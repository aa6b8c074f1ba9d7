//! Shared harness for weir-core's end-to-end tests: start a proxy from a TOML snippet (so the
//! config parser is on the path too), collect its end records, talk to it over loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_core::Proxy;
use weir_core::access_log::ChannelSink;
use weir_core::end::{ConnRecord, HttpRecord, Record};
use weir_core::workers::Workers;

/// A running proxy with its record stream.
pub struct Harness {
    proxy: Option<Proxy>,
    /// The worker serving connections, when [`Harness::start`] made one.
    workers: Option<Workers>,
    pub addr: SocketAddr,
    records: mpsc::UnboundedReceiver<Record>,
}

impl Harness {
    /// Starts a proxy from a full TOML config whose first listener is named `lb` and binds
    /// `127.0.0.1:0`.
    /// Connections are served as `weir run` serves them: on a worker thread of their own, which
    /// batches its small sends (`runtime.io_uring`).
    pub async fn start(toml: &str) -> Harness {
        let workers = Workers::start(1, true).expect("a worker thread");
        let mut harness = Harness::start_on(toml, &workers.handles()).await;
        harness.workers = Some(workers);
        harness
    }

    /// As [`Harness::start`], serving connections on `workers` (none: the test's runtime).
    pub async fn start_on(toml: &str, workers: &[tokio::runtime::Handle]) -> Harness {
        let loaded = match weir_config::parse(toml, "test.toml") {
            Ok(loaded) => loaded,
            Err(diags) => panic!("test config rejected:\n{diags}\n---\n{toml}"),
        };
        let (tx, records) = mpsc::unbounded_channel();
        let proxy = Proxy::start_on(&loaded.config, Arc::new(ChannelSink(tx)), workers)
            .await
            .expect("proxy starts");
        let addr = proxy.local_addrs("lb")[0];
        Harness {
            proxy: Some(proxy),
            workers: None,
            addr,
            records,
        }
    }

    /// The running proxy.
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("proxy still running")
    }

    /// Takes the proxy out (to shut it down from another task).
    pub fn take_proxy(&mut self) -> Proxy {
        self.proxy.take().expect("proxy still running")
    }

    /// Shuts the proxy down with `grace`.
    pub async fn shutdown(&mut self, grace: Duration) -> weir_core::ShutdownReport {
        self.take_proxy().shutdown(grace).await
    }

    /// The next record of any kind (fails the test after 10 s).
    pub async fn any_record(&mut self) -> Record {
        tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("an end record within 10 s")
            .expect("record channel open")
    }

    /// The next TCP connection record.
    pub async fn record(&mut self) -> ConnRecord {
        match self.any_record().await {
            Record::Tcp(r) => r,
            Record::Http(r) => panic!("expected a TCP record, got {r:?}"),
        }
    }

    /// The next HTTP request record.
    pub async fn http_record(&mut self) -> HttpRecord {
        match self.any_record().await {
            Record::Http(r) => r,
            Record::Tcp(r) => panic!("expected an HTTP record, got {r:?}"),
        }
    }

    /// Records that have arrived so far, without waiting.
    pub fn drain_records(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        while let Ok(r) = self.records.try_recv() {
            out.push(r);
        }
        out
    }
}

/// A TOML config: one tcp listener `lb` on 127.0.0.1:0 in front of group `g` with `servers`.
/// `listener_extra` and `group_extra` are extra `key = value` lines; `check` is the body of
/// `[group.health_check]`.
pub fn config(
    servers: &[SocketAddr],
    listener_extra: &str,
    group_extra: &str,
    check: &str,
) -> String {
    web_config(
        "tcp",
        "127.0.0.1:0",
        servers,
        listener_extra,
        group_extra,
        check,
    )
}

/// Health checks off.
pub const NO_CHECK: &str = r#"kind = "none""#;

/// Waits until `cond` holds, checking every 5 ms, for up to `timeout`.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === HTTP and HTTPS listeners ===

/// A TOML config: one `protocol` listener `lb` on `bind` in front of group `g` with `servers`
/// (named `s0`, `s1`…). `listener_extra` goes at the end of the listener (it may end with a
/// `[listener.tls]` table); `group_extra` are extra keys of the group; `check` is the body of
/// `[group.health_check]`.
pub fn web_config(
    protocol: &str,
    bind: &str,
    servers: &[SocketAddr],
    listener_extra: &str,
    group_extra: &str,
    check: &str,
) -> String {
    let list: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{{ address = \"{a}\", name = \"s{i}\" }}"))
        .collect();
    format!(
        r#"
[log]
access = "off"

[[listener]]
name = "lb"
protocol = "{protocol}"
bind = "{bind}"
group = "g"
{listener_extra}

[[group]]
name = "g"
servers = [{}]
{group_extra}

[group.health_check]
{check}
"#,
        list.join(", ")
    )
}

/// An `http` listener `lb` on 127.0.0.1:0 in front of group `g` (see [`web_config`]).
pub fn http_config(
    servers: &[SocketAddr],
    listener_extra: &str,
    group_extra: &str,
    check: &str,
) -> String {
    web_config(
        "http",
        "127.0.0.1:0",
        servers,
        listener_extra,
        group_extra,
        check,
    )
}

/// The `[listener.tls]` table for certificate files, in order (the first is the default).
pub fn tls_table(certs: &[&CertFiles]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                c.cert.display(),
                c.key.display()
            )
        })
        .collect();
    format!("[listener.tls]\ncertificates = [{}]\n", list.join(", "))
}

impl Harness {
    /// The next HTTP record for which `pred` holds, skipping others (fails after 10 s).
    pub async fn http_record_where(
        &mut self,
        mut pred: impl FnMut(&HttpRecord) -> bool,
    ) -> HttpRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let record = tokio::time::timeout(left, self.records.recv())
                .await
                .expect("a matching HTTP record within 10 s")
                .expect("record channel open");
            if let Record::Http(r) = record
                && pred(&r)
            {
                return r;
            }
        }
    }

    /// The next `n` HTTP records (fails after 10 s without one).
    pub async fn http_records(&mut self, n: usize) -> Vec<HttpRecord> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.http_record().await);
        }
        out
    }
}

/// `upstream_status` as the access log writes it: the code, or `-`.
pub fn upstream_status_text(r: &HttpRecord) -> String {
    let value = serde_json::to_value(r).expect("records serialize");
    match &value["upstream_status"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Asserts a record's status, upstream status (as logged: a code or `-`) and end fields.
#[track_caller]
pub fn assert_http_end(
    r: &HttpRecord,
    status: u16,
    upstream_status: &str,
    end: (
        weir_core::end::EndBy,
        weir_core::end::EndHow,
        weir_core::end::EndPhase,
    ),
    reason: Option<&str>,
) {
    assert_eq!(
        (
            r.status,
            upstream_status_text(r).as_str(),
            (r.end_by, r.end_how, r.end_phase),
            r.end_reason
        ),
        (status, upstream_status, end, reason),
        "record: {r:?}"
    );
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-it-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
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

/// A self-signed certificate written to files, and its DER for clients to trust.
pub struct CertFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

/// Generates a self-signed certificate for `names` (the first is also the CN) into `dir`.
pub fn make_cert(dir: &TempDir, file: &str, names: &[&str]) -> CertFiles {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    CertFiles {
        cert: dir.write(&format!("{file}.crt"), &cert.pem()),
        key: dir.write(&format!("{file}.key"), &key.serialize_pem()),
        der: cert.der().clone(),
    }
}

/// A rustls client config trusting `roots`, offering `alpn`.
pub fn tls_client(roots: &[&CertFiles], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Connects to `addr` over TLS with SNI `name` (fails the test after 10 s).
pub async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("TLS handshake within 10 s")
        .expect("TLS handshake succeeds")
}

/// Runs `fut`, failing the test if it takes longer than `secs` seconds.
pub async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
}

/// The values of header `name` (any case) in a request head echoed by the test backend's
/// `/headers` (request line, then one `Name: value` per line).
pub fn echoed(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The proxy first: its listeners and tasks live on the worker.
        drop(self.proxy.take());
        if let Some(workers) = self.workers.take() {
            workers.stop();
        }
    }
}
