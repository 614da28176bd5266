//! A write to every member of a mirror at once. The host measures the bytes once (size,
//! sha256, block digests) and every member's write takes that measure; a member that fails
//! drops out, and the write goes on while the quorum is left.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;

use super::blocks::{BLOCK, Manifest};
use super::core::{Mirror, VERSION, blocks_path, new_version};
use crate::driver::{Digest, Digester, DriverWriter};
use crate::error::StorageError;
use crate::types::{ObjectInfo, RequestContext, WriteOptions};

/// One member's part of the write.
struct Part {
    member: usize,
    writer: DriverWriter,
}

/// A write to a mirror.
pub struct MirrorWriter {
    mirror: Arc<Mirror>,
    ctx: RequestContext,
    path: String,
    version: String,
    create_only: bool,
    parts: Vec<Part>,
    /// Members that dropped out, and why.
    failed: Vec<(usize, StorageError)>,
    digester: Digester,
    sealed: Option<(Digest, Vec<[u8; 32]>)>,
}

impl MirrorWriter {
    /// Opens the write on every member (the quorum must open).
    pub(super) async fn open(
        mirror: Arc<Mirror>,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
    ) -> Result<MirrorWriter, StorageError> {
        if options.metadata.iter().any(|(k, _)| k.eq_ignore_ascii_case(VERSION)) {
            return Err(StorageError::Unsupported(format!(
                "metadata key `{VERSION}` is reserved on a mirrored disk (it holds each copy's version)"
            )));
        }
        if options.create_only {
            // The first mirror's create-only commit settles a race; this settles a mirror
            // behind (which may lack an object the others hold).
            match mirror.survey(ctx, path).await {
                Ok(s) if s.newest.is_some() => return Err(StorageError::AlreadyExists(path.to_string())),
                Ok(_) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let version = new_version(ctx);
        let mut metadata = options.metadata.clone();
        metadata.push((VERSION.to_string(), version.clone()));
        metadata.sort();
        let opened = join_all((0..mirror.members.len()).map(|i| {
            let mctx = mirror.member_ctx(ctx, i);
            // Only the first member is asked to refuse an existing object: the others follow
            // its answer (a member behind may still hold a copy of a deleted object).
            let options = WriteOptions {
                metadata: metadata.clone(),
                create_only: options.create_only && i == 0,
                ..options.clone()
            };
            let disk = &mirror.members[i];
            async move { disk.unchecked().driver_writer(&mctx, path, &options).await.map(DriverWriter::unhashed) }
        }))
        .await;
        let mut parts = Vec::new();
        let mut failed = Vec::new();
        for (member, o) in opened.into_iter().enumerate() {
            match o {
                Ok(writer) => parts.push(Part { member, writer }),
                Err(e) => failed.push((member, e)),
            }
        }
        let w = MirrorWriter {
            mirror,
            ctx: ctx.clone(),
            path: path.to_string(),
            version,
            create_only: options.create_only,
            parts,
            failed,
            digester: Digester::with_blocks(BLOCK),
            sealed: None,
        };
        w.check_quorum()?;
        Ok(w)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.size()
    }

    /// The owner tag of the first member's write.
    pub fn owner(&self) -> &str {
        self.parts.first().map_or("", |p| p.writer.owner())
    }

    /// Fails if fewer members than the quorum are left, with the first one's error.
    fn check_quorum(&self) -> Result<(), StorageError> {
        if self.parts.len() >= self.mirror.quorum {
            return Ok(());
        }
        let first = self.failed.iter().min_by_key(|(m, _)| *m).map(|(_, e)| e.clone());
        Err(first.unwrap_or_else(|| StorageError::Io("too few mirrors took the write".into())))
    }

    /// Keeps the parts for which `results` is `Ok`; the others drop out (aborted in the
    /// background) with their error.
    fn keep<T>(&mut self, results: Vec<Result<T, StorageError>>) -> Vec<T> {
        let mut kept = Vec::new();
        let parts = std::mem::take(&mut self.parts);
        for (part, r) in parts.into_iter().zip(results) {
            match r {
                Ok(v) => {
                    kept.push(v);
                    self.parts.push(part);
                }
                Err(e) => {
                    tracing::warn!(mirror = %self.mirror.name, member = %self.mirror.members[part.member].name(), error = %e, "a mirror dropped out of a write");
                    self.failed.push((part.member, e));
                }
            }
        }
        kept
    }

    /// Writes one chunk to every member left.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.sealed.is_some() {
            return Err(StorageError::Io("the write's bytes were sealed; it can only be committed or aborted".into()));
        }
        self.check_quorum()?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.digester.update(chunk.clone());
        let results = join_all(self.parts.iter_mut().map(|p| p.writer.write(chunk.clone()))).await;
        self.keep(results);
        self.check_quorum()
    }

    /// Measures the bytes (checking `expected_sha256`) and seals every member's part.
    pub async fn seal(&mut self, expected_sha256: Option<&str>) -> Result<Digest, StorageError> {
        if let Some((digest, _)) = &self.sealed {
            return Ok(digest.clone());
        }
        self.check_quorum()?;
        let Some((digest, blocks)) = self.digester.finish_blocks() else {
            self.parts.clear();
            return Err(StorageError::Io("the host could not compute the sha256; nothing was stored".into()));
        };
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&digest.sha256)
        {
            self.parts.clear();
            return Err(StorageError::DigestMismatch { expected: expected.to_string(), actual: digest.sha256 });
        }
        let results = join_all(self.parts.iter_mut().map(|p| p.writer.seal_as(digest.clone()))).await;
        self.keep(results);
        self.check_quorum()?;
        self.sealed = Some((digest.clone(), blocks));
        Ok(digest)
    }

    /// Commits on every member left (the first alone, before the others, for a create-only
    /// write). Succeeds once the quorum holds the object; the members that missed it are
    /// marked. Below the quorum, the members that did commit take it back.
    pub async fn commit(mut self) -> Result<ObjectInfo, StorageError> {
        if self.sealed.is_none() {
            self.seal(None).await?;
        }
        let Some((digest, blocks)) = self.sealed.clone() else {
            return Err(StorageError::Io("the write was not sealed".into()));
        };
        let mut parts = std::mem::take(&mut self.parts);
        let mut committed: Vec<(usize, ObjectInfo)> = Vec::new();
        if self.create_only {
            // Only the first mirror was asked to refuse an existing object: its commit decides,
            // before any other commits.
            if parts.first().map(|p| p.member) != Some(0) {
                return Err(StorageError::Unavailable {
                    reason: format!(
                        "a create-only write needs the first mirror, `{}`, which dropped out of it",
                        self.mirror.members[0].name()
                    ),
                    retryable: true,
                });
            }
            let first = parts.remove(0);
            committed.push((first.member, first.writer.commit().await?));
        }
        let members: Vec<usize> = parts.iter().map(|p| p.member).collect();
        let results = join_all(parts.into_iter().map(|p| p.writer.commit())).await;
        for (member, r) in members.into_iter().zip(results) {
            match r {
                Ok(info) => committed.push((member, info)),
                Err(e) => self.failed.push((member, e)),
            }
        }
        committed.sort_by_key(|(m, _)| *m);
        let holders: Vec<usize> = committed.iter().map(|(m, _)| *m).collect();
        if committed.len() < self.mirror.quorum {
            take_back(&self.mirror, &self.ctx, &self.path, &holders).await;
            self.failed.sort_by_key(|(m, _)| *m);
            let first = self.failed.first().map(|(_, e)| e.clone());
            return Err(first.unwrap_or_else(|| StorageError::Io("too few mirrors committed the write".into())));
        }
        if Manifest::kept_for(digest.size) {
            let manifest =
                Manifest { version: self.version.clone(), size: digest.size, sha256: digest.sha256.clone(), blocks };
            keep_blocks(&self.mirror, &self.ctx, &self.path, &holders, manifest).await;
        }
        let behind: Vec<usize> = self.failed.iter().map(|(m, _)| *m).collect();
        for m in behind {
            self.mirror.mark(&self.ctx, m, &self.path, "put", &self.version).await;
        }
        let (_, info) = committed.swap_remove(0);
        let mut info = self.mirror.as_own(info, &self.path);
        info.sha256 = Some(digest.sha256);
        Ok(info)
    }

    /// Drops the write as a crash would.
    pub fn crash(self) {
        for p in self.parts {
            p.writer.crash();
        }
    }

    /// Aborts every member's part.
    pub async fn abort(self) -> Result<(), StorageError> {
        let results = join_all(self.parts.into_iter().map(|p| p.writer.abort())).await;
        results.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
    }
}

/// Writes the block digests beside the object on each of `holders`; a member whose
/// digests could not be written is marked, so the repairer writes them.
async fn keep_blocks(mirror: &Mirror, ctx: &RequestContext, path: &str, holders: &[usize], manifest: Manifest) {
    let text = Bytes::from(manifest.encode());
    let Ok(at) = blocks_path(path) else { return };
    let written = join_all(holders.iter().map(|&m| {
        let mctx = mirror.member_ctx(ctx, m);
        let (text, at) = (text.clone(), &at);
        async move { mirror.members[m].unchecked().put_bytes(&mctx, at, text, &WriteOptions::default()).await }
    }))
    .await;
    for (&m, w) in holders.iter().zip(written) {
        if let Err(e) = w {
            tracing::warn!(mirror = %mirror.name, member = %mirror.members[m].name(), error = %e, "could not keep an object's block digests");
            mirror.mark(ctx, m, path, "put", &manifest.version).await;
        }
    }
}

/// Removes the new version from the members that committed it, when too few did: the
/// write failed, and a read must not find it. A copy that cannot be removed is marked for
/// removal.
async fn take_back(mirror: &Mirror, ctx: &RequestContext, path: &str, holders: &[usize]) {
    for &m in holders {
        let mctx = mirror.member_ctx(ctx, m);
        if let Err(e) = mirror.members[m].unchecked().delete(&mctx, path).await {
            tracing::warn!(mirror = %mirror.name, member = %mirror.members[m].name(), error = %e, "could not take back a write that missed its quorum");
            let later = new_version(ctx);
            mirror.mark(ctx, m, path, "delete", &later).await;
        }
    }
}
