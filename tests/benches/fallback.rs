//! The fallback syncer vs a plain verified copy between the same two disks, in one run.
//! Prints ratios; asserts nothing.
//!
//! `cargo bench -p stowage-tests --bench fallback` (`tests/run bench --bench fallback`).
//! Two local-fs disks: `main` with `fallback = "spool"`. Queued writes are planted on `spool` as
//! the queue keeps them (the entry's path, the marker, the host's sha256), then one sync pass
//! moves them; the baseline streams the same objects from `spool` to `main` with the same
//! 1 MiB chunks and the same sha256 check at the commit, without the queue's steps (a stat of
//! each entry before and after, a ledger record, the entry's removal).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest as _;
use stowage_runtime::fallback::MARKER;
use stowage_runtime::{Disk, LoadedConfig, MAX_CHUNK, Storage, WriteOptions};
use stowage_tests::{ctx, object_path};

const ROUNDS: usize = 3;

fn main() {
    let dir = stowage_tests::bench::work_dir();
    let d = dir.path();
    let config = d.join("stowage.toml");
    std::fs::write(
        &config,
        "role = \"testing\"\n[disks.main]\nplugin = \"local-fs\"\ngrant = { dir = \"main\" }\nfallback = \"spool\"\n\
         [disks.spool]\nplugin = \"local-fs\"\ngrant = { dir = \"spool\" }\n[storage]\ndefault = \"main\"\n\
         [ledger]\npath = \"ledger.sqlite\"\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let loaded = LoadedConfig::load(Some(&config)).expect("config");
        let storage = Storage::open(&loaded).await.expect("storage");
        let engine = stowage_runtime::PluginEngine::new().expect("engine");
        let main = stowage_tests::local_disk(&engine, "main", &d.join("main"), Default::default());
        let spool = stowage_tests::local_disk(&engine, "spool", &d.join("spool"), Default::default());
        println!("stowage fallback sync benchmark in {} (best of {ROUNDS})", d.display());
        println!("{:<22} {:>12} {:>12} {:>8}", "objects", "sync", "plain copy", "ratio");
        for (count, size) in [(8usize, 64usize << 20), (500, 4 << 10)] {
            let mut best_sync = Duration::MAX;
            let mut best_copy = Duration::MAX;
            for _ in 0..ROUNDS {
                let paths = plant(&spool, count, size).await;
                let started = Instant::now();
                let report = storage.sync_fallbacks().await.expect("sync");
                best_sync = best_sync.min(started.elapsed());
                assert_eq!(report.synced.len(), count, "every entry synced: {report:?}");
                let paths = plant(&spool, count, size).await.into_iter().zip(paths).collect::<Vec<_>>();
                let started = Instant::now();
                for ((entry, sha), _) in &paths {
                    plain_copy(&spool, &main, entry, sha).await;
                }
                best_copy = best_copy.min(started.elapsed());
                for ((entry, _), _) in &paths {
                    spool.delete(&ctx(&spool), &object_path(entry)).await.expect("clean up");
                }
            }
            let bytes = (count * size) as f64;
            let rate = |t: Duration| bytes / t.as_secs_f64() / f64::from(1u32 << 20);
            let per_sec = |t: Duration| count as f64 / t.as_secs_f64();
            println!(
                "{:<22} {:>8.1} MiB/s {:>6.1} MiB/s {:>7.2}x   ({:.0} vs {:.0} objects/s)",
                format!("{count} x {} KiB", size >> 10),
                rate(best_sync),
                rate(best_copy),
                best_copy.as_secs_f64() / best_sync.as_secs_f64(),
                per_sec(best_sync),
                per_sec(best_copy),
            );
        }
    });
}

/// Plants `count` queued writes of `size` bytes on the fallback disk; their (entry, sha256).
async fn plant(spool: &Disk, count: usize, size: usize) -> Vec<(String, String)> {
    let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let entry = format!("stowage-fallback/main/bench/{i:05}.bin");
        let options =
            WriteOptions { metadata: vec![(MARKER.to_string(), "put".to_string())], ..WriteOptions::default() };
        let mut writer = spool.writer(&ctx(spool), &object_path(&entry), &options).await.expect("writer");
        for chunk in body.chunks(MAX_CHUNK) {
            writer.write(body.slice_ref(chunk)).await.expect("write");
        }
        writer.finish().await.expect("commit");
        out.push((entry, sha.clone()));
    }
    out
}

/// Streams `entry` from `from` to the same path under `copied/` on `to`, committed only with
/// sha256 `sha`.
async fn plain_copy(from: &Disk, to: &Disk, entry: &str, sha: &str) {
    let target = object_path(&format!("copied/{entry}"));
    let mut reader = from.reader(&ctx(from), &object_path(entry), None).await.expect("reader");
    let mut writer = to.writer(&ctx(to), &target, &WriteOptions::default()).await.expect("writer");
    while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await.expect("read") {
        writer.write(chunk).await.expect("write");
    }
    writer.finish_verified(Some(sha)).await.expect("commit");
}
