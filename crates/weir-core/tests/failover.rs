//! Failover and health: a refusing server costs clients nothing; a server failing its checks
//! leaves after `unhealthy_threshold` checks, comes back after `healthy_threshold`, and gets no
//! new connection while it is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, config, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use weir_core::upstream::ServerState;
use weir_testkit::{Backend, Behavior, refusing_addr};

#[tokio::test]
async fn one_refusing_server_of_three_costs_no_client_connection() {
    let a = Backend::builder()
        .name("a")
        .behavior(Behavior::Greet)
        .start()
        .await;
    let b = Backend::builder()
        .name("b")
        .behavior(Behavior::Greet)
        .start()
        .await;
    let dead = refusing_addr().await;
    let check = "kind = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"50ms\"";
    let h = Harness::start(&config(
        &[a.addr(), dead, b.addr()],
        "",
        "algorithm = \"rr\"",
        check,
    ))
    .await;
    let addr = h.addr;

    let mut clients = JoinSet::new();
    let mut served = 0;
    for i in 0..1000 {
        clients.spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            let mut name = [0u8; 2];
            s.read_exact(&mut name).await?;
            s.shutdown().await?;
            Ok::<_, std::io::Error>(name)
        });
        // At most 50 in flight.
        if i >= 50 {
            let name = clients
                .join_next()
                .await
                .unwrap()
                .unwrap()
                .expect("client served");
            assert!(matches!(&name, b"a\n" | b"b\n"));
            served += 1;
        }
    }
    while let Some(joined) = clients.join_next().await {
        joined.unwrap().expect("client served");
        served += 1;
    }
    assert_eq!(served, 1000);
    let s = &h.proxy().upstream("g").unwrap().servers[1];
    assert!(
        !s.is_healthy(),
        "the refusing server was marked down by its checks"
    );
}

/// An HTTP server standing for one backend, whose health answer the test controls. It serves
/// two paths: `/healthz` (weir's checks: 200 or 503) and anything else (client traffic through
/// the TCP listener: 200 with its name). For every check it notes weir's view of the server
/// when the check arrived — weir probes each server sequentially, so that view already
/// includes every earlier result.
struct ScriptedServer {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    /// (answered 503?, weir's view: healthy?) per check, in order.
    checks: Arc<Mutex<Vec<(bool, bool)>>>,
    traffic: Arc<AtomicUsize>,
    state: Arc<Mutex<Option<Arc<ServerState>>>>,
}

impl ScriptedServer {
    async fn start(name: &'static str) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = ScriptedServer {
            addr: listener.local_addr().unwrap(),
            failing: Arc::default(),
            checks: Arc::default(),
            traffic: Arc::default(),
            state: Arc::default(),
        };
        let shared = (
            server.failing.clone(),
            server.checks.clone(),
            server.traffic.clone(),
            server.state.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (failing, checks, traffic, state) = shared;
                    answer(stream, name, &failing, &checks, &traffic, &state).await;
                });
            }
        });
        server
    }

    /// weir's view of the server when each check answered with `fail` arrived.
    fn views(&self, fail: bool) -> Vec<bool> {
        self.checks
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| *f == fail)
            .map(|(_, up)| *up)
            .collect()
    }
}

async fn answer(
    mut s: TcpStream,
    name: &str,
    failing: &AtomicBool,
    checks: &Mutex<Vec<(bool, bool)>>,
    traffic: &AtomicUsize,
    state: &Mutex<Option<Arc<ServerState>>>,
) {
    let mut buf = vec![0u8; 1024];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, body) = if head.starts_with(b"GET /healthz ") {
        let fail = failing.load(Ordering::SeqCst);
        let up = state
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|s| s.is_healthy());
        checks.lock().unwrap().push((fail, up));
        (
            if fail {
                "503 Service Unavailable"
            } else {
                "200 OK"
            },
            String::new(),
        )
    } else {
        traffic.fetch_add(1, Ordering::SeqCst);
        ("200 OK", format!("{name}\n"))
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
    while s.read(&mut buf).await.unwrap_or(0) > 0 {}
}

/// One request through the proxy; returns the body (the server's name).
async fn fetch(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /traffic HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn thresholds_take_a_server_out_and_bring_it_back() {
    let steady = ScriptedServer::start("steady").await;
    let flaky = ScriptedServer::start("flaky").await;
    let check = "kind = \"http\"\npath = \"/healthz\"\ninterval = \"20ms\"\ntimeout = \"20ms\"\njitter = \"0ms\"\n\
                 healthy_threshold = 2\nunhealthy_threshold = 3";
    let h = Harness::start(&config(
        &[steady.addr, flaky.addr],
        "",
        "algorithm = \"rr\"",
        check,
    ))
    .await;
    let flaky_state = h.proxy().upstream("g").unwrap().servers[1].clone();
    *flaky.state.lock().unwrap() = Some(flaky_state.clone());
    assert!(eventually(Duration::from_secs(5), || flaky.views(false).len() >= 3).await);
    assert!(flaky_state.is_healthy());

    flaky.failing.store(true, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || !flaky_state.is_healthy()).await);
    // While it is down, no new connection goes to it.
    let before = flaky.traffic.load(Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(fetch(h.addr).await, "steady\n");
    }
    assert_eq!(
        flaky.traffic.load(Ordering::SeqCst),
        before,
        "no connection reached the down server"
    );

    flaky.failing.store(false, Ordering::SeqCst);
    let failing_views = flaky.views(true);
    assert!(eventually(Duration::from_secs(5), || flaky_state.is_healthy()).await);

    // weir had the server up when each of the first 3 failures arrived, down after.
    let up_while_failing = failing_views.iter().take_while(|up| **up).count();
    assert_eq!(
        up_while_failing, 3,
        "views during failures: {failing_views:?}"
    );
    assert!(failing_views[3..].iter().all(|up| !up), "{failing_views:?}");
    // After the failures: down during the first 2 successes, up from the 3rd.
    let recovering: Vec<bool> = flaky
        .views(false)
        .into_iter()
        .rev()
        .take_while(|up| *up)
        .collect();
    let all_ok = flaky.views(false);
    let after_failures = &all_ok[all_ok.len() - recovering.len() - 2..];
    assert_eq!(
        &after_failures[..2],
        &[false, false],
        "views during recovery: {all_ok:?}"
    );
    // And traffic is shared again.
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        names.insert(fetch(h.addr).await);
    }
    assert_eq!(names.len(), 2, "both servers serve again: {names:?}");
}
