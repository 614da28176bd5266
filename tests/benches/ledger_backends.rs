//! The ledger on SQLite and on PostgreSQL, in one run: durable appends one at a time and from
//! 64 tasks (group commit), and on PostgreSQL also two hosts appending to one chain at once.
//! PostgreSQL is a real server made by `initdb` for this run (fsync on, as in production),
//! on the same disk as the SQLite file (`STOWAGE_BENCH_DIR`, else the target dir).
//!
//! `tests/run bench --bench ledger_backends` (`STOWAGE_BENCH_OPS=N` appends per measurement).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed step is a failed run")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use stowage_runtime::ledger::{Ledger, LedgerOptions, PostgresLedger, Record, VerifyMode};
use stowage_tests::bench::{small_op_count, work_dir};
use stowage_tests::postgres::Postgres;

const TASKS: usize = 64;

fn record(i: usize) -> Record {
    Record {
        action: "file_read".into(),
        path: format!("cohort-7/subject-{i}/scan.dcm"),
        disk: "archive".into(),
        class: Some("phi".into()),
        actor: Some("analyst-3".into()),
        size: Some(1 << 20),
        sha256: Some("ab".repeat(32)),
        request_id: format!("req-{i}"),
        ..Record::default()
    }
}

/// Appends `n` records one at a time, then `n` from `TASKS` tasks spread over `ledgers`;
/// returns (one at a time, concurrent) elapsed.
async fn run(ledgers: &[Arc<Ledger>], n: usize) -> (Duration, Duration) {
    let start = Instant::now();
    for i in 0..n {
        ledgers[0].append(&record(i)).await.unwrap();
    }
    let sequential = start.elapsed();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let l = ledgers[t % ledgers.len()].clone();
            tokio::spawn(async move {
                for i in 0..n / TASKS {
                    l.append(&record(n + t * n + i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (sequential, start.elapsed())
}

fn report(name: &str, n: usize, (sequential, concurrent): (Duration, Duration), commits: u64) {
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{name:<34} one at a time {:>7.1} us/append   {TASKS} tasks {:>6.1} us/append ({:.1}x, {commits} commits)",
        us(sequential),
        us(concurrent),
        sequential.as_secs_f64() / concurrent.as_secs_f64()
    );
}

fn pg_options(url: &str, host: &str) -> LedgerOptions {
    LedgerOptions {
        database: Some(PostgresLedger { url: url.into(), ca_file: None }),
        host: Some(host.into()),
        ..LedgerOptions::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = small_op_count().max(TASKS) / TASKS * TASKS;
    let dir = work_dir();
    println!("stowage ledger backends benchmark in {}, {n} appends per measurement", dir.path().display());

    let sqlite = Arc::new(Ledger::open(&dir.path().join("bench.sqlite"), LedgerOptions::default()).unwrap());
    let sqlite_times = run(std::slice::from_ref(&sqlite), n).await;
    report("SQLite (WAL, synchronous=FULL)", n, sqlite_times, sqlite.commits());
    assert_eq!(sqlite.verify(VerifyMode::Full).unwrap().unwrap().count, 2 * n as u64);

    let pg = Postgres::start();
    let url = pg.create_database("bench");
    let a_dir = dir.path().join("pg-a");
    let one = Arc::new(Ledger::open(&a_dir.join("ledger"), pg_options(&url, "host-a")).unwrap());
    let pg_times = run(std::slice::from_ref(&one), n).await;
    report("PostgreSQL, one host", n, pg_times, one.commits());

    // The native baseline: a plain client inserting the same rows, one durable transaction
    // each (one round trip and one WAL flush: the floor for a record on this server).
    let native_url = pg.create_database("bench_native");
    let (client, connection) = tokio_postgres::connect(&native_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE t (idx BIGINT PRIMARY KEY, body TEXT NOT NULL)").await.unwrap();
    let insert = client.prepare("INSERT INTO t (idx, body) VALUES ($1, $2)").await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        let body = serde_json::to_string(&record(i)).unwrap();
        client.execute(&insert, &[&(i as i64), &body]).await.unwrap();
    }
    let native = start.elapsed();
    println!(
        "{:<34} one at a time {:>7.1} us/insert   (the ledger's append is {:.2}x this)",
        "PostgreSQL, plain INSERT (native)",
        native.as_secs_f64() * 1e6 / n as f64,
        pg_times.0.as_secs_f64() / native.as_secs_f64()
    );

    let url2 = pg.create_database("bench_two");
    let b_dir = dir.path().join("pg-b");
    let c_dir = dir.path().join("pg-c");
    let two = [
        Arc::new(Ledger::open(&b_dir.join("ledger"), pg_options(&url2, "host-b")).unwrap()),
        Arc::new(Ledger::open(&c_dir.join("ledger"), pg_options(&url2, "host-c")).unwrap()),
    ];
    let two_times = run(&two, n).await;
    report("PostgreSQL, two hosts, one chain", n, two_times, two[0].commits() + two[1].commits());
    assert_eq!(two[0].verify(VerifyMode::Full).unwrap().unwrap().count, 2 * n as u64);

    println!(
        "\nPostgreSQL vs SQLite, time per append: one at a time {:.2}x, {TASKS} tasks {:.2}x, {TASKS} tasks over two hosts {:.2}x",
        pg_times.0.as_secs_f64() / sqlite_times.0.as_secs_f64(),
        pg_times.1.as_secs_f64() / sqlite_times.1.as_secs_f64(),
        two_times.1.as_secs_f64() / sqlite_times.1.as_secs_f64()
    );
}
