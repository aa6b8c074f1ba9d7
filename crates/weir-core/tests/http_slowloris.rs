//! Slowloris (SPEC §3, `request_header_timeout`): a client that trickles its request head one
//! byte at a time gets 408 once the header timeout has passed since the head started, and is
//! closed with FIN — while other clients are served normally meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Harness, NO_CHECK, http_config, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Ending, H1Client, HttpBackend, read_response, read_to_end_classified};

/// What the slow client saw.
struct Slow {
    answer: Vec<u8>,
    ending: Ending,
    took: Duration,
    bytes_sent: usize,
}

/// Sends a request head one byte every 100 ms until weir ends the connection (or 10 s pass).
async fn slow_client(addr: SocketAddr) -> Slow {
    let head = format!(
        "GET /loris HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(200)
    )
    .into_bytes();
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            for byte in head {
                if stop.load(Ordering::Acquire) || wr.write_all(&[byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (wr, sent)
        })
    };
    let (answer, ending) =
        tokio::time::timeout(Duration::from_secs(10), read_to_end_classified(&mut rd))
            .await
            .unwrap_or((Vec::new(), Ending::Other));
    let took = started.elapsed();
    stop.store(true, Ordering::Release);
    let (mut wr, bytes_sent) = writer.await.unwrap();
    let _ = wr.shutdown().await;
    Slow {
        answer,
        ending,
        took,
        bytes_sent,
    }
}

#[tokio::test]

async fn a_slow_head_gets_408_while_others_are_served() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(
        &[backend.addr()],
        "request_header_timeout = \"500ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let slow = tokio::spawn(slow_client(h.addr));

    // Meanwhile, 20 other clients, 5 requests each on a keep-alive connection.
    let others: Vec<_> = (0..20)
        .map(|c| {
            let addr = h.addr;
            tokio::spawn(async move {
                let mut client = H1Client::connect(addr).await.unwrap();
                for i in 0..5 {
                    let r = client.get(&format!("/c{c}/{i}"), &[]).await.unwrap();
                    assert_eq!((r.status, r.text().as_str()), (200, "b0\n"));
                }
            })
        })
        .collect();
    for other in others {
        within(10, other).await.unwrap();
    }
    assert!(
        !slow.is_finished(),
        "the other clients were all served while the slow one was still sending"
    );
    assert_eq!(backend.requests(), 100);

    let slow = within(15, slow).await.unwrap();
    let r = read_response(&slow.answer).await.unwrap_or_else(|e| {
        panic!(
            "no 408 ({e}) after {:?} and {} bytes: {:?}",
            slow.took,
            slow.bytes_sent,
            String::from_utf8_lossy(&slow.answer)
        )
    });
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.closes());
    assert_eq!(slow.ending, Ending::Fin, "closed with FIN");
    assert!(
        slow.took >= Duration::from_millis(500) && slow.took < Duration::from_secs(3),
        "408 after the 500 ms header timeout, not later: {:?}",
        slow.took
    );
    assert!(slow.bytes_sent < 100, "{} bytes", slow.bytes_sent);
    assert_eq!(backend.requests_for("/loris"), 0);

    let rec = h.http_record_where(|r| r.status == 408).await;
    assert_eq!(
        (rec.end_by, rec.end_how, rec.end_phase, rec.end_reason),
        (
            EndBy::Weir,
            EndHow::Timeout,
            EndPhase::Request,
            Some("request_header_timeout")
        ),
        "{rec:?}"
    );
    assert_eq!(rec.upstream_status, None);
}
