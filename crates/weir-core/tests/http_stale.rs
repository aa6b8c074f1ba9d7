//! The stale keep-alive race (SPEC §4): a server closes an idle keep-alive connection just as
//! weir reuses it. weir must hide it from clients: a GET that fails that way on a reused
//! connection before any response byte is sent again once on a fresh connection; a server that
//! announces `Keep-Alive: timeout=N` never gets a connection reused that late at all; a POST
//! caught in the race is not retried — the client gets 502 and the record names the server's
//! close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, NO_CHECK, http_config, within};
use tokio::sync::Barrier;
use weir_core::end::{EndBy, EndHow, EndPhase, Record};
use weir_testkit::{H1Client, HttpBackend};

/// Client connections to weir sending at the same time.
const LANES: usize = 8;
/// Rounds of (synchronised pause, then requests).
const ROUNDS: usize = 16;
/// Requests per lane over all rounds: 8 × 250 = 2,000.
const PER_LANE: usize = 250;

/// The pause before each round's racing request, in µs: the server closes connections idle
/// for 1 s, so most pauses step through the milliseconds around that second in quarter
/// milliseconds (the timers of weir and the server have millisecond ticks), two are wider.
const PAUSES_US: [u64; ROUNDS] = [
    998_500, 998_750, 999_000, 999_250, 999_500, 999_750, 1_000_000, 1_000_250, 1_000_500,
    1_000_750, 1_001_000, 1_001_250, 1_001_500, 1_002_000, 970_000, 1_030_000,
];

/// Sleeps until `target` with sub-millisecond precision: a timer for most of the wait, then a
/// thread sleep (tokio's timers tick in whole milliseconds).
async fn sleep_until_precisely(target: std::time::Instant) {
    let coarse = target.saturating_duration_since(std::time::Instant::now());
    if coarse > Duration::from_millis(3) {
        tokio::time::sleep(coarse - Duration::from_millis(3)).await;
    }
    tokio::task::spawn_blocking(move || {
        let left = target.saturating_duration_since(std::time::Instant::now());
        std::thread::sleep(left);
    })
    .await
    .unwrap();
}

/// What one lane saw.
#[derive(Default)]
struct LaneResult {
    ok: usize,
    errors: Vec<String>,
}

/// One client lane. In each round: wait for every lane, send one request at the same moment as
/// the others (so weir's pooled server connections all become idle together), pause about a
/// second, then send the rest of this round's share back to back on a keep-alive connection
/// (reconnecting when weir closes it). The first request after the pause meets a server
/// connection idle for about the server's idle time: the race.
async fn lane(
    addr: SocketAddr,
    lane: usize,
    backend_name: String,
    barrier: Arc<Barrier>,
) -> LaneResult {
    let mut result = LaneResult::default();
    let mut client = H1Client::connect(addr).await.unwrap();
    for (round, pause) in PAUSES_US.iter().enumerate() {
        barrier.wait().await;
        let quota = PER_LANE * (round + 1) / ROUNDS - PER_LANE * round / ROUNDS;
        let mut synced = std::time::Instant::now();
        for i in 0..quota {
            if i == 1 {
                sleep_until_precisely(synced + Duration::from_micros(*pause)).await;
            }
            let path = format!("/lane{lane}/round{round}/req{i}");
            let answer = tokio::time::timeout(Duration::from_secs(5), client.get(&path, &[]))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        match i {
                            1 => format!("no answer within 5 s (after a {pause} µs pause)"),
                            _ => "no answer within 5 s".to_string(),
                        },
                    ))
                });
            match answer {
                Ok(r) if r.status == 200 && r.text() == format!("{backend_name}\n") => {
                    if i == 0 {
                        synced = std::time::Instant::now();
                    }
                    result.ok += 1;
                    if r.closes() {
                        client = H1Client::connect(addr).await.unwrap();
                    }
                }
                Ok(r) => {
                    result
                        .errors
                        .push(format!("{path}: {} {:?}", r.status, r.text()));
                    if r.closes() {
                        client = H1Client::connect(addr).await.unwrap();
                    }
                }
                Err(e) => {
                    result.errors.push(format!("{path}: {e}"));
                    client = H1Client::connect(addr).await.unwrap();
                }
            }
        }
    }
    result
}

/// Runs 2,000 GETs through weir against `backend`, spaced around the 1 s mark; returns the
/// client-visible errors, and (from the records) how many requests weir retried.
async fn race(backend: &HttpBackend) -> (Vec<String>, usize) {
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let barrier = Arc::new(Barrier::new(LANES));
    let lanes: Vec<_> = (0..LANES)
        .map(|i| tokio::spawn(lane(h.addr, i, backend.name().to_string(), barrier.clone())))
        .collect();
    let mut errors = Vec::new();
    let mut ok = 0;
    for lane in lanes {
        let result = within(60, lane).await.unwrap();
        ok += result.ok;
        errors.extend(result.errors);
    }
    assert_eq!(ok + errors.len(), LANES * PER_LANE);
    assert!(
        errors.is_empty(),
        "{} client-visible errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let mut retried = 0;
    let mut records = 0;
    while records < LANES * PER_LANE {
        let r = h.http_record().await;
        records += 1;
        if r.status != 200 {
            errors.push(format!("record: {r:?}"));
        }
        if r.retries > 0 {
            retried += 1;
        }
    }
    assert!(
        h.drain_records()
            .iter()
            .all(|r| !matches!(r, Record::Http(_))),
        "one record per request"
    );
    (errors, retried)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_see_no_error_when_the_server_closes_idle_connections_after_1s() {
    let backend = HttpBackend::builder()
        .name("idle1s")
        .idle_close(Duration::from_secs(1))
        .start()
        .await;
    let (errors, retried) = race(&backend).await;
    println!(
        "stale race, idle close: {} requests written on connections the server had closed, {retried} retried by weir, {} server connections",
        backend.unanswered(),
        backend.connections()
    );
    assert!(
        errors.is_empty(),
        "{} client-visible errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(backend.requests(), LANES * PER_LANE);
    // Every request weir wrote on a connection the server had already closed was sent again.
    assert!(
        retried >= backend.unanswered(),
        "{retried} retries for {} lost requests",
        backend.unanswered()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_see_no_error_when_the_server_announces_keep_alive_timeout_1() {
    let backend = HttpBackend::builder()
        .name("hint1s")
        .keep_alive_hint(1)
        .start()
        .await;
    let (errors, retried) = race(&backend).await;
    println!(
        "stale race, Keep-Alive: timeout=1: {} requests written on closed connections, {retried} retried, {} server connections",
        backend.unanswered(),
        backend.connections()
    );
    assert!(
        errors.is_empty(),
        "{} client-visible errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(backend.requests(), LANES * PER_LANE);
    // weir stops reusing a connection before the announced timeout: it never writes a request
    // on a connection the server closed, so it never needs to retry.
    assert_eq!(
        backend.unanswered(),
        0,
        "weir reused connections past the server's Keep-Alive timeout"
    );
    assert_eq!(retried, 0);
}

/// A POST on a connection the server is closing: 502 naming the server's close, never sent
/// twice; or weir noticed the close in time and sent it on a fresh connection. GETs never fail.
///
/// Each round: a GET whose answer is followed by the server's FIN after a delay that grows by
/// 100 µs per round (0 to 3.9 ms), then at once a POST, which weir sends on that connection if
/// it has not seen the FIN yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_caught_in_the_race_gets_502_and_is_not_retried() {
    let backend = HttpBackend::start("closing").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    let mut caught = 0;
    const TRIES: u64 = 40;
    for i in 0..TRIES {
        let get = format!("/get{i}?close_after_us={}", i * 100);
        let r = tokio::time::timeout(Duration::from_secs(10), client.get(&get, &[]))
            .await
            .unwrap_or_else(|_| panic!("no answer to GET {get} within 10 s"))
            .unwrap();
        assert_eq!(r.status, 200, "a GET never fails: {r:?}");
        let rec = h.http_record().await;
        assert_eq!((rec.method.as_str(), rec.status), ("GET", 200), "{rec:?}");
        let path = format!("/post{i}");
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            client.request("POST", &path, &[], b"once"),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer to POST {path} within 10 s (after GET {get}); backend: {} requests, {} unanswered, {} connections, {} ended; records: {:?}",
                backend.requests(),
                backend.unanswered(),
                backend.connections(),
                backend.endings().len(),
                h.drain_records()
            )
        })
        .unwrap();
        let rec = h.http_record().await;
        assert_eq!(rec.method, "POST", "{rec:?}");
        assert_eq!(rec.status, r.status, "{rec:?}");
        // Whatever weir wrote on the closing connection is read (and never answered) by the
        // server before it closes; wait for that connection to end before counting.
        // (After a 502 every server connection has ended; after a 200 the POST's fresh
        // connection is still open.)
        let open = usize::from(r.status == 200);
        assert!(
            backend
                .wait_for_endings(backend.connections() - open, Duration::from_secs(5))
                .await,
            "the closing connection ends"
        );
        let answered = backend.requests_for(&path);
        let lost = backend
            .unanswered_log()
            .iter()
            .filter(|s| s.target == path)
            .count();
        assert!(
            answered + lost <= 1,
            "the POST reached the server {} times (answered {answered}, lost {lost})",
            answered + lost
        );
        match r.status {
            502 => {
                caught += 1;
                assert_eq!(answered, 0, "a 502 POST was not answered by the server");
                assert_eq!(
                    (rec.end_by, rec.end_phase),
                    (EndBy::Upstream, EndPhase::Response),
                    "{rec:?}"
                );
                assert!(
                    matches!(rec.end_how, EndHow::Fin | EndHow::Rst),
                    "the record names the server's close: {rec:?}"
                );
                assert_eq!(rec.upstream_status, None, "{rec:?}");
                assert_eq!(rec.retries, 0, "{rec:?}");
            }
            200 => {
                assert_eq!(answered, 1);
                assert_eq!(r.text(), "closing\n");
            }
            other => panic!("unexpected {other} for the POST: {r:?} {rec:?}"),
        }
    }
    println!("POST race: {caught} of {TRIES} POSTs were caught in the race (502)");
    // From a 1 ms delay on, the POST is on its way before the server's FIN: weir cannot have
    // seen the close, so the race is certain to be caught in some rounds.
    assert!(caught > 0, "no POST was caught in the race");
}

/// The deterministic form of the same race: the server reads the request on a reused
/// keep-alive connection and closes it without answering. A POST is not idempotent: 502,
/// sent once. A GET is sent again once on a fresh connection.
#[tokio::test]
async fn a_post_on_a_reused_connection_the_server_closes_is_not_retried() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    assert_eq!(client.get("/warm", &[]).await.unwrap().status, 200);
    let _ = h.http_record().await;
    assert_eq!(backend.connections(), 1);

    let r = client
        .request("POST", "/hangup", &[], b"payload")
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    let rec = h.http_record().await;
    assert_eq!(
        (rec.status, rec.upstream_status, rec.retries),
        (502, None, 0),
        "{rec:?}"
    );
    assert_eq!(
        (rec.end_by, rec.end_how, rec.end_phase),
        (EndBy::Upstream, EndHow::Fin, EndPhase::Response),
        "{rec:?}"
    );
    assert_eq!(backend.requests_for("/hangup"), 1, "the POST is sent once");
    assert_eq!(backend.connections(), 1, "no new connection for a retry");

    // A GET in the same situation is retried once on a fresh connection (which the server
    // also closes: 502 after one retry, sent twice in all).
    assert_eq!(client.get("/warm", &[]).await.unwrap().status, 200);
    let _ = h.http_record().await;
    let r = client.get("/hangup", &[]).await.unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    let rec = h.http_record().await;
    assert_eq!((rec.method.as_str(), rec.retries), ("GET", 1), "{rec:?}");
    assert_eq!(backend.requests_for("/hangup"), 3);
}

/// Only a request that failed before any response byte is retried (SPEC §4): an invalid
/// response on a reused connection is an answer from the server, not the stale race — 502,
/// and the request is not sent again.
#[tokio::test]
async fn an_invalid_response_on_a_reused_connection_is_not_retried() {
    let backend = HttpBackend::start("b0").await;
    let mut h = Harness::start(&http_config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = H1Client::connect(h.addr).await.unwrap();
    assert_eq!(client.get("/warm", &[]).await.unwrap().status, 200);
    let _ = h.http_record().await;

    let r = client.get("/garbage", &[]).await.unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    let rec = h.http_record().await;
    assert_eq!(
        (rec.status, rec.upstream_status, rec.retries),
        (502, None, 0),
        "{rec:?}"
    );
    assert_eq!(
        backend.requests_for("/garbage"),
        1,
        "response bytes came back: not the stale race, not retried"
    );
    assert_eq!(backend.connections(), 1);
}
