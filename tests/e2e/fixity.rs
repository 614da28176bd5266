//! `stowage fsck`: stored bytes against the recorded digests. A clean disk passes (exit 0);
//! a byte flipped on disk is corrupted, a file deleted behind the host's back is missing, a
//! file planted there is unrecorded (exit 11 for each); every run is a `fixity_checked`
//! ledger record with its counts; a ledger that cannot record fails the check closed (exit
//! 9); objects rewritten and deleted while the check runs are not reported.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use stowage_runtime::{Address, ConfigSource, FsckOptions, LoadedConfig, Request, Storage, WriteOptions};

use crate::audit::audited_dir;
use crate::{run_in, stderr, stdout};

/// `stowage fsck ADDR --json`: its output and the report.
fn fsck_json(d: &Path, addr: &str) -> (Output, serde_json::Value) {
    let o = run_in(d, &["fsck", addr, "--json"]);
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("fsck --json printed no JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    (o, report)
}

/// Stores `content` at `local:path` through the host.
fn put(d: &Path, path: &str, content: &[u8]) -> String {
    let file = d.join("upload.tmp");
    std::fs::write(&file, content).unwrap();
    let o = run_in(d, &["put", &format!("local:{path}"), "upload.tmp"]);
    assert!(o.status.success(), "put {path}: {}", stderr(&o));
    stowage_tests::sha256_file(&file)
}

/// The ledger's `fixity_checked` records, oldest first.
fn fixity_records(d: &Path) -> Vec<serde_json::Value> {
    let o = run_in(d, &["ledger", "export", "--format", "json"]);
    assert!(o.status.success(), "export: {}", stderr(&o));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    all.into_iter().filter(|r| r["action"] == "fixity_checked").collect()
}

/// A record's metadata value for `key` (the first).
fn meta<'a>(record: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    record["metadata"].as_array()?.iter().find(|kv| kv[0] == key).and_then(|kv| kv[1].as_str())
}

/// Every value of a record's metadata under `key`, sorted.
fn meta_all(record: &serde_json::Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = record["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|kv| kv[0] == key)
        .map(|kv| kv[1].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The report's problems of `kind`, as (path, problem), sorted by path.
fn problems<'a>(report: &'a serde_json::Value, kind: &str) -> Vec<(&'a str, &'a serde_json::Value)> {
    let mut out: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == kind)
        .map(|p| (p["path"].as_str().unwrap(), p))
        .collect();
    out.sort_by_key(|(path, _)| *path);
    out
}

/// Flips one byte of `file` in place; with `keep_mtime`, as bit rot would (the file's time
/// is put back, so the driver still vouches for its old sha256).
pub(crate) fn flip_byte(file: &Path, at: u64, keep_mtime: bool) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    if keep_mtime {
        f.set_times(std::fs::FileTimes::new().set_modified(modified)).unwrap();
    }
}

#[test]
fn a_clean_disk_passes_and_the_run_is_recorded_with_its_counts() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    let big: Vec<u8> = (0..6u64).flat_map(stowage_tests::block).collect();
    put(d, "big.bin", &big);
    put(d, "a/one.csv", b"id\n1\n");
    put(d, "a/two.csv", b"first version\n");
    put(d, "a/two.csv", b"second version, longer\n");
    put(d, "gone.csv", b"deleted through the host\n");
    let o = run_in(d, &["rm", "local:gone.csv"]);
    assert!(o.status.success(), "rm: {}", stderr(&o));

    let o = run_in(d, &["fsck", "local:"]);
    assert_eq!(o.status.code(), Some(0), "a clean disk passes: {}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("fsck of disk `local`: 3 objects") && text.contains("clean"), "{text}");

    let (o, report) = fsck_json(d, "default:");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = big.len() as u64 + 5 + 23;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!((report["disk"].as_str(), report["objects"].as_u64()), (Some("local"), Some(3)), "{report}");
    assert_eq!(report["bytes"], bytes, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    for kind in ["corrupted", "missing", "unrecorded", "unreadable"] {
        assert_eq!(report["counts"][kind], 0, "{kind}: {report}");
    }

    let records = fixity_records(d);
    assert_eq!(records.len(), 2, "one record per run: {records:?}");
    let last = &records[1];
    assert_eq!(last["index"], report["record_index"], "the report names its record");
    assert_eq!((last["disk"].as_str(), last["size"].as_u64()), (Some("local"), Some(bytes)), "{last}");
    assert_eq!(meta(last, "objects"), Some("3"), "{last}");
    assert_eq!(meta(last, "corrupted"), Some("0"), "{last}");
    assert_eq!(last["error"], serde_json::Value::Null, "a clean run records no error: {last}");
    assert!(run_in(d, &["ledger", "verify"]).status.success());

    // A prefix checks only what is under it.
    let (o, report) = fsck_json(d, "local:a/");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!((report["objects"].as_u64(), report["prefix"].as_str()), (Some(2), Some("a/")), "{report}");
}

#[test]
fn a_flipped_byte_is_corrupted_whether_or_not_the_driver_still_vouches_for_it() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    let rotted_sha = put(d, "rotted.bin", &stowage_tests::block(1));
    let edited_sha = put(d, "dir/edited.csv", b"id,value\n1,42\n2,43\n");
    put(d, "fine.csv", b"untouched\n");
    flip_byte(&d.join("data/rotted.bin"), 70_000, true);
    flip_byte(&d.join("data/dir/edited.csv"), 12, false);
    let rotted_now = stowage_tests::sha256_file(&d.join("data/rotted.bin"));
    let edited_now = stowage_tests::sha256_file(&d.join("data/dir/edited.csv"));

    let o = run_in(d, &["fsck", "local:"]);
    assert_eq!(o.status.code(), Some(11), "corruption exits 11: {}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.lines().any(|l| l.starts_with("corrupted") && l.contains("rotted.bin")), "{text}");
    assert!(!text.contains("fine.csv"), "{text}");
    assert!(stderr(&o).contains("found 2 corrupted"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "one line on stderr: {}", stderr(&o));

    let (o, report) = fsck_json(d, "local:");
    assert_eq!(o.status.code(), Some(11));
    assert_eq!((report["ok"].as_bool(), report["counts"]["corrupted"].as_u64()), (Some(false), Some(2)), "{report}");
    let corrupted = problems(&report, "corrupted");
    let (path, edited) = corrupted[0];
    assert_eq!(path, "dir/edited.csv");
    assert_eq!(edited["actual_sha256"], edited_now.as_str());
    assert_eq!(edited["ledger_sha256"], edited_sha.as_str(), "the ledger's digest is the write's");
    assert!(edited["ledger_index"].is_u64(), "{edited}");
    // The file's time changed: local-fs no longer vouches for a digest, the ledger still does.
    assert_eq!(edited["driver_sha256"], serde_json::Value::Null, "{edited}");
    let (path, rotted) = corrupted[1];
    assert_eq!(path, "rotted.bin");
    assert_eq!(rotted["actual_sha256"], rotted_now.as_str());
    assert_eq!(rotted["driver_sha256"], rotted_sha.as_str(), "the driver's sidecar still claims the old digest");
    assert_eq!(rotted["ledger_sha256"], rotted_sha.as_str());
    assert_eq!(report["problems"].as_array().unwrap().len(), 2, "nothing else is wrong: {report}");

    let records = fixity_records(d);
    let last = records.last().unwrap();
    assert_eq!(meta(last, "corrupted"), Some("2"), "{last}");
    assert_eq!(meta_all(last, "corrupted_path"), ["dir/edited.csv", "rotted.bin"], "{last}");
    assert_eq!(last["error"], "2 corrupted", "{last}");
}

#[test]
fn a_file_deleted_behind_the_hosts_back_is_missing_and_one_planted_there_is_unrecorded() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    let lost_sha = put(d, "sub/lost.csv", b"this file will be lost\n");
    put(d, "sub/removed.csv", b"removed through the host\n");
    put(d, "sub/kept.csv", b"kept\n");
    put(d, "elsewhere.csv", b"outside the prefix\n");
    let o = run_in(d, &["rm", "local:sub/removed.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(d.join("data/sub/lost.csv")).unwrap();
    std::fs::write(d.join("data/sub/planted.csv"), "nobody wrote this through stowage\n").unwrap();
    std::fs::write(d.join("data/planted-outside.csv"), "outside the prefix\n").unwrap();
    // What the driver keeps for itself is not the user's: never reported.
    std::fs::write(d.join("data/.stowage-tmp/leftover"), "a driver's temp file\n").unwrap();
    std::fs::write(d.join("data/sub/.orphan.csv.stowage-meta"), "{}").unwrap();

    let (o, report) = fsck_json(d, "local:sub/");
    assert_eq!(o.status.code(), Some(11), "{}", stderr(&o));
    let missing = problems(&report, "missing");
    assert_eq!(missing.iter().map(|(p, _)| *p).collect::<Vec<_>>(), ["sub/lost.csv"], "{report}");
    assert_eq!(missing[0].1["ledger_sha256"], lost_sha.as_str(), "{report}");
    let unrecorded = problems(&report, "unrecorded");
    assert_eq!(unrecorded.iter().map(|(p, _)| *p).collect::<Vec<_>>(), ["sub/planted.csv"], "{report}");
    assert_eq!(
        unrecorded[0].1["actual_sha256"],
        stowage_tests::sha256_file(&d.join("data/sub/planted.csv")).as_str(),
        "{report}"
    );
    assert_eq!(report["counts"]["corrupted"], 0, "{report}");
    assert_eq!(report["objects"], 2, "kept and planted were read: {report}");
    assert!(stderr(&o).contains("found 1 missing, 1 unrecorded"), "{}", stderr(&o));

    // The whole disk: the file planted outside the prefix too.
    let (o, report) = fsck_json(d, "local");
    assert_eq!(o.status.code(), Some(11));
    let unrecorded: Vec<&str> = problems(&report, "unrecorded").iter().map(|(p, _)| *p).collect();
    assert_eq!(unrecorded, ["planted-outside.csv", "sub/planted.csv"], "{report}");

    let text = stdout(&run_in(d, &["fsck", "local:sub/"]));
    assert!(text.lines().any(|l| l.starts_with("missing") && l.contains("sub/lost.csv")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("unrecorded") && l.contains("sub/planted.csv")), "{text}");

    let records = fixity_records(d);
    let first = &records[0];
    assert_eq!((first["path"].as_str(), first["disk"].as_str()), (Some("sub/"), Some("local")), "{first}");
    assert_eq!((meta(first, "missing"), meta(first, "unrecorded")), (Some("1"), Some("1")), "{first}");
    assert_eq!(meta_all(first, "missing_path"), ["sub/lost.csv"], "{first}");
    assert_eq!(meta_all(first, "unrecorded_path"), ["sub/planted.csv"], "{first}");
}

#[test]
fn a_ledger_that_cannot_record_fails_the_check_closed() {
    let dir = audited_dir("ledger", "lock_timeout_ms = 300\n");
    let d = dir.path();
    put(d, "kept.csv", b"id\n1\n");
    let lock = rusqlite::Connection::open(d.join("ledger/ledger.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE; INSERT INTO open_intents (idx) VALUES (999999);").unwrap();
    let o = run_in(d, &["fsck", "local:"]);
    assert_eq!(o.status.code(), Some(9), "no record, no verdict: {}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("clean"), "{}", stdout(&o));
    assert!(stderr(&o).contains("audit unavailable"), "{}", stderr(&o));
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let o = run_in(d, &["fsck", "local:"]);
    assert_eq!(o.status.code(), Some(0), "unlocked, it checks again: {}", stderr(&o));
}

/// Objects rewritten and deleted while the check reads them are not reported: each is judged
/// again by the records appended meanwhile and by what the disk holds then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_rewritten_and_deleted_during_the_check_are_not_reported() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    let text = std::fs::read_to_string(d.join("stowage.toml")).unwrap();
    let config = LoadedConfig::parse(&text, ConfigSource::File(d.join("stowage.toml")), d.to_path_buf()).unwrap();
    let storage = Arc::new(Storage::open(&config).await.unwrap());
    async fn write(storage: &Storage, path: &str, round: u64) {
        let addr = Address::parse(&format!("local:{path}")).unwrap();
        let mut w = storage.writer(&addr, &Request::new(), &WriteOptions::default()).await.unwrap();
        for i in 0..2 {
            w.write(Bytes::from(stowage_tests::block(round * 10 + i))).await.unwrap();
        }
        w.finish().await.unwrap();
    }
    for i in 0..12 {
        write(&storage, &format!("churn/{i:02}.bin"), 0).await;
    }
    // Rounds of rewrites and deletes done; the churn stops at `u64::MAX`.
    let rounds = Arc::new(AtomicU64::new(0));
    let churn = {
        let (storage, rounds) = (storage.clone(), rounds.clone());
        tokio::spawn(async move {
            for round in 1.. {
                if rounds.load(Ordering::SeqCst) == u64::MAX {
                    return;
                }
                for i in 0..12 {
                    let path = format!("churn/{i:02}.bin");
                    if i % 4 == 3 && round % 2 == 1 {
                        let addr = Address::parse(&format!("local:{path}")).unwrap();
                        storage.delete(&addr, &Request::new()).await.unwrap();
                    } else {
                        write(&storage, &path, round).await;
                    }
                }
                let _ = rounds.compare_exchange(round - 1, round, Ordering::SeqCst, Ordering::SeqCst);
            }
        })
    };
    // Slowed down (32 MiB/s), each run overlaps rounds of churn; at least three runs, and
    // until three rounds ended while a check was running.
    let slow = FsckOptions { max_bytes_per_sec: Some(32 << 20), repair: false };
    let (mut runs, mut overlapped) = (0, 0);
    while runs < 3 || overlapped < 3 {
        let before = rounds.load(Ordering::SeqCst);
        let report = storage.fsck(&Address::parse("local:churn/").unwrap(), &Request::new(), &slow).await.unwrap();
        assert!(report.is_clean(), "run {runs}: {:?}", report.problems);
        assert!(report.objects > 0, "run {runs} read nothing");
        overlapped += rounds.load(Ordering::SeqCst) - before;
        runs += 1;
        assert!(runs < 50, "the churn did not overlap the checks");
    }
    rounds.store(u64::MAX, Ordering::SeqCst);
    churn.await.unwrap();
    let settled =
        storage.fsck(&Address::parse("local:churn/").unwrap(), &Request::new(), &FsckOptions::default()).await.unwrap();
    assert!(settled.is_clean() && settled.changed == 0, "{settled:?}");
}

/// `serve` with `[fixity] every = "1s"` checks its disk on schedule: `/metrics` shows the
/// objects and bytes checked and, once a file is planted, the problem by kind; every run is a
/// `fixity_checked` record by `stowage-fixity`.
#[test]
fn serve_runs_fixity_on_schedule_and_reports_it_in_metrics() {
    use crate::serve::{KEY, Server, config, curl, status_and_body};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_table =
        format!("dev_mode = true\napi_keys = [\"{KEY}\"]\n[fixity]\nevery = \"1s\"\nmax_mib_per_sec = 100\n");
    config(d, &server_table);
    std::fs::write(d.join("upload.tmp"), b"scheduled\n").unwrap();
    let o = run_in(d, &["put", "local:kept.csv", "upload.tmp"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    let metrics = || {
        let (status, body) =
            status_and_body(&curl(d, &["-H", &auth, "-w", "\n%{http_code}", &format!("{}/metrics", server.url)]));
        assert_eq!(status, "200", "{body}");
        body
    };
    let wait_for = |line: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let m = metrics();
            if m.lines().any(|l| l == line) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "no `{line}` within 30 s:\n{m}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let m = wait_for("stowage_fixity_problems{disk=\"local\",kind=\"unrecorded\"} 0");
    assert!(m.lines().any(|l| l.starts_with("stowage_fixity_objects_checked_total{disk=\"local\"} ")), "{m}");
    assert!(m.lines().any(|l| l == "stowage_fixity_failed_runs_total{disk=\"local\"} 0"), "{m}");
    let last = m.lines().find(|l| l.starts_with("stowage_fixity_last_run_timestamp_seconds{disk=\"local\"} ")).unwrap();
    let at: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((stowage_tests::now_ms() as f64 / 1000.0 - at).abs() < 60.0, "{last}");

    std::fs::write(d.join("data/planted.csv"), "behind the host's back\n").unwrap();
    wait_for("stowage_fixity_problems{disk=\"local\",kind=\"unrecorded\"} 1");
    drop(server);
    let records = fixity_records(d);
    assert!(records.len() >= 2, "{records:?}");
    assert!(records.iter().all(|r| r["actor"] == "stowage-fixity" && r["key"] == "host"), "{records:?}");
    assert!(records.iter().any(|r| meta_all(r, "unrecorded_path") == ["planted.csv"]), "{records:?}");
}
