//! The bundled s3 driver against real S3 servers: SeaweedFS and rclone's `serve s3`, both
//! started by `tests/run`. The driver's own behaviour runs against both (`on_both!`); what
//! is the host's (grants, config, the ledger's anchor) and the 1 GiB run stay on SeaweedFS.

use std::time::Duration;

use bytes::Bytes;
use stowage_runtime::{PluginEngine, StorageError, WriteOptions};
use stowage_tests::s3::aws_sdk_s3::primitives::ByteStream;
use stowage_tests::s3::reqwest;
use stowage_tests::s3::{S3Server, Which, driver_config, fresh_bucket, native_client, s3_disk, server, server_of};
use stowage_tests::{ctx, object_path};

use crate::{stderr, stdout};

on_both!(
    an_independent_client_sees_what_the_driver_wrote_and_the_reverse,
    aborted_and_abandoned_multipart_writes_leave_nothing_behind,
    presigned_urls_work_and_expired_or_tampered_ones_are_refused,
    ranges_read_exactly_the_asked_bytes_and_reserved_metadata_is_refused,
    wrong_credentials_are_a_clear_denial_naming_the_disk,
);

fn config_file(dir: &std::path::Path, server: &S3Server, bucket: &str) -> std::path::PathBuf {
    let text = format!(
        "role = \"testing\"\n[disks.nas]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
         config = {{ endpoint = \"{e}\", bucket = \"{bucket}\", part_size_mib = 8, access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
         [storage]\ndefault = \"nas\"\n[ledger]\npath = \"ledger.sqlite\"\n",
        e = server.endpoint
    );
    let path = dir.join("stowage.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cli_command(dir: &std::path::Path, server: &S3Server, args: &[&str]) -> std::process::Command {
    let mut cmd = crate::stowage();
    cmd.current_dir(dir).env("TEST_S3_KEY", &server.access_key).env("TEST_S3_SECRET", &server.secret_key).args(args);
    cmd
}

fn cli(dir: &std::path::Path, server: &S3Server, args: &[&str]) -> std::process::Output {
    cli_command(dir, server, args).output().unwrap()
}

// SeaweedFS only: the driver's multipart path runs on both servers in
// `aborted_and_abandoned_multipart_writes_leave_nothing_behind` and the conformance suite's
// 100 MiB write; a second GiB through rclone (which streams the parts into a temporary file
// and renames it into place) would add CI time and test rclone, not the driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_goes_up_in_parts_and_comes_back_with_bounded_memory() {
    const LIMIT: u64 = 150 << 20;
    let server = server();
    let bucket = fresh_bucket(&server, "big").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_file(d, &server, &bucket);
    let config = config.to_str().unwrap();
    let want = stowage_tests::write_big_file(&d.join("big.bin"), 1024);

    let (status, put_rss) = stowage_tests::run_with_peak_rss(&cli_command(
        d,
        &server,
        &["--config", config, "put", "nas:big.bin", "big.bin"],
    ));
    assert!(status.success(), "put failed");
    std::fs::remove_file(d.join("big.bin")).unwrap();
    // It went up as a multipart upload (its etag says how many parts) and none is left open.
    let head = native_client(&server, None).head_object().bucket(&bucket).key("big.bin").send().await.unwrap();
    assert_eq!(head.content_length(), Some(1 << 30));
    let etag = head.e_tag().unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-128"), "expected 128 parts of 8 MiB, etag {etag}");
    assert_eq!(pending_uploads(&server, &bucket).await, 0);

    let (status, get_rss) = stowage_tests::run_with_peak_rss(&cli_command(
        d,
        &server,
        &["--config", config, "get", "nas:big.bin", "-o", "back.bin"],
    ));
    assert!(status.success(), "get failed");
    println!("s3 1 GiB peak RSS (host + plugin): put {} MiB, get {} MiB", put_rss >> 20, get_rss >> 20);
    assert!(put_rss < LIMIT, "put peaked at {} MiB", put_rss >> 20);
    assert!(get_rss < LIMIT, "get peaked at {} MiB", get_rss >> 20);
    assert_eq!(stowage_tests::sha256_file(&d.join("back.bin")), want, "bytes read back differ");
}

async fn an_independent_client_sees_what_the_driver_wrote_and_the_reverse(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "independent").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_file(d, &server, &bucket);
    let config = config.to_str().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("in.bin"), &data).unwrap();

    // stowage put → native GetObject.
    let out = cli(
        d,
        &server,
        &[
            "--config",
            config,
            "put",
            "nas:cohort/a.bin",
            "in.bin",
            "--content-type",
            "application/x-test",
            "--meta",
            "cohort=VACS",
            "--meta",
            "file-type=raw",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let native = native_client(&server, None);
    let got = native.get_object().bucket(&bucket).key("cohort/a.bin").send().await.unwrap();
    assert_eq!(got.content_type(), Some("application/x-test"));
    let meta = got.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("cohort").map(String::as_str), Some("VACS"));
    assert_eq!(meta.get("file-type").map(String::as_str), Some("raw"));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.as_ref(), data.as_slice());

    // Native PutObject → stowage stat and get.
    native
        .put_object()
        .bucket(&bucket)
        .key("from-native/b.csv")
        .content_type("text/csv")
        .metadata("cohort", "PREVENT")
        .body(ByteStream::from_static(b"id,age\n1,42\n"))
        .send()
        .await
        .unwrap();
    let out = cli(d, &server, &["--config", config, "stat", "nas:from-native/b.csv", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["size"], 12);
    assert_eq!(info["content_type"], "text/csv");
    assert_eq!(info["metadata"]["cohort"], "PREVENT");
    let out = cli(d, &server, &["--config", config, "get", "nas:from-native/b.csv", "-o", "b.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("b.csv")).unwrap(), b"id,age\n1,42\n");
    // The secret never shows in anything the CLI printed.
    let out = cli(d, &server, &["--config", config, "config", "check", config]);
    assert!(!stdout(&out).contains(&server.secret_key) && !stderr(&out).contains(&server.secret_key));
}

/// Multipart uploads the server still holds open in `bucket`.
pub(crate) async fn pending_uploads(server: &S3Server, bucket: &str) -> usize {
    let native = native_client(server, None);
    let list = native.list_multipart_uploads().bucket(bucket).send().await.unwrap();
    list.uploads().len()
}

async fn aborted_and_abandoned_multipart_writes_leave_nothing_behind(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "abort").await;
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &server, driver_config(&server, &bucket, None));
    let c = ctx(&disk);
    let chunk = Bytes::from(vec![5u8; 1 << 20]);
    for (path, how) in [("aborted.bin", "abort"), ("dropped.bin", "drop")] {
        let mut w = disk.writer(&c, &object_path(path), &WriteOptions::default()).await.unwrap();
        for _ in 0..12 {
            w.write(chunk.clone()).await.unwrap();
        }
        // Two 5 MiB parts are on the server by now.
        assert_eq!(pending_uploads(&server, &bucket).await, 1, "{how}: the upload should be in flight");
        if how == "abort" {
            w.abort().await.unwrap();
        } else {
            drop(w);
        }
        let mut gone = false;
        for _ in 0..50 {
            if pending_uploads(&server, &bucket).await == 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "{how}: an incomplete multipart upload was left behind");
        assert!(
            matches!(disk.stat(&c, &object_path(path)).await, Err(StorageError::NotFound(_))),
            "{how}: a partial object is visible"
        );
    }
    // A multipart object that completes has every byte.
    let mut w = disk.writer(&c, &object_path("whole.bin"), &WriteOptions::default()).await.unwrap();
    for _ in 0..12 {
        w.write(chunk.clone()).await.unwrap();
    }
    let info = w.finish().await.unwrap();
    assert_eq!(info.size, 12 << 20);
    assert_eq!(disk.stat(&c, &object_path("whole.bin")).await.unwrap().size, 12 << 20);
    assert_eq!(pending_uploads(&server, &bucket).await, 0);
}

async fn presigned_urls_work_and_expired_or_tampered_ones_are_refused(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "presign").await;
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &server, driver_config(&server, &bucket, None));
    let c = ctx(&disk);
    let mut w = disk.writer(&c, &object_path("shared/report.csv"), &WriteOptions::default()).await.unwrap();
    w.write(Bytes::from_static(b"a,b\n1,2\n")).await.unwrap();
    w.finish().await.unwrap();
    let http = reqwest::Client::new();

    let url = disk.url(&c, &object_path("shared/report.csv"), 600).await.unwrap();
    let ok = http.get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().as_ref(), b"a,b\n1,2\n");

    // Another object's path under the same signature.
    let tampered = url.replace("report.csv", "other.csv");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    // A longer lifetime than was signed.
    let tampered = url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000");
    assert_ne!(tampered, url);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);

    let short = disk.url(&c, &object_path("shared/report.csv"), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Refused; rclone says so with 400 (AWS and SeaweedFS: 403).
    let expired = if which == Which::Rclone { 400 } else { 403 };
    assert_eq!(http.get(&short).send().await.unwrap().status(), expired);
}

async fn ranges_read_exactly_the_asked_bytes_and_reserved_metadata_is_refused(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "range").await;
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &server, driver_config(&server, &bucket, None));
    let c = ctx(&disk);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut w = disk.writer(&c, &object_path("r.bin"), &WriteOptions::default()).await.unwrap();
    w.write(Bytes::from(data.clone())).await.unwrap();
    w.finish().await.unwrap();
    for (offset, length, want) in [
        (10u64, Some(u64::MAX), &data[10..]),
        (0, Some(1), &data[..1]),
        (1000, None, &data[1000..]),
        (999, Some(5), &data[999..]),
    ] {
        let range = stowage_runtime::ByteRange { offset, length };
        let mut r = disk.reader(&c, &object_path("r.bin"), Some(range)).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = r.next_chunk(1 << 20).await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got.as_slice(), want, "range {offset} {length:?}");
    }
    let past = stowage_runtime::ByteRange { offset: 1001, length: None };
    assert!(matches!(disk.reader(&c, &object_path("r.bin"), Some(past)).await, Err(StorageError::InvalidRange(_))));
    let options = WriteOptions { metadata: vec![("Stowage-Sha256".into(), "0".repeat(64))], ..WriteOptions::default() };
    assert!(matches!(disk.writer(&c, &object_path("spoof.bin"), &options).await, Err(StorageError::Unsupported(_))));
}

async fn wrong_credentials_are_a_clear_denial_naming_the_disk(which: Which) {
    let server = server_of(which);
    let bucket = fresh_bucket(&server, "creds").await;
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &server, driver_config(&server, &bucket, Some("not-the-secret")));
    let c = ctx(&disk);
    match disk.stat(&c, &object_path("a.txt")).await {
        Err(StorageError::Denied(reason)) => {
            assert!(reason.contains("disk `s3`"), "{reason}");
            assert!(reason.contains("credentials"), "{reason}");
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    let mut w = disk.writer(&c, &object_path("a.txt"), &WriteOptions::default()).await.unwrap();
    w.write(Bytes::from_static(b"x")).await.unwrap();
    assert!(matches!(w.finish().await, Err(StorageError::Denied(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_gives_a_retryable_error_after_bounded_retries() {
    let server = server();
    // A loopback port nobody listens on, granted and configured: the server is "down".
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = stowage_tests::s3::S3Server { endpoint: format!("http://127.0.0.1:{port}"), ..server.clone() };
    let engine = PluginEngine::new().unwrap();
    let disk = s3_disk(&engine, &down, driver_config(&down, "any", None));
    let c = ctx(&disk);
    let started = std::time::Instant::now();
    match disk.stat(&c, &object_path("a.txt")).await {
        Err(StorageError::Unavailable { retryable: true, reason }) => {
            assert!(reason.contains("cannot reach"), "{reason}")
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "retries were not bounded: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reaches_only_its_granted_endpoint() {
    let server = server();
    let bucket = fresh_bucket(&server, "grant").await;
    let engine = PluginEngine::new().unwrap();
    // Granted a different origin than the one it is configured to call.
    let bytes = stowage_bundled::get("s3").unwrap();
    let grants = stowage_runtime::DriverGrants {
        outbound: Some(stowage_runtime::http::Outbound::to("http://127.0.0.1:9").unwrap()),
        config: driver_config(&server, &bucket, None),
        ..Default::default()
    };
    let disk = stowage_runtime::Disk::load(&engine, "s3", bytes, grants, stowage_runtime::Limits::default()).unwrap();
    match disk.stat(&ctx(&disk), &object_path("a.txt")).await {
        Err(StorageError::Denied(reason)) => assert!(reason.contains("granted endpoint"), "{reason}"),
        other => panic!("expected the host to refuse, got {other:?}"),
    }
    // A read goes out with wasi:http itself (the SDK only signs it): refused the same way.
    match disk.get_bytes(&ctx(&disk), &object_path("a.txt"), None).await.map(|(info, _)| info) {
        Err(StorageError::Denied(reason)) => assert!(reason.contains("granted endpoint"), "{reason}"),
        other => panic!("expected the host to refuse the read, got {other:?}"),
    }
    // And with no grant at all.
    let grants = stowage_runtime::DriverGrants { config: driver_config(&server, &bucket, None), ..Default::default() };
    let disk = stowage_runtime::Disk::load(&engine, "s3", bytes, grants, stowage_runtime::Limits::default()).unwrap();
    assert!(matches!(disk.stat(&ctx(&disk), &object_path("a.txt")).await, Err(StorageError::Denied(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_multipart_upload_a_dead_host_left_is_swept_and_recorded() {
    let server = server();
    let bucket = fresh_bucket(&server, "orphans").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_file(d, &server, &bucket);
    // S3 keeps no owner tag with an upload: only its age tells. Zero: any unfinished upload is
    // an orphan.
    let text = std::fs::read_to_string(&config).unwrap().replace("[storage]", "orphan_after_secs = 0\n[storage]");
    std::fs::write(&config, text).unwrap();
    // What a host killed mid-upload leaves: an upload with a part, never completed.
    let native = native_client(&server, None);
    let upload = native.create_multipart_upload().bucket(&bucket).key("half.bin").send().await.unwrap();
    let id = upload.upload_id().unwrap().to_string();
    native
        .upload_part()
        .bucket(&bucket)
        .key("half.bin")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(vec![1u8; 5 << 20]))
        .send()
        .await
        .unwrap();
    assert_eq!(pending_uploads(&server, &bucket).await, 1);
    // Any start sweeps (here `cleanup`'s).
    let o = cli(d, &server, &["cleanup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pending_uploads(&server, &bucket).await, 0, "the orphaned upload's parts were freed");
    let show = stdout(&cli(d, &server, &["ledger", "show"]));
    assert!(show.lines().any(|l| l.contains(&format!("orphan_removed nas:{id} half.bin"))), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_copied_to_a_bucket_and_anchor_the_ledger_from_there() {
    let server = server();
    let bucket = fresh_bucket(&server, "anchor").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "role = \"testing\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n\
         [disks.anchor]\nplugin = \"s3\"\ngrant = {{ endpoint = \"{e}\" }}\n\
         config = {{ endpoint = \"{e}\", bucket = \"{bucket}\", access_key_id = {{ env = \"TEST_S3_KEY\" }}, secret_access_key = {{ env = \"TEST_S3_SECRET\" }} }}\n\
         [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"phi-tracking\"\n[ledger]\npath = \"ledger.sqlite\"\ncheckpoint_disk = \"anchor\"\ncheckpoint_every = 3\n",
        e = server.endpoint
    );
    std::fs::write(d.join("stowage.toml"), text).unwrap();
    std::fs::write(d.join("f.csv"), "a\n").unwrap();
    for i in 0..3 {
        let o = cli(d, &server, &["put", &format!("default:f{i}.csv"), "f.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Each start copies the newest checkpoint an earlier process signed.
    let listed = native_client(&server, None)
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("ledger-checkpoints/stowage-ledger/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    assert!(!keys.is_empty(), "no checkpoint reached the bucket");
    let newest = keys.iter().max().unwrap();
    let body = native_client(&server, None)
        .get_object()
        .bucket(&bucket)
        .key(newest)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let local = std::fs::read_to_string(d.join("ledger.sqlite.checkpoints")).unwrap();
    let note = String::from_utf8(body.to_vec()).unwrap();
    assert!(local.contains(&note), "the bucket's checkpoint is one the host signed:\n{note}");
    // The copy from the bucket, with the public key, proves the ledger extends it.
    std::fs::write(d.join("from-bucket.txt"), &note).unwrap();
    let o = cli(d, &server, &["ledger", "verify", "--against", "from-bucket.txt", "--trust", "ledger.sqlite.key.pub"]);
    assert!(
        o.status.success() && stdout(&o).contains("extends the checkpoints of size"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_driver_setting_is_refused_naming_its_key_and_what_it_must_be() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = server();
    let bucket = fresh_bucket(&server, "settings").await;
    let good = std::fs::read_to_string(config_file(d, &server, &bucket)).unwrap();
    for (from, to, want) in [
        (
            "part_size_mib = 8",
            "part_size_mib = \"lots\"",
            "s3 driver config `part_size_mib` must be a whole number, not `lots`",
        ),
        (
            "part_size_mib = 8",
            "part_size_mib = 2",
            "s3 driver config `part_size_mib` must be 5 (S3's smallest part) to 1024",
        ),
        (
            "part_size_mib = 8",
            "part_size_mib = 8, path_style = \"maybe\"",
            "s3 driver config `path_style` must be true or false, not `maybe`",
        ),
        (
            "part_size_mib = 8",
            "part_size_mib = 8, max_attempts = 0",
            "s3 driver config `max_attempts` must be 1 to 10, not 0",
        ),
        (&format!("bucket = \"{bucket}\", "), "", "s3 driver config `bucket` is required (the bucket)"),
    ] {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good);
        std::fs::write(d.join("stowage.toml"), &text).unwrap();
        let o = cli(d, &server, &["ls", "default:"]);
        assert!(!o.status.success(), "{to}: {}", stdout(&o));
        assert!(stderr(&o).contains(want), "{to}: expected {want:?} in {}", stderr(&o));
    }
}
