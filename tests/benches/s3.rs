//! The s3 driver component vs native aws-sdk-s3 on the same S3 server, in one run. Prints
//! ratios; asserts nothing.
//!
//! `tests/run bench --bench s3` (starts SeaweedFS around it; 1 GiB objects,
//! `STOWAGE_BENCH_MIB=256` for a quick run). Both sides use 8 MiB parts sent one after the
//! other and 1 MiB chunks; the native side's body comes from memory, as the driver's does.
//! The native baseline is configured as the driver is (unsigned payloads, checksums only when
//! required); the SDK's defaults (signed payloads, CRC32) are a second line, for reference.
//! Rounds alternate which side goes first.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::{Disk, PluginEngine, WriteOptions};
use stowage_tests::s3::aws_sdk_s3::Client;
use stowage_tests::s3::aws_sdk_s3::primitives::ByteStream;
use stowage_tests::s3::aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use stowage_tests::s3::{driver_config, fresh_bucket, native_client, native_client_like_the_driver, s3_disk, server};
use stowage_tests::{ctx, object_path};

const CHUNK: usize = 1 << 20;
const PART: usize = 8 << 20;
const SMALL_OPS: usize = 200;
const ROUNDS: usize = 2;

fn main() {
    let mib: usize = std::env::var("STOWAGE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let server = server();
        let bucket = fresh_bucket(&server, "bench").await;
        let engine = PluginEngine::new().expect("engine");
        let mut config = driver_config(&server, &bucket, None);
        config.retain(|(k, _)| k != "part_size_mib");
        config.push(("part_size_mib".into(), (PART >> 20).to_string()));
        let disk = s3_disk(&engine, &server, config);
        let native = Native { client: native_client_like_the_driver(&server), unsigned: true };
        let defaults = Native { client: native_client(&server, None), unsigned: false };
        println!(
            "s3 driver vs native aws-sdk-s3 on {} ({mib} MiB objects, {} MiB parts, best of {ROUNDS})",
            server.endpoint,
            PART >> 20
        );
        streaming(&disk, &native, &defaults, &bucket, mib).await;
        small_ops(&disk, &native, &defaults, &bucket).await;
    });
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

async fn wasm_put(disk: &Disk, path: &str, chunk: &Bytes, mib: usize) -> Duration {
    let start = Instant::now();
    let mut w = disk.writer(&ctx(disk), &object_path(path), &WriteOptions::default()).await.expect("writer");
    for _ in 0..mib {
        w.write(chunk.clone()).await.expect("write");
    }
    w.finish().await.expect("finish");
    start.elapsed()
}

/// A native client, and whether it sends bodies unsigned (as the driver does).
struct Native {
    client: Client,
    unsigned: bool,
}

async fn native_put(native: &Native, bucket: &str, key: &str, chunk: &Bytes, mib: usize) -> Duration {
    let s3 = &native.client;
    let start = Instant::now();
    let upload = s3.create_multipart_upload().bucket(bucket).key(key).send().await.expect("create");
    let id = upload.upload_id().expect("id").to_string();
    let mut parts = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(PART);
    let send = |buf: Vec<u8>, n: i32| {
        let s3 = s3.clone();
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), id.clone());
        let unsigned = native.unsigned;
        async move {
            let op = s3.upload_part().bucket(bucket).key(key).upload_id(id).part_number(n).body(ByteStream::from(buf));
            let out = if unsigned { op.customize().disable_payload_signing().send().await } else { op.send().await }
                .expect("part");
            CompletedPart::builder().part_number(n).set_e_tag(out.e_tag).build()
        }
    };
    for _ in 0..mib {
        buf.extend_from_slice(chunk);
        if buf.len() >= PART {
            let n = parts.len() as i32 + 1;
            parts.push(send(std::mem::replace(&mut buf, Vec::with_capacity(PART)), n).await);
        }
    }
    if !buf.is_empty() {
        let n = parts.len() as i32 + 1;
        parts.push(send(buf, n).await);
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .expect("complete");
    start.elapsed()
}

async fn wasm_get(disk: &Disk, path: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut r = disk.reader(&ctx(disk), &object_path(path), None).await.expect("reader");
    let mut n = 0;
    while let Some(c) = r.next_chunk(CHUNK).await.expect("read") {
        n += c.len();
    }
    (start.elapsed(), n)
}

async fn native_get(s3: &Client, bucket: &str, key: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut body = s3.get_object().bucket(bucket).key(key).send().await.expect("get").body;
    let mut n = 0;
    while let Some(c) = body.try_next().await.expect("read") {
        n += c.len();
    }
    (start.elapsed(), n)
}

async fn streaming(disk: &Disk, native: &Native, defaults: &Native, bucket: &str, mib: usize) {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let bytes = mib << 20;
    let [mut wp, mut np, mut dp, mut wg, mut ng, mut dg] = [Duration::MAX; 6];
    for round in 0..ROUNDS {
        // Alternate who goes first, so neither always meets a warmer (or fuller) server.
        let wasm_first = round % 2 == 0;
        if wasm_first {
            wp = wp.min(wasm_put(disk, &format!("big-w{round}"), &chunk, mib).await);
        }
        np = np.min(native_put(native, bucket, &format!("big-n{round}"), &chunk, mib).await);
        if !wasm_first {
            wp = wp.min(wasm_put(disk, &format!("big-w{round}"), &chunk, mib).await);
        }
        dp = dp.min(native_put(defaults, bucket, &format!("big-d{round}"), &chunk, mib).await);
        let (d, n) = wasm_get(disk, &format!("big-w{round}")).await;
        assert_eq!(n, bytes);
        wg = wg.min(d);
        for (client, key, best) in
            [(&native.client, format!("big-n{round}"), &mut ng), (&defaults.client, format!("big-d{round}"), &mut dg)]
        {
            let (d, n) = native_get(client, bucket, &key).await;
            assert_eq!(n, bytes);
            *best = (*best).min(d);
        }
    }
    println!("\n== streaming, MiB/s");
    println!("{:<10} {:>10} {:>10} {:>12} {:>16}", "", "wasm", "native", "wasm/native", "native, SDK defaults");
    println!(
        "{:<10} {:>10.0} {:>10.0} {:>11.2}x {:>16.0}",
        "upload",
        mib_s(bytes, wp),
        mib_s(bytes, np),
        np.as_secs_f64() / wp.as_secs_f64(),
        mib_s(bytes, dp)
    );
    println!(
        "{:<10} {:>10.0} {:>10.0} {:>11.2}x {:>16.0}",
        "download",
        mib_s(bytes, wg),
        mib_s(bytes, ng),
        ng.as_secs_f64() / wg.as_secs_f64(),
        mib_s(bytes, dg)
    );
}

async fn small_ops(disk: &Disk, native: &Native, defaults: &Native, bucket: &str) {
    let data = Bytes::from(vec![7u8; 4096]);
    let c = ctx(disk);
    let per_sec = |d: Duration| SMALL_OPS as f64 / d.as_secs_f64();
    let [mut wasm_put, mut native_put, mut default_put, mut wasm_get, mut native_get] = [Duration::MAX; 5];
    for round in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..SMALL_OPS {
            let mut w =
                disk.writer(&c, &object_path(&format!("small/w{i}")), &WriteOptions::default()).await.expect("writer");
            w.write(data.clone()).await.expect("write");
            w.finish().await.expect("finish");
        }
        wasm_put = wasm_put.min(start.elapsed());
        for (n, best) in [(native, &mut native_put), (defaults, &mut default_put)] {
            let start = Instant::now();
            for i in 0..SMALL_OPS {
                let op = n
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("small/n{i}"))
                    .body(ByteStream::from(data.clone()));
                if n.unsigned { op.customize().disable_payload_signing().send().await } else { op.send().await }
                    .expect("put");
            }
            *best = (*best).min(start.elapsed());
        }
        let gets = [(true, &mut wasm_get), (false, &mut native_get)];
        // Alternate the order of the gets too.
        let gets: Vec<_> = if round % 2 == 0 { gets.into_iter().collect() } else { gets.into_iter().rev().collect() };
        for (wasm, best) in gets {
            let start = Instant::now();
            for i in 0..SMALL_OPS {
                if wasm {
                    let mut r = disk.reader(&c, &object_path(&format!("small/w{i}")), None).await.expect("reader");
                    while r.next_chunk(CHUNK).await.expect("read").is_some() {}
                } else {
                    let o =
                        native.client.get_object().bucket(bucket).key(format!("small/n{i}")).send().await.expect("get");
                    std::hint::black_box(o.body.collect().await.expect("body"));
                }
            }
            *best = (*best).min(start.elapsed());
        }
    }
    println!("\n== 4 KiB operations ({SMALL_OPS} each, best of {ROUNDS}), ops/s");
    println!("{:<6} {:>10} {:>10} {:>12} {:>16}", "op", "wasm", "native", "wasm/native", "native, SDK defaults");
    println!(
        "{:<6} {:>10.0} {:>10.0} {:>11.2}x {:>16.0}",
        "put",
        per_sec(wasm_put),
        per_sec(native_put),
        native_put.as_secs_f64() / wasm_put.as_secs_f64(),
        per_sec(default_put)
    );
    println!(
        "{:<6} {:>10.0} {:>10.0} {:>11.2}x",
        "get",
        per_sec(wasm_get),
        per_sec(native_get),
        native_get.as_secs_f64() / wasm_get.as_secs_f64()
    );
}
