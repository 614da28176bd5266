//! The operations a started host runs: each resolves its address, goes through the policy
//! pipeline (with write-ahead records for writes and deletes), then the disk's driver.

use std::time::Instant;

use sha2::Digest as _;

use super::{Storage, Target, UrlSigner};
use crate::audit::{self, pause_point};
use crate::driver::ObjectReader;
use crate::error::StorageError;
use crate::ledger::Effect;
use crate::policy::{OperationOutcome, OperationRequest, Phase};
use crate::request::{Address, Request};
use crate::types::{ByteRange, ListPage, ObjectInfo, Operation, RequestContext, WriteOptions};
use crate::upload::Upload;

impl Storage {
    fn object(&self, addr: &Address, req: &Request) -> Result<(Target, RequestContext), StorageError> {
        let target = self.resolve(addr)?;
        let ctx = self.context(&target.disk, target.class, req);
        Ok((target, ctx))
    }

    /// Runs `op` (an operation without effects: stat, exists, list, url) through the
    /// pipeline: policies first (the first deny wins and `op` never runs), then every policy
    /// learns the outcome. `measure` fills in what a success measured. If a required policy
    /// cannot record the outcome, the answer is withheld.
    async fn run<T>(
        &self,
        request: OperationRequest,
        op: impl Future<Output = Result<T, StorageError>>,
        measure: impl FnOnce(&T, &mut OperationOutcome),
    ) -> Result<T, StorageError> {
        let started = Instant::now();
        let result = match self.pipeline.check(&request).await {
            Ok(()) => op.await,
            Err(denied) => Err(denied),
        };
        let mut outcome = OperationOutcome::of(request, started);
        match &result {
            Ok(v) => measure(v, &mut outcome),
            Err(e) => outcome.error = Some(e.clone()),
        }
        let audit = self.pipeline.observe(&outcome, Phase::After, None).await;
        match (result, audit.error()) {
            (Ok(_), Some(unrecorded)) => Err(unrecorded),
            (result, _) => result,
        }
    }

    fn request(op: Operation, ctx: &RequestContext, path: &str) -> OperationRequest {
        OperationRequest {
            operation: op,
            ctx: ctx.clone(),
            path: path.to_string(),
            content_type: None,
            object_metadata: Vec::new(),
            expires_in_secs: None,
        }
    }

    /// Tells the policies an operation failed before it could take effect.
    async fn failed<T>(&self, mut outcome: OperationOutcome, e: StorageError) -> Result<T, StorageError> {
        outcome.error = Some(e.clone());
        self.pipeline.observe(&outcome, Phase::After, None).await;
        Err(e)
    }

    /// Starts a streaming write (after the policies allow it).
    pub async fn writer(&self, addr: &Address, req: &Request, options: &WriteOptions) -> Result<Upload, StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request = OperationRequest {
            content_type: options.content_type.clone(),
            object_metadata: options.metadata.clone(),
            ..Self::request(Operation::Put, &ctx, &t.path)
        };
        let started = Instant::now();
        let opened = match self.pipeline.check(&request).await {
            Ok(()) => self.open_route(&t, &ctx, options).await,
            Err(denied) => Err(denied),
        };
        match opened {
            Ok((inner, reservation, reroute)) => Ok(Upload::new(
                inner,
                reservation,
                reroute,
                request,
                self.pipeline.clone(),
                self.ledger.clone(),
                started,
            )),
            Err(e) => self.failed(OperationOutcome::of(request, started), e).await,
        }
    }

    /// Starts a streaming read (after the policies allow it, and once the read is recorded:
    /// no byte goes out before).
    pub async fn reader(
        &self,
        addr: &Address,
        req: &Request,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request = Self::request(Operation::Get, &ctx, &t.path);
        let started = Instant::now();
        let outcome = OperationOutcome::of(request, started);
        if let Err(denied) = self.pipeline.check(&outcome.request).await {
            return self.failed(outcome, denied).await;
        }
        let mut reader = match self.open_reader(&t, &ctx, range).await {
            Ok(r) => r,
            Err(e) => return self.failed(outcome, e).await,
        };
        let outcome =
            OperationOutcome { size: Some(reader.remaining()), sha256: reader.info().sha256.clone(), ..outcome };
        let before = self.pipeline.observe(&outcome, Phase::Before, None).await;
        if let Some(e) = before.error() {
            reader.close().await;
            return self.failed(outcome, e).await;
        }
        self.pipeline.observe(&outcome, Phase::After, None).await;
        Ok(reader)
    }

    /// An object's info.
    pub async fn stat(&self, addr: &Address, req: &Request) -> Result<ObjectInfo, StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request = Self::request(Operation::Stat, &ctx, &t.path);
        self.run(request, self.stat_routed(&t, &ctx), |i, o| {
            o.size = Some(i.size);
            o.sha256 = i.sha256.clone();
        })
        .await
    }

    /// Whether an object exists.
    pub async fn exists(&self, addr: &Address, req: &Request) -> Result<bool, StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request = Self::request(Operation::Exists, &ctx, &t.path);
        self.run(request, self.exists_routed(&t, &ctx), |_, _| {}).await
    }

    /// Removes an object, once the policies allowed and recorded it.
    pub async fn delete(&self, addr: &Address, req: &Request) -> Result<(), StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request = Self::request(Operation::Delete, &ctx, &t.path);
        let started = Instant::now();
        let mut outcome = OperationOutcome::of(request, started);
        if let Err(denied) = self.pipeline.check(&outcome.request).await {
            return self.failed(outcome, denied).await;
        }
        let owner = crate::owner::owners().begin();
        let intent = audit::intent(Effect::Delete, &outcome.request, None, None, owner.as_str());
        let before = self.pipeline.observe(&outcome, Phase::Before, Some(&intent)).await;
        if let Some(e) = before.error() {
            audit::settle(&self.ledger, &outcome.request, &intent, &before.appended, Err(&e));
            return self.failed(outcome, e).await;
        }
        pause_point("after-delete-intent").await;
        let quota = self.usage.get(t.disk.name()).filter(|u| u.quota.is_some());
        let size = match quota {
            Some(_) => self.stat_routed(&t, &ctx).await.map_or(0, |i| i.size),
            None => 0,
        };
        let result = self.delete_routed(&t, &ctx).await;
        if let (Some(usage), Ok(())) = (quota, &result) {
            usage.freed(size);
        }
        audit::settle(&self.ledger, &outcome.request, &intent, &before.appended, result.as_ref().map(|_| ()));
        drop(owner);
        outcome.error = result.as_ref().err().cloned();
        outcome.duration = started.elapsed();
        self.pipeline.observe(&outcome, Phase::After, None).await;
        result
    }

    /// A URL that serves the object for `expires_in_secs`: the driver's own (e.g. S3's
    /// presigned URL), else, when the driver has none and `signer` is given, one the host
    /// signs (after checking the object exists). Recorded with the URL's id.
    pub async fn url(
        &self,
        addr: &Address,
        req: &Request,
        expires_in_secs: u64,
        signer: Option<&dyn UrlSigner>,
    ) -> Result<String, StorageError> {
        let (t, ctx) = self.object(addr, req)?;
        let request =
            OperationRequest { expires_in_secs: Some(expires_in_secs), ..Self::request(Operation::Url, &ctx, &t.path) };
        let issue = async {
            // A queued object is not where the driver's URL would point: only the host's
            // own URL (served through this pipeline) finds it.
            let native = match self.seen(&t, &ctx).await? {
                crate::fallback::Seen::Disk => t.disk.url(&ctx, &t.path, expires_in_secs).await,
                crate::fallback::Seen::Deleted => return Err(StorageError::NotFound(t.path.to_string())),
                crate::fallback::Seen::Entry(..) => {
                    Err(StorageError::Unsupported("a driver URL for an object waiting on the fallback".into()))
                }
            };
            match (native, signer) {
                (Ok(url), _) => {
                    // A driver's URL carries no id of ours: a digest of it names it.
                    let id = hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8]);
                    Ok((url, id))
                }
                (Err(StorageError::Unsupported(_)), Some(signer)) => {
                    // A URL for nothing helps nobody: the object must exist.
                    self.stat_routed(&t, &ctx).await?;
                    signer.sign(&addr.name, &t.path, expires_in_secs)
                }
                (Err(e), _) => Err(e),
            }
        };
        let (url, _) = self.run(request, issue, |(_, id), o| o.url_id = Some(id.clone())).await?;
        Ok(url)
    }

    /// One page of the objects under the address's path (a prefix; may be empty).
    pub async fn list(
        &self,
        addr: &Address,
        req: &Request,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StorageError> {
        let target = self.resolve_prefix(addr)?;
        let ctx = self.context(&target.disk, target.class, req);
        let request = Self::request(Operation::List, &ctx, &target.path);
        self.run(request, self.list_routed(&target, &ctx, cursor, limit), |page, o| {
            o.items = Some(u32::try_from(page.items.len()).unwrap_or(u32::MAX));
        })
        .await
    }
}
