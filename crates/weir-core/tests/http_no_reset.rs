//! weir never resets a server connection on HTTP listeners either (SPEC §5 target, §11): over
//! 1,000 proxied requests on pooled keep-alive connections — with pauses long enough for weir
//! to close idle pooled connections itself — and a shutdown at the end, the RST-recording
//! backends see every connection end with FIN and none with a reset. The clients are closed
//! with FIN too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, http_config, within};
use weir_testkit::{Ending, H1Client, HttpBackend};

const LANES: usize = 4;
const PHASES: usize = 5;
const PER_PHASE_PER_LANE: usize = 50;

#[tokio::test]
async fn no_reset_from_weir_over_1000_pooled_requests_idle_closes_and_shutdown() {
    let backends = [
        HttpBackend::start("b0").await,
        HttpBackend::start("b1").await,
    ];
    let mut h = Harness::start(&http_config(
        &[backends[0].addr(), backends[1].addr()],
        "max_requests_per_connection = 10000",
        "algorithm = \"rr\"\npool = { idle_timeout = \"200ms\" }",
        NO_CHECK,
    ))
    .await;

    let mut clients = Vec::new();
    for _ in 0..LANES {
        clients.push(H1Client::connect(h.addr).await.unwrap());
    }
    let mut idle_closed = Vec::new();
    for phase in 0..PHASES {
        // The lanes send at the same time, so weir holds several connections per server.
        let mut tasks = Vec::new();
        for (lane, mut client) in clients.drain(..).enumerate() {
            tasks.push(tokio::spawn(async move {
                for i in 0..PER_PHASE_PER_LANE {
                    let r = client
                        .get(&format!("/p{phase}/l{lane}/{i}"), &[])
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200);
                    assert!(!r.closes());
                }
                client
            }));
        }
        for task in tasks {
            clients.push(within(30, task).await.unwrap());
        }
        // Idle beyond the pool's idle timeout (and a sweep): weir closes the pooled
        // connections itself.
        let open_before: usize = backends.iter().map(|b| b.connections()).sum();
        for b in &backends {
            assert!(
                b.wait_all_ended(Duration::from_secs(5)).await,
                "{}: idle pooled connections are closed",
                b.name()
            );
        }
        let ended: usize = backends.iter().map(|b| b.endings().len()).sum();
        assert_eq!(
            ended, open_before,
            "every idle pooled connection was closed"
        );
        idle_closed.push(ended);
    }
    assert_eq!(
        backends.iter().map(|b| b.requests()).sum::<usize>(),
        LANES * PHASES * PER_PHASE_PER_LANE
    );
    assert!(
        idle_closed[0] >= 2,
        "weir closed pooled connections while idle: {idle_closed:?}"
    );

    // One more round, then shut down with pooled connections open and clients connected.
    for client in &mut clients {
        assert_eq!(client.get("/last", &[]).await.unwrap().status, 200);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.read_to_end().await }))
        .collect();
    let report = h.shutdown(Duration::from_secs(5)).await;
    assert!(!report.forced, "idle keep-alive clients are closed at once");
    for reader in readers {
        let (rest, ending) = within(10, reader).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(ending, Ending::Fin, "clients are closed with FIN");
    }

    for b in &backends {
        assert!(
            b.wait_all_ended(Duration::from_secs(10)).await,
            "{}: every connection ended",
            b.name()
        );
        let endings = b.endings();
        assert_eq!(
            b.resets(),
            0,
            "{}: weir reset server connections: {endings:?}",
            b.name()
        );
        assert!(
            endings.iter().all(|e| *e == Ending::Fin),
            "{}: {endings:?}",
            b.name()
        );
        assert_eq!(b.unanswered(), 0);
    }
    let total: usize = backends.iter().map(|b| b.connections()).sum();
    println!("no-reset: {total} server connections, all ended with FIN");
    assert!(h.drain_records().len() <= LANES * (PHASES * PER_PHASE_PER_LANE + 1));
}
