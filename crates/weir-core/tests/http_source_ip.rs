//! Source-IP persistence (maglev) on an HTTP listener: every request from one client reaches
//! the same server, whatever connection it comes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{Harness, NO_CHECK, web_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_testkit::HttpBackend;

#[tokio::test]
async fn maglev_keeps_a_client_on_one_server_over_http() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c", "d"] {
        backends.push(HttpBackend::builder().name(name).start().await);
    }
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let cfg = web_config(
        "http",
        "127.0.0.1:0",
        &addrs,
        "",
        "algorithm = \"maglev\"",
        NO_CHECK,
    );
    let h = Harness::start(&cfg).await;
    let mut served_by = HashSet::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        let name = reply.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-backend: ")
                .map(str::to_string)
        });
        served_by.insert(name.expect("X-Backend header"));
    }
    assert_eq!(served_by.len(), 1, "one client, one server: {served_by:?}");
    let total: usize = backends.iter().map(|b| b.requests()).sum();
    assert_eq!(total, 40);
}
