//! Policies as components: swapping by config, web-role rules, the hash-chained ledger,
//! cleanup of overdue temporary files, fail-closed policies, the scoped scratch guard.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stowage_runtime::{Address, ConfigSource, LoadedConfig, Request, Storage, WriteOptions};

use crate::{run_in, stderr, stdout};

const DISK: &str = "[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n";

fn write_config(d: &Path, text: &str) {
    std::fs::write(d.join("stowage.toml"), text).unwrap();
}

fn test_policy(d: &Path) -> String {
    std::fs::copy(stowage_tests::fixture("test_policy"), d.join("test-policy.wasm")).unwrap();
    "./test-policy.wasm".into()
}

#[test]
fn swapping_a_policy_is_a_config_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.csv"), "id\n1\n").unwrap();
    let plugin = test_policy(d);
    let strict = format!(
        "role = \"testing\"\n[trust]\nallow_unsigned = true\n{DISK}[storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"{plugin}\"\nconfig = {{ mode = \"require-cohort\" }}\n"
    );
    write_config(d, &strict);
    let o = run_in(d, &["put", "default:f.csv", "f.csv"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("denied: policy `test-policy`: writes need a cohort"), "{}", stderr(&o));
    assert!(!d.join("data/f.csv").exists(), "a denied write reached the disk");
    let o = run_in(d, &["--cohort", "VACS", "put", "default:f.csv", "f.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Same binary, only the config changes: the bundled role policy does not ask for a cohort.
    write_config(
        d,
        &strict.replace(
            &format!("plugin = \"{plugin}\"\nconfig = {{ mode = \"require-cohort\" }}"),
            "plugin = \"role-policy\"",
        ),
    );
    let o = run_in(d, &["put", "default:g.csv", "f.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_web_host_refuses_local_phi_at_start_up_and_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.csv"), "x").unwrap();
    let local_scratch = format!("role = \"web\"\n{DISK}[storage]\ndefault = \"local\"\nscratch = \"local\"\n");
    write_config(d, &local_scratch);
    let o = run_in(d, &["put", "scratch:f.csv", "f.csv"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("stowage.toml:7:") && err.contains("storage.scratch resolves to disk `local` (plugin local-fs)"),
        "{err}"
    );
    assert!(err.contains("never keep PHI on its own disks") && err.contains("plugin = \"remote\""), "{err}");

    // A config that passes start-up (PHI classes on a remote disk; here a test driver standing
    // in for the remote one), forced to the local disk by its name: the role policy denies it.
    std::fs::copy(stowage_tests::fixture("misbehaving_driver"), d.join("remote.wasm")).unwrap();
    write_config(
        d,
        &format!(
            "role = \"web\"\n[trust]\nallow_unsigned = true\nforce_allow_unsigned = true\n{DISK}[disks.services]\nplugin = \"./remote.wasm\"\n[storage]\ndefault = \"local\"\nscratch = \"services\"\nsubmission = \"services\"\n[[policies]]\nplugin = \"role-policy\"\n"
        ),
    );
    let o = run_in(d, &["put", "local:f.csv", "f.csv"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("web hosts never keep PHI on their own disks: disk `local` is served by the `local-fs` driver"),
        "{}",
        stderr(&o)
    );
    assert!(
        std::fs::read_dir(d.join("data")).unwrap().next().is_none(),
        "nothing may be written to the web host's disk"
    );
    let o = run_in(d, &["put", "scratch:f.csv", "f.csv"]);
    assert!(o.status.success(), "PHI to the remote disk is allowed: {}", stderr(&o));
}

const TRACKED: &str = "role = \"testing\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n[storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\nconfig = { cleanup_within_secs = 1 }\n";

#[test]
fn the_ledger_records_every_operation_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, TRACKED);
    std::fs::write(d.join("a.csv"), "id,age\n1,42\n").unwrap();
    std::fs::write(d.join("b.csv"), "id\n7\n").unwrap();
    let a_sha = stowage_tests::sha256_file(&d.join("a.csv"));
    let b_sha = stowage_tests::sha256_file(&d.join("b.csv"));
    let steps: &[&[&str]] = &[
        &["--actor", "alice", "--cohort", "VACS", "put", "submission:subs/a.csv", "a.csv"],
        &["--actor", "bob", "put", "scratch:audit_1/b.csv", "b.csv"],
        &["--actor", "bob", "get", "submission:subs/a.csv"],
        &["--actor", "bob", "rm", "scratch:audit_1/b.csv"],
    ];
    for args in steps {
        let o = run_in(d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let o = run_in(d, &["get", "default:missing.csv"]);
    assert_eq!(o.status.code(), Some(3));

    let o = run_in(d, &["ledger", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let show = stdout(&o);
    let lines: Vec<&str> = show.lines().collect();
    assert_eq!(lines.len(), 8, "{show}");
    // Writes and deletes: a write-ahead record (with size and sha256 before the commit), then
    // the host's outcome settling it.
    assert!(
        lines[0].contains("file_created local:subs/a.csv actor=alice key=local:")
            && lines[0].contains("cohort=VACS size=12"),
        "{show}"
    );
    assert!(lines[0].contains(&a_sha) && lines[0].ends_with("(write-ahead)"), "{show}");
    assert!(
        lines[1].contains("write_committed local:subs/a.csv")
            && lines[1].contains(&a_sha)
            && lines[1].ends_with("settles=#0"),
        "{show}"
    );
    assert!(
        lines[2].contains("work_copy_created local:audit_1/b.csv actor=bob")
            && lines[2].contains("size=5")
            && lines[2].contains(&b_sha),
        "{show}"
    );
    assert!(lines[2].contains("(write-ahead) cleanup_within=1s"), "{show}");
    assert!(lines[3].contains("write_committed local:audit_1/b.csv") && lines[3].ends_with("settles=#2"), "{show}");
    assert!(lines[4].contains("file_accessed local:subs/a.csv actor=bob") && lines[4].contains(&a_sha), "{show}");
    assert!(
        lines[5].contains("work_copy_deleted local:audit_1/b.csv") && lines[5].ends_with("(write-ahead)"),
        "{show}"
    );
    assert!(lines[6].contains("delete_committed local:audit_1/b.csv") && lines[6].ends_with("settles=#5"), "{show}");
    assert!(
        lines[7].contains("access_failed local:missing.csv") && lines[7].contains("error=\"not found: missing.csv\""),
        "{show}"
    );
    let o = run_in(d, &["ledger", "verify"]);
    assert!(o.status.success() && stdout(&o).contains("ledger OK: 8 records"), "{}", stderr(&o));

    // Each kind of tampering, on its own copy of the ledger.
    let cases: &[(&str, &str, u64)] = &[
        ("edit a field", "UPDATE records SET body = replace(body, 'alice', 'mallory') WHERE idx = 0", 0),
        ("delete a row", "DELETE FROM records WHERE idx = 2", 2),
        (
            "swap two rows",
            "UPDATE records SET idx = CASE idx WHEN 1 THEN 3 WHEN 3 THEN 1 END + 100 WHERE idx IN (1, 3); UPDATE records SET idx = idx - 100 WHERE idx > 100",
            1,
        ),
        ("truncate the tail", "DELETE FROM records WHERE idx >= 6", 6),
    ];
    for (what, sql, index) in cases {
        let copy = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(d).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().starts_with("stowage") {
                std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
            }
        }
        let conn = rusqlite::Connection::open(copy.path().join("stowage-ledger.sqlite")).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let o = run_in(copy.path(), &["ledger", "verify"]);
        assert_eq!(o.status.code(), Some(9), "{what}: {}", stdout(&o));
        assert!(stderr(&o).contains(&format!("ledger broken at index {index}:")), "{what}: {}", stderr(&o));
    }
}

#[test]
fn overdue_scratch_files_are_listed_and_cleaned_up_with_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &TRACKED.replace("cleanup_within_secs = 1", "cleanup_within_secs = 5"));
    std::fs::write(d.join("t.csv"), "tmp").unwrap();
    assert!(run_in(d, &["put", "scratch:work/t.csv", "t.csv"]).status.success());
    assert!(run_in(d, &["put", "default:keep.csv", "t.csv"]).status.success());
    // The deadline is the record's time plus 5 s, whatever the clock says now.
    let o = run_in(d, &["ledger", "export", "--format", "json"]);
    let records: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let created = records[0]["at_ms"].as_u64().unwrap();
    let overdue_at = |ms: u64| {
        let o = run_in(d, &["ledger", "overdue", "--at", &ms.to_string()]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(overdue_at(created + 4_999), "", "not overdue before its deadline");
    let overdue = overdue_at(created + 5_000);
    assert!(overdue.starts_with("local:work/t.csv\tdue "), "{overdue}");
    assert_eq!(overdue.lines().count(), 1, "{overdue}");

    // Once the deadline has passed, cleanup deletes it (and nothing else), recorded.
    while stowage_tests::now_ms() < created + 5_000 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run_in(d, &["cleanup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "deleted scratch:work/t.csv\n");
    assert!(!d.join("data/work/t.csv").exists());
    assert!(d.join("data/keep.csv").exists(), "cleanup only removes temporary files");
    let o = run_in(d, &["ledger", "overdue"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let show = stdout(&run_in(d, &["ledger", "show", "--path", "work/t.csv"]));
    let lines: Vec<&str> = show.lines().collect();
    assert_eq!(lines.len(), 4, "{show}");
    assert!(
        lines[2].contains("work_copy_deleted local:work/t.csv actor=stowage-cleanup"),
        "recorded as a temporary copy's deletion: {show}"
    );
    assert!(lines[3].contains("delete_committed local:work/t.csv") && lines[3].ends_with("settles=#4"), "{show}");
    assert!(run_in(d, &["ledger", "verify"]).status.success());
}

fn storage(d: &Path, text: &str) -> Arc<Storage> {
    let config = LoadedConfig::parse(text, ConfigSource::File(d.join("stowage.toml")), d.to_path_buf()).unwrap();
    Arc::new(Storage::start(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_and_looping_policies_deny_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = test_policy(d);
    for mode in ["trap", "loop"] {
        let s = storage(
            d,
            &format!(
                "role = \"testing\"\n[trust]\nallow_unsigned = true\n{DISK}[storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"{plugin}\"\nconfig = {{ mode = \"{mode}\" }}\nlimits = {{ call_timeout_ms = 300 }}\n"
            ),
        );
        let req = Request::new();
        for _ in 0..2 {
            let bad = Address::parse(&format!("default:{mode}.csv")).unwrap();
            match s.writer(&bad, &req, &WriteOptions::default()).await {
                Err(stowage_runtime::StorageError::Denied(reason)) => {
                    assert!(reason.contains("policy `test-policy` failed, so the operation is refused"), "{reason}");
                    assert!(
                        reason.contains(if mode == "trap" { "trapped" } else { "ran past its deadline" }),
                        "{reason}"
                    );
                }
                Err(e) => panic!("{mode}: expected a denial, got {e}"),
                Ok(_) => panic!("{mode}: a failing policy let the write through"),
            }
            assert!(!d.join(format!("data/{mode}.csv")).exists());
            // The next request, to another path, is served by a fresh instance.
            let good = Address::parse("default:fine.csv").unwrap();
            let mut w = s.writer(&good, &req, &WriteOptions::default()).await.unwrap();
            w.write(Bytes::from_static(b"fine")).await.unwrap();
            w.finish().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_only_asked_about_the_operations_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = test_policy(d);
    // Traps on any path containing `trap`, but declares that it only checks puts.
    let s = storage(
        d,
        &format!(
            "role = \"testing\"\n[trust]\nallow_unsigned = true\n{DISK}[storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"{plugin}\"\nconfig = {{ mode = \"trap\", check_ops = \"put\" }}\n"
        ),
    );
    let req = Request::new();
    let addr = Address::parse("default:trap.csv").unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/trap.csv"), b"planted").unwrap();
    // Not asked about stat, exists or get: served.
    assert_eq!(s.stat(&addr, &req).await.unwrap().size, 7);
    assert!(s.exists(&addr, &req).await.unwrap());
    // Asked about the put: it traps, so the put is denied and the file is untouched.
    match s.writer(&addr, &req, &WriteOptions::default()).await {
        Err(stowage_runtime::StorageError::Denied(reason)) => assert!(reason.contains("trapped"), "{reason}"),
        Err(e) => panic!("expected a denial, got {e}"),
        Ok(_) => panic!("the policy was not asked about a put"),
    }
    assert_eq!(std::fs::read(d.join("data/trap.csv")).unwrap(), b"planted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_scratch_file_is_deleted_and_recorded_whatever_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = storage(d, TRACKED);
    async fn work(s: &Arc<Storage>, fail: bool) -> Result<Address, String> {
        let req = Request::new();
        let tmp = s.scratch_file("converted.duckdb", &req).map_err(|e| e.to_string())?;
        let mut w = s.writer(tmp.address(), &req, &WriteOptions::default()).await.map_err(|e| e.to_string())?;
        w.write(Bytes::from_static(b"duckdb bytes")).await.map_err(|e| e.to_string())?;
        w.finish().await.map_err(|e| e.to_string())?;
        let addr = tmp.address().clone();
        assert!(s.exists(&addr, &req).await.unwrap());
        if fail {
            return Err(format!("processing {} failed", addr.path)); // the guard is dropped here
        }
        tmp.remove().await.map_err(|e| e.to_string())?;
        Ok(addr)
    }
    let ok = work(&s, false).await.unwrap();
    let failed_path = work(&s, true).await.unwrap_err();
    // The dropped guard deletes in the background: wait for it (bounded).
    let path = failed_path.trim_start_matches("processing ").trim_end_matches(" failed").to_string();
    let addr = Address { name: "scratch".into(), path };
    // The dropped guard deletes (and the deletion is recorded) in the background: wait for the
    // deletion's settled record (the last one it makes), bounded generously, as a loaded
    // machine may take seconds to run the background task.
    let deleted = |s: &Storage| {
        s.ledger()
            .entries()
            .unwrap()
            .iter()
            .any(|e| e.record.path == addr.path && e.record.action == "delete_committed")
    };
    for _ in 0..1500 {
        if deleted(&s) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(deleted(&s), "the guard did not delete {}", addr.path);
    assert!(!s.exists(&addr, &Request::new()).await.unwrap());
    assert!(!s.exists(&ok, &Request::new()).await.unwrap());
    let entries = s.ledger().entries().unwrap();
    for p in [&ok.path, &addr.path] {
        let actions: Vec<&str> =
            entries.iter().filter(|e| &e.record.path == p).map(|e| e.record.action.as_str()).collect();
        // Created and deleted (each announced, then settled), and looked up twice.
        let want = [
            "work_copy_created",
            "write_committed",
            "metadata_accessed",
            "work_copy_deleted",
            "delete_committed",
            "metadata_accessed",
        ];
        assert_eq!(actions, want, "{p}");
    }
}

#[test]
fn a_policy_config_value_it_cannot_use_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f.csv"), "x").unwrap();
    let cases = [
        ("cleanup_within_secs = \"soon\"", "config `cleanup_within_secs` must be a whole number, not `soon`"),
        ("cleanup_within_secs = -1", "config `cleanup_within_secs` must be a whole number, not `-1`"),
        ("record = \"put,copy\"", "config `record` names `copy`, which is not an operation"),
        ("record_reads = \"no\"", "config `record_reads` must be true or false, not `no`"),
    ];
    for (setting, says) in cases {
        let config = TRACKED.replace("cleanup_within_secs = 1", setting);
        assert_ne!(config, TRACKED);
        write_config(d, &config);
        let want = format!("stowage: policy `phi-tracking` cannot start: phi-tracking policy {says}");
        let o = run_in(d, &["put", "scratch:f.csv", "f.csv"]);
        assert_eq!(o.status.code(), Some(5), "{setting}: {}", stderr(&o));
        let last = stderr(&o).lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with(&want), "{setting}: expected {want:?}, got:\n{}", stderr(&o));
        assert!(!last.contains("trap"), "{setting}: the refusal is a trap's text: {last}");
        assert!(!d.join("data/f.csv").exists(), "{setting}: a refused start stored the file");
    }

    // `serve` refuses to start the same way.
    write_config(
        d,
        &format!(
            "{}[server]\nlisten = \"127.0.0.1:0\"\ndev_mode = true\napi_keys = [\"{}\"]\n",
            TRACKED.replace("cleanup_within_secs = 1", "cleanup_within_secs = \"soon\""),
            crate::serve::KEY
        ),
    );
    let o = crate::config::run_bounded(d, &["serve"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "policy `phi-tracking` cannot start: phi-tracking policy config `cleanup_within_secs` must be a whole number"
        ),
        "{}",
        stderr(&o)
    );
}
