//! Writes an upload session can suspend after each request and continue on any host
//! (`driver/resumable.rs` under them): opened, resumed and discarded through the policy
//! pipeline like any write. A resumed write is checked by the policies again (the key may
//! have lost access since) and takes the bytes it already holds from the disk's limits.

use std::time::Instant;

use super::Storage;
use crate::driver::Suspended;
use crate::error::StorageError;
use crate::policy::{OperationOutcome, OperationRequest};
use crate::request::{Address, Request};
use crate::types::{Operation, WriteOptions};
use crate::upload::Upload;

impl Storage {
    /// Whether writes to `addr` can be suspended: its disk's driver exports `resumable`, and
    /// the disk has no fallback (a write that may move to another disk stays in memory).
    pub fn resumable(&self, addr: &Address) -> bool {
        self.resolve(addr).is_ok_and(|t| t.disk.resumable() && self.fallback_of(t.disk.name()).is_none())
    }

    /// Starts a write of `addr` whose temp objects carry `owner` (an upload session's tag), or
    /// continues the one `from` describes; either can be suspended (`Upload::suspend`).
    pub async fn resumable_writer(
        &self,
        addr: &Address,
        req: &Request,
        options: &WriteOptions,
        owner: &str,
        from: Option<&Suspended>,
    ) -> Result<Upload, StorageError> {
        let t = self.resolve(addr)?;
        let ctx = self.context(&t.disk, t.class, req);
        let request = OperationRequest {
            operation: Operation::Put,
            ctx: ctx.clone(),
            path: t.path.to_string(),
            content_type: options.content_type.clone(),
            object_metadata: options.metadata.clone(),
            expires_in_secs: None,
        };
        let started = Instant::now();
        let opened = async {
            if self.fallback_of(t.disk.name()).is_some() {
                return Err(StorageError::Unsupported(format!(
                    "disk `{}` has a fallback: its writes cannot be suspended",
                    t.disk.name()
                )));
            }
            self.pipeline.check(&request).await?;
            let mut reservation = crate::usage::reserve(&t.disk, self.usage_of(t.disk.name()), &ctx, &t.path).await?;
            if let (Some(r), Some(from)) = (reservation.as_mut(), from) {
                r.take(from.digest.size)?;
            }
            let writer = match from {
                Some(from) => t.disk.resume_writer(&ctx, &t.path, options, owner, from).await?,
                None => t.disk.resumable_writer(&ctx, &t.path, options, owner).await?,
            };
            Ok((writer, reservation))
        }
        .await;
        match opened {
            Ok((writer, reservation)) => {
                let upload = Upload::new(
                    writer,
                    reservation,
                    None,
                    request,
                    self.pipeline.clone(),
                    self.ledger.clone(),
                    started,
                );
                // A resumed write is its session's from the start: dropped, it is released.
                Ok(if from.is_some() { upload.resumed() } else { upload })
            }
            Err(e) => {
                let mut outcome = OperationOutcome::of(request, started);
                outcome.error = Some(e.clone());
                self.pipeline.observe(&outcome, crate::policy::Phase::After, None).await;
                Err(e)
            }
        }
    }

    /// Discards a suspended write of `addr` that no writer has open (its session was discarded
    /// or expired). A write that is gone already is no error.
    pub async fn discard_suspended(&self, addr: &Address, req: &Request, token: &str) -> Result<(), StorageError> {
        let t = self.resolve(addr)?;
        let ctx = self.context(&t.disk, t.class, req);
        match t.disk.discard_suspended(&ctx, token).await {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
