//! Fallback disks (the original's `save_with_fallback`): an S3 disk whose server stops
//! mid-run (an rclone `serve s3` of the test's own, stopped and started again) has its writes
//! land on a local fallback, seen through its address while queued, and synced back verified
//! when it returns, by `stowage sync` and by `serve`'s syncer; a killed host's queue is
//! finished after restart. Nothing lost, duplicated or resurrected; every step recorded.

use std::path::Path;
use std::process::Output;

use stowage_tests::s3::{OwnS3, native_client};

use crate::serve::{KEY, Server, curl, status_and_body};
use crate::{stderr, stdout};

const BUCKET: &str = "archive";

/// A config whose disk `nas` (s3 on `own`) falls back to `spool` (local-fs).
fn config(dir: &Path, own: &OwnS3, server: &str) {
    let text = format!(
        "role = \"testing\"\n\
         [disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\nfallback = \"spool\"\n\
         config = {{ endpoint = \"{e}\", bucket = \"{BUCKET}\", part_size_mib = 5, max_attempts = 2, access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
         [disks.spool]\nplugin = \"local-fs\"\ngrant = {{ dir = \"spool\" }}\n\
         [storage]\ndefault = \"nas\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n{server}",
        e = own.server.endpoint
    );
    std::fs::write(dir.join("stowage.toml"), text).unwrap();
}

fn cli(dir: &Path, own: &OwnS3, args: &[&str]) -> Output {
    cli_env(dir, own, &[], args)
}

fn cli_env(dir: &Path, own: &OwnS3, env: &[(&str, &str)], args: &[&str]) -> Output {
    crate::stowage()
        .current_dir(dir)
        .env("TEST_S3_KEY", &own.server.access_key)
        .env("TEST_S3_SECRET", &own.server.secret_key)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}{}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

/// The bytes of `key` in the bucket, read with a native S3 client (`None`: not there).
async fn in_bucket(own: &OwnS3, key: &str) -> Option<Vec<u8>> {
    let got = native_client(&own.server, None).get_object().bucket(BUCKET).key(key).send().await.ok()?;
    Some(got.body.collect().await.unwrap().into_bytes().to_vec())
}

/// Every object key in the bucket, without the s3 driver's digest companions.
async fn bucket_keys(own: &OwnS3) -> Vec<String> {
    let listed = native_client(&own.server, None).list_objects_v2().bucket(BUCKET).send().await.unwrap();
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .filter(|k| !k.starts_with(".stowage-sha256/"))
        .collect();
    keys.sort();
    keys
}

/// Files under the fallback's queue (what waits there).
fn queued_files(dir: &Path) -> Vec<String> {
    let root = dir.join("spool/stowage-fallback");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                out.push(p.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn records(dir: &Path, own: &OwnS3) -> Vec<serde_json::Value> {
    let o = cli(dir, own, &["ledger", "export", "--format", "json"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("ledger export: {e}: {}", stderr(&o)))
}

fn count(records: &[serde_json::Value], action: &str, path: &str) -> usize {
    records.iter().filter(|r| r["action"] == action && r["disk"] == "nas" && r["path"] == path).count()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_on_the_fallback_while_s3_is_down_and_sync_back_verified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut own = OwnS3::start(&d.join("s3"), BUCKET);
    config(d, &own, "");
    std::fs::write(d.join("a.txt"), b"on the disk before the outage").unwrap();
    ok(&cli(d, &own, &["put", "nas:a.txt", "a.txt"]));
    std::fs::write(d.join("c0.txt"), b"c.txt as the disk holds it before the outage").unwrap();
    ok(&cli(d, &own, &["put", "nas:c.txt", "c0.txt"]));

    own.stop();
    // A small write (S3 first contacts its server at the commit) and a 12 MiB one (at its
    // first 5 MiB part): both move to the fallback, and say so.
    std::fs::write(d.join("b1.txt"), b"first version, written during the outage").unwrap();
    let o = cli(d, &own, &["put", "nas:notes/b.txt", "b1.txt"]);
    ok(&o);
    assert!(stderr(&o).contains("stored on its fallback disk `spool`"), "{}", stderr(&o));
    let big_sha = stowage_tests::write_big_file(&d.join("big.bin"), 12);
    ok(&cli(d, &own, &["put", "nas:big.bin", "big.bin"]));
    // A later write of a queued path wins.
    std::fs::write(d.join("b2.txt"), b"second version, also during the outage").unwrap();
    ok(&cli(d, &own, &["put", "nas:notes/b.txt", "b2.txt"]));
    // On the disk before the outage, rewritten and then deleted during it: a tombstone, so
    // neither its queued version nor the disk's old one comes back.
    std::fs::write(d.join("c.txt"), b"short-lived").unwrap();
    ok(&cli(d, &own, &["put", "nas:c.txt", "c.txt"]));
    ok(&cli(d, &own, &["rm", "nas:c.txt"]));
    assert_eq!(cli(d, &own, &["stat", "nas:c.txt"]).status.code(), Some(3), "a queued delete hides the path");
    // A path that is not queued cannot be deleted while the disk is away: refused, retryable.
    let o = cli(d, &own, &["rm", "nas:a.txt"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));

    // The queue is reached through the disk's address only: not through the fallback's.
    let o = cli(d, &own, &["rm", "spool:stowage-fallback/nas/big.bin"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("is in the queue of writes this disk holds"), "{}", stderr(&o));
    let o = cli(d, &own, &["put", "spool:stowage-fallback/nas/notes/b.txt", "c.txt"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    // Reads see the queued objects through the disk's address.
    let stat: serde_json::Value =
        serde_json::from_str(&ok(&cli(d, &own, &["stat", "--json", "nas:notes/b.txt"]))).unwrap();
    assert_eq!(stat["fallback"], "spool");
    assert_eq!(stat["sha256"], sha256(b"second version, also during the outage"));
    assert_eq!(stat["path"], "notes/b.txt");
    ok(&cli(d, &own, &["get", "nas:big.bin", "-o", "big.back"]));
    assert_eq!(stowage_tests::sha256_file(&d.join("big.back")), big_sha);

    // What waits, and `sync --once` while the disk is still away: nothing moves, exit 7.
    let status = ok(&cli(d, &own, &["sync", "status", "--json"]));
    let waiting: Vec<serde_json::Value> = status.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut listed: Vec<(String, String)> = waiting
        .iter()
        .map(|w| (w["path"].as_str().unwrap().to_string(), w["op"].as_str().unwrap().to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [("big.bin".into(), "put".into()), ("c.txt".into(), "delete".into()), ("notes/b.txt".into(), "put".into())]
    );
    assert!(waiting.iter().all(|w| w["disk"] == "nas" && w["fallback"] == "spool" && w["age_secs"].is_u64()));
    let o = cli(d, &own, &["sync", "--once"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(queued_files(d).len(), 3);

    // The queue's entries are checked where they are: on the fallback.
    ok(&cli(d, &own, &["fsck", "spool:"]));

    own.resume();
    // Back, not synced yet: the listing merges the queue into the disk's own, and a fixity
    // check of the disk leaves the queued paths to the fallback's (the queued delete's object
    // is still on the disk).
    ok(&cli(d, &own, &["fsck", "nas:"]));
    let ls = ok(&cli(d, &own, &["ls", "nas:"]));
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["a.txt", "big.bin", "notes/b.txt"], "{ls}");
    assert_eq!(bucket_keys(&own).await, ["a.txt", "c.txt"], "the queued delete has not reached the disk yet");
    assert_eq!(cli(d, &own, &["stat", "nas:c.txt"]).status.code(), Some(3), "but every reader finds it gone");

    let synced = ok(&cli(d, &own, &["sync", "--once"]));
    assert_eq!(synced.lines().count(), 3, "{synced}");
    assert!(cli(d, &own, &["sync", "status"]).stdout.is_empty(), "the queue is empty");
    assert_eq!(queued_files(d), Vec::<String>::new(), "the fallback copies are gone");

    // The bucket holds exactly the newest version of each path; nothing deleted came back.
    assert_eq!(bucket_keys(&own).await, ["a.txt", "big.bin", "notes/b.txt"]);
    assert_eq!(in_bucket(&own, "notes/b.txt").await.unwrap(), b"second version, also during the outage");
    assert_eq!(sha256(&in_bucket(&own, "big.bin").await.unwrap()), big_sha);
    assert_eq!(in_bucket(&own, "a.txt").await.unwrap(), b"on the disk before the outage");
    let stat: serde_json::Value = serde_json::from_str(&ok(&cli(d, &own, &["stat", "--json", "nas:big.bin"]))).unwrap();
    assert_eq!(stat["fallback"], serde_json::Value::Null);
    assert_eq!(stat["sha256"], big_sha.as_str(), "the disk keeps the sha256 the host measured");

    // Every step is in the ledger.
    let r = records(d, &own);
    assert_eq!(count(&r, "fallback_written", "notes/b.txt"), 2);
    assert_eq!(count(&r, "fallback_written", "big.bin"), 1);
    assert_eq!(count(&r, "fallback_written", "c.txt"), 2, "its write, then its tombstone");
    for path in ["notes/b.txt", "big.bin", "c.txt"] {
        assert_eq!(count(&r, "fallback_synced", path), 1, "{path}");
    }
    let b = r.iter().find(|r| r["action"] == "fallback_synced" && r["path"] == "notes/b.txt").unwrap();
    assert_eq!(b["sha256"], sha256(b"second version, also during the outage"));
    let c = r.iter().find(|r| r["action"] == "fallback_synced" && r["path"] == "c.txt").unwrap();
    assert!(c["metadata"].to_string().contains("delete"), "{c}");
    ok(&cli(d, &own, &["ledger", "verify", "--full"]));
    // Both disks pass a fixity check: the synced objects are recorded on the disk, the
    // entries recorded gone from the fallback.
    ok(&cli(d, &own, &["fsck", "nas:"]));
    ok(&cli(d, &own, &["fsck", "spool:"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_midway_finishes_after_restart_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut own = OwnS3::start(&d.join("s3"), BUCKET);
    config(d, &own, "");
    own.stop();
    let mut want = Vec::new();
    for i in 0..4 {
        let body = format!("object {i} written while the disk was away").into_bytes();
        std::fs::write(d.join("in.txt"), &body).unwrap();
        ok(&cli(d, &own, &["put", &format!("nas:k/{i}.txt"), "in.txt"]));
        want.push((format!("k/{i}.txt"), body));
    }
    own.resume();

    // Killed after its first copy reached the disk (before that copy was recorded or its
    // entry removed), then after a move was recorded (before its entry was removed).
    killed_sync_at(d, &own, "sync-after-copy");
    assert_eq!(queued_files(d).len(), 4, "nothing was removed from the queue by the killed sync");
    killed_sync_at(d, &own, "sync-after-record");
    assert_eq!(queued_files(d).len(), 4, "nothing was removed from the queue by the killed sync");

    ok(&cli(d, &own, &["sync", "--once"]));
    assert_eq!(queued_files(d), Vec::<String>::new());
    let keys: Vec<String> = want.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(bucket_keys(&own).await, keys, "each object exactly once");
    for (key, body) in &want {
        assert_eq!(&in_bucket(&own, key).await.unwrap(), body);
    }
    // Every move is recorded; the one killed after its record was moved (the same bytes) and
    // recorded again, never left unrecorded.
    let r = records(d, &own);
    let mut synced: Vec<usize> = want.iter().map(|(key, _)| count(&r, "fallback_synced", key)).collect();
    synced.sort_unstable();
    assert_eq!(synced, [1, 1, 1, 2], "{synced:?}");
    ok(&cli(d, &own, &["fsck", "nas:"]));
}

/// Runs `stowage sync --once` until it says it paused at `point`, then SIGKILLs it.
fn killed_sync_at(d: &Path, own: &OwnS3, point: &str) {
    let mut sync = crate::stowage();
    sync.current_dir(d)
        .env("TEST_S3_KEY", &own.server.access_key)
        .env("TEST_S3_SECRET", &own.server.secret_key)
        .env("STOWAGE_TEST_PAUSE", point)
        .args(["sync", "--once"])
        .stderr(std::process::Stdio::piped());
    let mut child = sync.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let wanted = format!("paused at {point}");
    while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 && !line.contains(&wanted) {
        line.clear();
    }
    assert!(line.contains(&wanted), "the sync reached {point}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_serve_after_the_command_line_queued_the_path_is_the_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut own = OwnS3::start(&d.join("s3"), BUCKET);
    config(d, &own, &format!("[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let env = [("TEST_S3_KEY", own.server.access_key.clone()), ("TEST_S3_SECRET", own.server.secret_key.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with_env(d, &env);
    own.stop();
    // The command line queues v1 beside the running host, which has not listed it...
    std::fs::write(d.join("v1.txt"), b"v1, queued by the command line").unwrap();
    ok(&cli(d, &own, &["put", "nas:shared.txt", "v1.txt"]));
    own.resume();
    // ...and a later write through the host, with the disk back, must not be overwritten by it.
    std::fs::write(d.join("v2.txt"), b"v2, written later through serve").unwrap();
    let auth = format!("Authorization: Bearer {KEY}");
    let url = format!("{}/v1/objects/nas/shared.txt", server.url);
    let o = curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", "@v2.txt", "-w", "\n%{http_code}", &url]);
    assert_eq!(status_and_body(&o).0, "200");
    let mut synced = false;
    for _ in 0..60 {
        if queued_files(d).is_empty() && in_bucket(&own, "shared.txt").await.is_some() {
            synced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(synced, "the host synced the queue within 30 s");
    assert_eq!(in_bucket(&own, "shared.txt").await.unwrap(), b"v2, written later through serve");
    let o = curl(d, &["-H", &auth, &url]);
    assert_eq!(stdout(&o), "v2, written later through serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_queues_while_s3_is_down_and_syncs_by_itself_after_a_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut own = OwnS3::start(&d.join("s3"), BUCKET);
    config(d, &own, &format!("[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let env = [("TEST_S3_KEY", own.server.access_key.clone()), ("TEST_S3_SECRET", own.server.secret_key.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    own.stop();

    let server = Server::start_with_env(d, &env);
    let auth = format!("Authorization: Bearer {KEY}");
    std::fs::write(d.join("up.bin"), b"uploaded through the API during the outage").unwrap();
    let url = format!("{}/v1/objects/nas/api/up.bin", server.url);
    let o = curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", "@up.bin", "-D", "-", "-w", "\n%{http_code}", &url]);
    let (status, body) = status_and_body(&o);
    assert_eq!(status, "200", "{body}");
    assert!(body.to_ascii_lowercase().contains("x-stowage-fallback: spool"), "{body}");
    assert!(body.contains("\"fallback\":\"spool\""), "{body}");
    // (The index is listed by the syncer's first pass, which starts with the host.)
    let mut counted = false;
    for _ in 0..20 {
        let metrics = stdout(&curl(d, &["-H", &auth, &format!("{}/metrics", server.url)]));
        if metrics.contains("stowage_fallback_queue_length{disk=\"nas\"} 1") {
            counted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(counted, "/metrics counts the queued write");
    // The queued object reads back through the API.
    let o = curl(d, &["-H", &auth, "-w", "\n%{http_code}", &url]);
    assert_eq!(status_and_body(&o), ("200".to_string(), "uploaded through the API during the outage".to_string()));

    // SIGKILL with the queue non-empty; the disk returns; a new host syncs by itself.
    drop(server);
    own.resume();
    let server = Server::start_with_env(d, &env);
    let mut synced = false;
    for _ in 0..60 {
        let metrics = stdout(&curl(d, &["-H", &auth, &format!("{}/metrics", server.url)]));
        if metrics.contains("stowage_fallback_queue_length{disk=\"nas\"} 0") && queued_files(d).is_empty() {
            synced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(synced, "the serving host's syncer emptied the queue within 30 s");
    assert_eq!(in_bucket(&own, "api/up.bin").await.unwrap(), b"uploaded through the API during the outage");
    drop(server);
    let r = records(d, &own);
    assert_eq!(count(&r, "fallback_written", "api/up.bin"), 1);
    assert_eq!(count(&r, "fallback_synced", "api/up.bin"), 1);
}

#[test]
fn a_web_host_whose_fallback_is_local_is_refused_at_start_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = "role = \"web\"\n\
                [disks.services]\nplugin = \"remote\"\ngrant = { endpoint = \"https://services.example:8443\" }\n\
                fallback = \"spool\"\n\
                [disks.spool]\nplugin = \"local-fs\"\ngrant = { dir = \"spool\" }\n\
                [storage]\ndefault = \"services\"\n";
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    std::fs::write(d.join("f.csv"), "id\n1\n").unwrap();
    let o = crate::run_in(d, &["put", "services:f.csv", "f.csv"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("stowage.toml:5:12: disks.services.fallback = \"spool\": role = \"web\" must never keep PHI"),
        "{err}"
    );
    assert!(!d.join("spool").exists(), "nothing was created for the refused fallback");
}
