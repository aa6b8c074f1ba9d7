//! weir leaves no reset behind: a backend that records how every connection ended sees only
//! FINs from weir's health checks (run by the real scheduler), idle-timeout closes and
//! shutdown. (The 1,000-probe runs per check kind are in `upstream::health::probe`'s tests;
//! the control that the backend does see a client's RST is in weir-testkit's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, NO_CHECK, config};
use tokio::net::TcpStream;
use weir_testkit::{Ending, Mode, RecordingBackend, read_to_end_classified};

#[tokio::test]
async fn scheduled_checks_of_every_kind_end_with_fin() {
    for (mode, check) in [
        (Mode::Silent, "kind = \"tcp\""),
        (Mode::HttpClose, "kind = \"http\""),
        (Mode::HttpKeepOpen, "kind = \"http\""),
        (Mode::HttpBannerFirst, "kind = \"http\""),
        (Mode::Banner(b"220 ready\r\n".to_vec()), "kind = \"tcp\""),
    ] {
        let backend = RecordingBackend::start(mode.clone()).await;
        let check = format!("{check}\ninterval = \"10ms\"\ntimeout = \"200ms\"\njitter = \"0ms\"");
        let h = Harness::start(&config(&[backend.addr()], "", "", &check)).await;
        assert!(
            backend.wait_for_endings(50, Duration::from_secs(20)).await,
            "{mode:?}: 50 checks ended"
        );
        let mut h = h;
        h.shutdown(Duration::from_secs(1)).await;
        let counts = backend.counts();
        assert_eq!(counts.rst, 0, "{mode:?}: {counts:?}");
        assert_eq!(counts.other, 0, "{mode:?}: {counts:?}");
    }
}

#[tokio::test]
async fn idle_closes_and_shutdown_leave_no_reset() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let mut h = Harness::start(&config(
        &[backend.addr()],
        "idle_timeout = \"100ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        let c = TcpStream::connect(h.addr).await.unwrap();
        clients.push(tokio::spawn(read_to_end_classified(c)));
    }
    for c in clients {
        assert_eq!(c.await.unwrap().1, Ending::Fin);
    }
    assert!(backend.wait_for_endings(50, Duration::from_secs(10)).await);

    // Then 50 connections still open at shutdown.
    let mut clients = Vec::new();
    let h2 = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    for _ in 0..50 {
        let c = TcpStream::connect(h2.addr).await.unwrap();
        clients.push(tokio::spawn(read_to_end_classified(c)));
    }
    assert!(backend.wait_accepted(100, Duration::from_secs(10)).await);
    let mut h2 = h2;
    assert!(h2.shutdown(Duration::from_millis(100)).await.forced);
    for c in clients {
        assert_eq!(
            c.await.unwrap().1,
            Ending::Fin,
            "clients see FIN at shutdown"
        );
    }
    assert!(backend.wait_for_endings(100, Duration::from_secs(10)).await);
    let counts = backend.counts();
    assert_eq!(
        (counts.fin, counts.rst, counts.other),
        (100, 0, 0),
        "{counts:?}"
    );
    h.shutdown(Duration::from_secs(1)).await;
}
