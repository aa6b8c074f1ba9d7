//! Access control and limits (SPEC §7): ACL denials give 403 on HTTP and a FIN right after
//! accept on TCP; limits give 503 with Retry-After on HTTP and a FIN on TCP; every refusal is
//! logged as a policy end with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, config, web_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Backend, Behavior, Ending, HttpBackend, read_to_end_classified};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    reply
}

#[tokio::test]
async fn tcp_acl_denial_is_a_fin_right_after_accept() {
    let backend = Backend::builder().behavior(Behavior::Greet).start().await;
    let cfg = config(
        &[backend.addr()],
        "acl = { deny = [\"127.0.0.0/8\"] }",
        "",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (data, ending) = read_to_end_classified(client).await;
    assert_eq!((data.len(), ending), (0, Ending::Fin));
    let r = h.record().await;
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (EndBy::Weir, EndHow::Policy, EndPhase::Accept)
    );
    assert_eq!(r.end_reason, Some("acl"));
    assert_eq!(backend.accepted(), 0, "nothing reached the server");
}

#[tokio::test]
async fn tcp_allow_list_admits_its_clients() {
    let backend = Backend::builder()
        .name("in")
        .behavior(Behavior::Greet)
        .start()
        .await;
    let cfg = config(
        &[backend.addr()],
        "acl = { allow = [\"127.0.0.1\", \"10.0.0.0/8\"] }",
        "",
        NO_CHECK,
    );
    let h = Harness::start(&cfg).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    let mut name = [0u8; 3];
    client.read_exact(&mut name).await.unwrap();
    assert_eq!(&name, b"in\n");
}

#[tokio::test]
async fn tcp_max_connections_closes_the_extra_connection() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let cfg = config(
        &[backend.addr()],
        "limits = { max_connections = 2 }",
        "",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        held.push(c);
    }
    let third = TcpStream::connect(h.addr).await.unwrap();
    let (_, ending) = read_to_end_classified(third).await;
    assert_eq!(ending, Ending::Fin);
    let r = h.record().await;
    assert_eq!(
        (r.end_how, r.end_reason),
        (EndHow::Policy, Some("limit:connections"))
    );
    // Once one closes, a new connection is served again.
    drop(held.pop());
    let _ = h.record().await;
    let mut again = TcpStream::connect(h.addr).await.unwrap();
    again.write_all(b"y").await.unwrap();
    let mut b = [0u8; 1];
    again.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"y");
}

#[tokio::test]
async fn http_acl_denial_is_403() {
    let backend = HttpBackend::builder().name("b").start().await;
    let cfg = web_config(
        "http",
        "127.0.0.1:0",
        &[backend.addr()],
        "acl = { allow = [\"10.0.0.0/8\"] }",
        "",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let reply = get(h.addr, "/").await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    let r = h.http_record().await;
    assert_eq!((r.status, r.upstream_status), (403, None));
    assert_eq!(
        (r.end_how, r.end_phase, r.end_reason),
        (EndHow::Policy, EndPhase::Accept, Some("acl"))
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn http_qps_over_the_limit_is_503_with_retry_after() {
    let backend = HttpBackend::builder().name("b").start().await;
    let cfg = web_config(
        "http",
        "127.0.0.1:0",
        &[backend.addr()],
        // qps = 1: the first request is the burst; the next ones, well within a second, are over.
        "limits = { qps = 1 }",
        "",
        NO_CHECK,
    );
    let mut h = Harness::start(&cfg).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = get(h.addr, "/").await;
        if reply.starts_with("HTTP/1.1 503") {
            assert!(
                reply.to_ascii_lowercase().contains("retry-after: 1"),
                "{reply}"
            );
        }
        statuses.push(reply[9..12].to_string());
    }
    assert_eq!(statuses, ["200", "503", "503", "503"]);
    let mut refused = 0;
    for _ in 0..4 {
        let r = h.http_record().await;
        if r.status == 503 {
            assert_eq!((r.upstream_status, r.end_reason), (None, Some("limit:qps")));
            refused += 1;
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(
        backend.requests(),
        1,
        "refused requests never reach the server"
    );
}

#[tokio::test]
async fn a_rule_qps_limits_only_its_rule() {
    let backend = HttpBackend::builder().name("b").start().await;
    let rule = "[[listener.rule]]\npath_prefix = \"/api/\"\ngroup = \"g\"\nqps = 1";
    let cfg = web_config("http", "127.0.0.1:0", &[backend.addr()], rule, "", NO_CHECK);
    let h = Harness::start(&cfg).await;
    let api: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(h.addr, "/api/x").await[9..12].to_string());
        }
        v
    };
    assert_eq!(api, ["200", "503", "503", "503"]);
    for _ in 0..4 {
        assert!(get(h.addr, "/other").await.starts_with("HTTP/1.1 200"));
    }
}
