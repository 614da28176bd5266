//! A read from a mirror: the newest version, from the first member that holds it, every block
//! checked against its digest before any byte of it goes out. A block that does not match, or
//! a member that fails, and the read goes on from the next holder at that block; the bad copy
//! is marked for repair. Memory: one block (1 MiB) per read.
//!
//! The digests come from the file beside the copy (`blocks.rs`), or, for an object of one
//! block, from its recorded sha256. When no holder has the file (a crash between a commit and
//! the file, or a copy written around the mirror), they are measured first: a holder's copy is
//! read once, its blocks hashed, and taken only if its sha256 is the recorded one. A read never
//! sends a byte it has not checked.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::blocks::{BLOCK, BlockDigests, Manifest};
use super::core::{Mirror, Survey, blocks_path, member_failed};
use crate::driver::{Digester, DriverReader, MAX_CHUNK};
use crate::error::StorageError;
use crate::types::{ByteRange, ObjectInfo, RequestContext};

/// A read from a mirror.
pub struct MirrorReader {
    mirror: Arc<Mirror>,
    ctx: RequestContext,
    path: String,
    info: ObjectInfo,
    version: String,
    /// Holders not tried yet, in read order.
    next: VecDeque<usize>,
    /// The member being read, and its reader (positioned at `fetched`).
    current: Option<(usize, DriverReader)>,
    /// The digest of every block, each checked before the block goes out.
    blocks: BlockDigests,
    /// Whether they were kept beside the first holder's copy (or are its recorded sha256),
    /// rather than measured for this read.
    kept: bool,
    /// The range asked for: `[start, end)`.
    end: u64,
    /// The next byte the caller gets.
    pos: u64,
    /// The next byte to fetch from a member.
    fetched: u64,
    /// Checked bytes from `pos` on, not yet handed out.
    ready: Bytes,
}

impl MirrorReader {
    pub(super) async fn open(
        mirror: Arc<Mirror>,
        ctx: &RequestContext,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<MirrorReader, StorageError> {
        let survey = mirror.survey(ctx, path).await?;
        if survey.newest.is_some() {
            for &b in &survey.behind {
                mirror.mark(ctx, b, path, "put", &survey.version).await;
            }
        }
        let holders = survey.holders.clone();
        Self::from_survey(mirror, ctx, path, &survey, &holders, range).await
    }

    /// A read of what `survey` found, from `holders` (in that order).
    pub(super) async fn from_survey(
        mirror: Arc<Mirror>,
        ctx: &RequestContext,
        path: &str,
        survey: &Survey,
        holders: &[usize],
        range: Option<ByteRange>,
    ) -> Result<MirrorReader, StorageError> {
        let Some(info) = survey.newest.clone() else { return Err(StorageError::NotFound(path.to_string())) };
        let size = info.size;
        let (start, end) = match range {
            None => (0, size),
            Some(r) if r.offset > size => {
                return Err(StorageError::InvalidRange(format!(
                    "offset {} is past the end of `{path}` ({size} bytes)",
                    r.offset
                )));
            }
            Some(r) => (r.offset, r.length.map_or(size, |l| r.offset.saturating_add(l).min(size))),
        };
        let mut reader = MirrorReader {
            mirror,
            ctx: ctx.clone(),
            path: path.to_string(),
            version: survey.version.clone(),
            next: holders.iter().copied().collect(),
            current: None,
            blocks: BlockDigests::Blake3(Vec::new()),
            kept: false,
            end,
            pos: start,
            fetched: start,
            ready: Bytes::new(),
            info,
        };
        (reader.blocks, reader.kept) = reader.find_blocks().await?;
        // Checked block by block: fetching starts at the first byte of the first block.
        reader.fetched = start - start % BLOCK;
        Ok(reader)
    }

    /// The block digests of the version being read, and whether the first holder keeps them:
    /// its own sha256 for an object of one block; else the first holder's file that describes
    /// it (a holder without one is marked, so the repairer writes it); else measured from the
    /// first holder whose copy has the recorded sha256.
    async fn find_blocks(&mut self) -> Result<(BlockDigests, bool), StorageError> {
        let (size, sha256) = (self.info.size, self.info.sha256.clone());
        let Some(sha256) = sha256 else {
            return Err(StorageError::Io(format!(
                "`{}` has no recorded sha256 on its mirrors, so its bytes cannot be checked",
                self.path
            )));
        };
        if !Manifest::kept_for(size) {
            let small = BlockDigests::of_small(size, &sha256)
                .ok_or_else(|| StorageError::Io(format!("`{}` has a malformed recorded sha256", self.path)))?;
            return Ok((small, true));
        }
        let at = blocks_path(&self.path)?;
        let holders: Vec<usize> = self.next.iter().copied().collect();
        let mut lacking = Vec::new();
        let mut found = None;
        for &h in &holders {
            let mctx = self.mirror.member_ctx(&self.ctx, h);
            let text = self.mirror.members[h].get_bytes(&mctx, &at, None).await;
            match text.ok().and_then(|(_, t)| Manifest::decode(&t)) {
                Some(m) if m.describes(&self.version, size, Some(&sha256)) => {
                    found = Some((BlockDigests::Blake3(m.blocks), lacking.is_empty()));
                    break;
                }
                _ => lacking.push(h),
            }
        }
        for &h in &lacking {
            self.mirror.mark(&self.ctx, h, &self.path, "put", &self.version).await;
        }
        if let Some(found) = found {
            return Ok(found);
        }
        for &h in &holders {
            if let Some(blocks) = measure_blocks(&self.mirror, &self.ctx, &self.path, h, size, &sha256).await {
                return Ok((BlockDigests::Blake3(blocks), false));
            }
        }
        Err(StorageError::Io(format!("no mirror holds a copy of `{}` whose sha256 is the recorded one", self.path)))
    }

    /// Whether the first holder keeps the block digests beside its copy (they were not
    /// measured for this read).
    pub(super) fn digests_kept(&self) -> bool {
        self.kept
    }

    /// The block digests this read checked against, as the file kept beside a copy (for an
    /// object over one block).
    pub(super) fn manifest(&self) -> Option<Manifest> {
        let BlockDigests::Blake3(blocks) = &self.blocks else { return None };
        let sha256 = self.info.sha256.clone()?;
        Manifest::kept_for(self.info.size).then(|| Manifest {
            version: self.version.clone(),
            size: self.info.size,
            sha256,
            blocks: blocks.clone(),
        })
    }

    /// The object's info.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    pub(crate) fn set_info(&mut self, info: ObjectInfo) {
        self.info = info;
    }

    /// Bytes left to hand out.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next chunk of checked bytes (at most `max`), or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StorageError> {
        if self.pos >= self.end {
            self.close().await;
            return Ok(None);
        }
        if self.ready.is_empty() {
            self.ready = self.fill().await?;
        }
        let n = max.clamp(1, MAX_CHUNK).min(self.ready.len());
        let chunk = self.ready.split_to(n);
        self.pos += n as u64;
        Ok(Some(chunk))
    }

    /// Fetches the next checked bytes (starting at `pos`), moving to the next holder as often
    /// as needed.
    async fn fill(&mut self) -> Result<Bytes, StorageError> {
        loop {
            match self.fetch_block().await {
                Ok(bytes) => return Ok(bytes),
                Err(Moved::Next(bad, why)) => self.drop_member(bad, why).await?,
                Err(Moved::Fail(e)) => return Err(e),
            }
        }
    }

    /// The reader of the current holder, opened at `fetched` when it is not open yet.
    async fn source(&mut self) -> Result<&mut (usize, DriverReader), Moved> {
        if self.current.is_none() {
            let Some(h) = self.next.pop_front() else {
                return Err(Moved::Fail(StorageError::Io(format!(
                    "no mirror of `{}` could serve the bytes from offset {} that match their recorded digest",
                    self.path, self.fetched
                ))));
            };
            let mctx = self.mirror.member_ctx(&self.ctx, h);
            // Up to the end of the block holding the last byte asked for.
            let upto = self.end.div_ceil(BLOCK).saturating_mul(BLOCK).min(self.info.size);
            let range = ByteRange { offset: self.fetched, length: Some(upto - self.fetched) };
            match self.mirror.members[h].unchecked().driver_reader(&mctx, &self.path, Some(range)).await {
                Ok(r) => self.current = Some((h, r)),
                Err(e) => return Err(Moved::Next(h, e.to_string())),
            }
        }
        self.current.as_mut().ok_or_else(|| Moved::Fail(StorageError::Io("no mirror reader".into())))
    }

    /// The next whole block from the current holder, checked; the part of it in the range.
    async fn fetch_block(&mut self) -> Result<Bytes, Moved> {
        let k = self.fetched / BLOCK;
        let block_end = ((k + 1) * BLOCK).min(self.info.size);
        let want = (block_end - self.fetched) as usize;
        let path = self.path.clone();
        let (member, reader) = self.source().await?;
        let member = *member;
        let mut parts: Vec<Bytes> = Vec::new();
        let mut got = 0;
        while got < want {
            let chunk = match reader.next_chunk(want - got).await {
                Ok(Some(c)) => c,
                Ok(None) => return Err(Moved::Next(member, format!("`{path}` ended early"))),
                Err(e) if member_failed(&e) || matches!(e, StorageError::NotFound(_)) => {
                    return Err(Moved::Next(member, e.to_string()));
                }
                Err(e) => return Err(Moved::Fail(e)),
            };
            got += chunk.len();
            parts.push(chunk);
        }
        // A block that came in one chunk is used as it came, without a copy.
        let block = match parts.len() {
            1 => parts.pop().unwrap_or_default(),
            _ => {
                let mut buf = BytesMut::with_capacity(want);
                parts.iter().for_each(|p| buf.extend_from_slice(p));
                buf.freeze()
            }
        };
        if !self.blocks.matches(k, &block) {
            return Err(Moved::Next(member, format!("block {k} does not match its recorded sha256")));
        }
        self.fetched = block_end;
        let skip = (self.pos - k * BLOCK) as usize;
        let take = (self.end.min(block_end) - k * BLOCK) as usize;
        Ok(block.slice(skip..take))
    }

    /// Gives up on `member` (failed, or bad bytes): marks its copy for repair and moves on to
    /// the next holder at the same byte.
    async fn drop_member(&mut self, member: usize, why: String) -> Result<(), StorageError> {
        tracing::warn!(mirror = %self.mirror.name, member = %self.mirror.members[member].name(), path = %self.path, reason = %why, "a mirror read moves to the next copy");
        if let Some((_, mut r)) = self.current.take() {
            r.close().await;
        }
        self.mirror.mark(&self.ctx, member, &self.path, "put", &self.version).await;
        if self.next.is_empty() {
            return Err(StorageError::Io(format!(
                "no mirror of `{}` could serve the bytes from offset {} ({why})",
                self.path, self.fetched
            )));
        }
        Ok(())
    }

    /// Ends the read early.
    pub async fn close(&mut self) {
        if let Some((_, mut r)) = self.current.take() {
            r.close().await;
        }
    }
}

/// Why a fetch stopped.
enum Moved {
    /// This member failed or sent bad bytes: try the next holder.
    Next(usize, String),
    /// Stop the read.
    Fail(StorageError),
}

/// The block digests of member `h`'s copy, read whole once, if its sha256 is `sha256`.
async fn measure_blocks(
    mirror: &Mirror,
    ctx: &RequestContext,
    path: &str,
    h: usize,
    size: u64,
    sha256: &str,
) -> Option<Vec<[u8; 32]>> {
    let mctx = mirror.member_ctx(ctx, h);
    let mut r = mirror.members[h].unchecked().driver_reader(&mctx, path, None).await.ok()?;
    let mut digester = Digester::with_blocks(BLOCK);
    while let Some(chunk) = r.next_chunk(MAX_CHUNK).await.ok()? {
        digester.update(chunk);
    }
    let (digest, blocks) = digester.finish_blocks()?;
    (digest.sha256.eq_ignore_ascii_case(sha256) && digest.size == size).then_some(blocks)
}
