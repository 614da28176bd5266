//! A process killed with SIGKILL in the middle of a write leaves no partial object; the
//! previous version stays intact.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{run_in, stderr, stdout};

/// Bytes in the driver's temp files (local-fs keeps them in `.stowage-tmp/` at the root), and
/// in anything else hidden under `root` that is not a metadata sidecar.
pub(crate) fn temp_file_bytes(root: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![(root.to_path_buf(), false)];
    while let Some((d, in_temp_dir)) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                dirs.push((e.path(), in_temp_dir || name == ".stowage-tmp"));
            } else if in_temp_dir || (name.starts_with('.') && !name.ends_with(".stowage-meta")) {
                total += e.metadata().unwrap().len();
            }
        }
    }
    total
}

#[test]
fn sigkill_mid_write_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("v1.txt"), "version one").unwrap();
    let o = run_in(d, &["put", "default:reports/obj.bin", "v1.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mut child = crate::stowage()
        .current_dir(d)
        .args(["put", "default:reports/obj.bin", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..24 {
        stdin.write_all(&stowage_tests::block(i)).unwrap();
    }
    stdin.flush().unwrap();
    // Wait until the new version is being written to disk, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    while temp_file_bytes(&d.join("stowage-data")) < 16 << 20 {
        assert!(Instant::now() < deadline, "the write never reached the disk");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    assert!(temp_file_bytes(&d.join("stowage-data")) >= 16 << 20, "the killed write left its temp file");
    let o = run_in(d, &["get", "default:reports/obj.bin"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "version one", "the previous version must be intact");
    // The next host's start found the temp file of the dead write, removed it, and said so.
    assert_eq!(temp_file_bytes(&d.join("stowage-data")), 0, "a full copy of the killed write stayed on the disk");
    let show = stdout(&run_in(d, &["ledger", "show"]));
    assert!(
        show.lines().any(|l| l.contains("orphan_removed local:") && l.contains("size=") && !l.contains("size=-")),
        "{show}"
    );
    let o = run_in(d, &["ls", "default:"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "reports/obj.bin\n", "no partial object is visible");
    let o = run_in(d, &["stat", "default:reports/obj.bin", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["size"], 11);
    assert_eq!(json["sha256"], stowage_tests::sha256_file(&d.join("v1.txt")).as_str());

    // A later write to the same path works despite the stale temp file.
    let o = run_in(d, &["put", "default:reports/obj.bin", "v1.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
