//! local-fs component vs native Rust on the same disk, in one run. Prints ratios; asserts nothing.
//!
//! `cargo bench -p stowage-tests --bench local_fs` (1 GiB; `STOWAGE_BENCH_MIB=256` for a quick run,
//! `STOWAGE_BENCH_DIR=/path` to choose the disk; default: the workspace's target dir;
//! `STOWAGE_BENCH_ONLY=streaming|small|start` runs one section; `STOWAGE_BENCH_OPS=N` sets the
//! count of small operations, for profiling).
//!
//! Baselines:
//! - streaming: `std::fs` with the same 1 MiB chunks and the same durable steps as local-fs
//!   (temp file, fsync, a JSON metadata sidecar written and fsynced, both renamed, fsync dir);
//!   once without sha256 and once hashing on a thread of its own, as the host does.
//! - small ops: the same on-disk protocol as local-fs (object + JSON metadata sidecar) written
//!   natively ("native-same"), and the bare minimum (`raw`: one durable file, `fs::read`,
//!   `fs::metadata`) for context.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;
use stowage_runtime::{Disk, Limits, PluginEngine, WriteOptions};
use stowage_tests::bench::{per_sec, section, small_op_count};
use stowage_tests::{block, ctx, local_disk, object_path};
use wasmtime::component::Component;

const CHUNK: usize = 1 << 20;
const ROUNDS: usize = 3;

fn main() {
    let mib: u64 = std::env::var("STOWAGE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = stowage_tests::bench::work_dir();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = PluginEngine::new().expect("engine");
    let wasm_root = dir.path().join("wasm");
    let native_root = dir.path().join("native");
    std::fs::create_dir_all(&wasm_root).expect("dir");
    std::fs::create_dir_all(&native_root).expect("dir");
    let disk = local_disk(&engine, "bench", &wasm_root, Limits::default());
    println!(
        "stowage local-fs benchmark in {} ({mib} MiB objects, 1 MiB chunks, best of {ROUNDS})",
        dir.path().display()
    );
    rt.block_on(async {
        if section("streaming") {
            streaming(&disk, &native_root, mib).await;
        }
        if section("small") {
            small_ops(&disk, &native_root).await;
        }
        if section("start") {
            cold_start(&engine, &wasm_root).await;
        }
    });
}

fn gib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

fn best<T>(mut f: impl FnMut() -> T) -> T
where
    T: PartialOrd + Copy,
{
    let mut best = f();
    for _ in 1..ROUNDS {
        let t = f();
        if t < best {
            best = t;
        }
    }
    best
}

/// (time to stream the bytes, total time including fsync + rename)
type Times = (Duration, Duration);

fn native_write(root: &Path, chunk: &Bytes, mib: u64, hash: bool) -> Times {
    let start = Instant::now();
    let tmp = root.join(".big.tmp");
    let mut f = std::fs::File::create(&tmp).expect("create");
    // The host hashes on a thread of its own, fed the same chunks: so does this.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(8);
    let hasher = hash.then(|| {
        std::thread::spawn(move || {
            let mut h = sha2::Sha256::new();
            while let Ok(c) = rx.recv() {
                h.update(&c);
            }
            hex::encode(h.finalize())
        })
    });
    for _ in 0..mib {
        if hasher.is_some() {
            tx.send(chunk.clone()).expect("hasher");
        }
        f.write_all(chunk).expect("write");
    }
    drop(tx);
    let streamed = start.elapsed();
    let sha = hasher.map(|h| h.join().expect("hasher")).unwrap_or_default();
    f.sync_all().expect("fsync");
    // The sidecar local-fs keeps beside every object, made durable the same way.
    let side =
        serde_json::json!({"object_id": "x", "size": mib << 20, "sha256": sha, "content_type": null, "metadata": []});
    let meta_tmp = root.join(".big.meta.tmp");
    let mut m = std::fs::File::create(&meta_tmp).expect("create");
    m.write_all(&serde_json::to_vec(&side).expect("json")).expect("write");
    m.sync_all().expect("fsync");
    std::fs::rename(&tmp, root.join("big.bin")).expect("rename");
    std::fs::rename(&meta_tmp, root.join(".big.bin.meta")).expect("rename");
    std::fs::File::open(root).and_then(|d| d.sync_all()).expect("fsync dir");
    (streamed, start.elapsed())
}

async fn wasm_write(disk: &Disk, chunk: &Bytes, mib: u64) -> Times {
    let c = ctx(disk);
    let start = Instant::now();
    let mut w = disk.writer(&c, &object_path("big.bin"), &WriteOptions::default()).await.expect("writer");
    for _ in 0..mib {
        w.write(chunk.clone()).await.expect("write");
    }
    let streamed = start.elapsed();
    w.finish().await.expect("finish");
    (streamed, start.elapsed())
}

fn native_read(root: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let mut f = std::fs::File::open(root.join("big.bin")).expect("open");
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).expect("read");
        if got == 0 {
            break;
        }
        n += got as u64;
        std::hint::black_box(&buf[..got]);
    }
    (start.elapsed(), n)
}

async fn wasm_read(disk: &Disk) -> (Duration, u64) {
    let c = ctx(disk);
    let start = Instant::now();
    let mut r = disk.reader(&c, &object_path("big.bin"), None).await.expect("reader");
    let mut n = 0u64;
    while let Some(chunk) = r.next_chunk(CHUNK).await.expect("read") {
        n += chunk.len() as u64;
        std::hint::black_box(&chunk);
    }
    (start.elapsed(), n)
}

async fn streaming(disk: &Disk, native_root: &Path, mib: u64) {
    let chunk = Bytes::from(block(7));
    let bytes = mib << 20;
    let (mut nat, mut nat_h, mut wasm) =
        ((Duration::MAX, Duration::MAX), (Duration::MAX, Duration::MAX), (Duration::MAX, Duration::MAX));
    for round in 0..ROUNDS {
        // Alternate who goes first: the disk's write-back state favours whoever follows a pause.
        let w_first = if round % 2 == 1 { Some(wasm_write(disk, &chunk, mib).await) } else { None };
        let n = native_write(native_root, &chunk, mib, false);
        let nh = native_write(native_root, &chunk, mib, true);
        let w = match w_first {
            Some(w) => w,
            None => wasm_write(disk, &chunk, mib).await,
        };
        nat = (nat.0.min(n.0), nat.1.min(n.1));
        nat_h = (nat_h.0.min(nh.0), nat_h.1.min(nh.1));
        wasm = (wasm.0.min(w.0), wasm.1.min(w.1));
    }
    println!("\n== streaming write, {mib} MiB");
    println!("{:<34} {:>12} {:>12}", "", "stream GiB/s", "durable GiB/s");
    for (name, t) in [
        ("native std::fs + sidecar", nat),
        ("native + sidecar + sha256 thread", nat_h),
        ("wasm local-fs (host hashes)", wasm),
    ] {
        println!("{name:<34} {:>12.2} {:>12.2}", gib_s(bytes, t.0), gib_s(bytes, t.1));
    }
    println!(
        "ratio wasm / native:          stream {:.2}x  durable {:.2}x",
        nat.0.as_secs_f64() / wasm.0.as_secs_f64(),
        nat.1.as_secs_f64() / wasm.1.as_secs_f64()
    );
    println!(
        "ratio wasm / native + sha256: stream {:.2}x  durable {:.2}x",
        nat_h.0.as_secs_f64() / wasm.0.as_secs_f64(),
        nat_h.1.as_secs_f64() / wasm.1.as_secs_f64()
    );

    let mut nr = Duration::MAX;
    let mut wr = Duration::MAX;
    for _ in 0..ROUNDS {
        let (t, n) = native_read(native_root);
        assert_eq!(n, bytes);
        nr = nr.min(t);
        let (t, n) = wasm_read(disk).await;
        assert_eq!(n, bytes);
        wr = wr.min(t);
    }
    println!("\n== streaming read, {mib} MiB (page cache warm for both)");
    println!("native std::fs                     {:>8.2} GiB/s", gib_s(bytes, nr));
    println!("wasm local-fs                      {:>8.2} GiB/s", gib_s(bytes, wr));
    println!("ratio wasm / native: {:.2}x", nr.as_secs_f64() / wr.as_secs_f64());
    let _ = std::fs::remove_file(native_root.join("big.bin"));
    let _ = disk.delete(&ctx(disk), &object_path("big.bin")).await;
}

/// The local-fs on-disk protocol, natively: object + JSON sidecar, both durable.
mod native_same {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    pub fn put(root: &Path, name: &str, data: &[u8]) {
        let obj_tmp = root.join(format!(".{name}.stowage-tmp-1"));
        let meta_tmp = root.join(format!(".{name}.stowage-tmp-2"));
        let mut f = std::fs::File::create(&obj_tmp).expect("create");
        f.write_all(data).expect("write");
        f.sync_all().expect("fsync");
        let id = f.metadata().map(|m| format!("{:x}{:x}", m.dev(), m.ino())).expect("stat");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        let side = serde_json::json!({"object_id": id, "size": data.len(), "sha256": sha, "content_type": null, "metadata": []});
        let mut m = std::fs::File::create(&meta_tmp).expect("create");
        m.write_all(&serde_json::to_vec(&side).expect("json")).expect("write");
        m.sync_all().expect("fsync");
        std::fs::rename(&obj_tmp, root.join(name)).expect("rename");
        std::fs::rename(&meta_tmp, root.join(format!(".{name}.stowage-meta"))).expect("rename");
        std::fs::File::open(root).and_then(|d| d.sync_all()).expect("fsync dir");
    }

    pub fn stat(root: &Path, name: &str) -> u64 {
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(format!(".{name}.stowage-meta"))).expect("read"))
                .expect("json");
        let m = std::fs::symlink_metadata(root.join(name)).expect("stat");
        std::hint::black_box(side["object_id"] == format!("{:x}{:x}", m.dev(), m.ino()));
        m.len()
    }

    pub fn get(root: &Path, name: &str) -> Vec<u8> {
        stat(root, name);
        std::fs::read(root.join(name)).expect("read")
    }
}

mod raw {
    use std::io::Write;
    use std::path::Path;

    pub fn put(root: &Path, name: &str, data: &[u8]) {
        let tmp = root.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(data).expect("write");
        f.sync_all().expect("fsync");
        std::fs::rename(&tmp, root.join(name)).expect("rename");
        std::fs::File::open(root).and_then(|d| d.sync_all()).expect("fsync dir");
    }
}

async fn small_ops(disk: &Disk, native_root: &Path) {
    let n_ops = small_op_count();
    let data = Bytes::from(vec![42u8; 4096]);
    let c = ctx(disk);
    let names: Vec<String> = (0..n_ops).map(|i| format!("s{i}")).collect();
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    println!("\n== 4 KiB operations ({n_ops} each), ops/s");
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>16} {:>12}",
        "op", "wasm", "native-same", "raw", "wasm/native-same", "wasm/raw"
    );

    let raw_put = time(&mut || names.iter().for_each(|n| raw::put(native_root, &format!("r{n}"), &data)));
    let nat_put = time(&mut || names.iter().for_each(|n| native_same::put(native_root, n, &data)));
    let start = Instant::now();
    for n in &names {
        disk.put_bytes(&c, &object_path(n), data.clone(), &WriteOptions::default()).await.expect("put");
    }
    let wasm_put = start.elapsed();
    row("put", wasm_put, nat_put, raw_put);

    let raw_get = time(&mut || {
        names.iter().for_each(|n| {
            std::hint::black_box(std::fs::read(native_root.join(format!("r{n}"))).expect("read"));
        })
    });
    let nat_get = time(&mut || {
        names.iter().for_each(|n| {
            std::hint::black_box(native_same::get(native_root, n));
        })
    });
    let start = Instant::now();
    for n in &names {
        std::hint::black_box(disk.get_bytes(&c, &object_path(n), None).await.expect("get"));
    }
    let wasm_get = start.elapsed();
    row("get", wasm_get, nat_get, raw_get);

    let raw_stat = time(&mut || {
        names.iter().for_each(|n| {
            std::hint::black_box(std::fs::metadata(native_root.join(format!("r{n}"))).expect("stat"));
        })
    });
    let nat_stat = time(&mut || {
        names.iter().for_each(|n| {
            std::hint::black_box(native_same::stat(native_root, n));
        })
    });
    let start = Instant::now();
    for n in &names {
        std::hint::black_box(disk.stat(&c, &object_path(n)).await.expect("stat"));
    }
    let wasm_stat = start.elapsed();
    row("stat", wasm_stat, nat_stat, raw_stat);
}

fn row(op: &str, wasm: Duration, nat: Duration, raw: Duration) {
    println!(
        "{op:<6} {:>12.0} {:>12.0} {:>12.0} {:>15.2}x {:>11.2}x",
        per_sec(small_op_count(), wasm),
        per_sec(small_op_count(), nat),
        per_sec(small_op_count(), raw),
        nat.as_secs_f64() / wasm.as_secs_f64(),
        raw.as_secs_f64() / wasm.as_secs_f64(),
    );
}

async fn cold_start(engine: &PluginEngine, root: &Path) {
    let bytes = stowage_bundled::get("local-fs").expect("bundled");
    let compile = best(|| {
        let start = Instant::now();
        Component::new(engine.engine(), bytes).expect("compile");
        start.elapsed()
    });
    let component = Component::new(engine.engine(), bytes).expect("compile");
    let serialized = component.serialize().expect("serialize");
    let load = best(|| {
        let start = Instant::now();
        // SAFETY: the bytes were produced by `serialize` on this very engine, just above.
        #[allow(unsafe_code, reason = "measuring precompiled-component load; bytes come from this engine")]
        let c = unsafe { Component::deserialize(engine.engine(), &serialized) };
        c.expect("deserialize");
        start.elapsed()
    });
    // Through the plugin loader (signature checks skipped for bundled bytes): a cold start
    // compiles and fills the cache; a warm start verifies the cache entry and deserializes.
    let cache_dir = root.join("compiled-cache");
    let source = stowage_runtime::config::PluginSource::Bundled("local-fs");
    let pins = stowage_runtime::plugin::Pins::default();
    let timed_load = |dir: &Path| {
        let loader = stowage_runtime::plugin::PluginLoader::new(engine, Default::default(), Some(dir));
        let start = Instant::now();
        loader.load(&source, &pins, stowage_runtime::plugin::inspect::World::Driver).expect("load");
        (start.elapsed(), loader.stats())
    };
    let (cold_load, cold_stats) = timed_load(&cache_dir);
    let (warm_load, warm_stats) = timed_load(&cache_dir);
    assert_eq!((cold_stats, warm_stats), ((1, 0), (0, 1)), "cold must compile, warm must hit the cache");
    let grants = stowage_runtime::DriverGrants { dir: Some(root.to_path_buf()), ..Default::default() };
    let mut first = Duration::MAX;
    let mut warm = Duration::MAX;
    let mut bare = Duration::MAX;
    for _ in 0..ROUNDS {
        let disk = Disk::from_component(engine, "cold", &component, grants.clone(), Limits::default()).expect("link");
        let c = ctx(&disk);
        let start = Instant::now();
        disk.exists(&c, &object_path("x")).await.expect("exists");
        first = first.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..100 {
            disk.exists(&c, &object_path("x")).await.expect("exists");
        }
        warm = warm.min(start.elapsed() / 100);
        let start = Instant::now();
        for _ in 0..100 {
            disk.capabilities().await.expect("capabilities");
        }
        bare = bare.min(start.elapsed() / 100);
    }
    println!("\n== cold start (local-fs component, {} KiB)", bytes.len() / 1024);
    println!("compile                     {:>10.2} ms", compile.as_secs_f64() * 1e3);
    println!(
        "load precompiled (.cwasm)   {:>10.3} ms  ({:.0}x faster than compiling)",
        load.as_secs_f64() * 1e3,
        compile.as_secs_f64() / load.as_secs_f64()
    );
    println!("plugin start, cold (verify + compile + cache) {:>8.2} ms", cold_load.as_secs_f64() * 1e3);
    println!(
        "plugin start, warm (verify + cached code)     {:>8.2} ms  ({:.0}x faster)",
        warm_load.as_secs_f64() * 1e3,
        cold_load.as_secs_f64() / warm_load.as_secs_f64()
    );
    println!("first call (instantiate)    {:>10.1} us", first.as_secs_f64() * 1e6);
    println!("warm call, exists (pooled)  {:>10.1} us", warm.as_secs_f64() * 1e6);
    println!("warm call, no I/O (get-capabilities) {:>6.1} us", bare.as_secs_f64() * 1e6);
}
