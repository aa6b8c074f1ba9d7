//! Listener shapes: a port range binds every port; IPv6 loopback works; keep-alive settings
//! reach both the client and the server socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener as StdListener;

use common::{Harness, NO_CHECK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_testkit::{Backend, Behavior};

/// A first port such that `first..first+count` were all free a moment ago. Ranges are taken
/// below the kernel's ephemeral range (32768+), where busy machines keep their client sockets.
fn free_range(count: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..500u64 {
        let first = 20_000
            + ((seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(attempt * 7919))
                % 12_000) as u16;
        let held: Vec<_> = (first..first + count)
            .map(|p| StdListener::bind(("127.0.0.1", p)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return first;
        }
    }
    panic!("no free range of {count} ports");
}

async fn greeting(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut name = String::new();
    s.shutdown().await.unwrap();
    s.read_to_string(&mut name).await.unwrap();
    name
}

fn toml(
    bind: &str,
    server: std::net::SocketAddr,
    listener_extra: &str,
    group_extra: &str,
) -> String {
    format!(
        "[log]\naccess = \"off\"\n[[listener]]\nname = \"lb\"\nprotocol = \"tcp\"\nbind = \"{bind}\"\ngroup = \"g\"\n{listener_extra}\n\
         [[group]]\nname = \"g\"\nservers = [{{ address = \"{server}\" }}]\n{group_extra}\n[group.health_check]\n{NO_CHECK}\n"
    )
}

#[tokio::test]
async fn a_port_range_binds_every_port() {
    let backend = Backend::builder()
        .name("r")
        .behavior(Behavior::Greet)
        .start()
        .await;
    let first = free_range(3);
    let h = Harness::start(&toml(
        &format!("127.0.0.1:{first}-{}", first + 2),
        backend.addr(),
        "",
        "",
    ))
    .await;
    let addrs = h.proxy().local_addrs("lb");
    let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
    assert_eq!(ports, vec![first, first + 1, first + 2]);
    for addr in addrs {
        assert_eq!(greeting(addr).await, "r\n");
    }
}

#[tokio::test]
async fn ipv6_loopback_listener_and_server() {
    let Ok(probe) = StdListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    drop(probe);
    // An IPv6 backend that echoes its peer address, to show weir reached it over IPv6.
    let backend = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = backend.accept().await {
            let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes()).await;
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        }
    });
    let h = Harness::start(&toml("[::1]:0", backend_addr, "", "")).await;
    assert!(h.addr.is_ipv6());
    assert_eq!(greeting(h.addr).await, "::1\n");
}

/// The keep-alive timer `ss` shows for established sockets matching `filter`, in seconds.
fn keepalive_timers(filter: &str) -> Vec<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .args(filter.split(' '))
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split("timer:(keepalive,").nth(1)?.split(',').next())
        .filter_map(ss_seconds)
        .collect()
}

/// `ss` timer values: "41sec", "1min36sec", "2min", "500ms".
fn ss_seconds(text: &str) -> Option<u64> {
    let (minutes, rest) = match text.split_once("min") {
        Some((m, rest)) => (m.parse::<u64>().ok()?, rest),
        None => (0, text),
    };
    let seconds = match rest.strip_suffix("sec") {
        Some(s) => s.parse::<u64>().ok()?,
        None if rest.is_empty() || rest.ends_with("ms") => 0,
        None => return None,
    };
    Some(minutes * 60 + seconds)
}

#[tokio::test]
async fn keepalive_is_set_on_both_sides() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        panic!("`ss` (iproute2) is needed to read socket timers; .ci/run installs it");
    }
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let h = Harness::start(&toml(
        "127.0.0.1:0",
        backend.local_addr().unwrap(),
        "tcp_keepalive = { idle = \"41s\", interval = \"5s\", count = 3 }",
        "tcp_keepalive = { idle = \"97s\", interval = \"6s\", count = 4 }",
    ))
    .await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (server_side, _) = backend.accept().await.unwrap();
    // weir's accepted client socket: local port = the listener's. Timers count down from the
    // configured idle time, so allow a few seconds.
    let client_side = keepalive_timers(&format!("sport = :{}", h.addr.port()));
    assert!(
        client_side.iter().any(|t| (38..=41).contains(t)),
        "client-side timers: {client_side:?}"
    );
    // weir's socket toward the server: remote port = the backend's.
    let server_side_timers = keepalive_timers(&format!("dport = :{backend_port}"));
    assert!(
        server_side_timers.iter().any(|t| (94..=97).contains(t)),
        "server-side timers: {server_side_timers:?}"
    );
    drop((client, server_side));
}
