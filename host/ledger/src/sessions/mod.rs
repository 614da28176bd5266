//! Upload sessions that outlive a host: each session's state (whose it is, where it writes,
//! the offset it reached and the driver's token to resume it there) kept in the ledger's
//! database, so any host that shares it continues any session, and a restart loses none.
//!
//! - PostgreSQL (`[ledger] url`): table `stowage_upload_sessions`, shared by every host.
//! - SQLite: a file of its own next to the ledger (`<ledger>.sessions.sqlite`), for one host.
//!
//! One request at a time works on a session: it *takes* the session (a lease naming the holder
//! until a time, renewed while the request streams), and gives it back when it records the new
//! offset. A holder that dies leaves a lease that runs out, after which any host takes it.
//! Every change but the first insert names its holder, so once another request has taken the
//! session, one whose lease ran out changes nothing in the database (what it wrote to storage
//! meanwhile is dropped when the write resumes from the recorded token).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::postgres::{Driver, Postgres, Queries as _, Target};
use crate::{Ledger, LedgerError, LedgerOptions};

/// One upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session's id (in its URL).
    pub id: String,
    /// The API key that opened it: to any other it does not exist.
    pub owner: String,
    /// The storage name it writes to.
    pub name: String,
    /// The object path it writes.
    pub path: String,
    /// The write's options and the client's expectations, as the server encodes them.
    pub options: String,
    /// The owner tag its temp objects carry.
    pub tag: String,
    /// Bytes taken so far.
    pub offset: u64,
    /// The driver's token for the write as it stood at `offset`.
    pub token: String,
    /// The host's digest state at `offset`.
    pub digest: String,
    /// Counts changes.
    pub version: i64,
    /// Counts the requests that took the session: a host that kept the session's writer open
    /// since its own request reuses it only if no request took the session in between.
    pub taken: i64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_ms: i64,
    /// The request holding it now, if any (its lease may have run out).
    pub holder: Option<String>,
    /// Once committed: the object's size (the session is kept a while so a client that lost
    /// the answer learns its upload is whole).
    pub committed: Option<u64>,
}

/// What taking a session found.
#[derive(Debug)]
pub enum Taken {
    /// Taken: the session as it stands.
    Held(Box<SessionRow>),
    /// Another request holds it.
    Busy,
    /// There is no such session.
    Missing,
}

enum Backend {
    Sqlite(Connection),
    Postgres { db: Box<Postgres>, ready: bool },
}

/// The upload sessions of the ledger's database.
pub struct Sessions {
    backend: Mutex<Backend>,
}

impl Ledger {
    /// The upload sessions kept beside this ledger: in its PostgreSQL database, shared by
    /// every host, or in an SQLite file next to it.
    pub fn sessions(&self) -> Result<Sessions, LedgerError> {
        let options = LedgerOptions {
            database: self.database.clone(),
            lock_timeout: self.lock_timeout,
            ..LedgerOptions::default()
        };
        Sessions::open(&self.path, &options)
    }
}

/// Where the sessions of an SQLite ledger at `ledger` live.
pub fn sqlite_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_stem().map(|s| s.to_os_string()).unwrap_or_default();
    name.push(".sessions.sqlite");
    ledger.with_file_name(name)
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        path: r.get(3)?,
        options: r.get(4)?,
        tag: r.get(5)?,
        offset: u(r.get(6)?),
        token: r.get(7)?,
        digest: r.get(8)?,
        version: r.get(9)?,
        updated_ms: r.get(10)?,
        committed: r.get::<_, Option<i64>>(11)?.map(u),
        holder: r.get(12)?,
        taken: r.get(13)?,
    })
}

fn from_pg(r: &tokio_postgres::Row) -> SessionRow {
    SessionRow {
        id: r.get(0),
        owner: r.get(1),
        name: r.get(2),
        path: r.get(3),
        options: r.get(4),
        tag: r.get(5),
        offset: u(r.get(6)),
        token: r.get(7),
        digest: r.get(8),
        version: r.get(9),
        updated_ms: r.get(10),
        committed: r.get::<_, Option<i64>>(11).map(u),
        holder: r.get(12),
        taken: r.get(13),
    }
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS upload_sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    options TEXT NOT NULL, tag TEXT NOT NULL, off INTEGER NOT NULL, token TEXT NOT NULL,
    digest TEXT NOT NULL, version INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    committed INTEGER, holder TEXT, held_until_ms INTEGER NOT NULL DEFAULT 0,
    taken INTEGER NOT NULL DEFAULT 0)";

/// Made under an advisory lock, so hosts starting together make it once.
const PG_SCHEMA: &str = "BEGIN;
SELECT pg_advisory_xact_lock(7526747962536736371);
CREATE TABLE IF NOT EXISTS stowage_upload_sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    options TEXT NOT NULL, tag TEXT NOT NULL, off BIGINT NOT NULL, token TEXT NOT NULL,
    digest TEXT NOT NULL, version BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
    committed BIGINT, holder TEXT, held_until_ms BIGINT NOT NULL DEFAULT 0,
    taken BIGINT NOT NULL DEFAULT 0);
COMMIT;";

/// One statement, in each backend's words.
struct Sql {
    sqlite: &'static str,
    pg: &'static str,
}

const INSERT: Sql = Sql {
    sqlite: "INSERT INTO upload_sessions (id, owner, name, path, options, tag, off, token, digest, version, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    pg: "INSERT INTO stowage_upload_sessions (id, owner, name, path, options, tag, off, token, digest, version, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
};
const GET: Sql = Sql {
    sqlite:
        "SELECT id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken
             FROM upload_sessions WHERE id = ?1",
    pg: "SELECT id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken
         FROM stowage_upload_sessions WHERE id = $1",
};
const TAKE: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET holder = ?2, held_until_ms = ?4, taken = taken + 1
             WHERE id = ?1 AND committed IS NULL AND (holder IS NULL OR held_until_ms < ?3)
             RETURNING id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken",
    pg: "UPDATE stowage_upload_sessions SET holder = $2, held_until_ms = $4, taken = taken + 1
         WHERE id = $1 AND committed IS NULL AND (holder IS NULL OR held_until_ms < $3)
         RETURNING id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken",
};
const TAKE_FROM: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET holder = ?3, held_until_ms = ?4, taken = taken + 1
             WHERE id = ?1 AND holder = ?2 AND committed IS NULL",
    pg: "UPDATE stowage_upload_sessions SET holder = $3, held_until_ms = $4, taken = taken + 1
         WHERE id = $1 AND holder = $2 AND committed IS NULL",
};
const RENEW: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET held_until_ms = ?3 WHERE id = ?1 AND holder = ?2",
    pg: "UPDATE stowage_upload_sessions SET held_until_ms = $3 WHERE id = $1 AND holder = $2",
};
const ADVANCE: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET off = ?3, token = ?4, digest = ?5, version = version + 1, updated_ms = ?6,
             holder = NULL, held_until_ms = 0 WHERE id = ?1 AND holder = ?2 RETURNING version",
    pg: "UPDATE stowage_upload_sessions SET off = $3, token = $4, digest = $5, version = version + 1, updated_ms = $6,
         holder = NULL, held_until_ms = 0 WHERE id = $1 AND holder = $2 RETURNING version",
};
const RELEASE: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET holder = NULL, held_until_ms = 0 WHERE id = ?1 AND holder = ?2",
    pg: "UPDATE stowage_upload_sessions SET holder = NULL, held_until_ms = 0 WHERE id = $1 AND holder = $2",
};
const COMPLETE: Sql = Sql {
    sqlite: "UPDATE upload_sessions SET committed = ?3, off = ?3, token = '', digest = '', version = version + 1,
             updated_ms = ?4, holder = NULL, held_until_ms = 0 WHERE id = ?1 AND holder = ?2",
    pg: "UPDATE stowage_upload_sessions SET committed = $3, off = $3, token = '', digest = '', version = version + 1,
         updated_ms = $4, holder = NULL, held_until_ms = 0 WHERE id = $1 AND holder = $2",
};
const REMOVE: Sql = Sql {
    sqlite: "DELETE FROM upload_sessions WHERE id = ?1 AND (holder IS NULL OR holder = ?2 OR held_until_ms < ?3)",
    pg: "DELETE FROM stowage_upload_sessions WHERE id = $1 AND (holder IS NULL OR holder = $2 OR held_until_ms < $3)",
};
const COUNT: Sql = Sql {
    sqlite: "SELECT count(*) FROM upload_sessions WHERE committed IS NULL AND (?1 = '' OR owner = ?1)",
    pg: "SELECT count(*) FROM stowage_upload_sessions WHERE committed IS NULL AND ($1 = '' OR owner = $1)",
};
const NAMES: Sql = Sql {
    sqlite: "SELECT count(*) FROM upload_sessions WHERE committed IS NULL AND instr(token, ?1) > 0",
    pg: "SELECT count(*) FROM stowage_upload_sessions WHERE committed IS NULL AND strpos(token, $1) > 0",
};
const IDLE: Sql = Sql {
    sqlite:
        "SELECT id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken
             FROM upload_sessions WHERE updated_ms < ?1 AND (holder IS NULL OR held_until_ms < ?2)
             ORDER BY updated_ms LIMIT 100",
    pg: "SELECT id, owner, name, path, options, tag, off, token, digest, version, updated_ms, committed, holder, taken
         FROM stowage_upload_sessions WHERE updated_ms < $1 AND (holder IS NULL OR held_until_ms < $2)
         ORDER BY updated_ms LIMIT 100",
};

impl Sessions {
    /// The sessions of the ledger at `ledger` with `options`: in its PostgreSQL database when
    /// it has one (connected on first use, so a host started while it is down serves
    /// sessions once it answers), else in an SQLite file beside it.
    pub fn open(ledger: &Path, options: &LedgerOptions) -> Result<Sessions, LedgerError> {
        let backend = match &options.database {
            Some(pg) => {
                let target = Target::new(&pg.url, pg.ca_file.as_deref(), options.lock_timeout)?;
                Backend::Postgres { db: Box::new(Postgres::new(&target, Driver::Worker)?), ready: false }
            }
            None => {
                let conn = crate::store::sqlite::connect(&sqlite_path(ledger), options.lock_timeout)?;
                conn.execute_batch(SQLITE_SCHEMA)?;
                Backend::Sqlite(conn)
            }
        };
        Ok(Sessions { backend: Mutex::new(backend) })
    }

    /// Runs `sqlite` or `pg` on the backend (connecting and making the table first if needed).
    fn with<T>(
        &self,
        sqlite: impl FnOnce(&Connection) -> Result<T, LedgerError>,
        pg: impl FnOnce(&Postgres) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let mut backend = self.backend.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *backend {
            Backend::Sqlite(conn) => sqlite(conn),
            Backend::Postgres { db, ready } => {
                use crate::store::Db as _;
                db.reconnect().inspect_err(|_| *ready = false)?;
                if !*ready {
                    db.batch(PG_SCHEMA)?;
                    *ready = true;
                }
                let result = pg(db);
                if result.is_err() {
                    // The connection may be gone: the next call connects again.
                    *ready = false;
                }
                result
            }
        }
    }

    /// Adds a new session.
    pub fn insert(&self, r: &SessionRow) -> Result<(), LedgerError> {
        let (offset, version, updated) = (i(r.offset), r.version, r.updated_ms);
        self.with(
            |c| {
                c.execute(
                    INSERT.sqlite,
                    params![
                        r.id, r.owner, r.name, r.path, r.options, r.tag, offset, r.token, r.digest, version, updated
                    ],
                )?;
                Ok(())
            },
            |db| {
                db.query(
                    INSERT.pg,
                    &[
                        &r.id, &r.owner, &r.name, &r.path, &r.options, &r.tag, &offset, &r.token, &r.digest, &version,
                        &updated,
                    ],
                )?;
                Ok(())
            },
        )
    }

    /// The session `id`, if there is one.
    pub fn get(&self, id: &str) -> Result<Option<SessionRow>, LedgerError> {
        self.with(
            |c| Ok(c.query_row(GET.sqlite, params![id], from_sqlite).optional()?),
            |db| Ok(db.query(GET.pg, &[&id])?.first().map(from_pg)),
        )
    }

    /// Takes the session `id` for `holder` until `until_ms`, unless another holds it (a lease
    /// that ran out before `now_ms` is no one's). A committed session is not taken.
    pub fn take(&self, id: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<Taken, LedgerError> {
        let held = self.with(
            |c| Ok(c.query_row(TAKE.sqlite, params![id, holder, now_ms, until_ms], from_sqlite).optional()?),
            |db| Ok(db.query(TAKE.pg, &[&id, &holder, &now_ms, &until_ms])?.first().map(from_pg)),
        )?;
        match held {
            Some(row) => Ok(Taken::Held(Box::new(row))),
            None => Ok(if self.get(id)?.is_some_and(|r| r.committed.is_none()) { Taken::Busy } else { Taken::Missing }),
        }
    }

    /// Takes the session `id` from `dead` (a holder known to be gone: a process of this machine
    /// that is no more) for `holder` until `until_ms`; whether it did.
    pub fn take_from(&self, id: &str, dead: &str, holder: &str, until_ms: i64) -> Result<bool, LedgerError> {
        self.with(
            |c| Ok(c.execute(TAKE_FROM.sqlite, params![id, dead, holder, until_ms])? == 1),
            |db| Ok(db.query_count(TAKE_FROM.pg, &[&id, &dead, &holder, &until_ms])? == 1),
        )
    }

    /// Extends `holder`'s lease; whether it still held it.
    pub fn renew(&self, id: &str, holder: &str, until_ms: i64) -> Result<bool, LedgerError> {
        self.with(
            |c| Ok(c.execute(RENEW.sqlite, params![id, holder, until_ms])? == 1),
            |db| Ok(db.query_count(RENEW.pg, &[&id, &holder, &until_ms])? == 1),
        )
    }

    /// Records where `holder`'s request left the session and gives it back: the new version,
    /// or none if the lease was lost (another host may have taken the session).
    pub fn advance(
        &self,
        id: &str,
        holder: &str,
        offset: u64,
        token: &str,
        digest: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, LedgerError> {
        let offset = i(offset);
        self.with(
            |c| {
                Ok(c.query_row(ADVANCE.sqlite, params![id, holder, offset, token, digest, now_ms], |r| r.get(0))
                    .optional()?)
            },
            |db| {
                Ok(db.query(ADVANCE.pg, &[&id, &holder, &offset, &token, &digest, &now_ms])?.first().map(|r| r.get(0)))
            },
        )
    }

    /// Gives the session back unchanged.
    pub fn release(&self, id: &str, holder: &str) -> Result<(), LedgerError> {
        self.with(
            |c| Ok(c.execute(RELEASE.sqlite, params![id, holder]).map(|_| ())?),
            |db| db.query_count(RELEASE.pg, &[&id, &holder]).map(|_| ()),
        )
    }

    /// Records that `holder` committed the session's object (`length` bytes); whether it
    /// still held it.
    pub fn complete(&self, id: &str, holder: &str, length: u64, now_ms: i64) -> Result<bool, LedgerError> {
        let length = i(length);
        self.with(
            |c| Ok(c.execute(COMPLETE.sqlite, params![id, holder, length, now_ms])? == 1),
            |db| Ok(db.query_count(COMPLETE.pg, &[&id, &holder, &length, &now_ms])? == 1),
        )
    }

    /// Forgets the session, unless another request holds it.
    pub fn remove(&self, id: &str, holder: &str, now_ms: i64) -> Result<bool, LedgerError> {
        self.with(
            |c| Ok(c.execute(REMOVE.sqlite, params![id, holder, now_ms])? == 1),
            |db| Ok(db.query_count(REMOVE.pg, &[&id, &holder, &now_ms])? == 1),
        )
    }

    /// Sessions open (not committed): of `owner`, or of everyone with `""`.
    pub fn count_open(&self, owner: &str) -> Result<u64, LedgerError> {
        self.with(
            |c| Ok(u(c.query_row(COUNT.sqlite, params![owner], |r| r.get(0))?)),
            |db| Ok(db.query(COUNT.pg, &[&owner])?.first().map_or(0, |r| u(r.get(0)))),
        )
    }

    /// Whether an open session's token names the temporary object `temp_id` (as the driver's
    /// `list-temps` reports it): a token names every temporary object its write keeps, so the
    /// orphan sweep leaves a live session's alone however old they are.
    pub fn names_temp(&self, temp_id: &str) -> Result<bool, LedgerError> {
        if temp_id.is_empty() {
            return Ok(false);
        }
        self.with(
            |c| Ok(c.query_row(NAMES.sqlite, params![temp_id], |r| r.get::<_, i64>(0))? > 0),
            |db| Ok(db.query(NAMES.pg, &[&temp_id])?.first().is_some_and(|r| r.get::<_, i64>(0) > 0)),
        )
    }

    /// Up to 100 sessions unchanged since `before_ms` that no one holds at `now_ms` (open ones
    /// to discard, committed ones to forget).
    pub fn idle(&self, before_ms: i64, now_ms: i64) -> Result<Vec<SessionRow>, LedgerError> {
        self.with(
            |c| {
                let mut stmt = c.prepare(IDLE.sqlite)?;
                let rows = stmt.query_map(params![before_ms, now_ms], from_sqlite)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            },
            |db| Ok(db.query(IDLE.pg, &[&before_ms, &now_ms])?.iter().map(from_pg).collect()),
        )
    }
}

#[cfg(test)]
mod tests;
