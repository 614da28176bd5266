//! `stowage cp` and `stowage mv`: between classes, between disks (local-fs and S3), verified
//! by sha256 end to end, recorded on both sides; a copy of bytes that rotted at rest is
//! refused and `mv` keeps its source.

use stowage_tests::s3::{fresh_bucket, server};

use crate::{stderr, stdout};

/// A config with two local disks (scratch on `work`, submission on `archive`), an S3 disk
/// `nas` on `bucket`, phi-tracking and a ledger.
fn config(d: &std::path::Path, bucket: &str) {
    let s3 = server();
    std::fs::write(
        d.join("stowage.toml"),
        format!(
            "role = \"testing\"\n[disks.work]\nplugin = \"local-fs\"\ngrant = {{ dir = \"work\" }}\n\
             [disks.archive]\nplugin = \"local-fs\"\ngrant = {{ dir = \"archive\" }}\n\
             [disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
             config = {{ endpoint = \"{e}\", bucket = \"{bucket}\", part_size_mib = 8, access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
             [storage]\ndefault = \"work\"\nscratch = \"work\"\nsubmission = \"archive\"\n\
             [[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\n",
            e = s3.endpoint
        ),
    )
    .unwrap();
}

fn run(d: &std::path::Path, args: &[&str]) -> std::process::Output {
    let s3 = server();
    crate::stowage()
        .current_dir(d)
        .env("TEST_S3_KEY", &s3.access_key)
        .env("TEST_S3_SECRET", &s3.secret_key)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_and_mv_between_classes_and_disks_are_verified_and_recorded_on_both_sides() {
    let bucket = fresh_bucket(&server(), "copy").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, &bucket);
    let want = stowage_tests::write_big_file(&d.join("data.bin"), 20);
    let o =
        run(d, &["put", "scratch:audit_7/data.bin", "data.bin", "--content-type", "text/csv", "--meta", "cohort=VACS"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // scratch (work) → S3 → submission (archive), each a verified, streamed copy.
    let o = run(d, &["cp", "scratch:audit_7/data.bin", "nas:copies/data.bin"]);
    assert!(o.status.success(), "cp to s3: {}", stderr(&o));
    assert!(stdout(&o).contains(&format!("sha256 {want}")), "{}", stdout(&o));
    let o = run(d, &["mv", "nas:copies/data.bin", "submission:subs/VACS/data.bin"]);
    assert!(o.status.success(), "mv from s3: {}", stderr(&o));
    let o = run(d, &["stat", "--json", "submission:subs/VACS/data.bin"]);
    let stat: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stat["sha256"], want.as_str());
    assert_eq!(
        (stat["content_type"].as_str(), stat["metadata"]["cohort"].as_str()),
        (Some("text/csv"), Some("VACS")),
        "content type and metadata travel"
    );
    assert_eq!(stowage_tests::sha256_file(&d.join("archive/subs/VACS/data.bin")), want);
    let o = run(d, &["stat", "nas:copies/data.bin"]);
    assert_eq!(o.status.code(), Some(3), "mv removed its source: {}", stderr(&o));
    assert!(d.join("work/audit_7/data.bin").exists(), "cp keeps its source");

    // Both sides of each step are in the ledger.
    let show = stdout(&run(d, &["ledger", "show"]));
    for (action, at) in [
        ("file_accessed", "work:audit_7/data.bin"),
        ("file_created", "nas:copies/data.bin"),
        ("file_accessed", "nas:copies/data.bin"),
        ("file_created", "archive:subs/VACS/data.bin"),
        ("file_deleted", "nas:copies/data.bin"),
    ] {
        assert!(show.lines().any(|l| l.contains(&format!("{action} {at}"))), "no {action} of {at}:\n{show}");
    }

    // Bytes that rotted at rest (one flipped on the disk; size and modification time as they
    // were, so the recorded sha256 still stands for the file): the copy is refused, nothing
    // lands, and mv keeps the source.
    let at_rest = d.join("work/audit_7/data.bin");
    let modified = std::fs::metadata(&at_rest).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&at_rest).unwrap();
    bytes[12345] ^= 1;
    std::fs::write(&at_rest, &bytes).unwrap();
    std::fs::File::options().write(true).open(&at_rest).unwrap().set_modified(modified).unwrap();
    let o = run(d, &["mv", "scratch:audit_7/data.bin", "submission:subs/VACS/rotted.bin"]);
    assert_eq!(o.status.code(), Some(5), "a copy that does not verify: {}", stderr(&o));
    assert!(stderr(&o).contains("sha256"), "{}", stderr(&o));
    assert!(at_rest.exists(), "mv kept its source");
    assert!(!d.join("archive/subs/VACS/rotted.bin").exists(), "nothing landed");
    let o = run(d, &["cp", "scratch:audit_7/data.bin", "scratch:audit_7/data.bin"]);
    assert_eq!(o.status.code(), Some(5), "onto itself: {}", stderr(&o));
    // The same object under a class name and its disk's name: mv must not delete it.
    let o = run(d, &["mv", "scratch:audit_7/data.bin", "work:audit_7/data.bin"]);
    assert_eq!(o.status.code(), Some(5), "onto itself by another name: {}", stderr(&o));
    assert!(stderr(&o).contains("are the same object (disk `work`)"), "{}", stderr(&o));
    assert!(at_rest.exists(), "the only copy is still there");
}

/// `put -r` of a tree of 1,000 files, killed part way, then run again: the rerun sends only
/// what is missing; `get -r` brings back a tree `diff -r` finds identical, and a second
/// `get -r` writes nothing.
#[test]
fn put_r_and_get_r_round_trip_a_tree_and_resume_where_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tree = d.join("tree");
    for i in 0..1000 {
        let sub = tree.join(format!("d{}", i % 10)).join(format!("e{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n").repeat(i % 50 + 1)).unwrap();
    }
    // The first run is killed once a hundred objects are stored.
    let mut first = crate::stowage()
        .current_dir(d)
        .args(["put", "-r", "default:backup", "tree"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let data = d.join("stowage-data/backup");
    let count = |root: &std::path::Path| {
        let mut n = 0;
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else if name.ends_with(".txt") {
                    n += 1;
                }
            }
        }
        n
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count(&data) < 100 {
        assert!(std::time::Instant::now() < deadline, "the first put -r stored too little");
        assert!(first.try_wait().unwrap().is_none(), "the first put -r ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let stored = count(&data);
    assert!(stored < 1000, "it was killed part way ({stored} stored)");

    let o = crate::run_in(d, &["put", "-r", "default:backup", "tree"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    let numbers: Vec<usize> = summary.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 2, "{summary}");
    let (sent, matched) = (numbers[0], numbers[1]);
    assert_eq!(sent + matched, 1000, "{summary}");
    assert!(
        matched >= stored - 1 && sent <= 1000 - stored + 1,
        "the rerun sent only what was missing ({stored} were stored): {summary}"
    );

    let o = crate::run_in(d, &["get", "-r", "default:backup", "-o", "back"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("1000 written, 0 already there"), "{}", stdout(&o));
    let diff = std::process::Command::new("diff").args(["-r", "tree", "back"]).current_dir(d).output().unwrap();
    assert!(diff.status.success(), "trees differ: {}", String::from_utf8_lossy(&diff.stdout));
    let o = crate::run_in(d, &["get", "-r", "default:backup", "-o", "back"]);
    assert!(stdout(&o).starts_with("0 written, 1000 already there"), "{}", stdout(&o));
}
