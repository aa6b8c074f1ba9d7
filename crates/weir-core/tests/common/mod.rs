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

/// A running proxy with its record stream.
pub struct Harness {
    proxy: Option<Proxy>,
    pub addr: SocketAddr,
    records: mpsc::UnboundedReceiver<Record>,
}

impl Harness {
    /// Starts a proxy from a full TOML config whose first listener is named `lb` and binds
    /// `127.0.0.1:0`.
    pub async fn start(toml: &str) -> Harness {
        let loaded = match weir_config::parse(toml, "test.toml") {
            Ok(loaded) => loaded,
            Err(diags) => panic!("test config rejected:\n{diags}\n---\n{toml}"),
        };
        let (tx, records) = mpsc::unbounded_channel();
        let proxy = Proxy::start(&loaded.config, Arc::new(ChannelSink(tx)))
            .await
            .expect("proxy starts");
        let addr = proxy.local_addrs("lb")[0];
        Harness {
            proxy: Some(proxy),
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
protocol = "tcp"
bind = "127.0.0.1:0"
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
