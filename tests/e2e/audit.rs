//! The PHI audit under faults and tampering: a ledger that cannot record makes every guarded
//! operation fail (exit 9, HTTP 503 `audit-unavailable`) with nothing stored, served or
//! removed; a tampered ledger stops the host until an operator seals the break; SIGKILL at
//! any step of a write leaves every visible object recorded and no temp file; a consistent
//! rewrite is caught by a checkpoint saved elsewhere; proofs check offline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{KEY, Server, curl, status_and_body};
use crate::{run_in, stderr, stdout, stowage};

const AUDITED: &str = "role = \"testing\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n[storage]\ndefault = \"local\"\n\
    [[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n";

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// A tmpfs mounted for one test (root only), unmounted on drop.
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&o.stderr));
        Tmpfs(at.to_path_buf())
    }

    pub(crate) fn remount(&self, opts: &str) {
        let o = Command::new("mount").args(["-o", &format!("remount,{opts}")]).arg(&self.0).output().unwrap();
        assert!(o.status.success(), "remount: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` until it has no space left.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0x5au8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// Every guarded command fails with the audit error, and the disk is as it was.
fn every_operation_fails_closed(d: &Path, what: &str) {
    std::fs::write(d.join("new.csv"), "new,data\n").unwrap();
    let before = std::fs::read(d.join("data/kept.csv")).unwrap();
    for args in [
        &["put", "scratch:new.csv", "new.csv"][..],
        &["get", "scratch:kept.csv"],
        &["rm", "scratch:kept.csv"],
        &["stat", "scratch:kept.csv"],
    ] {
        let o = run_in(d, args);
        assert_eq!(o.status.code(), Some(9), "{what}: {args:?} must fail closed: {}{}", stdout(&o), stderr(&o));
        assert!(
            stderr(&o).contains("audit unavailable") || stderr(&o).contains("ledger"),
            "{what}: {args:?}: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{what}: {args:?} served something: {}", stdout(&o));
    }
    assert!(!d.join("data/new.csv").exists(), "{what}: an unrecorded write became visible");
    assert_eq!(std::fs::read(d.join("data/kept.csv")).unwrap(), before, "{what}: an unrecorded delete happened");
    assert_eq!(crate::crash::temp_file_bytes(&d.join("data")), 0, "{what}: a refused write left its bytes");
}

fn audited_dir(ledger_dir: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("stowage.toml"),
        format!("{AUDITED}[ledger]\npath = \"{ledger_dir}/ledger.sqlite\"\n{extra}"),
    )
    .unwrap();
    std::fs::write(d.join("kept.csv"), "id\n1\n").unwrap();
    std::fs::create_dir_all(d.join(ledger_dir)).unwrap();
    dir
}

fn put_kept(d: &Path) {
    let o = run_in(d, &["put", "default:kept.csv", "kept.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_ledger_that_cannot_record_refuses_every_guarded_operation() {
    // A database locked by another process past the lock timeout.
    let dir = audited_dir("ledger", "lock_timeout_ms = 300\n");
    let d = dir.path();
    put_kept(d);
    let lock = rusqlite::Connection::open(d.join("ledger/ledger.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE; INSERT INTO open_intents (idx) VALUES (999999);").unwrap();
    every_operation_fails_closed(d, "locked database");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let o = run_in(d, &["get", "default:kept.csv"]);
    assert!(o.status.success(), "unlocked, it serves again: {}", stderr(&o));

    // A ledger file that cannot be written.
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    put_kept(d);
    let read_only = if is_root() {
        // Permissions do not stop root: a read-only file system does.
        let fs = Tmpfs::mount(&d.join("ro"), "8M");
        std::fs::write(d.join("stowage.toml"), format!("{AUDITED}[ledger]\npath = \"ro/ledger.sqlite\"\n")).unwrap();
        put_kept(d);
        fs.remount("ro");
        Some(fs)
    } else {
        use std::os::unix::fs::PermissionsExt;
        for f in std::fs::read_dir(d.join("ledger")).unwrap() {
            std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        std::fs::set_permissions(d.join("ledger"), std::fs::Permissions::from_mode(0o555)).unwrap();
        None
    };
    every_operation_fails_closed(d, "read-only ledger");
    drop(read_only);

    // A full file system under the ledger (root: a small tmpfs made here).
    if is_root() {
        let dir = audited_dir("full", "");
        let d = dir.path();
        let fs = Tmpfs::mount(&d.join("full"), "4M");
        put_kept(d);
        fill(&d.join("full"));
        every_operation_fails_closed(d, "full file system");
        drop(fs);
    } else {
        assert!(
            std::env::var_os("STOWAGE_TEST_REQUIRE_ROOT").is_none(),
            "the full-disk case needs root (to mount a tmpfs), and this run requires it"
        );
        eprintln!("\n!!! SKIPPED: the full-disk ledger case needs root to mount a small tmpfs !!!\n");
    }
}

#[test]
fn the_api_answers_audit_unavailable_and_readyz_says_the_ledger_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("stowage.toml"),
        format!(
            "{}[ledger]\npath = \"ledger.sqlite\"\n[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n",
            AUDITED.replace("testing", "services")
        ),
    )
    .unwrap();
    let server = Server::start(d);
    let auth = format!("Authorization: Bearer {KEY}");
    // The scratch class is PHI: every access to it is recorded.
    let obj = |p: &str| format!("{}/v1/objects/scratch/{p}", server.url);
    let (status, body) = status_and_body(&curl(
        d,
        &["-X", "PUT", "-H", &auth, "--data-binary", "one", "-w", "\n%{http_code}", &obj("a.csv")],
    ));
    assert_eq!(status, "200", "{body}");
    let (status, _) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &format!("{}/readyz", server.url)]));
    assert_eq!(status, "200");
    // Behind the running host's back, its last record goes.
    rusqlite::Connection::open(d.join("ledger.sqlite"))
        .unwrap()
        .execute("DELETE FROM records WHERE idx = (SELECT max(idx) FROM records)", [])
        .unwrap();
    let (status, body) = status_and_body(&curl(
        d,
        &["-X", "PUT", "-H", &auth, "--data-binary", "two", "-w", "\n%{http_code}", &obj("b.csv")],
    ));
    assert_eq!(status, "503", "{body}");
    assert!(body.contains("\"error\":\"audit-unavailable\""), "{body}");
    assert!(!d.join("data/b.csv").exists(), "an unrecorded write became visible");
    for (method, expect_body) in [("GET", false), ("HEAD", false), ("DELETE", false)] {
        let o = curl(d, &["-X", method, "-H", &auth, "-D", "-", "-o", "/dev/null", &obj("a.csv")]);
        let head = stdout(&o).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 503") && head.contains("x-stowage-error: audit-unavailable"),
            "{method}: {head}"
        );
        let _ = expect_body;
    }
    assert_eq!(std::fs::read(d.join("data/a.csv")).unwrap(), b"one", "an unrecorded delete happened");
    let (status, body) = status_and_body(&curl(d, &["-w", "\n%{http_code}", &format!("{}/readyz", server.url)]));
    assert_eq!(status, "503", "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ledger"], serde_json::json!({ "ok": false, "error": "audit-unavailable" }), "{body}");
}

#[test]
fn a_tampered_ledger_stops_the_host_until_the_break_is_sealed() {
    let dir = audited_dir("ledger", &format!("[server]\ndev_mode = true\napi_keys = [\"{KEY}\"]\n"));
    let d = dir.path();
    for i in 0..4 {
        let o = run_in(d, &["put", &format!("default:f{i}.csv"), "kept.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    rusqlite::Connection::open(d.join("ledger/ledger.sqlite"))
        .unwrap()
        .execute("DELETE FROM records WHERE idx = 3", [])
        .unwrap();
    for args in [&["ls", "default:"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let o = stowage().current_dir(d).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(o.status.code(), Some(9), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("will not start") && err.contains("ledger broken at index 3: record missing"),
            "{args:?}: {err}"
        );
        assert!(err.contains("stowage ledger seal --reason"), "{err}");
    }
    let o = run_in(d, &["ledger", "seal", "--reason", "row 3 lost in a restore from backup; incident 77"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("accepts the break at index 3"), "{}", stdout(&o));
    let o = run_in(d, &["ls", "default:"]);
    assert!(o.status.success(), "sealed, the host starts: {}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 4);
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("sealed break at index 3") && out.contains("incident 77"), "{out}");
    // The seal is a record of its own, in the chain, and provable.
    let show = stdout(&run_in(d, &["ledger", "show"]));
    let seal = show.lines().find(|l| l.contains("ledger_sealed")).unwrap_or_else(|| panic!("{show}"));
    let index: u64 = seal.trim_start_matches('#').split(' ').next().unwrap().parse().unwrap();
    let o = run_in(d, &["ledger", "prove", &index.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(d.join("seal.proof"), &o.stdout).unwrap();
    let o = run_in(d, &["ledger", "check-proof", "seal.proof", "--trust", "ledger/ledger.sqlite.key.pub"]);
    assert!(o.status.success() && stdout(&o).contains("ledger_sealed"), "{}{}", stdout(&o), stderr(&o));
}

/// Starts `stowage put ADDR -` paused at `point` (or not paused), feeding it `bytes`; returns
/// once it paused (or, with no point, once `wait_for` says so).
fn put_paused(d: &Path, addr: &str, bytes: &[u8], point: Option<&str>) -> std::process::Child {
    use std::io::Write;
    let mut cmd = stowage();
    cmd.current_dir(d).args(["put", addr, "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(p) = point {
        cmd.env("STOWAGE_TEST_PAUSE", p);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(bytes).unwrap();
    drop(stdin);
    if let Some(p) = point {
        let stderr = child.stderr.take().unwrap();
        let mut line = String::new();
        let mut r = BufReader::new(stderr);
        loop {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "the put ended before pausing at {p}");
            if line.contains(&format!("stowage-test: paused at {p}")) {
                break;
            }
        }
    }
    child
}

#[test]
fn sigkill_at_any_step_of_fifty_writes_leaves_every_object_recorded_and_no_temp_file() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    // A small deterministic generator: the same 50 kills every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let points = ["before-intent", "after-intent", "after-commit", "streaming"];
    let mut killed = [0usize; 4];
    for i in 0..50 {
        let which = (next() % 4) as usize;
        let path = format!("default:w/{}.bin", next() % 8);
        let size = 64 << 10 | (next() % (2 << 20)) as usize;
        let bytes: Vec<u8> = (0..size).map(|b| (b as u64 ^ i) as u8).collect();
        let mut child = match points[which] {
            "streaming" => {
                let child = put_paused(d, &path, &bytes, None);
                std::thread::sleep(Duration::from_millis(next() % 300));
                child
            }
            point => put_paused(d, &path, &bytes, Some(point)),
        };
        child.kill().unwrap();
        child.wait().unwrap();
        killed[which] += 1;
    }
    assert!(killed.iter().all(|n| *n > 0), "every kind of kill happened: {killed:?}");

    // The next start reconciles and sweeps.
    let o = run_in(d, &["ls", "default:w/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let visible: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(crate::crash::temp_file_bytes(&d.join("data")), 0, "a killed write left a copy behind");
    let o = run_in(d, &["ledger", "reconcile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("0 settled, 0 left open\n"), "every intent was settled at start: {}", stdout(&o));
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Every visible object has a record naming its exact size and sha256, settled as written.
    let export = run_in(d, &["ledger", "export", "--format", "json"]);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&export.stdout).unwrap();
    let committed: std::collections::HashSet<u64> = records
        .iter()
        .filter(|r| r["action"] == "write_committed")
        .flat_map(|r| r["settles"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()))
        .collect();
    assert!(
        records.iter().any(|r| r["action"] == "write_committed" && r["reconciled"] == true),
        "a kill after the commit was reconciled as written"
    );
    assert!(
        records.iter().any(|r| r["action"] == "write_failed" && r["reconciled"] == true),
        "a kill before the commit was reconciled as not written"
    );
    for path in &visible {
        let file = d.join("data").join(path);
        let (size, sha) = (std::fs::metadata(&file).unwrap().len(), stowage_tests::sha256_file(&file));
        let recorded = records.iter().any(|r| {
            r["action"] == "file_created"
                && r["path"] == path.as_str()
                && r["size"] == size
                && r["sha256"] == sha.as_str()
                && committed.contains(&r["index"].as_u64().unwrap())
        });
        assert!(recorded, "{path} ({size} bytes, {sha}) is visible without a settled record");
    }
}

/// What someone who can write the ledger's directory can do: rewrite its rows with `edit`
/// (kept rows keep their times), then recompute the hash chain, the stored Merkle tree and the
/// head so that everything on the host agrees again, and remove the local checkpoints.
fn forge(ledger: &Path, edit: impl FnOnce(&mut Vec<(i64, String)>)) {
    use sha2::{Digest, Sha256};
    use stowage_runtime::ledger::merkle::{Frontier, leaf_data, leaf_hash};
    let db = rusqlite::Connection::open(ledger.join("ledger.sqlite")).unwrap();
    let mut rows: Vec<(i64, String)> = db
        .prepare("SELECT at_ms, body FROM records ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    edit(&mut rows);
    db.execute_batch("DELETE FROM records; DELETE FROM merkle;").unwrap();
    let mut prev = "0".repeat(64);
    let mut frontier = Frontier::default();
    for (i, (at_ms, body)) in rows.iter().enumerate() {
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update((i as u64).to_be_bytes());
        h.update((*at_ms as u64).to_be_bytes());
        h.update(body.as_bytes());
        let hash = hex::encode(h.finalize());
        db.execute(
            "INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![i as i64, at_ms, body, prev, hash],
        )
        .unwrap();
        frontier.push(leaf_hash(&leaf_data(i as u64, *at_ms as u64, body)), |level, index, node| {
            db.execute(
                "INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)",
                rusqlite::params![level, index as i64, &node[..]],
            )
            .unwrap();
        });
        prev = hash;
    }
    drop(db);
    // The head file's documented format: two checksummed slots.
    let line = |count: usize| {
        let text = format!("stowage-ledger-head/1 {count} {prev}");
        let check = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        let mut slot = format!("{text} {check}\n").into_bytes();
        slot.resize(160, b' ');
        slot
    };
    let mut head = vec![b' '; 4096 + 160];
    head[..160].copy_from_slice(&line(rows.len()));
    head[4096..].copy_from_slice(&line(rows.len()));
    std::fs::write(ledger.join("ledger.sqlite.head"), head).unwrap();
    let _ = std::fs::remove_file(ledger.join("ledger.sqlite.checkpoints"));
}

#[test]
fn a_consistent_rewrite_passes_plain_verify_but_not_a_checkpoint_saved_elsewhere() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    for i in 0..6 {
        let o = run_in(d, &["--actor", &format!("user{i}"), "put", &format!("default:f{i}.csv"), "kept.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // An auditor keeps the checkpoint and the host's public key off the host.
    let o = run_in(d, &["ledger", "checkpoint", "--now"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let saved = tempfile::tempdir().unwrap();
    std::fs::write(saved.path().join("checkpoint.txt"), &o.stdout).unwrap();
    std::fs::copy(d.join("ledger/ledger.sqlite.key.pub"), saved.path().join("host.pub")).unwrap();
    let o = run_in(d, &["ledger", "prove", "4"]);
    std::fs::write(saved.path().join("record4.proof"), &o.stdout).unwrap();
    let against = |d: &Path| {
        run_in(
            d,
            &[
                "ledger",
                "verify",
                "--against",
                saved.path().join("checkpoint.txt").to_str().unwrap(),
                "--trust",
                saved.path().join("host.pub").to_str().unwrap(),
            ],
        )
    };
    let o = against(d);
    assert!(
        o.status.success() && stdout(&o).contains("extends the checkpoints of size 12"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Someone who can write the ledger's directory removes records 2 and 3 (user1's write) and
    // makes everything on the host agree again.
    forge(&d.join("ledger"), |rows| {
        rows.drain(2..4);
    });
    let o = run_in(d, &["ledger", "verify"]);
    assert!(o.status.success(), "the rewrite is consistent: plain verify passes: {}", stderr(&o));
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "the rewrite is consistent: plain verify passes: {}", stderr(&o));
    let o = against(d);
    assert_eq!(o.status.code(), Some(9), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ledger broken at index 0:")
            && err.contains("holds 10 records but the checkpoint of size 12 covers 12"),
        "{err}"
    );

    // The proof saved with the checkpoint still checks offline, and fails once edited.
    let check =
        |proof: &Path| run_in(saved.path(), &["ledger", "check-proof", proof.to_str().unwrap(), "--trust", "host.pub"]);
    let o = check(&saved.path().join("record4.proof"));
    assert!(
        o.status.success() && stdout(&o).contains("file_created local:f2.csv actor=user2"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let proof = std::fs::read_to_string(saved.path().join("record4.proof")).unwrap();
    std::fs::write(saved.path().join("edited.proof"), proof.replace("user2", "user9")).unwrap();
    let o = check(&saved.path().join("edited.proof"));
    assert_eq!(o.status.code(), Some(9), "an edited record must not check: {}", stdout(&o));
    assert!(stderr(&o).contains("the record or its proof was changed"), "{}", stderr(&o));
}

#[test]
fn a_rewrite_that_keeps_the_length_is_caught_and_named_by_the_checkpoints_around_it() {
    let dir = audited_dir("ledger", "checkpoint_every = 4\n");
    let d = dir.path();
    for i in 0..6 {
        let o = run_in(d, &["--actor", &format!("user{i}"), "put", &format!("default:f{i}.csv"), "kept.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let checkpoints = std::fs::read_to_string(d.join("ledger/ledger.sqlite.checkpoints")).unwrap();
    let saved = tempfile::tempdir().unwrap();
    std::fs::write(saved.path().join("checkpoints.txt"), &checkpoints).unwrap();
    std::fs::copy(d.join("ledger/ledger.sqlite.key.pub"), saved.path().join("host.pub")).unwrap();
    // Record 5 (user2's outcome) rewritten to name someone else, everything recomputed.
    forge(&d.join("ledger"), |rows| {
        rows[5].1 = rows[5].1.replace("user2", "mallory");
    });
    assert!(run_in(d, &["ledger", "verify", "--full"]).status.success());
    let o = run_in(
        d,
        &[
            "ledger",
            "verify",
            "--against",
            saved.path().join("checkpoints.txt").to_str().unwrap(),
            "--trust",
            saved.path().join("host.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(9), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("ledger broken at index 4:") && err.contains("a record in 4..7 was changed"), "{err}");
}

#[test]
fn stat_list_url_issue_and_signed_url_downloads_are_recorded_with_the_key_that_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "url-secret-0123456789abcdef0123456789";
    std::fs::write(d.join("stowage.toml"), format!(
        "{}[ledger]\npath = \"ledger.sqlite\"\n[server]\ndev_mode = true\napi_keys = [{{ name = \"web-1\", key = \"{KEY}\" }}, \"{}\"]\nurl_secret = \"{secret}\"\n",
        AUDITED.replace("testing", "services").replace("default = \"local\"", "default = \"local\"\nscratch = \"local\""),
        "another-key-0123456789abcdef0123456789"
    )).unwrap();
    let server = Server::start(d);
    // `stowage url` signs for this host's public address.
    std::fs::write(
        d.join("stowage.toml"),
        std::fs::read_to_string(d.join("stowage.toml")).unwrap() + &format!("public_url = \"{}\"\n", server.url),
    )
    .unwrap();
    let auth = format!("Authorization: Bearer {KEY}");
    let obj = format!("{}/v1/objects/scratch/audit_9/data.csv", server.url);
    let (status, _) = status_and_body(&curl(
        d,
        &[
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            "x-stowage-actor: dr-jones",
            "--data-binary",
            "a,b\n",
            "-w",
            "\n%{http_code}",
            &obj,
        ],
    ));
    assert_eq!(status, "200");
    let o = curl(
        d,
        &["-I", "-H", &auth, "-H", "x-stowage-actor: dr-jones", "-H", "x-stowage-purpose: treatment review", &obj],
    );
    assert!(stdout(&o).starts_with("HTTP/1.1 200"), "{}", stdout(&o));
    let (status, body) = status_and_body(&curl(
        d,
        &[
            "-H",
            "Authorization: Bearer another-key-0123456789abcdef0123456789",
            "-w",
            "\n%{http_code}",
            &format!("{}/v1/list/scratch?prefix=audit_9/", server.url),
        ],
    ));
    assert_eq!(status, "200", "{body}");
    let o = run_in(
        d,
        &[
            "--actor",
            "dr-jones",
            "--purpose",
            "share with the lab",
            "url",
            "scratch:audit_9/data.csv",
            "--expires",
            "600",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let url = stdout(&o).trim().to_string();
    let id = url.split("id=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let o = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", &url]).output().unwrap();
    assert_eq!(stdout(&o), "200");

    let show = stdout(&run_in(d, &["ledger", "show", "--path", "audit_9/data.csv"]));
    let line = |action: &str| {
        show.lines().find(|l| l.contains(action)).unwrap_or_else(|| panic!("no {action} in {show}")).to_string()
    };
    assert!(line("work_copy_created").contains("actor=dr-jones key=web-1"), "{show}");
    let head = line("metadata_accessed");
    assert!(head.contains("actor=dr-jones key=web-1") && head.contains("purpose=\"treatment review\""), "{head}");
    let issued = line("url_issued");
    assert!(
        issued.contains("actor=dr-jones key=local:")
            && issued.contains(&format!("url={id}"))
            && issued.contains("expires_in=600s"),
        "{issued}"
    );
    assert!(issued.contains("purpose=\"share with the lab\""), "{issued}");
    let download = line("file_accessed");
    assert!(download.contains(&format!("actor=signed-url key=signed-url:{id}")), "{download}");
    let listed = stdout(&run_in(d, &["ledger", "show", "--path", "audit_9/"]));
    assert!(listed.contains("listed local:audit_9/ actor=- key=api_keys[1]") && listed.contains("items=1"), "{listed}");

    let o = run_in(d, &["ledger", "export", "--format", "csv", "--path-prefix", "audit_9/"]);
    let csv = stdout(&o);
    assert!(csv.lines().next().unwrap().contains(",actor,key,purpose,"), "{csv}");
    assert!(csv.lines().any(|l| l.contains(",url_issued,") && l.contains(&id)), "{csv}");
    let o = run_in(d, &["ledger", "report", "access", "--path-prefix", "audit_9/", "--format", "csv"]);
    let report = stdout(&o);
    for want in [
        "dr-jones,web-1,created,local:audit_9/data.csv",
        "dr-jones,web-1,looked up,local:audit_9/data.csv,treatment review",
        "-,api_keys[1],listed,local:audit_9/",
        &format!("signed-url,signed-url:{id},read,local:audit_9/data.csv"),
        &format!(",shared url {id},local:audit_9/data.csv,share with the lab"),
    ] {
        assert!(report.lines().any(|l| l.contains(want)), "no `{want}` in\n{report}");
    }
    let text = stdout(&run_in(d, &["ledger", "report", "access", "--actor", "dr-jones"]));
    assert!(
        text.contains("Accesses by object") && text.contains("Accesses by person") && !text.contains("signed-url:"),
        "{text}"
    );
    drop(server);
    let _ = Instant::now();
}
