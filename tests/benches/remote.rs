//! Web → services: the remote driver component against the same services API driven by curl,
//! and against a whole-file protocol (the whole file as base64 in one JSON request each way,
//! the simplest remote storage API there is), implemented here as a baseline. In one run, on loopback,
//! plain HTTP (dev mode) so that TLS cost does not hide the protocol's. Prints ratios; asserts
//! nothing.
//!
//! `cargo bench -p stowage-tests --bench remote` (1 GiB; `STOWAGE_BENCH_MIB=256` for a quick
//! run; `STOWAGE_BENCH_ONLY=streaming|small` for one section).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use stowage_runtime::http::{Endpoint, Outbound};
use stowage_runtime::{Disk, DriverGrants, Limits, PluginEngine, WriteOptions};
use stowage_tests::bench::{per_sec, section, work_dir};
use stowage_tests::{ctx, object_path};

const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";
const CHUNK: usize = 1 << 20;
const CLIENTS: usize = 16;
const ROUND_TRIPS: usize = 2000;

fn main() {
    let mib: usize = std::env::var("STOWAGE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = work_dir();
        let services = start_services(dir.path()).await;
        let url = format!("http://{services}");
        let engine = PluginEngine::new().expect("engine");
        let outbound = Outbound::new(Endpoint::parse(&url).expect("endpoint"), Some(KEY), None).expect("outbound");
        let grants = DriverGrants {
            config: vec![("endpoint".into(), url.clone()), ("name".into(), "default".into())],
            outbound: Some(Arc::new(outbound)),
            ..DriverGrants::default()
        };
        let limits = Limits { max_instances: 32, ..Limits::default() };
        let disk = Disk::load(&engine, "remote", stowage_bundled::get("remote").expect("bundled"), grants, limits)
            .expect("remote driver");
        println!("web → services on loopback ({url}, plain HTTP), {mib} MiB objects");
        if section("streaming") {
            streaming(&disk, &url, dir.path(), mib).await;
        }
        if section("small") {
            small(&disk, &url).await;
        }
    });
}

/// A services host in this process: one local-fs disk, no policies, dev mode.
async fn start_services(dir: &Path) -> SocketAddr {
    let text = format!(
        "role = \"services\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"services-data\" }}\n[storage]\ndefault = \"local\"\n\
         [ledger]\npath = \"ledger.sqlite\"\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n"
    );
    let file = dir.join("services.toml");
    std::fs::write(&file, text).expect("config file");
    stowage_tests::serve_in_process(&file).await
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// One chunk of varied bytes.
fn chunk() -> Bytes {
    Bytes::from((0..CHUNK).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>())
}

/// Rounds of the streaming comparison; each client's best counts.
const ROUNDS: usize = 3;

/// (upload, download) times of one client.
type UpDown = (Duration, Duration);

async fn remote_round(disk: &Disk, chunk: &Bytes, mib: usize) -> UpDown {
    // The remote driver: 1 MiB chunks from memory, as a web host gets them from its client.
    let start = Instant::now();
    let mut w =
        disk.writer(&ctx(disk), &object_path("bench/remote.bin"), &WriteOptions::default()).await.expect("writer");
    for _ in 0..mib {
        w.write(chunk.clone()).await.expect("write");
    }
    w.finish().await.expect("finish");
    let up = start.elapsed();
    let start = Instant::now();
    let mut r = disk.reader(&ctx(disk), &object_path("bench/remote.bin"), None).await.expect("reader");
    let mut got = 0;
    while let Some(c) = r.next_chunk(CHUNK).await.expect("read") {
        got += c.len();
    }
    assert_eq!(got, mib * CHUNK);
    (up, start.elapsed())
}

fn curl_round(url: &str, file: &Path) -> UpDown {
    // curl against the same API, from and to a file (page cache).
    let auth = format!("Authorization: Bearer {KEY}");
    let obj = format!("{url}/v1/objects/default/bench/curl.bin");
    let curl = |args: &[&str]| {
        let start = Instant::now();
        let o = std::process::Command::new("curl").args(["-sS", "-f", "-H", &auth]).args(args).output().expect("curl");
        assert!(o.status.success(), "curl: {}", String::from_utf8_lossy(&o.stderr));
        start.elapsed()
    };
    (curl(&["-T", file.to_str().expect("utf-8 path"), "-o", "/dev/null", &obj]), curl(&["-o", "/dev/null", &obj]))
}

async fn whole_file_round(client: &reqwest::Client, server: SocketAddr, chunk: &Bytes, bytes: usize) -> UpDown {
    // The whole-file protocol: the file as base64 in one JSON body, each way.
    let whole: Vec<u8> = chunk.iter().copied().cycle().take(bytes).collect();
    let start = Instant::now();
    let body = serde_json::to_vec(
        &serde_json::json!({ "path": "whole.bin", "content": base64::engine::general_purpose::STANDARD.encode(&whole) }),
    )
    .expect("json");
    drop(whole);
    let r = client.post(format!("http://{server}/store")).body(body).send().await.expect("whole store");
    assert!(r.status().is_success());
    let up = start.elapsed();
    let start = Instant::now();
    let r = client.get(format!("http://{server}/fetch?path=whole.bin")).send().await.expect("whole fetch");
    let text = r.bytes().await.expect("whole body");
    let v: serde_json::Value = serde_json::from_slice(&text).expect("whole json");
    let back =
        base64::engine::general_purpose::STANDARD.decode(v["content"].as_str().expect("content")).expect("base64");
    assert_eq!(back.len(), bytes);
    (up, start.elapsed())
}

async fn streaming(disk: &Disk, url: &str, dir: &Path, mib: usize) {
    let chunk = chunk();
    let bytes = mib * CHUNK;
    let file = dir.join("curl.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("file"));
        for _ in 0..mib {
            f.write_all(&chunk).expect("write");
        }
    }
    let whole = start_whole_file_server(dir.join("whole-data")).await;
    let client = reqwest::Client::new();
    // Best of ROUNDS for each client; the order rotates, so none always goes first (on cold
    // state) or last.
    let mut best = [(Duration::MAX, Duration::MAX); 3];
    for round in 0..ROUNDS {
        for k in 0..3 {
            let who = (round + k) % 3;
            let t = match who {
                0 => remote_round(disk, &chunk, mib).await,
                1 => curl_round(url, &file),
                _ => whole_file_round(&client, whole, &chunk, bytes).await,
            };
            best[who] = (best[who].0.min(t.0), best[who].1.min(t.1));
        }
    }
    let _ = std::fs::remove_file(&file);
    let [remote, curl, whole] = best;
    println!("\n1 GiB-class streaming ({mib} MiB, best of {ROUNDS}, rotating order), MiB/s:");
    println!("{:<10} {:>10} {:>10} {:>14} {:>14}", "", "remote", "curl", "remote/curl", "remote/whole");
    for (what, remote, curl, whole) in [("upload", remote.0, curl.0, whole.0), ("download", remote.1, curl.1, whole.1)]
    {
        println!(
            "{what:<10} {:>10.0} {:>10.0} {:>13.2}x {:>13.1}x   (whole-file protocol {:.0} MiB/s)",
            mib_s(bytes, remote),
            mib_s(bytes, curl),
            curl.as_secs_f64() / remote.as_secs_f64(),
            whole.as_secs_f64() / remote.as_secs_f64(),
            mib_s(bytes, whole)
        );
    }
}

/// The whole-file protocol, as a server: `POST /store` with `{"path", "content": base64}`,
/// `GET /fetch?path=` answering `{"content": base64}`; whole files in memory both ways. A store
/// takes the steps the services host's does (sha256 of the bytes, a temp file synced, renamed
/// into place, the directory synced), so the comparison is of protocols, not of durability.
async fn start_whole_file_server(root: std::path::PathBuf) -> SocketAddr {
    use axum::extract::{Query, State};
    use axum::routing::{get, post};
    std::fs::create_dir_all(&root).expect("whole dir");
    async fn store(State(root): State<Arc<std::path::PathBuf>>, body: Bytes) -> axum::http::StatusCode {
        let v: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return axum::http::StatusCode::BAD_REQUEST,
        };
        let (Some(path), Some(content)) = (v["path"].as_str(), v["content"].as_str()) else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content) else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        let path = root.join(path);
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            std::hint::black_box(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let tmp = path.with_extension("whole-tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
        })
        .await;
        match written {
            Ok(Ok(())) => axum::http::StatusCode::OK,
            _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn fetch(
        State(root): State<Arc<std::path::PathBuf>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Vec<u8> {
        let bytes = tokio::fs::read(root.join(q.get("path").map_or("", String::as_str))).await.unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({ "content": base64::engine::general_purpose::STANDARD.encode(bytes) }))
            .unwrap_or_default()
    }
    let app = axum::Router::new()
        .route("/store", post(store))
        .route("/fetch", get(fetch))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::new(root));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// 4 KiB put + get round trips from 16 concurrent clients: through the remote driver, and
/// straight to the services API with a pooled native HTTP client.
async fn small(disk: &Disk, url: &str) {
    let body = Bytes::from(vec![7u8; 4096]);
    let per_client = ROUND_TRIPS / CLIENTS;

    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (disk, body) = (disk.clone(), body.clone());
            tokio::spawn(async move {
                for i in 0..per_client {
                    let path = object_path(&format!("small/r{c}-{i}"));
                    let mut w = disk.writer(&ctx(&disk), &path, &WriteOptions::default()).await.expect("writer");
                    w.write(body.clone()).await.expect("write");
                    w.finish().await.expect("finish");
                    let mut r = disk.reader(&ctx(&disk), &path, None).await.expect("reader");
                    while r.next_chunk(CHUNK).await.expect("read").is_some() {}
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    let remote = start.elapsed();

    let client = reqwest::Client::new();
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, body, url) = (client.clone(), body.clone(), url.to_string());
            tokio::spawn(async move {
                for i in 0..per_client {
                    let obj = format!("{url}/v1/objects/default/small/n{c}-{i}");
                    let r = client.put(&obj).bearer_auth(KEY).body(body.clone()).send().await.expect("put");
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
                    let r = client.get(&obj).bearer_auth(KEY).send().await.expect("get");
                    assert_eq!(r.bytes().await.expect("body").len(), 4096);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    let native = start.elapsed();
    let n = per_client * CLIENTS;
    println!("\n4 KiB put+get round trips, {CLIENTS} concurrent clients ({n} round trips):");
    println!(
        "remote driver {:.0}/s, native HTTP client {:.0}/s: {:.2}x",
        per_sec(n, remote),
        per_sec(n, native),
        native.as_secs_f64() / remote.as_secs_f64()
    );
}
