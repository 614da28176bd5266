//! The S3 driver's digests: the host's sha256 of a multipart object, kept in a companion object
//! and never shown for another write, on both S3 servers; and a create-only write whose answer
//! was lost, settled by the stored digest.

use bytes::Bytes;
use stowage_runtime::{PluginEngine, StorageError, WriteOptions};
use stowage_tests::s3::aws_sdk_s3::primitives::ByteStream;
use stowage_tests::s3::{S3Server, Which, driver_config, fresh_bucket, native_client, s3_disk, server, server_of};

use crate::s3::pending_uploads;
use stowage_tests::{ctx, list_prefix, object_path};

on_both!(a_multipart_objects_sha256_is_retrievable_and_an_overwrite_never_shows_the_previous_one);

/// Writes `mib` MiB (byte `i` is `(i + seed) % 251`) to `path` through `disk`; the sha256 of
/// those bytes, measured here.
async fn put_pattern(disk: &stowage_runtime::Disk, path: &str, mib: usize, seed: usize) -> String {
    use sha2::Digest;
    let c = ctx(disk);
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| ((i + seed) % 251) as u8).collect();
    let mut hash = sha2::Sha256::new();
    let mut w = disk.writer(&c, &object_path(path), &WriteOptions::default()).await.unwrap();
    for _ in 0..mib {
        hash.update(&chunk);
        w.write(Bytes::from(chunk.clone())).await.unwrap();
    }
    let info = w.finish().await.unwrap();
    let want = hex::encode(hash.finalize());
    assert_eq!(info.sha256.as_deref(), Some(want.as_str()), "the writer's answer");
    want
}

async fn a_multipart_objects_sha256_is_retrievable_and_an_overwrite_never_shows_the_previous_one(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "digest").await;
    let engine = PluginEngine::new().unwrap();
    // Parts of 5 MiB: 100 MiB goes up as 20 parts.
    let disk = s3_disk(&engine, &server, driver_config(&server, &bucket, None));
    let c = ctx(&disk);
    let big = put_pattern(&disk, "big.bin", 100, 0).await;
    assert_eq!(pending_uploads(&server, &bucket).await, 0);
    let stat = disk.stat(&c, &object_path("big.bin")).await.unwrap();
    let head = native_client(&server, None).head_object().bucket(&bucket).key("big.bin").send().await.unwrap();
    assert_eq!((stat.size, stat.sha256.as_deref()), (100 << 20, Some(big.as_str())), "{}: {head:?}", which.name());
    let one = Some(stowage_runtime::ByteRange { offset: 0, length: Some(1) });
    let read = disk.reader(&c, &object_path("big.bin"), one).await.unwrap();
    assert_eq!(read.info().sha256.as_deref(), Some(big.as_str()), "a read's info");
    drop(read);
    // The companion is no object: listings do not show it, and its path is refused.
    let listed = disk.list(&c, &list_prefix(""), None, 1000).await.unwrap();
    assert_eq!(listed.items.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(), ["big.bin"]);
    assert!(matches!(disk.stat(&c, &object_path(".stowage-sha256/big.bin")).await, Err(StorageError::InvalidPath(_))));

    // Overwritten by another multipart object, then by a single PUT: each shows its own
    // digest, never the previous one's.
    let again = put_pattern(&disk, "big.bin", 12, 7).await;
    assert_ne!(again, big);
    assert_eq!(disk.stat(&c, &object_path("big.bin")).await.unwrap().sha256.as_deref(), Some(again.as_str()));
    let small = put_pattern(&disk, "big.bin", 1, 3).await;
    assert_eq!(disk.stat(&c, &object_path("big.bin")).await.unwrap().sha256.as_deref(), Some(small.as_str()));
    // A multipart object whose companion names another object (here: the companion of the
    // first write, planted back) shows no digest rather than a wrong one.
    let again = put_pattern(&disk, "big.bin", 12, 9).await;
    let native = native_client(&server, None);
    let companion = ".stowage-sha256/big.bin";
    let planted = native.get_object().bucket(&bucket).key(companion).send().await.unwrap();
    let body = planted.body.collect().await.unwrap().into_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with(&again), "{text}");
    let stale = format!("another-upload {big}");
    native.put_object().bucket(&bucket).key(companion).body(ByteStream::from(stale.into_bytes())).send().await.unwrap();
    assert_eq!(disk.stat(&c, &object_path("big.bin")).await.unwrap().sha256, None);

    // Delete removes the object and its companion.
    disk.delete(&c, &object_path("big.bin")).await.unwrap();
    assert!(matches!(disk.stat(&c, &object_path("big.bin")).await, Err(StorageError::NotFound(_))));
    let left = native.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(left.contents().len(), 0, "left behind: {:?}", left.contents());
}

/// A loopback HTTP proxy to `to`, one request per connection (it asks the server to close
/// after each answer). The first request carrying `If-None-Match` is forwarded and answered
/// by the server, but its answer is lost: the client's connection is closed instead.
struct LosingProxy {
    port: u16,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LosingProxy {
    fn start(to: &str) -> LosingProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let upstream = to.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                // The head, then as many body bytes as it says.
                let mut request = Vec::new();
                let mut buf = [0u8; 64 << 10];
                let head_end = loop {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head_text = String::from_utf8_lossy(&request[..head_end - 2]).into_owned();
                let kept: String = head_text
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                let mut server = std::net::TcpStream::connect(&upstream).unwrap();
                server.write_all(format!("{kept}connection: close\r\n\r\n").as_bytes()).unwrap();
                server.write_all(&request[head_end..]).unwrap();
                let mut answer = Vec::new();
                server.read_to_end(&mut answer).unwrap();
                if head.contains("\r\nif-none-match:") && !flag.swap(true, Ordering::AcqRel) {
                    continue; // answered, and the answer lost
                }
                let _ = client.write_all(&answer);
            }
        });
        LosingProxy { port, lost }
    }
}

// SeaweedFS only: rclone ignores `If-None-Match` (see conformance.rs), so it never refuses
// the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_only_write_whose_answer_was_lost_is_settled_by_the_stored_digest() {
    let server = server();
    let bucket = fresh_bucket(&server, "ambiguous").await;
    let proxy = LosingProxy::start(&server.endpoint);
    let through = S3Server { endpoint: format!("http://127.0.0.1:{}", proxy.port), ..server.clone() };
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &through, driver_config(&through, &bucket, None));
    let c = ctx(&disk);
    let only = WriteOptions { create_only: true, ..WriteOptions::default() };
    // The PUT stores the object; its answer is lost; the SDK's retry is refused (412), and
    // the stored digest is this write's: it succeeded.
    let mut w = disk.writer(&c, &object_path("once.bin"), &only).await.unwrap();
    w.write(Bytes::from_static(b"first")).await.unwrap();
    let info = w.finish().await.expect("the write that landed succeeds");
    assert!(proxy.lost.load(std::sync::atomic::Ordering::Acquire), "no answer was lost");
    assert_eq!(disk.stat(&c, &object_path("once.bin")).await.unwrap().sha256, info.sha256);
    // A create-only write of other bytes over it is refused, as ever (no retry, no settling).
    let mut w = disk.writer(&c, &object_path("once.bin"), &only).await.unwrap();
    w.write(Bytes::from_static(b"second")).await.unwrap();
    assert!(matches!(w.finish().await, Err(StorageError::AlreadyExists(_))));
    // The same bytes again, answered at once: refused too (it is not this write's object).
    let mut w = disk.writer(&c, &object_path("once.bin"), &only).await.unwrap();
    w.write(Bytes::from_static(b"first")).await.unwrap();
    assert!(matches!(w.finish().await, Err(StorageError::AlreadyExists(_))));
}
