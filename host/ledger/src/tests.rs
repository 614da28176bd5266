//! The ledger end to end: appends, verification, tampering, checkpoints.

use super::*;
use crate::verify::tests::record;
use rusqlite::Connection;

fn scratch(action: &str, path: &str) -> Record {
    Record {
        class: Some("scratch".into()),
        cleanup_required: action == "work_copy_created",
        cleanup_within_secs: Some(0),
        ..record(action, path)
    }
}

#[test]
fn overdue_copies_clear_on_delete_and_a_removed_tail_is_refused_as_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite"), LedgerOptions::default()).unwrap();
    assert_eq!(l.append_blocking(&scratch("work_copy_created", "a")).unwrap(), 0);
    assert_eq!(l.append_blocking(&scratch("work_copy_created", "b")).unwrap(), 1);
    assert_eq!(l.append_blocking(&scratch("work_copy_deleted", "a")).unwrap(), 2);
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 3);
    let overdue = l.overdue(now_ms() + 1).unwrap();
    assert_eq!(overdue.iter().map(|(e, _)| e.record.path.as_str()).collect::<Vec<_>>(), vec!["b"]);
    // Removing the tail and appending again must not paper over the gap.
    Connection::open(dir.path().join("l.sqlite")).unwrap().execute("DELETE FROM records WHERE idx = 2", []).unwrap();
    let e = l.append_blocking(&scratch("file_created", "c")).unwrap_err();
    assert!(e.to_string().contains("the ledger's last record changed while the host was running"), "{e}");
    assert!(l.health().unwrap_err().contains("last record changed"));
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap_err().index, 2);
    std::fs::write(dir.path().join("l.sqlite.head"), "").unwrap();
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap_err().reason, "the ledger's head file is missing or damaged");
}

#[test]
fn concurrent_appends_share_commits_and_chain_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let l = std::sync::Arc::new(Ledger::open(&path, LedgerOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut indexes: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..256)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(async move { l.append(&record("file_created", &format!("f{i}"))).await.unwrap() })
            })
            .collect();
        futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect()
    });
    indexes.sort_unstable();
    assert_eq!(indexes, (0..256).collect::<Vec<_>>());
    // 256 appends in flight at once: far fewer transactions than appends.
    assert!(l.commits() < 128, "{} commits for 256 concurrent appends", l.commits());
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 256);
    drop(l);
    // Reopened, it chains on where it stopped.
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    assert_eq!(l.append_blocking(&record("file_deleted", "f0")).unwrap(), 256);
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 257);
}

#[test]
fn two_processes_appending_to_one_ledger_keep_one_chain_and_one_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let (a, b) = (
        Ledger::open(&path, LedgerOptions::default()).unwrap(),
        Ledger::open(&path, LedgerOptions::default()).unwrap(),
    );
    for i in 0..6 {
        let l = if i % 2 == 0 { &a } else { &b };
        assert_eq!(l.append_blocking(&record("file_created", &format!("f{i}"))).unwrap(), i);
    }
    assert_eq!(a.verify(VerifyMode::Full).unwrap().unwrap().count, 6);
    // A removed tail is still refused, whoever appended it.
    Connection::open(&path).unwrap().execute("DELETE FROM records WHERE idx = 5", []).unwrap();
    assert!(matches!(b.append_blocking(&record("file_created", "g")), Err(LedgerError::Append(_))));
    assert!(matches!(a.append_blocking(&record("file_created", "g")), Err(LedgerError::Append(_))));
}

#[test]
fn a_ledger_cut_short_while_closed_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    for p in ["a", "b", "c"] {
        l.append_blocking(&record("file_created", p)).unwrap();
    }
    drop(l);
    Connection::open(&path).unwrap().execute("DELETE FROM records WHERE idx = 2", []).unwrap();
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    let e = l.append_blocking(&record("file_created", "d")).unwrap_err();
    assert!(e.to_string().contains("does not match its head"), "{e}");
    assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap_err().index, 2);
}

#[test]
fn the_old_one_line_head_is_refused_once_the_ledger_has_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let old_head = |l: &Ledger| {
        let (count, hash) = l.conn().unwrap().tip().unwrap().unwrap();
        std::fs::write(dir.path().join("l.sqlite.head"), format!("{count} {hash}\n")).unwrap();
    };
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    l.append_blocking(&record("file_created", "a")).unwrap();
    old_head(&l);
    assert!(l.verify(VerifyMode::Full).unwrap().is_ok(), "accepted while there is no checkpoint");
    drop(l);
    let l = Ledger::open(&path, crate::verify::tests::with_checkpoints(dir.path(), 1000)).unwrap();
    l.checkpoint_now().unwrap();
    old_head(&l);
    let b = l.verify(VerifyMode::Full).unwrap().unwrap_err();
    assert!(b.reason.contains("old one-line format"), "{b}");
    assert!(l.append_blocking(&record("file_created", "b")).is_err(), "and appends are refused");
}

#[test]
fn intents_stay_open_until_an_outcome_settles_them() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite"), LedgerOptions::default()).unwrap();
    let intent = Intent {
        op: Effect::Put,
        disk: "local".into(),
        path: "a".into(),
        size: Some(3),
        sha256: Some("ab".into()),
        owner: "o-1".into(),
    };
    let i = l.append_blocking(&Record { intent: Some(intent.clone()), ..record("file_created", "a") }).unwrap();
    assert_eq!(l.open_intents().unwrap().iter().map(|e| e.index).collect::<Vec<_>>(), vec![i]);
    l.append_nowait(&Record { settles: vec![i], ..record(Effect::Put.outcome_action(true), "a") });
    l.append_blocking(&record("file_accessed", "a")).unwrap();
    assert!(l.open_intents().unwrap().is_empty());
}

#[test]
fn records_nobody_waits_for_ride_on_the_next_commit_and_are_never_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite"), LedgerOptions::default()).unwrap();
    l.append_blocking(&record("file_created", "first")).unwrap();
    // An outcome queued without waiting, then a record someone waits for: one commit for both
    // (a few tries: a test thread preempted past the linger would see two).
    let shared = (0..5).any(|i| {
        let before = l.commits();
        l.append_nowait(&record("file_created_outcome", &format!("a{i}")));
        // Long enough for a committer that does not linger to commit it alone.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let waited = l.append_blocking(&record("file_accessed", &format!("b{i}"))).unwrap();
        assert_eq!(l.entry(waited - 1).unwrap().unwrap().record.path, format!("a{i}"), "the queued record comes first");
        l.commits() - before == 1
    });
    assert!(shared, "the queued record never shared the waited one's commit");
    // Alone, it is committed after the short linger.
    let next = l.len().unwrap();
    l.append_nowait(&record("file_created_outcome", "c"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while l.entry(next).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "a record nobody waits for must still be committed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // And one queued just before the ledger closes is committed by the close.
    l.append_nowait(&record("file_created_outcome", "d"));
    let path = l.path().to_path_buf();
    drop(l);
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    assert_eq!(l.entry(next + 1).unwrap().unwrap().record.path, "d");
}
