//! The ledger on PostgreSQL (a real server, made by `initdb` for each test): several hosts
//! append to one chain; verify, checkpoints, proofs and exports work as on SQLite; a stopped
//! server makes guarded operations fail closed and a started one lets them on without a
//! restart; an SQLite ledger migrates with its root proven equal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use stowage_runtime::ledger::{
    CheckpointPolicy, Filter, Format, Ledger, LedgerOptions, PostgresLedger, Record, VerifyMode, check_proof,
};
use stowage_tests::postgres::Postgres;

use crate::audit::every_operation_fails_closed;
use crate::{run_in, stderr, stdout};

fn options(url: &str, dir: &Path, host: &str) -> LedgerOptions {
    LedgerOptions {
        checkpoints: Some(CheckpointPolicy {
            origin: "pg-test".into(),
            every_records: 100,
            every_secs: 3600,
            file: dir.join("ledger.checkpoints"),
            key_file: dir.join("ledger.key"),
        }),
        lock_timeout: std::time::Duration::from_secs(5),
        database: Some(PostgresLedger { url: url.into(), ca_file: None }),
        host: Some(host.into()),
    }
}

fn record(path: &str) -> Record {
    Record {
        action: "file_created".into(),
        path: path.into(),
        disk: "local".into(),
        request_id: "r".into(),
        ..Record::default()
    }
}

#[test]
fn two_hosts_on_one_database_keep_one_chain_that_verifies_proves_and_exports() {
    let pg = Postgres::start();
    let url = pg.create_database("chain");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(Ledger::open(&a_dir.path().join("ledger.sqlite"), options(&url, a_dir.path(), "host-a")).unwrap());
    let b = Arc::new(Ledger::open(&b_dir.path().join("ledger.sqlite"), options(&url, b_dir.path(), "host-b")).unwrap());
    assert!(!a_dir.path().join("ledger.sqlite").exists(), "with a database URL there is no SQLite file");

    // 16 writers, 8 on each host, 25 records each, all at once.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut indexes: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|w| {
                let l = if w % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..25 {
                        out.push(l.append(&record(&format!("w{w}/f{i}"))).await.unwrap());
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    indexes.sort_unstable();
    assert_eq!(indexes, (0..400).collect::<Vec<_>>(), "every append got its own index, none twice");

    // One chain, seen whole from either host.
    for l in [&a, &b] {
        let v = l.verify(VerifyMode::Full).unwrap().unwrap();
        assert_eq!(v.count, 400);
    }
    let entries = a.entries().unwrap();
    let paths: BTreeSet<&str> = entries.iter().map(|e| e.record.path.as_str()).collect();
    assert_eq!(paths.len(), 400, "every record present exactly once");
    let mut by_host = BTreeMap::new();
    for e in &entries {
        *by_host.entry(e.record.host.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    assert_eq!(by_host, BTreeMap::from([("host-a".to_string(), 200), ("host-b".to_string(), 200)]));

    // Checkpoints and proofs: host b signs one, a proof from it checks offline.
    let c = b.checkpoint_now().unwrap();
    assert_eq!(c.checkpoint.size, 400);
    let proof = b.prove(123).unwrap();
    let (entry, _) = check_proof(&proof, std::slice::from_ref(b.verifier_key().unwrap())).unwrap();
    assert_eq!(entry.record.path, entries[123].record.path);
    assert!(b.verify(VerifyMode::Incremental).unwrap().unwrap().checkpoints.contains(&400));

    // Export streams every record.
    let mut csv = Vec::new();
    let n = stowage_runtime::ledger::export(&a, &Filter::default(), Format::Csv, &mut csv).unwrap();
    assert_eq!(n, 400);
    assert_eq!(String::from_utf8(csv).unwrap().lines().count(), 401, "a header and a line per record");

    // A row removed in the database is caught, by index, from either host.
    pg.psql("chain", "DELETE FROM stowage_records WHERE idx = 7");
    for l in [&a, &b] {
        let broken = l.verify(VerifyMode::Full).unwrap().unwrap_err();
        assert_eq!(broken.index, 7, "{broken}");
    }
}

#[test]
fn a_stopped_database_fails_appends_closed_and_a_started_one_takes_them_again() {
    let pg = Postgres::start();
    let url = pg.create_database("outage");
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("ledger.sqlite"), options(&url, dir.path(), "h")).unwrap();
    l.append_blocking(&record("before")).unwrap();
    pg.stop();
    let e = l.append_blocking(&record("during")).unwrap_err();
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    assert!(l.health().is_err(), "the ledger says it cannot record");
    assert!(!e.to_string().contains(&url), "the URL (with its password) is never in an error: {e}");
    pg.start_again();
    // The same ledger, not reopened: it connects again.
    l.append_blocking(&record("after")).unwrap();
    assert!(l.health().is_ok());
    let paths: Vec<String> = l.entries().unwrap().into_iter().map(|e| e.record.path).collect();
    assert_eq!(paths, ["before", "after"], "nothing was recorded while the database was down");
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 2);

    // A restart while the host is quiet: its first append afterwards is not lost to the old
    // connection.
    pg.stop();
    pg.start_again();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    l.append_blocking(&record("after a quiet restart")).unwrap();
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 3);
}

#[test]
fn the_host_fails_closed_while_postgresql_is_down_and_recovers_without_a_restart() {
    let pg = Postgres::start();
    let url = pg.create_database("served");
    let dir =
        crate::audit::audited_dir("ledger", &format!("url = \"{url}\"\nhost = \"cli-host\"\nlock_timeout_ms = 3000\n"));
    let d = dir.path();
    let o = run_in(d, &["put", "default:kept.csv", "kept.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    pg.stop();
    every_operation_fails_closed(d, "PostgreSQL stopped");
    pg.start_again();
    let o = run_in(d, &["get", "default:kept.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "id\n1\n");
    // The records are in the database, named for the host, and verify.
    let hosts = pg.psql("served", "SELECT DISTINCT body::json->>'host' FROM stowage_records");
    assert_eq!(hosts.trim(), "cli-host");
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!d.join("ledger/ledger.sqlite").exists(), "no SQLite file beside a PostgreSQL ledger");
}

#[test]
fn an_sqlite_ledger_migrates_to_postgresql_with_the_same_root_and_goes_on_there() {
    let pg = Postgres::start();
    let url = pg.create_database("moved");
    let dir = crate::audit::audited_dir("ledger", "");
    let d = dir.path();
    for i in 0..3 {
        std::fs::write(d.join(format!("f{i}.csv")), format!("n\n{i}\n")).unwrap();
        let o = run_in(d, &["put", &format!("default:f{i}.csv"), &format!("f{i}.csv")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run_in(d, &["ledger", "checkpoint", "--now"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = crate::stowage().current_dir(d).args(["ledger", "export", "--format", "json"]).output().unwrap();
    assert!(before.status.success(), "{}", stderr(&before));

    let migrate = |to: &str| {
        crate::stowage()
            .current_dir(d)
            .args(["ledger", "migrate"])
            .env("STOWAGE_LEDGER_MIGRATE_TO", to)
            .output()
            .unwrap()
    };
    let o = migrate(&url);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("the copy has the same Merkle root"), "{}", stdout(&o));
    let rows: u64 = pg.psql("moved", "SELECT count(*) FROM stowage_records").trim().parse().unwrap();
    assert!(rows >= 6, "{rows} rows");
    // Into a database that already holds a ledger: refused, nothing added.
    let o = migrate(&url);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already holds a ledger"), "{}", stderr(&o));
    assert_eq!(pg.psql("moved", "SELECT count(*) FROM stowage_records").trim().parse::<u64>().unwrap(), rows);
    assert!(!stderr(&o).contains(&url), "the URL is never printed");

    // The host switched to the copy: same records, same checkpoints, and it goes on.
    let config = std::fs::read_to_string(d.join("stowage.toml")).unwrap();
    std::fs::write(d.join("stowage.toml"), format!("{config}url = \"{url}\"\n")).unwrap();
    let after = crate::stowage().current_dir(d).args(["ledger", "export", "--format", "json"]).output().unwrap();
    assert_eq!(stdout(&after), stdout(&before), "the same records, byte for byte");
    let o = run_in(d, &["ledger", "verify"]);
    assert!(o.status.success(), "incremental from the SQLite ledger's checkpoint: {}{}", stdout(&o), stderr(&o));
    let o = run_in(d, &["get", "default:f1.csv"]);
    assert_eq!(stdout(&o), "n\n1\n", "{}", stderr(&o));
    let now: u64 = pg.psql("moved", "SELECT count(*) FROM stowage_records").trim().parse().unwrap();
    assert!(now > rows, "the read was recorded in PostgreSQL");
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn two_served_hosts_share_one_chain_and_both_fail_closed_while_postgresql_is_down() {
    use crate::serve::{KEY, Server, curl, status_and_body};
    let pg = Postgres::start();
    let url = pg.create_database("served2");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, dir) in dirs.iter().enumerate() {
        std::fs::write(
            dir.path().join("stowage.toml"),
            format!(
                "{}[ledger]\npath = \"ledger.sqlite\"\nurl = \"{url}\"\nhost = \"svc-{i}\"\nlock_timeout_ms = 3000\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n",
                crate::audit::AUDITED.replace("testing", "services")
            ),
        )
        .unwrap();
    }
    let servers: Vec<Server> = dirs.iter().map(|d| Server::start(d.path())).collect();
    let auth = format!("Authorization: Bearer {KEY}");
    let put = |i: usize, name: &str| {
        let d = dirs[i].path();
        let obj = format!("{}/v1/objects/scratch/{name}", servers[i].url);
        status_and_body(&curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", name, "-w", "\n%{http_code}", &obj]))
    };
    let ready = |i: usize| {
        status_and_body(&curl(dirs[i].path(), &["-w", "\n%{http_code}", &format!("{}/readyz", servers[i].url)])).0
    };
    for i in 0..2 {
        assert_eq!(put(i, "a.csv").0, "200");
    }
    pg.stop();
    for (i, dir) in dirs.iter().enumerate() {
        let (status, body) = put(i, "b.csv");
        assert_eq!(status, "503", "host {i}: {body}");
        assert!(body.contains("\"error\":\"audit-unavailable\""), "host {i}: {body}");
        assert!(!dir.path().join("data/b.csv").exists(), "host {i}: an unrecorded write became visible");
        assert_eq!(ready(i), "503", "host {i} is not ready while it cannot record");
    }
    pg.start_again();
    // The same processes: no restart.
    for i in 0..2 {
        let (status, body) = put(i, "c.csv");
        assert_eq!(status, "200", "host {i} recovers by itself: {body}");
        assert_eq!(ready(i), "200");
    }
    drop(servers);
    let hosts = pg.psql("served2", "SELECT body::json->>'host', count(*) FROM stowage_records GROUP BY 1 ORDER BY 1");
    assert!(hosts.contains("svc-0|") && hosts.contains("svc-1|"), "both hosts wrote to the one chain: {hosts}");
    for dir in &dirs {
        let o = run_in(dir.path(), &["ledger", "verify", "--full"]);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
}

#[test]
fn the_ledger_reaches_postgresql_over_tls_and_refuses_a_server_it_cannot_verify() {
    let pg = Postgres::start();
    let certs = tempfile::tempdir().unwrap();
    crate::serve_tls::test_ca(certs.path());
    pg.enable_tls(&certs.path().join("server.pem"), &certs.path().join("server.key"));
    let url = pg.create_database("tls").replace("sslmode=disable", "sslmode=require");
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&url, dir.path(), "tls-host");
    opts.database = Some(PostgresLedger { url: url.clone(), ca_file: Some(certs.path().join("ca.pem")) });
    let l = Ledger::open(&dir.path().join("ledger.sqlite"), opts.clone()).unwrap();
    l.append_blocking(&record("over-tls")).unwrap();
    let encrypted = pg.psql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'stowage'",
    );
    assert!(encrypted.trim().parse::<u32>().unwrap() >= 1, "the ledger's connections use TLS: {encrypted}");
    drop(l);

    // Without the CA that signed the server's certificate, nothing is recorded.
    let other = tempfile::tempdir().unwrap();
    opts.database = Some(PostgresLedger { url, ca_file: None });
    let l = Ledger::open(&other.path().join("ledger.sqlite"), opts).unwrap();
    let e = l.append_blocking(&record("unverified")).unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(pg.psql("tls", "SELECT count(*) FROM stowage_records").trim(), "1");
}

#[test]
fn a_host_whose_commit_fails_does_not_hold_the_writers_lock_from_the_others() {
    let pg = Postgres::start();
    let url = pg.create_database("lockfree");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut quick = options(&url, a_dir.path(), "host-a");
    quick.lock_timeout = std::time::Duration::from_secs(3);
    let a = Ledger::open(&a_dir.path().join("ledger.sqlite"), quick.clone()).unwrap();
    quick.checkpoints = options(&url, b_dir.path(), "host-b").checkpoints;
    quick.host = Some("host-b".into());
    let b = Ledger::open(&b_dir.path().join("ledger.sqlite"), quick).unwrap();
    a.append_blocking(&record("a1")).unwrap();
    // Host a's head file is damaged: its commit fails after it took the writers' lock.
    std::fs::write(a_dir.path().join("ledger.sqlite.head"), b"not a head").unwrap();
    let e = a.append_blocking(&record("a2")).unwrap_err();
    assert!(e.to_string().contains("head"), "{e}");
    // Host b writes at once: host a let go of the lock with its failed commit.
    let asked = std::time::Instant::now();
    b.append_blocking(&record("b1")).unwrap();
    assert!(asked.elapsed() < std::time::Duration::from_secs(2), "host b waited {:?} for the lock", asked.elapsed());
    let paths: Vec<String> = b.entries().unwrap().into_iter().map(|e| e.record.path).collect();
    assert_eq!(paths, ["a1", "b1"]);
}

#[test]
fn a_host_started_while_postgresql_is_down_refuses_guarded_operations_until_it_answers() {
    use crate::serve::{KEY, Server, curl, status_and_body};
    let pg = Postgres::start();
    let url = pg.create_database("later");
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("stowage.toml"),
        format!(
            "{}[ledger]\npath = \"ledger.sqlite\"\nurl = \"{url}\"\nhost = \"late\"\nlock_timeout_ms = 2000\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n",
            crate::audit::AUDITED.replace("testing", "services")
        ),
    )
    .unwrap();
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    let obj = format!("{}/v1/objects/scratch/x.csv", server.url);
    let ready = || status_and_body(&curl(d, &["-w", "\n%{http_code}", &format!("{}/readyz", server.url)]));
    let (status, body) = ready();
    assert_eq!(status, "503", "not ready while the ledger cannot record: {body}");
    assert!(body.contains("audit-unavailable"), "{body}");
    let (status, body) =
        status_and_body(&curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", "x", "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "503", "{body}");
    assert!(!d.join("data/x.csv").exists(), "an unrecorded write became visible");
    pg.start_again();
    // Ready again by itself, with no request needed (the ledger asks its database again).
    let since = std::time::Instant::now();
    while ready().0 != "200" {
        assert!(since.elapsed() < std::time::Duration::from_secs(15), "still not ready: {}", ready().1);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, body) =
        status_and_body(&curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", "x", "-w", "\n%{http_code}", &obj]));
    assert_eq!(status, "200", "{body}");
    let written = pg.psql("later", "SELECT count(*) FROM stowage_records WHERE body::json->>'path' = 'x.csv'");
    assert!(written.trim().parse::<u32>().unwrap() >= 1, "{written}");
}
