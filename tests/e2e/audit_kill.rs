//! SIGKILL at any step of a write leaves every visible object recorded in the PHI ledger and
//! no temp file behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::audit::audited_dir;
use crate::{run_in, stderr, stdout, stowage};

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
