//! Mirrored disks: `[disks.archive] mirror = ["nas-a", "nas-b"]`. A mirror is a [`Disk`] whose
//! calls go to other disks (its *members*, each served by a driver), so everything above the
//! disk (policies, uploads, fallbacks, fsck, the conformance suite) uses it unchanged.
//!
//! - **Writes** go to every member at once, measured once by the host (size, sha256, and the
//!   sha256 of each 1 MiB block), and succeed once `write_quorum` members committed them.
//!   Every copy carries the write's *version* (`stowage-mirror-version`: the host's clock in
//!   ms, then the request id), so a member that missed a write is seen to be behind. A member
//!   that missed it is *marked* (below) for the repairer.
//! - **Block digests** of an object over one block are kept beside it on each member, at
//!   `stowage-blocks/<path>` (`blocks.rs`); one of one block or less is its own sha256.
//! - **Reads** ask every member for the object, take the newest version, and stream it from the
//!   first member that has it, checking each block against its digest before a byte of it goes
//!   out. A block that does not match, or a member that fails, and the read goes on from the
//!   next member at that block, without the client noticing; the bad copy is marked.
//! - **Marks** are small objects at `stowage-mirror/<member>/<path>` on the members that hold
//!   the good copy, saying the member needs `put` (a copy of the newest version) or `delete`.
//!   The repairer (`repair.rs`, in `serve` and `stowage sync`) works through them: it copies
//!   from a good member, verified, records `mirror_repaired`, and removes the marks.
//! - **Deletes** go to every member and succeed on the quorum; a member that missed one is
//!   marked `delete`, and a read that finds it still holding the object sees the mark.
//!
//! `stowage-mirror/` and `stowage-blocks/` are the mirror's own: not listed, and refused as
//! paths through the mirror's address.

mod blocks;
mod reader;
mod repair;
mod writer;

use std::sync::Arc;

use futures::future::join_all;
use stowage_path::ObjectPath;

pub use reader::MirrorReader;
pub use repair::RepairReport;
pub use writer::MirrorWriter;

use crate::driver::Disk;
use crate::error::StorageError;
use crate::types::{Capabilities, ListPage, ObjectInfo, RequestContext, WriteOptions};

/// The metadata key holding a copy's version.
pub const VERSION: &str = "stowage-mirror-version";
/// The metadata key holding what a mark asks (`put` or `delete`).
const OP: &str = "stowage-mirror-op";
/// Where marks live on a member: `stowage-mirror/<member>/<path>`.
const MARKS: &str = "stowage-mirror";
/// Where block digests live on a member: `stowage-blocks/<path>`.
const BLOCKS: &str = "stowage-blocks";

/// Whether `path` is one of a mirror's own objects (marks, block digests).
pub(crate) fn reserved(path: &str) -> bool {
    [MARKS, BLOCKS].iter().any(|root| path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/')))
}

/// A mirrored disk: its members, in read order, and its write quorum.
pub struct Mirror {
    name: String,
    members: Vec<Disk>,
    quorum: usize,
}

/// What the members say about one path.
pub(crate) struct Survey {
    /// The newest version's info (as the first member holding it reports it, version
    /// removed), when some member holds the path and it is not deleted.
    pub newest: Option<ObjectInfo>,
    /// The version of `newest`.
    pub version: String,
    /// The members holding the newest version, in read order.
    pub holders: Vec<usize>,
    /// The members that answered and hold an older version or nothing (or, when the path is
    /// deleted, still hold it).
    pub behind: Vec<usize>,
}

impl Mirror {
    /// Disk `name` over `members` (disks served by drivers), a write succeeding once
    /// `quorum` of them hold it.
    pub(crate) fn new(name: &str, members: Vec<Disk>, quorum: usize) -> Result<Mirror, StorageError> {
        if members.len() < 2 || quorum == 0 || quorum > members.len() {
            return Err(StorageError::Unsupported(format!(
                "mirror `{name}`: {} disks with a write quorum of {quorum}; a mirror needs two or more, and a quorum between 1 and their number",
                members.len()
            )));
        }
        if let Some(m) = members.iter().find(|m| m.as_mirror().is_some()) {
            return Err(StorageError::Unsupported(format!(
                "mirror `{name}`: `{}` is a mirror itself; mirrors do not nest",
                m.name()
            )));
        }
        Ok(Mirror { name: name.to_string(), members, quorum })
    }

    /// The mirrored disk's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its members, in read order.
    pub fn members(&self) -> &[Disk] {
        &self.members
    }

    /// How many members must hold a write.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The context member `i` sees for a call made through the mirror with `ctx`.
    fn member_ctx(&self, ctx: &RequestContext, i: usize) -> RequestContext {
        let m = &self.members[i];
        RequestContext { disk: m.name().to_string(), driver: m.driver_name().to_string(), ..ctx.clone() }
    }

    /// What every member supports (the host signs a mirror's URLs: a member's own would skip
    /// the checks).
    pub(crate) async fn capabilities(&self) -> Result<Capabilities, StorageError> {
        let all = join_all(self.members.iter().map(|m| Box::pin(m.capabilities()))).await;
        let mut caps = Capabilities {
            range_reads: true,
            presign: false,
            create_only: true,
            user_metadata: true,
            list_pagination: true,
        };
        for c in all {
            let c = c?;
            caps.range_reads &= c.range_reads;
            caps.create_only &= c.create_only;
            caps.user_metadata &= c.user_metadata;
            caps.list_pagination &= c.list_pagination;
        }
        Ok(caps)
    }

    /// Asks every member about `path` at once and settles what is true: the newest version
    /// wins, unless a member that no longer holds the path carries a `delete` mark newer than
    /// it. Fails only if no member could answer (with the first member's error).
    pub(crate) async fn survey(&self, ctx: &RequestContext, path: &str) -> Result<Survey, StorageError> {
        let answers = join_all((0..self.members.len()).map(|i| {
            let mctx = self.member_ctx(ctx, i);
            async move { self.members[i].unchecked().stat(&mctx, path).await }
        }))
        .await;
        let mut newest: Option<(String, usize)> = None;
        let mut missing = Vec::new();
        let mut first_error = None;
        for (i, a) in answers.iter().enumerate() {
            match a {
                Ok(info) => {
                    let v = version_of(info).to_string();
                    if newest.as_ref().is_none_or(|(nv, _)| v > *nv) {
                        newest = Some((v, i));
                    }
                }
                Err(StorageError::NotFound(_)) => missing.push(i),
                Err(e) => {
                    first_error.get_or_insert_with(|| e.clone());
                }
            }
        }
        let Some((version, first)) = newest else {
            return match (missing.is_empty(), first_error) {
                (false, _) => Err(StorageError::NotFound(path.to_string())),
                (true, Some(e)) => Err(e),
                (true, None) => Err(StorageError::NotFound(path.to_string())),
            };
        };
        let holders: Vec<usize> =
            (0..answers.len()).filter(|i| answers[*i].as_ref().is_ok_and(|info| version_of(info) == version)).collect();
        let mut behind: Vec<usize> = (0..answers.len())
            .filter(|i| answers[*i].as_ref().is_ok_and(|info| version_of(info) < version.as_str()))
            .collect();
        if !missing.is_empty() && self.deleted_after(ctx, &missing, &holders, path, &version).await {
            behind.extend(&holders);
            behind.sort_unstable();
            return Ok(Survey { newest: None, version: String::new(), holders: Vec::new(), behind });
        }
        behind.extend(&missing);
        behind.sort_unstable();
        let info = answers[first].as_ref().map(|i| self.as_own(i.clone(), path)).ok();
        Ok(Survey { newest: info, version, holders, behind })
    }

    /// Whether one of `missing` carries a `delete` mark for one of `holders` newer than
    /// `version`: the path was deleted while that holder was away.
    async fn deleted_after(
        &self,
        ctx: &RequestContext,
        missing: &[usize],
        holders: &[usize],
        path: &str,
        version: &str,
    ) -> bool {
        for &m in missing {
            for &h in holders {
                let Ok(mark) = self.mark_path(h, path) else { continue };
                let mctx = self.member_ctx(ctx, m);
                if let Ok(info) = self.members[m].unchecked().stat(&mctx, &mark).await
                    && op_of(&info) == Some("delete")
                    && version_of(&info) > version
                {
                    return true;
                }
            }
        }
        false
    }

    /// A member's info as the mirror's: its path, without the mirror's own metadata.
    fn as_own(&self, mut info: ObjectInfo, path: &str) -> ObjectInfo {
        info.path = path.to_string();
        info.metadata.retain(|(k, _)| k != VERSION);
        info
    }

    /// The info of `path`: the newest version's.
    pub(crate) async fn stat(&self, ctx: &RequestContext, path: &str) -> Result<ObjectInfo, StorageError> {
        let survey = self.survey(ctx, path).await?;
        survey.newest.ok_or_else(|| StorageError::NotFound(path.to_string()))
    }

    /// Whether `path` exists.
    pub(crate) async fn exists(&self, ctx: &RequestContext, path: &str) -> Result<bool, StorageError> {
        match self.survey(ctx, path).await {
            Ok(s) => Ok(s.newest.is_some()),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A page of the listing of the first member that answers, without the mirror's own
    /// objects and metadata.
    pub(crate) async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StorageError> {
        let mut first_error = None;
        for i in 0..self.members.len() {
            let mctx = self.member_ctx(ctx, i);
            let mut cursor = cursor.map(str::to_string);
            // Pages that held only the mirror's own objects are skipped (a bounded number).
            for _ in 0..64 {
                match self.members[i].unchecked().list(&mctx, prefix, cursor.as_deref(), limit).await {
                    Ok(mut page) => {
                        page.items.retain(|info| !reserved(&info.path));
                        for info in &mut page.items {
                            info.metadata.retain(|(k, _)| k != VERSION);
                        }
                        if !page.items.is_empty() || page.next_cursor.is_none() {
                            return Ok(page);
                        }
                        cursor = page.next_cursor;
                    }
                    Err(e) if member_failed(&e) && cursor.is_none() => {
                        first_error.get_or_insert(e);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if first_error.is_none() {
                return Ok(ListPage { items: Vec::new(), next_cursor: cursor });
            }
        }
        Err(first_error.unwrap_or_else(|| StorageError::NotFound(prefix.to_string())))
    }

    /// Removes `path` from every member; succeeds once the quorum no longer holds it, and
    /// marks the members that missed it.
    pub(crate) async fn delete(&self, ctx: &RequestContext, path: &str) -> Result<(), StorageError> {
        let version = new_version(ctx);
        let answers = join_all((0..self.members.len()).map(|i| {
            let mctx = self.member_ctx(ctx, i);
            async move {
                let deleted = match self.members[i].unchecked().delete(&mctx, path).await {
                    Ok(()) => Ok(true),
                    Err(StorageError::NotFound(_)) => Ok(false),
                    Err(e) => Err(e),
                };
                if deleted.is_ok() {
                    // Block digests go with their object; a missing one is nothing to undo.
                    if let Ok(blocks) = blocks_path(path) {
                        let _ = self.members[i].unchecked().delete(&mctx, &blocks).await;
                    }
                }
                deleted
            }
        }))
        .await;
        let done: Vec<usize> = (0..answers.len()).filter(|i| answers[*i].is_ok()).collect();
        let failed: Vec<usize> = (0..answers.len()).filter(|i| answers[*i].is_err()).collect();
        if done.len() < self.quorum {
            let e = answers.into_iter().find_map(Result::err);
            return Err(e.unwrap_or_else(|| StorageError::Io("the delete reached too few mirrors".into())));
        }
        if !answers.iter().any(|a| matches!(a, Ok(true))) && failed.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        for f in failed {
            self.mark(ctx, f, path, "delete", &version, &done).await;
        }
        Ok(())
    }

    /// A mirror has no URL of its own: the host signs one, and its reads are checked.
    pub(crate) async fn url(&self, _ctx: &RequestContext, path: &str, _expires: u64) -> Result<String, StorageError> {
        Err(StorageError::Unsupported(format!(
            "disk `{}` is a mirror: its downloads go through the host, which checks every block (`{path}`)",
            self.name
        )))
    }

    /// Starts writing `path` on every member.
    pub(crate) async fn writer(
        self: &Arc<Self>,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
    ) -> Result<MirrorWriter, StorageError> {
        MirrorWriter::open(self.clone(), ctx, path, options).await
    }

    /// Starts reading `path` (all of it, or `range`) from the first member with good bytes.
    pub(crate) async fn reader(
        self: &Arc<Self>,
        ctx: &RequestContext,
        path: &str,
        range: Option<crate::types::ByteRange>,
    ) -> Result<MirrorReader, StorageError> {
        MirrorReader::open(self.clone(), ctx, path, range).await
    }

    /// Where the mark that member `i` needs work on `path` lives (on the other members).
    fn mark_path(&self, i: usize, path: &str) -> Result<ObjectPath, StorageError> {
        Ok(ObjectPath::parse(&format!("{MARKS}/{}/{path}", self.members[i].name()))?)
    }

    /// Marks, on each of `on` (members other than `i`), that member `i` needs `op` on `path`
    /// (a copy of `version`, or its removal). At least one mark must
    /// hold for the repairer to find the work at once; a read finds a member behind anyway.
    pub(crate) async fn mark(&self, ctx: &RequestContext, i: usize, path: &str, op: &str, version: &str, on: &[usize]) {
        let Ok(mark) = self.mark_path(i, path) else { return };
        let options = WriteOptions {
            metadata: vec![(OP.to_string(), op.to_string()), (VERSION.to_string(), version.to_string())],
            ..WriteOptions::default()
        };
        let placed = join_all(on.iter().filter(|&&j| j != i).map(|&j| {
            let mctx = self.member_ctx(ctx, j);
            let (mark, options) = (&mark, &options);
            async move { self.members[j].unchecked().put_bytes(&mctx, mark, bytes::Bytes::new(), options).await }
        }))
        .await;
        if !placed.iter().any(Result::is_ok) {
            tracing::warn!(
                mirror = %self.name,
                member = %self.members[i].name(),
                "could not mark a mirror as needing repair; a read or fsck will find it"
            );
        }
    }
}

/// What [`Mirror::check_copies`] found of one object.
pub(crate) struct Copies {
    /// The newest version's info.
    pub info: ObjectInfo,
    /// The sha256 of the first good copy's bytes, as the host measured them.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Bytes read of every copy together.
    pub bytes_read: u64,
    /// (member, why) of each copy that is damaged, missing or behind (each marked).
    pub bad: Vec<(String, String)>,
}

impl Mirror {
    /// Reads every member's copy of `path` to its end, each block checked against its digest,
    /// and marks every member whose copy is damaged, lacks its block digests, or is missing or
    /// behind. Fails if no copy reads back good.
    pub(crate) async fn check_copies(
        self: &Arc<Self>,
        ctx: &RequestContext,
        path: &str,
    ) -> Result<Copies, StorageError> {
        let survey = self.survey(ctx, path).await?;
        let Some(info) = survey.newest.clone() else { return Err(StorageError::NotFound(path.to_string())) };
        let mut bad = Vec::new();
        for &b in &survey.behind {
            self.mark(ctx, b, path, "put", &survey.version, &survey.holders).await;
            bad.push((self.members[b].name().to_string(), "holds an older version, or none".to_string()));
        }
        let (mut good, mut bytes_read) = (None, 0);
        for &h in &survey.holders {
            let mut reader = MirrorReader::from_survey(self.clone(), ctx, path, &survey, &[h], None).await?;
            let mut digester = crate::driver::Digester::new();
            let read: Result<(), StorageError> = async {
                if !reader.checks_blocks() {
                    return Err(StorageError::Io("its block digests are missing or damaged".into()));
                }
                while let Some(chunk) = reader.next_chunk(crate::driver::MAX_CHUNK).await? {
                    bytes_read += chunk.len() as u64;
                    digester.update(chunk);
                }
                Ok(())
            }
            .await;
            match (read, digester.finish()) {
                (Ok(()), Some(d)) => {
                    good.get_or_insert(d);
                }
                (Ok(()), None) => return Err(StorageError::Io("the host's hashing thread stopped".into())),
                (Err(e), _) => {
                    // A damaged block was marked by the read; missing digests are marked here.
                    self.mark(ctx, h, path, "put", &survey.version, &survey.holders).await;
                    bad.push((self.members[h].name().to_string(), e.to_string()));
                }
            }
        }
        let Some(digest) = good else {
            return Err(StorageError::Io(format!("no mirror holds a copy of `{path}` that matches its digests")));
        };
        Ok(Copies { info, sha256: digest.sha256, size: digest.size, bytes_read, bad })
    }
}

/// A copy's version (`""`, the oldest, for one written around the mirror).
fn version_of(info: &ObjectInfo) -> &str {
    info.metadata.iter().find(|(k, _)| k == VERSION).map_or("", |(_, v)| v.as_str())
}

/// What a mark asks.
fn op_of(info: &ObjectInfo) -> Option<&str> {
    info.metadata.iter().find(|(k, _)| k == OP).map(|(_, v)| v.as_str())
}

/// A new version, later than every version this host made before: the clock in ms
/// (13 digits, so versions order as text), then the request id.
pub(crate) fn new_version(ctx: &RequestContext) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{ms:013}-{}", ctx.request_id)
}

/// Where `path`'s block digests live on a member.
fn blocks_path(path: &str) -> Result<ObjectPath, StorageError> {
    Ok(ObjectPath::parse(&format!("{BLOCKS}/{path}"))?)
}

/// Whether `e` says the member failed (so another member may serve), rather than something
/// about the request that every member would say too.
fn member_failed(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Unavailable { .. }
            | StorageError::PluginFault { .. }
            | StorageError::Io(_)
            | StorageError::NoSpace { .. }
    )
}
