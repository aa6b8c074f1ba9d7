//! Probe tests over loopback: 1,000 probes per kind against backends that record FIN vs RST,
//! failures, status matching, request bytes and response framing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use weir_testkit::{
    Counts, Ending, Mode, RecordingBackend, read_to_end_classified, refusing_addr,
    unresponsive_listener,
};

use super::http::{BadChunk, Chunked};
use super::*;

const PROBES: usize = 1000;
const CONCURRENCY: usize = 16;
const WAIT: Duration = Duration::from_secs(30);

fn tcp() -> Probe {
    Probe {
        kind: ProbeKind::Tcp,
        timeout: Duration::from_secs(2),
        source: None,
    }
}

fn http(check: &HttpCheck, target: SocketAddr) -> Probe {
    Probe {
        kind: ProbeKind::Http(HttpProbe::new(check, target)),
        timeout: Duration::from_secs(2),
        source: None,
    }
}

/// Runs `n` probes, `CONCURRENCY` at a time, and returns every result.
async fn run_many(probe: Probe, target: SocketAddr, n: usize) -> Vec<ProbeResult> {
    let probe = Arc::new(probe);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (probe, next) = (Arc::clone(&probe), Arc::clone(&next));
        workers.spawn(async move {
            let mut results = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                results.push(run(&probe, target).await);
            }
            results
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(results) = workers.join_next().await {
        all.extend(results.unwrap());
    }
    all
}

/// Probes `backend` `PROBES` times and checks every connection ended with FIN.
async fn thousand(backend: &RecordingBackend, probe: Probe, label: &str) -> Vec<ProbeResult> {
    let started = std::time::Instant::now();
    let results = run_many(probe, backend.addr(), PROBES).await;
    assert!(
        backend.wait_for_endings(PROBES, WAIT).await,
        "{label}: {:?}",
        backend.counts()
    );
    let counts = backend.counts();
    eprintln!(
        "{label}: {PROBES} probes, {counts:?}, {:.2?}",
        started.elapsed()
    );
    assert_eq!(
        counts,
        Counts {
            fin: PROBES,
            rst: 0,
            other: 0,
            open: 0
        },
        "{label}"
    );
    assert_eq!(results.len(), PROBES);
    results
}

fn all_ok(results: &[ProbeResult], detail: &str) {
    let bad: Vec<_> = results
        .iter()
        .filter(|r| !r.ok || r.detail != detail)
        .collect();
    assert!(
        bad.is_empty(),
        "{} unexpected results, e.g. {:?}",
        bad.len(),
        bad.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_tcp_probes_end_with_fin() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let results = thousand(&backend, tcp(), "tcp/silent").await;
    all_ok(&results, "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_tcp_probes_of_a_banner_server_end_with_fin() {
    let banner = b"SSH-2.0-OpenSSH_9.6\r\n".to_vec();
    let backend = RecordingBackend::start(Mode::Banner(banner)).await;
    let results = thousand(&backend, tcp(), "tcp/banner").await;
    all_ok(&results, "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_http_probes_of_a_closing_server_end_with_fin() {
    let backend = RecordingBackend::start(Mode::HttpClose).await;
    let probe = http(&HttpCheck::default(), backend.addr());
    let results = thousand(&backend, probe, "http/close").await;
    all_ok(&results, "status 200");
    assert_eq!(backend.requests(), PROBES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_http_probes_of_a_keep_alive_server_end_with_fin() {
    let backend = RecordingBackend::start(Mode::HttpKeepOpen).await;
    let probe = http(&HttpCheck::default(), backend.addr());
    let results = thousand(&backend, probe, "http/keep-open").await;
    all_ok(&results, "status 200");
    assert_eq!(backend.requests(), PROBES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_http_probes_of_a_banner_first_server_fail_but_end_with_fin() {
    let backend = RecordingBackend::start(Mode::HttpBannerFirst).await;
    let probe = http(&HttpCheck::default(), backend.addr());
    let results = thousand(&backend, probe, "http/banner-first").await;
    let bad: Vec<_> = results
        .iter()
        .filter(|r| r.ok || r.detail != "invalid HTTP response")
        .collect();
    assert!(
        bad.is_empty(),
        "{} unexpected, e.g. {:?}",
        bad.len(),
        bad.first()
    );
}

#[tokio::test]
async fn refused_connect_fails() {
    let result = run(&tcp(), refusing_addr().await).await;
    assert_eq!(result, ProbeResult::fail("connection refused"));
}

#[tokio::test]
async fn connect_that_hangs_times_out() {
    let (_held, addr) = unresponsive_listener().unwrap();
    let probe = Probe {
        timeout: Duration::from_millis(200),
        ..tcp()
    };
    let started = std::time::Instant::now();
    let result = run(&probe, addr).await;
    let took = started.elapsed();
    assert_eq!(
        result,
        ProbeResult::fail("timed out after 200ms while connecting")
    );
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn source_address_is_bound() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let source = Some(IpAddr::from([127, 0, 0, 1]));
    let result = run(&Probe { source, ..tcp() }, backend.addr()).await;
    assert_eq!(result, ProbeResult::pass("connected"));
    let v6 = Some("::1".parse().unwrap());
    let result = run(
        &Probe {
            source: v6,
            ..tcp()
        },
        backend.addr(),
    )
    .await;
    assert!(!result.ok);
    assert!(
        result.detail.contains("address families differ"),
        "{}",
        result.detail
    );
}

#[test]
fn request_bytes_are_exact() {
    let version = env!("CARGO_PKG_VERSION");
    let check = HttpCheck {
        path: "/healthz".to_string(),
        ..HttpCheck::default()
    };
    let probe = HttpProbe::new(&check, "127.0.0.1:8080".parse().unwrap());
    let expected = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
         User-Agent: weir-health-check/{version}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(String::from_utf8_lossy(probe.request()), expected);

    let v6 = HttpProbe::new(&HttpCheck::default(), "[::1]:8080".parse().unwrap());
    assert!(
        v6.request()
            .starts_with(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n")
    );

    let named = HttpCheck {
        method: "HEAD".to_string(),
        host: Some("app.internal\r\nX-Evil: 1".to_string()),
        ..HttpCheck::default()
    };
    let named = HttpProbe::new(&named, "127.0.0.1:80".parse().unwrap());
    let expected = format!(
        "HEAD / HTTP/1.1\r\nHost: app.internalX-Evil:1\r\n\
         User-Agent: weir-health-check/{version}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(String::from_utf8_lossy(named.request()), expected);
    assert!(named.head_request);
}

#[test]
fn expected_statuses() {
    let probe = HttpProbe::new(&HttpCheck::default(), "127.0.0.1:80".parse().unwrap());
    assert!(probe.expects(200) && probe.expects(302));
    assert!(!probe.expects(404) && !probe.expects(503));
    let check = HttpCheck {
        expect_status: vec![StatusMatch::Code(204), StatusMatch::Range(500, 502)],
        ..HttpCheck::default()
    };
    let probe = HttpProbe::new(&check, "127.0.0.1:80".parse().unwrap());
    assert!(probe.expects(204) && probe.expects(501));
    assert!(!probe.expects(200) && !probe.expects(503));
}

// === raw responses ===

/// A server that answers each connection with `response` once it has read the request
/// head, then closes with FIN (after draining), and reports how the probe ended it.
async fn raw_server(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Ending>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        stream.write_all(response).await.unwrap();
        stream.shutdown().await.unwrap();
        read_to_end_classified(&mut stream).await.1
    });
    (addr, task)
}

async fn probe_raw(response: &'static [u8], check: &HttpCheck) -> ProbeResult {
    let (addr, server) = raw_server(response).await;
    let result = run(&http(check, addr), addr).await;
    assert_eq!(server.await.unwrap(), Ending::Fin, "{result:?}");
    result
}

#[tokio::test]
async fn unexpected_status_fails() {
    let response = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
    let result = probe_raw(response, &HttpCheck::default()).await;
    assert_eq!(result, ProbeResult::fail("status 503 not expected"));
    let check = HttpCheck {
        expect_status: vec![StatusMatch::Code(503)],
        ..HttpCheck::default()
    };
    let result = probe_raw(response, &check).await;
    assert_eq!(result, ProbeResult::pass("status 503"));
}

#[tokio::test]
async fn bodies_of_every_framing_are_read() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;x=y\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n";
    let until_close = b"HTTP/1.0 204 No Content\r\n\r\n";
    let http10 = b"HTTP/1.0 200 OK\r\n\r\nbody until the server closes";
    let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n";
    for (response, detail) in [
        (&chunked[..], "status 200"),
        (&until_close[..], "status 204"),
        (&http10[..], "status 200"),
        (&interim[..], "status 301"),
    ] {
        let response: &'static [u8] = response;
        let result = probe_raw(response, &HttpCheck::default()).await;
        assert_eq!(result, ProbeResult::pass(detail));
    }
}

#[tokio::test]
async fn garbage_and_truncation_fail() {
    let garbage = probe_raw(b"SSH-2.0-x\r\n", &HttpCheck::default()).await;
    assert_eq!(garbage, ProbeResult::fail("invalid HTTP response"));
    let check = HttpCheck::default();
    let short = probe_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &check).await;
    let expected = "connection closed by server while reading the body";
    assert_eq!(short, ProbeResult::fail(expected));
    let empty = probe_raw(b"", &HttpCheck::default()).await;
    assert_eq!(
        empty,
        ProbeResult::fail("connection closed by server while waiting for the response")
    );
}

#[tokio::test]
async fn silent_http_server_times_out_and_still_gets_fin() {
    let backend = RecordingBackend::start(Mode::Silent).await;
    let probe = Probe {
        timeout: Duration::from_millis(200),
        ..http(&HttpCheck::default(), backend.addr())
    };
    let result = run(&probe, backend.addr()).await;
    let expected = "timed out after 200ms while waiting for the response";
    assert_eq!(result, ProbeResult::fail(expected));
    assert!(backend.wait_for_endings(1, WAIT).await);
    assert_eq!(backend.endings(), vec![Ending::Fin]);
}

#[test]
fn chunked_decoder_handles_split_input() {
    let body = b"4\r\nwiki\r\n5\r\npedia\r\nE; ext\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    for split in 0..body.len() {
        let mut chunks = Chunked::default();
        let first = chunks.feed(&body[..split]).unwrap();
        assert!(!first || split == body.len());
        assert!(chunks.feed(&body[split..]).unwrap(), "split at {split}");
    }
    assert_eq!(Chunked::default().feed(b"zz\r\n"), Err(BadChunk));
    assert_eq!(Chunked::default().feed(b"2\r\nabX\r\n"), Err(BadChunk));
    assert_eq!(
        Chunked::default().feed(b"11111111111111111\r\n"),
        Err(BadChunk)
    );
}
