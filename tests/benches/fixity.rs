//! `stowage fsck` (`Storage::fsck`) on a local-fs disk vs `sha256sum` over the same files, in
//! one run. Prints ratios (target: fsck >= 0.8x of sha256sum); asserts nothing.
//!
//! `cargo bench -p stowage-tests --bench fixity` (1 GiB in total; `STOWAGE_BENCH_MIB=256` for
//! a quick run, `STOWAGE_BENCH_DIR=/path` to choose the disk; `STOWAGE_BENCH_ONLY=large|small`
//! runs one section).
//!
//! Both read the files from the page cache (each is measured after a warm-up run, best of
//! three): what is compared is the host's cost (driver streaming, hashing, the ledger scan
//! and the `fixity_checked` record) against the native tool's, not the disk. sha256sum is
//! run once over every file (`sha256sum f1 f2 ...`, in batches of 500 names).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::{Address, ConfigSource, FsckOptions, LoadedConfig, Request, Storage, WriteOptions};
use stowage_tests::bench::section;

const ROUNDS: usize = 3;

const CONFIG: &str = "role = \"testing\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n\
    [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n";

fn main() {
    let mib: u64 = std::env::var("STOWAGE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = stowage_tests::bench::work_dir();
    let d = dir.path();
    std::fs::write(d.join("stowage.toml"), CONFIG).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let config =
        LoadedConfig::parse(CONFIG, ConfigSource::File(d.join("stowage.toml")), d.to_path_buf()).expect("config");
    println!("stowage fsck benchmark in {} ({mib} MiB per section, best of {ROUNDS})", d.display());
    rt.block_on(async {
        let storage = Storage::open(&config).await.expect("storage");
        if section("large") {
            // 64 MiB objects.
            let objects = (mib / 64).max(1);
            compare(&storage, d, "large", objects, 64 << 20).await;
        }
        if section("small") {
            // 64 KiB objects, the same bytes in all.
            let objects = (mib * 16).min(4096);
            compare(&storage, d, "small", objects, 64 << 10).await;
        }
    });
}

/// Writes `objects` objects of `size` bytes under `name/`, then times fsck and sha256sum.
async fn compare(storage: &Storage, d: &Path, name: &str, objects: u64, size: usize) {
    let req = Request::new();
    let mut files = Vec::new();
    for i in 0..objects {
        let path = format!("{name}/{i:05}.bin");
        let mut w = storage
            .writer(&Address::parse(&format!("local:{path}")).unwrap(), &req, &WriteOptions::default())
            .await
            .expect("writer");
        let mut left = size;
        let mut block = 0;
        while left > 0 {
            let b = stowage_tests::block(i * 1000 + block);
            let n = left.min(b.len());
            w.write(Bytes::copy_from_slice(&b[..n])).await.expect("write");
            left -= n;
            block += 1;
        }
        w.finish().await.expect("finish");
        files.push(d.join("data").join(&path));
    }
    let total = objects * size as u64;
    let addr = Address::parse(&format!("local:{name}/")).unwrap();
    let mut fsck = Duration::MAX;
    let mut native = Duration::MAX;
    // A warm-up of each first: both then read from the page cache.
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let report = storage.fsck(&addr, &req, &FsckOptions::default()).await.expect("fsck");
        let took = started.elapsed();
        assert!(report.is_clean() && report.bytes == total, "{report:?}");
        let started = Instant::now();
        sha256sum(&files);
        let took_native = started.elapsed();
        if round > 0 {
            fsck = fsck.min(took);
            native = native.min(took_native);
        }
    }
    let gib_s = |t: Duration| total as f64 / t.as_secs_f64() / (1u64 << 30) as f64;
    println!(
        "{name:>6}: {objects} objects of {} KiB: fsck {:.3} s ({:.2} GiB/s), sha256sum {:.3} s ({:.2} GiB/s): fsck at {:.2}x of sha256sum",
        size >> 10,
        fsck.as_secs_f64(),
        gib_s(fsck),
        native.as_secs_f64(),
        gib_s(native),
        native.as_secs_f64() / fsck.as_secs_f64()
    );
}

/// `sha256sum` over `files`, output discarded.
fn sha256sum(files: &[PathBuf]) {
    for batch in files.chunks(500) {
        let status = std::process::Command::new("sha256sum")
            .args(batch)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("sha256sum runs");
        assert!(status.success(), "sha256sum failed");
    }
}
