//! The s3 driver component vs native aws-sdk-s3 on the same S3 server, in one run. Prints
//! ratios; asserts nothing.
//!
//! `tests/run bench --bench s3` (starts SeaweedFS around it; 1 GiB objects,
//! `STOWAGE_BENCH_MIB=256` for a quick run). Both sides use 8 MiB parts sent one after the
//! other and 1 MiB chunks; the native side's body comes from memory, as the driver's does.

use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::{Disk, PluginEngine, WriteOptions};
use stowage_tests::ctx;
use stowage_tests::s3::aws_sdk_s3::Client;
use stowage_tests::s3::aws_sdk_s3::primitives::ByteStream;
use stowage_tests::s3::aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use stowage_tests::s3::{driver_config, fresh_bucket, native_client, s3_disk, server};

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
        let native = native_client(&server, None);
        println!("s3 driver vs native aws-sdk-s3 on {} ({mib} MiB objects, {} MiB parts, best of {ROUNDS})", server.endpoint, PART >> 20);
        streaming(&disk, &native, &bucket, mib).await;
        small_ops(&disk, &native, &bucket).await;
    });
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

async fn wasm_put(disk: &Disk, path: &str, chunk: &Bytes, mib: usize) -> Duration {
    let start = Instant::now();
    let mut w = disk.writer(&ctx(disk), path, &WriteOptions::default()).await.expect("writer");
    for _ in 0..mib {
        w.write(chunk.clone()).await.expect("write");
    }
    w.finish().await.expect("finish");
    start.elapsed()
}

async fn native_put(s3: &Client, bucket: &str, key: &str, chunk: &Bytes, mib: usize) -> Duration {
    let start = Instant::now();
    let upload = s3.create_multipart_upload().bucket(bucket).key(key).send().await.expect("create");
    let id = upload.upload_id().expect("id").to_string();
    let mut parts = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(PART);
    let send = |buf: Vec<u8>, n: i32| {
        let s3 = s3.clone();
        let (bucket, key, id) = (bucket.to_string(), key.to_string(), id.clone());
        async move {
            let out = s3.upload_part().bucket(bucket).key(key).upload_id(id).part_number(n).body(ByteStream::from(buf)).send().await.expect("part");
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
    let mut r = disk.reader(&ctx(disk), path, None).await.expect("reader");
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

async fn streaming(disk: &Disk, native: &Client, bucket: &str, mib: usize) {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let bytes = mib << 20;
    let (mut wp, mut np, mut wg, mut ng) = (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        wp = wp.min(wasm_put(disk, &format!("big-w{round}"), &chunk, mib).await);
        np = np.min(native_put(native, bucket, &format!("big-n{round}"), &chunk, mib).await);
        let (d, n) = wasm_get(disk, &format!("big-w{round}")).await;
        assert_eq!(n, bytes);
        wg = wg.min(d);
        let (d, n) = native_get(native, bucket, &format!("big-n{round}")).await;
        assert_eq!(n, bytes);
        ng = ng.min(d);
    }
    println!("\n== streaming, MiB/s");
    println!("{:<10} {:>10} {:>10} {:>12}", "", "wasm", "native", "wasm/native");
    println!("{:<10} {:>10.0} {:>10.0} {:>11.2}x", "upload", mib_s(bytes, wp), mib_s(bytes, np), np.as_secs_f64() / wp.as_secs_f64());
    println!("{:<10} {:>10.0} {:>10.0} {:>11.2}x", "download", mib_s(bytes, wg), mib_s(bytes, ng), ng.as_secs_f64() / wg.as_secs_f64());
}

async fn small_ops(disk: &Disk, native: &Client, bucket: &str) {
    let data = Bytes::from(vec![7u8; 4096]);
    let c = ctx(disk);
    let per_sec = |d: Duration| SMALL_OPS as f64 / d.as_secs_f64();
    let start = Instant::now();
    for i in 0..SMALL_OPS {
        let mut w = disk.writer(&c, &format!("small/w{i}"), &WriteOptions::default()).await.expect("writer");
        w.write(data.clone()).await.expect("write");
        w.finish().await.expect("finish");
    }
    let wasm_put = start.elapsed();
    let start = Instant::now();
    for i in 0..SMALL_OPS {
        native.put_object().bucket(bucket).key(format!("small/n{i}")).body(ByteStream::from(data.clone())).send().await.expect("put");
    }
    let native_put = start.elapsed();
    let start = Instant::now();
    for i in 0..SMALL_OPS {
        let mut r = disk.reader(&c, &format!("small/w{i}"), None).await.expect("reader");
        while r.next_chunk(CHUNK).await.expect("read").is_some() {}
    }
    let wasm_get = start.elapsed();
    let start = Instant::now();
    for i in 0..SMALL_OPS {
        let o = native.get_object().bucket(bucket).key(format!("small/n{i}")).send().await.expect("get");
        std::hint::black_box(o.body.collect().await.expect("body"));
    }
    let native_get = start.elapsed();
    println!("\n== 4 KiB operations ({SMALL_OPS} each), ops/s");
    println!("{:<6} {:>10} {:>10} {:>12}", "op", "wasm", "native", "wasm/native");
    println!("{:<6} {:>10.0} {:>10.0} {:>11.2}x", "put", per_sec(wasm_put), per_sec(native_put), native_put.as_secs_f64() / wasm_put.as_secs_f64());
    println!("{:<6} {:>10.0} {:>10.0} {:>11.2}x", "get", per_sec(wasm_get), per_sec(native_get), native_get.as_secs_f64() / wasm_get.as_secs_f64());
}
