//! Mirrored disks (`mirror = ["a", "b"]`): a mirror of two local disks passes the conformance
//! suite; a byte flipped in one mirror's copy is never served (the read moves to the other
//! copy mid-object) and the copy is repaired and recorded; with one mirror down a write
//! succeeds by quorum and the lagging mirror catches up; fsck reports a bad copy and
//! `--repair` restores it.

use std::path::Path;
use std::process::Output;

use stowage_tests::s3::OwnS3;

use crate::{run_in, stderr, stdout};

/// Two local disks `a` and `b`, mirrored as `archive` (the default class), a PHI ledger.
fn local_mirror(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "role = \"testing\"\n\
         [disks.a]\nplugin = \"local-fs\"\ngrant = {{ dir = \"a\" }}\n\
         [disks.b]\nplugin = \"local-fs\"\ngrant = {{ dir = \"b\" }}\n\
         [disks.archive]\nmirror = [\"a\", \"b\"]\n{extra}\
         [storage]\ndefault = \"archive\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n"
    );
    std::fs::write(dir.path().join("stowage.toml"), text).unwrap();
    dir
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}{}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

fn records(d: &Path, action: &str) -> Vec<serde_json::Value> {
    exported(&run_in(d, &["ledger", "export", "--format", "json"]), action)
}

/// The records of `action` in the output of `ledger export --format json`.
fn exported(o: &Output, action: &str) -> Vec<serde_json::Value> {
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)));
    all.into_iter().filter(|r| r["action"] == action).collect()
}

fn meta<'a>(record: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    record["metadata"].as_array()?.iter().find(|kv| kv[0] == key).and_then(|kv| kv[1].as_str())
}

/// Flips one byte of `file` in place, keeping its time (as bit rot would).
fn flip_byte(file: &Path, at: u64) {
    crate::fixity::flip_byte(file, at, true);
}

/// 3 MiB and a bit of varied bytes: four blocks, the last short.
fn three_mib() -> Vec<u8> {
    (0..3u64).flat_map(stowage_tests::block).chain((0..1000u32).map(|i| (i % 251) as u8)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_two_local_disks_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let engine = stowage_runtime::PluginEngine::new().unwrap();
    let bytes = stowage_bundled::get("local-fs").unwrap();
    let member = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let grants = stowage_runtime::DriverGrants { dir: Some(d), ..Default::default() };
        stowage_runtime::Disk::load(&engine, name, bytes, grants, stowage_runtime::Limits::default())
            .unwrap()
            .with_driver_name("local-fs")
    };
    let mirror = stowage_runtime::mirror::mirrored("archive", vec![member("a"), member("b")], 2).unwrap();
    let report = stowage_conformance::run(&mirror, "conformance").await;
    let lines = report.lines().join("\n");
    assert_eq!(report.failed(), 0, "{lines}");
    // A mirror's writes cannot be suspended (its upload sessions stay in memory).
    let resume = stowage_conformance::checks().iter().filter(|c| c.name.starts_with("resume/")).count();
    assert!(report.passed() >= stowage_conformance::checks().len() - 2 - resume, "{lines}");
    assert!(
        lines.contains("SKIP resume/continues-elsewhere: a disk made of other disks cannot suspend writes"),
        "{lines}"
    );
}

#[test]
fn a_flipped_byte_in_one_copy_is_never_served_and_the_copy_is_repaired_and_recorded() {
    let dir = local_mirror("");
    let d = dir.path();
    let big = three_mib();
    std::fs::write(d.join("big.bin"), &big).unwrap();
    std::fs::write(d.join("small.txt"), b"one block of PHI, mirrored").unwrap();
    ok(&run_in(d, &["put", "archive:scans/big.bin", "big.bin"]));
    ok(&run_in(d, &["put", "default:small.txt", "small.txt"]));
    for m in ["a", "b"] {
        assert_eq!(std::fs::read(d.join(m).join("scans/big.bin")).unwrap(), big, "{m} holds a copy");
    }
    // Bit rot in the first mirror (the one reads come from): in the third block, and in the
    // small object's only block.
    flip_byte(&d.join("a/scans/big.bin"), (2 << 20) + 4321);
    flip_byte(&d.join("a/small.txt"), 3);

    ok(&run_in(d, &["get", "archive:scans/big.bin", "-o", "back.bin"]));
    assert_eq!(std::fs::read(d.join("back.bin")).unwrap(), big, "the read moved to the good copy");
    ok(&run_in(d, &["get", "archive:small.txt", "-o", "back.txt"]));
    assert_eq!(std::fs::read(d.join("back.txt")).unwrap(), b"one block of PHI, mirrored");

    let out = ok(&run_in(d, &["sync", "--once"]));
    assert!(out.contains("repaired\tarchive:scans/big.bin\ta\tcopied"), "{out}");
    assert!(out.contains("repaired\tarchive:small.txt\ta\tcopied"), "{out}");
    assert_eq!(std::fs::read(d.join("a/scans/big.bin")).unwrap(), big, "the bad copy was repaired");
    assert_eq!(std::fs::read(d.join("a/small.txt")).unwrap(), b"one block of PHI, mirrored");
    let repaired = records(d, "mirror_repaired");
    let big_repair = repaired.iter().find(|r| r["path"] == "scans/big.bin").expect("the repair is recorded");
    assert_eq!(big_repair["disk"], "archive");
    assert_eq!(meta(big_repair, "mirror"), Some("a"));
    assert_eq!(meta(big_repair, "done"), Some("copied"));
    assert_eq!(big_repair["sha256"].as_str(), Some(stowage_tests::sha256_file(&d.join("big.bin")).as_str()));
    // Nothing left to do: the marks are gone, a second pass repairs nothing.
    let out = ok(&run_in(d, &["sync", "--once"]));
    assert!(!out.contains("repaired"), "{out}");
    assert!(!d.join("b/stowage-mirror/a/put/scans/big.bin").exists(), "the marks are gone");
    ok(&run_in(d, &["ledger", "verify"]));

    // Digests lost on every copy (a crash between a commit and its digests) and a damaged
    // first copy: the digests are measured from the copy whose sha256 is the recorded one,
    // before a byte goes out, and the read still moves past the damage.
    for m in ["a", "b"] {
        std::fs::remove_file(d.join(m).join("stowage-blocks/scans/big.bin")).unwrap();
    }
    flip_byte(&d.join("a/scans/big.bin"), 77);
    ok(&run_in(d, &["get", "archive:scans/big.bin", "-o", "again.bin"]));
    assert_eq!(std::fs::read(d.join("again.bin")).unwrap(), big);
    let out = ok(&run_in(d, &["sync", "--once"]));
    assert!(out.contains("repaired\tarchive:scans/big.bin\ta\tcopied"), "{out}");
    assert!(out.contains("repaired\tarchive:scans/big.bin\tb\tindexed"), "b lacked only its digests: {out}");
    for m in ["a", "b"] {
        assert_eq!(std::fs::read(d.join(m).join("scans/big.bin")).unwrap(), big, "{m}");
        assert!(d.join(m).join("stowage-blocks/scans/big.bin").is_file(), "{m}'s digests are back");
    }

    // The mirror's own objects are not listed, and not the client's to write.
    let listed = ok(&run_in(d, &["ls", "archive:"]));
    assert!(!listed.contains("stowage-blocks") && !listed.contains("stowage-mirror"), "{listed}");
    assert!(listed.contains("scans/big.bin") && listed.contains("small.txt"), "{listed}");
    let o = run_in(d, &["put", "archive:stowage-blocks/scans/big.bin", "small.txt"]);
    assert!(!o.status.success() && stderr(&o).contains("keeps its own records"), "{}", stderr(&o));
}

#[test]
fn both_copies_damaged_in_the_same_block_fails_the_read_rather_than_serving_bad_bytes() {
    let dir = local_mirror("");
    let d = dir.path();
    std::fs::write(d.join("big.bin"), three_mib()).unwrap();
    ok(&run_in(d, &["put", "archive:big.bin", "big.bin"]));
    flip_byte(&d.join("a/big.bin"), 100);
    flip_byte(&d.join("b/big.bin"), 200);
    let o = run_in(d, &["get", "archive:big.bin", "-o", "back.bin"]);
    assert!(!o.status.success(), "bad bytes must not be served: {}", stdout(&o));
    assert!(stderr(&o).contains("no mirror of `big.bin` could serve"), "{}", stderr(&o));
    // Nothing of the damaged block reached the file.
    let got = std::fs::read(d.join("back.bin")).unwrap_or_default();
    assert!(got.len() < 100, "{} bytes written", got.len());
}

#[test]
fn fsck_reports_a_bad_copy_in_any_mirror_and_repair_restores_it() {
    let dir = local_mirror("");
    let d = dir.path();
    let big = three_mib();
    std::fs::write(d.join("big.bin"), &big).unwrap();
    std::fs::write(d.join("gone.txt"), b"lost from one mirror").unwrap();
    ok(&run_in(d, &["put", "archive:big.bin", "big.bin"]));
    ok(&run_in(d, &["put", "archive:gone.txt", "gone.txt"]));
    let o = run_in(d, &["fsck", "archive:"]);
    assert_eq!(o.status.code(), Some(0), "clean: {}{}", stdout(&o), stderr(&o));

    // Damage in the second mirror, which reads never reach while the first is good, and a
    // copy deleted behind the host's back.
    flip_byte(&d.join("b/big.bin"), (1 << 20) + 7);
    std::fs::remove_file(d.join("b/gone.txt")).unwrap();
    let o = run_in(d, &["fsck", "archive:", "--json"]);
    assert_eq!(o.status.code(), Some(11), "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["counts"]["bad_copy"], 2, "{report}");
    assert_eq!(report["counts"]["corrupted"], 0, "the object itself reads whole: {report}");
    let bad: Vec<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["mirror"].as_str().unwrap()))
        .collect();
    assert!(bad.contains(&("big.bin", "b")) && bad.contains(&("gone.txt", "b")), "{bad:?}");

    let o = run_in(d, &["fsck", "archive:", "--repair", "--json"]);
    assert_eq!(o.status.code(), Some(0), "everything found was repaired: {}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["repaired"], 2, "{report}");
    assert_eq!(std::fs::read(d.join("b/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(d.join("b/gone.txt")).unwrap(), b"lost from one mirror");
    let o = run_in(d, &["fsck", "archive:"]);
    assert_eq!(o.status.code(), Some(0), "clean again: {}{}", stdout(&o), stderr(&o));
    assert_eq!(records(d, "mirror_repaired").len(), 2);
    let checked = records(d, "fixity_checked");
    assert_eq!(meta(&checked[2], "repaired"), Some("2"), "{}", checked[2]);

    // --repair needs a mirror to restore from.
    let o = run_in(d, &["fsck", "a:", "--repair"]);
    assert!(!o.status.success() && stderr(&o).contains("is not mirrored"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_mirror_down_writes_succeed_by_quorum_and_the_lagging_mirror_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut own = OwnS3::start(&d.join("s3"), "archive");
    let text = format!(
        "role = \"testing\"\n\
         [disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"local\" }}\n\
         [disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
         config = {{ endpoint = \"{e}\", bucket = \"archive\", part_size_mib = 5, max_attempts = 2, access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
         [disks.archive]\nmirror = [\"nas\", \"local\"]\nwrite_quorum = 1\n\
         [storage]\ndefault = \"archive\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n",
        e = own.server.endpoint
    );
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    let (key, secret) = (own.server.access_key.clone(), own.server.secret_key.clone());
    let cli = |args: &[&str]| {
        crate::stowage()
            .current_dir(d)
            .env("TEST_S3_KEY", &key)
            .env("TEST_S3_SECRET", &secret)
            .args(args)
            .output()
            .unwrap()
    };
    std::fs::write(d.join("v1.txt"), b"version one, on both mirrors").unwrap();
    ok(&cli(&["put", "archive:notes/a.txt", "v1.txt"]));
    std::fs::write(d.join("gone.txt"), b"deleted while a mirror is away").unwrap();
    ok(&cli(&["put", "archive:gone.txt", "gone.txt"]));

    own.stop();
    let big = three_mib();
    std::fs::write(d.join("big.bin"), &big).unwrap();
    std::fs::write(d.join("v2.txt"), b"version two, written while nas is away").unwrap();
    ok(&cli(&["put", "archive:notes/a.txt", "v2.txt"]));
    ok(&cli(&["put", "archive:scans/big.bin", "big.bin"]));
    ok(&cli(&["rm", "archive:gone.txt"]));
    // Reads see the newest versions from the mirror that holds them.
    ok(&cli(&["get", "archive:notes/a.txt", "-o", "back.txt"]));
    assert_eq!(std::fs::read(d.join("back.txt")).unwrap(), b"version two, written while nas is away");
    assert!(!cli(&["stat", "archive:gone.txt"]).status.success());
    let o = cli(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(7), "repairs wait for nas: {}{}", stdout(&o), stderr(&o));

    own.resume();
    // Before the repair, nas holds version one and the deleted object: reads still see the
    // newest version, and the delete.
    ok(&cli(&["get", "archive:notes/a.txt", "-o", "back2.txt"]));
    assert_eq!(std::fs::read(d.join("back2.txt")).unwrap(), b"version two, written while nas is away");
    assert!(!cli(&["stat", "archive:gone.txt"]).status.success(), "the delete holds while nas is behind");
    let out = ok(&cli(&["sync", "--once"]));
    assert!(out.contains("repaired\tarchive:notes/a.txt\tnas\tcopied"), "{out}");
    assert!(out.contains("repaired\tarchive:scans/big.bin\tnas\tcopied"), "{out}");
    assert!(out.contains("repaired\tarchive:gone.txt\tnas\tremoved"), "{out}");
    ok(&cli(&["get", "nas:notes/a.txt", "-o", "nas.txt"]));
    assert_eq!(std::fs::read(d.join("nas.txt")).unwrap(), b"version two, written while nas is away");
    ok(&cli(&["get", "nas:scans/big.bin", "-o", "nas.bin"]));
    assert_eq!(std::fs::read(d.join("nas.bin")).unwrap(), big);
    assert!(!cli(&["stat", "nas:gone.txt"]).status.success(), "the delete reached nas");
    let o = cli(&["fsck", "archive:"]);
    assert_eq!(o.status.code(), Some(0), "both mirrors agree: {}{}", stdout(&o), stderr(&o));
    assert_eq!(exported(&cli(&["ledger", "export", "--format", "json"]), "mirror_repaired").len(), 3);
}

#[test]
fn serve_reads_past_a_damaged_copy_and_repairs_it_by_itself() {
    use crate::serve::{KEY, Server, curl, status_and_body};
    let dir = local_mirror(&format!(
        "[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\nurl_secret = {{ env = \"TEST_URL_SECRET\" }}\n"
    ));
    let d = dir.path();
    let big = three_mib();
    std::fs::write(d.join("big.bin"), &big).unwrap();
    let server = Server::start_with_env(d, &[("TEST_URL_SECRET", "a-url-secret-of-32-bytes-or-more-0123")]);
    let auth = format!("Authorization: Bearer {KEY}");
    let url = format!("{}/v1/objects/archive/api/big.bin", server.url);
    let o = curl(d, &["-X", "PUT", "-H", &auth, "--data-binary", "@big.bin", "-w", "\n%{http_code}", &url]);
    assert_eq!(status_and_body(&o).0, "200", "{}", stdout(&o));
    flip_byte(&d.join("a/api/big.bin"), (1 << 20) + 99);

    let o = curl(d, &["-H", &auth, "-o", "got.bin", "-w", "%{http_code}", &url]);
    assert_eq!(stdout(&o), "200");
    assert_eq!(std::fs::read(d.join("got.bin")).unwrap(), big, "the API served the good copy");
    // A download URL of a mirrored disk is the host's own, so its reads are checked too.
    let issue = format!("{}/v1/urls/archive/api/big.bin?expires_in_secs=60", server.url);
    let o = curl(d, &["-X", "POST", "-H", &auth, &issue]);
    let answer: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    let signed = answer["url"].as_str().unwrap_or_else(|| panic!("{answer}"));
    assert!(signed.contains("/v1/signed/"), "{signed}");
    let o = curl(d, &["-o", "signed.bin", "-w", "%{http_code}", signed]);
    assert_eq!(stdout(&o), "200");
    assert_eq!(std::fs::read(d.join("signed.bin")).unwrap(), big);

    // The host's repairer (a pass every 5 s) restores the copy by itself.
    let mut repaired = false;
    for _ in 0..60 {
        if std::fs::read(d.join("a/api/big.bin")).unwrap() == big {
            repaired = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(repaired, "serve repaired the copy within 30 s");
    drop(server);
    let records = records(d, "mirror_repaired");
    assert!(records.iter().any(|r| r["path"] == "api/big.bin" && meta(r, "mirror") == Some("a")), "{records:?}");
}
