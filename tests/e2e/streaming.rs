//! A 1 GiB put and get through the CLI stay well under 150 MiB of resident memory.

use stowage_tests::{run_with_peak_rss, sha256_file, write_big_file};

const LIMIT: u64 = 150 << 20;

#[test]
fn one_gib_put_and_get_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("big.bin");
    let want = write_big_file(&src, 1024);

    let mut put = crate::stowage();
    put.current_dir(d).args(["put", "default:big.bin", "big.bin"]);
    let (status, put_rss) = run_with_peak_rss(&put);
    assert!(status.success(), "put failed");
    std::fs::remove_file(&src).unwrap();

    let mut get = crate::stowage();
    get.current_dir(d).args(["get", "default:big.bin", "-o", "back.bin"]);
    let (status, get_rss) = run_with_peak_rss(&get);
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
