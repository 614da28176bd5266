//! Services hosts behind nginx, in one run: 4 KiB PUTs from 16 concurrent clients, each PUT
//! recorded in the PHI ledger on PostgreSQL, sent straight to one services host, through nginx
//! to that one host, and through nginx round robin to two hosts; after each run, the records
//! are counted (nothing lost, nothing recorded twice). Both hosts run in this process on the
//! SeaweedFS that `tests/run` starts, with one PostgreSQL database made by `initdb` for the
//! run; nginx is Debian's. Plain HTTP (dev mode) everywhere, so that TLS does not hide the
//! per-request cost. On 2 cores two hosts cannot scale out: the numbers say what a hop through
//! the balancer costs and that a second host costs nothing in correctness. Prints ratios.
//!
//! `tests/run bench --bench cluster` (`STOWAGE_BENCH_OPS=N` puts per measurement, default 300).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stowage_tests::bench::{per_sec, small_op_count, work_dir};
use stowage_tests::nginx::Nginx;
use stowage_tests::postgres::Postgres;

const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";
const CLIENTS: usize = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = work_dir();
        let d = dir.path();
        let pg = Postgres::start();
        let db = pg.create_database("bench");
        let s3 = stowage_tests::s3::server();
        let bucket = stowage_tests::s3::fresh_bucket(&s3, "cluster-bench").await;
        std::fs::write(d.join("s3-key"), &s3.access_key).unwrap();
        std::fs::write(d.join("s3-secret"), &s3.secret_key).unwrap();
        let mut hosts = Vec::new();
        for i in 1..=2 {
            let text = format!(
                "role = \"services\"\n[disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
                 config = {{ endpoint = \"{e}\", bucket = \"{bucket}\", access_key_id = {{ file = \"{k}\" }}, secret_access_key = {{ file = \"{s}\" }} }}\n\
                 [storage]\ndefault = \"nas\"\nsubmission = \"nas\"\n[[policies]]\nplugin = \"phi-tracking\"\n\
                 [ledger]\npath = \"ledger-{i}.sqlite\"\nurl = \"{db}\"\nhost = \"services-{i}\"\n\
                 [server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n",
                e = s3.endpoint,
                k = d.join("s3-key").display(),
                s = d.join("s3-secret").display(),
            );
            let file = d.join(format!("services-{i}.toml"));
            std::fs::write(&file, text).unwrap();
            hosts.push(stowage_tests::serve_in_process(&file).await);
        }
        let one = balancer(&hosts[..1]);
        let two = balancer(&hosts);
        let n = small_op_count() * 4 / CLIENTS * CLIENTS;
        println!("4 KiB PUTs, {CLIENTS} concurrent clients, {n} per run, each recorded in the ledger on PostgreSQL");
        let client = reqwest::Client::new();
        let runs = [
            ("one host, direct", format!("http://{}", hosts[0])),
            ("nginx -> one host", format!("http://127.0.0.1:{}", one.port)),
            ("nginx -> two hosts", format!("http://127.0.0.1:{}", two.port)),
        ];
        // Warm: each host's plugin instances, usage count and database connections are made
        // by its first requests, not measured.
        for (i, (_, base)) in runs.iter().enumerate() {
            puts(&client, base, &format!("warm-{i}"), n).await;
        }
        // Twice each, the second time in the other order, so that no way is always first.
        let mut took = vec![Vec::new(); runs.len()];
        for round in 0..2 {
            let order: Vec<usize> = if round == 0 { vec![0, 1, 2] } else { vec![2, 1, 0] };
            for i in order {
                let label = format!("r{round}-{i}");
                let t = puts(&client, &runs[i].1, &label, n).await;
                let (records, paths, by_host) = recorded(&pg, &label);
                assert_eq!((records, paths), (n, n), "{}: {records} records of {paths} paths, {n} writes", runs[i].0);
                println!("  {:<20} {:>7.0} puts/s   records: {by_host}", runs[i].0, per_sec(n, t));
                took[i].push(t);
            }
        }
        let best = |i: usize| took[i].iter().min().copied().unwrap_or_default().as_secs_f64();
        println!(
            "best of two: nginx -> one host {:.2}x direct, nginx -> two hosts {:.2}x direct (nginx adds {:+.0} µs to each request, 16 in flight)",
            best(0) / best(1),
            best(0) / best(2),
            (best(1) - best(0)) / n as f64 * 1e6 * CLIENTS as f64
        );
        drop((one, two, pg, dir));
    });
    // The hosts served in this process: their storage (with runtimes of its own) cannot be
    // dropped from inside this runtime's tasks. Everything outside the process is stopped.
    std::process::exit(0);
}

/// nginx in front of `hosts`, round robin, bodies streamed (as `deploy/cluster/nginx.conf`,
/// without TLS).
fn balancer(hosts: &[SocketAddr]) -> Nginx {
    let servers: String = hosts.iter().map(|h| format!("    server {h};\n")).collect();
    let port = stowage_tests::free_port();
    Nginx::start(
        port,
        &format!(
            "upstream stowage {{\n{servers}    keepalive 32;\n}}\n\
             server {{\n  listen 127.0.0.1:{port};\n  client_max_body_size 0;\n  proxy_request_buffering off;\n  proxy_buffering off;\n\
             location / {{\n    proxy_pass http://stowage;\n    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n  }}\n}}\n"
        ),
    )
}

/// `n` 4 KiB PUTs under `label/` at `base`, from [`CLIENTS`] tasks; how long they took.
async fn puts(client: &reqwest::Client, base: &str, label: &str, n: usize) -> Duration {
    let body = bytes::Bytes::from(vec![7u8; 4096]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, body, url) = (client.clone(), body.clone(), format!("{base}/v1/objects/submission/{label}"));
            tokio::spawn(async move {
                for i in 0..n / CLIENTS {
                    let r = client.put(format!("{url}/c{c}-{i}")).bearer_auth(KEY).body(body.clone()).send().await;
                    let r = r.expect("put");
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    start.elapsed()
}

/// How many `file_created` records name a path under `label/`, how many paths they name,
/// and how many each host wrote.
fn recorded(pg: &Postgres, label: &str) -> (usize, usize, String) {
    let created = format!(
        "FROM stowage_records WHERE body::json->>'action' = 'file_created' AND body::json->>'path' LIKE '{label}/%'"
    );
    let paths = pg.psql("bench", &format!("SELECT count(DISTINCT body::json->>'path') {created}"));
    let rows = pg.psql("bench", &format!("SELECT body::json->>'host', count(*) {created} GROUP BY 1 ORDER BY 1"));
    let mut total = 0;
    let mut by_host = Vec::new();
    for line in rows.lines() {
        let (host, count) = line.split_once('|').unwrap();
        let count: usize = count.trim().parse().unwrap();
        total += count;
        by_host.push(format!("{host} {count}"));
    }
    (total, paths.trim().parse().unwrap(), by_host.join(", "))
}
