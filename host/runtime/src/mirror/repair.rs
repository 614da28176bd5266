//! The repairer: works through the marks of every mirrored disk (in `serve` beside the
//! fallback syncer, and in `stowage sync`). For each member marked as needing `path`, it asks
//! every member what is true (the newest version, or deleted), then makes the member hold
//! exactly that: a copy streamed from a good member, checked block by block on the way out and
//! by its sha256 before it is committed, with its block digests; or the object removed. Each
//! repair is recorded (`mirror_repaired`) before its marks go, so a crash between the two
//! repeats the repair rather than leaving one nobody recorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;

use super::blocks::Manifest;
use super::core::{MARKS, Mirror, Survey, VERSION, blocks_path, new_version, version_of};
use super::reader::MirrorReader;
use crate::driver::MAX_CHUNK;
use crate::error::StorageError;
use crate::storage::Storage;
use crate::types::{RequestContext, WriteOptions};
use stowage_path::ObjectPath;

/// Paths one mirror repairs at a time.
const CONCURRENCY: usize = 4;

/// What one repair pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// (mirrored disk, member, path, what was done: `copied`, `removed` or `checked`).
    pub repaired: Vec<(String, String, String, &'static str)>,
    /// (mirrored disk, member, path, why) of each repair that could not be made now; its
    /// marks stay.
    pub failed: Vec<(String, String, String, String)>,
}

impl Storage {
    /// One pass over every mirror's marks. Refused while the ledger cannot record.
    pub async fn repair_mirrors(&self) -> Result<RepairReport, StorageError> {
        self.ledger().health().map_err(StorageError::AuditUnavailable)?;
        let mut report = RepairReport::default();
        for (_, disk) in self.disks() {
            let Some(mirror) = super::of(disk) else { continue };
            let ctx = self.own_context(disk, "stowage-repair");
            // Each path's mirrors one after another (a repair reads the others), a few paths
            // at once.
            let mut by_path: BTreeMap<String, BTreeMap<usize, Vec<Mark>>> = BTreeMap::new();
            for ((member, path), marks) in mirror.marks(&ctx).await {
                by_path.entry(path).or_default().insert(member, marks);
            }
            let mut repairs = futures::stream::iter(by_path)
                .map(|(path, members)| {
                    let (ctx, mirror) = (&ctx, &mirror);
                    async move {
                        let mut done = Vec::with_capacity(members.len());
                        for (member, marks) in members {
                            done.push((member, self.repair_one(mirror, ctx, member, &path, &marks).await));
                        }
                        (path, done)
                    }
                })
                .buffer_unordered(CONCURRENCY);
            while let Some((path, done)) = repairs.next().await {
                for (member, done) in done {
                    let m = mirror.members()[member].name().to_string();
                    match done {
                        Ok(what) => report.repaired.push((mirror.name().to_string(), m, path.clone(), what)),
                        Err(e @ StorageError::AuditUnavailable(_)) => return Err(e),
                        Err(e) => report.failed.push((mirror.name().to_string(), m, path.clone(), e.to_string())),
                    }
                }
            }
        }
        Ok(report)
    }

    /// Makes member `m` hold what is true of `path`, records it, and removes its marks.
    async fn repair_one(
        &self,
        mirror: &Arc<Mirror>,
        ctx: &RequestContext,
        m: usize,
        path: &str,
        marks: &[Mark],
    ) -> Result<&'static str, StorageError> {
        let member = &mirror.members()[m];
        let mctx = mirror.member_ctx(ctx, m);
        let started = new_version(ctx);
        let survey = match mirror.survey(ctx, path).await {
            Ok(s) => s,
            Err(StorageError::NotFound(_)) => {
                let versions = vec![None; mirror.members().len()];
                Survey { newest: None, version: String::new(), holders: Vec::new(), behind: Vec::new(), versions }
            }
            Err(e) => return Err(e),
        };
        let done = match &survey.newest {
            None => {
                mirror.unchanged(ctx, m, path, &survey).await?;
                match member.unchecked().delete(&mctx, path).await {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                if let Ok(blocks) = blocks_path(path) {
                    let _ = member.unchecked().delete(&mctx, &blocks).await;
                }
                "removed"
            }
            Some(_) if survey.holders.contains(&m) => match mirror.copy_is_good(ctx, m, path, &survey).await {
                Verdict::Good => "checked",
                Verdict::LacksDigests(manifest) => {
                    let at = blocks_path(path)?;
                    let text = Bytes::from(manifest.encode());
                    member.unchecked().put_bytes(&mctx, &at, text, &WriteOptions::default()).await?;
                    "indexed"
                }
                Verdict::Bad => self.copy_to(mirror, ctx, m, path, &survey).await?,
            },
            Some(_) => self.copy_to(mirror, ctx, m, path, &survey).await?,
        };
        let record = crate::ledger::Record {
            action: "mirror_repaired".into(),
            path: path.to_string(),
            disk: mirror.name().to_string(),
            actor: ctx.actor.clone(),
            size: survey.newest.as_ref().map(|i| i.size),
            sha256: survey.newest.as_ref().and_then(|i| i.sha256.clone()),
            metadata: vec![
                ("mirror".into(), member.name().to_string()),
                ("done".into(), done.to_string()),
                ("version".into(), survey.version.clone()),
            ],
            request_id: ctx.request_id.clone(),
            key: ctx.authenticated_as.clone(),
            ..crate::ledger::Record::default()
        };
        self.ledger().append(&record).await.map_err(|e| StorageError::AuditUnavailable(e.to_string()))?;
        tracing::info!(mirror = %mirror.name(), member = %member.name(), done, "a mirror's copy was repaired");
        // The marks this repair answered: those of the version it settled on, or older (a
        // removal answers every mark made before it began). Newer ones wait for the next pass.
        let answered = if survey.newest.is_some() { survey.version.as_str() } else { started.as_str() };
        mirror.unmark(ctx, marks, answered).await;
        Ok(done)
    }

    /// Streams the newest version of `path` from another holder to member `m` (checked block
    /// by block, committed only with its recorded sha256), with its block digests.
    async fn copy_to(
        &self,
        mirror: &Arc<Mirror>,
        ctx: &RequestContext,
        m: usize,
        path: &str,
        survey: &Survey,
    ) -> Result<&'static str, StorageError> {
        let member = &mirror.members()[m];
        let mctx = mirror.member_ctx(ctx, m);
        let Some(info) = &survey.newest else { return Err(StorageError::NotFound(path.to_string())) };
        let from: Vec<usize> = survey.holders.iter().copied().filter(|h| *h != m).collect();
        if from.is_empty() {
            return Err(StorageError::Io(format!(
                "no other mirror holds version {} of `{path}` to repair `{}` from",
                survey.version,
                member.name()
            )));
        }
        let mut source = MirrorReader::from_survey(mirror.clone(), ctx, path, survey, &from, None).await?;
        let mut metadata = info.metadata.clone();
        metadata.push((VERSION.to_string(), survey.version.clone()));
        metadata.sort();
        let options = WriteOptions { content_type: info.content_type.clone(), metadata, create_only: false };
        let mut writer = member.unchecked().driver_writer(&mctx, path, &options).await?;
        while let Some(chunk) = source.next_chunk(MAX_CHUNK).await? {
            writer.write(chunk).await?;
        }
        // A client's write that reached the member since the survey is newer than this copy.
        mirror.unchanged(ctx, m, path, survey).await?;
        writer.finish_verified(info.sha256.as_deref()).await?;
        // The source's digests were checked against every block it sent (measured from a copy
        // with the recorded sha256 if none was kept).
        if let Some(manifest) = source.manifest() {
            let at = blocks_path(path)?;
            member.unchecked().put_bytes(&mctx, &at, Bytes::from(manifest.encode()), &WriteOptions::default()).await?;
        }
        Ok("copied")
    }
}

impl Mirror {
    /// Every mark on every member that answers, by the member and path it is for.
    pub(super) async fn marks(&self, ctx: &RequestContext) -> BTreeMap<(usize, String), Vec<Mark>> {
        let mut out: BTreeMap<(usize, String), Vec<Mark>> = BTreeMap::new();
        let prefix = format!("{MARKS}/");
        for j in 0..self.members.len() {
            let mctx = self.member_ctx(ctx, j);
            let mut cursor: Option<String> = None;
            loop {
                let page = match self.members[j].unchecked().list(&mctx, &prefix, cursor.as_deref(), 1000).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(mirror = %self.name, member = %self.members[j].name(), error = %e, "cannot list a mirror's marks");
                        break;
                    }
                };
                for item in page.items {
                    // `<member>/<op>/<path>/@<version>`
                    let Some(rest) = item.path.strip_prefix(&prefix) else { continue };
                    let Some((member, rest)) = rest.split_once('/') else { continue };
                    let Some((_op, rest)) = rest.split_once('/') else { continue };
                    let Some((path, version)) = rest.rsplit_once("/@") else { continue };
                    if let Some(i) = self.members.iter().position(|d| d.name() == member) {
                        let mark = Mark { on: j, at: item.path.clone(), version: version.to_string() };
                        out.entry((i, path.to_string())).or_default().push(mark);
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        out
    }

    /// Removes the `marks` (as listed) of versions up to `upto`: marks made since, or of newer
    /// versions, stay for the next pass.
    async fn unmark(&self, ctx: &RequestContext, marks: &[Mark], upto: &str) {
        for mark in marks.iter().filter(|k| k.version.as_str() <= upto) {
            let Ok(at) = ObjectPath::parse(&mark.at) else { continue };
            let mctx = self.member_ctx(ctx, mark.on);
            let _ = self.members[mark.on].unchecked().delete(&mctx, &at).await;
        }
    }

    /// Fails (`unavailable`, retryable: the next pass looks again) if member `m`'s copy of
    /// `path` is no longer the one `survey` saw: a client's write reached it meanwhile.
    async fn unchanged(&self, ctx: &RequestContext, m: usize, path: &str, survey: &Survey) -> Result<(), StorageError> {
        let mctx = self.member_ctx(ctx, m);
        let now = match self.members[m].unchecked().stat(&mctx, path).await {
            Ok(info) => Some(version_of(&info).to_string()),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if now == survey.versions[m] {
            return Ok(());
        }
        Err(StorageError::Unavailable {
            reason: format!(
                "`{path}` changed on `{}` while it was being repaired; the next pass looks again",
                self.members[m].name()
            ),
            retryable: true,
        })
    }

    /// Whether the mirror named `member` now holds what is true of `path` (the newest
    /// version, read back good with its digests beside it; or nothing, when the path is gone):
    /// how `fsck --repair` tells a bad copy was repaired, whichever repairer did it.
    pub(crate) async fn copy_agrees(self: &Arc<Self>, ctx: &RequestContext, member: &str, path: &str) -> bool {
        let Some(m) = self.members.iter().position(|d| d.name() == member) else { return false };
        match self.survey(ctx, path).await {
            Ok(s) if s.newest.is_some() => {
                s.holders.contains(&m) && matches!(self.copy_is_good(ctx, m, path, &s).await, Verdict::Good)
            }
            Ok(s) => !s.behind.contains(&m),
            Err(StorageError::NotFound(_)) => true,
            Err(_) => false,
        }
    }

    /// What member `m`'s copy of the newest version is: good (it reads back whole, every
    /// block matching, its digests beside it), good but without its digests (here they are,
    /// measured from it), or bad.
    async fn copy_is_good(self: &Arc<Self>, ctx: &RequestContext, m: usize, path: &str, survey: &Survey) -> Verdict {
        let Ok(mut r) = MirrorReader::from_survey(self.clone(), ctx, path, survey, &[m], None).await else {
            return Verdict::Bad;
        };
        loop {
            match r.next_chunk(MAX_CHUNK).await {
                Ok(Some(_)) => {}
                Ok(None) if r.digests_kept() => return Verdict::Good,
                Ok(None) => return r.manifest().map_or(Verdict::Bad, Verdict::LacksDigests),
                Err(_) => return Verdict::Bad,
            }
        }
    }
}

/// What a repair found of a member's copy.
enum Verdict {
    Good,
    LacksDigests(Manifest),
    Bad,
}

/// One mark, as listed.
pub(super) struct Mark {
    /// The member holding it.
    on: usize,
    /// Its path there.
    at: String,
    /// The version that asked.
    version: String,
}
