//! A ledger rewritten by someone who can write its directory: a consistent rewrite passes a
//! plain verify but not a checkpoint saved elsewhere; a same-length rewrite is caught and named
//! by the checkpoints around it.

use std::path::Path;

use crate::audit::audited_dir;
use crate::{run_in, stderr, stdout};

/// What someone who can write the ledger's directory can do: rewrite its rows with `edit`
/// (kept rows keep their times), then recompute the hash chain, the stored Merkle tree and the
/// head so that everything on the host agrees again, and remove the local checkpoints.
fn forge(ledger: &Path, edit: impl FnOnce(&mut Vec<(i64, String)>)) {
    use sha2::{Digest, Sha256};
    use stowage_runtime::ledger::merkle::{Frontier, leaf_data, leaf_hash};
    let db = rusqlite::Connection::open(ledger.join("ledger.sqlite")).unwrap();
    let mut rows: Vec<(i64, String)> = db
        .prepare("SELECT at_ms, body FROM records ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    edit(&mut rows);
    db.execute_batch("DELETE FROM records; DELETE FROM merkle;").unwrap();
    let mut prev = "0".repeat(64);
    let mut frontier = Frontier::default();
    for (i, (at_ms, body)) in rows.iter().enumerate() {
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update((i as u64).to_be_bytes());
        h.update((*at_ms as u64).to_be_bytes());
        h.update(body.as_bytes());
        let hash = hex::encode(h.finalize());
        db.execute(
            "INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![i as i64, at_ms, body, prev, hash],
        )
        .unwrap();
        frontier.push(leaf_hash(&leaf_data(i as u64, *at_ms as u64, body)), |level, index, node| {
            db.execute(
                "INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)",
                rusqlite::params![level, index as i64, &node[..]],
            )
            .unwrap();
        });
        prev = hash;
    }
    drop(db);
    // The head file's documented format: two checksummed slots.
    let line = |count: usize| {
        let text = format!("stowage-ledger-head/1 {count} {prev}");
        let check = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        let mut slot = format!("{text} {check}\n").into_bytes();
        slot.resize(160, b' ');
        slot
    };
    let mut head = vec![b' '; 4096 + 160];
    head[..160].copy_from_slice(&line(rows.len()));
    head[4096..].copy_from_slice(&line(rows.len()));
    std::fs::write(ledger.join("ledger.sqlite.head"), head).unwrap();
    let _ = std::fs::remove_file(ledger.join("ledger.sqlite.checkpoints"));
}

#[test]
fn a_consistent_rewrite_passes_plain_verify_but_not_a_checkpoint_saved_elsewhere() {
    let dir = audited_dir("ledger", "");
    let d = dir.path();
    for i in 0..6 {
        let o = run_in(d, &["--actor", &format!("user{i}"), "put", &format!("default:f{i}.csv"), "kept.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // An auditor keeps the checkpoint and the host's public key off the host.
    let o = run_in(d, &["ledger", "checkpoint", "--now"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let saved = tempfile::tempdir().unwrap();
    std::fs::write(saved.path().join("checkpoint.txt"), &o.stdout).unwrap();
    std::fs::copy(d.join("ledger/ledger.sqlite.key.pub"), saved.path().join("host.pub")).unwrap();
    let o = run_in(d, &["ledger", "prove", "4"]);
    std::fs::write(saved.path().join("record4.proof"), &o.stdout).unwrap();
    let against = |d: &Path| {
        run_in(
            d,
            &[
                "ledger",
                "verify",
                "--against",
                saved.path().join("checkpoint.txt").to_str().unwrap(),
                "--trust",
                saved.path().join("host.pub").to_str().unwrap(),
            ],
        )
    };
    let o = against(d);
    assert!(
        o.status.success() && stdout(&o).contains("extends the checkpoints of size 12"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Someone who can write the ledger's directory removes records 2 and 3 (user1's write) and
    // makes everything on the host agree again.
    forge(&d.join("ledger"), |rows| {
        rows.drain(2..4);
    });
    let o = run_in(d, &["ledger", "verify"]);
    assert!(o.status.success(), "the rewrite is consistent: plain verify passes: {}", stderr(&o));
    let o = run_in(d, &["ledger", "verify", "--full"]);
    assert!(o.status.success(), "the rewrite is consistent: plain verify passes: {}", stderr(&o));
    let o = against(d);
    assert_eq!(o.status.code(), Some(9), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ledger broken at index 0:")
            && err.contains("holds 10 records but the checkpoint of size 12 covers 12"),
        "{err}"
    );

    // The proof saved with the checkpoint still checks offline, and fails once edited.
    let check =
        |proof: &Path| run_in(saved.path(), &["ledger", "check-proof", proof.to_str().unwrap(), "--trust", "host.pub"]);
    let o = check(&saved.path().join("record4.proof"));
    assert!(
        o.status.success() && stdout(&o).contains("file_created local:f2.csv actor=user2"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let proof = std::fs::read_to_string(saved.path().join("record4.proof")).unwrap();
    std::fs::write(saved.path().join("edited.proof"), proof.replace("user2", "user9")).unwrap();
    let o = check(&saved.path().join("edited.proof"));
    assert_eq!(o.status.code(), Some(9), "an edited record must not check: {}", stdout(&o));
    assert!(stderr(&o).contains("the record or its proof was changed"), "{}", stderr(&o));
}

#[test]
fn a_rewrite_that_keeps_the_length_is_caught_and_named_by_the_checkpoints_around_it() {
    let dir = audited_dir("ledger", "checkpoint_every = 4\n");
    let d = dir.path();
    for i in 0..6 {
        let o = run_in(d, &["--actor", &format!("user{i}"), "put", &format!("default:f{i}.csv"), "kept.csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let checkpoints = std::fs::read_to_string(d.join("ledger/ledger.sqlite.checkpoints")).unwrap();
    let saved = tempfile::tempdir().unwrap();
    std::fs::write(saved.path().join("checkpoints.txt"), &checkpoints).unwrap();
    std::fs::copy(d.join("ledger/ledger.sqlite.key.pub"), saved.path().join("host.pub")).unwrap();
    // Record 5 (user2's outcome) rewritten to name someone else, everything recomputed.
    forge(&d.join("ledger"), |rows| {
        rows[5].1 = rows[5].1.replace("user2", "mallory");
    });
    assert!(run_in(d, &["ledger", "verify", "--full"]).status.success());
    let o = run_in(
        d,
        &[
            "ledger",
            "verify",
            "--against",
            saved.path().join("checkpoints.txt").to_str().unwrap(),
            "--trust",
            saved.path().join("host.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(9), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("ledger broken at index 4:") && err.contains("a record in 4..7 was changed"), "{err}");
}
