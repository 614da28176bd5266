//! A 1 GiB put and get through the CLI stay well under 150 MiB of resident memory.

use std::process::Stdio;

use stowage_tests::{sha256_file, wait_with_peak_rss, write_big_file};

const LIMIT: u64 = 150 << 20;

#[test]
fn one_gib_put_and_get_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("big.bin");
    let want = write_big_file(&src, 1024);

    let put = crate::stowage()
        .current_dir(d)
        .args(["put", "default:big.bin", "big.bin"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (status, put_rss) = wait_with_peak_rss(put);
    assert!(status.success(), "put failed");
    std::fs::remove_file(&src).unwrap();

    let get = crate::stowage()
        .current_dir(d)
        .args(["get", "default:big.bin", "-o", "back.bin"])
        .spawn()
        .unwrap();
    let (status, get_rss) = wait_with_peak_rss(get);
    assert!(status.success(), "get failed");
    println!("peak RSS: put {} MiB, get {} MiB", put_rss >> 20, get_rss >> 20);
    assert!(put_rss < LIMIT, "put peaked at {} MiB", put_rss >> 20);
    assert!(get_rss < LIMIT, "get peaked at {} MiB", get_rss >> 20);
    assert_eq!(std::fs::metadata(d.join("back.bin")).unwrap().len(), 1 << 30);
    assert_eq!(sha256_file(&d.join("back.bin")), want, "bytes read back differ");
    let o = crate::run_in(d, &["stat", "default:big.bin", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["sha256"], want.as_str());
}
