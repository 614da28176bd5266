//! A mirrored write and read against the same work on each of its disks alone, in one run.
//! Prints ratios; asserts nothing.
//!
//! `cargo bench -p stowage-tests --bench mirror` (`tests/run bench --bench mirror`).
//! Two local-fs disks `a` and `b`, and `archive` mirroring both (write quorum 2). 1 GiB is
//! written in 1 MiB chunks and committed (fsync) to `a`, to `b`, and to `archive` (both copies,
//! their block digests, one measure of the bytes), taking turns going first; then read back
//! whole (the mirror checks every block). Two set-ups: both disks on the work directory's file
//! system (one device: the mirror must push twice the bytes through it), and, where
//! `/dev/shm` exists, `b` on it (two devices, as mirrors are deployed). The goal is the
//! mirrored write at >= 0.8x of the slower single disk.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::{Disk, MAX_CHUNK, WriteOptions};
use stowage_tests::{ctx, object_path};

const ROUNDS: usize = 3;
const SIZE: usize = 1 << 30;

fn main() {
    let dir = stowage_tests::bench::work_dir();
    let d = dir.path();
    let shm = Path::new("/dev/shm");
    let second = shm.is_dir().then(|| tempfile::tempdir_in(shm).expect("a directory in /dev/shm"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let engine = stowage_runtime::PluginEngine::new().expect("engine");
        let chunk = Bytes::from((0..MAX_CHUNK).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
        println!("stowage mirror benchmark in {} (1 GiB, best of {ROUNDS})", d.display());
        let mut setups = vec![("one device", d.join("a"), d.join("b"))];
        if let Some(s) = &second {
            setups.push(("two devices (b on /dev/shm)", d.join("a2"), s.path().join("b")));
        }
        for (setup, a_dir, b_dir) in setups {
            std::fs::create_dir_all(&a_dir).expect("a");
            std::fs::create_dir_all(&b_dir).expect("b");
            let a = stowage_tests::local_disk(&engine, "a", &a_dir, Default::default());
            let b = stowage_tests::local_disk(&engine, "b", &b_dir, Default::default());
            let archive = stowage_runtime::mirror::mirrored("archive", vec![a.clone(), b.clone()], 2).expect("mirror");
            let disks = [("a", &a), ("b", &b), ("archive (a+b)", &archive)];
            let mut write = [Duration::MAX; 3];
            let mut read = [Duration::MAX; 3];
            for round in 0..ROUNDS {
                for k in 0..3 {
                    let i = (k + round) % 3;
                    let (_, disk) = disks[i];
                    write[i] = write[i].min(put(disk, &chunk).await);
                    read[i] = read[i].min(get(disk).await);
                    disk.delete(&ctx(disk), &object_path("bench/one-gib.bin")).await.expect("clean up");
                }
            }
            let rate = |t: Duration| SIZE as f64 / t.as_secs_f64() / f64::from(1u32 << 20);
            println!("{setup}:");
            println!("  {:<16} {:>12} {:>12}", "disk", "write+fsync", "read");
            for (i, (name, _)) in disks.iter().enumerate() {
                println!("  {name:<16} {:>6.0} MiB/s {:>6.0} MiB/s", rate(write[i]), rate(read[i]));
            }
            println!(
                "  mirrored write vs the slower disk alone: {:.2}x; mirrored (checked) read: {:.2}x",
                write[0].max(write[1]).as_secs_f64() / write[2].as_secs_f64(),
                read[0].max(read[1]).as_secs_f64() / read[2].as_secs_f64(),
            );
        }
    });
}

/// Writes 1 GiB to `disk` and commits it; how long it took.
async fn put(disk: &Disk, chunk: &Bytes) -> Duration {
    let started = Instant::now();
    let mut w =
        disk.writer(&ctx(disk), &object_path("bench/one-gib.bin"), &WriteOptions::default()).await.expect("open");
    for _ in 0..SIZE / MAX_CHUNK {
        w.write(chunk.clone()).await.expect("write");
    }
    w.finish().await.expect("commit");
    started.elapsed()
}

/// Reads the object back whole; how long it took.
async fn get(disk: &Disk) -> Duration {
    let started = Instant::now();
    let mut r = disk.reader(&ctx(disk), &object_path("bench/one-gib.bin"), None).await.expect("open");
    let mut n = 0;
    while let Some(c) = r.next_chunk(MAX_CHUNK).await.expect("read") {
        n += c.len();
    }
    assert_eq!(n, SIZE);
    started.elapsed()
}
