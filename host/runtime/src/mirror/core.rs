//! The mirror itself: its members, what they say of a path (`survey`), the calls that need
//! no stream (stat, exists, list, delete), and the marks that ask for repairs.

use futures::future::join_all;
use stowage_path::ObjectPath;

use crate::driver::Disk;
use crate::error::StorageError;
use crate::types::{Capabilities, ListPage, ObjectInfo, RequestContext, WriteOptions};

/// The metadata key holding a copy's version.
pub const VERSION: &str = "stowage-mirror-version";
/// Where marks live on a member: `stowage-mirror/<member>/<op>/<path>/@<version>`.
pub(super) const MARKS: &str = "stowage-mirror";
/// Where block digests live on a member: `stowage-blocks/<path>`.
const BLOCKS: &str = "stowage-blocks";

/// Whether `path` is one of a mirror's own objects (marks, block digests).
pub(crate) fn reserved(path: &str) -> bool {
    [MARKS, BLOCKS].iter().any(|root| path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/')))
}

/// A mirrored disk: its members, in read order, and its write quorum.
pub struct Mirror {
    pub(super) name: String,
    pub(super) members: Vec<Disk>,
    pub(super) quorum: usize,
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
    /// Per member, the version it holds (`None`: nothing, or it did not answer).
    pub versions: Vec<Option<String>>,
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
        if let Some(m) = members.iter().find(|m| m.as_composite().is_some()) {
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
    pub(super) fn member_ctx(&self, ctx: &RequestContext, i: usize) -> RequestContext {
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
            // Gone only if enough members say so that every write quorum includes one of them
            // (a write held by members that did not answer would otherwise be denied).
            let enough = self.members.len() - self.quorum + 1;
            return match first_error {
                Some(e) if missing.len() < enough => Err(e),
                _ => Err(StorageError::NotFound(path.to_string())),
            };
        };
        let versions: Vec<Option<String>> =
            answers.iter().map(|a| a.as_ref().ok().map(|info| version_of(info).to_string())).collect();
        let holders: Vec<usize> =
            (0..answers.len()).filter(|i| answers[*i].as_ref().is_ok_and(|info| version_of(info) == version)).collect();
        let mut behind: Vec<usize> = (0..answers.len())
            .filter(|i| answers[*i].as_ref().is_ok_and(|info| version_of(info) < version.as_str()))
            .collect();
        if !missing.is_empty() && self.deleted_after(ctx, &missing, &holders, path, &version).await {
            behind.extend(&holders);
            behind.sort_unstable();
            return Ok(Survey { newest: None, version: String::new(), holders: Vec::new(), behind, versions });
        }
        behind.extend(&missing);
        behind.sort_unstable();
        let info = answers[first].as_ref().map(|i| self.as_own(i.clone(), path)).ok();
        Ok(Survey { newest: info, version, holders, behind, versions })
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
                let mctx = self.member_ctx(ctx, m);
                let prefix = self.marks_of(h, "delete", path);
                if self.mark_versions(&mctx, m, &prefix).await.iter().any(|v| v.as_str() > version) {
                    return true;
                }
            }
        }
        false
    }

    /// The versions of the marks under `prefix` (one path's marks of one op) on member `j`.
    pub(super) async fn mark_versions(&self, mctx: &RequestContext, j: usize, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let Ok(page) = self.members[j].unchecked().list(mctx, prefix, cursor.as_deref(), 1000).await else {
                return out;
            };
            for item in page.items {
                let Some(rest) = item.path.strip_prefix(prefix) else { continue };
                if let Some(v) = rest.strip_prefix('@').filter(|v| !v.contains('/')) {
                    out.push(v.to_string());
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    /// A member's info as the mirror's: its path, without the mirror's own metadata.
    pub(super) fn as_own(&self, mut info: ObjectInfo, path: &str) -> ObjectInfo {
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
            if !self.mark(ctx, f, path, "delete", &version).await {
                return Err(StorageError::Unavailable {
                    reason: format!(
                        "`{path}` was removed from some mirrors, but that `{}` still holds it could not be recorded; retry the delete",
                        self.members[f].name()
                    ),
                    retryable: true,
                });
            }
        }
        Ok(())
    }

    /// Where the marks that member `i` needs `op` on `path` live (on the other members): one
    /// file per version that asked, `<this>/@<version>`, so no mark ever replaces another.
    pub(super) fn marks_of(&self, i: usize, op: &str, path: &str) -> String {
        format!("{MARKS}/{}/{op}/{path}/", self.members[i].name())
    }

    /// Marks, on every other member that answers, that member `i` needs `op` on `path` (a
    /// copy of the newest version, or its removal), asked by `version`. Whether at least one
    /// mark holds (for a delete, the only record that member `i` still has to lose the path;
    /// a member behind on a write is found by the next read anyway).
    pub(crate) async fn mark(&self, ctx: &RequestContext, i: usize, path: &str, op: &str, version: &str) -> bool {
        let Ok(mark) = ObjectPath::parse(&format!("{}@{version}", self.marks_of(i, op, path))) else { return false };
        let placed = join_all((0..self.members.len()).filter(|&j| j != i).map(|j| {
            let mctx = self.member_ctx(ctx, j);
            let mark = &mark;
            async move {
                let member = self.members[j].unchecked();
                if member.exists(&mctx, mark).await.unwrap_or(false) {
                    return Ok(());
                }
                member.put_bytes(&mctx, mark, bytes::Bytes::new(), &WriteOptions::default()).await.map(|_| ())
            }
        }))
        .await;
        let held = placed.iter().any(Result::is_ok);
        if !held {
            tracing::warn!(
                mirror = %self.name,
                member = %self.members[i].name(),
                op,
                "could not mark a mirror as needing repair"
            );
        }
        held
    }
}

/// A copy's version (`""`, the oldest, for one written around the mirror).
pub(super) fn version_of(info: &ObjectInfo) -> &str {
    info.metadata.iter().find(|(k, _)| k == VERSION).map_or("", |(_, v)| v.as_str())
}

/// A new version, later than every version this host made before: the clock in ms
/// (13 digits, so versions order as text), then the request id.
pub(crate) fn new_version(ctx: &RequestContext) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{ms:013}-{}", ctx.request_id)
}

/// Where `path`'s block digests live on a member.
pub(super) fn blocks_path(path: &str) -> Result<ObjectPath, StorageError> {
    Ok(ObjectPath::parse(&format!("{BLOCKS}/{path}"))?)
}

/// Whether `e` says the member failed (so another member may serve), rather than something
/// about the request that every member would say too.
pub(super) fn member_failed(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Unavailable { .. }
            | StorageError::PluginFault { .. }
            | StorageError::Io(_)
            | StorageError::NoSpace { .. }
    )
}
