//! A driver reaches nothing outside its grant, and a misbehaving plugin fails only its own
//! request: the host replaces the instance and keeps serving.

use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::{FaultKind, Limits, PluginEngine, StorageError, WriteOptions};
use stowage_tests::{ctx, fixture_disk, list_prefix, local_disk, object_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_cannot_leave_its_root() {
    let outside = tempfile::tempdir().unwrap();
    let sentinel = outside.path().join("sentinel.txt");
    std::fs::write(&sentinel, "do not touch").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("dirlink")).unwrap();
    std::os::unix::fs::symlink(&sentinel, root.path().join("filelink")).unwrap();
    // A relative link that climbs out of the root into the watched directory.
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(outside.path().parent(), root.path().parent(), "both in the same temp dir");
    std::os::unix::fs::symlink(format!("../{outside_name}"), root.path().join("relative-escape")).unwrap();

    let engine = PluginEngine::new().unwrap();
    let disk = local_disk(&engine, "local", root.path(), Limits::default());
    let c = ctx(&disk);
    let put = |p: &'static str| {
        let disk = disk.clone();
        let c = c.clone();
        async move { disk.put_bytes(&c, &object_path(p), Bytes::from_static(b"evil"), &WriteOptions::default()).await }
    };

    // Escapes by path are refused by the driver's own checks (sent unchecked, past the host's).
    let raw = disk.unchecked();
    for p in ["../sentinel.txt", "/etc/passwd", "a/../../sentinel.txt"] {
        let put = raw.put_bytes(&c, p, Bytes::from_static(b"evil"), &WriteOptions::default()).await;
        assert!(matches!(put, Err(StorageError::InvalidPath(_))), "{p}");
        assert!(matches!(raw.stat(&c, p).await, Err(StorageError::InvalidPath(_))), "{p}");
    }
    // Escapes through planted symlinks fail inside the sandbox.
    for p in ["dirlink/new.txt", "dirlink/sentinel.txt", "relative-escape/sentinel.txt", "relative-escape/new.txt"] {
        assert!(put(p).await.is_err(), "writing through {p} must fail");
        assert!(disk.get_bytes(&c, &object_path(p), None).await.is_err(), "reading through {p} must fail");
    }
    if let Ok((_, bytes)) = disk.get_bytes(&c, &object_path("filelink"), None).await {
        assert_ne!(bytes, b"do not touch", "read the sentinel through a symlink");
    }
    assert!(disk.get_bytes(&c, &object_path("dirlink/sentinel.txt"), None).await.is_err());
    // Replacing or deleting the link itself never touches its target.
    let _ = put("filelink").await;
    let _ = disk.delete(&c, &object_path("filelink")).await;
    assert!(
        disk.list(&c, &list_prefix(""), None, 1000).await.unwrap().items.iter().all(|i| !i.path.starts_with("dirlink"))
    );

    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "do not touch");
    let names: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("sentinel.txt")], "nothing new outside the root");
}

fn limits() -> Limits {
    Limits { memory_bytes: 32 << 20, call_timeout: Duration::from_millis(1500), max_instances: 4, ..Limits::default() }
}

fn assert_fault(r: Result<stowage_runtime::ObjectInfo, StorageError>, want: FaultKind) {
    match r {
        Err(StorageError::PluginFault { disk, kind, detail }) => {
            assert_eq!(kind, want, "{detail}");
            assert_eq!(disk, "bad");
            assert!(!detail.is_empty());
        }
        other => panic!("expected a {want:?} fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_loop_and_oom_fail_their_request_and_the_host_keeps_serving() {
    let engine = PluginEngine::new().unwrap();
    let bad = fixture_disk(&engine, "bad", "misbehaving_driver", limits());
    let root = tempfile::tempdir().unwrap();
    let good = local_disk(&engine, "good", root.path(), Limits::default());
    let (bc, gc) = (ctx(&bad), ctx(&good));

    // The misbehaving driver works normally for other paths (it keeps objects in instance
    // memory: what an instance served shows whether it is fresh).
    bad.put_bytes(&bc, &object_path("fine"), Bytes::from_static(b"ok"), &WriteOptions::default()).await.unwrap();
    assert!(bad.exists(&bc, &object_path("fine")).await.unwrap());

    assert_fault(bad.stat(&bc, &object_path("trap")).await, FaultKind::Trap);
    assert_eq!(bad.restarts(), 1);
    assert!(!bad.exists(&bc, &object_path("fine")).await.unwrap(), "the next request is served by a fresh instance");

    // A loop is cut at the deadline, while another disk keeps serving meanwhile.
    let started = Instant::now();
    let looping = tokio::spawn({
        let (bad, bc) = (bad.clone(), bc.clone());
        async move { bad.stat(&bc, &object_path("loop")).await }
    });
    while bad.calls_in_progress() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..20 {
        let path = object_path(&format!("during-loop/{i}"));
        good.put_bytes(&gc, &path, Bytes::from(vec![i as u8; 1000]), &WriteOptions::default()).await.unwrap();
        assert_eq!(good.get_bytes(&gc, &path, None).await.unwrap().1, vec![i as u8; 1000]);
        if i == 0 {
            assert!(
                !looping.is_finished() && bad.calls_in_progress() == 1,
                "the other disk served while the loop still ran"
            );
        }
    }
    assert_fault(looping.await.unwrap(), FaultKind::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(15), "loop cut after {took:?}");

    assert_fault(bad.stat(&bc, &object_path("oom")).await, FaultKind::MemoryLimit);
    assert_eq!(bad.restarts(), 3);

    // Every fault replaced the instance; the disk still serves, with its state fresh.
    assert!(matches!(bad.exists(&bc, &object_path("anything")).await, Ok(false)));
    assert!(good.exists(&gc, &object_path("during-loop/0")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_midway_does_not_poison_the_pool() {
    let engine = PluginEngine::new().unwrap();
    let long = Limits { call_timeout: Duration::from_secs(30), ..limits() };
    let bad = fixture_disk(&engine, "bad", "misbehaving_driver", long);
    let bc = ctx(&bad);
    let call = tokio::spawn({
        let (bad, bc) = (bad.clone(), bc.clone());
        async move { bad.stat(&bc, &object_path("loop")).await }
    });
    // Abandon it once it really runs inside the plugin.
    while bad.calls_in_progress() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!call.is_finished(), "the loop is running");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    // The abandoned instance was thrown away, not reused: the next calls get a fresh one.
    for _ in 0..3 {
        assert!(matches!(bad.exists(&bc, &object_path("x")).await, Ok(false)));
    }
    assert_eq!(bad.restarts(), 1);
    assert_eq!(bad.calls_in_progress(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_keeps_to_its_share_of_instances_and_a_full_disk_answers_busy_in_time() {
    let engine = PluginEngine::new().unwrap();
    let limits = Limits {
        call_timeout: Duration::from_secs(20),
        max_instances: 3,
        max_instances_per_key: 2,
        wait: Duration::from_millis(400),
        ..limits()
    };
    let bad = fixture_disk(&engine, "bad", "misbehaving_driver", limits);
    let as_key = |who: &str| stowage_runtime::types::RequestContext { authenticated_as: Some(who.into()), ..ctx(&bad) };
    let (a, b, c) = (as_key("key-a"), as_key("key-b"), as_key("key-c"));
    // Key a starts two endless calls: its whole share.
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (bad, a) = (bad.clone(), a.clone());
            tokio::spawn(async move { bad.stat(&a, &object_path("loop")).await })
        })
        .collect();
    while bad.calls_in_progress() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A third call of key a waits for its share, and is refused as busy once the wait is over.
    let started = Instant::now();
    let third = bad.exists(&a, &object_path("x")).await;
    let waited = started.elapsed();
    assert!(
        matches!(&third, Err(StorageError::Unavailable { retryable: true, reason }) if reason.contains("share")),
        "{third:?}"
    );
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_secs(5), "refused after {waited:?}");
    // Key b still gets the instance key a could not take.
    assert!(matches!(bad.exists(&b, &object_path("x")).await, Ok(false)));
    // With that one busy too, the disk is full: key c waits its bound and is told to retry.
    let b_loop = tokio::spawn({
        let (bad, b) = (bad.clone(), b.clone());
        async move { bad.stat(&b, &object_path("loop")).await }
    });
    while bad.calls_in_progress() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let full = bad.exists(&c, &object_path("x")).await;
    assert!(
        matches!(&full, Err(StorageError::Unavailable { retryable: true, reason }) if reason.contains("every instance")),
        "{full:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    for l in loops {
        l.abort();
    }
    b_loop.abort();
}
