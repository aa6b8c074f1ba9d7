//! Half-close mirrored both ways: a client that shuts down its write side after its request
//! still receives a whole 10 MiB reply, and a server that does the same still receives the
//! client's 10 MiB. Both verified by hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, NO_CHECK, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_core::end::{EndBy, EndHow};
use weir_testkit::{Backend, Behavior, Ending, blob_bytes, fnv1a64, read_to_end_classified};

const TEN_MIB: usize = 10 * 1024 * 1024;

#[tokio::test]
async fn client_half_closes_and_still_gets_the_whole_reply() {
    let backend = Backend::builder()
        .behavior(Behavior::Blob {
            len: TEN_MIB,
            seed: 7,
        })
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(b"GET blob\n").await.unwrap();
    client.shutdown().await.unwrap();
    let (data, ending) = read_to_end_classified(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(data.len(), TEN_MIB);
    assert_eq!(fnv1a64(&data), fnv1a64(&blob_bytes(TEN_MIB, 7)));

    let r = h.record().await;
    assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
    assert_eq!((r.bytes_in, r.bytes_out), (9, TEN_MIB as u64));
}

#[tokio::test]
async fn server_gets_the_whole_upload_after_the_client_half_closes() {
    let backend = Backend::builder()
        .behavior(Behavior::Sink { reply_hash: true })
        .start()
        .await;
    let mut h = Harness::start(&config(&[backend.addr()], "", "", NO_CHECK)).await;
    let upload = blob_bytes(TEN_MIB, 11);
    let client = TcpStream::connect(h.addr).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    let reader = tokio::spawn(async move {
        let mut reply = String::new();
        rd.read_to_string(&mut reply).await.unwrap();
        reply
    });
    wr.write_all(&upload).await.unwrap();
    wr.shutdown().await.unwrap();
    let reply = reader.await.unwrap();
    assert_eq!(reply, format!("{} {:016x}\n", TEN_MIB, fnv1a64(&upload)));

    let r = h.record().await;
    assert_eq!((r.end_by, r.end_how), (EndBy::Client, EndHow::Fin), "{r:?}");
    assert_eq!(r.bytes_in, TEN_MIB as u64);
}
