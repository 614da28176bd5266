//! The CLI round trip from a fresh directory with no config (the embedded default).

use crate::{run_in, stderr, stdout};

#[test]
fn round_trip_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(d.join("data.bin"), &data).unwrap();
    let want_sha = stowage_tests::sha256_file(&d.join("data.bin"));

    let o = run_in(d, &["put", "scratch:audit_123/data.bin", "data.bin", "--meta", "cohort=VACS", "--content-type", "application/octet-stream"]);
    assert!(o.status.success(), "put: {}", stderr(&o));
    assert!(d.join("stowage-data/audit_123/data.bin").is_file(), "embedded default stores under ./stowage-data");

    let o = run_in(d, &["ls", "default:"]);
    assert!(o.status.success(), "ls: {}", stderr(&o));
    assert_eq!(stdout(&o), "audit_123/data.bin\n");

    let o = run_in(d, &["stat", "default:audit_123/data.bin", "--json"]);
    assert!(o.status.success(), "stat: {}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["path"], "audit_123/data.bin");
    assert_eq!(json["size"], data.len() as u64);
    assert_eq!(json["sha256"], want_sha.as_str());
    assert_eq!(json["content_type"], "application/octet-stream");
    assert_eq!(json["metadata"]["cohort"], "VACS");

    let o = run_in(d, &["get", "submission:audit_123/data.bin"]);
    assert!(o.status.success(), "get: {}", stderr(&o));
    assert!(o.stdout == data, "get to stdout returned different bytes");
    let o = run_in(d, &["get", "default:audit_123/data.bin", "-o", "back.bin"]);
    assert!(o.status.success(), "get -o: {}", stderr(&o));
    assert_eq!(std::fs::read(d.join("back.bin")).unwrap(), data);

    let o = run_in(d, &["rm", "default:audit_123/data.bin"]);
    assert!(o.status.success(), "rm: {}", stderr(&o));
    let o = run_in(d, &["get", "default:audit_123/data.bin"]);
    assert_eq!(o.status.code(), Some(3), "get after rm must exit 3 (not found)");
    assert!(stderr(&o).contains("not found"), "message: {}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = run_in(d, &["ls", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "nothing listed after rm");
}

#[test]
fn put_reads_stdin_and_errors_are_one_actionable_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = crate::stowage()
        .current_dir(d)
        .args(["put", "default:from-stdin.txt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped bytes").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(stdout(&run_in(d, &["get", "default:from-stdin.txt"])), "piped bytes");

    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "default:../etc/passwd"], 5, "invalid path: path segment 1 is `..`"),
        (&["get", "default:/etc/passwd"], 5, "invalid path: path starts with `/`"),
        (&["get", "nowhere:x"], 3, "no storage class or disk named `nowhere`"),
        (&["get", "no-colon"], 5, "is not of the form NAME:path"),
        (&["put", "default:x", "missing-file"], 1, "cannot open missing-file"),
        (&["rm", "default:never-there"], 3, "not found"),
    ];
    for (args, code, needle) in cases {
        let o = run_in(d, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?} must print one line: {err}");
    }
    assert!(!d.join("etc").exists());
}
