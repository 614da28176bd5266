//! The lease rules of the upload sessions, on SQLite.

use super::*;

fn row(id: &str) -> SessionRow {
    SessionRow {
        id: id.into(),
        owner: "key-a".into(),
        name: "default".into(),
        path: "a/b.bin".into(),
        options: "{}".into(),
        tag: "up-x".into(),
        offset: 0,
        token: "t0".into(),
        digest: "d0".into(),
        version: 0,
        updated_ms: 1_000,
        committed: None,
        holder: None,
        taken: 0,
    }
}

fn held(t: Taken) -> SessionRow {
    match t {
        Taken::Held(r) => *r,
        other => panic!("not taken: {other:?}"),
    }
}

#[test]
fn one_request_holds_a_session_and_only_its_holder_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sessions::open(&dir.path().join("ledger.sqlite"), &LedgerOptions::default()).unwrap();
    assert!(sqlite_path(&dir.path().join("ledger.sqlite")).ends_with("ledger.sessions.sqlite"));
    s.insert(&row("r1")).unwrap();
    assert!(s.insert(&row("r1")).is_err(), "an id is unique");

    // Taken by A until 5 000: B is refused until then, and changes nothing.
    let a = held(s.take("r1", "A", 2_000, 5_000).unwrap());
    assert_eq!((a.taken, a.holder.as_deref()), (1, Some("A")));
    assert!(matches!(s.take("r1", "B", 3_000, 6_000).unwrap(), Taken::Busy));
    assert_eq!(s.advance("r1", "B", 9, "tb", "db", 3_000).unwrap(), None);
    assert!(!s.renew("r1", "B", 9_000).unwrap());
    assert!(!s.remove("r1", "B", 3_000).unwrap());
    assert!(!s.complete("r1", "B", 9, 3_000).unwrap());
    assert!(matches!(s.take("nope", "B", 3_000, 6_000).unwrap(), Taken::Missing));

    // A records and gives it back; B takes it and sees A's record.
    assert_eq!(s.advance("r1", "A", 10, "t1", "d1", 4_000).unwrap(), Some(1));
    let b = held(s.take("r1", "B", 4_500, 7_000).unwrap());
    assert_eq!((b.offset, b.token.as_str(), b.digest.as_str(), b.taken), (10, "t1", "d1", 2));

    // B's lease runs out: C takes it; B can no longer record.
    let c = held(s.take("r1", "C", 8_000, 11_000).unwrap());
    assert_eq!(c.taken, 3);
    assert_eq!(s.advance("r1", "B", 20, "tb", "db", 8_500).unwrap(), None);
    // A holder known to be gone is taken from at once.
    assert!(!s.take_from("r1", "B", "D", 20_000).unwrap(), "only from the holder named");
    assert!(s.take_from("r1", "C", "D", 20_000).unwrap());
    assert_eq!(s.get("r1").unwrap().unwrap().taken, 4);

    // Committed: kept for its client, never taken again, not counted as open.
    assert_eq!(s.count_open("key-a").unwrap(), 1);
    assert!(s.complete("r1", "D", 10, 9_000).unwrap());
    assert!(matches!(s.take("r1", "E", 30_000, 40_000).unwrap(), Taken::Missing));
    assert_eq!(s.get("r1").unwrap().unwrap().committed, Some(10));
    assert_eq!(s.count_open("").unwrap(), 0);

    // Idle ones, oldest first (the committed one too: it is forgotten); one held (its lease
    // running) is not idle.
    s.insert(&SessionRow { updated_ms: 500, ..row("r2") }).unwrap();
    s.insert(&SessionRow { updated_ms: 700, ..row("r3") }).unwrap();
    held(s.take("r3", "F", 50_000, 90_000).unwrap());
    let idle: Vec<String> = s.idle(10_000, 60_000).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(idle, ["r2", "r1"]);
    assert!(s.remove("r2", "anyone", 60_000).unwrap());
    assert!(!s.remove("r3", "anyone", 60_000).unwrap(), "a held session is not removed by another");
    assert!(s.remove("r3", "anyone", 95_000).unwrap(), "once its lease ran out, it is");

    // The sweep asks whether a temp object is a live session's.
    s.insert(&SessionRow { token: "lfs1 up-ab.0123456789abcdef 42".into(), ..row("r4") }).unwrap();
    assert!(s.names_temp("up-ab.0123456789abcdef").unwrap());
    assert!(!s.names_temp("up-cd.0123456789abcdef").unwrap());
    assert!(!s.names_temp("").unwrap());
    held(s.take("r4", "G", 100_000, 200_000).unwrap());
    assert!(s.complete("r4", "G", 42, 100_000).unwrap());
    assert!(!s.names_temp("up-ab.0123456789abcdef").unwrap(), "a committed session keeps no temp object");
}
