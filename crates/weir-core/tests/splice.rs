//! Bulk TCP through a `tcp` listener with `splice = true` goes socket → kernel pipe → socket:
//! the bytes arrive intact both ways, half-close, resets, idle timeouts and the end record
//! behave as on the copy path, and the server's splice counters prove the pipe path ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Harness, NO_CHECK, config, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow, EndPhase};
use weir_testkit::{Backend, Behavior, Ending, blob_bytes, fnv1a64, read_to_end_classified};

const MIB: usize = 1024 * 1024;

/// The listener setting that turns splicing on.
const SPLICE: &str = "splice = true";

/// Bytes the first (only) server of group `g` saw spliced: (client → server, server → client).
fn spliced(h: &Harness) -> (u64, u64) {
    let upstream = h.proxy().upstream("g").expect("group g");
    let server = &upstream.servers[0];
    (
        server.spliced_in.load(Ordering::Relaxed),
        server.spliced_out.load(Ordering::Relaxed),
    )
}

/// Writes `data`, optionally half-closes, and reads everything that comes back, at once.
async fn send_and_receive(client: TcpStream, data: Vec<u8>, half_close: bool) -> (Vec<u8>, Ending) {
    let (mut rd, mut wr) = client.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        if half_close {
            wr.shutdown().await.unwrap();
        }
        wr
    });
    let received = read_to_end_classified(&mut rd).await;
    drop(writer.await.unwrap());
    received
}

#[tokio::test]
async fn thirty_two_mib_each_way_are_spliced_and_arrive_intact() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], SPLICE, "", NO_CHECK)).await;
    let upload = blob_bytes(32 * MIB, 3);
    let client = TcpStream::connect(h.addr).await.unwrap();
    // The echo server sends back what it reads while the upload goes on: both directions are
    // bulk at once. The client half-closes when done; the echo server then ends with FIN.
    let (echoed, ending) = within(60, send_and_receive(client, upload.clone(), true)).await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(echoed.len(), upload.len());
    assert_eq!(fnv1a64(&echoed), fnv1a64(&upload));

    let r = h.record().await;
    assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
    assert_eq!(
        (r.bytes_in, r.bytes_out),
        (32 * MIB as u64, 32 * MIB as u64)
    );
    // Only the bytes before the first full 64 KiB read may have been copied.
    let (spliced_in, spliced_out) = spliced(&h);
    assert!(spliced_in > 31 * MIB as u64, "spliced in: {spliced_in}");
    assert!(spliced_out > 31 * MIB as u64, "spliced out: {spliced_out}");
}

#[tokio::test]
async fn bulk_is_copied_unless_the_listener_asks_for_splice() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let upload = blob_bytes(8 * MIB, 4);
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (echoed, ending) = within(60, send_and_receive(client, upload.clone(), true)).await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(fnv1a64(&echoed), fnv1a64(&upload));
    let r = h.record().await;
    assert_eq!((r.bytes_in, r.bytes_out), (8 * MIB as u64, 8 * MIB as u64));
    assert_eq!(spliced(&h), (0, 0));
}

#[tokio::test]
async fn request_response_traffic_stays_on_the_copy_path() {
    let backend = Backend::builder().behavior(Behavior::Echo).start().await;
    let mut h = Harness::start(&config(&[backend.addr()], SPLICE, "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    let message = [b'q'; 2000];
    for _ in 0..200 {
        client.write_all(&message).await.unwrap();
        let mut answer = [0u8; 2000];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, message);
    }
    client.shutdown().await.unwrap();
    let (_, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let r = h.record().await;
    assert_eq!((r.bytes_in, r.bytes_out), (400_000, 400_000));
    assert_eq!(spliced(&h), (0, 0), "no pipe for request/response traffic");
}

#[tokio::test]
async fn half_close_behind_a_full_pipe_reaches_the_server_after_every_byte() {
    // The server hashes each byte as it reads (slowly, in a test build), so weir's pipe is
    // still full when the client's FIN arrives right behind its 32 MiB. The FIN may reach the
    // server only after the last of them: sooner, the server would hash fewer bytes (or
    // weir's next splice into the shut socket would fail).
    let backend = Backend::builder()
        .behavior(Behavior::Sink { reply_hash: true })
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], SPLICE, "", NO_CHECK)).await;
    let upload = blob_bytes(32 * MIB, 5);
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (reply, ending) = within(60, send_and_receive(client, upload.clone(), true)).await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        format!("{} {:016x}\n", upload.len(), fnv1a64(&upload))
    );
    let r = h.record().await;
    assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
    assert_eq!((r.bytes_in, r.bytes_out), (32 * MIB as u64, 26));
    assert!(
        spliced(&h).0 > 31 * MIB as u64,
        "spliced: {:?}",
        spliced(&h)
    );
}

#[tokio::test]
async fn server_reset_mid_bulk_is_passed_on_and_blamed_on_the_server() {
    let backend = Backend::builder()
        .behavior(Behavior::ResetAfter(8 * MIB))
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], SPLICE, "", NO_CHECK)).await;
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    // The writer fails once weir passes the reset on, and says how.
    let writer = tokio::spawn(async move {
        let chunk = blob_bytes(MIB, 9);
        for _ in 0..32 {
            if let Err(err) = wr.write_all(&chunk).await {
                return Some(err.kind());
            }
        }
        None
    });
    let (echoed, ending) = within(60, read_to_end_classified(&mut rd)).await;
    let write_error = writer.await.unwrap();
    // The socket reports a reset once, to whichever half asks first: when the writer took
    // it, the reader finds the socket shut and reads an end of stream.
    assert!(
        ending == Ending::Rst || write_error == Some(std::io::ErrorKind::ConnectionReset),
        "the server's reset reaches the client: read {ending:?}, write {write_error:?}"
    );
    assert!(echoed.len() < 32 * MIB);

    let r = h.record().await;
    assert_eq!(
        (r.end_by, r.end_how, r.end_phase),
        (EndBy::Upstream, EndHow::Rst, EndPhase::Tunnel),
        "{r:?}"
    );
    let (spliced_in, _) = spliced(&h);
    assert!(
        spliced_in > MIB as u64,
        "the reset came on the splice path: {spliced_in}"
    );
}

#[tokio::test]
async fn idle_timeout_counts_spliced_bytes_as_activity_and_closes_with_fin() {
    let backend = Backend::builder()
        .behavior(Behavior::Sink { reply_hash: false })
        .start()
        .await;
    let mut h = Harness::start(&config(
        &[backend.addr()],
        "splice = true\nidle_timeout = \"300ms\"",
        "",
        NO_CHECK,
    ))
    .await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    // Eight 1 MiB bursts 100 ms apart: 800 ms in all, never 300 ms without a byte moving.
    let burst = blob_bytes(MIB, 1);
    for _ in 0..8 {
        client.write_all(&burst).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then silence: weir ends it.
    let (_, ending) = within(10, read_to_end_classified(&mut client)).await;
    assert_eq!(ending, Ending::Fin, "the client sees weir's FIN");

    let r = h.record().await;
    assert_eq!(
        (r.end_by, r.end_how, r.end_reason),
        (EndBy::Weir, EndHow::Timeout, Some("idle_timeout")),
        "{r:?}"
    );
    assert_eq!(r.bytes_in, 8 * MIB as u64);
    assert!(
        r.duration >= Duration::from_millis(1000),
        "{:?}",
        r.duration
    );
    // The start of the first burst goes through the worker's io_uring engine (up to about
    // 1 MiB: its receive takes what has arrived before the hand-back to the copy path), the
    // rest is spliced.
    assert!(spliced(&h).0 > 6 * MIB as u64, "spliced: {:?}", spliced(&h));
    assert!(backend.wait_for_endings(1, Duration::from_secs(5)).await);
    assert_eq!(backend.endings(), vec![Ending::Fin], "the server sees FIN");
}
