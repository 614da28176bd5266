//! A read from a mirror: the newest version, from the first member that holds it, every block
//! checked against its digest before any byte of it goes out. A block that does not match, or
//! a member that fails, and the read goes on from the next holder at that block; the bad copy
//! is marked for repair. Memory: one block (1 MiB) per read.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};

use super::blocks::{BLOCK, Manifest, block_matches};
use super::{Mirror, blocks_path, member_failed};
use crate::driver::{DriverReader, MAX_CHUNK};
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
    /// The block digests, when known: then every block is checked before it goes out.
    /// Without them (a large object whose digests are missing), a whole read is checked
    /// against the sha256 at its end.
    blocks: Option<Vec<[u8; 32]>>,
    whole: Option<Sha256>,
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
                mirror.mark(ctx, b, path, "put", &survey.version, &survey.holders).await;
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
        survey: &super::Survey,
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
            blocks: None,
            whole: None,
            end,
            pos: start,
            fetched: start,
            ready: Bytes::new(),
            info,
        };
        reader.blocks = reader.find_blocks().await;
        match &reader.blocks {
            // Checked block by block: fetching starts at the first byte of the first block.
            Some(_) => reader.fetched = start - start % BLOCK,
            None if start == 0 && end == size => reader.whole = Some(Sha256::new()),
            None => {}
        }
        Ok(reader)
    }

    /// The block digests of the version being read: its own sha256 for an object of one
    /// block, else the first holder's file that describes it (a holder without one is
    /// marked, so the repairer writes it).
    async fn find_blocks(&mut self) -> Option<Vec<[u8; 32]>> {
        let (size, sha256) = (self.info.size, self.info.sha256.clone());
        if !Manifest::kept_for(size) {
            return Manifest::of_small(&self.version, size, sha256.as_deref()?).map(|m| m.blocks);
        }
        let at = blocks_path(&self.path).ok()?;
        let holders: Vec<usize> = self.next.iter().copied().collect();
        let mut lacking = Vec::new();
        let mut found = None;
        for &h in &holders {
            let mctx = self.mirror.member_ctx(&self.ctx, h);
            let text = self.mirror.members[h].get_bytes(&mctx, &at, None).await;
            match text.ok().and_then(|(_, t)| Manifest::decode(&t)) {
                Some(m) if m.describes(&self.version, size, sha256.as_deref()) => {
                    found = Some(m.blocks);
                    break;
                }
                _ => lacking.push(h),
            }
        }
        for h in lacking {
            self.mirror.mark(&self.ctx, h, &self.path, "put", &self.version, &holders).await;
        }
        found
    }

    /// Whether every block is checked before it goes out (the block digests were found).
    pub(super) fn checks_blocks(&self) -> bool {
        self.blocks.is_some()
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
            let attempt = match &self.blocks {
                Some(_) => self.fetch_block().await,
                None => self.fetch_unchecked().await,
            };
            match attempt {
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
            let upto = match &self.blocks {
                Some(_) => self.end.div_ceil(BLOCK).saturating_mul(BLOCK).min(self.info.size),
                None => self.end,
            };
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
        let digest = self.blocks.as_ref().and_then(|b| b.get(k as usize));
        if !digest.is_some_and(|d| block_matches(&block, d)) {
            return Err(Moved::Next(member, format!("block {k} does not match its recorded sha256")));
        }
        self.fetched = block_end;
        let skip = (self.pos - k * BLOCK) as usize;
        let take = (self.end.min(block_end) - k * BLOCK) as usize;
        Ok(block.slice(skip..take))
    }

    /// The next bytes from the current holder, unchecked until the end (a large object whose
    /// block digests are missing): a whole read is checked against the sha256 at its end.
    async fn fetch_unchecked(&mut self) -> Result<Bytes, Moved> {
        let want = (self.end - self.fetched).min(MAX_CHUNK as u64) as usize;
        let (member, reader) = self.source().await?;
        let member = *member;
        let chunk = match reader.next_chunk(want).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Moved::Next(member, "ended early".into())),
            Err(e) if member_failed(&e) => return Err(Moved::Next(member, e.to_string())),
            Err(e) => return Err(Moved::Fail(e)),
        };
        self.fetched += chunk.len() as u64;
        if let Some(whole) = &mut self.whole {
            whole.update(&chunk);
            if self.fetched == self.end {
                let measured = hex::encode(std::mem::take(whole).finalize());
                if self.info.sha256.as_deref().is_some_and(|want| want != measured) {
                    self.mirror.mark(&self.ctx, member, &self.path, "put", &self.version, &self.others(member)).await;
                    return Err(Moved::Fail(StorageError::Io(format!(
                        "`{}` read from mirror `{}` does not match its recorded sha256; it is marked for repair",
                        self.path,
                        self.mirror.members[member].name()
                    ))));
                }
            }
        }
        Ok(chunk)
    }

    /// Gives up on `member` (failed, or bad bytes): marks its copy for repair and moves on to
    /// the next holder at the same byte.
    async fn drop_member(&mut self, member: usize, why: String) -> Result<(), StorageError> {
        tracing::warn!(mirror = %self.mirror.name, member = %self.mirror.members[member].name(), path = %self.path, reason = %why, "a mirror read moves to the next copy");
        if let Some((_, mut r)) = self.current.take() {
            r.close().await;
        }
        self.mirror.mark(&self.ctx, member, &self.path, "put", &self.version, &self.others(member)).await;
        if self.next.is_empty() {
            return Err(StorageError::Io(format!(
                "no mirror of `{}` could serve the bytes from offset {} ({why})",
                self.path, self.fetched
            )));
        }
        Ok(())
    }

    /// Every member but `member`.
    fn others(&self, member: usize) -> Vec<usize> {
        (0..self.mirror.members.len()).filter(|m| *m != member).collect()
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
